import { Packr } from 'msgpackr';
import { EncodingError } from '../errors.js';

/**
 * State entries and shards are MessagePack. Records (shared structures) are off for state
 * entries: each entry is read alone, and a self-contained encoding keeps the stores
 * readable by any later version of the code.
 */
export const entryCodec = new Packr({ useRecords: false });
/** Shards and results are read once, whole, so inline record structures pay off for object values. */
export const messageCodec = new Packr({ useRecords: true });

/** A stored entry: the state and the batch time of the key's last record. */
export type StoredEntry<S = unknown> = [state: S, lastUpdated: number];

export function encodeEntry(state: unknown, lastUpdated: number): Buffer {
  return entryCodec.pack([state, lastUpdated]);
}

export function decodeEntry<S>(bytes: Uint8Array): StoredEntry<S> {
  return entryCodec.unpack(bytes) as StoredEntry<S>;
}

/**
 * MessagePack would quietly turn a function into `undefined` and lose it; a symbol or a
 * cycle fails deep inside the encoder. Find such values first and say where they are.
 */
export function encodingProblem(value: unknown, path = '$', seen: Set<object> = new Set()): string | undefined {
  switch (typeof value) {
    case 'function':
      return `${path} is a function`;
    case 'symbol':
      return `${path} is a symbol`;
    case 'bigint':
      return value > 0xffffffffffffffffn || value < -0x8000000000000000n ? `${path} is a bigint wider than 64 bits` : undefined;
    case 'object': {
      if (value === null || ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return undefined;
      if (seen.has(value)) return `${path} refers back to itself (a cycle)`;
      seen.add(value);
      let problem: string | undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length && !problem; i++) problem = encodingProblem(value[i], `${path}[${i}]`, seen);
      } else if (value instanceof Map) {
        for (const [k, v] of value) if (!problem) problem = encodingProblem(k, `${path}.<key>`, seen) ?? encodingProblem(v, `${path}.get(${String(k)})`, seen);
      } else if (value instanceof Set) {
        for (const v of value) if (!problem) problem = encodingProblem(v, `${path}.<member>`, seen);
      } else {
        for (const k of Object.keys(value)) {
          if (problem) break;
          problem = encodingProblem((value as Record<string, unknown>)[k], `${path}.${k}`, seen);
        }
      }
      seen.delete(value);
      return problem;
    }
    default:
      return undefined;
  }
}

export function assertEncodable(value: unknown, what: string, context: Record<string, unknown>): void {
  const problem = encodingProblem(value);
  if (problem) throw new EncodingError(`${what} cannot be stored: ${problem.replace('$', 'the value')}`, context);
}
