import { performance } from 'node:perf_hooks';
import { ConfigError, describeValue, given, isIntegerIn } from '../errors.js';
import type { PartitionStore } from '../storage/partition/store.js';
import { BatchLog } from '../storage/partition/batch-log.js';
import { listSnapshots, pruneSnapshots, type SnapshotInfo, type SourcePositions } from '../storage/snapshots/manifest.js';
import { beginSnapshot } from '../storage/snapshots/writer.js';

/** How often a running job snapshots its state: every n batches, or at the first batch after `ms` elapsed. */
export type SnapshotEvery = number | { batches: number } | { ms: number };

export interface SnapshotPolicy {
  everyBatches: number | undefined;
  everyMs: number | undefined;
  keep: number;
}

const MAX_EVERY_BATCHES = 1_000_000;
const MAX_EVERY_MS = 30 * 24 * 3600_000;

export function snapshotPolicy(every: unknown, keep: unknown): SnapshotPolicy | undefined {
  const kept = given(keep, 3);
  if (!isIntegerIn(kept, 1, 1000)) {
    throw new ConfigError(`StreamingContext: snapshotsKept must be an integer from 1 to 1000, got ${describeValue(kept)}`, { option: 'snapshotsKept' });
  }
  if (every === undefined) return undefined;
  const bad = () =>
    new ConfigError(
      `StreamingContext: snapshotEvery must be a number of batches from 1 to ${MAX_EVERY_BATCHES}, { batches: n } or { ms: n } (n from 1 to ${MAX_EVERY_MS}, 30 days), got ${describeValue(every)}`,
      { option: 'snapshotEvery' },
    );
  // A bound a user would not mean to pass: beyond it the job would never snapshot at all.
  const positive = (n: unknown, max: number): number => {
    if (!isIntegerIn(n, 1, max)) throw bad();
    return n;
  };
  if (typeof every === 'number') return { everyBatches: positive(every, MAX_EVERY_BATCHES), everyMs: undefined, keep: kept };
  if (typeof every !== 'object' || every === null || Array.isArray(every)) throw bad();
  const keys = Object.keys(every);
  if (keys.length !== 1) throw bad();
  if ('batches' in every) return { everyBatches: positive(every.batches, MAX_EVERY_BATCHES), everyMs: undefined, keep: kept };
  if ('ms' in every) return { everyBatches: undefined, everyMs: positive(every.ms, MAX_EVERY_MS), keep: kept };
  throw bad();
}

export interface SnapshotHost {
  dataDir: string;
  appName: string;
  streams(): Array<{ stream: number; stores: PartitionStore[] }>;
  sources(): SourcePositions[];
  /** Snapshots older than this are gone: sources may forget what they kept to replay them. */
  retainFrom(batchTime: number): Promise<void>;
  /** Neither throws: the context's listeners of snapshot events are contained (a throw is a process warning). */
  completed(info: SnapshotInfo, timings: { gateMs: number; durationMs: number }): void;
  failed(batchTime: number, error: Error): void;
}

/**
 * Decides when to snapshot and runs one snapshot at a time beside the batches. After a
 * batch completes, `afterBatch` starts the copies and returns once they hold their read
 * transactions (milliseconds); the copy itself goes on while the next batches commit.
 */
export class SnapshotScheduler {
  private batchesSince = 0;
  private lastAt: number | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly policy: SnapshotPolicy,
    private readonly host: SnapshotHost,
  ) {}

  /**
   * A scheduler that goes on counting where the job's snapshots stand, as one long run
   * would: from the newest snapshot in the folder, `{ ms }` in batch time, `{ batches }` in
   * batch intervals from its batch to the stores' last one (so a stop between them counts
   * its downtime too, which only brings the next snapshot sooner). Counting from each start instead, a job restarted more often than its
   * interval (a deploy every 45 minutes, snapshots every hour) would never take one, and a
   * Kafka job's batch history, trimmed only by snapshots, would grow without end. Stores
   * that hold state without any snapshot of it take one at the first batch.
   */
  static resuming(policy: SnapshotPolicy, host: SnapshotHost, batchIntervalMs: number): SnapshotScheduler {
    const scheduler = new SnapshotScheduler(policy, host);
    const lastSnapshot = listSnapshots(host.dataDir)[0]?.batchTime;
    let storedBatch: number | undefined;
    for (const { stores } of host.streams()) {
      for (const store of stores) {
        // The main thread's read transaction may predate the workers' last commits.
        store.env.resetReadTxn();
        const last = new BatchLog(store).last()?.batchTime;
        if (last !== undefined && (storedBatch === undefined || last > storedBatch)) storedBatch = last;
      }
    }
    if (lastSnapshot !== undefined) {
      scheduler.lastAt = lastSnapshot;
      if (storedBatch !== undefined) scheduler.batchesSince = Math.max(0, Math.round((storedBatch - lastSnapshot) / batchIntervalMs));
    } else if (storedBatch !== undefined) {
      scheduler.lastAt = Number.NEGATIVE_INFINITY;
      scheduler.batchesSince = Number.POSITIVE_INFINITY;
    }
    return scheduler;
  }

  private due(batchTime: number): boolean {
    this.batchesSince++;
    if (this.policy.everyBatches !== undefined) return this.batchesSince >= this.policy.everyBatches;
    this.lastAt ??= batchTime;
    return batchTime - this.lastAt >= this.policy.everyMs!;
  }

  async afterBatch(batchTime: number): Promise<void> {
    // One at a time: a snapshot still copying is not stacked with another.
    if (!this.due(batchTime) || this.running) return;
    this.batchesSince = 0;
    this.lastAt = batchTime;
    const began = performance.now();
    let gateMs = 0;
    let snapshot;
    try {
      snapshot = beginSnapshot({ dataDir: this.host.dataDir, batchTime, appName: this.host.appName, streams: this.host.streams(), sources: this.host.sources() });
    } catch (error) {
      this.host.failed(batchTime, error as Error);
      return;
    }
    this.running = snapshot.done
      .then(
        async (info) => {
          // The snapshot is in place: say so before the housekeeping, which may meet a
          // stopping source or an unreachable ZooKeeper (the next snapshot trims again).
          this.host.completed(info, { gateMs, durationMs: performance.now() - began });
          try {
            const oldest = pruneSnapshots(this.host.dataDir, this.policy.keep).at(-1);
            if (oldest) await this.host.retainFrom(oldest.batchTime);
          } catch (error) {
            // Only housekeeping: nothing is lost, and the next snapshot trims again. Said all the
            // same: one that keeps failing fills the disk with old snapshots, or ZooKeeper with history.
            process.emitWarning(`after the snapshot of batch ${batchTime}, older snapshots or the batch history they need could not be trimmed: ${(error as Error)?.message ?? String(error)}; the next snapshot tries again`, {
              code: 'STATESTREAM_SNAPSHOT', detail: (error as Error)?.stack,
            });
          }
        },
        (error: Error) => this.host.failed(batchTime, error),
      )
      .finally(() => (this.running = undefined));
    await snapshot.started;
    gateMs = performance.now() - began;
  }

  /** Before the stores close: a copy must not outlive its environment. */
  async settle(): Promise<void> {
    await this.running;
  }
}
