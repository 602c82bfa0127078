import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, type BatchCompletedEvent, type PartitionRestartedEvent } from '../../src/index.js';
import type { FaultyValue } from '../fixtures/faulty.js';
import { fixture, keyedJob, sorted, tempDir } from '../helpers.js';

/** The batch.completed events of a job, newest last. */
function completedEvents(job: Awaited<ReturnType<typeof keyedJob>>): BatchCompletedEvent[] {
  const events: BatchCompletedEvent[] = [];
  job.ssc.on(BatchEvents.COMPLETED, (e) => events.push(e));
  return events;
}

const keys = (n: number, prefix = 'k') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

/** A word count over `batches` on a fresh folder: each batch's outputs (sorted), the state after the last, and the batch events. */
async function countBatches(batches: Array<Array<[string, number]>>, partitions: number, options: { threads: number; stateCacheEntries?: number }) {
  const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(partitions), { dataDir: tempDir(), ...options });
  const events = completedEvents(job);
  try {
    const outputs = [];
    for (const batch of batches) outputs.push(sorted(await job.batch(batch)));
    return { outputs, state: [...job.stream.store().entries()], events };
  } finally {
    await job.ssc.stop();
  }
}

describe('partitions pinned to their worker threads', () => {
  it('a partition runs on the same thread batch after batch, and reads its keys from memory after the first batch', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(4), { dataDir: tempDir(), threads: 2 });
    const events = completedEvents(job);
    try {
      const words = keys(200);
      for (let b = 0; b < 4; b++) await job.batch(words.map((w) => [w, 1] as [string, number]));
      const threads = events.map((e) => e.partitionStats[0].map((p) => p.thread));
      for (const t of threads) assert.deepEqual(t, threads[0], 'every partition kept its thread');
      for (const e of events) assert.deepEqual(e.partitionStats[0].map((p) => p.partition), [0, 1, 2, 3]);
      assert.equal(new Set(threads[0]).size, 2, 'four partitions are spread over the two threads');
      // The store was empty, so even the first batch asked LMDB nothing; later batches hit memory.
      for (const e of events) assert.equal(e.partitionStats[0].reduce((n, p) => n + p.storeReads, 0), 0);
      assert.equal(events.at(-1)!.partitionStats[0].reduce((n, p) => n + p.memoryHits, 0), 200);
      // Without a bound, memory holds every key once: the partitions' entries add up to the 200 keys.
      for (const e of events) assert.equal(e.partitionStats[0].reduce((n, p) => n + p.memoryEntries, 0), 200);
      for (const w of words) assert.equal(job.stream.store().get(w), 4);
    } finally {
      await job.ssc.stop();
    }
  });

  it('a job restarted on stores that hold state reads each key from LMDB once, then from memory', async () => {
    const dataDir = tempDir();
    const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);
    const first = await keyedJob(spec(), { dataDir, threads: 2 });
    await first.batch(keys(100).map((w) => [w, 1] as [string, number]));
    // The last two batches touch other keys: a clean stop names those for the next start's
    // warm-up, which may run before or after that start's first batch; the k keys it leaves alone.
    for (const prefix of ['x', 'y']) await first.batch(keys(50, prefix).map((w) => [w, 1] as [string, number]));
    await first.ssc.stop();

    const again = await keyedJob(spec(), { dataDir, threads: 2, startMs: 5000 });
    const events = completedEvents(again);
    try {
      const out = await again.batch(keys(100).map((w) => [w, 1] as [string, number]));
      assert.deepEqual(sorted(out), sorted(keys(100).map((w) => [w, 2])));
      assert.equal(events[0].partitionStats[0].reduce((n, p) => n + p.storeReads, 0), 100);
      await again.batch(keys(100).map((w) => [w, 1] as [string, number]));
      assert.equal(events[1].partitionStats[0].reduce((n, p) => n + p.storeReads, 0), 0);
      assert.equal(events[1].partitionStats[0].reduce((n, p) => n + p.memoryHits, 0), 100);
    } finally {
      await again.ssc.stop();
    }
  });

  it("partitions are dealt over the threads across streams: two streams of one partition each get a thread each", async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, threads: 2, clock, dataDir: tempDir() });
    const input = ssc.queueStream<[string, number]>();
    const count = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(1);
    input.mapWithState(count());
    input.mapWithState(count());
    const events: BatchCompletedEvent[] = [];
    ssc.on(BatchEvents.COMPLETED, (e) => events.push(e));
    await ssc.start();
    try {
      input.pushBatch([['a', 1]]);
      await clock.advance(1000);
      // Thread ids count on over the process's life: what matters is that they differ.
      const [[zero], [one]] = events[0].partitionStats.map((stream) => stream.map((p) => p.thread));
      assert.notEqual(zero, one, `stream 0 on thread ${zero}, stream 1 on another`);
    } finally {
      await ssc.stop();
    }
  });

  it('a worker killed mid-batch hands its partitions to a fresh thread, which rebuilds them from LMDB with exact counts', async () => {
    const dir = tempDir();
    const marker = join(dir, 'fault-fired');
    const spec = StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty')).numPartitions(4);
    const job = await keyedJob(spec, { dataDir: join(dir, 'data'), threads: 2 });
    const events = completedEvents(job);
    const restarts: PartitionRestartedEvent[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
    try {
      const words = keys(400);
      await job.batch(words.map((w) => [w, 1] as [string, FaultyValue]));
      const before = events[0].partitionStats[0].map((p) => p.thread);
      // Every partition's shard is long enough that the worker dies with work in hand.
      await job.batch([...words.map((w) => [w, 1] as [string, FaultyValue]), ['crash', { exitOnce: marker }], ...words.map((w) => [w, 1] as [string, FaultyValue])]);
      assert.ok(restarts.length >= 1, 'a partition was restarted');
      const crashed = restarts[0].partition;
      const replay = events[1].partitionStats[0][crashed];
      assert.notEqual(replay.thread, before[crashed], 'the crashed partition was replayed on a fresh thread');
      assert.ok(replay.storeReads > 0, 'the fresh thread rebuilt the partition from LMDB');
      for (const w of words) assert.equal(job.stream.store().get(w), 3, `${w}: no record lost, none counted twice`);
      assert.equal(job.stream.store().get('crash'), 1);

      const out = await job.batch(words.map((w) => [w, 1] as [string, FaultyValue]));
      assert.deepEqual(sorted(out), sorted(words.map((w) => [w, 4])));
      const after = events[2].partitionStats[0].map((p) => p.thread);
      for (let p = 0; p < 4; p++) {
        if (before[p] === before[crashed]) assert.equal(after[p], replay.thread, `partition ${p}, pinned with it, moved with it`);
        else assert.equal(after[p], before[p], `partition ${p} stayed on its thread`);
      }
    } finally {
      await job.ssc.stop();
    }
  });

  it('a state far larger than the memory bound gives the same outputs and state as one that fits', async () => {
    // 3,000 keys over 12 batches, each batch revisiting old keys: with a bound of 64 entries
    // per thread, most reads go back to LMDB.
    const batches = Array.from({ length: 12 }, (_, b) => Array.from({ length: 500 }, (_, i) => [`w${(i * 7 + b * 311) % 3000}`, 1] as [string, number]));
    const run = (stateCacheEntries: number | undefined) => countBatches(batches, 4, { threads: 2, ...(stateCacheEntries === undefined ? {} : { stateCacheEntries }) });
    const fits = await run(undefined);
    const bounded = await run(64);
    assert.deepEqual(bounded.outputs, fits.outputs);
    assert.deepEqual(bounded.state, fits.state);
    const reads = bounded.events.reduce((n, e) => n + e.partitionStats[0].reduce((m, p) => m + p.storeReads, 0), 0);
    assert.ok(reads > 1000, `the bounded job read evicted keys back from LMDB (${reads} reads)`);
    for (const e of bounded.events) {
      const perThread = new Map<number, number>();
      for (const p of e.partitionStats[0]) perThread.set(p.thread, (perThread.get(p.thread) ?? 0) + p.memoryEntries);
      for (const [thread, entries] of perThread) assert.ok(entries > 0 && entries <= 64, `thread ${thread} holds ${entries} entries, none or over its bound of 64`);
    }
    const none = await run(0);
    assert.deepEqual(none.outputs, fits.outputs, 'no memory at all: every read goes to LMDB');
    assert.deepEqual(none.state, fits.state);
  });

  it('memory that came to hold every key, then turned its generations, reads the keys it dropped from LMDB again', async () => {
    // One partition of 80 keys under a bound of 100 (generations of 50): after the second
    // batch memory holds every key and answers misses itself; the next batches read half the
    // keys, turning the generations and dropping the others, which the last batch reads.
    const all = keys(80);
    const batches = [all, all, all.slice(0, 50), all.slice(50), all.slice(20, 60), all, all.slice(0, 30), all].map((words) => words.map((w) => [w, 1] as [string, number]));
    const run = (stateCacheEntries: number) => countBatches(batches, 1, { threads: 1, stateCacheEntries });
    const fits = await run(10_000);
    const tight = await run(100);
    assert.deepEqual(tight.outputs, fits.outputs);
    assert.deepEqual(tight.state, fits.state);
  });
});
