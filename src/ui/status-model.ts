import { BatchEvents, type BatchCompletedEvent, type BatchEventMap } from '../engine/batch-events.js';
import type { JobProbe } from '../metrics/job-probe.js';
import type { LagSampler, SourceLag } from '../metrics/kafka-lag.js';
import type { PartitionFigures } from '../storage/partition/figures.js';
import type { SnapshotOnDisk } from '../storage/snapshots/manifest.js';

/** One batch as the page lists it. */
export interface BatchRow {
  batchTime: number;
  status: 'running' | 'completed' | 'failed';
  records: number | undefined;
  schedulingDelayMs: number;
  processingTimeMs: number | undefined;
  totalDelayMs: number | undefined;
  /** Per mapWithState stream, per partition: apply + commit time on its worker. */
  partitionTimesMs: number[][] | undefined;
  /** The partition numbers of those times (a cluster instance's are the partitions it owns). */
  partitions: number[][] | undefined;
  /** As batch.completed says (a `replay` re-ran a batch for restored partitions); undefined until it completes. */
  origin: BatchCompletedEvent['origin'] | undefined;
  keysTimedOut: number | undefined;
  error: string | undefined;
}

export interface SnapshotRow {
  batchTime: number;
  at: number;
  outcome: 'completed' | 'failed';
  durationMs?: number;
  bytes?: number;
  keyCount?: number;
  path?: string;
  error?: string;
}

export interface RestartRow {
  at: number;
  stream: number;
  partition: number;
  /** null: the thread died between batches (worker.replaced). */
  batchTime: number | null;
  /** The restart's number within its batch; null between batches. */
  restart: number | null;
  cause: string;
}

/** What `/api/status` answers: everything the page draws. */
export interface StatusDocument {
  app: string;
  phase: string;
  now: number;
  batchIntervalMs: number;
  startedAt: number;
  /** What is wrong, in words an operator can act on; empty when all is well. */
  problems: string[];
  /**
   * `batches`: completed batches that are not re-runs, which `replayed` counts (as the metrics'
   * batches_total outcomes do, except for a batch a batch.completed listener failed: the page
   * counts it as failed, its records and timeouts with it, where the metrics count it
   * completed); `records` and `keysTimedOut` are those of the batches counted in `batches`.
   */
  totals: { batches: number; replayed: number; failed: number; records: number; keysTimedOut: number };
  /** Newest last, at most `retained`. */
  batches: BatchRow[];
  streams: Array<{ stream: number; partitions: PartitionFigures[] }>;
  snapshots: SnapshotRow[];
  /**
   * The newest snapshot in the job's folder while none has completed in this process: a
   * restarted job's page shows what a restore would start from, not "no snapshot".
   */
  snapshotOnDisk: SnapshotOnDisk | undefined;
  kafka: SourceLag[];
  sourceDeadLetters: Array<{ source: number; count: number }>;
  restarts: RestartRow[];
}

type Events = { on<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): unknown };

function keep<T>(list: T[], item: T, limit: number): void {
  list.push(item);
  if (list.length > limit) list.splice(0, list.length - limit);
}

function words(error: Error): string {
  const code = (error as { code?: string }).code;
  return `${error.name}${code ? ` (${code})` : ''}: ${error.message}`;
}

/**
 * The newest batches whose per-partition times the document carries: the page's table shows
 * as many, and opens their partitions. Older rows keep their figures for the charts; with a
 * thousand partitions, their times would make every poll tens of megabytes.
 */
export const DETAILED_ROWS = 50;

/**
 * The status page's memory of the job: the recent batches (as Spark's Streaming tab keeps
 * `spark.streaming.ui.retainedBatches`), snapshots, restarts and start-up findings, fed by
 * the context's events. State, lag and ZooKeeper are read when the page asks.
 */
export class StatusModel {
  private readonly batches: BatchRow[] = [];
  private readonly snapshots: SnapshotRow[] = [];
  private readonly restarts: RestartRow[] = [];
  /** Start-up findings (restored stores, batches that cannot be replayed), in words. */
  private readonly findings: string[] = [];
  private readonly totals = { batches: 0, replayed: 0, failed: 0, records: 0, keysTimedOut: 0 };
  private startedAt = Date.now();
  /** Whether a snapshot of this run completed: its row may have left the list of the last 100. */
  private snapshotCompleted = false;

  constructor(
    private readonly probe: JobProbe,
    private readonly lag: () => LagSampler[],
    private readonly retained = 1000,
  ) {}

  /** The job's start(): the page is up from here, not from when the context was made. */
  started(): void {
    this.startedAt = Date.now();
  }

  attach(events: Events): void {
    const row = (batchTime: number): BatchRow | undefined => this.batches.findLast((b) => b.batchTime === batchTime && b.status === 'running');
    events.on(BatchEvents.STARTED, (e) =>
      keep(this.batches, { batchTime: e.batchTime, status: 'running', records: undefined, schedulingDelayMs: e.schedulingDelayMs, processingTimeMs: undefined, totalDelayMs: undefined, partitionTimesMs: undefined, partitions: undefined, origin: undefined, keysTimedOut: undefined, error: undefined }, this.retained),
    );
    events.on(BatchEvents.COMPLETED, (e) => {
      const done: BatchRow = {
        batchTime: e.batchTime, status: 'completed', records: e.records, schedulingDelayMs: e.schedulingDelayMs, processingTimeMs: e.processingTimeMs,
        totalDelayMs: e.schedulingDelayMs + e.processingTimeMs, partitionTimesMs: e.partitionTimesMs, partitions: e.partitionStats.map((ps) => ps.map((p) => p.partition)), origin: e.origin, keysTimedOut: e.keysTimedOut, error: undefined,
      };
      const running = row(e.batchTime);
      if (running) Object.assign(running, done);
      else keep(this.batches, done, this.retained);
      // A re-run after a restore: its records and timeouts were counted when it first ran.
      if (e.origin === 'replay') this.totals.replayed++;
      else {
        this.totals.batches++;
        this.totals.records += e.records;
        this.totals.keysTimedOut += e.keysTimedOut;
      }
    });
    events.on(BatchEvents.FAILED, (e) => {
      const failed = { status: 'failed' as const, error: words(e.error) };
      // A batch.completed listener of the user's that threw fails a batch already shown as completed: the same row, counted once.
      const completed = this.batches.findLast((b) => b.batchTime === e.batchTime && b.status === 'completed');
      if (completed) {
        if (completed.origin === 'replay') this.totals.replayed--;
        else {
          this.totals.batches--;
          this.totals.records -= completed.records ?? 0;
          this.totals.keysTimedOut -= completed.keysTimedOut ?? 0;
        }
        Object.assign(completed, failed);
        this.totals.failed++;
        return;
      }
      const running = row(e.batchTime);
      if (running) Object.assign(running, failed);
      else keep(this.batches, { batchTime: e.batchTime, schedulingDelayMs: 0, records: undefined, processingTimeMs: undefined, totalDelayMs: undefined, partitionTimesMs: undefined, partitions: undefined, origin: undefined, keysTimedOut: undefined, ...failed }, this.retained);
      this.totals.failed++;
    });
    events.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => {
      this.snapshotCompleted = true;
      keep(this.snapshots, { batchTime: e.batchTime, at: Date.now(), outcome: 'completed', durationMs: e.durationMs, bytes: e.bytes, keyCount: e.keyCount, path: e.path }, 100);
    });
    events.on(BatchEvents.SNAPSHOT_FAILED, (e) => keep(this.snapshots, { batchTime: e.batchTime, at: Date.now(), outcome: 'failed', error: words(e.error) }, 100));
    events.on(BatchEvents.PARTITION_RESTARTED, (e) =>
      keep(this.restarts, { at: Date.now(), stream: e.stream, partition: e.partition, batchTime: e.batchTime, restart: e.restart, cause: words(e.cause) }, 100),
    );
    events.on(BatchEvents.WORKER_REPLACED, (e) => {
      for (const p of e.partitions) keep(this.restarts, { at: Date.now(), stream: p.stream, partition: p.partition, batchTime: null, restart: null, cause: words(e.cause) }, 100);
    });
    events.on(BatchEvents.STATE_RESTORED, (e) => {
      for (const p of e.partitions) {
        this.findings.push(
          `stream ${e.stream} partition ${p.partition} was damaged (${p.problem}) and was restored from the snapshot of batch ${e.snapshot}` +
            (e.replayed ? '; the batches since are replayed from Kafka' : '; a queue source cannot replay the batches since') +
            (e.damagedDir ? ` (the damaged store is kept in ${e.damagedDir})` : ''),
        );
      }
    });
    events.on(BatchEvents.RECOVERY_INCOMPLETE, (e) => this.findings.push(e.message));
  }

  async document(): Promise<StatusDocument> {
    const kafka = await Promise.all(this.lag().map((s) => s.sample()));
    const failure = this.probe.failure();
    const problems = [
      ...(failure ? [`the job stopped processing: ${words(failure)}`] : []),
      ...kafka.flatMap((k) => [
        ...(k.zookeeper.connected || !k.zookeeper.opened
          ? []
          : [`ZooKeeper at ${k.zookeeper.connect} has not been reachable since ${new Date(k.zookeeper.sinceMs).toISOString()}: batches wait for it to record their offsets (under ${k.zookeeper.root}) and retry`]),
        ...(k.problem ? [k.problem] : []),
      ]),
      ...this.findings,
      ...this.snapshots.slice(-1).flatMap((s) => (s.outcome === 'failed' ? [`the last snapshot (batch ${s.batchTime}) failed: ${s.error}`] : [])),
    ];
    return {
      app: this.probe.appName,
      phase: this.probe.phase(),
      now: Date.now(),
      batchIntervalMs: this.probe.batchIntervalMs,
      startedAt: this.startedAt,
      problems,
      totals: { ...this.totals },
      batches: this.batches.map((b, i) => (i < this.batches.length - DETAILED_ROWS ? { ...b, partitionTimesMs: undefined, partitions: undefined } : b)),
      streams: this.probe.stateStreams(),
      snapshots: this.snapshots,
      snapshotOnDisk: this.snapshotCompleted ? undefined : this.probe.newestSnapshot(),
      kafka,
      sourceDeadLetters: this.probe.kafkaSources().map((s) => ({ source: s.id, count: s.deadLetterCount() })),
      restarts: this.restarts,
    };
  }
}
