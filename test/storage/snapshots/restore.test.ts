import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, ManualClock, SnapshotError, StateSpec, StoreMismatchError, StoreOpenError, StreamingContext, listSnapshots, murmur2Partitioner, readSnapshotState, type RecoveryIncompleteEvent, type StateRestoredEvent } from '../../../src/index.js';
import { FORMAT_VERSION } from '../../../src/storage/partition/batch-log.js';
import { openPartitionStore, partitionPath } from '../../../src/storage/partition/store.js';
import { SNAPSHOT_FORMAT_VERSION, verifySnapshot } from '../../../src/storage/snapshots/manifest.js';
import { fixture, keyedJob, runThenStop, tempDir } from '../../helpers.js';

const spec = (n: number) => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(n);
const words = (batch: number) => Array.from({ length: 120 }, (_, i) => [`w${(i * 7 + batch * 13) % 61}`, 1] as [string, number]);

/** A stopped job's folder: batches 1000…3000, each snapshotted, with `partitionsAt(batchTime)` partitions; and the state after each batch. */
async function snapshotted(partitionsAt: (batchTime: number) => number): Promise<{ dataDir: string; stateAt: Map<number, Map<string, number>> }> {
  const dataDir = tempDir();
  const stateAt = new Map<number, Map<string, number>>();
  for (let b = 1; b <= 3; b++) {
    const job = await keyedJob(spec(partitionsAt(b * 1000)), { dataDir, startMs: (b - 1) * 1000, snapshotEvery: 1, snapshotsKept: 10 });
    try {
      await job.batchWithSnapshot(words(b));
      stateAt.set(b * 1000, new Map(job.stream.store().entries()) as Map<string, number>);
    } finally {
      await job.ssc.stop();
    }
  }
  return { dataDir, stateAt };
}

/** Puts a snapshot's copy of a partition in place of the live store, as if that partition had stopped at the snapshot's batch. */
function rollBack(dataDir: string, partition: number, snapshot: number): void {
  const target = partitionPath(dataDir, 0, partition);
  rmSync(join(target, 'lock.mdb'), { force: true });
  copyFileSync(join(dataDir, 'snapshots', String(snapshot), 'state-0', `partition-${String(partition).padStart(4, '0')}`, 'data.mdb'), join(target, 'data.mdb'));
}

function corrupt(dataDir: string, snapshot: number, partition: number): void {
  const file = join(dataDir, 'snapshots', String(snapshot), 'state-0', `partition-${String(partition).padStart(4, '0')}`, 'data.mdb');
  truncateSync(file, statSync(file).size - 4096);
}

/**
 * The whole state a job of 3 partitions holds when each partition is as of the batch
 * `asOf(partition)` names, sorted by key: a key missing from a restored partition shows too.
 */
function stateAsOf(stateAt: Map<number, Map<string, number>>, asOf: (partition: number) => number): Array<[string, number]> {
  const keys = new Set([...stateAt.values()].flatMap((state) => [...state.keys()]));
  return [...keys].flatMap((key): Array<[string, number]> => {
    const state = stateAt.get(asOf(murmur2Partitioner.partition(key, 3)))!.get(key);
    return state === undefined ? [] : [[key, state]];
  }).sort(([a], [b]) => (a < b ? -1 : 1));
}

const held = (stream: { store(): { entries(): Iterable<[string, number]> } }) => [...stream.store().entries()].sort(([a], [b]) => (a < b ? -1 : 1));

/** Starts a job of 3 partitions on the folder at `startMs`, keeping the restores and gaps it reports at start. */
async function startOn(dataDir: string, startMs: number) {
  const restored: StateRestoredEvent[] = [];
  const gaps: RecoveryIncompleteEvent[] = [];
  const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(startMs) });
  const stream = ssc.queueStream<[string, number]>().mapWithState(spec(3));
  ssc.on(BatchEvents.STATE_RESTORED, (e) => restored.push(e));
  ssc.on(BatchEvents.RECOVERY_INCOMPLETE, (e) => gaps.push(e));
  await ssc.start();
  return { ssc, stream, restored, gaps };
}

describe('restore at start chooses a snapshot the surviving partitions can continue from', () => {
  it('skips a snapshot newer than the surviving partitions and one whose copy fails its checksum, and restores from the newest that fits', async () => {
    const { dataDir, stateAt } = await snapshotted(() => 3);
    // Partitions 0 and 2 survive holding batch 2000; partition 1 is lost.
    rollBack(dataDir, 0, 2000);
    rollBack(dataDir, 2, 2000);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    corrupt(dataDir, 2000, 1);

    const { ssc, stream, restored, gaps } = await startOn(dataDir, 3000);
    try {
      assert.deepEqual(restored.map((e) => [e.snapshot, e.partitions.map((p) => [p.partition, p.lastBatch])]), [[1000, [[1, 1000]]]], '3000 is newer than the survivors, 2000 is corrupt');
      assert.deepEqual(gaps.map((g) => g.behind.map((b) => [b.partition, b.lastBatch])), [[[1, 1000]]]);
      // Each key holds the state of the batch its partition holds, and no key is missing.
      assert.deepEqual(held(stream), stateAsOf(stateAt, (p) => (p === 1 ? 1000 : 2000)));
    } finally {
      await ssc.stop();
    }
  });

  for (const lost of [1, 2]) {
    it(`stores resharded since their newest surviving snapshot, partition ${lost} lost: the healthy stores give the partition count, and no snapshot of another count is put in place`, async () => {
      const { dataDir } = await snapshotted((t) => (t === 3000 ? 3 : 2));
      rmSync(join(dataDir, 'snapshots', '3000'), { recursive: true });
      rmSync(partitionPath(dataDir, 0, lost), { recursive: true });
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(3000) });
      ssc.queueStream<[string, number]>().mapWithState(spec(3));
      await assert.rejects(ssc.start(), (error: unknown) => {
        assert.ok(error instanceof SnapshotError, String(error));
        assert.match(error.message, new RegExp(`partition ${lost}: the partition folder is missing`));
        assert.match(error.message, /has 2 partitions, the stores have 3/);
        return true;
      });
      await ssc.stop();
      assert.ok(!existsSync(partitionPath(dataDir, 0, lost)), 'nothing was put in place');
    });
  }

  it('goes by the oldest surviving partition: one behind the others rules out a snapshot the others could continue from', async () => {
    const { dataDir } = await snapshotted(() => 3);
    // Partition 0 holds batch 2000, partition 2 batch 3000; partition 1 is lost.
    rollBack(dataDir, 0, 2000);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    const { ssc, restored } = await startOn(dataDir, 3000);
    try {
      assert.deepEqual(restored.map((e) => [e.snapshot, e.partitions.map((p) => [p.partition, p.lastBatch])]), [[2000, [[1, 2000]]]], '3000 is newer than partition 0');
    } finally {
      await ssc.stop();
    }
  });

  for (const event of [BatchEvents.STATE_RESTORED, BatchEvents.RECOVERY_INCOMPLETE] as const) {
    it(`a ${event} listener that throws fails start() with its error: a job may refuse to run on a restore or a gap`, async () => {
      const { dataDir } = await snapshotted(() => 3);
      rollBack(dataDir, 0, 2000);
      rollBack(dataDir, 2, 2000);
      rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
      // Restored from 1000 (2000's copy is damaged): partition 1 misses batch 2000, which a queue cannot replay.
      corrupt(dataDir, 2000, 1);
      const refusal = new Error(`no running on ${event}`);
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(3000) });
      ssc.queueStream<[string, number]>().mapWithState(spec(3));
      const heard: string[] = [];
      ssc.on(BatchEvents.STATE_RESTORED, () => {
        heard.push(BatchEvents.STATE_RESTORED);
        if (event === BatchEvents.STATE_RESTORED) throw refusal;
      });
      ssc.on(BatchEvents.RECOVERY_INCOMPLETE, () => {
        heard.push(BatchEvents.RECOVERY_INCOMPLETE);
        if (event === BatchEvents.RECOVERY_INCOMPLETE) throw refusal;
      });
      await assert.rejects(ssc.start(), (e: unknown) => e === refusal);
      assert.ok(heard.includes(event), `${event} was emitted (heard: ${heard.join(', ')})`);
      assert.equal(ssc.state, 'stopped');
    });
  }

  it('a copy that cannot be read (EISDIR here; EIO on a failing disk) costs its snapshot only: the restore goes on to an older one, and the problem names the file', async () => {
    const { dataDir, stateAt } = await snapshotted(() => 3);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    const copy = join(dataDir, 'snapshots', '3000', 'state-0', 'partition-0001', 'data.mdb');
    rmSync(copy);
    mkdirSync(copy);
    const newest = listSnapshots(dataDir)[0];
    assert.equal(newest.batchTime, 3000);
    assert.deepEqual(await verifySnapshot(newest), [`state-0/partition-0001/data.mdb cannot be read (${copy} cannot be read: EISDIR: illegal operation on a directory, read)`]);
    const { ssc, stream, restored } = await startOn(dataDir, 4000);
    try {
      assert.deepEqual(restored.map((e) => [e.snapshot, e.partitions.map((p) => [p.partition, p.lastBatch])]), [[2000, [[1, 2000]]]]);
      assert.deepEqual(held(stream), stateAsOf(stateAt, (p) => (p === 1 ? 2000 : 3000)), 'partition 1 as of batch 2000, the others as they were');
    } finally {
      await ssc.stop();
    }
  });

  it('a damaged store beside one a first start never initialised, and no snapshot: the refusal names the damage, and the other store as never initialised', async () => {
    const dataDir = tempDir();
    openPartitionStore(partitionPath(dataDir, 0, 0)).env.close();
    mkdirSync(partitionPath(dataDir, 0, 1), { recursive: true });
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(0) });
    ssc.queueStream<[string, number]>().mapWithState(spec(2));
    await assert.rejects(ssc.start(), (e: unknown) => {
      assert.ok(e instanceof SnapshotError);
      assert.match(e.message, /^a partition store of stream 0 under .* is damaged \(partition 1: [^;)]*missing[^;)]*\); partition 0 was never initialised, so no store says how many partitions the stream has, and there is no snapshot to restore from$/);
      assert.doesNotMatch(e.message, /undefined/);
      return true;
    });
  });

  it('with no snapshot to restore from, the refusal says how many stores are damaged (every one, one, some) and that there is no snapshot', async () => {
    const refusal = async (dataDir: string, partitions: number): Promise<string> => {
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(5000) });
      ssc.queueStream<[string, number]>().mapWithState(spec(partitions));
      let message = '';
      await assert.rejects(ssc.start(), (e: unknown) => {
        assert.ok(e instanceof SnapshotError, String(e));
        message = e.message;
        return true;
      });
      await ssc.stop();
      return message;
    };
    // Every store cut short: none says the partition count.
    const everyOne = tempDir();
    await runThenStop(spec(2), { dataDir: everyOne }, words(1));
    for (const p of [0, 1]) {
      const file = join(partitionPath(everyOne, 0, p), 'data.mdb');
      truncateSync(file, statSync(file).size - 4096);
    }
    assert.match(await refusal(everyOne, 2), /^every partition store of stream 0 under .* is damaged \(partition 0: [^;]+; partition 1: [^;]+\), and there is no snapshot to restore from$/);
    // Two stores without their file beside one a first start never initialised.
    const some = tempDir();
    openPartitionStore(partitionPath(some, 0, 0)).env.close();
    for (const p of [1, 2]) mkdirSync(partitionPath(some, 0, p), { recursive: true });
    assert.match(await refusal(some, 3), /^partition stores of stream 0 under .* are damaged \(partition 1: [^;]+; partition 2: [^;]+\); partition 0 was never initialised, so no store says how many partitions the stream has, and there is no snapshot to restore from$/);
    // One partition gone from a job whose other stores say the count.
    const one = tempDir();
    await runThenStop(spec(3), { dataDir: one }, words(1));
    rmSync(partitionPath(one, 0, 1), { recursive: true });
    assert.match(await refusal(one, 3), /^partition stores of stream 0 under .* are damaged \(partition 1: the partition folder is missing\) and there is no snapshot to restore from$/);
  });

  it('a stream added after the snapshots were taken: its damaged store is refused as having no snapshot, the snapshots of the other stream passed over', async () => {
    const dataDir = tempDir();
    // Snapshot 1000 holds stream 0 only; stream 1 came with the next start.
    await runThenStop(spec(2), { dataDir, snapshotEvery: 1 }, words(1));
    assert.deepEqual(listSnapshots(dataDir).map((s) => [s.batchTime, s.manifest.streams.map((m) => m.stream)]), [[1000, [0]]]);
    const twoStreams = (startMs: number) => {
      const clock = new ManualClock(startMs);
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock });
      const input = ssc.queueStream<[string, number]>();
      input.mapWithState(spec(2));
      input.mapWithState(spec(2));
      return { ssc, input, clock };
    };
    const first = twoStreams(1000);
    await first.ssc.start();
    try {
      first.input.pushBatch(words(2));
      await first.clock.advance(1000);
    } finally {
      await first.ssc.stop();
    }
    rmSync(partitionPath(dataDir, 1, 1), { recursive: true });
    const again = twoStreams(2000);
    await assert.rejects(again.ssc.start(), (e: unknown) => {
      assert.ok(e instanceof SnapshotError, String(e));
      assert.match(e.message, /^partition stores of stream 1 under .* are damaged \(partition 1: the partition folder is missing\) and there is no snapshot to restore from$/);
      return true;
    });
    await again.ssc.stop();
  });

  it('a restore and a rescale in one start: reshards when the copy holds the batch the others hold, and otherwise says that the restore is what stands in the way', async () => {
    const rescaleTo = async (dataDir: string, startMs: number) => {
      const restored: StateRestoredEvent[] = [];
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(startMs) });
      const stream = ssc.queueStream<[string, number]>().mapWithState(spec(4));
      ssc.on(BatchEvents.STATE_RESTORED, (e) => restored.push(e));
      return { ssc, stream, restored, starting: ssc.start() };
    };
    // Partition 1 lost; the snapshot of batch 3000 holds it at the batch the others hold.
    const level = await snapshotted(() => 3);
    rmSync(partitionPath(level.dataDir, 0, 1), { recursive: true });
    const resharded = await rescaleTo(level.dataDir, 4000);
    try {
      await resharded.starting;
      assert.deepEqual(resharded.restored.map((e) => e.snapshot), [3000]);
      assert.deepEqual(new Map(resharded.stream.store().entries()), level.stateAt.get(3000));
    } finally {
      await resharded.ssc.stop();
    }
    // Its copy of 3000 damaged: partition 1 comes back at 2000, behind the others.
    const behind = await snapshotted(() => 3);
    rmSync(partitionPath(behind.dataDir, 0, 1), { recursive: true });
    corrupt(behind.dataDir, 3000, 1);
    const refused = await rescaleTo(behind.dataDir, 4000);
    await assert.rejects(refused.starting, (e: unknown) =>
      e instanceof StoreMismatchError &&
      /partition 1 was damaged and restored from the snapshot of batch 2000, and this start also asks for 4 partitions where the stores have 3: a reshard needs every partition at the same batch and state version\. Start once with numPartitions 3/.test(e.message));
    assert.deepEqual(refused.restored.map((e) => [e.snapshot, e.partitions.map((p) => p.partition)]), [[2000, [1]]], 'the restore was reported');
    assert.equal(refused.ssc.state, 'stopped');
    // Whatever the failed start opened is closed: no descriptor of this process is left on the folder's files.
    const openHere = readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/self/fd/${fd}`)];
      } catch {
        return [];
      }
    }).filter((target) => target.startsWith(behind.dataDir));
    assert.deepEqual(openHere, []);
  });

  it("checks only the copies it restores: a damaged copy of a healthy partition does not cost the snapshot", async () => {
    const { dataDir, stateAt } = await snapshotted(() => 3);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    corrupt(dataDir, 3000, 0);
    const { ssc, stream, restored } = await startOn(dataDir, 4000);
    try {
      assert.deepEqual(restored.map((e) => [e.snapshot, e.partitions.map((p) => [p.partition, p.lastBatch])]), [[3000, [[1, 3000]]]], 'partition 1 from the newest snapshot; partition 0 is not restored');
      assert.equal(restored[0].damagedDir, undefined, 'no damaged store was kept aside: partition 1\'s folder was gone');
      assert.equal(existsSync(join(dataDir, 'damaged')), false);
      assert.deepEqual(new Map(stream.store().entries()), stateAt.get(3000));
    } finally {
      await ssc.stop();
    }
  });

  it('skips a snapshot whose stores a newer statestream wrote (a newer store format), and restores from the newest it can read', async () => {
    const { dataDir, stateAt } = await snapshotted(() => 3);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    // What a newer statestream's snapshot of batch 3000 would say of its stores.
    const manifestFile = join(dataDir, 'snapshots', '3000', 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { streams: Array<{ storeFormatVersion: number }> };
    manifest.streams[0].storeFormatVersion = FORMAT_VERSION + 1;
    writeFileSync(manifestFile, JSON.stringify(manifest));

    const { ssc, stream, restored } = await startOn(dataDir, 4000);
    try {
      assert.deepEqual(restored.map((e) => [e.snapshot, e.partitions.map((p) => [p.partition, p.lastBatch])]), [[2000, [[1, 2000]]]], '3000 is in a store format this version does not read');
      assert.deepEqual(held(stream), stateAsOf(stateAt, (p) => (p === 1 ? 2000 : 3000)), 'partition 1 as of batch 2000, the others as they were');
    } finally {
      await ssc.stop();
    }
  });

  it('readSnapshotState refuses a snapshot of stores in a newer format when it is called, before any entry is read', async () => {
    const { dataDir } = await snapshotted(() => 3);
    const path = join(dataDir, 'snapshots', '3000');
    const manifestFile = join(path, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { streams: Array<{ storeFormatVersion: number }> };
    assert.doesNotThrow(() => readSnapshotState(path));
    manifest.streams[0].storeFormatVersion = FORMAT_VERSION + 1;
    writeFileSync(manifestFile, JSON.stringify(manifest));
    assert.throws(() => readSnapshotState(path), (error: unknown) => {
      assert.ok(error instanceof SnapshotError, String(error));
      assert.match(error.message, new RegExp(`the snapshot at .*3000 cannot be read: each of its stores is in store format ${FORMAT_VERSION + 1}, written by a newer statestream`));
      return true;
    });

    // The command-line restore refuses it too, and changes nothing.
    const before = readFileSync(join(partitionPath(dataDir, 0, 1), 'data.mdb'));
    const result = spawnSync(process.execPath, [fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url)), 'snapshot', 'restore', '3000', '--data-dir', dataDir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 1, result.stdout);
    assert.match(result.stderr, new RegExp(`snapshot 3000 cannot be restored by this statestream, nothing was changed: each of its stores is in store format ${FORMAT_VERSION + 1}`));
    assert.deepEqual(readFileSync(join(partitionPath(dataDir, 0, 1), 'data.mdb')), before);
  });

  it('readSnapshotState refuses a snapshot whose manifest is in a newer format, naming both versions', async () => {
    const { dataDir } = await snapshotted(() => 3);
    const path = join(dataDir, 'snapshots', '3000');
    const manifestFile = join(path, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { formatVersion: number };
    manifest.formatVersion = SNAPSHOT_FORMAT_VERSION + 1;
    writeFileSync(manifestFile, JSON.stringify(manifest));
    assert.throws(() => readSnapshotState(path), (error: unknown) => {
      assert.ok(error instanceof SnapshotError, String(error));
      assert.match(error.message, new RegExp(`the snapshot at .*3000 has format version ${SNAPSHOT_FORMAT_VERSION + 1}; this statestream reads up to ${SNAPSHOT_FORMAT_VERSION}`));
      return true;
    });
  });

  it('a store whose file cannot be read (EISDIR here; EIO on a failing disk) fails the start with a StoreOpenError naming the partition and the file, and nothing is restored over it', async () => {
    const { dataDir } = await snapshotted(() => 3);
    const file = join(partitionPath(dataDir, 0, 1), 'data.mdb');
    rmSync(file);
    mkdirSync(file);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(4000) });
    ssc.queueStream<[string, number]>().mapWithState(spec(3));
    await assert.rejects(ssc.start(), (error: unknown) => {
      assert.ok(error instanceof StoreOpenError, String(error));
      assert.match(error.message, /^partition 1 of mapWithState stream 0 at .*partition-0001 could not be read to check it: .*EISDIR.*; nothing is restored over it$/);
      return true;
    });
    assert.ok(!readdirSync(dataDir).includes('damaged'), 'nothing was moved aside');
  });

  it('every store damaged after a reshard no snapshot has seen: refuses naming the partitions past the snapshot\'s count, and moves nothing', async () => {
    // Two partitions at batches 1000 and 2000 (snapshotted), three from batch 3000, whose snapshot is gone.
    const { dataDir } = await snapshotted((t) => (t === 3000 ? 3 : 2));
    rmSync(join(dataDir, 'snapshots', '3000'), { recursive: true });
    for (let p = 0; p < 3; p++) {
      const file = join(partitionPath(dataDir, 0, p), 'data.mdb');
      truncateSync(file, statSync(file).size - 4096);
    }
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(3000) });
    ssc.queueStream<[string, number]>().mapWithState(spec(3));
    await assert.rejects(ssc.start(), (error: unknown) => {
      assert.ok(error instanceof SnapshotError, String(error));
      assert.match(error.message, /^every partition store of stream 0 under .* is damaged, and the stores hold partitions up to 2 while the newest snapshot has 2 \(the stream was resharded since\): no snapshot can restore partitions 2 /);
      assert.deepEqual(error.context.damaged, [0, 1, 2]);
      return true;
    });
    assert.ok(!readdirSync(dataDir).includes('damaged'), 'nothing was moved aside');
  });

  it('refuses with a SnapshotError that says why each snapshot was rejected (another partition count among them), and moves nothing', async () => {
    // Two partitions at batch 1000, re-sharded to three from batch 2000 on.
    const { dataDir } = await snapshotted((t) => (t === 1000 ? 2 : 3));
    assert.deepEqual(listSnapshots(dataDir).map((s) => [s.batchTime, s.manifest.streams[0].numPartitions]), [[3000, 3], [2000, 3], [1000, 2]]);
    rollBack(dataDir, 0, 2000);
    rollBack(dataDir, 2, 2000);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    corrupt(dataDir, 2000, 1);

    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(3000) });
    ssc.queueStream<[string, number]>().mapWithState(spec(3));
    await assert.rejects(ssc.start(), (error: unknown) => {
      assert.ok(error instanceof SnapshotError, String(error));
      assert.match(error.message, /partition 1: the partition folder is missing/);
      assert.match(error.message, /3000: newer than batch 2000 the surviving partitions hold/);
      assert.match(error.message, /2000: .*partition-0001\/data\.mdb does not match its checksum/);
      assert.match(error.message, /1000: has 2 partitions, the stores have 3/);
      assert.deepEqual(error.context.damaged, [1]);
      return true;
    });
    assert.ok(!existsSync(partitionPath(dataDir, 0, 1)), 'nothing was put in place');
    assert.ok(!readdirSync(dataDir).includes('damaged'), 'nothing was moved aside');
  });
});
