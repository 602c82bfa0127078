import type { Transaction } from 'lmdb';
import { StoreMismatchError } from '../../errors.js';
import type { PartitionStore } from './store.js';

export interface CommittedBatch {
  batchTime: number;
  /** The batch's encoded mapped records, so a replay of a committed batch emits the same output. */
  outputs: Uint8Array;
  keyCount: number;
  /** Keys the batch's idle sweep timed out, reported again by a replay of it (absent in logs of older versions). */
  timedOut?: number;
}

/** The batch the partition's worker committed last, read afresh (the main thread's read transaction may predate it). */
export function lastCommittedBatch(store: PartitionStore): number | undefined {
  store.env.resetReadTxn();
  return new BatchLog(store).last()?.batchTime;
}

/**
 * Which batch a partition applied last, written in the same transaction as the state it
 * produced: a batch time at or below it is never applied again.
 */
export class BatchLog {
  constructor(private readonly store: PartitionStore) {}

  last(transaction?: Transaction): CommittedBatch | undefined {
    return this.store.meta.get('last-batch', transaction ? { transaction } : undefined) as CommittedBatch | undefined;
  }

  record(batch: CommittedBatch): void {
    this.store.meta.putSync('last-batch', batch);
  }
}

export interface StoreLayout {
  numPartitions: number;
  partitioner: string;
  formatVersion: number;
  /** Whether the time index is kept (only while the spec has a timeout); absent means kept. */
  timeIndexed?: boolean;
  /** StateSpec.stateVersion the entries were written under; absent means 1. */
  stateVersion?: number;
}

/** The store format this version writes, and the newest it reads. */
export const FORMAT_VERSION = 1;

export function readLayout(store: PartitionStore): StoreLayout | undefined {
  return store.meta.get('layout') as StoreLayout | undefined;
}

/**
 * Refuses a store that a newer statestream wrote in a format this one does not know: its
 * batch logs and entries could be misread, and a batch written over them would mix two
 * formats in one store. Called wherever a job or a tool starts on existing stores, before
 * anything reads their entries or writes to them. Not a sign of damage: such a store is
 * never moved aside or restored from a snapshot.
 */
export function checkStoreFormat(layout: StoreLayout | undefined, where: { path: string; stream: number; partition: number }): void {
  if (layout === undefined) return;
  const version: unknown = layout.formatVersion;
  const problem = storeFormatProblem(version);
  if (problem === undefined) return;
  const what = `partition ${where.partition} of mapWithState stream ${where.stream} at ${where.path}`;
  throw new StoreMismatchError(`${what} ${problem}`, { ...where, formatVersion: version, supported: FORMAT_VERSION });
}

/**
 * Why stores in format `version` cannot be read here, worded to follow "the store", or
 * undefined: the one rule behind checkStoreFormat and a snapshot's newerStoreFormat.
 */
export function storeFormatProblem(version: unknown): string | undefined {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    return `has a layout without a valid format version (${String(version)}); it is not a store this statestream wrote`;
  }
  if (version > FORMAT_VERSION) return `is in store format ${version}, written by a newer statestream; this one reads formats up to ${FORMAT_VERSION}: run it with a newer statestream`;
  return undefined;
}

/** The store's layout, refused when it is in a newer format (checkStoreFormat): how a job or a tool reads an existing store's layout. */
export function readCheckedLayout(store: PartitionStore, where: { stream: number; partition: number }): StoreLayout | undefined {
  const layout = readLayout(store);
  checkStoreFormat(layout, { path: store.path, ...where });
  return layout;
}

export function writeLayout(store: PartitionStore, layout: StoreLayout): void {
  store.meta.putSync('layout', layout);
}
