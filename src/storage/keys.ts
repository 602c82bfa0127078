import { InvalidRecordError } from '../errors.js';

/**
 * LMDB keys are at most 1978 bytes; the time index prefixes a key with its batch time
 * (about 10 bytes), so state keys stop well short of that.
 */
export const MAX_KEY_BYTES = 1900;

function isScalarKey(key: unknown): boolean {
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

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'symbol' || typeof value === 'function' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  try {
    const json = JSON.stringify(value);
    return json === undefined ? String(value) : json.length > 60 ? json.slice(0, 60) + '…' : json;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/** Why `key` cannot be a state key, or undefined when it can. */
export function keyProblem(key: unknown): string | undefined {
  if (isScalarKey(key)) {
    if (typeof key === 'string' && key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key) > MAX_KEY_BYTES) {
      return `key is ${Buffer.byteLength(key)} bytes of UTF-8; LMDB keys are limited to ${MAX_KEY_BYTES}`;
    }
    return undefined;
  }
  // A one-element tuple encodes exactly like its element in LMDB, so it would share its state.
  if (Array.isArray(key) && key.length > 1 && key.every(isScalarKey)) {
    const bytes = key.reduce((n: number, part) => n + (typeof part === 'string' ? Buffer.byteLength(part) + 1 : 10), 0);
    return bytes > MAX_KEY_BYTES ? `key is about ${bytes} bytes encoded; LMDB keys are limited to ${MAX_KEY_BYTES}` : undefined;
  }
  return `key ${describe(key)} cannot be an LMDB key: use a string, a finite number, a boolean, or a flat array of two or more of those`;
}

/**
 * MessagePack and JavaScript treat -0 as 0, but LMDB's key encoding and the partitioner do
 * not: without this, key 0 could live twice, in two partitions.
 */
export function normalizeKey<K>(key: K): K {
  if (typeof key === 'number') return (key === 0 ? 0 : key) as K;
  if (Array.isArray(key) && key.some((part) => Object.is(part, -0))) return key.map((part) => (part === 0 ? 0 : part)) as K;
  return key;
}

/** Throws an InvalidRecordError naming the batch and record position when a record is not a usable [key, value] pair. */
export function assertPair(record: unknown, batchTime: number, index: number, stream: number): asserts record is [unknown, unknown] {
  if (Array.isArray(record) && record.length === 2 && typeof record[0] === 'string' && record[0].length * 3 <= MAX_KEY_BYTES) return;
  const where = { batchTime, index, stream };
  if (!Array.isArray(record) || record.length !== 2) {
    throw new InvalidRecordError(
      `mapWithState expects [key, value] pairs; record ${where.index} of batch ${where.batchTime} is ${describe(record)}`,
      { ...where, record: describe(record) },
    );
  }
  const problem = keyProblem(record[0]);
  if (problem) {
    throw new InvalidRecordError(`record ${index} of batch ${batchTime}: ${problem}`, { ...where, key: describe(record[0]) });
  }
}

