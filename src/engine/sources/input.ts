import type { SourcePositions } from '../../storage/snapshots/manifest.js';
import type { BatchEventMap } from '../batch-events.js';
import type { RecordPieces } from '../batch.js';

/** A batch a replayable source recorded before a crash and must run again first. */
export interface RecoveredBatch {
  batchTime: number;
  /**
   * Exactly the records of that batch, rebuilt from the recorded positions; called when the
   * batch is about to run, oldest first, so that a start with many batches to replay (after a
   * snapshot restore) holds about one batch's records at a time, not every one.
   */
  take(): Promise<unknown[]>;
  /**
   * The batch ended before (every partition committed it and its outputs ran); it is
   * re-run only for partitions restored from a snapshot, so its outputs are not run again.
   */
  ended: boolean;
}

export interface StartContext {
  /** The job's data folder; the context holds its lock while sources open and run. */
  dataDir: string;
  appName: string;
  /** Oldest batch any state partition holds (undefined: some partition holds none). */
  replayAfter: number | undefined;
  /** Whether the job has state streams, and whether any partition holds a batch (a fresh store cannot follow positions that moved on). */
  hasStateStreams: boolean;
  storesHoldState: boolean;
  /** Keep each batch's ranges for replay, because snapshots are taken or kept. */
  keepHistory: boolean;
  /**
   * Some state stream times idle keys out: a batch without records still changes state and
   * has outputs, so a replayable source records it like any other, for a crash inside it.
   */
  sweepsIdleKeys: boolean;
  /**
   * Emits one of the context's events, now or while running: records a Kafka source with
   * failOnDataLoss false had to go on without, ownership of its ZooKeeper root taken or lost.
   */
  announce<E extends keyof BatchEventMap>(event: E, payload: BatchEventMap[E]): void;
}

/** What the scheduler needs of an input stream. Replayable sources implement the optional hooks. */
export interface InputStream {
  readonly id: number;
  /**
   * At a batch's time: the records this batch gets. `behind` is true while earlier batches
   * are still queued, so a source with a backlog can leave it where it is (backpressure).
   */
  take(batchTime: number, behind: boolean): RecordPieces;
  /**
   * At start: connect, find positions, and rebuild the batches the state stores miss: the
   * batch that was in flight, and (after a restore from a snapshot) every batch after
   * `replayAfter`, the oldest batch any partition holds. Oldest first.
   */
  open?(context: StartContext): Promise<RecoveredBatch[]>;
  /** Whether `open` can rebuild past batches; a source that cannot leaves a restored partition short. */
  readonly replayable?: boolean;
  /**
   * After `open`: the newest batch this source recorded as ended. Its outputs ran, whole: a
   * batch another source rebuilds as in flight at that time or before is not run again.
   */
  endedThrough?(): number | undefined;
  /** After the batch that just completed: where the source stands, for a snapshot's manifest. */
  positions?(): SourcePositions;
  /** Snapshots older than `batchTime` are gone: replay records before it are no longer needed. */
  retainHistoryFrom?(batchTime: number): Promise<void>;
  /** Before the batch runs: record where it comes from. */
  beforeBatch?(batchTime: number): Promise<void>;
  /** After every output of the batch ran and every state partition committed it. */
  afterBatch?(batchTime: number): Promise<void>;
  /** The context is stopping: stop waiting for unreachable services (the batch in flight is replayed next start). */
  interrupt?(): void;
  close?(): Promise<void>;
}
