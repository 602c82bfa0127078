import type { Partitioner } from '../engine/partitioner.js';
import { assertInitialEntry, assertPair, assertRecordValue, isScalarKey, keyToKeep } from '../storage/keys.js';
import type { InitialEntry } from './messages.js';
import { KeyTable } from './key-table.js';
import { writeShard } from './shard-format.js';
import type { ExportEntry } from '../storage/export/state-export.js';

/** Records of one partition per chunk: small enough that a worker starts early, large enough that a task's cost is noise. */
export const CHUNK_RECORDS = 4096;

/**
 * Splits a batch's [key, value] records by key hash into one shard per partition, record
 * by record as a stream's pipeline yields them (no array of the batch's records is kept),
 * and hands each partition its shard in chunks as they fill, so its worker starts on the
 * batch while the rest is still routed. Records keep their arrival order within a shard,
 * which is the order the mapping function sees them in (Spark's order within a partition).
 * Each distinct key is checked, hashed and encoded once per batch; a record costs one lookup
 * (in the stream's KeyTable for an ASCII string key, in a Map for any other), two array
 * pushes and, unless its value is a number, a check of that value (a walk only for a value
 * nested deeper than a flat object or a short tuple of primitives).
 */
export class ShardBuilder {
  /** Each partition's distinct keys of the batch, in the order first seen: chunks' refs index into them. */
  readonly keys: unknown[][];
  private readonly refs: number[][];
  private readonly values: unknown[][];
  /** Where the current chunk of each partition starts in its keys. */
  private readonly keysSent: number[];
  private readonly chunksSent: number[];
  /**
   * Where each distinct key went: partition + numPartitions × its index among that
   * partition's keys. ASCII string keys in the stream's KeyTable while this builder holds
   * it; the others (and all, without the table) in these maps.
   */
  private readonly scalars = new Map<unknown, number>();
  private readonly tuples = new Map<string, number>();
  private readonly keyTable: KeyTable | undefined;
  /** The stream's key table, from the first record on, when no other batch holds it. */
  private table: KeyTable | undefined;
  private readonly initialState: InitialEntry[][] | undefined;
  private readonly chunkRecords: number;
  private index = 0;

  constructor(
    private readonly numPartitions: number,
    private readonly partitioner: Partitioner,
    private readonly where: { batchTime: number; stream: number },
    /** Receives each partition's chunks, the last one marked. */
    private readonly sink: (partition: number, chunk: Uint8Array, last: boolean) => void,
    options: { initialState?: InitialEntry[][]; chunkRecords?: number; keyTable?: KeyTable } = {},
  ) {
    this.initialState = options.initialState;
    this.chunkRecords = options.chunkRecords ?? CHUNK_RECORDS;
    this.keyTable = options.keyTable;
    this.keys = Array.from({ length: numPartitions }, () => []);
    this.refs = Array.from({ length: numPartitions }, () => []);
    this.values = Array.from({ length: numPartitions }, () => []);
    this.keysSent = new Array<number>(numPartitions).fill(0);
    this.chunksSent = new Array<number>(numPartitions).fill(0);
  }

  readonly add = (record: unknown): void => {
    const i = this.index++;
    // Taken at the first record, not at construction: builders made one after the other (a
    // batch and the next, sharded ahead) route one after the other, each finishing in the
    // turn of its last record (see MapWithStateDStream.startSharding).
    if (i === 0 && this.keyTable?.acquire(this)) this.table = this.keyTable;
    if (!Array.isArray(record) || record.length !== 2) assertPair(record, this.where.batchTime, i, this.where.stream);
    const key = (record as unknown[])[0];
    let code = -1;
    const hash = this.table === undefined ? undefined : KeyTable.hash(key);
    if (hash !== undefined) {
      code = this.table!.find(key as string, hash);
      if (code === KeyTable.OVERLONG) this.leaveTable();
      else if (code < 0) this.table!.insert(key as string, hash, (code = this.place(record, i, hash)));
    }
    if (code < 0) {
      // Map keys compare -0 and 0 as equal, and so does JSON: one key, as normalizeKey makes it.
      // JSON tells tuples apart only when every part is a key's (a Date, a boxed value or a
      // BigInt would pass as another tuple's text, or throw): any other tuple is checked first.
      if (Array.isArray(key) && !key.every(isScalarKey)) assertPair(record, this.where.batchTime, i, this.where.stream);
      const id = Array.isArray(key) ? JSON.stringify(key) : undefined;
      const known = id === undefined ? this.scalars.get(key) : this.tuples.get(id);
      if (known !== undefined) code = known;
      else {
        code = this.place(record, i);
        if (id === undefined) this.scalars.set(key, code);
        else this.tuples.set(id, code);
      }
    }
    const value = (record as unknown[])[1];
    if (typeof value !== 'number') assertRecordValue(record as [unknown, unknown], this.where.batchTime, i, this.where.stream);
    const p = code % this.numPartitions;
    const refs = this.refs[p];
    refs.push((code - p) / this.numPartitions);
    this.values[p].push(value);
    if (refs.length >= this.chunkRecords) this.flush(p, false);
  };

  /**
   * First sight of the record's key in this batch: checks it fully, once, and gives it its
   * partition and code. `murmur2` is the key table's hash of a string key, which a murmur2
   * partitioner reuses.
   */
  private place(record: unknown, index: number, murmur2?: number): number {
    assertPair(record, this.where.batchTime, index, this.where.stream);
    const normal = keyToKeep(record[0]);
    const p =
      murmur2 !== undefined && this.partitioner.partitionOfMurmur2 !== undefined
        ? this.partitioner.partitionOfMurmur2(murmur2, this.numPartitions)
        : this.partitioner.partition(normal, this.numPartitions);
    const code = this.keys[p].length * this.numPartitions + p;
    this.keys[p].push(normal);
    return code;
  }

  private flush(p: number, last: boolean): void {
    const keys = this.keys[p];
    // writeShard packs the keys at once: the first chunk can pass the array itself.
    const fresh = this.keysSent[p] === 0 ? keys : keys.slice(this.keysSent[p]);
    const initial = this.chunksSent[p] === 0 ? this.initialState?.[p] : undefined;
    this.sink(p, writeShard(this.refs[p], fresh, this.values[p], initial), last);
    this.keysSent[p] = keys.length;
    this.chunksSent[p]++;
    this.refs[p] = [];
    this.values[p] = [];
  }

  /** Sends every partition's last chunk (empty for a partition with no record left); the builder is spent. */
  finish(): void {
    this.release();
    // A batch without records never takes the table: an idle stream gives back what a large batch grew.
    if (this.index === 0) this.keyTable?.compact();
    for (let p = 0; p < this.numPartitions; p++) this.flush(p, true);
  }

  /** A lookup in the key table walked too far (keys made to collide): the rest of the batch goes by Map, with the keys the table holds. */
  private leaveTable(): void {
    const table = this.table!;
    for (const [key, code] of table.entries()) this.scalars.set(key, code);
    table.overlong++;
    table.release(this);
    this.table = undefined;
  }

  /** Gives the stream's key table back (done by finish; call it when the batch could not be routed). */
  release(): void {
    this.table?.release(this);
  }
}

/** A whole batch's shards at once, as one buffer per partition (for tests and tools). */
export function encodeShards(
  records: readonly unknown[],
  numPartitions: number,
  partitioner: Partitioner,
  where: { batchTime: number; stream: number },
  initialState?: InitialEntry[][],
): Uint8Array[] {
  const shards: Uint8Array[] = new Array(numPartitions);
  const builder = new ShardBuilder(numPartitions, partitioner, where, (p, chunk) => void (shards[p] = chunk), { initialState, chunkRecords: Infinity });
  for (let i = 0; i < records.length; i++) builder.add(records[i]);
  builder.finish();
  return shards;
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
    assertInitialEntry(pair, index++, stream);
    const key = keyToKeep(pair[0]);
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
