import type { OwnershipLostError } from '../errors.js';
import type { OffsetRange } from '../storage/zookeeper/offsets.js';
import type { OwnerRecord } from '../storage/zookeeper/ownership.js';

/** Events a StreamingContext emits for the embedding service, with their payloads. */
export const BatchEvents = {
  STARTED: 'batch.started',
  COMPLETED: 'batch.completed',
  FAILED: 'batch.failed',
  /** A partition actor's worker died and the supervisor restarted it. */
  PARTITION_RESTARTED: 'partition.restarted',
  /**
   * A worker thread died while it ran no task (work a mapping function left behind failed
   * after its batch): a fresh thread took its place, and its partitions read their state
   * from LMDB. Nothing was lost; a process warning (STATESTREAM_WORKER) says it too.
   */
  WORKER_REPLACED: 'worker.replaced',
  /**
   * At start: some partitions of a store are behind its newest batch (a batch failed, the
   * process died after some partitions committed it, or a partition was restored from a
   * snapshot) and a source cannot replay what they miss (a queue source).
   */
  RECOVERY_INCOMPLETE: 'recovery.incomplete',
  /**
   * After a start: a partition's worker read back into memory the keys it worked on when the
   * job last stopped cleanly (between batches, while the first batches may already run).
   */
  MEMORY_WARMED: 'memory.warmed',
  /** A snapshot is whole and in place (the copy ran beside the batches). */
  SNAPSHOT_COMPLETED: 'snapshot.completed',
  /** A snapshot could not be written; earlier snapshots are untouched and batches go on. */
  SNAPSHOT_FAILED: 'snapshot.failed',
  /** At start: damaged partition stores were replaced by a snapshot's copies. */
  STATE_RESTORED: 'state.restored',
  /**
   * A Kafka source found records gone from the broker that the job had not read (retention,
   * or a recreated topic) and went on without them, because `failOnDataLoss` is false.
   */
  DATA_LOST: 'source.data-lost',
  /** At start: a Kafka source owns its ZooKeeper root (`<root>/owners`); names who, and an earlier owner it took over from. */
  OWNERSHIP_TAKEN: 'ownership.taken',
  /**
   * A Kafka source's owner node is gone (its ZooKeeper session expired, or the node was
   * deleted): it writes no more positions, and the next batch fails with OwnershipLostError.
   */
  OWNERSHIP_LOST: 'ownership.lost',
  /** Cluster: the leader's assignment changed; what this instance owns now. */
  ASSIGNMENT_CHANGED: 'cluster.assignment',
  /** Cluster: this instance took a state partition and restored its store from the changelog (with the time it took). */
  PARTITION_TAKEN: 'cluster.partition.taken',
  /** Cluster: this instance gave a state partition up (moved by the leader) or lost it (its ZooKeeper session expired). */
  PARTITION_RELEASED: 'cluster.partition.released',
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
  /**
   * Per mapWithState stream, per partition: time its worker spent applying and committing.
   * In partition order, as partitionStats: every partition in a single process, the ones the
   * instance owns in a cluster (partitionStats[s][i].partition names each).
   */
  partitionTimesMs: number[][];
  /** Per mapWithState stream, per partition: which one, where it ran and what its memory served. */
  partitionStats: PartitionBatchStats[][];
  keysTimedOut: number;
  /**
   * `live`: taken now; `in-flight`: rebuilt at start because the last run stopped inside it;
   * `replay`: a batch that ended before, re-run at start for partitions restored from a
   * snapshot (its records and timeouts were counted when it first ran, its outputs not run again).
   */
  origin: 'live' | 'in-flight' | 'replay';
}

/** One partition's part of a batch, as its worker reported it. */
export interface PartitionBatchStats {
  /** The partition's number in its stream. */
  partition: number;
  /** The worker thread (its threadId) the partition is pinned to; a new one after a worker died. */
  thread: number;
  /** Keys the partition holds after the batch. */
  keyCount: number;
  /** Entries of the partition's state the worker holds in memory after the batch. */
  memoryEntries: number;
  /** Reads of this batch served from memory, and reads that went to LMDB. */
  memoryHits: number;
  storeReads: number;
  /** The partition had already committed this batch (a replay): nothing was applied. */
  replayed: boolean;
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

export interface WorkerReplacedEvent {
  /** The thread's number, 0 to threads - 1. */
  worker: number;
  /** The partitions pinned to it, which the fresh thread serves. */
  partitions: Array<{ stream: number; partition: number }>;
  cause: Error;
}

export interface RecoveryIncompleteEvent {
  stream: number;
  /** Which batches are lost for which partitions, in words. */
  message: string;
  /** The newest batch some partition committed. */
  lastBatch: number;
  /** Partitions that did not commit it, with the batch they hold. */
  behind: Array<{ partition: number; lastBatch: number | undefined }>;
}

export interface SnapshotCompletedEvent {
  batchTime: number;
  path: string;
  /** Bytes of partition copies. */
  bytes: number;
  keyCount: number;
  /** How long the next batch waited for the copies to fix their view. */
  gateMs: number;
  /** From the first copy to the rename into place. */
  durationMs: number;
}

export interface MemoryWarmedEvent {
  stream: number;
  partition: number;
  /** Keys the store's hint named: the last clean stop's (after a crash too); 0 when no clean stop ever left one, as on a new store. */
  hinted: number;
  /** Of those, the keys memory holds now (the others are gone from the store, or memory was half full). */
  loaded: number;
  durationMs: number;
}

export interface SnapshotFailedEvent {
  batchTime: number;
  error: Error;
}

export interface StateRestoredEvent {
  stream: number;
  /** The snapshot's batch time and folder. */
  snapshot: number;
  path: string;
  partitions: Array<{ partition: number; problem: string; lastBatch: number | undefined }>;
  /** Where the damaged stores were moved, if any existed. */
  damagedDir: string | undefined;
  /**
   * Whether the sources rebuild every batch after the snapshot. When false (a queue source),
   * `recovery.incomplete` names the batches the restored partitions miss.
   */
  replayed: boolean;
}

/** The offsets lost: `from` (inclusive) to `until` (exclusive), the first offset the broker still holds. */
export interface DataLostEvent extends OffsetRange {
  /** Where the job needed them: its stored position, a recorded batch (in flight, or to replay after a restore), or while running. */
  where: 'position' | 'recorded-batch' | 'running';
  /** The recorded batch that loses them, for 'recorded-batch'. */
  batchTime?: number;
  message: string;
}

export interface OwnershipTakenEvent {
  /** The Kafka stream's id. */
  source: number;
  root: string;
  /** This job's owner node, and what it holds. */
  node: string;
  owner: OwnerRecord;
  /** How long the start waited for an earlier owner's node to go. */
  waitedMs: number;
  /** An earlier owner that certainly no longer ran, whose node this start removed, and why. */
  tookOverFrom?: { node: string; owner: OwnerRecord; reason: string };
}

export interface OwnershipLostEvent {
  source: number;
  root: string;
  node: string;
  error: OwnershipLostError;
}

export interface AssignmentChangedEvent {
  instance: string;
  /** The leader's count of assignments written. */
  generation: number;
  /** Per state stream, the partitions this instance is to own, with their epochs. */
  owned: Array<{ stream: number; partition: number; epoch: number }>;
}

export interface PartitionTakenEvent {
  stream: number;
  partition: number;
  epoch: number;
  /** Changelog records read, and whether the local store was kept and read on from where it stood. */
  records: number;
  reused: boolean;
  /** The last whole batch the partition holds, if any. */
  lastBatch: number | undefined;
  /** From the assignment to the first batch it can apply: waiting for the old owner, restoring, opening. */
  ms: number;
}

export interface PartitionReleasedEvent {
  stream: number;
  partition: number;
  epoch: number;
  /** 'moved': the assignment gave it to another instance; 'lost': the session expired; 'failed': taking it failed. */
  reason: 'moved' | 'lost' | 'failed';
  error?: Error;
}

export interface BatchEventMap {
  [BatchEvents.STARTED]: BatchStartedEvent;
  [BatchEvents.COMPLETED]: BatchCompletedEvent;
  [BatchEvents.FAILED]: BatchFailedEvent;
  [BatchEvents.PARTITION_RESTARTED]: PartitionRestartedEvent;
  [BatchEvents.WORKER_REPLACED]: WorkerReplacedEvent;
  [BatchEvents.RECOVERY_INCOMPLETE]: RecoveryIncompleteEvent;
  [BatchEvents.MEMORY_WARMED]: MemoryWarmedEvent;
  [BatchEvents.SNAPSHOT_COMPLETED]: SnapshotCompletedEvent;
  [BatchEvents.SNAPSHOT_FAILED]: SnapshotFailedEvent;
  [BatchEvents.STATE_RESTORED]: StateRestoredEvent;
  [BatchEvents.DATA_LOST]: DataLostEvent;
  [BatchEvents.OWNERSHIP_TAKEN]: OwnershipTakenEvent;
  [BatchEvents.OWNERSHIP_LOST]: OwnershipLostEvent;
  [BatchEvents.ASSIGNMENT_CHANGED]: AssignmentChangedEvent;
  [BatchEvents.PARTITION_TAKEN]: PartitionTakenEvent;
  [BatchEvents.PARTITION_RELEASED]: PartitionReleasedEvent;
}
