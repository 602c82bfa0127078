import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StateSpec, murmur2Partitioner, writeStateExport } from '../../src/index.js';
import { BatchLog } from '../../src/storage/partition/batch-log.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { fixture, keyedJob, sorted, tempDir } from '../helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

// Each test fails rather than hangs when a batch or a service never answers.
describe('statestream import of an export that repeats a key', { timeout: 180_000 }, () => {
  it('keeps the last entry, leaves one time-index entry per key and counts each key once, so timeouts fire as for the last entry', async () => {
    const file = join(tempDir(), 'repeated.msgpack');
    // 'a' first idle since 1000, then again with its newer entry (3000): the newer one wins.
    await writeStateExport(file, { stateVersion: 1 }, [['a', 1, 1000], ['b', 2, 1000], ['c', 7, 2500], ['a', 5, 3000], ['c', 8, 2600]]);
    const dataDir = join(tempDir(), 'data');
    const imported = spawnSync(process.execPath, [cli, 'import', file, '--data-dir', dataDir, '--partitions', '2'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(imported.status, 0, imported.stderr);

    const index: Array<[number, unknown, number]> = [];
    let keyCount = 0;
    for (const p of [0, 1]) {
      const store = openPartitionStore(partitionPath(dataDir, 0, p));
      try {
        for (const { key } of store.timeIndex.getRange({})) index.push([(key as [number, unknown])[0], (key as [number, unknown])[1], p]);
        keyCount += new BatchLog(store).last()!.keyCount;
        assert.equal(store.state.getCount(), new BatchLog(store).last()!.keyCount, `partition ${p} records the keys it holds`);
      } finally {
        store.env.close();
      }
    }
    assert.equal(keyCount, 3);
    assert.deepEqual(
      index.sort((x, y) => x[0] - y[0]),
      [[1000, 'b', murmur2Partitioner.partition('b', 2)], [2600, 'c', murmur2Partitioner.partition('c', 2)], [3000, 'a', murmur2Partitioner.partition('a', 2)]],
      'one time-index entry per key, at its last entry\'s time',
    );

    // A job with a 1500 ms timeout, first batch at 4000: only b (idle since 1000) times out.
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('idle-count')).numPartitions(2).timeout(1500), { dataDir, startMs: 3000 });
    try {
      const outputs = await job.batch([]);
      assert.deepEqual(sorted(outputs), [['timeout', 'b', 2, 4000]]);
      assert.deepEqual([...job.stream.store().entries()], [['a', 5], ['c', 8]]);
      assert.equal(job.stream.store().count(), 2);
    } finally {
      await job.ssc.stop();
    }
  });
});
