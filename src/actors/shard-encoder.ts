import type { Partitioner } from '../engine/partitioner.js';
import { assertPair, normalizeKey } from '../storage/keys.js';
import type { InitialEntry } from './messages.js';
import { writeShard } from './shard-format.js';
import type { ExportEntry } from '../storage/export/state-export.js';

/**
 * Splits a batch's [key, value] records by key hash into one encoded shard per partition.
 * Records keep their arrival order within a shard, which is the order the mapping function
 * sees them in (Spark's order within a partition). Each distinct key is checked, hashed and
 * encoded once per batch; a record costs one map lookup and two array writes.
 */
export function encodeShards(
  records: readonly unknown[],
  numPartitions: number,
  partitioner: Partitioner,
  where: { batchTime: number; stream: number },
  initialState?: InitialEntry[][],
): Uint8Array[] {
  const n = records.length;
  const keys: unknown[][] = Array.from({ length: numPartitions }, () => []);
  const counts = new Uint32Array(numPartitions);
  // Record i goes to partition codes[i] % numPartitions, as key number floor(codes[i] / numPartitions) there.
  const codes = new Float64Array(n);
  const scalars = new Map<unknown, number>();
  const tuples = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const record = records[i];
    if (!Array.isArray(record) || record.length !== 2) assertPair(record, where.batchTime, i, where.stream);
    const key = (record as unknown[])[0];
    // Map keys compare -0 and 0 as equal, and so does JSON: one key, as normalizeKey makes it.
    const id = Array.isArray(key) ? JSON.stringify(key) : undefined;
    let code = id === undefined ? scalars.get(key) : tuples.get(id);
    if (code === undefined) {
      // First sight of the key in this batch: check it fully, once.
      assertPair(record, where.batchTime, i, where.stream);
      const normal = normalizeKey(key);
      const p = partitioner.partition(normal, numPartitions);
      code = keys[p].length * numPartitions + p;
      keys[p].push(normal);
      if (id === undefined) scalars.set(key, code);
      else tuples.set(id, code);
    }
    codes[i] = code;
    counts[code % numPartitions]++;
  }
  const refs = Array.from({ length: numPartitions }, (_, p) => new Uint32Array(counts[p]));
  const values = Array.from({ length: numPartitions }, (_, p) => new Array<unknown>(counts[p]));
  const filled = new Uint32Array(numPartitions);
  for (let i = 0; i < n; i++) {
    const code = codes[i];
    const p = code % numPartitions;
    const at = filled[p]++;
    refs[p][at] = (code - p) / numPartitions;
    values[p][at] = (records[i] as unknown[])[1];
  }
  return keys.map((k, p) => writeShard(refs[p], k, values[p], initialState?.[p]));
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
