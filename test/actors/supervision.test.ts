import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { BatchEvents, ManualClock, PoisonRecordError, StateSpec, StreamingContext, WorkerCrashError, murmur2Partitioner, type BatchCompletedEvent, type PartitionRestartedEvent, type RecoveryIncompleteEvent, type WorkerReplacedEvent } from '../../src/index.js';
import type { FaultyValue } from '../fixtures/faulty.js';
import { fixture, keyedJob, sorted, tempDir } from '../helpers.js';
import { parseSamples } from '../metrics/scrape.js';
import { waitUntil } from '../wait.js';

/** The context's worker.replaced events and the process's STATESTREAM_WORKER warnings, until `off()`. */
function replacements(ssc: StreamingContext) {
  const warnings: Error[] = [];
  const replaced: WorkerReplacedEvent[] = [];
  ssc.on(BatchEvents.WORKER_REPLACED, (e) => void replaced.push(e));
  const onWarning = (warning: Error) => void ((warning as { code?: string }).code === 'STATESTREAM_WORKER' && warnings.push(warning));
  process.on('warning', onWarning);
  return { warnings, replaced, off: () => process.off('warning', onWarning) };
}

const faulty = () => StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty'));

/** Stream 0 dead-letters poisoned records and commits every batch; stream 1, of `partitions` partitions, stops on them. */
const twoStreams = (partitions: number) => (ssc: StreamingContext) => {
  const input = ssc.queueStream<[string, FaultyValue]>();
  input.mapWithState(faulty().numPartitions(2).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 }));
  input.mapWithState(faulty().numPartitions(partitions).onRecordFailure({ policy: 'stop', maxAttempts: 1 }));
  return input;
};

/** The gaps a context re-created on the folder reports as it starts. */
async function gapsAtStart(dataDir: string, startMs: number, graph: (ssc: StreamingContext) => unknown): Promise<RecoveryIncompleteEvent[]> {
  const gaps: RecoveryIncompleteEvent[] = [];
  const again = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock: new ManualClock(startMs), threads: 1 });
  graph(again);
  again.on(BatchEvents.RECOVERY_INCOMPLETE, (e) => gaps.push(e));
  await again.start();
  await again.stop();
  return gaps;
}

describe('supervision: a worker that dies mid-batch is replaced and the shard replayed', () => {
  for (const [name, fault] of [
    ['the worker exits (process.exit in the mapping function)', (marker: string): FaultyValue => ({ exitOnce: marker })],
    ['an error is thrown outside the mapping function', (marker: string): FaultyValue => ({ throwOutsideOnce: marker })],
  ] as const) {
    it(`${name}: no record lost, none counted twice`, async () => {
      const dir = tempDir();
      const marker = join(dir, 'fault-fired');
      const job = await keyedJob(faulty().numPartitions(2), { dataDir: join(dir, 'data'), threads: 2 });
      const restarts: PartitionRestartedEvent[] = [];
      job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
      const replaced: WorkerReplacedEvent[] = [];
      job.ssc.on(BatchEvents.WORKER_REPLACED, (e) => void replaced.push(e));
      try {
        await job.batch([['a', 1], ['b', 1]]);
        // The crash comes after 'a' and 'b' were updated in the dying worker's memory.
        const out = await job.batch([['a', 1], ['b', 1], ['crash', fault(marker)], ['a', 1]]);
        assert.ok(existsSync(marker), 'the fault fired');
        assert.equal(restarts.length, 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.deepEqual(replaced, [], 'a death in a batch is a partition restart, not a thread replaced between batches');
        assert.equal(restarts[0].batchTime, 2000);
        assert.deepEqual(sorted(out), [['a', 2], ['a', 3], ['b', 2], ['crash', 1]]);
        assert.equal(job.stream.store().get('a'), 3);
        assert.equal(job.stream.store().get('b'), 2);
        assert.deepEqual(sorted(await job.batch([['a', 1], ['crash', 1]])), [['a', 4], ['crash', 2]], 'the job carries on');
      } finally {
        await job.ssc.stop();
      }
    });
  }

  it('a worker that dies between batches (work its mapping function left behind fails later) is replaced with a warning and an event, counted as restarts, and the job counts on from LMDB', async () => {
    const dir = tempDir();
    const marker = join(dir, 'fault-fired');
    const registry = new Registry();
    const job = await keyedJob(faulty().numPartitions(2), { dataDir: join(dir, 'data'), threads: 2, metrics: { registry }, ui: { port: 0 } });
    const { warnings, replaced, off } = replacements(job.ssc);
    try {
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1], ['late', { throwLaterOnce: marker }]])), [['a', 1], ['b', 1], ['late', 1]]);
      await waitUntil('the warning that the thread died', () => warnings.length > 0, { timeoutMs: 10_000 });
      assert.match(warnings[0].message, /^worker thread \d \(partitions 0:\d(, 0:\d)*, as stream:partition\) died between batches: failure after the batch; a fresh thread took its place/);
      // The event names the same thread and partitions: the one 'late' is routed to, pinned round-robin.
      assert.equal(replaced.length, 1);
      const late = murmur2Partitioner.partition('late', 2);
      assert.deepEqual(replaced[0].partitions, [{ stream: 0, partition: late }]);
      assert.equal(replaced[0].worker, late);
      assert.match(warnings[0].message, new RegExp(`^worker thread ${late} \\(partitions 0:${late},`));
      assert.equal(replaced[0].cause.message, 'failure after the batch');
      // Metrics and the status page count it as a restart of that partition.
      const restarts = parseSamples(await registry.metrics()).filter((s) => s.name === 'statestream_partition_restarts_total');
      assert.deepEqual(restarts.map((s) => [s.labels.partition, s.value]).sort(), [['0', late === 0 ? 1 : 0], ['1', late === 1 ? 1 : 0]]);
      const status = (await (await fetch(`${job.ssc.endpoints().ui!}api/status`)).json()) as { restarts: Array<{ partition: number; batchTime: number | null; restart: number | null; cause: string }> };
      assert.deepEqual(status.restarts.map((r) => [r.partition, r.batchTime, r.restart]), [[late, null, null]]);
      assert.match(status.restarts[0].cause, /failure after the batch/);
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1], ['late', 1]])), [['a', 2], ['b', 2], ['late', 2]], 'the job carries on with every count');
      // The fresh thread later exits without an error: its event names that, not the error its predecessor died of.
      await job.batch([['late', { exitLaterOnce: join(dir, 'exited') }]]);
      await waitUntil('the second thread replaced', () => replaced.length === 2, { timeoutMs: 10_000 });
      assert.match(replaced[1].cause.message, /^the thread exited while it ran no task/);
    } finally {
      off();
      await job.ssc.stop();
    }
  });

  it('a worker that exits between batches (process.exit left behind by its mapping function) is replaced with a warning and an event too, and the job counts on', async () => {
    const dir = tempDir();
    const job = await keyedJob(faulty().numPartitions(2), { dataDir: join(dir, 'data'), threads: 2 });
    const { warnings, replaced, off } = replacements(job.ssc);
    try {
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1], ['late', { exitLaterOnce: join(dir, 'exited') }]])), [['a', 1], ['b', 1], ['late', 1]]);
      await waitUntil('the warning that the thread exited', () => warnings.length > 0, { timeoutMs: 10_000 });
      const late = murmur2Partitioner.partition('late', 2);
      assert.deepEqual(replaced.map((e) => [e.worker, e.partitions]), [[late, [{ stream: 0, partition: late }]]]);
      assert.match(replaced[0].cause.message, /^the thread exited while it ran no task/);
      assert.match(warnings[0].message, new RegExp(`^worker thread ${late} \\(partitions 0:${late}, as stream:partition\\) died between batches: the thread exited`));
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1], ['late', 1]])), [['a', 2], ['b', 2], ['late', 2]], 'the job carries on with every count');
    } finally {
      off();
      await job.ssc.stop();
    }
    assert.equal(replaced.length, 1, 'a clean stop replaces no thread');
  });

  it('a worker that dies after its commit: the replay finds the batch in the batch log and hands back the outputs it recorded, applying nothing twice', async () => {
    const dir = tempDir();
    const marker = join(dir, 'died');
    const spec = StateSpec.function<string, number | { dieAfterCommit: string }, number, [string, number]>(fixture('die-after-commit')).numPartitions(1);
    const job = await keyedJob(spec, { dataDir: join(dir, 'data'), threads: 1 });
    const restarts: PartitionRestartedEvent[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
    try {
      await job.batch([['a', 1]]);
      const out = await job.batch([['a', 1], ['b', { dieAfterCommit: marker }], ['a', 1]]);
      assert.equal(readFileSync(marker, 'utf8'), 'died after committing batch 2000', 'the worker died after the commit');
      assert.deepEqual(restarts.map((r) => [r.partition, r.batchTime]), [[0, 2000]], 'and was restarted');
      assert.deepEqual(out, [['a', 2], ['b', 1], ['a', 3]], 'the outputs recorded with the commit');
      assert.equal(job.stream.store().get('a'), 3, 'the batch was not applied again');
      assert.deepEqual(await job.batch([['a', 1]]), [['a', 4]], 'the job carries on');
    } finally {
      await job.ssc.stop();
    }
  });

  it('a worker that dies after committing an idle sweep: the keys it timed out are reported with the batch', async () => {
    const dir = tempDir();
    const marker = join(dir, 'died');
    const spec = StateSpec.function<string, number | { dieAfterCommit: string }, number, unknown>(fixture('idle-die-after-commit')).numPartitions(1).timeout(1500);
    const job = await keyedJob(spec, { dataDir: join(dir, 'data'), threads: 1 });
    const completed: BatchCompletedEvent[] = [];
    job.ssc.on(BatchEvents.COMPLETED, (e) => completed.push(e));
    try {
      await job.batch([['a', 1], ['b', 1], ['c', 1]]);
      await job.batch([['c', 1]]);
      // At 3000, a and b (last updated at 1000) time out; c's record arms the death after the commit.
      const out = await job.batch([['c', { dieAfterCommit: marker }]]);
      assert.equal(readFileSync(marker, 'utf8'), 'died after committing batch 3000', 'the worker died after the commit');
      assert.deepEqual(out.map((o) => JSON.stringify(o)).sort(), ['["c",3]', '["timeout","a",1]', '["timeout","b",1]'], 'the outputs recorded with the commit');
      assert.equal(completed.at(-1)!.partitionStats[0][0].replayed, true, 'the partition handed the batch back from its log');
      assert.equal(completed.at(-1)!.keysTimedOut, 2, 'the batch reports the two keys its sweep timed out');
    } finally {
      await job.ssc.stop();
    }
  });

  it('the restart limit holds per batch: a worker that dies once in each of several batches never fails one', async () => {
    const dir = tempDir();
    const job = await keyedJob(faulty().numPartitions(1), { dataDir: join(dir, 'data'), threads: 1, maxWorkerRestarts: 1 });
    const restarts: PartitionRestartedEvent[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
    try {
      for (let i = 1; i <= 3; i++) {
        assert.deepEqual(await job.batch([['a', 1], ['crash', { exitOnce: join(dir, `fault-${i}`) }]]), [['a', i], ['crash', i]]);
      }
      assert.deepEqual(restarts.map((r) => [r.batchTime, r.restart]), [[1000, 1], [2000, 1], [3000, 1]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('partition.restarted names the stream, the partition and the batch of the shard replayed', async () => {
    const dir = tempDir();
    const crashKey = Array.from({ length: 20 }, (_, i) => `crash${i}`).find((k) => murmur2Partitioner.partition(k, 2) === 1)!;
    const job = await keyedJob(faulty().numPartitions(2), { dataDir: join(dir, 'data'), threads: 1 });
    const restarts: PartitionRestartedEvent[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
    try {
      await job.batch([['a', 1]]);
      assert.deepEqual(sorted(await job.batch([['a', 1], [crashKey, { exitOnce: join(dir, 'fault') }]])), sorted([['a', 2], [crashKey, 1]]));
      // The one thread held both partitions: partition 1's shard is replayed, and partition 0's too
      // unless it had committed before the thread died. Each event names its own partition.
      const named = restarts.map(({ stream, partition, batchTime, restart }) => ({ stream, partition, batchTime, restart }));
      assert.ok(named.some((e) => e.partition === 1), `partition 1 replayed: ${JSON.stringify(named)}`);
      assert.deepEqual(named.map((e) => e.partition).sort(), [...new Set(named.map((e) => e.partition))].sort(), 'each partition once');
      for (const e of named) assert.deepEqual({ ...e, partition: undefined }, { stream: 0, partition: undefined, batchTime: 2000, restart: 1 });
    } finally {
      await job.ssc.stop();
    }
  });

  it('a worker that keeps dying fails the batch once the restart limit is reached, and commits nothing of it', async () => {
    const dir = tempDir();
    const job = await keyedJob(faulty().numPartitions(1), { dataDir: join(dir, 'data'), threads: 1, maxWorkerRestarts: 2 });
    const restarts: PartitionRestartedEvent[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
    try {
      await job.batch([['a', 1]]);
      job.input.pushBatch([['a', 1], ['boom', { exitAlways: true }]]);
      await assert.rejects(job.clock.advance(1000), (error: unknown) => {
        assert.ok(error instanceof WorkerCrashError, String(error));
        assert.match((error as Error).message, /partition 0 of mapWithState stream 0 in batch 2000 died 3 time\(s\)/);
        return true;
      });
      assert.deepEqual(restarts.map((r) => [r.batchTime, r.restart]), [[2000, 1], [2000, 2]], 'each restart numbered');
      await assert.rejects(job.ssc.awaitIdle(), WorkerCrashError);
      assert.equal(job.stream.store().get('a'), 1, 'the failed batch left the store as the last batch did');
    } finally {
      await job.ssc.stop();
    }
  });
});

describe('a record the mapping function keeps failing on', () => {
  it('a retry gives each record its value as the source gave it, even one the failed attempt changed in place', async () => {
    const dir = tempDir();
    const spec = StateSpec.function<string, Uint8Array | { failOnce: string }, string, unknown>(fixture('reverse-bytes')).numPartitions(1).onRecordFailure({ policy: 'stop', maxAttempts: 2 });
    const job = await keyedJob(spec, { dataDir: join(dir, 'data'), threads: 1 });
    try {
      await job.batch([['k', Buffer.from('abc')], ['later', { failOnce: join(dir, 'failed') }]]);
      assert.ok(existsSync(join(dir, 'failed')), 'the first attempt failed');
      assert.equal(job.stream.store().get('k'), 'cba', 'reversed once, as one clean run does');
    } finally {
      await job.ssc.stop();
    }
  });

  it("policy 'stop': the batch fails naming partition, batch time, key and cause; nothing of it is committed", async () => {
    const job = await keyedJob(faulty().numPartitions(2).onRecordFailure({ policy: 'stop', maxAttempts: 2 }), { dataDir: tempDir() });
    const failed: number[] = [];
    job.ssc.on(BatchEvents.FAILED, (e) => failed.push(e.batchTime));
    try {
      await job.batch([['a', 1], ['b', 1]]);
      job.input.pushBatch([['a', 1], ['b', 1], ['bad', { poison: true }]]);
      await assert.rejects(job.clock.advance(1000), (error: unknown) => {
        assert.ok(error instanceof PoisonRecordError);
        const e = error as PoisonRecordError;
        assert.equal(e.context.key, 'bad');
        assert.equal(e.context.batchTime, 2000);
        assert.equal(e.context.attempts, 2);
        const partition = murmur2Partitioner.partition('bad', 2);
        assert.equal(e.context.partition, partition);
        assert.match(e.message, new RegExp(`failed 2 time\\(s\\) on key "bad" .* in partition ${partition} of mapWithState stream 0, batch 2000: poisoned record for bad`));
        return true;
      });
      assert.deepEqual(failed, [2000]);
      assert.equal(job.stream.store().get('a'), 1);
      assert.equal(job.stream.store().get('b'), 1);
      assert.equal(job.stream.store().get('bad'), undefined);
      assert.equal(job.ssc.state, 'failed');
    } finally {
      await job.ssc.stop();
    }
  });

  it("policy 'stop' with records failing in several partitions: the batch fails with the lowest partition's failure, whichever failed first", async () => {
    const job = await keyedJob(faulty().numPartitions(4).onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir: tempDir() });
    const candidates = Array.from({ length: 100 }, (_, i) => `bad-${i}`);
    const [low, high] = [1, 3].map((p) => candidates.find((k) => murmur2Partitioner.partition(k, 4) === p)!);
    try {
      // The higher partition's record first: its thread may fail before the lower one's.
      job.input.pushBatch([[high, { poison: true }], ...Array.from({ length: 50 }, (_, i): [string, FaultyValue] => [`k${i}`, 1]), [low, { poison: true }]]);
      await assert.rejects(job.clock.advance(1000), (error: unknown) => {
        assert.ok(error instanceof PoisonRecordError, String(error));
        assert.deepEqual([error.context.partition, error.context.key], [1, low]);
        return true;
      });
    } finally {
      await job.ssc.stop();
    }
  });

  it('a re-created context reports the partitions that did not commit the failed batch', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(faulty().numPartitions(2).onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir });
    // 'a' and 'bad' land in different partitions (murmur2 % 2), so one of them commits batch 1000.
    job.input.pushBatch([['a', 1], ['b', 1], ['c', 1], ['d', 1], ['bad', { poison: true }]]);
    await assert.rejects(job.clock.advance(1000), PoisonRecordError);
    await job.ssc.stop();

    const gaps = await gapsAtStart(dataDir, 1000, (ssc) => ssc.queueStream<[string, number]>().mapWithState(faulty().numPartitions(2)));
    assert.equal(gaps.length, 1);
    assert.equal(gaps[0].lastBatch, 1000);
    assert.deepEqual(gaps[0].behind.map((b) => b.lastBatch), [undefined]);
    assert.match(gaps[0].message, /^stream 0: partition \d holds no batch; the batches after that up to 1000 cannot be replayed by a queue source/);
  });

  it("a stream whose partitions stopped at two batches counts as at the newer: a start before it is refused, and the gap names the partition behind", async () => {
    const dataDir = tempDir();
    const aPartition = murmur2Partitioner.partition('a', 2);
    const bad = Array.from({ length: 20 }, (_, i) => `k${i}`).find((k) => murmur2Partitioner.partition(k, 2) !== aPartition)!;
    const job = await keyedJob(faulty().numPartitions(2).onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir });
    try {
      await job.batch([['a', 1], [bad, 1]]);
      // Batch 2000 commits in the partition of 'a' only: the other stops on the poisoned record.
      job.input.pushBatch([['a', 1], [bad, { poison: true }]]);
      await assert.rejects(job.clock.advance(1000), PoisonRecordError);
    } finally {
      await job.ssc.stop();
    }

    // A clock at 1000 would run batch 2000 again on the partition that holds it.
    const early = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock: new ManualClock(1000), threads: 1 });
    early.queueStream<[string, FaultyValue]>().mapWithState(faulty().numPartitions(2));
    await assert.rejects(early.start(), /the stores under .* hold batch 2000, but this context's first batch would be at 2000/);

    const gaps = await gapsAtStart(dataDir, 2000, (ssc) => ssc.queueStream<[string, FaultyValue]>().mapWithState(faulty().numPartitions(2)));
    assert.deepEqual(gaps.map(({ stream, lastBatch, behind }) => ({ stream, lastBatch, behind })), [{ stream: 0, lastBatch: 2000, behind: [{ partition: 1 - aPartition, lastBatch: 1000 }] }]);
  });

  it('a re-created context reports a stream that did not commit a batch another stream of the job committed', async () => {
    const dataDir = tempDir();
    const graph = twoStreams(1);
    const clock = new ManualClock(0);
    const first = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock, threads: 1 });
    const input = graph(first);
    await first.start();
    input.pushBatch([['a', 1]]);
    await clock.advance(1000);
    input.pushBatch([['a', 1], ['bad', { poison: true }]]);
    await assert.rejects(clock.advance(1000), PoisonRecordError);
    await first.stop();

    const gaps = await gapsAtStart(dataDir, 2000, graph);
    assert.deepEqual(gaps.map(({ stream, lastBatch, behind }) => ({ stream, lastBatch, behind })), [{ stream: 1, lastBatch: 2000, behind: [{ partition: 0, lastBatch: 1000 }] }]);
    assert.match(gaps[0].message, /^stream 1: partition 0 holds batch 1000; the batches after that up to 2000 cannot be replayed by a queue source/);
  });

  it('a stream behind another is reported with each partition at its own batch: one further behind names its own', async () => {
    const dataDir = tempDir();
    const graph = twoStreams(2);
    const poisoned = { poison: true } as const;
    // 'bad' in the other partition of stream 1 than 'a', 'worse' in the partition of 'a'.
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    const aPartition = murmur2Partitioner.partition('a', 2);
    const bad = keys.find((k) => murmur2Partitioner.partition(k, 2) !== aPartition)!;
    const worse = keys.find((k) => murmur2Partitioner.partition(k, 2) === aPartition)!;
    const badPartition = 1 - aPartition;
    const run = async (startMs: number, batches: Array<Array<[string, FaultyValue]>>) => {
      const clock = new ManualClock(startMs);
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock, threads: 1 });
      const input = graph(ssc);
      ssc.on(BatchEvents.RECOVERY_INCOMPLETE, () => undefined);
      await ssc.start();
      try {
        for (const [i, records] of batches.entries()) {
          input.pushBatch(records);
          if (i < batches.length - 1) await clock.advance(1000);
          else await assert.rejects(clock.advance(1000), PoisonRecordError);
        }
      } finally {
        await ssc.stop();
      }
    };
    // Batch 1000 everywhere; batch 2000 in stream 0 and in stream 1's partition of 'a'.
    await run(0, [[['a', 1]], [['a', 1], [bad, poisoned]]]);
    // Batch 3000 in stream 0 only: both of stream 1's partitions stop on it.
    await run(2000, [[[bad, poisoned], [worse, poisoned]]]);

    const gaps = await gapsAtStart(dataDir, 3000, graph);
    const behind = [{ partition: badPartition, lastBatch: 1000 }, { partition: aPartition, lastBatch: 2000 }].sort((x, y) => x.partition - y.partition);
    assert.deepEqual(gaps.map(({ stream, lastBatch, behind }) => ({ stream, lastBatch, behind })), [{ stream: 1, lastBatch: 3000, behind }]);
  });

  it("policy 'dead-letter': the record is kept in the dead-letter store and the rest of the batch commits", async () => {
    const job = await keyedJob(faulty().numPartitions(2).onRecordFailure({ policy: 'dead-letter', maxAttempts: 3 }), { dataDir: tempDir() });
    try {
      const out = await job.batch([['a', 1], ['bad', { poison: true }], ['a', 1], ['bad', 1]]);
      assert.deepEqual(sorted(out), [['a', 1], ['a', 2], ['bad', 1]]);
      const letters = job.stream.deadLetters();
      assert.equal(letters.length, 1);
      assert.equal(letters[0].key, 'bad');
      assert.deepEqual(letters[0].value, { poison: true });
      assert.equal(letters[0].batchTime, 1000);
      assert.equal(letters[0].attempts, 3);
      assert.match(letters[0].error.message, /poisoned record for bad/);
      assert.equal(job.stream.store().get('bad'), 1, 'the later good record of the same key still counts');
    } finally {
      await job.ssc.stop();
    }
  });

  it('deadLetters() keeps a letter of each batch when records at the same place in two batches fail', async () => {
    const job = await keyedJob(faulty().numPartitions(1).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 }), { dataDir: tempDir() });
    try {
      await job.batch([['x', { poison: true }], ['a', 1]]);
      await job.batch([['y', { poison: true }]]);
      assert.deepEqual(job.stream.deadLetters().map((l) => [l.batchTime, l.partition, l.key]), [[1000, 0, 'x'], [2000, 0, 'y']]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('deadLetters() lists the letters by batch, then partition, then place in the partition\'s records', async () => {
    const job = await keyedJob(faulty().numPartitions(2).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 }), { dataDir: tempDir() });
    const keys = Array.from({ length: 100 }, (_, i) => `bad-${i}`);
    const [p0a, p0b] = keys.filter((k) => murmur2Partitioner.partition(k, 2) === 0);
    const [p1a, p1b] = keys.filter((k) => murmur2Partitioner.partition(k, 2) === 1);
    const poison = (key: string): [string, FaultyValue] => [key, { poison: true }];
    try {
      await job.batch([poison(p1a), ['a', 1], poison(p0a), poison(p1b)]);
      await job.batch([poison(p0b)]);
      assert.deepEqual(job.stream.deadLetters().map((l) => [l.batchTime, l.partition, l.key]), [[1000, 0, p0a], [1000, 1, p1a], [1000, 1, p1b], [2000, 0, p0b]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('a value thrown that is not an Error is named as it was thrown, not as "[object Object]"', async () => {
    const job = await keyedJob(faulty().numPartitions(1).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 }), { dataDir: tempDir() });
    try {
      await job.batch([['text', { throwValue: 'plain words' }], ['object', { throwValue: { code: 42 } }], ['realm', { throwOtherRealm: 'made in a vm context' }]]);
      const said = new Map(job.stream.deadLetters().map((l) => [l.key, `${l.error.name}: ${l.error.message}`]));
      assert.deepEqual(Object.fromEntries(said), {
        text: 'Error: "plain words" was thrown, which is not an Error',
        object: 'Error: {"code":42} was thrown, which is not an Error',
        // An Error of another realm is an Error, named by its own name and message.
        realm: 'TypeError: made in a vm context',
      });
    } finally {
      await job.ssc.stop();
    }
  });

  it("a dead-lettered record still moves its key's time: the key times out a timeout after it, not after its last applied record", async () => {
    const job = await keyedJob(faulty().numPartitions(1).timeout(1000).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 }), { dataDir: tempDir() });
    try {
      assert.deepEqual(await job.batch([['k', 1]]), [['k', 1]]); // 1000
      assert.deepEqual(await job.batch([['k', { poison: true }]]), []); // 2000: dead-lettered
      assert.equal(job.stream.deadLetters().length, 1);
      assert.deepEqual(await job.batch([]), [], '3000: k was last seen at 2000, idle 1000 ms, not more');
      assert.deepEqual(await job.batch([]), [['timeout', 'k', 1]], '4000: k times out, its count as the applied record left it');
    } finally {
      await job.ssc.stop();
    }
  });

  it('maxAttempts is 3 unless given: a record that fails twice is applied on its third try, one that fails three times is not', async () => {
    const dir = tempDir();
    const job = await keyedJob(faulty().numPartitions(1).onRecordFailure({ policy: 'dead-letter' }), { dataDir: join(dir, 'data') });
    try {
      assert.deepEqual(await job.batch([['f', { failTimes: 2, counter: join(dir, 'attempts-f') }]]), [['f', 1]]);
      assert.deepEqual(await job.batch([['g', { failTimes: 3, counter: join(dir, 'attempts-g') }]]), []);
      assert.deepEqual(job.stream.deadLetters().map((l) => [l.key, l.attempts]), [['g', 3]]);
    } finally {
      await job.ssc.stop();
    }
    // No onRecordFailure at all: policy 'stop', with the same three tries.
    const plain = await keyedJob(faulty().numPartitions(1), { dataDir: join(dir, 'plain') });
    try {
      assert.deepEqual(await plain.batch([['f', { failTimes: 2, counter: join(dir, 'plain-attempts-f') }]]), [['f', 1]]);
      plain.input.pushBatch([['g', { failTimes: 3, counter: join(dir, 'plain-attempts-g') }]]);
      await assert.rejects(plain.clock.advance(1000), (e: unknown) => e instanceof PoisonRecordError && /failed 3 time\(s\) on key "g"/.test((e as Error).message));
    } finally {
      await plain.ssc.stop();
    }
  });

  it('a record that fails fewer times than maxAttempts is retried and applied once', async () => {
    const dir = tempDir();
    const counter = join(dir, 'attempts');
    const job = await keyedJob(faulty().numPartitions(1).onRecordFailure({ policy: 'stop', maxAttempts: 3 }), { dataDir: join(dir, 'data') });
    try {
      const out = await job.batch([['a', 1], ['f', { failTimes: 2, counter }], ['a', 1]]);
      assert.deepEqual(out, [['a', 1], ['f', 1], ['a', 2]]);
      assert.equal(job.stream.deadLetters().length, 0);
      // Attempts are counted per batch: a record at the same place in the next batch has its three tries too.
      const again = await job.batch([['a', 1], ['g', { failTimes: 2, counter: join(dir, 'attempts-g') }]]);
      assert.deepEqual(again, [['a', 3], ['g', 1]]);
    } finally {
      await job.ssc.stop();
    }
  });
});
