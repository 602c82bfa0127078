import type { Partitioner } from '../engine/partitioner.js';
import { assertPair, normalizeKey } from '../storage/keys.js';
import type { InitialEntry } from './messages.js';
import { writeShard } from './shard-format.js';
import type { ExportEntry } from '../storage/export/state-export.js';

/**
 * Splits a batch's [key, value] records by key hash into one encoded shard per partition,
 * record by record as a stream's pipeline yields them (no array of the batch's records is
 * kept). Records keep their arrival order within a shard, which is the order the mapping
 * function sees them in (Spark's order within a partition). Each distinct key is checked,
 * hashed and encoded once per batch; a record costs one map lookup and two array pushes.
 */
export class ShardBuilder {
  private readonly keys: unknown[][];
  private readonly refs: number[][];
  private readonly values: unknown[][];
  /** Where each distinct key went: partition + numPartitions × its index among that partition's keys. */
  private readonly scalars = new Map<unknown, number>();
  private readonly tuples = new Map<string, number>();
  private index = 0;

  constructor(
    private readonly numPartitions: number,
    private readonly partitioner: Partitioner,
    private readonly where: { batchTime: number; stream: number },
  ) {
    this.keys = Array.from({ length: numPartitions }, () => []);
    this.refs = Array.from({ length: numPartitions }, () => []);
    this.values = Array.from({ length: numPartitions }, () => []);
  }

  readonly add = (record: unknown): void => {
    const i = this.index++;
    if (!Array.isArray(record) || record.length !== 2) assertPair(record, this.where.batchTime, i, this.where.stream);
    const key = (record as unknown[])[0];
    // Map keys compare -0 and 0 as equal, and so does JSON: one key, as normalizeKey makes it.
    const id = Array.isArray(key) ? JSON.stringify(key) : undefined;
    let code = id === undefined ? this.scalars.get(key) : this.tuples.get(id);
    if (code === undefined) {
      // First sight of the key in this batch: check it fully, once.
      assertPair(record, this.where.batchTime, i, this.where.stream);
      const normal = normalizeKey(key);
      const p = this.partitioner.partition(normal, this.numPartitions);
      code = this.keys[p].length * this.numPartitions + p;
      this.keys[p].push(normal);
      if (id === undefined) this.scalars.set(key, code);
      else this.tuples.set(id, code);
    }
    const p = code % this.numPartitions;
    this.refs[p].push((code - p) / this.numPartitions);
    this.values[p].push((record as unknown[])[1]);
  };

  /** The shards, one per partition, with each one's distinct keys; the builder is spent. */
  build(initialState?: InitialEntry[][]): { buffers: Uint8Array[]; keys: unknown[][] } {
    return { buffers: this.keys.map((k, p) => writeShard(new Uint32Array(this.refs[p]), k, this.values[p], initialState?.[p])), keys: this.keys };
  }
}

export function encodeShards(
  records: readonly unknown[],
  numPartitions: number,
  partitioner: Partitioner,
  where: { batchTime: number; stream: number },
  initialState?: InitialEntry[][],
): Uint8Array[] {
  const builder = new ShardBuilder(numPartitions, partitioner, where);
  for (let i = 0; i < records.length; i++) builder.add(records[i]);
  return builder.build(initialState).buffers;
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
