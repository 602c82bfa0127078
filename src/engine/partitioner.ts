import * as lmdb from 'lmdb';

// Exported by lmdb-js at run time, missing from its type declarations.
const keyValueToBuffer = (lmdb as unknown as { keyValueToBuffer(key: unknown): Uint8Array }).keyValueToBuffer;

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`), so that a topic keyed by the same
 * string key is co-partitioned with the state: record key k in topic partition p lands in
 * state partition p when both have the same count.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & ~3;
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2] << 16;
    // falls through
    case 2:
      h ^= data[tail + 1] << 8;
    // falls through
    case 1:
      h ^= data[tail];
      h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

const utf8 = new TextEncoder();
const scratch = new Uint8Array(4096);

/** The bytes a key hashes as: UTF-8 for strings (what Kafka producers send), LMDB's key encoding otherwise. */
function keyBytes(key: unknown): Uint8Array {
  if (typeof key === 'string') {
    if (key.length * 3 <= scratch.length) {
      const { written } = utf8.encodeInto(key, scratch);
      return scratch.subarray(0, written);
    }
    return utf8.encode(key);
  }
  return keyValueToBuffer(key);
}

export interface Partitioner {
  readonly name: string;
  partition(key: unknown, numPartitions: number): number;
}

/**
 * murmur2 of an ASCII string's bytes, read straight from its char codes (an ASCII string's
 * UTF-8 is its char codes): no encoding, no buffer. Undefined when a char is not ASCII.
 * Same rounds as murmur2() above; partitioner.test pins the two to each other.
 */
export function murmur2Ascii(text: string): number | undefined {
  const length = text.length;
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    const a = text.charCodeAt(i4);
    const b = text.charCodeAt(i4 + 1);
    const c = text.charCodeAt(i4 + 2);
    const d = text.charCodeAt(i4 + 3);
    if ((a | b | c | d) > 0x7f) return undefined;
    let k = a | (b << 8) | (c << 16) | (d << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & ~3;
  for (let i = tail; i < length; i++) if (text.charCodeAt(i) > 0x7f) return undefined;
  switch (length & 3) {
    case 3:
      h ^= text.charCodeAt(tail + 2) << 16;
    // falls through
    case 2:
      h ^= text.charCodeAt(tail + 1) << 8;
    // falls through
    case 1:
      h ^= text.charCodeAt(tail);
      h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's default partitioner for keyed records: `toPositive(murmur2(bytes)) % n`. */
export const murmur2Partitioner: Partitioner = {
  name: 'murmur2',
  partition(key, numPartitions) {
    // Most keys are ASCII words or ids: hashed without encoding them first.
    const hash = (typeof key === 'string' ? murmur2Ascii(key) : undefined) ?? murmur2(keyBytes(key));
    return (hash & 0x7fffffff) % numPartitions;
  },
};
