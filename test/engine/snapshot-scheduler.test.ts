import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, listSnapshots, readSnapshotState, type SnapshotCompletedEvent, type SnapshotEvery, type SnapshotFailedEvent } from '../../src/index.js';
import { SnapshotScheduler, snapshotPolicy, type SnapshotHost } from '../../src/engine/snapshot-scheduler.js';
import { BatchLog } from '../../src/storage/partition/batch-log.js';
import { messageCodec } from '../../src/storage/codec.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { verifySnapshot } from '../../src/storage/snapshots/manifest.js';
import { fixture, keyedJob, runThenStop, statesOf, tempDir } from '../helpers.js';
import { waitUntil, within } from '../wait.js';

const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);
const words = (batch: number, n = 50) => Array.from({ length: n }, (_, i) => [`w${(i * 7 + batch * 13) % 97}`, 1] as [string, number]);
const incomplete = (dataDir: string) => (existsSync(join(dataDir, 'snapshots')) ? readdirSync(join(dataDir, 'snapshots')).filter((n) => n.startsWith('.incomplete-')) : []);

describe('snapshot policies', () => {
  for (const [every, expected, why] of [
    [{ batches: 3 }, [3000, 6000], 'every third batch'],
    [3, [3000, 6000], 'a number means batches'],
    [{ ms: 2500 }, [4000, 7000], 'the first batch at least 2500 ms (of batch time) after the last snapshot, or after the first batch'],
    [{ ms: 2000 }, [3000, 5000, 7000], 'a batch exactly 2000 ms after the last snapshot takes the next one'],
  ] as Array<[SnapshotEvery, number[], string]>) {
    it(`snapshotEvery ${JSON.stringify(every)}: ${why}`, async () => {
      const dataDir = tempDir();
      const job = await keyedJob(spec(), { dataDir, snapshotEvery: every, snapshotsKept: 10 });
      const taken: number[] = [];
      job.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => taken.push(e.batchTime));
      try {
        for (let b = 1; b <= 8; b++) {
          if (expected.includes(b * 1000)) await job.batchWithSnapshot(words(b));
          else await job.batch(words(b));
        }
      } finally {
        await job.ssc.stop();
      }
      assert.deepEqual(taken, expected);
      assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [...expected].reverse());
    });
  }
});

describe('a snapshot that fails', () => {
  it('is reported as snapshot.failed with its batch and why, whether it fails before its copies begin or after, and the batches go on', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: 1, snapshotsKept: 10 });
    const failed: SnapshotFailedEvent[] = [];
    job.ssc.on(BatchEvents.SNAPSHOT_FAILED, (e) => failed.push(e));
    try {
      // A snapshot of batch 1000 is already there: this one's copy fails without replacing it.
      mkdirSync(join(dataDir, 'snapshots', '1000'), { recursive: true });
      await job.batch(words(1));
      await waitUntil('the snapshot of batch 1000 to fail', () => failed.length === 1);
      assert.equal(failed[0].batchTime, 1000);
      assert.match(failed[0].error.message, /a snapshot of batch 1000 already exists/);
      // The snapshots folder is a file: the next snapshot cannot even begin.
      rmSync(join(dataDir, 'snapshots'), { recursive: true });
      writeFileSync(join(dataDir, 'snapshots'), '');
      await job.batch(words(2));
      await waitUntil('the snapshot of batch 2000 to fail', () => failed.length === 2);
      assert.equal(failed[1].batchTime, 2000);
      assert.match(failed[1].error.message, /ENOTDIR/);
      await job.batch([['after', 1]]);
      assert.equal(job.stream.store().get('after'), 1, 'the batches go on');
    } finally {
      await job.ssc.stop();
    }
  });
});

describe('snapshot policies across a restart (counted from the newest snapshot, as one long run would)', () => {
  /** Runs batches `from`…`to` (in seconds of batch time) on the folder, and returns the batch times that took a snapshot. */
  async function run(dataDir: string, every: SnapshotEvery, from: number, to: number, expected: number[]): Promise<number[]> {
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: every, snapshotsKept: 10, startMs: (from - 1) * 1000 });
    const taken: number[] = [];
    job.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => taken.push(e.batchTime));
    try {
      for (let b = from; b <= to; b++) {
        if (expected.includes(b * 1000)) await job.batchWithSnapshot(words(b));
        else await job.batch(words(b));
      }
    } finally {
      await job.ssc.stop();
    }
    return taken;
  }

  for (const [every, first, second, why] of [
    [{ batches: 3 }, [3000], [11_000], 'the third batch since the snapshot of batch 3000: the stores hold batch 5000, so the first batch after the restart'],
    [{ ms: 3000 }, [4000], [7000], 'the first batch 3000 ms after the snapshot of batch 4000 (not after the stores\' batch 5000), whenever the restart came'],
  ] as Array<[SnapshotEvery, number[], number[], string]>) {
    it(`snapshotEvery ${JSON.stringify(every)}: ${why}`, async () => {
      const dataDir = tempDir();
      // The first run stops a batch after its snapshot: the stores hold batch 5000.
      assert.deepEqual(await run(dataDir, every, 1, 5, first), first);
      const restartAt = 'batches' in (every as object) ? 11 : 6;
      assert.deepEqual(await run(dataDir, every, restartAt, restartAt + 2, second), second);
      assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [...second, ...first]);
    });
  }

  it('stores that hold state without any snapshot of it take one at the first batch after a restart', async () => {
    const dataDir = tempDir();
    assert.deepEqual(await run(dataDir, { batches: 5 }, 1, 2, []), []);
    assert.deepEqual(await run(dataDir, { batches: 5 }, 11, 12, [11_000]), [11_000]);
    const timed = tempDir();
    assert.deepEqual(await run(timed, { ms: 5000 }, 1, 2, []), []);
    assert.deepEqual(await run(timed, { ms: 5000 }, 11, 12, [11_000]), [11_000], 'by time too: not an interval after the restart');
    // A fresh folder counts from its first batch as before.
    assert.deepEqual(await run(tempDir(), { ms: 5000 }, 1, 3, []), []);
  });
});

describe('a snapshot beside the running batches', () => {
  /**
   * A job whose snapshot of batch 2000 is still copying when batch 2000 has returned: big
   * enough that the copy, its fsyncs and checksums outlast what the test does next. Tries a
   * few times with more keys, and says so if the copy never was caught under way.
   */
  async function copyUnderWay() {
    for (const keys of [50_000, 100_000, 200_000]) {
      const dataDir = tempDir();
      const job = await keyedJob(spec(), { dataDir, snapshotEvery: { batches: 2 } });
      await job.batch(Array.from({ length: keys }, (_, i) => [`key-${i}`, 1] as [string, number]));
      const completed = new Promise<SnapshotCompletedEvent>((resolve) => job.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, resolve));
      await job.batch(words(2));
      if (incomplete(dataDir).length === 1) return { dataDir, job, completed: within(completed, 'the snapshot of batch 2000') };
      await job.ssc.stop();
    }
    throw new Error('the snapshot copy was never caught under way: the situation this test needs did not happen');
  }

  it('the next batch commits while the copy goes on, and the snapshot holds its own batch only; gateMs is the short wait before that', async (t) => {
    const { dataDir, job, completed } = await copyUnderWay();
    try {
      const before = new Map(job.stream.store().entries());
      await job.batch([['w1', 1], ['fresh', 1]]);
      assert.equal(incomplete(dataDir).length, 1, 'batch 3000 committed while the copy of batch 2000 was still under way');
      const event = await completed;
      t.diagnostic(`snapshot of ${event.keyCount} keys: gate ${event.gateMs.toFixed(1)} ms, whole ${event.durationMs.toFixed(1)} ms`);
      assert.equal(event.batchTime, 2000);
      // The copy was still under way after batch 3000 committed: the gate was passed well before the snapshot ended.
      assert.ok(event.gateMs > 0 && event.gateMs < event.durationMs, `gateMs ${event.gateMs} a part of the snapshot's ${event.durationMs} ms`);
      const [snapshot] = listSnapshots(dataDir);
      assert.deepEqual(await verifySnapshot(snapshot), []);
      assert.equal(event.path, snapshot.path, 'the event names the snapshot folder, which readSnapshotState reads');
      assert.ok(snapshot.manifest.streams[0].partitions.every((p) => p.lastBatch === 2000));
      // The event's figures are the whole snapshot's: every partition's copy.
      const parts = snapshot.manifest.streams[0].partitions;
      assert.equal(parts.length, 2);
      assert.deepEqual([event.bytes, event.keyCount], [parts.reduce((n, p) => n + p.bytes, 0), before.size]);
      assert.ok(parts.every((p) => p.bytes > 0 && p.keyCount > 0));
      const copied = statesOf(readSnapshotState<string, number>(snapshot.path));
      assert.equal(copied.size, before.size, 'the copies hold the keys of batch 2000, not those of batch 3000');
      assert.equal(copied.get('w1'), before.get('w1'));
      assert.ok(!copied.has('fresh'));
    } finally {
      await job.ssc.stop();
    }
  });

  it('stop() waits for a snapshot still copying, which ends whole', async () => {
    const { dataDir, job } = await copyUnderWay();
    await job.ssc.stop();
    assert.deepEqual(incomplete(dataDir), [], 'no half-written snapshot is left');
    const [snapshot] = listSnapshots(dataDir);
    assert.equal(snapshot?.batchTime, 2000, 'the snapshot under way when stop() was called is in place');
    assert.deepEqual(await verifySnapshot(snapshot), []);
  });
});

/**
 * A scheduler snapshotting every `everyBatches` batches of real partition stores, which the
 * test commits batches into as a job would. Its host holds the first snapshot's housekeeping
 * (after its copy is in place) until released, so that snapshot runs on meanwhile.
 */
async function heldScheduler(everyBatches: number, jobOptions: { snapshotEvery?: number } = {}, keep = 10) {
  const dataDir = tempDir();
  await runThenStop(spec(), { dataDir, ...jobOptions }, words(1));
  const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
  const commit = (batchTime: number, partitions = [0, 1]) => {
    for (const store of partitions.map((p) => stores[p])) {
      const keyCount = new BatchLog(store).last()!.keyCount;
      store.env.transactionSync(() => new BatchLog(store).record({ batchTime, outputs: messageCodec.pack([]), keyCount }));
    }
  };
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const completed: number[] = [];
  const failed: Array<[number, Error]> = [];
  let retainCalls = 0;
  const retained: number[] = [];
  const policy = snapshotPolicy(everyBatches, keep)!;
  const host: SnapshotHost = {
    dataDir, appName: 'scheduler-test',
    streams: () => [{ stream: 0, stores }],
    sources: () => [],
    retainFrom: async (from) => {
      retained.push(from);
      if (retainCalls++ === 0) await held;
    },
    completed: (info) => void completed.push(info.batchTime),
    failed: (batchTime, error) => void failed.push([batchTime, error]),
  };
  const close = () => {
    release();
    stores.forEach((s) => s.env.close());
  };
  return { dataDir, scheduler: new SnapshotScheduler(policy, host), policy, host, commit, release, completed, failed, retained, close };
}

describe('SnapshotScheduler, one snapshot at a time', () => {
  it('a snapshot that falls due while one is still running is not taken; the first batch after the running one finishes takes the next', async () => {
    const { dataDir, scheduler, commit, release, completed, failed, retained, close } = await heldScheduler(1);
    try {
      commit(2000);
      await scheduler.afterBatch(2000);
      await waitUntil('the snapshot of batch 2000 to be in place', () => completed.includes(2000));
      commit(3000);
      await scheduler.afterBatch(3000);
      await sleep(200);
      assert.deepEqual(incomplete(dataDir), [], 'batch 3000 started no snapshot while 2000 was still running');
      let settled = false;
      const settling = scheduler.settle().then(() => void (settled = true));
      await sleep(100);
      assert.equal(settled, false, 'settle() (what stop() awaits) waits for the running snapshot');
      release();
      await within(settling, 'settle() once the snapshot has finished');
      commit(4000);
      await scheduler.afterBatch(4000);
      await within(scheduler.settle(), 'the snapshot of batch 4000');
      assert.deepEqual(failed, []);
      assert.deepEqual(completed, [2000, 4000]);
      assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [4000, 2000]);
      assert.deepEqual(retained, [2000, 2000], 'the batch history is kept from the oldest snapshot kept, which a restore may fall back to');
    } finally {
      close();
    }
  });

  it('once it prunes, the batch history is kept from the oldest snapshot it kept, not from one it has just removed', async () => {
    const { dataDir, scheduler, commit, release, completed, failed, retained, close } = await heldScheduler(1, {}, 2);
    release();
    try {
      for (const batchTime of [2000, 3000, 4000]) {
        commit(batchTime);
        await scheduler.afterBatch(batchTime);
        await within(scheduler.settle(), `the snapshot of batch ${batchTime} and its housekeeping`);
      }
      assert.deepEqual(failed, []);
      assert.deepEqual(completed, [2000, 3000, 4000]);
      assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [4000, 3000]);
      // 2000 is gone: the history before 3000 is no snapshot's to replay.
      assert.deepEqual(retained, [2000, 2000, 3000]);
    } finally {
      close();
    }
  });

  it('a restarted scheduler counts { batches: n } from the newest batch any partition holds, not the oldest', async () => {
    const { policy, host, commit, failed, completed, close } = await heldScheduler(3, { snapshotEvery: 1 });
    try {
      // The job snapshotted batch 1000; then only partition 0 committed 2000 and 3000, as a crash between two partitions' commits leaves them.
      commit(2000, [0]);
      commit(3000, [0]);
      const resumed = SnapshotScheduler.resuming(policy, host, 1000);
      // Two batches since the snapshot: batch 4000 is the third.
      commit(4000);
      await resumed.afterBatch(4000);
      await waitUntil('the snapshot of batch 4000 to be in place', () => completed.includes(4000));
      assert.deepEqual(failed, []);
      assert.deepEqual(completed, [4000]);
    } finally {
      close();
    }
  });

  it('{ batches: n } counts the batches that end while a snapshot runs: the next falls due n batches after the last, not after the copy', async () => {
    const { scheduler, commit, release, completed, failed, close } = await heldScheduler(2);
    try {
      for (const batchTime of [2000, 3000]) {
        commit(batchTime);
        await scheduler.afterBatch(batchTime);
      }
      await waitUntil('the snapshot of batch 3000 to be in place', () => completed.includes(3000));
      // Batches 4000 and 5000 end while its housekeeping holds it: 5000 is due, but one is running.
      for (const batchTime of [4000, 5000]) {
        commit(batchTime);
        await scheduler.afterBatch(batchTime);
      }
      release();
      await within(scheduler.settle(), 'the snapshot of batch 3000 to finish');
      commit(6000);
      await scheduler.afterBatch(6000);
      await within(scheduler.settle(), 'the snapshot of batch 6000');
      assert.deepEqual(failed, []);
      assert.deepEqual(completed, [3000, 6000]);
    } finally {
      close();
    }
  });
});
