import { performance } from 'node:perf_hooks';
import { compareKeys } from 'lmdb';
import type { Slot } from '../storage/partition/batch-cache.js';
import { KeyedMap } from '../storage/partition/keyed-map.js';
import { readWarmKeys, writeWarmKeys } from '../storage/partition/warm-keys.js';
import type { SaveWarmKeysTask, WarmMemoryDone, WarmMemoryTask } from './messages.js';
import { betweenBatches, stillServing } from './between-batches.js';
import { heldPartition, syncWithStore, workerPartition, type WorkerPartition } from './worker-partitions.js';

/**
 * Worker memory across a restart (InnoDB's buffer pool dump and load). A new start's memory
 * is empty, so its first batches read every key they touch from LMDB: at 10^7 keys the first
 * hot batch after a restart read 6 035 keys back and took 4× the batches after it. So a
 * clean stop records the keys the partition's last batches used (and found in the store) in
 * its store, and the next start reads them back into memory between batches, before the
 * batches ask for them.
 */

/** The batches whose keys a partition remembers for the hint. */
export const RECENT_BATCHES = 4;
/** The hint names at most this share of the partition's memory bound (InnoDB dumps 25% of its pool). */
const HINT_SHARE = 4;
/** Keys read per turn of the worker's loop: a chunk that arrives waits for at most one slice. */
const SLICE_KEYS = 1024;

/**
 * A batch committed on this thread, with these working-set slots: the keys it found in the
 * store are remembered, not the ones it created. A key written once (a backfill, a burst of
 * new ids) is no more likely to come back than any other, as memory's admission rule has it.
 */
export function rememberBatchKeys(partition: WorkerPartition, slots: ReadonlyArray<Slot<unknown> | undefined>): void {
  const found: unknown[] = [];
  for (const slot of slots) if (slot?.existed) found.push(slot.key);
  partition.recent.push(found);
  if (partition.recent.length > RECENT_BATCHES) partition.recent.shift();
}

/** The distinct keys of the last batches, newest batch first, at most `limit`. */
export function recentKeys(partition: WorkerPartition, limit: number): unknown[] {
  const seen = new KeyedMap<true>();
  const keys: unknown[] = [];
  for (let b = partition.recent.length - 1; b >= 0 && keys.length < limit; b--) {
    for (const key of partition.recent[b]) {
      if (keys.length >= limit) break;
      if (seen.get(key)) continue;
      seen.set(key, true);
      keys.push(key);
    }
  }
  return keys;
}

/** At a clean stop: records the partition's recent keys as its store's hint, and ends a warm-up still running. */
export function saveWarmKeys(task: SaveWarmKeysTask): { status: 'ok'; keys: number } {
  const partition = heldPartition(task.storePath, task.incarnation);
  if (!partition) return { status: 'ok', keys: 0 };
  partition.stopping = true;
  // No batch ran since the start: the hint the start read is still the best there is.
  if (partition.recent.length === 0) return { status: 'ok', keys: 0 };
  const keys = recentKeys(partition, Math.floor(partition.memory.capacity / HINT_SHARE));
  writeWarmKeys(partition.store, keys);
  return { status: 'ok', keys: keys.length };
}

/**
 * After a start: reads the hint's keys into memory, in key order (neighbours share LMDB
 * pages), a slice at a time and only between batches (between-batches.ts). Values come from LMDB as committed now. Stops early when the
 * store was opened again (a new start), when the job stops, or when memory is half full
 * (more would turn its generations and drop what it loaded).
 */
export async function warmMemory(task: WarmMemoryTask): Promise<WarmMemoryDone> {
  const started = performance.now();
  const partition = workerPartition(task);
  const { memory, store } = partition;
  let keys: unknown[] = [];
  let loaded = 0;
  const half = Math.floor(memory.capacity / 2);
  for (let next = -1; next < keys.length && stillServing(partition) && memory.size < half; ) {
    const slice = await betweenBatches(partition, () => {
      syncWithStore(partition);
      if (next < 0) {
        keys = readWarmKeys(store).sort(compareKeys);
        next = 0;
        return 0;
      }
      let found = 0;
      const end = Math.min(keys.length, next + SLICE_KEYS);
      for (; next < end && memory.size < half; next++) if (memory.get(keys[next]) !== undefined) found++;
      return found;
    });
    if (slice === undefined) continue;
    loaded += slice;
  }
  return { status: 'ok', hinted: keys.length, loaded, durationMs: performance.now() - started };
}
