import { messageCodec } from '../storage/codec.js';
import type { InitialEntry } from './messages.js';

/**
 * One partition's shard of a batch, in one transferable buffer:
 *
 *   [0, 16)          header: format, record count, payload bytes, distinct keys
 *   [16, 16 + 4n)    refs: record i's key is keys[refs[i]] (u32, little-endian)
 *   then             MessagePack { keys, values, initialState? }
 *
 * Each distinct key travels once however often it repeats (a Zipf batch repeats its hot
 * keys thousands of times), and the worker finds a record's working-set slot by array
 * index instead of hashing the key again.
 */
const FORMAT = 0x53484432; // 'SHD2'
const HEADER_BYTES = 16;

export interface ShardContent {
  /** keys[refs[i]] is record i's key; record i's value is values[i]. Arrival order within the partition. */
  refs: Uint32Array;
  keys: unknown[];
  values: unknown[];
  /** StateSpec.initialState for this partition, until the store holds a batch. */
  initialState?: InitialEntry[];
}

export function writeShard(refs: Uint32Array, keys: unknown[], values: unknown[], initialState?: InitialEntry[]): Uint8Array {
  const payload = messageCodec.pack(initialState?.length ? { keys, values, initialState } : { keys, values });
  const refsBytes = refs.length * 4;
  const buffer = new ArrayBuffer(HEADER_BYTES + refsBytes + payload.length);
  const header = new Uint32Array(buffer, 0, 4);
  header[0] = FORMAT;
  header[1] = refs.length;
  header[2] = payload.length;
  header[3] = keys.length;
  new Uint32Array(buffer, HEADER_BYTES, refs.length).set(refs);
  new Uint8Array(buffer, HEADER_BYTES + refsBytes).set(payload);
  return new Uint8Array(buffer);
}

export function readShard(buffer: ArrayBuffer): ShardContent {
  const header = new Uint32Array(buffer, 0, 4);
  if (header[0] !== FORMAT) throw new Error(`not a shard (format ${header[0].toString(16)})`);
  const records = header[1];
  const refs = new Uint32Array(buffer, HEADER_BYTES, records);
  const payload = messageCodec.unpack(new Uint8Array(buffer, HEADER_BYTES + records * 4, header[2])) as Omit<ShardContent, 'refs'>;
  return { refs, keys: payload.keys, values: payload.values, initialState: payload.initialState };
}
