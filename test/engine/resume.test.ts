import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpSync, renameSync, rmSync } from 'node:fs';
import { StateSpec, StoreMismatchError, murmur2Partitioner } from '../../src/index.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { fixture, keyedJob, openDataFiles, runThenStop, sorted, tempDir } from '../helpers.js';

const spec = (n = 3) => StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(n).timeout(2500);

describe('a context re-created on the same dataDir', () => {
  it('resumes the state of the last committed batch, time index included', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir }, [['a', 1], ['b', 1]], [['a', 1]]);

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

  it('builds the time index when a timeout is added to a job that had none, and drops it when removed', async () => {
    const dataDir = tempDir();
    const noTimeout = () => StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(2);
    await runThenStop(noTimeout(), { dataDir }, [['a', 1], ['b', 1]], [['b', 1]]); // batches 1000 and 2000

    const timed = await keyedJob(noTimeout().timeout(2500), { dataDir, startMs: 2000 });
    try {
      assert.deepEqual(await timed.batch([['d', 1]]), [['d', 1]], '3000: nothing idle for more than 2500 ms yet');
      assert.deepEqual(await timed.batch([]), [['timeout', 'a', 1, 4000]], '4000: a, last updated at 1000');
      assert.deepEqual(await timed.batch([]), [['timeout', 'b', 2, 5000]], '5000: b, last updated at 2000');
    } finally {
      await timed.ssc.stop();
    }

    // Without a timeout, d's update at 6000 moves no index entry: its entry of 3000 must not outlive the index.
    const again = await keyedJob(noTimeout(), { dataDir, startMs: 5000 });
    try {
      assert.deepEqual(sorted(await again.batch([['c', 1], ['d', 1]])), [['c', 1], ['d', 2]]);
    } finally {
      await again.ssc.stop();
    }
    // Without a timeout the stores keep no index: none of the entries the timed run made is left.
    for (const partition of [0, 1]) {
      const store = openPartitionStore(partitionPath(dataDir, 0, partition));
      try {
        assert.deepEqual([...store.timeIndex.getKeys({})], [], `partition ${partition} keeps no time index`);
      } finally {
        store.env.close();
      }
    }
    const timedAgain = await keyedJob(noTimeout().timeout(2500), { dataDir, startMs: 6000 });
    try {
      assert.deepEqual(await timedAgain.batch([]), [], '7000: d, updated at 6000, is not idle yet');
      assert.deepEqual(await timedAgain.batch([]), []);
      assert.deepEqual(sorted(await timedAgain.batch([])), [['timeout', 'c', 1, 9000], ['timeout', 'd', 2, 9000]], 'the index was rebuilt, not left stale');
    } finally {
      await timedAgain.ssc.stop();
    }
  });

  it('initial state goes only into partitions that never committed a batch: one that did keeps its state on a restart', async () => {
    const dataDir = tempDir();
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    const [x, y] = [keys[0], keys.find((k) => murmur2Partitioner.partition(k, 2) !== murmur2Partitioner.partition(keys[0], 2))!];
    const initial = () => StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2).initialState([[x, 100], [y, 200]]);
    // The stores as a first start leaves them, before any batch.
    await runThenStop(initial(), { dataDir });
    const yPartition = partitionPath(dataDir, 0, murmur2Partitioner.partition(y, 2));
    const untouched = `${yPartition}.untouched`;
    cpSync(yPartition, untouched, { recursive: true });
    const first = await keyedJob(initial(), { dataDir });
    try {
      assert.deepEqual(sorted(await first.batch([[x, 1], [y, 1]])), sorted([[x, 101], [y, 201]]));
    } finally {
      await first.ssc.stop();
    }
    // As if the job had died in its first batch after only x's partition committed it.
    rmSync(yPartition, { recursive: true });
    renameSync(untouched, yPartition);
    const again = await keyedJob(initial(), { dataDir, startMs: 1000 });
    try {
      // x's partition committed batch 1000: its initial state is not loaded again. y's never
      // committed: it starts from the initial state, with the next batch.
      assert.deepEqual(sorted(await again.batch([[x, 1], [y, 1]])), sorted([[x, 102], [y, 201]]));
    } finally {
      await again.ssc.stop();
    }
  });

  it('refuses batch times that do not move forward past the stored batches', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir, startMs: 5000 }, [['a', 1]]);
    await assert.rejects(keyedJob(spec(), { dataDir, startMs: 0 }), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError);
      assert.match((error as Error).message, /hold batch 6000, but this context's first batch would be at 1000/);
      return true;
    });
    assert.deepEqual(openDataFiles(dataDir), [], 'the refused start closed the stores it had opened');
    // The same time as the stored batch is not forward either: the store would take it for done.
    await assert.rejects(keyedJob(spec(), { dataDir, startMs: 5000 }), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError);
      assert.match((error as Error).message, /hold batch 6000, but this context's first batch would be at 6000/);
      return true;
    });
    const again = await keyedJob(spec(), { dataDir, startMs: 6000 });
    try {
      assert.deepEqual(await again.batch([['a', 1]]), [['a', 2]], 'a refused start leaves the stores usable');
    } finally {
      await again.ssc.stop();
    }
  });

  it('re-shards the state when started with a different numPartitions', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(3), { dataDir }, [['a', 1], ['b', 1]]);
    const second = await keyedJob(spec(5), { dataDir, startMs: 1000 });
    try {
      assert.equal(second.stream.store().count(), 2);
      assert.deepEqual(sorted(await second.batch([['a', 1]])), [['a', 2]]);
    } finally {
      await second.ssc.stop();
    }
  });
});
