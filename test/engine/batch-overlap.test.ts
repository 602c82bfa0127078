import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, type DStream } from '../../src/index.js';
import type { GateValue } from '../fixtures/gate.js';
import { fixture, tempDir } from '../helpers.js';
import { waitUntil, within } from '../wait.js';

/** A context on a manual clock, one thread, and a gate folder for the gate fixture (test/fixtures/gate.ts). */
function gatedJob<V>() {
  const dataDir = tempDir();
  const gate = join(dataDir, 'gate');
  mkdirSync(gate);
  const clock = new ManualClock(0);
  const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: join(dataDir, 'job'), threads: 1, clock });
  return { gate, clock, ssc, input: ssc.queueStream<[string, V]>() };
}

/**
 * Three batches queued back to back into a count, whose outputs (through `between`) feed a
 * second count: each batch of the second must wait for the first's batch before it, and the
 * totals come out in batch order.
 */
async function chainedCounts(between: (counts: DStream<[string, number]>) => DStream<[string, number]>): Promise<void> {
  const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);
  const clock = new ManualClock(0);
  const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock, threads: 2 });
  const input = ssc.queueStream<[string, number]>({ oneAtATime: true });
  const counts = input.mapWithState(spec());
  const totals = between(counts).mapWithState(spec());
  const outputs: Array<[number, Array<[string, number]>]> = [];
  totals.foreachBatch((records, time) => void outputs.push([time, records]));
  await ssc.start();
  try {
    for (let i = 0; i < 3; i++) input.pushBatch([['a', 1], ['b', 1]]);
    await within(Promise.all([clock.advance(100), clock.advance(100), clock.advance(100)]), 'three batches queued back to back', { timeoutMs: 20_000 });
    assert.deepEqual(outputs.map(([time, records]) => [time, records.sort()]), [[100, [['a', 1], ['b', 1]]], [200, [['a', 3], ['b', 3]]], [300, [['a', 6], ['b', 6]]]]);
    assert.deepEqual([totals.store().get('a'), counts.store().get('a')], [6, 3]);
  } finally {
    // Bounded: batches that wait on each other for good keep the stop waiting too.
    await within(ssc.stop(), 'the stop', { timeoutMs: 10_000 });
  }
}

describe('batches that overlap on the main thread', () => {
  it('a batch queued behind one whose output fails never runs: its records are not counted', async () => {
    const dataDir = tempDir();
    const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, clock, threads: 1 });
    const input = ssc.queueStream<[string, number]>({ oneAtATime: true });
    const ran: number[] = [];
    input.mapWithState(spec()).foreachBatch(async (_, time) => {
      ran.push(time);
      // Batch 200 is generated and waits its turn meanwhile.
      await sleep(100);
      if (time === 100) throw new Error('the sink failed');
    });
    await ssc.start();
    try {
      input.pushBatch([['a', 1]]);
      input.pushBatch([['b', 1]]);
      const results = await Promise.allSettled([clock.advance(100), clock.advance(100)]);
      assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    } finally {
      await ssc.stop().catch(() => undefined);
    }
    assert.deepEqual(ran, [100]);
    const again = new StreamingContext({ batchIntervalMs: 100, dataDir, clock: new ManualClock(1000), threads: 1 });
    const counts = again.queueStream<[string, number]>().mapWithState(spec());
    again.on(BatchEvents.RECOVERY_INCOMPLETE, () => undefined);
    await again.start();
    try {
      assert.deepEqual([counts.store().get('a'), counts.store().get('b')], [1, undefined], 'batch 100 committed before its output failed; batch 200 never ran');
    } finally {
      await again.stop();
    }
  });

  it("a state stream fed by another's outputs waits for the batch before: batches queued back to back count in order", async () => {
    // Each batch adds the running count of its keys: after counts 1, 2 and 3, a total of 6.
    await chainedCounts((counts) => counts);
  });

  it("a state stream fed by a map of another's outputs waits for the batch before too: it is not sharded ahead", async () => {
    // A map and a filter between the two state streams: a pipeline over the first one's outputs.
    await chainedCounts((counts) => counts.map(([k, n]) => [k, n] as [string, number]).filter(() => true));
  });

  it('the next batch is mapped and routed while the one before applies, yet partitions and outputs see batches in order', async () => {
    const dataDir = tempDir();
    const ssc = new StreamingContext({ batchIntervalMs: 40, dataDir, threads: 2 });
    const input = ssc.queueStream<[string, number]>();
    const mappedAt = new Map<number, number>();
    const counts = input
      .map((record) => {
        mappedAt.set(record[1], performance.now());
        return record;
      })
      .mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('slow-ordered')).numPartitions(4));
    const batchOfSeq = new Map<number, number>();
    const outputBatches: number[] = [];
    counts.foreachBatch((records, time) => {
      outputBatches.push(time);
      for (const [, seq] of records) batchOfSeq.set(seq, time);
    });
    const completedAt = new Map<number, number>();
    ssc.on(BatchEvents.COMPLETED, (e) => completedAt.set(e.batchTime, performance.now()));

    await ssc.start();
    let seq = 0;
    const until = performance.now() + 1500;
    while (performance.now() < until) {
      input.pushBatch(Array.from({ length: 20 }, (_, i) => [`key${i % 8}`, ++seq] as [string, number]));
      await sleep(10);
    }
    // Let a batch take what is still queued before stopping (stop() leaves queued records).
    const deadline = performance.now() + 30_000;
    while (input.pending > 0) {
      if (performance.now() > deadline) assert.fail(`the queue still holds ${input.pending} records 30 s after the last push`);
      await sleep(10);
    }
    await ssc.stop();
    await ssc.awaitIdle();

    assert.deepEqual(outputBatches, [...outputBatches].sort((a, b) => a - b), 'outputs ran in batch order');
    assert.equal(new Set(outputBatches).size, outputBatches.length, 'each batch output once');
    assert.equal(batchOfSeq.size, seq, 'every record came out once');
    // Records keep their order per key across batches (the fixture fails the batch otherwise).
    const lastBatch = new Map<string, number>();
    const last = new Map<string, number>();
    for (let s = 1; s <= seq; s++) {
      const key = `key${((s - 1) % 20) % 8}`;
      assert.ok((lastBatch.get(key) ?? 0) <= batchOfSeq.get(s)!, `record ${s} of ${key} came out in an earlier batch than one before it`);
      lastBatch.set(key, batchOfSeq.get(s)!);
      last.set(key, s);
    }
    // Each key's state is its newest record.
    const again = new StreamingContext({ batchIntervalMs: 40, dataDir, threads: 1 });
    const state = again.queueStream<[string, number]>().mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('slow-ordered')).numPartitions(4));
    await again.start();
    try {
      for (const [key, newest] of last) assert.equal(state.store().get(key), newest, key);
    } finally {
      await again.stop();
    }
    // The situation the test is about: some batch was mapped before the one ahead of it completed.
    const times = [...completedAt.keys()].sort((a, b) => a - b);
    const overlapped = times.slice(1).filter((t, i) => {
      const mapped = [...batchOfSeq].filter(([, b]) => b === t).map(([s]) => mappedAt.get(s)!);
      return mapped.length > 0 && Math.min(...mapped) < completedAt.get(times[i])!;
    });
    assert.ok(overlapped.length > 0, 'no batch was mapped while the batch before it was still applying');
  });

  it('a batch generated while the one before it is applying on the workers is mapped then, not when its turn comes', async () => {
    const { gate, clock, ssc, input } = gatedJob<GateValue>();
    const mapped: string[] = [];
    const counts = input
      .map((record): [string, GateValue] => {
        mapped.push(record[0]);
        return record;
      })
      .mapWithState(StateSpec.function<string, GateValue, number, [string, number]>(fixture('gate')).numPartitions(1));
    await ssc.start();
    try {
      input.pushBatch([['a', { gate }]]);
      const first = clock.advance(100);
      await waitUntil('the first batch to reach its worker', () => existsSync(join(gate, 'entered')), { timeoutMs: 30_000 });
      // Batch 100 now holds its worker; batch 200 is generated behind it.
      input.pushBatch([['b', 1]]);
      const second = clock.advance(100);
      await waitUntil('batch 200 to be mapped while batch 100 applies', () => mapped.includes('b'), { timeoutMs: 5000 });
      writeFileSync(join(gate, 'open'), '');
      await first;
      await second;
      assert.deepEqual(mapped, ['a', 'b'], 'each batch mapped once');
      assert.deepEqual([...counts.store().entries()].sort(), [['a', 1], ['b', 1]]);
    } finally {
      writeFileSync(join(gate, 'open'), '');
      await ssc.stop();
    }
  });

  it('a batch queued as the one before starts is routed after that one has reached its worker, not before', async () => {
    const { gate, clock, ssc, input } = gatedJob<GateValue | 'wait-for-gate'>();
    // The third batch's map function, on the main thread, waits (synchronously, as a long
    // routing loop would) for the second batch's mapping function to begin on the worker.
    let sawSecondBatch: boolean | undefined;
    const counts = input
      .map(([key, value]): [string, GateValue] => {
        if (value !== 'wait-for-gate') return [key, value];
        const until = performance.now() + 5000;
        while (!existsSync(join(gate, 'entered')) && performance.now() < until);
        sawSecondBatch = existsSync(join(gate, 'entered'));
        return [key, 1];
      })
      .mapWithState(StateSpec.function<string, GateValue, number, [string, number]>(fixture('gate')).numPartitions(1));
    let third: Promise<void> | undefined;
    ssc.on(BatchEvents.STARTED, ({ batchTime }) => {
      if (batchTime !== 200) return;
      // The next batch is queued while this one starts, before its shards went out.
      input.pushBatch([['c', 'wait-for-gate']]);
      third = clock.advance(100);
    });
    await ssc.start();
    try {
      input.pushBatch([['a', 1]]);
      await clock.advance(100);
      input.pushBatch([['b', { gate }]]);
      const second = clock.advance(100);
      for (const until = performance.now() + 30_000; sawSecondBatch === undefined; await sleep(10)) {
        if (performance.now() > until) assert.fail('the third batch was never routed');
      }
      // Without this, the wait above ends after 5 s with the second batch not yet begun.
      assert.equal(sawSecondBatch, true, "the third batch was routed before the second batch's shards reached the worker");
      writeFileSync(join(gate, 'open'), '');
      await second;
      await third;
      assert.deepEqual([...counts.store().entries()].sort(), [['a', 1], ['b', 1], ['c', 1]]);
    } finally {
      writeFileSync(join(gate, 'open'), '');
      await ssc.stop();
    }
  });
});
