import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { BatchEvents, type BatchCompletedEvent } from '../../src/index.js';
import type { JobProbe } from '../../src/metrics/job-probe.js';
import { LagSampler } from '../../src/metrics/kafka-lag.js';
import { DETAILED_ROWS, StatusModel } from '../../src/ui/status-model.js';
import { kafkaProbe, runningProbe } from '../metrics/running-probe.js';

/** A status model attached to an emitter of its own, over a running job's probe with `parts` changed, keeping `retained` batches (the model's default when not given). */
function attached(parts: Partial<JobProbe> = {}, retained?: number): { probe: JobProbe; events: EventEmitter; model: StatusModel } {
  const probe = runningProbe(parts);
  const events = new EventEmitter();
  const model = new StatusModel(probe, () => [], retained);
  model.attach(events);
  return { probe, events, model };
}

describe('the status page\'s document', () => {
  it('carries per-partition times for the newest batches the page details, and the figures of every batch it keeps for the charts', async () => {
    const { probe, events, model } = attached();
    const partitions = 1024;
    for (let b = 1; b <= 200; b++) {
      const event: BatchCompletedEvent = {
        batchTime: b * 1000, records: b, schedulingDelayMs: 0, processingTimeMs: 5, keysTimedOut: 0, origin: 'live',
        partitionTimesMs: [Array.from({ length: partitions }, () => 1)],
        partitionStats: [Array.from({ length: partitions }, (_, partition) => ({ partition, thread: 1, keyCount: 1, memoryEntries: 1, memoryHits: 0, storeReads: 1, replayed: false }))],
      };
      events.emit(BatchEvents.STARTED, { batchTime: event.batchTime, schedulingDelayMs: 0 });
      events.emit(BatchEvents.COMPLETED, event);
    }
    const { batches } = await model.document();
    assert.equal(batches.length, 200);
    assert.deepEqual(batches.map((b) => b.records), Array.from({ length: 200 }, (_, i) => i + 1), 'every kept batch, with its figures');
    const detailed = batches.filter((b) => b.partitionTimesMs !== undefined);
    assert.deepEqual(detailed.map((b) => b.batchTime), batches.slice(-DETAILED_ROWS).map((b) => b.batchTime));
    assert.equal(detailed.at(-1)!.partitionTimesMs![0].length, partitions);
    assert.equal(detailed.at(-1)!.partitions![0].length, partitions);
    assert.ok(JSON.stringify(batches).length < 2_000_000, `${JSON.stringify(batches).length} bytes`);

    // Kept to its bound: the newest batches.
    const bounded = new StatusModel(probe, () => [], 50);
    bounded.attach(events);
    for (let b = 1; b <= 200; b++) {
      events.emit(BatchEvents.STARTED, { batchTime: b * 1000, schedulingDelayMs: 0 });
      events.emit(BatchEvents.COMPLETED, { batchTime: b * 1000, records: b, schedulingDelayMs: 0, processingTimeMs: 5, keysTimedOut: 0, origin: 'live', partitionTimesMs: [[1]], partitionStats: [[{ partition: 0, thread: 1, keyCount: 1, memoryEntries: 1, memoryHits: 0, storeReads: 1, replayed: false }]] });
    }
    assert.deepEqual((await bounded.document()).batches.map((b) => b.records), Array.from({ length: 50 }, (_, i) => 151 + i));
  });

  it('a batch that fails while it runs is one failed row, counted; rows name partitions by number; restarts keep their number; the restart list is bounded', async () => {
    const { events, model } = attached();
    events.emit(BatchEvents.STARTED, { batchTime: 1000, schedulingDelayMs: 0 });
    events.emit(BatchEvents.COMPLETED, {
      batchTime: 1000, records: 2, schedulingDelayMs: 0, processingTimeMs: 5, keysTimedOut: 0, origin: 'live', partitionTimesMs: [[1, 2]],
      partitionStats: [[3, 7].map((partition) => ({ partition, thread: 1, keyCount: 1, memoryEntries: 1, memoryHits: 0, storeReads: 1, replayed: false }))],
    });
    events.emit(BatchEvents.STARTED, { batchTime: 2000, schedulingDelayMs: 0 });
    events.emit(BatchEvents.FAILED, { batchTime: 2000, error: new Error('poisoned') });
    for (let r = 1; r <= 150; r++) events.emit(BatchEvents.PARTITION_RESTARTED, { stream: 0, partition: 0, batchTime: 3000, restart: r, cause: new Error('died') });
    const doc = await model.document();
    assert.deepEqual(doc.batches.find((b) => b.batchTime === 1000)?.partitions, [[3, 7]], 'by partition number, not by place');
    const failedRows = doc.batches.filter((b) => b.batchTime === 2000);
    assert.deepEqual(failedRows.map((b) => b.status), ['failed'], 'one row, no longer running');
    assert.equal(doc.totals.failed, 1);
    assert.equal(doc.restarts.length, 100, 'the newest 100');
    assert.deepEqual([doc.restarts[0].restart, doc.restarts.at(-1)!.restart], [51, 150]);
  });

  it('totals count a batch once: a replay apart, timeouts with their batch, and a completed batch that then fails taken back out', async () => {
    const { events, model } = attached({
      kafkaSources: () => [kafkaProbe(async () => new Map(), { deadLetterCount: 4 })],
    });
    const stats = [[{ partition: 0, thread: 1, keyCount: 1, memoryEntries: 1, memoryHits: 0, storeReads: 1, replayed: false }]];
    const complete = (batchTime: number, origin: BatchCompletedEvent['origin'], keysTimedOut: number) => {
      events.emit(BatchEvents.STARTED, { batchTime, schedulingDelayMs: 40 });
      events.emit(BatchEvents.COMPLETED, { batchTime, records: 5, schedulingDelayMs: 40, processingTimeMs: 10, keysTimedOut, origin, partitionTimesMs: [[1]], partitionStats: stats } satisfies BatchCompletedEvent);
    };
    complete(1000, 'replay', 1);
    complete(2000, 'live', 3);
    complete(3000, 'live', 2);
    complete(4000, 'replay', 1);
    // batch.completed listeners of the user's that threw: the batches fail after they completed.
    events.emit(BatchEvents.FAILED, { batchTime: 3000, error: new Error('listener threw') });
    events.emit(BatchEvents.FAILED, { batchTime: 4000, error: new Error('listener threw') });
    const doc = await model.document();
    assert.deepEqual(doc.totals, { batches: 1, replayed: 1, failed: 2, records: 5, keysTimedOut: 3 });
    assert.equal(doc.batches.find((b) => b.batchTime === 2000)?.totalDelayMs, 50, 'scheduling delay and processing time');
    assert.deepEqual(doc.sourceDeadLetters, [{ source: 0, count: 4 }]);
  });

  it('shows the newest snapshot in the folder, from before this start, until one of its own completes', async () => {
    const onDisk = { batchTime: 5000, path: '/data/snapshots/5000', at: 1_700_000_000_000, bytes: 4096, keyCount: 7 };
    const { events, model } = attached({ snapshotsOn: true, newestSnapshot: () => onDisk });
    assert.deepEqual((await model.document()).snapshotOnDisk, onDisk);
    events.emit(BatchEvents.SNAPSHOT_FAILED, { batchTime: 6000, error: new Error('disk full') });
    const failed = await model.document();
    assert.deepEqual(failed.snapshotOnDisk, onDisk, 'a failed snapshot of its own leaves the older one the newest');
    assert.deepEqual(failed.problems, ['the last snapshot (batch 6000) failed: Error: disk full']);
    events.emit(BatchEvents.SNAPSHOT_COMPLETED, { batchTime: 7000, path: '/data/snapshots/7000', bytes: 8192, keyCount: 9, gateMs: 1, durationMs: 20 });
    const after = await model.document();
    assert.equal(after.snapshotOnDisk, undefined);
    assert.deepEqual(after.problems, [], 'a snapshot that completed after it ends the problem');
    assert.deepEqual(after.snapshots.map((s) => [s.batchTime, s.outcome]), [[6000, 'failed'], [7000, 'completed']]);
    // One of its own completed: however many fail after it, the page does not show the folder's as from before this start.
    for (let b = 8; b <= 108; b++) events.emit(BatchEvents.SNAPSHOT_FAILED, { batchTime: b * 1000, error: new Error('disk full') });
    const failing = await model.document();
    assert.equal(failing.snapshots.some((s) => s.outcome === 'completed'), false, 'the completed one left the list');
    assert.equal(failing.snapshotOnDisk, undefined);
  });

  it('a batch the page saw no start of is still one row: completed with its figures, or failed before it started with no delay, kept to the bound', async () => {
    const { events, model } = attached({}, 3);
    const stats = [[{ partition: 0, thread: 1, keyCount: 1, memoryEntries: 1, memoryHits: 0, storeReads: 1, replayed: false }]];
    const completed = (batchTime: number): BatchCompletedEvent => ({ batchTime, records: 5, schedulingDelayMs: 40, processingTimeMs: 10, keysTimedOut: 0, origin: 'live', partitionTimesMs: [[1]], partitionStats: stats });
    // Attached after batch 1000 started: its completion is the first the page hears of it.
    events.emit(BatchEvents.COMPLETED, completed(1000));
    const first = await model.document();
    assert.deepEqual(first.batches.map((b) => [b.batchTime, b.status, b.records, b.totalDelayMs]), [[1000, 'completed', 5, 50]]);
    assert.equal(first.totals.batches, 1);
    for (const batchTime of [2000, 3000]) {
      events.emit(BatchEvents.STARTED, { batchTime, schedulingDelayMs: 40 });
      events.emit(BatchEvents.COMPLETED, completed(batchTime));
    }
    // A batch whose records could not be taken fails before batch.started: a row of its own, which pushes the oldest out like any other.
    events.emit(BatchEvents.FAILED, { batchTime: 4000, error: new Error('take failed') });
    const doc = await model.document();
    assert.deepEqual(doc.batches.map((b) => [b.batchTime, b.status]), [[2000, 'completed'], [3000, 'completed'], [4000, 'failed']]);
    const { batchTime, status, schedulingDelayMs, error } = doc.batches.at(-1)!;
    assert.deepEqual({ batchTime, status, schedulingDelayMs, error }, { batchTime: 4000, status: 'failed', schedulingDelayMs: 0, error: 'Error: take failed' });
    assert.deepEqual(doc.totals, { batches: 3, replayed: 0, failed: 1, records: 15, keysTimedOut: 0 });
  });

  it('a worker replaced between batches is a restart row for each partition it served, with no batch and no restart number', async () => {
    const { events, model } = attached();
    events.emit(BatchEvents.WORKER_REPLACED, { worker: 1, partitions: [{ stream: 0, partition: 1 }, { stream: 1, partition: 3 }], cause: new Error('thread exited with code 1') });
    const { restarts } = await model.document();
    assert.deepEqual(restarts.map(({ at, ...row }) => row), [
      { stream: 0, partition: 1, batchTime: null, restart: null, cause: 'Error: thread exited with code 1' },
      { stream: 1, partition: 3, batchTime: null, restart: null, cause: 'Error: thread exited with code 1' },
    ]);
    assert.ok(restarts.every((r) => r.at <= Date.now()));
  });

  it('a store restored from a snapshot is a problem that says whether its source replays the batches since', async () => {
    const { events, model } = attached();
    events.emit(BatchEvents.STATE_RESTORED, {
      stream: 0, snapshot: 5000, path: '/data/snapshots/5000', partitions: [{ partition: 1, problem: 'data.mdb is truncated', lastBatch: 7000 }], damagedDir: '/data/damaged/1', replayed: true,
    });
    events.emit(BatchEvents.STATE_RESTORED, {
      stream: 1, snapshot: 5000, path: '/data/snapshots/5000', partitions: [{ partition: 2, problem: 'data.mdb is missing', lastBatch: undefined }], damagedDir: undefined, replayed: false,
    });
    assert.deepEqual((await model.document()).problems, [
      'stream 0 partition 1 was damaged (data.mdb is truncated) and was restored from the snapshot of batch 5000; the batches since are replayed from Kafka (the damaged store is kept in /data/damaged/1)',
      'stream 1 partition 2 was damaged (data.mdb is missing) and was restored from the snapshot of batch 5000; a queue source cannot replay the batches since',
    ]);
  });

  it('a Kafka broker that does not give its log-end offsets is a problem on the page, with its lag left unknown', async () => {
    const sampler = new LagSampler(kafkaProbe(async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:9092'); }), 5_000, 0);
    const model = new StatusModel(runningProbe(), () => [sampler]);
    const doc = await model.document();
    assert.deepEqual(doc.problems, ['the Kafka broker did not give its log-end offsets: connect ECONNREFUSED 127.0.0.1:9092']);
    assert.deepEqual(doc.kafka[0].partitions.map((p) => p.lag), [undefined]);
  });
});
