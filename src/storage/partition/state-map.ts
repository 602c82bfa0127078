import type { Key, Transaction } from 'lmdb';
import { decodeEntry, type StoredEntry } from '../codec.js';
import type { PartitionStore } from './store.js';

/**
 * The narrow interface the mapping loop sees: read an entry, write or remove one. Writes
 * only happen inside the batch's commit transaction (see BatchCache.flush).
 */
export interface StateMap<S = unknown> {
  get(key: unknown): StoredEntry<S> | undefined;
  put(key: unknown, encoded: Buffer): void;
  remove(key: unknown): void;
}

export class LmdbStateMap<S = unknown> implements StateMap<S> {
  constructor(private readonly store: PartitionStore) {}

  get(key: unknown): StoredEntry<S> | undefined {
    const bytes = readBinary(this.store, key as Key);
    return bytes === undefined ? undefined : decodeEntry<S>(bytes);
  }

  put(key: unknown, encoded: Buffer): void {
    this.store.state.putSync(key as Key, encoded);
  }

  remove(key: unknown): void {
    this.store.state.removeSync(key as Key);
  }
}

/** getBinaryFast (a reused buffer: decode before the next read) with an explicit read transaction (accepted by lmdb-js, missing from its types). */
export function readBinary(store: PartitionStore, key: Key, transaction?: Transaction): Uint8Array | undefined {
  const get = store.state.getBinaryFast as (key: Key, options?: { transaction: Transaction }) => Uint8Array | undefined;
  return get.call(store.state, key, transaction ? { transaction } : undefined);
}
