import type { Key, Transaction } from 'lmdb';
import { decodeEntry, type StoredEntry } from '../codec.js';
import type { PartitionStore } from './store.js';

/**
 * The narrow interface the mapping loop sees: read an entry, write or remove one. Writes
 * only happen inside the batch's commit transaction (see BatchCache.flush). Layers wrap it
 * the way Kafka Streams wraps its stores: the LMDB map is the durable truth, the memory
 * layer (memory-state-map.ts) keeps what it read and wrote for the next batches.
 */
export interface StateMap<S = unknown> {
  get(key: unknown): StoredEntry<S> | undefined;
  /** `written`, for layers that keep values rather than bytes: what `encoded` holds. */
  put(key: unknown, encoded: Uint8Array, written: WrittenEntry<S>): void;
  remove(key: unknown): void;
}

/**
 * A write as the batch's working set holds it (a BatchCache slot is one): the state and
 * batch time the encoded bytes hold, and the pair `get` handed out for the key in this
 * batch. A layer may keep the reference until the commit instead of copying it: nothing
 * changes it between the write and the commit.
 */
export interface WrittenEntry<S = unknown> {
  readonly key: unknown;
  readonly state: S | undefined;
  readonly time: number;
  readonly original: StoredEntry<S> | undefined;
}

export class LmdbStateMap<S = unknown> implements StateMap<S> {
  constructor(private readonly store: PartitionStore) {}

  get(key: unknown): StoredEntry<S> | undefined {
    const bytes = readBinary(this.store, key as Key);
    return bytes === undefined ? undefined : decodeEntry<S>(bytes);
  }

  /** The stored bytes, valid until the next read on this thread. */
  getEncoded(key: unknown): Uint8Array | undefined {
    return readBinary(this.store, key as Key);
  }

  put(key: unknown, encoded: Uint8Array): void {
    this.store.state.putSync(key as Key, encoded as Buffer);
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
