import { Packr } from 'msgpackr';
import { EncodingError } from '../errors.js';

/**
 * Bytes in a state, a record or an output read back as a Buffer. msgpackr reads a bin as a
 * view of what it decodes, of that thing's type: a Uint8Array where the source is a
 * transferred ArrayBuffer, on which `toString('hex')` quietly lists numbers instead. Where
 * the source may be lmdb-js's read buffer, which the thread's next read overwrites, each bin
 * is copied (`copyBuffers`); a message between threads owns its buffer, and its bins stay views.
 */
class BytesPackr extends Packr {
  constructor(options: ConstructorParameters<typeof Packr>[0] & { copyBuffers: boolean }) {
    super(options);
  }

  override unpack(source: Buffer | Uint8Array, options?: Parameters<Packr['unpack']>[1]): any {
    return super.unpack(asBuffer(source), options);
  }

  override unpackMultiple(source: Buffer | Uint8Array, forEach?: (value: any, start?: number, end?: number) => any): any {
    return forEach ? super.unpackMultiple(asBuffer(source), forEach) : super.unpackMultiple(asBuffer(source));
  }
}

/** The same bytes as a Buffer, not copied. */
function asBuffer(bytes: Buffer | Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * State entries and shards are MessagePack. Records (shared structures) are off for state
 * entries: each entry is read alone, and a self-contained encoding keeps the stores
 * readable by any later version of the code. `moreTypes` writes a Set, an Error, a RegExp
 * and typed arrays as msgpackr's extensions, which every msgpackr reader turns back into
 * the same type; nothing else is written differently, so entries written before read as
 * they did (their Sets are arrays).
 */
export const entryCodec = new BytesPackr({ useRecords: false, moreTypes: true, copyBuffers: true });
/**
 * States that hold a Map: with objects as (inline) records, a MessagePack map can stand for
 * a Map and read back as one, numeric keys and all. Plain maps read as objects in
 * entryCodec, so these entries carry a marker element: `[state, lastUpdated, 1]`.
 */
const mapCodec = new BytesPackr({ useRecords: true, moreTypes: true, copyBuffers: true });
const MAP_ENTRY = 1;
/** A MessagePack array of 3 elements: only entries written by mapCodec start so ([state, lastUpdated] is 0x92). */
const MAP_ENTRY_HEADER = 0x93;
/** Shards and results are read once, whole, so inline record structures pay off for object values (and keep Maps as Maps). */
export const messageCodec = new BytesPackr({ useRecords: true, moreTypes: true, copyBuffers: true });
/** messageCodec for a buffer a message between threads handed over: its bins are views of it, not copies (records, replies). */
export const messageViews = new BytesPackr({ useRecords: true, moreTypes: true, copyBuffers: false });

/** A stored entry: the state and the batch time of the key's last record. */
export type StoredEntry<S = unknown> = [state: S, lastUpdated: number];

/** Whether a Map is anywhere in `value`; it decides the entry's encoding. Called on states that passed assertEncodable (no cycles). */
export function holdsMap(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (value instanceof Map) return true;
  if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (typeof item === 'object' && item !== null && holdsMap(item)) return true;
    }
    return false;
  }
  if (value instanceof Set) {
    for (const item of value) if (holdsMap(item)) return true;
    return false;
  }
  for (const k in value) {
    const item = (value as Record<string, unknown>)[k];
    if (typeof item === 'object' && item !== null && holdsMap(item)) return true;
  }
  return false;
}

export function encodeEntry(state: unknown, lastUpdated: number): Buffer {
  return holdsMap(state) ? mapCodec.pack([state, lastUpdated, MAP_ENTRY]) : entryCodec.pack([state, lastUpdated]);
}

/**
 * A copy of `bytes` that nothing else writes: a Node Buffer's own `slice()` is a view of the
 * same memory (and lmdb-js's `getBinaryFast` hands out one Buffer that its next read
 * overwrites, its `length` set to the value's). The end is given, for that reason.
 */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes, 0, bytes.length);
}

export function decodeEntry<S>(bytes: Uint8Array): StoredEntry<S> {
  return (bytes[0] === MAP_ENTRY_HEADER ? mapCodec : entryCodec).unpack(bytes) as StoredEntry<S>;
}

/**
 * An export entry `[key, state, lastUpdated]`; one whose state holds a Map is written as
 * `[key, state, lastUpdated, 1]` by mapCodec, so that it reads back as a Map.
 */
export function encodeExportEntry(entry: readonly [unknown, unknown, number]): Buffer {
  return holdsMap(entry[1]) ? mapCodec.pack([...entry, MAP_ENTRY]) : entryCodec.pack(entry);
}

/** A MessagePack array of 4 elements: how an export entry marked as holding a Map starts (a plain one is 0x93). */
const MAP_EXPORT_ENTRY_HEADER = 0x94;

/** `value` as entryCodec read it from `bytes`: an entry marked as holding a Map is read again by mapCodec. */
function decodeExportValue(value: unknown, bytes: Uint8Array): unknown {
  if (!Array.isArray(value) || value.length !== 4 || value[3] !== MAP_ENTRY) return value;
  return (mapCodec.unpack(bytes) as unknown[]).slice(0, 3);
}

/**
 * Reads the whole values of an export's bytes (header, entries, trailer) and returns how
 * many bytes they took; a value cut off at the end is left for the caller to complete.
 * entryCodec reads plain maps as objects, so a Map keyed by something other than strings
 * and numbers (an object, an array, a Date) stops it: such an entry, marked, is read by the
 * codec that wrote it, and the rest goes on with entryCodec.
 */
export function unpackExportValues(data: Uint8Array, onValue: (value: unknown) => void): number {
  let consumed = 0;
  const incomplete = (error: unknown) => (error as { incomplete?: boolean } | undefined)?.incomplete === true;
  while (consumed < data.length) {
    const rest = data.subarray(consumed);
    const base = consumed;
    try {
      let stopped = false;
      entryCodec.unpackMultiple(rest, (value: unknown, start?: number, end?: number) => {
        onValue(decodeExportValue(value, rest.subarray(start, end)));
        consumed = base + end!;
        // The record definitions of an entry mapCodec wrote stay in force to the end of one
        // unpackMultiple, and entryCodec writes 64–127 as the bytes that refer to them: a
        // plain entry after it must be read by a call of its own.
        if (rest[start!] !== MAP_EXPORT_ENTRY_HEADER) return;
        stopped = true;
        return false;
      });
      if (!stopped) return consumed;
    } catch (error) {
      if (incomplete(error)) return consumed;
      if (data[consumed] !== MAP_EXPORT_ENTRY_HEADER) throw error;
      let one: { value: unknown; end: number } | undefined;
      try {
        mapCodec.unpackMultiple(data.subarray(consumed), (value: unknown, _start?: number, end?: number) => {
          one = { value, end: end! };
          return false;
        });
      } catch (mapError) {
        if (incomplete(mapError)) return consumed;
        throw error;
      }
      const entry = one!.value;
      if (!Array.isArray(entry) || entry.length !== 4 || entry[3] !== MAP_ENTRY) throw error;
      onValue(entry.slice(0, 3));
      consumed += one!.end;
    }
  }
  return consumed;
}

/**
 * MessagePack would quietly turn a function into `undefined` and lose it, and a string
 * with a lone surrogate into one with U+FFFD in its place (memory would then serve the
 * first and LMDB the second); a symbol or a cycle fails deep inside the encoder. Find such
 * values first and say where they are.
 * This runs on every changed state and every output, so the path is only built on failure.
 */
export function encodingProblem(value: unknown, { message = false }: { message?: boolean } = {}): string | undefined {
  const path: string[] = [];
  const problem = findProblem(value, path, new Set(), message);
  return problem && `${['$', ...path.reverse()].join('')} ${problem}`;
}

/**
 * `message`: the value goes between threads in messageCodec, not into a store. Its bigints
 * may be of any width (msgpackr's extension carries them), and an object with a toJSON of
 * its own (a Decimal, say) goes as what toJSON returns, as msgpackr packs it.
 */
function findProblem(value: unknown, path: string[], seen: Set<object>, message: boolean): string | undefined {
  switch (typeof value) {
    case 'function':
      return 'is a function';
    case 'symbol':
      return 'is a symbol';
    case 'bigint':
      return !message && (value > 0xffffffffffffffffn || value < -0x8000000000000000n) ? 'is a bigint wider than 64 bits' : undefined;
    case 'string':
      return wellFormed(value) ? undefined : 'is a string with a lone surrogate (UTF-8 cannot hold it: it would be stored as U+FFFD)';
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null || ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return undefined;
  if (message && !(value instanceof Map) && !(value instanceof Set) && typeof (value as { toJSON?: unknown }).toJSON === 'function') return undefined;
  if (seen.has(value)) return 'refers back to itself (a cycle)';
  seen.add(value);
  let problem: string | undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      // Primitives are the common case: skip the call.
      if (isPlain(item)) continue;
      if ((problem = findProblem(item, path, seen, message))) {
        path.push(`[${i}]`);
        break;
      }
    }
  } else if (value instanceof Map) {
    for (const [k, v] of value) {
      if ((problem = findProblem(k, path, seen, message))) {
        path.push('.<key>');
        break;
      }
      if ((problem = findProblem(v, path, seen, message))) {
        path.push(`.get(${String(k)})`);
        break;
      }
    }
  } else if (value instanceof Set) {
    for (const v of value) {
      if ((problem = findProblem(v, path, seen, message))) {
        path.push('.<member>');
        break;
      }
    }
  } else {
    for (const k in value) {
      if (!wellFormed(k)) {
        problem = 'has a property name with a lone surrogate (UTF-8 cannot hold it: it would be stored as U+FFFD)';
        break;
      }
      if ((problem = findProblem((value as Record<string, unknown>)[k], path, seen, message))) {
        path.push(`.${k}`);
        break;
      }
    }
  }
  seen.delete(value);
  return problem;
}

/**
 * encodingProblem (`message`: of a value going between threads, see findProblem), with no
 * walk and no allocation for a primitive, bytes, a short tuple of primitives ([word, count])
 * or a flat object of them ({ user, amount }): the usual record values, states and outputs.
 */
export function valueProblem(value: unknown, options: { message?: boolean } = {}): string | undefined {
  if (isPlain(value) || ArrayBuffer.isView(value)) return undefined;
  if (Array.isArray(value) && value.length <= 8 && value.every(isPlain)) return undefined;
  if (isFlatObject(value)) return undefined;
  return encodingProblem(value, options);
}

/** An object of Object's prototype (or none) whose properties, names included, are all plain. */
function isFlatObject(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in value) {
    if (!isPlain((value as Record<string, unknown>)[k]) || !wellFormed(k)) return false;
  }
  return true;
}

function isPlain(value: unknown): boolean {
  if (typeof value === 'string') return wellFormed(value);
  return typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol' && typeof value !== 'bigint';
}

/** Node 20's String.prototype.isWellFormed (ES2024, beyond the lib this project compiles against): immediate for a one-byte string. */
function wellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** Throws an EncodingError when MessagePack cannot hold `value` as it is; `what` is only called when there is something to report. */
export function assertEncodable(value: unknown, what: () => string, context: () => Record<string, unknown>): void {
  const problem = valueProblem(value);
  if (problem) throw new EncodingError(`${what()} cannot be stored: ${problem.replace('$', 'the value')}`, context());
}
