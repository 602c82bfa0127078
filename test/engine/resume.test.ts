import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StateSpec, StoreMismatchError } from '../../src/index.js';
import { fixture, keyedJob, sorted, tempDir } from '../helpers.js';

const spec = (n = 3) => StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(n).timeout(2500);

describe('a context re-created on the same dataDir', () => {
  it('resumes the state of the last committed batch, time index included', async () => {
    const dataDir = tempDir();
    const first = await keyedJob(spec(), { dataDir });
    await first.batch([['a', 1], ['b', 1]]);
    await first.batch([['a', 1]]);
    await first.ssc.stop();

    const second = await keyedJob(spec(), { dataDir, startMs: 2000 });
    try {
      assert.equal(second.stream.store().get('a'), 2, 'state is there before the first batch');
      assert.equal(second.stream.store().count(), 2);
      assert.deepEqual(sorted(await second.batch([['a', 1], ['c', 1]])), [['a', 3], ['c', 1]]);
      // b's last record was at 1000; at 4000 it is idle for 3000 > 2500.
      assert.deepEqual(await second.batch([]), [['timeout', 'b', 1, 4000]]);
    } finally {
      await second.ssc.stop();
    }
  });

  it('refuses batch times that do not move forward past the stored batches', async () => {
    const dataDir = tempDir();
    const first = await keyedJob(spec(), { dataDir, startMs: 5000 });
    await first.batch([['a', 1]]);
    await first.ssc.stop();
    await assert.rejects(keyedJob(spec(), { dataDir, startMs: 0 }), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError);
      assert.match((error as Error).message, /hold batch 6000, but this context's first batch would be at 1000/);
      return true;
    });
    const again = await keyedJob(spec(), { dataDir, startMs: 6000 });
    try {
      assert.deepEqual(await again.batch([['a', 1]]), [['a', 2]], 'a refused start leaves the stores usable');
    } finally {
      await again.ssc.stop();
    }
  });

  it('refuses a different numPartitions than the stores were written with', async () => {
    const dataDir = tempDir();
    const first = await keyedJob(spec(3), { dataDir });
    await first.batch([['a', 1]]);
    await first.ssc.stop();
    await assert.rejects(keyedJob(spec(5), { dataDir, startMs: 5000 }), /have 3 partitions, but the StateSpec asks for 5/);
  });
});
