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
 * This runs on every changed state and every output, so the path is only built on failure.
 */
export function encodingProblem(value: unknown): string | undefined {
  const path: string[] = [];
  const problem = findProblem(value, path, new Set());
  return problem && `${['$', ...path.reverse()].join('')} ${problem}`;
}

function findProblem(value: unknown, path: string[], seen: Set<object>): string | undefined {
  switch (typeof value) {
    case 'function':
      return 'is a function';
    case 'symbol':
      return 'is a symbol';
    case 'bigint':
      return value > 0xffffffffffffffffn || value < -0x8000000000000000n ? 'is a bigint wider than 64 bits' : undefined;
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null || ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return undefined;
  if (seen.has(value)) return 'refers back to itself (a cycle)';
  seen.add(value);
  let problem: string | undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      // Primitives are the common case: skip the call.
      if (isPlain(item)) continue;
      if ((problem = findProblem(item, path, seen))) {
        path.push(`[${i}]`);
        break;
      }
    }
  } else if (value instanceof Map) {
    for (const [k, v] of value) {
      if ((problem = findProblem(k, path, seen))) {
        path.push('.<key>');
        break;
      }
      if ((problem = findProblem(v, path, seen))) {
        path.push(`.get(${String(k)})`);
        break;
      }
    }
  } else if (value instanceof Set) {
    for (const v of value) {
      if ((problem = findProblem(v, path, seen))) {
        path.push('.<member>');
        break;
      }
    }
  } else {
    for (const k in value) {
      if ((problem = findProblem((value as Record<string, unknown>)[k], path, seen))) {
        path.push(`.${k}`);
        break;
      }
    }
  }
  seen.delete(value);
  return problem;
}

/** `what` is only called when there is something to report. */
function isPlain(value: unknown): boolean {
  return typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol' && typeof value !== 'bigint';
}

export function assertEncodable(value: unknown, what: () => string, context: () => Record<string, unknown>): void {
  if (isPlain(value)) return;
  // Tuples of primitives ([word, count]) are the usual output: check them without allocating.
  if (Array.isArray(value) && value.length <= 8 && value.every(isPlain)) return;
  const problem = encodingProblem(value);
  if (problem) throw new EncodingError(`${what()} cannot be stored: ${problem.replace('$', 'the value')}`, context());
}
