import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readSync, rmSync, truncateSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { newestSnapshot, verifySnapshot } from '../../../src/storage/snapshots/manifest.js';
import { BatchEvents, ConfigError, ManualClock, SnapshotError, StateSpec, StreamingContext, listSnapshots, murmur2Partitioner, readSnapshotState, type RecoveryIncompleteEvent, type SnapshotCompletedEvent, type StateRestoredEvent } from '../../../src/index.js';
import { openPartitionStore, partitionPath, type PartitionStore } from '../../../src/storage/partition/store.js';
import { beginSnapshot } from '../../../src/storage/snapshots/writer.js';
import { fixture, keyedJob, openDescriptorCount, runThenStop, statesOf, tempDir } from '../../helpers.js';
import { nextEvent, waitUntil, within } from '../../wait.js';
import { once } from 'node:events';

const spec = (n = 3) => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(n);
const words = (batch: number) => Array.from({ length: 300 }, (_, i) => [`w${(i * 7 + batch * 13) % 97}`, 1] as [string, number]);

/** Runs `after` on each copy LMDB writes of the store for a snapshot, once written: what a copy that went wrong leaves. */
function afterCopy(store: PartitionStore, after: (dir: string) => void): void {
  const env = store.env as unknown as { backup(dir: string, compact: boolean): Promise<void> };
  const backup = env.backup.bind(env);
  env.backup = async (dir, compact) => {
    await backup(dir, compact);
    after(dir);
  };
}

describe('snapshots', () => {
  it('rejects bad snapshot options when the context is created', () => {
    for (const snapshotEvery of [0, 1.5, -1, 'often', { batches: 0 }, { ms: 'x' }, { batches: 2, ms: 5 }, {}]) {
      assert.throws(() => new StreamingContext({ batchIntervalMs: 1000, snapshotEvery: snapshotEvery as never }), (e: unknown) => e instanceof ConfigError && /snapshotEvery/.test((e as Error).message));
    }
    assert.throws(() => new StreamingContext({ batchIntervalMs: 1000, snapshotEvery: 2, snapshotsKept: 0 }), /snapshotsKept/);
  });

  it('are taken every n batches while batches run, keep the newest N, and hold exactly their batch', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: 2, snapshotsKept: 2 });
    const done: SnapshotCompletedEvent[] = [];
    const stateAt = new Map<number, Array<[string, number]>>();
    try {
      for (let b = 1; b <= 7; b++) {
        // A snapshot still copying is not stacked with another: batches here come faster than copies.
        const copied = b % 2 === 0 ? nextEvent(job.ssc, BatchEvents.SNAPSHOT_COMPLETED, `the snapshot of batch ${b * 1000}`) : undefined;
        await job.batch(words(b));
        stateAt.set(b * 1000, [...job.stream.store().entries()] as Array<[string, number]>);
        if (copied) done.push(await copied);
      }
    } finally {
      await job.ssc.stop();
    }
    assert.deepEqual(done.map((e) => e.batchTime), [2000, 4000, 6000]);
    const kept = listSnapshots(dataDir);
    assert.deepEqual(kept.map((s) => s.batchTime), [6000, 4000]);
    assert.ok(!readdirSync(join(dataDir, 'snapshots')).some((n) => n.startsWith('.')), 'no temporary folder is left');
    const manifest = kept[0].manifest;
    assert.equal(manifest.streams[0].numPartitions, 3);
    assert.equal(manifest.streams[0].keyCount, 97);
    assert.ok(manifest.streams[0].partitions.every((p) => p.lastBatch === 6000 && /^[0-9a-f]{64}$/.test(p.sha256) && p.bytes > 0));

    // Each snapshot, used as a job's whole state, is the state after its batch.
    for (const snapshot of kept) {
      const copy = tempDir();
      await runThenStop(spec(), { dataDir: copy, startMs: 10_000 });
      rmSync(join(copy, 'state-0'), { recursive: true, force: true });
      // A job whose stores are gone starts from the snapshot found under its own data folder.
      cpSync(snapshot.path, join(copy, 'snapshots', String(snapshot.batchTime)), { recursive: true });
      const restored = await keyedJob(spec(), { dataDir: copy, startMs: 10_000 });
      try {
        assert.deepEqual([...restored.stream.store().entries()], stateAt.get(snapshot.batchTime));
      } finally {
        await restored.ssc.stop();
      }
    }
  });

  it('the newest snapshot on disk is the latest batch; readSnapshotState names its batch, and reading its entries leaves no copy open or on disk', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: 1 });
    try {
      for (let b = 1; b <= 2; b++) await job.batchWithSnapshot(words(b));
    } finally {
      await job.ssc.stop();
    }
    const [latest, older] = listSnapshots(dataDir);
    assert.deepEqual([latest.batchTime, older.batchTime], [2000, 1000]);
    const onDisk = newestSnapshot(dataDir);
    assert.deepEqual([onDisk?.batchTime, onDisk?.path, onDisk?.keyCount], [2000, latest.path, latest.manifest.streams[0].keyCount]);

    const source = readSnapshotState<string, number>(older.path);
    assert.equal(source.batchTime, 1000);
    const before = openDescriptorCount();
    // The scratch copies are made under the OS temp folder: one of this test's own, to see them go.
    const scratch = tempDir();
    const tmp = process.env.TMPDIR;
    process.env.TMPDIR = scratch;
    let entries: unknown[];
    try {
      entries = [...source.entries()];
    } finally {
      if (tmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = tmp;
    }
    assert.equal(entries.length, older.manifest.streams[0].keyCount);
    assert.equal(openDescriptorCount(), before, "each partition's scratch copy is closed once read");
    assert.deepEqual(readdirSync(scratch), [], "and removed: a copy of each partition's store left in the temp folder at every read would fill it");
  });

  it('a ManualClock started at a negative or fractional time has its snapshots listed and kept like any other', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, startMs: -3000.5, snapshotEvery: 1, snapshotsKept: 2 });
    try {
      for (let b = 1; b <= 3; b++) await job.batchWithSnapshot(words(b));
    } finally {
      await job.ssc.stop();
    }
    // Batches -2000.5, -1000.5 and -0.5: the newest two are kept.
    assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [-0.5, -1000.5]);
    assert.deepEqual(readdirSync(join(dataDir, 'snapshots')).sort(), ['-0.5', '-1000.5']);
  });

  it("readSnapshotState reads the stream it is asked for, with that stream's state version", async () => {
    const dataDir = tempDir();
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock, threads: 1, snapshotEvery: 1 });
    const words = ssc.queueStream<[string, number]>();
    const counts = words.mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2));
    words.mapWithState(StateSpec.function<string, number, number, unknown>(fixture('keep-value')).numPartitions(3).stateVersion(2, (state) => state as number));
    const copied = nextEvent(ssc, BatchEvents.SNAPSHOT_COMPLETED, 'the snapshot of batch 1000');
    await ssc.start();
    try {
      words.pushBatch([['a', 5], ['b', 7], ['a', 9]]);
      await clock.advance(1000);
      await copied;
      assert.deepEqual([...counts.store().entries()], [['a', 14], ['b', 7]]);
    } finally {
      await ssc.stop();
    }
    const [snapshot] = listSnapshots(dataDir);
    const first = readSnapshotState(snapshot.path);
    const second = readSnapshotState(snapshot.path, { stream: 1 });
    assert.deepEqual([first.stateVersion, [...first.entries()]], [1, [['a', 14, 1000], ['b', 7, 1000]]]);
    assert.deepEqual([second.stateVersion, [...second.entries()]], [2, [['a', 9, 1000], ['b', 7, 1000]]]);
    assert.throws(() => readSnapshotState(snapshot.path, { stream: 2 }), (e: unknown) => e instanceof SnapshotError && /has no stream 2 \(it has 0, 1\)/.test((e as Error).message));

    // Pruned by a running job while it was read: when the reader comes to partition 1's copy it is gone, and said so, not as a bare ENOENT.
    const pruned = join(tempDir(), 'pruned');
    cpSync(snapshot.path, pruned, { recursive: true });
    const reading = readSnapshotState(pruned).entries()[Symbol.iterator]();
    assert.deepEqual(reading.next().value, ['a', 14, 1000]);
    rmSync(pruned, { recursive: true });
    assert.throws(() => {
      for (let r = reading.next(); !r.done; r = reading.next());
    }, (e: unknown) => e instanceof SnapshotError && /the snapshot at .*pruned was removed while it was read \(state-0\/partition-0001\/data\.mdb is gone\): .* raise snapshotsKept/.test((e as Error).message));
  });

  it('old snapshots that cannot be removed are a process warning, not a silent leftover, and are kept whole', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: 1, snapshotsKept: 1 });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void ((w as { code?: string }).code === 'STATESTREAM_SNAPSHOT' && warnings.push(w));
    process.on('warning', onWarning);
    try {
      await job.batchWithSnapshot(words(1));
      // Where pruning renames snapshot 1000 before removing it: a folder in the way fails the rename.
      mkdirSync(join(dataDir, 'snapshots', '.incomplete-removed-1000', 'in-the-way'), { recursive: true });
      await job.batchWithSnapshot(words(2));
      await waitUntil('the warning', () => warnings.length > 0, { timeoutMs: 10_000 });
      assert.match(warnings[0].message, /^after the snapshot of batch 2000, older snapshots or the batch history they need could not be trimmed: ENOTEMPTY.*; the next snapshot tries again$/);
      assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [2000, 1000], 'snapshot 1000 is still there, and whole');
      assert.deepEqual(await verifySnapshot(listSnapshots(dataDir)[1]), []);
    } finally {
      process.off('warning', onWarning);
      await job.ssc.stop();
    }
  });

  it('a snapshot event listener that throws becomes a process warning, not a failed snapshot or batch', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: 1 });
    const failed: unknown[] = [];
    const warned = within(once(process, 'warning') as Promise<[Error]>, 'the process warning about the throwing listener');
    job.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, () => {
      throw new Error('listener bug');
    });
    job.ssc.on(BatchEvents.SNAPSHOT_FAILED, (e) => failed.push(e));
    try {
      await job.batch(words(1));
      assert.match((await warned)[0].message, /a snapshot\.completed event listener threw: listener bug/);
      await job.batch(words(2));
    } finally {
      await job.ssc.stop();
    }
    assert.deepEqual(failed, []);
    assert.equal(listSnapshots(dataDir)[listSnapshots(dataDir).length - 1].batchTime, 1000);
  });

  it('restore a deleted or truncated partition store at start, and say which batches a queue source cannot replay', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir, snapshotEvery: 3 }, ...[1, 2, 3, 4].map((b) => words(b)));
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    const file = join(partitionPath(dataDir, 0, 2), 'data.mdb');
    truncateSync(file, Math.floor(statSync(file).size / 2));

    const restoredEvents: StateRestoredEvent[] = [];
    const gaps: RecoveryIncompleteEvent[] = [];
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 2, clock: new ManualClock(4000) });
    const stream = ssc.queueStream<[string, number]>().mapWithState(spec());
    ssc.on(BatchEvents.STATE_RESTORED, (e) => restoredEvents.push(e));
    ssc.on(BatchEvents.RECOVERY_INCOMPLETE, (e) => gaps.push(e));
    await ssc.start();
    try {
      assert.equal(restoredEvents.length, 1);
      assert.equal(restoredEvents[0].snapshot, 3000);
      assert.equal(restoredEvents[0].path, join(dataDir, 'snapshots', '3000'), 'the snapshot restored from, by its folder');
      assert.equal(restoredEvents[0].replayed, false);
      assert.deepEqual(restoredEvents[0].partitions.map((p) => [p.partition, p.lastBatch]), [[1, 3000], [2, 3000]]);
      assert.match(restoredEvents[0].partitions[0].problem, /missing/);
      assert.match(restoredEvents[0].partitions[1].problem, /truncated/);
      assert.ok(existsSync(join(restoredEvents[0].damagedDir!, 'state-0', 'partition-0002', 'data.mdb')), 'the damaged store is kept aside');
      assert.equal(existsSync(join(restoredEvents[0].damagedDir!, 'state-0', 'partition-0001')), false, 'the missing one had nothing to keep');
      assert.equal(gaps.length, 1);
      assert.deepEqual(gaps[0].behind.map((b) => [b.partition, b.lastBatch]), [[1, 3000], [2, 3000]]);
      assert.match(gaps[0].message, /after that up to 4000 cannot be replayed/);
      assert.equal(stream.store().count(), 97);
    } finally {
      await ssc.stop();
    }
  });
});

describe('a crash in the middle of a snapshot', () => {
  it('leaves the earlier snapshots whole and usable, and the half-written one is never listed', { timeout: 120_000 }, async () => {
    const dataDir = tempDir();
    // A copy being written (.incomplete-<batchTime>-<pid>), not an old snapshot being pruned (.incomplete-removed-<batchTime>).
    const copying = (name: string) => /^\.incomplete-\d+-\d+$/.test(name);
    let killedMidCopy = false;
    for (let attempt = 0; attempt < 5 && !killedMidCopy; attempt++) {
      const child = spawn(process.execPath, [fileURLToPath(fixture('snapshot-job')), dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const dir = join(dataDir, 'snapshots');
      try {
        let snapshots = 0;
        createInterface({ input: child.stdout! }).on('line', (line) => void (line.startsWith('SNAPSHOT') && snapshots++));
        // Two whole snapshots, then kill the moment the next copy is under way.
        await waitUntil('two snapshots of the child job', () => snapshots >= 2);
        await waitUntil('the next snapshot copy to begin', () => readdirSync(dir).some(copying), { intervalMs: 1 });
      } finally {
        child.kill('SIGKILL');
        await within(exited, 'the SIGKILLed snapshot job to exit');
      }
      killedMidCopy = readdirSync(dir).some(copying);
    }
    assert.ok(killedMidCopy, 'the process died while a snapshot was being written');

    const whole = listSnapshots(dataDir);
    assert.ok(whole.length >= 2);
    for (const snapshot of whole) assert.deepEqual(await verifySnapshot(snapshot), [], `snapshot ${snapshot.batchTime} verifies`);

    // Lose a store: the start clears the half-written snapshot and restores from the newest whole one.
    rmSync(partitionPath(dataDir, 0, 0), { recursive: true });
    const restoredEvents: StateRestoredEvent[] = [];
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(Date.now() + 3_600_000) });
    const stream = ssc.queueStream<[string, number]>().mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2));
    ssc.on(BatchEvents.STATE_RESTORED, (e) => restoredEvents.push(e));
    await ssc.start();
    try {
      assert.ok(!readdirSync(join(dataDir, 'snapshots')).some((n) => n.startsWith('.incomplete-')), 'the half-written snapshot is gone');
      assert.equal(restoredEvents[0]?.snapshot, whole[0].batchTime);
      const keys = whole[0].manifest.streams[0].partitions[0].keyCount;
      const inPartition0 = [...stream.store().entries()].filter(([k]) => murmur2Partitioner.partition(k, 2) === 0).length;
      assert.equal(inPartition0, keys, 'partition 0 holds what its copy held');
    } finally {
      await ssc.stop();
    }
  });
});

describe('a snapshot as initial state', () => {
  it('seeds a job in a new data folder, with another partition count, that continues exactly like the uninterrupted job, idle timeouts included', async () => {
    const idle = (n = 3) => StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(n).timeout(2500);
    const workload = (b: number): Array<[string, number]> => Array.from({ length: 40 }, (_, i) => [`k${(i * 5 + b * 11) % (b < 4 ? 60 : 30)}`, 1]);
    const uninterrupted = await keyedJob(idle(), { dataDir: tempDir() });
    const expected: unknown[][] = [];
    try {
      for (let b = 1; b <= 8; b++) expected.push(sortedRecords(await uninterrupted.batch(workload(b))));
    } finally {
      await uninterrupted.ssc.stop();
    }

    const dataDir = tempDir();
    const first = await keyedJob(idle(), { dataDir, snapshotEvery: 4 });
    const snapshotted = nextEvent(first.ssc, BatchEvents.SNAPSHOT_COMPLETED, 'the snapshot of batch 4000');
    try {
      for (let b = 1; b <= 4; b++) assert.deepEqual(sortedRecords(await first.batch(workload(b))), expected[b - 1]);
      await snapshotted;
    } finally {
      await first.ssc.stop();
    }
    const [snapshot] = listSnapshots(dataDir);
    assert.equal(snapshot.batchTime, 4000);

    const source = readSnapshotState<string, number>(snapshot.path);
    // Into 5 partitions: a snapshot also rescales.
    const second = await keyedJob(idle(5).initialState(source), { dataDir: tempDir(), startMs: 4000 });
    try {
      for (let b = 5; b <= 8; b++) assert.deepEqual(sortedRecords(await second.batch(workload(b))), expected[b - 1], `batch ${b}`);
    } finally {
      await second.ssc.stop();
    }
  });

  it('refuses a snapshot whose copy does not match its checksum', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(2), { dataDir, snapshotEvery: 1 });
    const snapshotted = nextEvent(job.ssc, BatchEvents.SNAPSHOT_COMPLETED, 'the snapshot of batch 1000');
    try {
      await job.batch(words(1));
      await snapshotted;
    } finally {
      await job.ssc.stop();
    }
    const [snapshot] = listSnapshots(dataDir);
    const file = join(snapshot.path, snapshot.manifest.streams[0].partitions[1].file);
    truncateSync(file, statSync(file).size - 1);
    assert.throws(() => [...readSnapshotState(snapshot.path).entries()], (e: unknown) => e instanceof SnapshotError && /partition-0001.*checksum/.test((e as Error).message));
  });

  it('a copy that comes out cut short fails its snapshot, which is not listed: its checksum would have vouched for the cut bytes', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(2), { dataDir }, Array.from({ length: 5000 }, (_, i) => [`key-${i}`, 1] as [string, number]));
    const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      // Partition 1's copy is cut in half once written, as a copy that went wrong would be.
      afterCopy(stores[1], (dir) => {
        const file = join(dir, 'data.mdb');
        truncateSync(file, Math.floor(statSync(file).size / 2));
      });
      const snapshot = beginSnapshot({ dataDir, batchTime: 1000, appName: 'cut-copy', streams: [{ stream: 0, stores }], sources: [] });
      await assert.rejects(snapshot.done, (e: unknown) => e instanceof SnapshotError && /the copy of partition 1 of stream 0 is not whole/.test((e as Error).message));
      assert.deepEqual(listSnapshots(dataDir), []);
      assert.deepEqual(readdirSync(join(dataDir, 'snapshots')), [], 'nor is its half-written folder left behind');
      // Partitions at another batch than the one named: refused before anything is copied.
      await assert.rejects(
        (async () => beginSnapshot({ dataDir, batchTime: 2000, appName: 'cut-copy', streams: [{ stream: 0, stores }], sources: [] }).done)(),
        (e: unknown) => e instanceof SnapshotError && /partition 0 of stream 0 holds batch 1000, not 2000: a snapshot is taken only when every partition holds the same batch/.test((e as Error).message),
      );
      assert.deepEqual(readdirSync(join(dataDir, 'snapshots')), []);
    } finally {
      stores.forEach((s) => s.env.close());
    }
  });

  it('a snapshot records the source positions it is given, and clears a half-written folder an earlier attempt under the same pid left at its batch', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(2), { dataDir }, words(1));
    // A run killed while it snapshotted batch 1000, under this same pid (a container's first process has the same pid at each start).
    const leftover = join(dataDir, 'snapshots', `.incomplete-1000-${process.pid}`, 'state-0', 'partition-0000');
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'data.mdb'), 'the first bytes of a copy');
    const sources = [{ kind: 'kafka', zookeeperRoot: '/jobs/by-hand', positions: [{ topic: 'lines', partition: 0, offset: 42 }, { topic: 'lines', partition: 1, offset: 7 }] }];
    const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      const info = await beginSnapshot({ dataDir, batchTime: 1000, appName: 'by-hand', streams: [{ stream: 0, stores }], sources }).done;
      assert.deepEqual(readdirSync(join(dataDir, 'snapshots')), ['1000'], 'the leftover folder is gone, and the snapshot in place');
      const [listed] = listSnapshots(dataDir);
      // A restore replays the source from these positions.
      assert.deepEqual(listed.manifest.sources, sources);
      assert.equal(listed.manifest.appName, 'by-hand', 'and names the job it is of');
      assert.deepEqual(info.manifest.sources, sources);
      assert.deepEqual(await verifySnapshot(listed), []);
      assert.equal(statesOf(readSnapshotState(listed.path)).size, 97);
    } finally {
      stores.forEach((s) => s.env.close());
    }
  });

  it('a stream whose stores hold no layout is refused by name before anything is copied', () => {
    const dataDir = tempDir();
    const store = openPartitionStore(partitionPath(dataDir, 0, 0));
    try {
      assert.throws(
        () => beginSnapshot({ dataDir, batchTime: 1000, appName: 'no-layout', streams: [{ stream: 0, stores: [store] }], sources: [] }),
        (e: unknown) => e instanceof SnapshotError && /^stream 0 has no layout in .*partition-0000: nothing to snapshot$/.test((e as Error).message),
      );
      assert.ok(!existsSync(join(dataDir, 'snapshots')), 'no snapshot folder is made');
    } finally {
      store.env.close();
    }
  });

  it('readSnapshotState refuses a snapshot a copy has gone from before any entry is read, naming the copy, rather than reading the others', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(2), { dataDir }, words(1));
    const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      await beginSnapshot({ dataDir, batchTime: 1000, appName: 'missing-copy', streams: [{ stream: 0, stores }], sources: [] }).done;
    } finally {
      stores.forEach((s) => s.env.close());
    }
    const [snapshot] = listSnapshots(dataDir);
    rmSync(join(snapshot.path, snapshot.manifest.streams[0].partitions[1].file));
    const read: unknown[] = [];
    assert.throws(() => {
      for (const entry of readSnapshotState(snapshot.path).entries()) read.push(entry);
    }, (e: unknown) => e instanceof SnapshotError && /^the snapshot at .* is damaged: state-0\/partition-0001\/data\.mdb is missing$/.test((e as Error).message));
    assert.deepEqual(read, [], 'not one entry of the copy that is there');
  });

  it('a copy that LMDB reports failed fails its snapshot, with its error, even when the file it left looks whole', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(2), { dataDir }, words(1));
    const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      // Partition 1's copy is written in full, then reported failed (as an fsync or close at its end can fail).
      afterCopy(stores[1], () => {
        throw new Error('EIO: i/o error, close');
      });
      const snapshot = beginSnapshot({ dataDir, batchTime: 1000, appName: 'failed-copy', streams: [{ stream: 0, stores }], sources: [] });
      await assert.rejects(snapshot.done, (e: unknown) => e instanceof SnapshotError && /^the snapshot of batch 1000 failed: EIO: i\/o error, close$/.test((e as Error).message));
      assert.deepEqual(listSnapshots(dataDir), [], 'a snapshot whose copy failed is not listed: a restore would take it');
      assert.deepEqual(readdirSync(join(dataDir, 'snapshots')), []);
    } finally {
      stores.forEach((s) => s.env.close());
    }
  });

  it('a byte changed anywhere in a copy fails its checksum, also past the first MiB', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(1), { dataDir, snapshotEvery: 1 });
    try {
      await job.batchWithSnapshot(Array.from({ length: 60_000 }, (_, i) => [`key-${i}-${'x'.repeat(24)}`, 1] as [string, number]));
    } finally {
      await job.ssc.stop();
    }
    const [snapshot] = listSnapshots(dataDir);
    const file = join(snapshot.path, snapshot.manifest.streams[0].partitions[0].file);
    const size = statSync(file).size;
    assert.ok(size > 2 * 2 ** 20, `a copy of ${size} bytes: the test needs one over 2 MiB`);
    assert.deepEqual(await verifySnapshot(snapshot), []);
    const at = size - 4096 - 17;
    const fd = openSync(file, 'r+');
    try {
      const byte = Buffer.alloc(1);
      readSync(fd, byte, 0, 1, at);
      byte[0] ^= 0xff;
      writeSync(fd, byte, 0, 1, at);
    } finally {
      closeSync(fd);
    }
    assert.match((await verifySnapshot(snapshot)).join('\n'), /partition-0000\/data\.mdb does not match its checksum/);
  });
});

function sortedRecords(records: unknown[]): unknown[] {
  return [...records].map((r) => JSON.stringify(r)).sort();
}
