import { Counter, Gauge, Histogram, type LabelValues, type Metric, type Registry } from 'prom-client';
import { BatchEvents, type BatchEventMap } from '../engine/batch-events.js';
import { ConfigError } from '../errors.js';
import type { JobProbe } from './job-probe.js';
import type { LagSampler, SourceLag } from './kafka-lag.js';

/**
 * Seconds: a batch of a few milliseconds up to past five times the longest batch interval
 * (24 h). `histogram_quantile` never answers past the highest finite bucket, so the "batches
 * queue" alert (a delay over 5 intervals, docs/operations.md) needs a bucket beyond it for
 * every interval a context accepts; one registry may hold jobs of different intervals.
 */
const BATCH_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 5 * 86400, 10 * 86400];
const SNAPSHOT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** Where a scrape-time gauge's fill puts each series it reads. */
type SeriesSink = { set(labels: Record<string, string>, value: number): void };

type Events = { on<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): unknown };

/**
 * The jobs whose figures a registry's collected gauges read at each scrape. Several
 * contexts may share one registry (the service's own), told apart by the `app` label.
 */
const jobsOf = new WeakMap<Registry, Set<JobMetrics>>();
/** The app names whose series a registry holds, from a context's creation to the end of its stop. */
const appsOf = new WeakMap<Registry, Set<string>>();

function metric<M extends Metric>(registry: Registry, name: string, make: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? make();
}

/**
 * Prometheus metrics of one job (see docs/operations.md for each and what to alert on).
 * Batch, restart and snapshot figures come from the context's events as they happen;
 * state, dead letters, Kafka lag and ZooKeeper come from the stores and sources when
 * Prometheus scrapes.
 */
export class JobMetrics {
  private readonly labels: { app: string };
  private readonly m;
  /** The stream and partition label sets events gave series to, removed with the job. */
  private readonly partitionsSeen = new Map<string, { app: string; stream: string; partition: string }>();

  constructor(
    readonly registry: Registry,
    private readonly probe: JobProbe,
    private readonly lag: () => LagSampler[],
  ) {
    this.labels = { app: probe.appName };
    if (!jobsOf.has(registry)) jobsOf.set(registry, new Set());
    if (!appsOf.has(registry)) appsOf.set(registry, new Set());
    // Two jobs under one app label would add into each other's counters and overwrite each other's gauges.
    if (appsOf.get(registry)!.has(probe.appName)) {
      throw new ConfigError(
        `StreamingContext: metrics.registry already has a job with appName ${JSON.stringify(probe.appName)} (a context not stopped yet); give each context on a shared registry its own appName`,
        { option: 'appName' },
      );
    }
    appsOf.get(registry)!.add(probe.appName);
    const registers = [registry];
    const jobs = () => [...(jobsOf.get(registry) ?? [])];
    const collected = <L extends string>(name: string, help: string, labelNames: L[], fill: (job: JobMetrics, gauge: SeriesSink) => Promise<void> | void) =>
      metric(registry, name, () =>
        new Gauge<L>({
          name, help, labelNames, registers,
          async collect() {
            // Gathered apart and swapped in at once: two scrapes of a shared registry overlap
            // (two Prometheus servers, a slow broker), and one's reset must not clear the
            // series of a job the other has already read while it awaits the next job.
            const series: Array<[LabelValues<L>, number]> = [];
            for (const job of jobs()) await fill(job, { set: (labels, value) => void series.push([labels as LabelValues<L>, value]) });
            this.reset();
            for (const [labels, value] of series) this.set(labels, value);
          },
        }),
      );
    const app = ['app'] as const;
    this.m = {
      batches: metric(registry, 'statestream_batches_total', () => new Counter({ name: 'statestream_batches_total', help: 'Batches that ended, by outcome (completed, failed, or replayed: re-run at start for partitions restored from a snapshot).', labelNames: ['app', 'outcome'], registers })),
      processing: metric(registry, 'statestream_batch_processing_seconds', () =>
        new Histogram({ name: 'statestream_batch_processing_seconds', help: 'Time from a batch starting to its outputs done (Spark: processing time).', labelNames: app, buckets: BATCH_BUCKETS, registers })),
      scheduling: metric(registry, 'statestream_batch_scheduling_delay_seconds', () =>
        new Histogram({ name: 'statestream_batch_scheduling_delay_seconds', help: 'Time a batch waited after its batch time before it started (Spark: scheduling delay).', labelNames: app, buckets: BATCH_BUCKETS, registers })),
      total: metric(registry, 'statestream_batch_total_delay_seconds', () =>
        new Histogram({ name: 'statestream_batch_total_delay_seconds', help: 'Scheduling delay plus processing time (Spark: total delay).', labelNames: app, buckets: BATCH_BUCKETS, registers })),
      records: metric(registry, 'statestream_records_total', () => new Counter({ name: 'statestream_records_total', help: 'Records taken from the sources into completed batches.', labelNames: app, registers })),
      timedOut: metric(registry, 'statestream_keys_timed_out_total', () => new Counter({ name: 'statestream_keys_timed_out_total', help: 'Keys removed by the idle timeout.', labelNames: app, registers })),
      lastBatch: metric(registry, 'statestream_last_batch_timestamp_seconds', () =>
        new Gauge({ name: 'statestream_last_batch_timestamp_seconds', help: 'Batch time of the last completed batch (Unix seconds).', labelNames: app, registers })),
      interval: metric(registry, 'statestream_batch_interval_seconds', () => new Gauge({ name: 'statestream_batch_interval_seconds', help: 'The configured batch interval.', labelNames: app, registers })),
      failed: metric(registry, 'statestream_job_failed', () => new Gauge({ name: 'statestream_job_failed', help: '1 once a batch failed and the job stopped processing (as in Spark).', labelNames: app, registers })),
      restarts: metric(registry, 'statestream_partition_restarts_total', () =>
        new Counter({ name: 'statestream_partition_restarts_total', help: 'Partition actors restarted after their worker died.', labelNames: ['app', 'stream', 'partition'], registers })),
      snapshotDuration: metric(registry, 'statestream_snapshot_duration_seconds', () =>
        new Histogram({ name: 'statestream_snapshot_duration_seconds', help: 'From the first partition copy to the snapshot renamed into place.', labelNames: app, buckets: SNAPSHOT_BUCKETS, registers })),
      snapshotLast: metric(registry, 'statestream_snapshot_last_success_timestamp_seconds', () =>
        new Gauge({ name: 'statestream_snapshot_last_success_timestamp_seconds', help: 'When the last snapshot completed (Unix seconds).', labelNames: app, registers })),
      snapshotBytes: metric(registry, 'statestream_snapshot_bytes', () => new Gauge({ name: 'statestream_snapshot_bytes', help: 'Bytes of partition copies in the last snapshot.', labelNames: app, registers })),
      snapshotFailures: metric(registry, 'statestream_snapshot_failures_total', () => new Counter({ name: 'statestream_snapshot_failures_total', help: 'Snapshots that could not be written.', labelNames: app, registers })),
      memoryEntries: metric(registry, 'statestream_state_memory_entries', () =>
        new Gauge({ name: 'statestream_state_memory_entries', help: "Entries of a partition's state its worker thread holds in memory after the last batch (bounded by stateCacheEntries per thread).", labelNames: ['app', 'stream', 'partition'], registers })),
      stateReads: metric(registry, 'statestream_state_reads_total', () =>
        new Counter({ name: 'statestream_state_reads_total', help: "Keys a partition's batches read, by where from: memory, or LMDB (a miss).", labelNames: ['app', 'stream', 'partition', 'from'], registers })),
    };
    collected('statestream_state_keys', 'Keys in a partition as of its last committed batch (its batch log).', ['app', 'stream', 'partition'], (job, g) => job.fillState(g, 'keyCount'));
    collected('statestream_state_bytes', "Bytes of a partition's state in LMDB: its state database and change log.", ['app', 'stream', 'partition'], (job, g) => job.fillState(g, 'stateBytes'));
    // Read from the stores, which keep every dead letter: the count survives restarts (a gauge: a reshard moves letters between partitions).
    collected('statestream_dead_letters_total', 'Records moved to a partition\'s dead-letter store by the dead-letter policy.', ['app', 'stream', 'partition'], (job, g) => job.fillState(g, 'deadLetters'));
    collected('statestream_source_dead_letters_total', 'Source messages the decoder could not read, kept in the source\'s dead-letter store.', ['app', 'source'], (job, g) => {
      for (const s of job.probe.kafkaSources()) g.set({ ...job.labels, source: String(s.id) }, s.deadLetterCount());
    });
    collected('statestream_kafka_lag_records', "Records in a topic-partition after the job's position: the broker's log-end offset minus where the next batch starts.", ['app', 'source', 'topic', 'partition'], async (job, g) => {
      for (const s of await job.sampleLag()) for (const p of s.partitions) if (p.lag !== undefined) g.set({ ...job.labels, source: String(s.source), topic: p.topic, partition: String(p.partition) }, p.lag);
    });
    collected('statestream_kafka_next_offset', 'Where the next batch starts in a topic-partition (the position kept in ZooKeeper).', ['app', 'source', 'topic', 'partition'], (job, g) => {
      for (const s of job.probe.kafkaSources()) for (const p of s.status().partitions) g.set({ ...job.labels, source: String(s.id), topic: p.topic, partition: String(p.partition) }, p.next);
    });
    collected('statestream_zookeeper_connected', '1 while the session of a Kafka source reaches ZooKeeper, else 0.', ['app', 'source', 'connect'], (job, g) => {
      for (const s of job.probe.kafkaSources()) {
        const zk = s.status().zookeeper;
        // A source still starting has no session yet: no series, rather than one saying ZooKeeper is away.
        if (!zk.opened) continue;
        g.set({ ...job.labels, source: String(s.id), connect: zk.connect }, zk.connected ? 1 : 0);
      }
    });
    this.m.interval.set(this.labels, probe.batchIntervalMs / 1000);
    this.m.failed.set(this.labels, 0);
    // Counters an alert reads with increase() begin at 0: over a series that begins at 1 it sees no increase, and misses the first failure.
    this.m.batches.inc({ ...this.labels, outcome: 'failed' }, 0);
    if (probe.snapshotsOn) this.m.snapshotFailures.inc(this.labels, 0);
  }

  private seeded = false;
  /** The batch time of the last batch.completed heard. */
  private lastCompleted: number | undefined;

  /**
   * At the first batch, once the stores are open: every partition's restart series from 0 (a
   * worker that dies in the first batch is counted from there), and the newest snapshot's
   * time, so that a restarted job whose snapshots keep failing is not blind to "no recent
   * snapshot" until one succeeds. (No snapshot of this run precedes its first batch.)
   */
  private seedAtFirstBatch(): void {
    if (this.seeded) return;
    this.seeded = true;
    for (const { stream, partitions } of this.probe.stateStreams()) for (const p of partitions) this.m.restarts.inc(this.partition(stream, p.partition), 0);
    const at = this.probe.snapshotsOn ? this.probe.newestSnapshot()?.at : undefined;
    if (at !== undefined) this.m.snapshotLast.set(this.labels, at / 1000);
  }

  /** Starts counting the context's events and reading its figures at each scrape. */
  attach(events: Events): void {
    jobsOf.get(this.registry)!.add(this);
    const { m, labels } = this;
    events.on(BatchEvents.STARTED, () => this.seedAtFirstBatch());
    // A partition a cluster instance takes: its restarts count from 0 before its first batch here.
    events.on(BatchEvents.PARTITION_TAKEN, (e) => m.restarts.inc(this.partition(e.stream, e.partition), 0));
    events.on(BatchEvents.COMPLETED, (e) => {
      this.lastCompleted = e.batchTime;
      // A re-run after a restore took its records and timed its keys out when it first ran.
      const replay = e.origin === 'replay';
      m.batches.inc({ ...labels, outcome: replay ? 'replayed' : 'completed' });
      m.processing.observe(labels, e.processingTimeMs / 1000);
      // A re-run took its records and timed its keys out when it first ran, and its batch time
      // is that run's: its "delay" would be the age of the snapshot restored, and its time,
      // minutes old, would say that batches have stopped.
      if (!replay) {
        m.scheduling.observe(labels, e.schedulingDelayMs / 1000);
        m.total.observe(labels, (e.schedulingDelayMs + e.processingTimeMs) / 1000);
        m.records.inc(labels, e.records);
        m.timedOut.inc(labels, e.keysTimedOut);
        m.lastBatch.set(labels, e.batchTime / 1000);
      }
      e.partitionStats.forEach((partitions, stream) =>
        partitions.forEach((p) => {
          const where = this.partition(stream, p.partition);
          // From 0, not from its first restart: increase() over a series that begins at 1 sees no increase, and the alert would miss that restart.
          m.restarts.inc(where, 0);
          m.memoryEntries.set(where, p.memoryEntries);
          m.stateReads.inc({ ...where, from: 'memory' }, p.memoryHits);
          m.stateReads.inc({ ...where, from: 'lmdb' }, p.storeReads);
        }),
      );
    });
    events.on(BatchEvents.FAILED, (e) => {
      // A batch.completed listener of the user's that threw fails a batch these metrics have
      // counted as completed (its state and outputs are done): counted once, the job failed.
      if (e.batchTime !== this.lastCompleted) m.batches.inc({ ...labels, outcome: 'failed' });
      m.failed.set(labels, 1);
    });
    events.on(BatchEvents.PARTITION_RESTARTED, (e) => m.restarts.inc(this.partition(e.stream, e.partition)));
    // A thread that died between batches restarts its partitions' actors as surely as one that died in a batch.
    events.on(BatchEvents.WORKER_REPLACED, (e) => {
      for (const p of e.partitions) m.restarts.inc(this.partition(p.stream, p.partition));
    });
    // A cluster instance reports the partitions it owns: one it gave up leaves with its series, or the new owner's would add to them.
    events.on(BatchEvents.PARTITION_RELEASED, (e) => this.forget(e.stream, e.partition));
    events.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => {
      m.snapshotDuration.observe(labels, e.durationMs / 1000);
      m.snapshotLast.set(labels, Date.now() / 1000);
      m.snapshotBytes.set(labels, e.bytes);
    });
    events.on(BatchEvents.SNAPSHOT_FAILED, () => m.snapshotFailures.inc(labels));
  }

  private detached = false;

  /**
   * The job is about to close its stores and sources: scrapes stop reading them now, so a
   * scrape during the rest of the stop cannot fail a shared registry's `/metrics`.
   */
  stopReading(): void {
    jobsOf.get(this.registry)?.delete(this);
  }

  private partition(stream: number, partition: number): { app: string; stream: string; partition: string } {
    const key = `${stream}:${partition}`;
    let where = this.partitionsSeen.get(key);
    if (!where) this.partitionsSeen.set(key, (where = { ...this.labels, stream: String(stream), partition: String(partition) }));
    return where;
  }

  /**
   * The job stopped: its stores and sources are closed, so scrapes no longer read them, and
   * its series leave the registry (a service that serves it goes on without a stopped job's
   * last figures, and a restart with fewer partitions without the ones that went).
   */
  detach(): void {
    this.stopReading();
    if (this.detached) return;
    this.detached = true;
    const { m, labels } = this;
    appsOf.get(this.registry)?.delete(labels.app);
    for (const metric of [m.processing, m.scheduling, m.total, m.records, m.timedOut, m.lastBatch, m.interval, m.failed, m.snapshotDuration, m.snapshotLast, m.snapshotBytes, m.snapshotFailures]) {
      metric.remove(labels);
    }
    for (const outcome of ['completed', 'failed', 'replayed']) m.batches.remove({ ...labels, outcome });
    for (const where of [...this.partitionsSeen.values()]) this.forget(where.stream, where.partition);
  }

  /** Removes one partition's series (event-fed; the scrape-time ones follow the stores). */
  private forget(stream: number | string, partition: number | string): void {
    const key = `${stream}:${partition}`;
    const where = this.partitionsSeen.get(key);
    if (!where) return;
    this.partitionsSeen.delete(key);
    this.m.restarts.remove(where);
    this.m.memoryEntries.remove(where);
    for (const from of ['memory', 'lmdb']) this.m.stateReads.remove({ ...where, from });
  }

  /** Lag of every Kafka source, from the samplers the status page reads too. */
  sampleLag(): Promise<SourceLag[]> {
    return Promise.all(this.lag().map((s) => s.sample()));
  }

  private fillState(gauge: SeriesSink, figure: 'keyCount' | 'stateBytes' | 'deadLetters'): void {
    for (const s of this.probe.stateStreams()) {
      for (const p of s.partitions) gauge.set({ ...this.labels, stream: String(s.stream), partition: String(p.partition) }, p[figure]);
    }
  }
}
