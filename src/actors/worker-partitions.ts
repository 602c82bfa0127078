import { openPartitionStore, type PartitionStore } from '../storage/partition/store.js';
import { LoggedStateMap } from '../storage/partition/logged-state-map.js';
import { MemoryStateMap } from '../storage/partition/memory-state-map.js';
import type { ApplyTask } from './messages.js';
import type { BatchApplication } from './apply-shard.js';

/**
 * What a worker thread holds for one partition pinned to it: the open store and the
 * partition's state in memory over it. Lives as long as the worker; a worker that dies
 * takes it along, and the fresh worker that inherits the partition starts from LMDB.
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
}

const held = new Map<string, WorkerPartition>();

export function workerPartition(task: Pick<ApplyTask, 'storePath' | 'incarnation' | 'cacheEntries'>): WorkerPartition {
  const known = held.get(task.storePath);
  if (known?.incarnation === task.incarnation) return known;
  // The stores were opened again (a new start on the same path): nothing held is trusted.
  known?.store.env.close();
  const store = openPartitionStore(task.storePath);
  const partition: WorkerPartition = { store, memory: new MemoryStateMap(new LoggedStateMap(store), task.cacheEntries), incarnation: task.incarnation, batch: undefined, queue: Promise.resolve() };
  held.set(task.storePath, partition);
  return partition;
}
