import { messageCodec } from '../storage/codec.js';
import type { InitialEntry } from './messages.js';

/**
 * One partition's shard of a batch (or a chunk of it), in one SharedArrayBuffer: the
 * worker reads it where the main thread wrote it, no copy and no transfer, and a retry or a
 * replay after a worker died sends the same buffer again:
 *
 *   [0, 16)          header: format, record count, bytes of keys, bytes of values
 *   [16, 16 + 4n)    refs: record i's key is keys[refs[i]] (u32, little-endian)
 *   then             MessagePack keys (the distinct keys), values, and initialState when any
 *
 * Each distinct key travels once however often it repeats (a Zipf batch repeats its hot
 * keys thousands of times), and the worker finds a record's working-set slot by array
 * index instead of hashing the key again.
 */
const FORMAT = 0x53484433; // 'SHD3'
const HEADER_BYTES = 16;

export interface ShardContent {
  /** keys[refs[i]] is record i's key; record i's value is values[i]. Arrival order within the partition. */
  refs: Uint32Array;
  keys: unknown[];
  values: unknown[];
  /** StateSpec.initialState for this partition, until the store holds a batch. */
  initialState?: InitialEntry[];
  /** The keys as encoded, kept with the batch's mapped records (see storage/partition/batch-outputs.ts). */
  keysBytes: Uint8Array;
}

/** `refs` are written straight into the shard's buffer (no typed copy of them first: one allocation fewer per chunk). */
export function writeShard(refs: ArrayLike<number>, keys: unknown[], values: unknown[], initialState?: InitialEntry[]): Uint8Array {
  const encodedKeys = messageCodec.pack(keys);
  const encodedValues = messageCodec.pack(values);
  const initial = initialState?.length ? messageCodec.pack(initialState) : new Uint8Array(0);
  const refsBytes = refs.length * 4;
  const at = HEADER_BYTES + refsBytes;
  const buffer = new SharedArrayBuffer(at + encodedKeys.length + encodedValues.length + initial.length);
  const header = new Uint32Array(buffer, 0, 4);
  header[0] = FORMAT;
  header[1] = refs.length;
  header[2] = encodedKeys.length;
  header[3] = encodedValues.length;
  new Uint32Array(buffer, HEADER_BYTES, refs.length).set(refs);
  const bytes = new Uint8Array(buffer);
  bytes.set(encodedKeys, at);
  bytes.set(encodedValues, at + encodedKeys.length);
  bytes.set(initial, at + encodedKeys.length + encodedValues.length);
  return bytes;
}

export function readShard(buffer: ArrayBufferLike): ShardContent {
  const header = new Uint32Array(buffer, 0, 4);
  if (header[0] !== FORMAT) throw new Error(`not a shard (format ${header[0].toString(16)})`);
  const records = header[1];
  const refs = new Uint32Array(buffer, HEADER_BYTES, records);
  const keysAt = HEADER_BYTES + records * 4;
  const valuesAt = keysAt + header[2];
  const initialAt = valuesAt + header[3];
  const keysBytes = new Uint8Array(buffer, keysAt, header[2]);
  const keys = messageCodec.unpack(keysBytes) as unknown[];
  const values = messageCodec.unpack(new Uint8Array(buffer, valuesAt, header[3])) as unknown[];
  const initialState = initialAt < buffer.byteLength ? (messageCodec.unpack(new Uint8Array(buffer, initialAt)) as InitialEntry[]) : undefined;
  return { refs, keys, values, initialState, keysBytes };
}
