import type { Key } from 'lmdb';
import type { PartitionStore } from './store.js';

/**
 * The keys a partition's memory was working on when the job last stopped cleanly, kept in
 * the store's meta database so the next start can read them back into memory before the
 * batches ask (InnoDB's buffer pool dump at shutdown and load at start-up). Only a hint:
 * the values are read from LMDB when loaded, so a hint older than the state (a crash after
 * it, a restore, an import, a reshard that moved keys elsewhere) costs a few reads and
 * never serves a stale value.
 */
const WARM_KEYS = 'warm-keys';

/** Replaces the hint (its own write transaction, on the thread that holds the memory). */
export function writeWarmKeys(store: PartitionStore, keys: readonly unknown[]): void {
  store.env.transactionSync(() => {
    if (keys.length === 0) store.meta.removeSync(WARM_KEYS);
    else store.meta.putSync(WARM_KEYS, keys);
  });
}

/** The hint, or none; a value that is not a list of keys (written by hand, damaged) is no hint. */
export function readWarmKeys(store: PartitionStore): Key[] {
  const keys = store.meta.get(WARM_KEYS) as unknown;
  return Array.isArray(keys) ? (keys as Key[]) : [];
}
