import { existsSync, readdirSync } from 'node:fs';
import { DataDirLockedError, StatestreamError } from '../errors.js';
import { DataDirLock } from '../storage/data-lock.js';
import type { StoreLayout } from '../storage/partition/batch-log.js';
import { openStreamStores } from '../storage/partition/stream-stores.js';
import { recoverInterruptedSwaps, SWAP_NAMES } from '../storage/stream-swap.js';
import { closePartitionStores, partitionPath, partitionsOnDisk, withPartitionStore, type PartitionStore } from '../storage/partition/store.js';
import { checkStoreFile, dataFileBytes, examinePartition, isClusterStore, type PartitionReport } from '../storage/partition/store-check.js';
import { CliFailure } from './args.js';

/** The stream indexes with a state folder, in order. */
export function streamsOnDisk(dataDir: string): number[] {
  if (!existsSync(dataDir)) return [];
  return readdirSync(dataDir)
    .flatMap((name) => (/^state-\d+$/.test(name) ? [Number(name.slice(6))] : []))
    .sort((a, b) => a - b);
}

/** Every partition the layout names, plus any stray folder; a partition the layout names but that is missing is reported missing. */
export function examineStream(dataDir: string, stream: number): PartitionReport[] {
  const present = partitionsOnDisk(dataDir, stream);
  const reports = present.map((p): PartitionReport => {
    try {
      return examinePartition(dataDir, stream, p);
    } catch (error) {
      // Not damage, and not a reason to leave the other partitions unreported.
      if (!(error instanceof StatestreamError)) throw error;
      const path = partitionPath(dataDir, stream, p);
      return { partition: p, path, bytes: dataFileBytes(path), problem: undefined, unreadable: error.message };
    }
  });
  const numPartitions = reports.find((r) => r.layout)?.layout?.numPartitions;
  // A cluster instance's folder holds the partitions it owned, not all of them.
  if (numPartitions !== undefined && !reports.some((r) => r.cluster)) {
    for (let p = 0; p < numPartitions; p++) {
      if (!present.includes(p)) reports.push({ partition: p, path: partitionPath(dataDir, stream, p), bytes: undefined, problem: 'the partition folder is missing' });
    }
  }
  return reports.sort((a, b) => a.partition - b.partition);
}

export interface OpenStream {
  stores: PartitionStore[];
  layout: StoreLayout;
  close(): void;
}

/**
 * Opens every partition store of a stream for reading, after checking each file. A stream
 * with no state folder, or a damaged store, is an operational failure, not a crash.
 */
export function openStream(dataDir: string, stream: number): OpenStream {
  const { stores, layout } = openStreamStores(dataDir, stream, (why) => {
    switch (why.kind) {
      case 'swap-pending': return new CliFailure(`${why.swap}; start the job once so it finishes it (or rolls it back), then try again`);
      // An empty folder (a job stopped before its first store was made) holds no state, as inspect says; it is not damage.
      case 'no-state': return new CliFailure(`stream ${stream} has no state under ${dataDir} (${why.empty ? `${why.dir} holds no partition store` : `no ${why.dir}`})`);
      case 'damaged': return new CliFailure(`partition ${why.partition} of stream ${stream} is damaged: ${why.problem} (${why.path}); see 'statestream inspect'`);
      case 'no-layout': return new CliFailure(`${why.path} is not a statestream partition store (it has no layout record)`);
      case 'cluster': return clusterFolder(dataDir, stream);
    }
  });
  return { stores, layout, close: () => closePartitionStores(stores) };
}

/**
 * Takes the data folder's lock for a command that changes state, as a job holds it while it
 * runs; refuses naming the holder (a running job, another command). Release it when done.
 */
export async function lockFolder(dataDir: string, command: string): Promise<DataDirLock> {
  try {
    return await DataDirLock.acquire(dataDir, { command });
  } catch (error) {
    if (error instanceof DataDirLockedError) throw new CliFailure(error.message);
    throw error;
  }
}

/**
 * Refuses when another process has a stream's stores open (a job of a statestream version
 * without the folder lock, or a command reading them, such as export): a running job keeps read
 * transactions in LMDB's reader table (stale slots of dead processes are cleared first),
 * and changing or copying its state under it would lose batches or cut a snapshot unevenly.
 */
export function assertJobStopped(dataDir: string, stream: number, what: string): void {
  for (const p of partitionsOnDisk(dataDir, stream)) {
    const path = partitionPath(dataDir, stream, p);
    if (checkStoreFile(path)) continue;
    const cluster = withPartitionStore(path, (store) => {
      if (isClusterStore(store)) return true;
      store.env.readerCheck();
      const pids = new Set(
        store.env
          .readerList()
          .split('\n')
          .map((line) => Number(line.trim().split(/\s+/)[0]))
          .filter((pid) => Number.isInteger(pid) && pid > 0 && pid !== process.pid),
      );
      if (pids.size > 0) throw new CliFailure(`${what}: process ${[...pids].join(', ')} has the stores of stream ${stream} open (${path}); stop the job first`);
      return false;
    });
    if (cluster) throw clusterFolder(dataDir, stream);
  }
}

/**
 * A cluster instance's folder holds copies of the partitions the instance owned, restored
 * from the job's changelog topics, and kept when a partition moved on (to be reused if it
 * comes back): some may be behind their current owners, and the rest of the state is in
 * other instances' folders. Reading them as the job's state, or rewriting them, would mislead;
 * only inspect (which says what the folder holds) works on it.
 */
function clusterFolder(dataDir: string, stream: number): CliFailure {
  return new CliFailure(
    `${dataDir} is a cluster instance's folder: it holds copies of the partitions of stream ${stream} that instance owned, which may be behind their current owners ` +
      "(the rest of the state is in the other instances' folders). Read the state from the running instances (store()) or from the job's changelog topics; " +
      "'statestream inspect' shows what the folder holds",
  );
}

/** What a command says about the swaps a crash had interrupted and it settled first. */
export function settledNotes(settled: ReturnType<typeof recoverInterruptedSwaps>): string[] {
  return settled.map(({ kind, outcome }) => {
    const name = SWAP_NAMES[kind];
    return `${name[0].toUpperCase()}${name.slice(1)} a crash had interrupted was ${outcome === 'finished' ? 'finished' : 'rolled back'} first.`;
  });
}

/** The same for --json: which command a crash had interrupted, and whether it was finished or rolled back. */
export function settledJson(settled: ReadonlyArray<ReturnType<typeof recoverInterruptedSwaps>[number] & { stream?: number }>, stream?: number): Array<{ command: string; stream: number | undefined; outcome: 'finished' | 'rolled-back' }> {
  return settled.map((s) => ({ command: SWAP_NAMES[s.kind].replace(/^an? /, ''), stream: s.stream ?? stream, outcome: s.outcome }));
}

/** Under the folder's lock, finishes or rolls back what a crash left of a swap of the stream (a command that reads before it changes anything does this first). */
export async function settleInterruptedSwaps(dataDir: string, stream: number, command: string): Promise<ReturnType<typeof recoverInterruptedSwaps>> {
  const lock = await lockFolder(dataDir, command);
  try {
    return recoverInterruptedSwaps(dataDir, stream);
  } finally {
    lock.release();
  }
}
