import { describeValue, InvalidRecordError } from '../errors.js';
import { encodingProblem, valueProblem } from './codec.js';

/**
 * LMDB keys are at most 1978 bytes; the time index prefixes a key with its batch time
 * (about 10 bytes), so state keys stop well short of that.
 */
export const MAX_KEY_BYTES = 1900;

export function isScalarKey(key: unknown): boolean {
  switch (typeof key) {
    case 'string':
      return true;
    case 'number':
      return Number.isFinite(key);
    case 'boolean':
      return true;
    default:
      return false;
  }
}


/** In Node 20 (ES2024), missing from the ES2023 lib the project compiles against. */
function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** The index of the first lone surrogate in `text`, or -1. */
function loneSurrogateAt(text: string): number {
  if (isWellFormed(text)) return -1;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return i;
    } else if (code >= 0xdc00 && code <= 0xdfff) return i;
  }
  return -1;
}

/**
 * A string with a lone surrogate (a key cut from an emoji with slice) has no UTF-8 form:
 * the encoding replaces it with U+FFFD, so two different keys would share one state that
 * neither can find again.
 */
function malformedProblem(key: unknown): string | undefined {
  const parts = Array.isArray(key) ? key : [key];
  for (let p = 0; p < parts.length; p++) {
    if (typeof parts[p] !== 'string') continue;
    const at = loneSurrogateAt(parts[p] as string);
    if (at >= 0) {
      return `key ${describeValue(key)} is not a well-formed string (a lone surrogate at index ${at}${Array.isArray(key) ? ` of part ${p}` : ''}); UTF-8 cannot carry it, so it would share a state with other keys`;
    }
  }
  return undefined;
}

/**
 * LMDB's key encoding (ordered-binary) keeps U+0000 to U+0004 in a string shorter than 64
 * characters, and not in a longer one: there they read back as the parts of a tuple, a
 * different key, which the state of the key written could never be found under again.
 */
const UNKEPT = /[\u0000-\u0004]/;
const UNKEPT_FROM = 64;

function unkeptProblem(key: unknown): string | undefined {
  const parts = Array.isArray(key) ? key : [key];
  for (let p = 0; p < parts.length; p++) {
    const part = parts[p];
    if (typeof part !== 'string' || part.length < UNKEPT_FROM) continue;
    const at = part.search(UNKEPT);
    if (at >= 0) {
      return `key ${describeValue(key)} holds U+000${part.charCodeAt(at)} at index ${at}${Array.isArray(key) ? ` of part ${p}` : ''}: in a string of ${UNKEPT_FROM} characters or more, LMDB's key encoding reads it back as another key`;
    }
  }
  return undefined;
}

/** Why `key` cannot be a state key, or undefined when it can. */
export function keyProblem(key: unknown): string | undefined {
  if (isScalarKey(key)) {
    if (typeof key === 'string' && !isWellFormed(key)) return malformedProblem(key);
    if (typeof key === 'string' && key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key) > MAX_KEY_BYTES) {
      return `key is ${Buffer.byteLength(key)} bytes of UTF-8; LMDB keys are limited to ${MAX_KEY_BYTES}`;
    }
    return unkeptProblem(key);
  }
  // A one-element tuple encodes exactly like its element in LMDB, so it would share its state.
  if (Array.isArray(key) && key.length > 1 && key.every(isScalarKey)) {
    const malformed = malformedProblem(key) ?? unkeptProblem(key);
    if (malformed) return malformed;
    const bytes = key.reduce((n: number, part) => n + (typeof part === 'string' ? Buffer.byteLength(part) + 1 : 10), 0);
    return bytes > MAX_KEY_BYTES ? `key is about ${bytes} bytes encoded; LMDB keys are limited to ${MAX_KEY_BYTES}` : undefined;
  }
  return `key ${describeValue(key)} cannot be an LMDB key: use a string, a finite number, a boolean, or a flat array of two or more of those`;
}

/**
 * MessagePack and JavaScript treat -0 as 0, but LMDB's key encoding and the partitioner do
 * not: without this, key 0 could live twice, in two partitions.
 */
export function normalizeKey<K>(key: K): K {
  if (typeof key === 'number') return (key === 0 ? 0 : key) as K;
  if (Array.isArray(key) && key.some((part) => Object.is(part, -0))) return normalParts(key) as K;
  return key;
}

/** A tuple's parts in a new array, -0 as 0. */
function normalParts(parts: unknown[]): unknown[] {
  return parts.map((part) => (part === 0 ? 0 : part));
}

/**
 * A key as it is kept until it is encoded, later: normalized, and a tuple copied, so that
 * code that reuses one array for the keys it yields (a generator) does not change a key
 * already placed, and routed, by the time it is written.
 */
export function keyToKeep<K>(key: K): K {
  return (Array.isArray(key) ? normalParts(key) : normalizeKey(key)) as K;
}

/** Throws an InvalidRecordError naming the batch and record position when a record is not a usable [key, value] pair. */
export function assertPair(record: unknown, batchTime: number, index: number, stream: number): asserts record is [unknown, unknown] {
  if (Array.isArray(record) && record.length === 2 && typeof record[0] === 'string' && record[0].length * 3 <= MAX_KEY_BYTES && isWellFormed(record[0]) && (record[0].length < UNKEPT_FROM || !UNKEPT.test(record[0]))) return;
  const where = { batchTime, index, stream };
  if (!Array.isArray(record) || record.length !== 2) {
    throw new InvalidRecordError(
      `mapWithState expects [key, value] pairs; record ${where.index} of batch ${where.batchTime} is ${describeValue(record)}`,
      { ...where, record: describeValue(record) },
    );
  }
  const problem = keyProblem(record[0]);
  if (problem) {
    throw new InvalidRecordError(`record ${index} of batch ${batchTime}: ${problem}`, { ...where, key: describeValue(record[0]) });
  }
}

/** The options of valueProblem for a record's value, made once: the check runs per record. */
const AS_MESSAGE = { message: true };

/**
 * Throws an InvalidRecordError naming the record whose value MessagePack cannot carry to its
 * partition as it is: a function would arrive as undefined (msgpackr writes nothing for it)
 * and a lone surrogate as U+FFFD; a symbol or a cycle would fail the batch with msgpackr's
 * own words and no record named.
 */
export function assertRecordValue(record: [unknown, unknown], batchTime: number, index: number, stream: number): void {
  const problem = valueProblem(record[1], AS_MESSAGE);
  if (problem === undefined) return;
  const key = describeValue(record[0]);
  throw new InvalidRecordError(`record ${index} of batch ${batchTime} (key ${key}, mapWithState stream ${stream}) cannot be sent to its partition: ${problem.replace('$', 'its value')}`, { batchTime, index, stream, key });
}

/**
 * Throws an InvalidRecordError naming StateSpec.initialState's entry when it is no [key,
 * state] pair a job could store: the checks a record's key and a state's update get, so
 * that initial state holds nothing a batch could not have written (no key without a
 * state, no state MessagePack would drop).
 */
export function assertInitialEntry(entry: unknown, index: number, stream?: number): asserts entry is [unknown, unknown] {
  const where = `StateSpec.initialState entry ${index}${stream === undefined ? '' : ` (mapWithState stream ${stream})`}`;
  if (!Array.isArray(entry) || entry.length !== 2) throw new InvalidRecordError(`${where} is ${describeValue(entry)}, not a [key, state] pair`, { index, entry: describeValue(entry) });
  const problem = keyProblem(entry[0]);
  if (problem) throw new InvalidRecordError(`${where}: ${problem}`, { index, key: describeValue(entry[0]) });
  const key = describeValue(entry[0]);
  if (entry[1] === undefined) throw new InvalidRecordError(`${where} (key ${key}) has no state (undefined): leave the key out instead`, { index, key });
  const unstorable = encodingProblem(entry[1]);
  if (unstorable) throw new InvalidRecordError(`${where} (key ${key}): the state cannot be stored: ${unstorable}`, { index, key });
}
