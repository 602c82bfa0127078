import { messageCodec } from '../codec.js';

/**
 * One partition's mapped records of a batch, as its worker sends them and as its batch log
 * keeps them for a replay:
 *
 *   [0, 20)     header: format, records n, keyed records m, bytes of `others`, bytes of `keys`
 *   kinds       u8 × n: 1 for a keyed record, 0 for any other (padded to 8 bytes)
 *   refs, nums  u32 × m, f64 × m: a keyed record is [keys[ref], num]
 *   others      MessagePack list of the other records, in order
 *   keys        the shard's distinct keys as the router encoded them (so a replay, or a
 *               reshard that moves the log, decodes without the shard)
 *
 * `[key, number]` with the record's own key is what most mapping functions return (Spark's
 * `Some((word, sum))`); it travels as an index and a float, and the main thread builds the
 * pair from the key string it already has instead of decoding a copy.
 */
const FORMAT = 0x4f555432; // 'OUT2'
const HEADER_BYTES = 20;

const align8 = (n: number) => (n + 7) & ~7;

export class OutputWriter {
  private readonly kinds: number[] = [];
  private readonly refs: number[] = [];
  private readonly nums: number[] = [];
  private readonly others: unknown[] = [];

  get length(): number {
    return this.kinds.length;
  }

  /** A record the mapping function returned for the shard key `keys[ref]` (ref undefined: a key outside the shard, a timeout). */
  push(out: unknown, key: unknown, ref: number | undefined): void {
    if (ref !== undefined && Array.isArray(out) && out.length === 2 && out[0] === key && typeof out[1] === 'number') {
      this.kinds.push(1);
      this.refs.push(ref);
      this.nums.push(out[1]);
    } else {
      this.kinds.push(0);
      this.others.push(out);
    }
  }

  /** The records other than the keyed ones, for the checks that they can be encoded. */
  get unkeyed(): readonly unknown[] {
    return this.others;
  }

  encode(keys: Uint8Array): Uint8Array {
    const n = this.kinds.length;
    const m = this.refs.length;
    const others = this.others.length > 0 ? messageCodec.pack(this.others) : new Uint8Array(0);
    const kindsAt = HEADER_BYTES;
    const refsAt = align8(kindsAt + n);
    const numsAt = align8(refsAt + 4 * m);
    const othersAt = numsAt + 8 * m;
    const keysAt = othersAt + others.length;
    // Shared: it reaches the main thread by reference, not by copy.
    const buffer = new SharedArrayBuffer(keysAt + keys.length);
    const header = new Uint32Array(buffer, 0, 5);
    header[0] = FORMAT;
    header[1] = n;
    header[2] = m;
    header[3] = others.length;
    header[4] = keys.length;
    new Uint8Array(buffer, kindsAt, n).set(this.kinds);
    new Uint32Array(buffer, refsAt, m).set(this.refs);
    new Float64Array(buffer, numsAt, m).set(this.nums);
    const bytes = new Uint8Array(buffer);
    bytes.set(others, othersAt);
    bytes.set(keys, keysAt);
    return bytes;
  }
}

/** Records in this format with no shard behind them (all of them "others"). */
export function encodeRecords(records: readonly unknown[]): Uint8Array {
  const writer = new OutputWriter();
  for (const record of records) writer.push(record, undefined, undefined);
  return writer.encode(new Uint8Array(0));
}

export const NO_OUTPUTS = encodeRecords([]);

/**
 * What a keyed record's pair is copied from. An array literal would carry an allocation site,
 * and V8 moves a site whose arrays outlived a young collection into the old generation for
 * good: every later batch's pairs would then be made there, on fresh pages, and die in full
 * collections. Copies of this array stay young and die young (docs/decisions.md).
 */
const PAIR: [unknown, number] = [undefined, 0];

/** One partition's mapped records of a batch as its worker sent them, and the shard's keys they refer to (none: the ones inside). */
export interface EncodedOutputs {
  bytes: Uint8Array;
  keys?: readonly unknown[];
}

/**
 * A batch's mapped records across its partitions, partition by partition, decoded at once
 * when an output operation asks for them: made in one stretch right before the output
 * reads them, they are garbage before the next young collection finds them alive.
 */
export function decodeBatchOutputs(parts: readonly EncodedOutputs[]): unknown[] {
  const decoded = parts.map((part) => decodeOutputs(part.bytes, part.keys));
  return decoded.length === 1 ? decoded[0] : ([] as unknown[]).concat(...decoded);
}

/** Reads the records back; `keys`, when given, are the shard's keys the router still holds (else the ones inside). */
export function decodeOutputs(bytes: Uint8Array, keys?: readonly unknown[]): unknown[] {
  // Stores written before this format kept a plain MessagePack list (which never starts with the format's first byte).
  if (bytes.length < HEADER_BYTES || bytes[0] !== (FORMAT & 0xff)) return messageCodec.unpack(bytes) as unknown[];
  // Copied when not 8-byte aligned (a buffer that came back from LMDB or inside a message).
  const own = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const header = new Uint32Array(own.buffer, own.byteOffset, 5);
  if (header[0] !== FORMAT) throw new Error(`not a batch's mapped records (format ${header[0].toString(16)})`);
  const n = header[1];
  const m = header[2];
  if (n === 0) return [];
  const kindsAt = HEADER_BYTES;
  const refsAt = align8(kindsAt + n);
  const numsAt = align8(refsAt + 4 * m);
  const othersAt = numsAt + 8 * m;
  const keysAt = othersAt + header[3];
  const kinds = new Uint8Array(own.buffer, own.byteOffset + kindsAt, n);
  const refs = new Uint32Array(own.buffer, own.byteOffset + refsAt, m);
  const nums = new Float64Array(own.buffer, own.byteOffset + numsAt, m);
  const others = header[3] > 0 ? (messageCodec.unpack(own.subarray(othersAt, keysAt)) as unknown[]) : [];
  if (m === 0) return others;
  const names = keys ?? (messageCodec.unpack(own.subarray(keysAt, keysAt + header[4])) as unknown[]);
  const out = new Array<unknown>(n);
  for (let i = 0, k = 0, o = 0; i < n; i++) {
    if (kinds[i] === 1) {
      const pair = PAIR.slice();
      pair[0] = names[refs[k]];
      pair[1] = nums[k];
      out[i] = pair;
      k++;
    } else {
      out[i] = others[o++];
    }
  }
  return out;
}
