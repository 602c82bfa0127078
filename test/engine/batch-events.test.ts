import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, StreamingContext, murmur2Partitioner, type BatchCompletedEvent, type BatchStartedEvent } from '../../src/index.js';
import type { FaultyValue } from '../fixtures/faulty.js';
import type { GateValue } from '../fixtures/gate.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { waitUntil } from '../wait.js';

describe('batch events', () => {
  it('answers to the names the docs give, and to no other', async () => {
    const documented = [
      'batch.started', 'batch.completed', 'batch.failed', 'partition.restarted', 'recovery.incomplete', 'memory.warmed', 'snapshot.completed', 'snapshot.failed',
      'state.restored', 'source.data-lost', 'ownership.taken', 'ownership.lost', 'cluster.assignment', 'cluster.partition.taken', 'cluster.partition.released', 'worker.replaced',
    ];
    assert.deepEqual(Object.values(BatchEvents).sort(), [...documented].sort());
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir() });
    try {
      for (const name of documented) ssc.on(name as never, () => undefined);
      assert.throws(() => ssc.on('state.restore' as never, () => undefined), /no event "state\.restore"/);
    } finally {
      await ssc.stop();
    }
  });

  it("batch.completed's partition figures: each partition's key count after the batch, which add up to the stream's", async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(3), { dataDir: tempDir(), threads: 1 });
    const completed: BatchCompletedEvent[] = [];
    job.ssc.on(BatchEvents.COMPLETED, (e) => void completed.push(e));
    try {
      const words = Array.from({ length: 40 }, (_, i) => `w${i}`);
      await job.batch(words.map((w) => [w, 1] as [string, number]));
      await job.batch([['w0', 1], ['new', 1]]);
      for (const [i, e] of completed.entries()) {
        const perPartition = new Map<number, number>();
        for (const [key] of job.stream.store().entries() as Iterable<[string, number]>) {
          if (i === 0 && key === 'new') continue;
          const p = murmur2Partitioner.partition(key, 3);
          perPartition.set(p, (perPartition.get(p) ?? 0) + 1);
        }
        assert.deepEqual(e.partitionStats[0].map((p) => [p.partition, p.keyCount]), [0, 1, 2].map((p) => [p, perPartition.get(p) ?? 0]), `batch ${e.batchTime}`);
      }
      assert.equal(completed[1].partitionStats[0].reduce((n, p) => n + p.keyCount, 0), 41);
    } finally {
      await job.ssc.stop();
    }
  });

  it('a listener that throws on partition.restarted or memory.warmed is a process warning: the listeners after it hear the event, the batch and the job go on', async () => {
    const dataDir = tempDir();
    const spec = () => StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty')).numPartitions(2);
    const first = await keyedJob(spec(), { dataDir });
    await first.batch([['a', 1], ['b', 1]]);
    // A clean stop names a and b for the next start's warm-up.
    await first.ssc.stop();

    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => void (w.code === 'STATESTREAM_LISTENER' && warnings.push(w.message));
    process.on('warning', onWarning);
    const again = await keyedJob(spec(), { dataDir, startMs: 10_000 });
    const heard: string[] = [];
    for (const event of [BatchEvents.MEMORY_WARMED, BatchEvents.PARTITION_RESTARTED] as const) {
      again.ssc.on(event, () => {
        throw new Error(`listener bug on ${event}`);
      });
      again.ssc.on(event, () => void heard.push(event));
    }
    try {
      await waitUntil('both partitions warmed', () => heard.filter((e) => e === BatchEvents.MEMORY_WARMED).length === 2);
      const out = await again.batch([['a', 1], ['crash', { exitOnce: join(tempDir(), 'crashed') }], ['b', 1]]);
      assert.deepEqual(out.sort(), [['a', 2], ['b', 2], ['crash', 1]]);
      assert.equal(heard.filter((e) => e === BatchEvents.PARTITION_RESTARTED).length, 1);
      assert.deepEqual(await again.batch([['a', 1]]), [['a', 3]]);
      assert.equal(again.ssc.state, 'running');
      await waitUntil('the warnings', () => warnings.length === 3);
      assert.deepEqual(warnings.sort(), [
        'a memory.warmed event listener threw: listener bug on memory.warmed',
        'a memory.warmed event listener threw: listener bug on memory.warmed',
        'a partition.restarted event listener threw: listener bug on partition.restarted',
      ]);
    } finally {
      process.off('warning', onWarning);
      await again.ssc.stop();
    }
  });

  it('batch.completed carries the records, the scheduling delay of batches queued behind a slow one, the processing time and per-partition times', async () => {
    const gate = tempDir();
    // The system clock: batches fall due every 100 ms whether or not the one before has ended.
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), threads: 2 });
    const input = ssc.queueStream<[string, GateValue]>();
    input.mapWithState(StateSpec.function<string, GateValue, number, [string, number]>(fixture('gate')).numPartitions(3));
    const started = new Map<number, BatchStartedEvent>();
    const completed: BatchCompletedEvent[] = [];
    ssc.on(BatchEvents.STARTED, (e) => void started.set(e.batchTime, e));
    ssc.on(BatchEvents.COMPLETED, (e) => void completed.push(e));
    await ssc.start();
    let opened = 0;
    try {
      const held = 'held';
      input.pushBatch([[held, { gate }], ['a', 1], ['b', 1], ['c', 1]]);
      await waitUntil('a batch to reach the gate', () => existsSync(join(gate, 'entered')));
      const entered = Number(readFileSync(join(gate, 'entered'), 'utf8'));
      // Batches fall due behind the held one.
      await sleep(500);
      input.pushBatch([['a', 1]]);
      opened = Date.now();
      writeFileSync(join(gate, 'open'), '');
      await waitUntil('the batches queued behind the held one to complete', () => completed.some((e) => e.batchTime > opened));

      const [slow, ...after] = completed.filter((e) => e.records > 0 || e.batchTime < opened);
      assert.equal(slow.records, 4, 'the held batch took the four records pushed before it');
      const heldPartition = murmur2Partitioner.partition(held, 3);
      assert.equal(slow.partitionTimesMs.length, 1, 'one mapWithState stream');
      assert.equal(slow.partitionTimesMs[0].length, 3, 'a time for each partition');
      assert.ok(slow.partitionTimesMs[0][heldPartition] >= opened - entered - 5, `the held partition's time (${slow.partitionTimesMs[0][heldPartition]} ms) covers its wait at the gate (${opened - entered} ms)`);
      assert.ok(slow.processingTimeMs >= Math.max(...slow.partitionTimesMs[0]), 'the batch took at least as long as its slowest partition');
      const queued = after.filter((e) => e.batchTime < opened);
      assert.ok(queued.length >= 3, `batches fell due while the held one ran: ${queued.map((e) => e.batchTime).join(', ')}`);
      for (const e of queued) {
        // It could not start before the gate opened.
        assert.ok(e.schedulingDelayMs >= opened - e.batchTime - 5, `batch ${e.batchTime}: delay ${e.schedulingDelayMs} ms, started at least ${opened - e.batchTime} ms late`);
        assert.equal(started.get(e.batchTime)?.schedulingDelayMs, e.schedulingDelayMs, 'batch.started says the same delay');
      }
      assert.equal(after.reduce((n, e) => n + e.records, 0), 1, 'the record pushed while it was held went into one later batch');
      assert.ok(completed.every((e) => e.keysTimedOut === 0));
    } finally {
      writeFileSync(join(gate, 'open'), '');
      await ssc.stop();
    }
  });
});
