import type { Partitioner } from '../engine/partitioner.js';
import { assertPair, normalizeKey } from '../storage/keys.js';
import { messageCodec } from '../storage/codec.js';
import type { InitialEntry, ShardPayload } from './messages.js';
import type { ExportEntry } from '../storage/export/state-export.js';

/**
 * Splits a batch's [key, value] records by key hash into one encoded shard per partition.
 * Records keep their arrival order within a shard, which is the order the mapping function
 * sees them in (Spark's order within a partition).
 */
export function encodeShards(
  records: readonly unknown[],
  numPartitions: number,
  partitioner: Partitioner,
  where: { batchTime: number; stream: number },
  initialState?: InitialEntry[][],
): Uint8Array[] {
  const keys: unknown[][] = Array.from({ length: numPartitions }, () => []);
  const values: unknown[][] = Array.from({ length: numPartitions }, () => []);
  // Skewed key distributions repeat keys a lot: hash each distinct scalar key once per batch.
  const seen = new Map<unknown, number>();
  for (let i = 0; i < records.length; i++) {
    const record = records[i];
    assertPair(record, where.batchTime, i, where.stream);
    const key = normalizeKey(record[0]);
    let p = typeof key === 'object' ? undefined : seen.get(key);
    if (p === undefined) {
      p = partitioner.partition(key, numPartitions);
      if (typeof key !== 'object') seen.set(key, p);
    }
    keys[p].push(key);
    values[p].push(record[1]);
  }
  return keys.map((k, p) => {
    const payload: ShardPayload = { keys: k, values: values[p] };
    if (initialState?.[p]?.length) payload.initialState = initialState[p];
    return messageCodec.pack(payload);
  });
}

/** Shards StateSpec.initialState the same way, validating each pair as a record. */
export function shardInitialState(
  pairs: Iterable<[unknown, unknown]>,
  numPartitions: number,
  partitioner: Partitioner,
  stream: number,
): InitialEntry[][] {
  const shards: InitialEntry[][] = Array.from({ length: numPartitions }, () => []);
  let index = 0;
  for (const pair of pairs) {
    assertPair(pair, 0, index++, stream);
    const key = normalizeKey(pair[0]);
    shards[partitioner.partition(key, numPartitions)].push([key, pair[1]]);
  }
  return shards;
}

/**
 * Shards entries from a StateSource (already checked), keeping their lastUpdated. Returns
 * the newest lastUpdated too: a context must start after it, as after a stored batch.
 */
export function shardSourceEntries(
  entries: Iterable<ExportEntry>,
  numPartitions: number,
  partitioner: Partitioner,
): { shards: InitialEntry[][]; newest: number | undefined } {
  const shards: InitialEntry[][] = Array.from({ length: numPartitions }, () => []);
  let newest: number | undefined;
  for (const [key, state, lastUpdated] of entries) {
    shards[partitioner.partition(key, numPartitions)].push([key, state, lastUpdated]);
    if (newest === undefined || lastUpdated > newest) newest = lastUpdated;
  }
  return { shards, newest };
}
