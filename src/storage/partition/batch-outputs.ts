import { copyBytes, messageCodec } from '../codec.js';

/**
 * One partition's mapped records of a batch, as its worker sends them and as its batch log
 * keeps them for a replay:
 *
 *   [0, 24)     header: format, records n, keyed records m, bytes of `others`, bytes of
 *               `keys`, layout flags
 *   kinds       u8 × n: 1 for a keyed record, 0 for any other (absent when all are keyed)
 *   refs        u16 or u32 × m (8-byte aligned): a keyed record is [keys[ref], num]…
 *   nums        i32 or f64 × m (8-byte aligned): …and its number
 *   others      MessagePack list of the other records, in order
 *   keys        the shard's distinct keys as the router encoded them (so a replay, or a
 *               reshard that moves the log, decodes without the shard)
 *
 * `[key, number]` with the record's own key is what most mapping functions return (Spark's
 * `Some((word, sum))`); it travels as an index and a number, and the main thread builds the
 * pair from the key string it already has instead of decoding a copy. A count is an integer
 * and a shard has fewer than 65536 keys, mostly: such a record takes 6 bytes, not 13, in the
 * message and in every batch log's LMDB write (docs/decisions.md).
 */
const FORMAT = 0x4f555433; // 'OUT3'
/** The format before the layout flags: kinds always present, u32 refs, f64 nums (batch logs written by earlier versions). */
const FORMAT_2 = 0x4f555432; // 'OUT2'
const HEADER_BYTES = 24;
const HEADER_BYTES_2 = 20;
const ALL_KEYED = 1;
const NARROW_REFS = 2;
const INT_NUMS = 4;

const align8 = (n: number) => (n + 7) & ~7;

/** Where each section of an encoded batch starts, from its header. */
function sections(n: number, m: number, othersBytes: number, flags: number, headerBytes: number) {
  const kindsAt = headerBytes;
  const refsAt = align8(kindsAt + (flags & ALL_KEYED ? 0 : n));
  const numsAt = align8(refsAt + (flags & NARROW_REFS ? 2 : 4) * m);
  const othersAt = numsAt + (flags & INT_NUMS ? 4 : 8) * m;
  return { kindsAt, refsAt, numsAt, othersAt, keysAt: othersAt + othersBytes };
}

/**
 * The typed columns a writer fills, kept by the thread from batch to batch. Arrays made for
 * each batch grew, for a partition's 10^4 records or more, past the size at which V8 makes an
 * array a large object, on fresh pages that the kernel must fault in (about 12 µs a page on
 * the development machine): a third of a worker's page faults (docs/decisions.md).
 */
class Columns {
  kinds = new Uint8Array(1024);
  refs = new Uint32Array(1024);
  nums = new Float64Array(1024);

  /** Twice the room, keeping what the columns hold (called when they are full). */
  grow(): void {
    const size = this.kinds.length * 2;
    const kinds = new Uint8Array(size);
    const refs = new Uint32Array(size);
    const nums = new Float64Array(size);
    kinds.set(this.kinds);
    refs.set(this.refs);
    nums.set(this.nums);
    this.kinds = kinds;
    this.refs = refs;
    this.nums = nums;
  }
}

/** Columns no writer holds. A writer abandoned with its batch (a retry) never gives its own back; the collector takes them. */
const spareColumns: Columns[] = [];

/**
 * Columns of more records than this go back to the spare list only from a writer that
 * filled a sixteenth of them or more: one very large batch does not leave its columns (13
 * bytes a record) on the thread for good, and sizes that move up and down within 16× do
 * not make and drop columns batch after batch (as the router's key table, key-table.ts).
 */
const KEPT_COLUMN_RECORDS = 1 << 16;

/** Records the thread's spare columns have room for, all sets together (what they hold on to). */
export function spareColumnRecords(): number {
  return spareColumns.reduce((n, c) => n + c.kinds.length, 0);
}

export class OutputWriter {
  private columns: Columns | undefined;
  private n = 0;
  private m = 0;
  private readonly others: unknown[] = [];
  private maxRef = 0;
  private intNums = true;
  private spent = false;

  get length(): number {
    return this.n;
  }

  /**
   * A record the mapping function returned for the shard key `keys[ref]` (ref undefined: a
   * key outside the shard, a timeout). True when it is kept as it is, to be encoded with
   * MessagePack (rather than as a key index and a number): the caller checks it can be.
   */
  push(out: unknown, key: unknown, ref: number | undefined): boolean {
    let columns = this.columns;
    if (columns === undefined) {
      if (this.spent) throw new Error('OutputWriter: encoded already');
      columns = this.columns = spareColumns.pop() ?? new Columns();
    }
    if (this.n === columns.kinds.length) columns.grow();
    if (ref !== undefined && Array.isArray(out) && out.length === 2 && out[0] === key && typeof out[1] === 'number') {
      const num = out[1];
      columns.kinds[this.n++] = 1;
      // The keyed records' columns are dense: record k of them at k.
      columns.refs[this.m] = ref;
      columns.nums[this.m++] = num;
      if (ref > this.maxRef) this.maxRef = ref;
      // -0 is no int32 (it would come back as 0).
      if (this.intNums && ((num | 0) !== num || (num === 0 && 1 / num < 0))) this.intNums = false;
      return false;
    }
    columns.kinds[this.n++] = 0;
    this.others.push(out);
    return true;
  }

  /** The records as one buffer; the writer is spent (its columns go back for the thread's next batch). */
  encode(keys: Uint8Array): Uint8Array {
    if (this.spent) throw new Error('OutputWriter: encoded already');
    const { n, m, columns } = this;
    const others = this.others.length > 0 ? messageCodec.pack(this.others) : new Uint8Array(0);
    const flags = (m === n ? ALL_KEYED : 0) | (this.maxRef <= 0xffff ? NARROW_REFS : 0) | (this.intNums ? INT_NUMS : 0);
    const at = sections(n, m, others.length, flags, HEADER_BYTES);
    // Shared: it reaches the main thread by reference, not by copy.
    const buffer = new SharedArrayBuffer(at.keysAt + keys.length);
    const header = new Uint32Array(buffer, 0, 6);
    header[0] = FORMAT;
    header[1] = n;
    header[2] = m;
    header[3] = others.length;
    header[4] = keys.length;
    header[5] = flags;
    // A writer that got no record never took columns: its sections are empty.
    if (columns !== undefined) {
      if (!(flags & ALL_KEYED)) new Uint8Array(buffer, at.kindsAt, n).set(columns.kinds.subarray(0, n));
      (flags & NARROW_REFS ? new Uint16Array(buffer, at.refsAt, m) : new Uint32Array(buffer, at.refsAt, m)).set(columns.refs.subarray(0, m));
      (flags & INT_NUMS ? new Int32Array(buffer, at.numsAt, m) : new Float64Array(buffer, at.numsAt, m)).set(columns.nums.subarray(0, m));
      if (columns.kinds.length <= KEPT_COLUMN_RECORDS || n * 16 >= columns.kinds.length) spareColumns.push(columns);
    }
    const bytes = new Uint8Array(buffer);
    bytes.set(others, at.othersAt);
    bytes.set(keys, at.keysAt);
    this.columns = undefined;
    this.spent = true;
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
 * when an output operation asks for them, into one array of the batch's size: made in one
 * stretch right before the output reads them, they are garbage before the next young
 * collection finds them alive.
 */
export function decodeBatchOutputs(parts: readonly EncodedOutputs[]): unknown[] {
  const layouts = parts.map((part) => layoutOf(part.bytes));
  if (layouts.some((layout) => layout === undefined)) {
    // A batch log written before these formats: plain MessagePack lists.
    return ([] as unknown[]).concat(...parts.map((part) => decodeOutputs(part.bytes, part.keys)));
  }
  const out = new Array<unknown>(layouts.reduce((n, layout) => n + layout!.n, 0));
  let at = 0;
  for (let p = 0; p < parts.length; p++) at = decodeInto(layouts[p]!, parts[p].keys, out, at);
  return out;
}

/** Reads the records back; `keys`, when given, are the shard's keys the router still holds (else the ones inside). */
export function decodeOutputs(bytes: Uint8Array, keys?: readonly unknown[]): unknown[] {
  const layout = layoutOf(bytes);
  if (layout === undefined) return messageCodec.unpack(bytes) as unknown[];
  const out = new Array<unknown>(layout.n);
  decodeInto(layout, keys, out, 0);
  return out;
}

interface Layout {
  /** The bytes, 8-byte aligned. */
  own: Uint8Array;
  n: number;
  m: number;
  othersBytes: number;
  keysBytes: number;
  flags: number;
  headerBytes: number;
}

/** The header of an encoded batch; undefined for a plain MessagePack list (stores written before these formats, which never start with their first byte). */
function layoutOf(bytes: Uint8Array): Layout | undefined {
  if (bytes.length < HEADER_BYTES_2 || (bytes[0] !== (FORMAT & 0xff) && bytes[0] !== (FORMAT_2 & 0xff))) return undefined;
  // Copied when not 8-byte aligned (a buffer that came back from LMDB or inside a message).
  const own = bytes.byteOffset % 8 === 0 ? bytes : copyBytes(bytes);
  const header = new Uint32Array(own.buffer, own.byteOffset, own.length >= HEADER_BYTES ? 6 : 5);
  if (header[0] !== FORMAT && header[0] !== FORMAT_2) throw new Error(`not a batch's mapped records (format ${header[0].toString(16)})`);
  const current = header[0] === FORMAT;
  return { own, n: header[1], m: header[2], othersBytes: header[3], keysBytes: header[4], flags: current ? header[5] : 0, headerBytes: current ? HEADER_BYTES : HEADER_BYTES_2 };
}

/** Writes the records into out[at…]; returns where the next partition's go. */
function decodeInto({ own, n, m, othersBytes, keysBytes, flags, headerBytes }: Layout, keys: readonly unknown[] | undefined, out: unknown[], at: number): number {
  if (n === 0) return at;
  const sec = sections(n, m, othersBytes, flags, headerBytes);
  const base = own.byteOffset;
  const others = othersBytes > 0 ? (messageCodec.unpack(own.subarray(sec.othersAt, sec.keysAt)) as unknown[]) : [];
  if (m === 0) {
    for (let i = 0; i < n; i++) out[at + i] = others[i];
    return at + n;
  }
  const kinds = flags & ALL_KEYED ? undefined : new Uint8Array(own.buffer, base + sec.kindsAt, n);
  const refs = flags & NARROW_REFS ? new Uint16Array(own.buffer, base + sec.refsAt, m) : new Uint32Array(own.buffer, base + sec.refsAt, m);
  const nums = flags & INT_NUMS ? new Int32Array(own.buffer, base + sec.numsAt, m) : new Float64Array(own.buffer, base + sec.numsAt, m);
  const names = keys ?? (messageCodec.unpack(own.subarray(sec.keysAt, sec.keysAt + keysBytes)) as unknown[]);
  for (let i = 0, k = 0, o = 0; i < n; i++) {
    if (kinds === undefined || kinds[i] === 1) {
      const pair = PAIR.slice();
      pair[0] = names[refs[k]];
      pair[1] = nums[k];
      out[at + i] = pair;
      k++;
    } else {
      out[at + i] = others[o++];
    }
  }
  return at + n;
}
