import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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
    assert.match(imported.stdout, /^Imported 3 keys into stream 0 /);
    assert.match(imported.stdout, /^The export holds 5 entries: a key given more than once keeps its last entry\.$/m);

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

    const again = spawnSync(process.execPath, [cli, 'import', file, '--data-dir', join(tempDir(), 'json'), '--partitions', '2', '--json'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(again.status, 0, again.stderr);
    const summary = JSON.parse(again.stdout) as { keyCount: number; entries: number };
    assert.deepEqual([summary.keyCount, summary.entries], [3, 5]);

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

  it('refuses a header whose numPartitions is no partition count, unless --partitions is given', async () => {
    const file = join(tempDir(), 'huge.msgpack');
    await writeStateExport(file, { stateVersion: 1, numPartitions: 10_000_000 }, [['a', 1, 1000]]);
    const dataDir = join(tempDir(), 'data');
    const refused = spawnSync(process.execPath, [cli, 'import', file, '--data-dir', dataDir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(refused.status, 1, refused.stdout);
    assert.match(refused.stderr, /the header of .*huge\.msgpack gives numPartitions 10000000, which is not a partition count from 1 to \d+; give --partitions <n>/);
    assert.equal(existsSync(join(dataDir, 'state-0')), false, 'nothing was written');

    const imported = spawnSync(process.execPath, [cli, 'import', file, '--data-dir', dataDir, '--partitions', '2'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(imported.status, 0, imported.stderr);
    assert.match(imported.stdout, /^Imported 1 keys into stream 0 .*\(2 partitions,/);
  });
});
