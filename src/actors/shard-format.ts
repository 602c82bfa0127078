import { messageCodec } from '../storage/codec.js';
import type { InitialEntry } from './messages.js';

/**
 * One partition's shard of a batch (or a chunk of it), in one SharedArrayBuffer: the
 * worker reads it where the main thread wrote it, no copy and no transfer, and a retry or a
 * replay after a worker died sends the same buffer again:
 *
 *   [0, 16)          header: format, record count, bytes of keys, bytes of values
 *   [16, 16 + 4n)    refs: record i's key is keys[refs[i]] (u32, little-endian)
 *   then             MessagePack keys (the distinct keys), values, and initialState when any;
 *                    in format INT_VALUES: the values (Int8/16/32Array), MessagePack keys,
 *                    and initialState when any
 *
 * Each distinct key travels once however often it repeats (a Zipf batch repeats its hot
 * keys thousands of times), and the worker finds a record's working-set slot by array
 * index instead of hashing the key again. When every value is an integer of at most 32
 * bits (a count, the commonest value of a keyed stream), format INT_VALUES puts them right
 * after the refs as an Int8Array, Int16Array or Int32Array, the narrowest that holds them
 * (as many bytes as MessagePack would take for ones), before the keys: no encoding per
 * record on the main thread, and none on the worker, which reads them where they lie.
 */
const FORMAT = 0x53484433; // 'SHD3'
const INT_VALUES = 0x53484934; // 'SHD4'
const HEADER_BYTES = 16;

export interface ShardContent {
  /** keys[refs[i]] is record i's key; record i's value is values[i]. Arrival order within the partition. */
  refs: Uint32Array;
  keys: unknown[];
  values: ArrayLike<unknown>;
  /** StateSpec.initialState for this partition, until the store holds a batch. */
  initialState?: InitialEntry[];
}

/** `refs` are written straight into the shard's buffer (no typed copy of them first: one allocation fewer per chunk). */
export function writeShard(refs: ArrayLike<number>, keys: unknown[], values: unknown[], initialState?: InitialEntry[]): Uint8Array {
  const encodedKeys = messageCodec.pack(keys);
  const width = intWidth(values);
  const ints = width > 0;
  const encodedValues = ints ? undefined : messageCodec.pack(values);
  const valuesBytes = encodedValues?.length ?? values.length * width;
  const initial = initialState?.length ? messageCodec.pack(initialState) : new Uint8Array(0);
  const at = HEADER_BYTES + refs.length * 4;
  const buffer = new SharedArrayBuffer(at + encodedKeys.length + valuesBytes + initial.length);
  const header = new Uint32Array(buffer, 0, 4);
  header[0] = ints ? INT_VALUES : FORMAT;
  header[1] = refs.length;
  header[2] = encodedKeys.length;
  header[3] = valuesBytes;
  new Uint32Array(buffer, HEADER_BYTES, refs.length).set(refs);
  const bytes = new Uint8Array(buffer);
  if (encodedValues) {
    bytes.set(encodedKeys, at);
    bytes.set(encodedValues, at + encodedKeys.length);
  } else {
    intArray(width, buffer, at, values.length).set(values as number[]);
    bytes.set(encodedKeys, at + valuesBytes);
  }
  bytes.set(initial, at + encodedKeys.length + valuesBytes);
  return bytes;
}

/** A view of `length` integers of `width` bytes each at `at`. */
function intArray(width: number, buffer: ArrayBufferLike, at: number, length: number): Int8Array | Int16Array | Int32Array {
  return width === 1 ? new Int8Array(buffer, at, length) : width === 2 ? new Int16Array(buffer, at, length) : new Int32Array(buffer, at, length);
}

/**
 * Bytes a value takes in the narrowest integer array that holds every value, or 0 when some
 * value is no integer of 32 bits (-0 comes back as 0, as MessagePack also gives it back).
 */
function intWidth(values: unknown[]): number {
  if (values.length === 0) return 0;
  let min = 0;
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || (v | 0) !== v) return 0;
    if (v < min) min = v;
    else if (v > max) max = v;
  }
  return min >= -0x80 && max <= 0x7f ? 1 : min >= -0x8000 && max <= 0x7fff ? 2 : 4;
}

export function readShard(buffer: ArrayBufferLike): ShardContent {
  const header = new Uint32Array(buffer, 0, 4);
  const format = header[0];
  if (format !== FORMAT && format !== INT_VALUES) throw new Error(`not a shard (format ${format.toString(16)})`);
  const records = header[1];
  const refs = new Uint32Array(buffer, HEADER_BYTES, records);
  const ints = format === INT_VALUES;
  const at = HEADER_BYTES + records * 4;
  const keysAt = ints ? at + header[3] : at;
  const valuesAt = ints ? at : at + header[2];
  const initialAt = at + header[2] + header[3];
  // Bins are copied, not views of the shard: a retry or a replay reads the same shard again,
  // and a mapping function that changed a Buffer in place would hand the next attempt its change.
  const keys = messageCodec.unpack(new Uint8Array(buffer, keysAt, header[2])) as unknown[];
  const values = ints ? intArray(header[3] / records, buffer, valuesAt, records) : (messageCodec.unpack(new Uint8Array(buffer, valuesAt, header[3])) as unknown[]);
  const initialState = initialAt < buffer.byteLength ? (messageCodec.unpack(new Uint8Array(buffer, initialAt)) as InitialEntry[]) : undefined;
  return { refs, keys, values, initialState };
}
