import type { Key } from 'lmdb';
import { readEntries } from './change-log.js';
import type { PartitionStore } from './store.js';
import { readLayout, writeLayout } from './batch-log.js';
import { decodeEntry } from '../codec.js';

// LMDB's key encoding flattens nested arrays: [time, ['a', 1]] is stored as [time, 'a', 1].
// The entry's value says which shape the state key had, so it reads back as written.
const SCALAR = Buffer.from([0]);
const TUPLE = Buffer.from([1]);

function indexKey(time: number, key: unknown): Key {
  return (Array.isArray(key) ? [time, ...key] : [time, key]) as Key;
}

/**
 * Keys ordered by the batch time of their last record, as `[time, key]` LMDB keys. The idle
 * sweep reads only the front of this index (everything older than the threshold), so its
 * cost grows with the number of expiring keys and not with the size of the state.
 */
export class TimeIndex {
  constructor(private readonly store: PartitionStore) {}

  /** Entries with time < threshold, oldest first. */
  *olderThan(threshold: number): Generator<[time: number, key: unknown]> {
    for (const { key, value } of this.store.timeIndex.getRange({ end: [threshold] })) {
      const [time, ...rest] = key as unknown[];
      yield [time as number, value[0] === TUPLE[0] ? rest : rest[0]];
    }
  }

  add(time: number, key: unknown): void {
    this.store.timeIndex.putSync(indexKey(time, key), Array.isArray(key) ? TUPLE : SCALAR);
  }

  remove(time: number, key: unknown): void {
    this.store.timeIndex.removeSync(indexKey(time, key));
  }
}

/**
 * The index is kept only while the spec has a timeout (it costs two writes per changed
 * key). When a job adds a timeout, the index is rebuilt from each entry's last-updated
 * time; when it drops one, the index is cleared so it cannot go stale.
 */
export function reconcileTimeIndex(store: PartitionStore, wanted: boolean): void {
  const layout = readLayout(store);
  if (!layout || (layout.timeIndexed ?? true) === wanted) return;
  const index = new TimeIndex(store);
  store.env.transactionSync(() => {
    for (const { key } of store.timeIndex.getRange({})) store.timeIndex.removeSync(key);
    if (wanted) for (const [key, value] of readEntries(store)) index.add(decodeEntry(value)[1], key);
    writeLayout(store, { ...layout, timeIndexed: wanted });
  });
}
