import type { Transaction } from 'lmdb';
import type { PartitionStore } from './store.js';

export interface CommittedBatch {
  batchTime: number;
  /** The batch's encoded mapped records, so a replay of a committed batch emits the same output. */
  outputs: Uint8Array;
  keyCount: number;
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

export const FORMAT_VERSION = 1;

export function readLayout(store: PartitionStore): StoreLayout | undefined {
  return store.meta.get('layout') as StoreLayout | undefined;
}

export function writeLayout(store: PartitionStore, layout: StoreLayout): void {
  store.meta.putSync('layout', layout);
}
