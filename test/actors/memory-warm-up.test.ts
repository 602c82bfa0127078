import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, type BatchCompletedEvent, type MemoryWarmedEvent } from '../../src/index.js';
import { RECENT_BATCHES, recentKeys, rememberBatch } from '../../src/actors/memory-warm-up.js';
import { stillServing } from '../../src/actors/between-batches.js';
import { releasePartition, workerPartition } from '../../src/actors/worker-partitions.js';
import { murmur2Partitioner } from '../../src/engine/partitioner.js';
import { encodeEntry } from '../../src/storage/codec.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { writeWarmKeys } from '../../src/storage/partition/warm-keys.js';
import { fixture, keyedJob, runThenStop, sorted, tempDir, writeBehind } from '../helpers.js';
import { waitUntil } from '../wait.js';

type Job = Awaited<ReturnType<typeof keyedJob<string, number, number, [string, number]>>>;

const keys = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `k${from + i}`);
const ones = (words: string[]) => words.map((w) => [w, 1] as [string, number]);
const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);
const onePartition = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(1);

/** The job's events of one kind, newest last (listening from when the job is handed back, before any warm-up can report). */
function listen<E extends typeof BatchEvents.COMPLETED | typeof BatchEvents.MEMORY_WARMED>(job: Pick<Job, 'ssc'>, event: E): Array<E extends typeof BatchEvents.COMPLETED ? BatchCompletedEvent : MemoryWarmedEvent> {
  const events: unknown[] = [];
  job.ssc.on(event, (e: unknown) => events.push(e));
  return events as never;
}

const storeReads = (e: BatchCompletedEvent) => e.partitionStats[0].reduce((n, p) => n + p.storeReads, 0);

/**
 * One batch of `count` keys in one partition with memory for `written` entries, then a restart
 * with memory for `read`: what its warm-up reported, once it has, after a batch of the same keys
 * counted each exactly.
 */
async function warmUpAfter(written: number, count: number, read: number): Promise<{ hinted: number; loaded: number }> {
  const dataDir = tempDir();
  await runThenStop(onePartition(), { dataDir, threads: 1, stateCacheEntries: written }, ones(keys(0, count)));
  const again = await keyedJob(onePartition(), { dataDir, threads: 1, stateCacheEntries: read, startMs: 10_000 });
  const warmed = listen(again, BatchEvents.MEMORY_WARMED);
  try {
    await waitUntil('the warm-up to report', () => warmed.length === 1);
    assert.deepEqual(sorted(await again.batch(ones(keys(0, count)))), sorted(keys(0, count).map((w) => [w, 2])));
    return { hinted: warmed[0].hinted, loaded: warmed[0].loaded };
  } finally {
    await again.ssc.stop();
  }
}

describe("worker memory across a clean restart (the keys the last batches updated, read back at start)", () => {
  it('the keys the last two batches updated are in memory again before the batches ask; older ones are not', async () => {
    const dataDir = tempDir();
    // k0…k2999, then k0…k2499 again, then k0…k999 again.
    await runThenStop(spec(), { dataDir, threads: 2 }, ones(keys(0, 3000)), ones(keys(0, 2500)), ones(keys(0, 1000)));

    const again = await keyedJob(spec(), { dataDir, threads: 2, startMs: 10_000 });
    const warmed = listen(again, BatchEvents.MEMORY_WARMED);
    const completed = listen(again, BatchEvents.COMPLETED);
    try {
      await waitUntil('both partitions warmed', () => warmed.length === 2);
      assert.deepEqual(warmed.map((e) => e.partition).sort(), [0, 1]);
      assert.equal(warmed.reduce((n, e) => n + e.hinted, 0), 2500, 'the hint names the keys of the last two batches');
      assert.equal(warmed.reduce((n, e) => n + e.loaded, 0), 2500);
      const out = await again.batch(ones(keys(0, 3500)));
      assert.deepEqual(sorted(out), sorted([...keys(0, 1000).map((w) => [w, 4]), ...keys(1000, 2500).map((w) => [w, 3]), ...keys(2500, 3000).map((w) => [w, 2]), ...keys(3000, 3500).map((w) => [w, 1])]));
      assert.equal(storeReads(completed[0]), 1000, 'only the keys outside the hint were asked of LMDB');
    } finally {
      await again.ssc.stop();
    }
  });

  it('a hint larger than half the memory of the start reading it loads half the memory and reports, and the batches after it count exactly', async () => {
    // Memory for 8 000 keys: the hint may name a quarter of it, here all 2 000 keys the batch updated.
    // The restart's memory holds 1 000: the warm-up stops at half of it, 500.
    assert.deepEqual(await warmUpAfter(8000, 2000, 1000), { hinted: 2000, loaded: 500 });
  });

  it('the hint names at most a quarter of the memory of the run that writes it', async () => {
    // Memory for 8 000 keys, 3 000 keys updated: the hint names 2 000 of them.
    assert.deepEqual(await warmUpAfter(8000, 3000, 8000), { hinted: 2000, loaded: 2000 });
  });

  it('a run that stops without having run a batch keeps the hint it read for the next start', async () => {
    const dataDir = tempDir();
    await runThenStop(onePartition(), { dataDir, threads: 1 }, ones(keys(0, 300)));
    const idle = await keyedJob(onePartition(), { dataDir, threads: 1, startMs: 10_000 });
    const idleWarmed = listen(idle, BatchEvents.MEMORY_WARMED);
    try {
      await waitUntil('the warm-up to report', () => idleWarmed.length === 1);
      assert.equal(idleWarmed[0].hinted, 300);
    } finally {
      await idle.ssc.stop();
    }
    const third = await keyedJob(onePartition(), { dataDir, threads: 1, startMs: 20_000 });
    const warmed = listen(third, BatchEvents.MEMORY_WARMED);
    const completed = listen(third, BatchEvents.COMPLETED);
    try {
      await waitUntil('the warm-up to report', () => warmed.length === 1);
      assert.equal(warmed[0].hinted, 300, 'the idle run did not write an empty hint over it');
      assert.equal(warmed[0].loaded, 300);
      assert.deepEqual(sorted(await third.batch(ones(keys(0, 300)))), sorted(keys(0, 300).map((w) => [w, 2])));
      assert.equal(storeReads(completed[0]), 0, 'every key was in memory');
    } finally {
      await third.ssc.stop();
    }
  });

  // A warm-up the stop does not end keeps the stop waiting for good: a time limit makes that a failure.
  it('a stop while the warm-up still reads a long hint ends the warm-up, and the next start counts exactly', { timeout: 60_000 }, async () => {
    const dataDir = tempDir();
    await runThenStop(onePartition(), { dataDir, threads: 1 }, ones(keys(0, 100)));
    // A hint of 250 000 keys (a quarter of the default memory), read a slice of 1 024 at a time.
    const store = openPartitionStore(partitionPath(dataDir, 0, 0));
    writeWarmKeys(store, keys(0, 250_000));
    store.env.close();
    const again = await keyedJob(onePartition(), { dataDir, threads: 1, startMs: 10_000 });
    const warmed = listen(again, BatchEvents.MEMORY_WARMED);
    // At once: the stop waits for the warm-up, which must end with it rather than wait for a turn between batches that never comes.
    await again.ssc.stop();
    assert.ok(warmed.every((e) => e.loaded <= 100), 'only the 100 keys the store holds can be loaded');
    const third = await keyedJob(onePartition(), { dataDir, threads: 1, startMs: 20_000 });
    try {
      assert.deepEqual(sorted(await third.batch(ones(keys(0, 100)))), sorted(keys(0, 100).map((w) => [w, 2])));
    } finally {
      await third.ssc.stop();
    }
  });

  it('tuple keys are read back into memory at start as tuples', async () => {
    const dataDir = tempDir();
    const tupleSpec = () => StateSpec.function<[string, number], number, number, unknown>(fixture('count')).numPartitions(2);
    const tuples = Array.from({ length: 50 }, (_, i): [[string, number], number] => [['t', i], 1]);
    await runThenStop(tupleSpec(), { dataDir, threads: 2 }, tuples);

    const again = await keyedJob(tupleSpec(), { dataDir, threads: 2, startMs: 10_000 });
    const warmed = listen(again, BatchEvents.MEMORY_WARMED);
    const completed = listen(again, BatchEvents.COMPLETED);
    try {
      await waitUntil('both partitions warmed', () => warmed.length === 2);
      assert.equal(warmed.reduce((n, e) => n + e.loaded, 0), 50);
      await again.batch(tuples);
      assert.equal(storeReads(completed[0]), 0, 'every tuple key was in memory');
      assert.deepEqual(again.stream.store().get(['t', 7]), 2);
    } finally {
      await again.ssc.stop();
    }
  });

  it('a warm-up that fails (a damaged hint) reports nothing and leaves the batches reading LMDB, exact', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir, threads: 2 }, ones(keys(0, 100)));
    // Partition 0's hint names a key LMDB cannot look up (an object).
    const store = openPartitionStore(partitionPath(dataDir, 0, 0));
    writeWarmKeys(store, [{ not: 'a key' }]);
    store.env.close();

    const again = await keyedJob(spec(), { dataDir, threads: 2, startMs: 10_000 });
    const warmed = listen(again, BatchEvents.MEMORY_WARMED);
    try {
      assert.deepEqual(sorted(await again.batch(ones(keys(0, 100)))), sorted(keys(0, 100).map((w) => [w, 2])));
    } finally {
      // The stop waits for the warm-ups: each has reported by then, or never will.
      await again.ssc.stop();
    }
    assert.deepEqual(warmed.map((e) => e.partition), [1], 'partition 1 warmed; partition 0 reported nothing');
    assert.ok(warmed.every((e) => Number.isInteger(e.hinted) && Number.isInteger(e.loaded)));
  });

  it('a batch pushed while the warm-up runs sees exact counts, and the warm-up reads values as the store holds them at start', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir, threads: 2 }, ones(keys(0, 4000)), ones(keys(0, 4000)));
    // Another writer sets every key of partition 0 to 100 after the hint was written (an import, a restore).
    const inZero = keys(0, 4000).filter((k) => murmur2Partitioner.partition(k, 2) === 0);
    writeBehind(partitionPath(dataDir, 0, 0), 5000, inZero.map((k) => [k, 100]));

    const again = await keyedJob(spec(), { dataDir, threads: 2, startMs: 10_000 });
    const warmed = listen(again, BatchEvents.MEMORY_WARMED);
    try {
      const expected = (extra: number) => keys(0, 4000).map((k) => [k, (inZero.includes(k) ? 100 : 2) + extra]);
      // At once: the warm-up's slices and the batch's chunks take turns, never interleaved within a batch.
      assert.deepEqual(sorted(await again.batch(ones(keys(0, 4000)))), sorted(expected(1)));
      await waitUntil('both partitions warmed', () => warmed.length === 2);
      assert.deepEqual(sorted(await again.batch(ones(keys(0, 4000)))), sorted(expected(2)));
      for (const k of keys(0, 4000)) assert.equal(again.stream.store().get(k), (inZero.includes(k) ? 100 : 2) + 2);
    } finally {
      await again.ssc.stop();
    }
  });

  it('work between batches stops serving a partition once its store is opened again by a later start, or released', async () => {
    const storePath = join(tempDir(), 'partition-0000');
    const first = workerPartition({ storePath, incarnation: 'first', cacheEntries: 100 });
    assert.equal(stillServing(first), true);
    const second = workerPartition({ storePath, incarnation: 'second', cacheEntries: 100 });
    assert.equal(stillServing(first), false, 'the store was opened again: the earlier partition is not served');
    assert.equal(stillServing(second), true);
    assert.equal(await releasePartition(storePath, 'second'), true);
    assert.equal(stillServing(second), false);
  });

  it('a partition names the keys its last two batches updated, as its memory holds them, up to the limit', () => {
    const partition = workerPartition({ storePath: join(tempDir(), 'partition-0000'), incarnation: 'remember', cacheEntries: 100 });
    const { store, memory } = partition;
    const commit = (batchTime: number, updated: string[]) => {
      store.env.transactionSync(() => {
        for (const key of updated) memory.put(key, encodeEntry(batchTime, batchTime), { key, state: batchTime, time: batchTime, original: memory.get(key) });
      });
      memory.committed();
      rememberBatch(partition, batchTime);
    };
    assert.deepEqual(recentKeys(partition, 10), [], 'no batch yet');
    commit(100, ['a', 'b', 'c']);
    commit(200, ['b', 'd']);
    assert.deepEqual(recentKeys(partition, 10).sort(), ['a', 'b', 'c', 'd']);
    commit(300, ['e']);
    assert.deepEqual(recentKeys(partition, 10).sort(), ['b', 'd', 'e'], 'a, c: last updated three batches ago');
    assert.equal(recentKeys(partition, 2).length, 2);
    assert.equal(RECENT_BATCHES, 2);
    store.env.close();
  });
});
