import { performance } from 'node:perf_hooks';
import { compareKeys } from 'lmdb';
import { readWarmKeys, writeWarmKeys } from '../storage/partition/warm-keys.js';
import type { SaveWarmKeysTask, WarmMemoryDone, WarmMemoryTask } from './messages.js';
import { betweenBatches, stillServing } from './between-batches.js';
import { heldPartition, workerPartition, type WorkerPartition } from './worker-partitions.js';

/**
 * Worker memory across a restart (InnoDB's buffer pool dump and load). A new start's memory
 * is empty, so its first batches read every key they touch from LMDB: at 10^7 keys the first
 * hot batch after a restart read 6 035 keys back and took 4× the batches after it. So a
 * clean stop records the keys the partition's last batches updated in its store, and the
 * next start reads them back into memory between batches, before the batches ask for them.
 */

/** The last batches whose updated keys make the hint. */
export const RECENT_BATCHES = 2;
/** The hint names at most this share of the partition's memory bound (InnoDB dumps 25% of its pool). */
const HINT_SHARE = 4;
/** Keys read per turn of the worker's loop: a chunk that arrives waits for at most one slice. */
const SLICE_KEYS = 1024;

/**
 * A batch committed on this thread. Only its time is kept: the keys it updated are those
 * memory holds with that time, found at the stop. (Keeping each batch's keys instead kept
 * its freshly decoded key strings alive past the batch, and at vocabulary 10^4 the extra
 * garbage collection cost about a tenth of the throughput.)
 */
export function rememberBatch(partition: WorkerPartition, batchTime: number): void {
  partition.recentBatches.push(batchTime);
  if (partition.recentBatches.length > RECENT_BATCHES) partition.recentBatches.shift();
}

/** The keys the last batches updated, as memory holds them, at most `limit`. */
export function recentKeys(partition: WorkerPartition, limit: number): unknown[] {
  if (partition.recentBatches.length === 0) return [];
  return partition.memory.keysUpdatedSince(partition.recentBatches[0], limit);
}

/** At a clean stop: records the partition's recent keys as its store's hint (the stop-partitions task then ends a warm-up still running). */
export function saveWarmKeys(task: SaveWarmKeysTask): { status: 'ok'; keys: number } {
  const partition = heldPartition(task.storePath, task.incarnation);
  if (!partition) return { status: 'ok', keys: 0 };
  // No batch ran since the start: the hint the start read is still the best there is.
  if (partition.recentBatches.length === 0) return { status: 'ok', keys: 0 };
  const keys = recentKeys(partition, Math.floor(partition.memory.capacity / HINT_SHARE));
  writeWarmKeys(partition.store, keys);
  return { status: 'ok', keys: keys.length };
}

/**
 * After a start: reads the hint's keys into memory, in key order (neighbours share LMDB
 * pages), a slice at a time and only between batches (between-batches.ts). Values come
 * from LMDB as committed now. Stops early when the store was opened again (a new start),
 * when the job stops, or when memory is half full (more would turn its generations and
 * drop what it loaded).
 */
export async function warmMemory(task: WarmMemoryTask): Promise<WarmMemoryDone> {
  const started = performance.now();
  const partition = workerPartition(task);
  const { memory, store } = partition;
  let keys: unknown[] = [];
  let loaded = 0;
  const half = Math.floor(memory.capacity / 2);
  for (let next = -1, putOff = 0; next < keys.length && stillServing(partition) && memory.size < half; ) {
    const slice = await betweenBatches(partition, () => {
      if (next < 0) {
        keys = readWarmKeys(store).sort(compareKeys);
        next = 0;
        return 0;
      }
      let found = 0;
      const end = Math.min(keys.length, next + SLICE_KEYS);
      for (; next < end && memory.size < half; next++) if (memory.get(keys[next]) !== undefined) found++;
      return found;
    }, putOff);
    putOff = slice === undefined ? putOff + 1 : 0;
    loaded += slice ?? 0;
  }
  return { status: 'ok', hinted: keys.length, loaded, durationMs: performance.now() - started };
}
