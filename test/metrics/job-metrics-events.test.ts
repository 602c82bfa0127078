import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { BatchEvents, type BatchCompletedEvent, type BatchEventMap } from '../../src/index.js';
import { JobMetrics } from '../../src/metrics/job-metrics.js';
import type { JobProbe } from '../../src/metrics/job-probe.js';
import { LagSampler } from '../../src/metrics/kafka-lag.js';
import { kafkaProbe, runningProbe } from './running-probe.js';
import { parseSamples } from './scrape.js';

/**
 * JobMetrics fed the events a context emits, for what a running job reaches only at its
 * edges: a delay of minutes, a cluster partition given up.
 */
function metricsOn(batchIntervalMs: number, parts: Partial<JobProbe> = {}): { registry: Registry; metrics: JobMetrics; emit<E extends keyof BatchEventMap>(event: E, payload: BatchEventMap[E]): void } {
  const registry = new Registry();
  const probe = runningProbe({ appName: 'events', batchIntervalMs, ...parts });
  const events = new EventEmitter();
  const metrics = new JobMetrics(registry, probe, () => []);
  metrics.attach(events);
  return { registry, metrics, emit: (event, payload) => void events.emit(event, payload) };
}

const completed = (partitions: number[], delayMs = 0): BatchCompletedEvent => ({
  batchTime: 1000, records: 10, schedulingDelayMs: delayMs, processingTimeMs: 50, keysTimedOut: 0, origin: 'live',
  partitionTimesMs: [partitions.map(() => 5)],
  partitionStats: [partitions.map((partition) => ({ partition, thread: 1, keyCount: 3, memoryEntries: 3, memoryHits: 2, storeReads: 1, replayed: false }))],
});

describe('metrics from events', () => {
  it('the total delay is the scheduling delay plus the processing time, and each failed snapshot is counted', async () => {
    const { registry, emit } = metricsOn(1000);
    emit(BatchEvents.COMPLETED, { ...completed([0]), schedulingDelayMs: 4000, processingTimeMs: 500 });
    emit(BatchEvents.SNAPSHOT_FAILED, { batchTime: 1000, error: new Error('disk full') });
    emit(BatchEvents.SNAPSHOT_FAILED, { batchTime: 2000, error: new Error('disk full') });
    const samples = parseSamples(await registry.metrics());
    assert.equal(samples.find((s) => s.name === 'statestream_batch_total_delay_seconds_sum')?.value, 4.5);
    assert.equal(samples.find((s) => s.name === 'statestream_snapshot_failures_total')?.value, 2);
  });

  it('a batch re-run after a restore is counted as replayed, not completed', async () => {
    const { registry, emit } = metricsOn(1000);
    emit(BatchEvents.COMPLETED, { ...completed([0]), origin: 'replay' });
    emit(BatchEvents.COMPLETED, { ...completed([0]), batchTime: 2000 });
    const samples = parseSamples(await registry.metrics());
    const batches = (outcome: string) => samples.find((s) => s.name === 'statestream_batches_total' && s.labels.outcome === outcome)?.value;
    assert.deepEqual([batches('replayed'), batches('completed')], [1, 1]);
  });

  it('a job that stops takes its replayed-batch series with it, as the others', async () => {
    const { registry, metrics, emit } = metricsOn(1000);
    emit(BatchEvents.COMPLETED, { ...completed([0]), origin: 'replay' });
    metrics.detach();
    const left = parseSamples(await registry.metrics()).filter((s) => s.labels.app === 'events');
    assert.deepEqual(left, [], 'no series of the stopped job is left on the registry');
  });

  it('a snapshot of several minutes lands in the 10-minute bucket, not only in +Inf', async () => {
    const { registry, emit } = metricsOn(1000, { snapshotsOn: true });
    emit(BatchEvents.SNAPSHOT_COMPLETED, { batchTime: 1000, durationMs: 400_000, bytes: 10, keyCount: 1, path: '/x' } as never);
    const buckets = parseSamples(await registry.metrics()).filter((s) => s.name === 'statestream_snapshot_duration_seconds_bucket');
    const bucket = (le: string) => buckets.find((s) => s.labels.le === le)?.value;
    assert.deepEqual([bucket('300'), bucket('600'), bucket('+Inf')], [0, 1, 1]);
  });

  it('a scheduling delay of minutes lands in a finite bucket, and the buckets reach 5 times the longest batch interval (the "batches queue" alert)', async () => {
    const { registry, emit } = metricsOn(30_000);
    // Behind by 200 s: more than 5 intervals of 30 s.
    emit(BatchEvents.COMPLETED, completed([0], 200_000));
    const buckets = parseSamples(await registry.metrics()).filter((s) => s.name === 'statestream_batch_scheduling_delay_seconds_bucket');
    const count = (le: string) => buckets.find((s) => s.labels.le === le)?.value;
    assert.equal(count('120'), 0);
    assert.equal(count('300'), 1);
    const finite = buckets.map((s) => Number(s.labels.le)).filter(Number.isFinite);
    // histogram_quantile answers at most the highest finite bucket: it must pass 5 × 24 h, the longest interval a context takes.
    assert.ok(Math.max(...finite) > 5 * 24 * 3600, `highest finite bucket ${Math.max(...finite)} s`);
    for (const name of ['statestream_batch_processing_seconds_bucket', 'statestream_batch_total_delay_seconds_bucket']) {
      assert.deepEqual(parseSamples(await registry.metrics()).filter((s) => s.name === name).map((s) => s.labels.le), buckets.map((s) => s.labels.le), name);
    }
  });

  it('a cluster partition given up takes its memory, reads and restart series with it; a worker replaced between batches counts a restart of each of its partitions, on series that begin at 0', async () => {
    const { registry, emit } = metricsOn(1000);
    emit(BatchEvents.COMPLETED, completed([0, 1]));
    emit(BatchEvents.WORKER_REPLACED, { worker: 1, partitions: [{ stream: 0, partition: 1 }], cause: new Error('late failure') });
    const series = async (name: string) => parseSamples(await registry.metrics()).filter((s) => s.name === name).map((s) => `${s.labels.partition}${s.labels.from ? `/${s.labels.from}` : ''}=${s.value}`).sort();
    // From 0 for every partition a batch reported: increase() over the first restart is 1.
    assert.deepEqual(await series('statestream_partition_restarts_total'), ['0=0', '1=1']);
    assert.deepEqual(await series('statestream_state_memory_entries'), ['0=3', '1=3']);

    emit(BatchEvents.PARTITION_RELEASED, { stream: 0, partition: 1, epoch: 4, reason: 'moved' });
    emit(BatchEvents.COMPLETED, completed([0]));
    assert.deepEqual(await series('statestream_state_memory_entries'), ['0=3']);
    assert.deepEqual(await series('statestream_state_reads_total'), ['0/lmdb=2', '0/memory=4']);
    assert.deepEqual(await series('statestream_partition_restarts_total'), ['0=0']);

    // Taken back later: its series start again from what this instance sees.
    emit(BatchEvents.COMPLETED, completed([0, 1]));
    assert.deepEqual(await series('statestream_state_reads_total'), ['0/lmdb=3', '0/memory=6', '1/lmdb=1', '1/memory=2']);
  });

  it('the counters the alerts read with increase() begin at 0: batch and snapshot failures from the start, every partition\'s restarts from the first batch (a worker dying in it is counted); a restarted job knows its newest snapshot', async () => {
    const figures = (partition: number) => ({ partition, keyCount: 0, lastBatch: undefined, stateBytes: 0, deadLetters: 0 });
    const { registry, emit } = metricsOn(1000, { snapshotsOn: true, newestSnapshot: () => ({ batchTime: 1000, path: '/data/snapshots/1000', at: 1_700_000_000_000, bytes: 1, keyCount: 1 }), stateStreams: () => [{ stream: 0, partitions: [figures(0), figures(1)] }] });
    const value = async (name: string, labels: Record<string, string> = {}) =>
      parseSamples(await registry.metrics()).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    assert.equal(await value('statestream_batches_total', { outcome: 'failed' }), 0);
    assert.equal(await value('statestream_snapshot_failures_total'), 0);
    assert.equal(await value('statestream_partition_restarts_total'), undefined, 'no partitions before the stores are open');

    emit(BatchEvents.STARTED, { batchTime: 1000, schedulingDelayMs: 0 });
    assert.equal(await value('statestream_partition_restarts_total', { partition: '0' }), 0);
    assert.equal(await value('statestream_partition_restarts_total', { partition: '1' }), 0);
    assert.equal(await value('statestream_snapshot_last_success_timestamp_seconds'), 1_700_000_000);
    emit(BatchEvents.PARTITION_RESTARTED, { stream: 0, partition: 1, batchTime: 1000, restart: 1, cause: new Error('died') } as never);
    assert.equal(await value('statestream_partition_restarts_total', { partition: '1' }), 1);

    // A snapshot of this run is newer than the folder's was at the start; a later batch leaves it.
    emit(BatchEvents.SNAPSHOT_COMPLETED, { batchTime: 1000, durationMs: 5, bytes: 10, keyCount: 1, path: '/x' } as never);
    const completedAt = await value('statestream_snapshot_last_success_timestamp_seconds');
    assert.ok(completedAt! > 1_700_000_000);
    emit(BatchEvents.STARTED, { batchTime: 2000, schedulingDelayMs: 0 });
    assert.equal(await value('statestream_snapshot_last_success_timestamp_seconds'), completedAt);

    // A cluster instance's partition taken later counts from 0 before its first batch here.
    emit(BatchEvents.PARTITION_TAKEN, { stream: 0, partition: 7, epoch: 1, records: 0, reused: false, lastBatch: undefined } as never);
    assert.equal(await value('statestream_partition_restarts_total', { partition: '7' }), 0);
  });

  it('a job without snapshots has no snapshot series, even with a snapshot left in its folder by an earlier run', async () => {
    const { registry, emit } = metricsOn(1000, { newestSnapshot: () => ({ batchTime: 1000, path: '/data/snapshots/1000', at: 1_700_000_000_000, bytes: 1, keyCount: 1 }) });
    emit(BatchEvents.STARTED, { batchTime: 1000, schedulingDelayMs: 0 });
    const names = new Set(parseSamples(await registry.metrics()).map((s) => s.name));
    assert.ok(![...names].some((n) => n.startsWith('statestream_snapshot_')), [...names].join(', '));
  });

  it('two scrapes of a shared registry that overlap each give every job\'s Kafka lag (one\'s reset does not clear what the other read)', async () => {
    const registry = new Registry();
    /** A source whose broker answers for its log-end offsets when the test says. */
    const source = (id: number) => {
      const asked: Array<(marks: Map<string, number>) => void> = [];
      const probe = kafkaProbe(() => new Promise((resolve) => void asked.push(resolve)), { id });
      // Asked anew at every scrape, waited for up to 5 s (the test answers within milliseconds).
      const sampler = new LagSampler(probe, 5_000, 0);
      return { probe, sampler, answer: (high: number) => asked.shift()!(new Map([['t:0', high]])), asked: () => asked.length };
    };
    const jobs = ['a', 'b'].map((app, i) => {
      const s = source(i);
      const probe = runningProbe({ appName: app, kafkaSources: () => [s.probe] });
      new JobMetrics(registry, probe, () => [s.sampler]).attach(new EventEmitter());
      return s;
    });
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    const lags = (text: string) => parseSamples(text).filter((x) => x.name === 'statestream_kafka_lag_records').map((x) => `${x.labels.app}=${x.value}`).sort();

    // The first scrape reads job a, then waits for job b's broker.
    const first = registry.metrics();
    await turn();
    jobs[0].answer(15);
    await turn();
    assert.equal(jobs[1].asked(), 1, 'the first scrape waits for job b');
    // A second scrape begins meanwhile and waits for job a's broker.
    const second = registry.metrics();
    await turn();
    assert.equal(jobs[0].asked(), 1, 'the second scrape waits for job a');
    jobs[1].answer(30);
    assert.deepEqual(lags(await first), ['a=5', 'b=20']);
    jobs[0].answer(16);
    await turn();
    jobs[1].answer(31);
    assert.deepEqual(lags(await second), ['a=6', 'b=21']);
  });

  it('lag is never below 0 (a position past a high watermark the broker gave a moment earlier), and a broker problem clears once it answers again', async () => {
    let answer: () => Promise<Map<string, number>> = async () => new Map([['t:0', 7]]);
    const probe = kafkaProbe(() => answer());
    const sampler = new LagSampler(probe, 5_000, 0);
    const first = await sampler.sample();
    assert.deepEqual([first.partitions[0].highWatermark, first.partitions[0].lag, first.problem], [7, 0, undefined]);
    answer = async () => {
      throw new Error('broker away');
    };
    assert.match((await sampler.sample()).problem ?? '', /the Kafka broker did not give its log-end offsets: broker away/);
    answer = async () => new Map([['t:0', 12]]);
    const back = await sampler.sample();
    assert.deepEqual([back.partitions[0].lag, back.problem], [2, undefined]);
  });

  it('a partition the broker gave no log-end offset for has no lag (not NaN), and a broker error stays named while a later request is out', async () => {
    let answer: () => Promise<Map<string, number>> = async () => new Map([['t:1', 7]]);
    const probe = kafkaProbe(() => answer());
    const sampler = new LagSampler(probe, 50, 0);
    const unknown = await sampler.sample();
    assert.deepEqual([unknown.partitions[0].highWatermark, unknown.partitions[0].lag], [undefined, undefined]);
    answer = async () => {
      throw new Error('boom');
    };
    await sampler.sample();
    answer = () => new Promise(() => undefined);
    assert.match((await sampler.sample()).problem ?? '', /did not give its log-end offsets: boom/, 'the cause, not only "has not answered"');
  });

  it('a broker that does not answer leaves the last known offsets and says since when; the broker is asked at most once per interval', async () => {
    const asked: Array<(marks: Map<string, number>) => void> = [];
    const probe = kafkaProbe(() => new Promise((resolve) => void asked.push(resolve)));
    // Asked at most once a minute: within this test, only once.
    const held = new LagSampler(probe, 50, 60_000);
    const silent = await held.sample();
    assert.deepEqual([silent.partitions[0].highWatermark, silent.watermarksAt], [undefined, undefined]);
    assert.equal(silent.problem, 'the Kafka broker has not answered for its log-end offsets within 50 ms; lag shown as of never');
    asked.shift()!(new Map([['t:0', 14]]));
    // Let the answer settle, so that no request is out when the next sample begins.
    await new Promise((resolve) => setImmediate(resolve));
    const answered = await held.sample();
    assert.equal(asked.length, 0, 'not asked again within the interval');
    assert.deepEqual([answered.partitions[0].highWatermark, answered.partitions[0].lag, answered.problem], [14, 4, undefined]);

    // Asked at every sample: one answer, then silence; the answer stays, dated.
    const every = new LagSampler(probe, 50, 0);
    const first = every.sample();
    asked.shift()!(new Map([['t:0', 12]]));
    const at = (await first).watermarksAt!;
    const late = await every.sample();
    assert.equal(asked.length, 1, 'asked again');
    assert.deepEqual([late.partitions[0].highWatermark, late.partitions[0].lag, late.watermarksAt], [12, 2, at]);
    assert.equal(late.problem, `the Kafka broker has not answered for its log-end offsets within 50 ms; lag shown as of ${new Date(at).toISOString()}`);
    // While that request is still out, no second one is sent.
    await every.sample();
    assert.equal(asked.length, 1, 'one request out at a time');
    asked.shift()!(new Map([['t:0', 13]]));
  });

  it('by default the broker is asked at most once a second, a silent one is waited for 2 s (within a scrape timeout), and each partition says what it fetched', async () => {
    let asked = 0;
    const answering = new LagSampler(kafkaProbe(async () => (asked++, new Map([['t:0', 12]]))));
    const first = await answering.sample();
    await answering.sample();
    assert.equal(asked, 1, 'two samples in a row ask once');
    assert.deepEqual(first.partitions.map((p) => [p.next, p.fetched, p.lag]), [[10, 10, 2]]);

    const silent = new LagSampler(kafkaProbe(() => new Promise(() => undefined)));
    assert.equal((await silent.sample()).problem, 'the Kafka broker has not answered for its log-end offsets within 2000 ms; lag shown as of never');
  });
});
