/** Events a StreamingContext emits for the embedding service, with their payloads. */
export const BatchEvents = {
  STARTED: 'batch.started',
  COMPLETED: 'batch.completed',
  FAILED: 'batch.failed',
  /** A partition actor's worker died and the supervisor restarted it. */
  PARTITION_RESTARTED: 'partition.restarted',
  /**
   * At start: some partitions of a store are behind its newest batch (a batch failed or the
   * process died after some partitions committed it). A queue source cannot replay it.
   */
  RECOVERY_INCOMPLETE: 'recovery.incomplete',
} as const;

export interface BatchStartedEvent {
  batchTime: number;
  /** How long after its batch time the batch began (it waits while earlier batches run). */
  schedulingDelayMs: number;
}

export interface BatchCompletedEvent {
  batchTime: number;
  /** Records taken from the sources for this batch. */
  records: number;
  schedulingDelayMs: number;
  processingTimeMs: number;
  /** Per mapWithState stream, per partition: time its worker spent applying and committing. */
  partitionTimesMs: number[][];
  keysTimedOut: number;
}

export interface BatchFailedEvent {
  batchTime: number;
  error: Error;
}

export interface PartitionRestartedEvent {
  stream: number;
  partition: number;
  batchTime: number;
  restart: number;
  cause: Error;
}

export interface RecoveryIncompleteEvent {
  stream: number;
  /** The newest batch some partition committed. */
  lastBatch: number;
  /** Partitions that did not commit it, with the batch they hold. */
  behind: Array<{ partition: number; lastBatch: number | undefined }>;
}

export interface BatchEventMap {
  [BatchEvents.STARTED]: BatchStartedEvent;
  [BatchEvents.COMPLETED]: BatchCompletedEvent;
  [BatchEvents.FAILED]: BatchFailedEvent;
  [BatchEvents.PARTITION_RESTARTED]: PartitionRestartedEvent;
  [BatchEvents.RECOVERY_INCOMPLETE]: RecoveryIncompleteEvent;
}
