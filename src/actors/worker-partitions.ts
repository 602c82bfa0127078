import { BatchLog, type CommittedBatch } from '../storage/partition/batch-log.js';
import { openPartitionStore, type PartitionStore } from '../storage/partition/store.js';
import { LoggedStateMap } from '../storage/partition/logged-state-map.js';
import { MemoryStateMap } from '../storage/partition/memory-state-map.js';
import type { ApplyTask } from './messages.js';
import type { BatchApplication } from './apply-shard.js';
import { uncut } from './thread-cut.cjs';

/**
 * What a worker thread holds for one partition pinned to it: the open store and the
 * partition's state in memory over it. Lives as long as the worker, or until a cluster
 * instance gives the partition up (releasePartition); a worker that dies takes it along,
 * and the fresh worker that inherits the partition starts from LMDB.
 */
export interface WorkerPartition {
  readonly store: PartitionStore;
  readonly memory: MemoryStateMap;
  readonly incarnation: string;
  /**
   * The batch the memory mirrors (the last one this worker committed). When the store's
   * batch log says otherwise, someone else wrote the store and the memory is dropped.
   */
  batch: number | undefined;
  /** The batch being applied, chunk by chunk, until its last chunk commits it. */
  application?: BatchApplication;
  /** The chunk being applied: the next waits for it. */
  queue: Promise<void>;
  /** The times of the last batches committed here, oldest first: a clean stop records the keys they updated for the next start (memory-warm-up.ts). */
  recentBatches: number[];
  /** The job is stopping: a warm-up still running ends, as there are no more batches to serve. */
  stopping: boolean;
  /** Idle work (between-batches.ts) is under way for this partition. */
  idleScheduled: boolean;
}

const held = new Map<string, WorkerPartition>();

export function workerPartition(task: Pick<ApplyTask, 'storePath' | 'incarnation' | 'cacheEntries'>): WorkerPartition {
  const known = held.get(task.storePath);
  if (known?.incarnation === task.incarnation) return known;
  // The stores were opened again (a new start on the same path): nothing held is trusted.
  // A close holds the store's open gate alone: a cut in the middle would leave it held.
  if (known) void uncut('closing a store', () => known.store.env.close());
  // Opening creates the store's databases in write transactions of lmdb's own.
  const store = uncut('opening a store', () => openPartitionStore(task.storePath));
  guardWrites(store);
  const partition: WorkerPartition = { store, memory: new MemoryStateMap(new LoggedStateMap(store), task.cacheEntries), incarnation: task.incarnation, batch: undefined, queue: Promise.resolve(), recentBatches: [], stopping: false, idleScheduled: false };
  held.set(task.storePath, partition);
  return partition;
}

/**
 * Every write transaction on a store this thread holds runs where a stop that ran out of
 * time cannot terminate the thread (thread-cut.cts): the batch commits, the change log's
 * folds, the warm-up hints, whichever module or database opens the transaction.
 */
function guardWrites(store: PartitionStore): void {
  // lmdb makes one class per environment, shared by its root and its named databases, whose
  // every write (a put outside a transaction too) goes through transactionSync.
  const shared = Object.getPrototypeOf(store.env) as { transactionSync<T>(action: () => T, flags?: number): T };
  const transactionSync = shared.transactionSync;
  shared.transactionSync = function <T>(this: unknown, action: () => T, flags?: number): T {
    return uncut('a write transaction', () => transactionSync.call(this, action, flags) as T);
  };
}

/** The job is stopping: every partition this thread holds ends its work between batches (none may be under way when the thread goes). */
export function stopAllPartitions(): void {
  for (const partition of held.values()) partition.stopping = true;
}

/**
 * Lets a partition go (a cluster instance gave it up): its work between batches ends, the
 * steps already queued finish, and its memory and store are closed. Without this, the
 * thread kept the partition's memory (up to its share of the bound) and its LMDB
 * environment open for the life of the job, for a partition another instance now writes.
 * Returns whether the thread held it.
 */
export async function releasePartition(storePath: string, incarnation: string): Promise<boolean> {
  const partition = heldPartition(storePath, incarnation);
  if (!partition) return false;
  partition.stopping = true;
  held.delete(storePath);
  // Steps queued behind each other: wait until none is left.
  for (let queue = partition.queue; ; queue = partition.queue) {
    await queue;
    if (queue === partition.queue) break;
  }
  partition.application?.abandon();
  partition.application = undefined;
  partition.memory.clear();
  void uncut('closing a store', () => partition.store.env.close());
  return true;
}

/** The partition this thread holds for the store, if it is of this incarnation (a later start opened it afresh otherwise). */
export function heldPartition(storePath: string, incarnation: string): WorkerPartition | undefined {
  const known = held.get(storePath);
  return known?.incarnation === incarnation ? known : undefined;
}

/**
 * The store's last committed batch, read afresh. The batch log is the truth: when it names
 * another batch than the one memory mirrors, someone else wrote the store (a restore, an
 * import, another owner) and what memory holds is dropped.
 */
export function syncWithStore(partition: WorkerPartition): CommittedBatch | undefined {
  const { store, memory } = partition;
  store.env.resetReadTxn();
  const last = new BatchLog(store).last();
  if (partition.batch !== last?.batchTime) {
    memory.clear();
    partition.batch = last?.batchTime;
  }
  return last;
}
