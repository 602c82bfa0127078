import { BatchLog } from './batch-log.js';
import type { PartitionStore } from './store.js';

/** One partition's figures as its store holds them, for metrics and the status page. */
export interface PartitionFigures {
  partition: number;
  keyCount: number;
  lastBatch: number | undefined;
  /** Pages of the partition's state database and change log in LMDB, in bytes. */
  stateBytes: number;
  deadLetters: number;
}

type PageStats = { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number };

const bytesOf = (stats: PageStats) => stats.pageSize * (stats.treeBranchPageCount + stats.treeLeafPageCount + stats.overflowPages);

/** What `store` holds as of its last committed batch. */
export function partitionFigures(store: PartitionStore, partition: number): PartitionFigures {
  // The main thread's shared read transaction would otherwise see an older commit.
  store.env.resetReadTxn();
  const last = new BatchLog(store).last();
  return {
    partition, keyCount: last?.keyCount ?? 0, lastBatch: last?.batchTime,
    // Changed entries wait in the change log until they cool: they are state on disk too.
    stateBytes: bytesOf(store.state.getStats() as PageStats) + bytesOf(store.changeLog.getStats() as PageStats),
    deadLetters: store.deadLetters.getCount(),
  };
}
