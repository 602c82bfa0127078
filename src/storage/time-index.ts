import type { Key } from 'lmdb';
import type { PartitionStore } from './partition-store.js';

const EMPTY = Buffer.alloc(0);

/**
 * Keys ordered by the batch time of their last record, as `[time, key]` LMDB keys. The idle
 * sweep reads only the front of this index (everything older than the threshold), so its
 * cost grows with the number of expiring keys and not with the size of the state.
 */
export class TimeIndex {
  constructor(private readonly store: PartitionStore) {}

  /** Entries with time < threshold, oldest first. */
  *olderThan(threshold: number): Generator<[time: number, key: unknown]> {
    for (const { key } of this.store.timeIndex.getRange({ end: [threshold] })) {
      const [time, stateKey] = key as [number, unknown];
      yield [time, stateKey];
    }
  }

  add(time: number, key: unknown): void {
    this.store.timeIndex.putSync([time, key as Key], EMPTY);
  }

  remove(time: number, key: unknown): void {
    this.store.timeIndex.removeSync([time, key as Key]);
  }
}
