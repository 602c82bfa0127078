import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Key } from 'lmdb';
import { StoreMismatchError } from '../../errors.js';
import { murmur2Partitioner } from '../../engine/partitioner.js';
import { BatchLog, readLayout, writeLayout, type CommittedBatch, type StoreLayout } from '../partition/batch-log.js';
import { decodeOutputs, encodeRecords } from '../partition/batch-outputs.js';
import { entriesInKeyOrder, readEntries } from '../partition/change-log.js';
import type { DeadLetter } from '../partition/dead-letters.js';
import { normalizeKey } from '../keys.js';
import { closePartitionStores, openPartitionStores, partitionFolder, partitionPath, withPartitionStore, type PartitionStore } from '../partition/store.js';
import { commitSwap, swapPaths, type SwapStep } from '../stream-swap.js';
import { BatchedWriter } from './batched-writer.js';

export interface ReshardOptions {
  /** Called as the swap passes each step; the crash tests kill the process there. */
  onStep?: (step: SwapStep) => void;
  /** Called with the number of keys copied so far, every 10^4 keys and at the end (the CLI's progress). */
  onProgress?: (keysCopied: number) => void;
}

export interface ReshardReport {
  from: number;
  to: number;
  /** The batch every partition had committed, now recorded by every new partition. */
  batchTime: number | undefined;
  keys: number;
  deadLetters: number;
}

/** The layout partition 0 records, without creating a store where there is none. */
export function readStoredLayout(dataDir: string, streamIndex: number): StoreLayout | undefined {
  const path = partitionPath(dataDir, streamIndex, 0);
  if (!existsSync(path)) return undefined;
  return withPartitionStore(path, readLayout);
}

/**
 * What open() calls once an interrupted reshard is recovered: reshards when the stores
 * were written with another partition count. Stores of another partitioner are refused,
 * as their keys' placement cannot be checked against the router's.
 */
export function rescaleStores(dataDir: string, streamIndex: number, numPartitions: number): ReshardReport | undefined {
  const layout = readStoredLayout(dataDir, streamIndex);
  if (!layout) return undefined;
  refuseOtherPartitioner(layout, dataDir, streamIndex);
  if (layout.numPartitions === numPartitions) return undefined;
  return reshardStores(dataDir, streamIndex, numPartitions);
}

/** Stores whose keys another partitioner placed: the router's placement says nothing of where they are. */
function refuseOtherPartitioner(layout: StoreLayout, dataDir: string, streamIndex: number): void {
  if (layout.partitioner === murmur2Partitioner.name) return;
  throw new StoreMismatchError(
    `the state stores of mapWithState stream ${streamIndex} under ${dataDir} were partitioned with "${layout.partitioner}", ` +
      `but this version routes keys with "${murmur2Partitioner.name}"; use a new dataDir`,
    { stream: streamIndex, stored: layout.partitioner, requested: murmur2Partitioner.name },
  );
}

/**
 * Re-distributes a stream's state over `toPartitions` partitions, routing every key as the
 * router does, and swaps the new stores in (see stream-swap.ts for why a crash leaves
 * either the old or the new stores). Entries are copied as their stored bytes. Nothing else
 * may have the stores open for writing while this runs.
 */
export function reshardStores(dataDir: string, streamIndex: number, toPartitions: number, options: ReshardOptions = {}): ReshardReport {
  const paths = swapPaths(dataDir, streamIndex, 'reshard');
  const layout = readStoredLayout(dataDir, streamIndex);
  if (!layout) throw new StoreMismatchError(`there are no state stores to reshard under ${paths.current}`, { stream: streamIndex, path: paths.current });
  // The new stores would record the old partitioner over keys placed by this one.
  refuseOtherPartitioner(layout, dataDir, streamIndex);
  const from = layout.numPartitions;
  for (let p = 0; p < from; p++) {
    const path = partitionPath(dataDir, streamIndex, p);
    if (!existsSync(path)) {
      throw new StoreMismatchError(`the layout of mapWithState stream ${streamIndex} says ${from} partitions, but ${path} is missing`, { stream: streamIndex, partition: p, path });
    }
  }
  // Left by a reshard that died before its stores were complete.
  rmSync(paths.building, { recursive: true, force: true });

  const olds = openPartitionStores(Array.from({ length: from }, (_, p) => partitionPath(dataDir, streamIndex, p)));
  let report: ReshardReport;
  try {
    const last = commonLastBatch(olds, dataDir, streamIndex, from, toPartitions);
    const news = openPartitionStores(Array.from({ length: toPartitions }, (_, q) => join(paths.building, partitionFolder(q))), { noSync: true });
    try {
      report = copyInto(olds, news, layout, last, options.onProgress);
    } catch (error) {
      closePartitionStores(news, { afterFailure: true });
      throw error;
    }
    closeNewStores(news);
  } catch (error) {
    rmSync(paths.building, { recursive: true, force: true });
    closePartitionStores(olds, { afterFailure: true });
    throw error;
  }
  closePartitionStores(olds);
  commitSwap(paths, undefined, options.onStep);
  return report;
}

/**
 * The new stores are written without per-commit syncs and fsynced as files before the
 * marker: the environment must be closed by then, so no page is still to be written.
 * Only sync writes were made, so lmdb-js closes it now rather than after pending writes.
 */
function closeNewStores(stores: PartitionStore[]): void {
  closePartitionStores(stores);
  for (const store of stores) {
    if ((store.env as unknown as { status?: string }).status !== 'closed') {
      throw new Error(`internal: the new partition store ${store.path} did not close at once, so it may not be synced`);
    }
  }
}

/**
 * Every partition must have committed the same batch (the new partitions can record only
 * one) and be at the same state version (the entries would be mixed, migrated or not).
 */
function commonLastBatch(olds: PartitionStore[], dataDir: string, streamIndex: number, from: number, to: number): Array<CommittedBatch | undefined> {
  const versions = olds.map((s) => readLayout(s)?.stateVersion ?? 1);
  if (versions.some((v) => v !== versions[0])) {
    throw new StoreMismatchError(
      `cannot reshard mapWithState stream ${streamIndex} under ${dataDir} from ${from} to ${to} partitions: its partitions hold different state versions ` +
        `(${versions.map((v, p) => `partition ${p}: ${v}`).join(', ')}). Start once with numPartitions(${from}) so the migration completes, then start with numPartitions(${to})`,
      { stream: streamIndex, stored: from, requested: to, stateVersions: versions },
    );
  }
  const last = olds.map((s) => new BatchLog(s).last());
  const times = last.map((b) => b?.batchTime);
  if (times.every((t) => t === times[0])) return last;
  const newest = times.reduce<number | undefined>((m, t) => (t !== undefined && (m === undefined || t > m) ? t : m), undefined);
  const listed = times.map((t, p) => `partition ${p}: ${t ?? 'none'}`).join(', ');
  throw new StoreMismatchError(
    `cannot reshard mapWithState stream ${streamIndex} under ${dataDir} from ${from} to ${to} partitions: batch ${newest} was only half committed ` +
      `(last committed batch per partition: ${listed}). Start once with numPartitions(${from}) and let one batch complete so every partition ` +
      `catches up, then start with numPartitions(${to})`,
    { stream: streamIndex, stored: from, requested: to, lastBatches: times },
  );
}

function copyInto(olds: PartitionStore[], news: PartitionStore[], layout: StoreLayout, last: Array<CommittedBatch | undefined>, onProgress?: (keys: number) => void): ReshardReport {
  const to = news.length;
  const writer = new BatchedWriter(news, layout.timeIndexed ?? true);
  let copied = 0;
  // Every old partition's entries in one key-ordered stream, so each new partition receives
  // its keys in ascending order: LMDB then appends to the right edge of its B-tree instead of
  // splitting pages all over it (10^6 keys, 8 → 3 partitions: 7.3 s → 5.8 s here). Read
  // through each old store's change log: a job that stopped between folds left one.
  for (const [key, value] of entriesInKeyOrder(olds.map((s) => readEntries(s)))) {
    writer.putEntry(murmur2Partitioner.partition(normalizeKey(key), to), key as Key, value as Buffer);
    if (++copied % 10_000 === 0) onProgress?.(copied);
  }
  onProgress?.(copied);
  for (const old of olds) {
    for (const { value } of old.deadLetters.getRange({})) {
      const letter = value as DeadLetter;
      writer.putLetter(murmur2Partitioner.partition(normalizeKey(letter.key), to), letter);
    }
  }
  writer.flush();

  const batchTime = last[0]?.batchTime;
  // A replayed batch (a source re-sending the batch in flight at a crash) must emit what it
  // emitted before: the router concatenates partition outputs in partition order, so the
  // old outputs in old order on partition 0 read back the same.
  const outputs = batchTime === undefined ? [] : last.flatMap((b) => decodeOutputs(b!.outputs));
  // Its keys timed out as its outputs do: all on partition 0, so that the replay's keysTimedOut, a sum over partitions, is what it was.
  const timedOut = last.some((b) => b?.timedOut !== undefined) ? last.reduce((n, b) => n + (b?.timedOut ?? 0), 0) : undefined;
  news.forEach((store, q) => {
    store.env.transactionSync(() => {
      writeLayout(store, { ...layout, numPartitions: to });
      if (batchTime !== undefined) {
        new BatchLog(store).record({ batchTime, outputs: encodeRecords(q === 0 ? outputs : []), keyCount: writer.keyCounts[q], ...(timedOut === undefined ? {} : { timedOut: q === 0 ? timedOut : 0 }) });
      }
    });
  });
  return { from: olds.length, to, batchTime, keys: writer.keyCounts.reduce((a, b) => a + b, 0), deadLetters: writer.letters };
}

