import { existsSync } from 'node:fs';
import { readCheckedLayout, type StoreLayout } from './batch-log.js';
import { checkStoreFile } from './file-check.js';
import { isClusterStore } from './store-check.js';
import { closePartitionStores, openPartitionStore, partitionPath, partitionsOnDisk, stateDir, withPartitionStore, type PartitionStore } from './store.js';
import { interruptedSwap } from '../stream-swap.js';

/** Why a stream's stores are not read as one job's state; the caller words it (the CLI for its user, exportJobState for its caller). */
export type StreamRefusal =
  /** A reshard, import or restore a crash left half-done: the folder holds the state before it, or none, until a start settles it. */
  | { kind: 'swap-pending'; swap: string }
  /** No state folder, or one that holds no partition store (a job stopped before its first store was made). */
  | { kind: 'no-state'; dir: string; empty: boolean }
  /** Missing or damaged: the next start restores it from a snapshot, and opening it would make it empty. */
  | { kind: 'damaged'; partition: number; path: string; problem: string }
  | { kind: 'no-layout'; path: string }
  /** A cluster instance's folder: copies of the partitions it owned, possibly behind their current owners. */
  | { kind: 'cluster' };

export interface StreamStores {
  stores: PartitionStore[];
  layout: StoreLayout;
}

/**
 * Opens every partition store of a stream to read it as the job's state, after checking
 * each one's file before it is opened: LMDB maps the file (a truncated one kills the
 * process with SIGBUS), and opening a missing store creates it empty, which the next start
 * would take for a healthy store rather than restore it. `refuse` turns each reason into
 * the caller's error; stores opened so far are closed before it is thrown.
 */
export function openStreamStores(dataDir: string, stream: number, refuse: (why: StreamRefusal) => Error): StreamStores {
  const swap = interruptedSwap(dataDir, stream);
  if (swap) throw refuse({ kind: 'swap-pending', swap });
  const dir = stateDir(dataDir, stream);
  if (!existsSync(dir)) throw refuse({ kind: 'no-state', dir, empty: false });
  if (partitionsOnDisk(dataDir, stream).length === 0) throw refuse({ kind: 'no-state', dir, empty: true });
  const stores: PartitionStore[] = [];
  try {
    const open = (partition: number) => {
      const path = partitionPath(dataDir, stream, partition);
      const problem = checkStoreFile(path);
      // An instance that never owned partition 0 has none: the folder, not the partition, is what is wrong.
      if (problem && holdsClusterStores(dataDir, stream)) throw refuse({ kind: 'cluster' });
      if (problem) throw refuse({ kind: 'damaged', partition, path, problem });
      const store = openPartitionStore(path);
      stores.push(store);
      if (isClusterStore(store)) throw refuse({ kind: 'cluster' });
      return readCheckedLayout(store, { stream, partition });
    };
    const layout = open(0);
    if (!layout) throw refuse({ kind: 'no-layout', path: stores[0].path });
    for (let p = 1; p < layout.numPartitions; p++) open(p);
    return { stores, layout };
  } catch (error) {
    closePartitionStores(stores, { afterFailure: true });
    throw error;
  }
}

/** Whether any whole store of the stream is a cluster instance's (asked only on the way to reporting a partition missing or damaged). */
export function holdsClusterStores(dataDir: string, stream: number): boolean {
  return partitionsOnDisk(dataDir, stream).some((p) => {
    const path = partitionPath(dataDir, stream, p);
    return !checkStoreFile(path) && withPartitionStore(path, isClusterStore);
  });
}
