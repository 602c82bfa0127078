import * as lmdb from 'lmdb';

// Exported by lmdb-js at run time, missing from its type declarations.
const keyValueToBuffer = (lmdb as unknown as { keyValueToBuffer(key: unknown): Uint8Array }).keyValueToBuffer;

const M = 0x5bd1e995;

/** One 4-byte round of murmur2: the hash so far with the little-endian word `k` mixed in. */
function mixWord(h: number, k: number): number {
  k = Math.imul(k, M);
  k ^= k >>> 24;
  k = Math.imul(k, M);
  return Math.imul(h, M) ^ k;
}

/** The last 1–3 bytes (`tail`, little-endian, `bytes` of them) and the final avalanche. */
function finish(h: number, tail: number, bytes: number): number {
  if (bytes > 0) h = Math.imul(h ^ tail, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * Kafka's murmur2 (the Java client's `Utils.murmur2`), so that a topic keyed by the same
 * string key is co-partitioned with the state: record key k in topic partition p lands in
 * state partition p when both have the same count.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = 0x9747b28c ^ length;
  const tail = length & ~3;
  for (let i = 0; i < tail; i += 4) h = mixWord(h, data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
  let last = 0;
  for (let i = length - 1; i >= tail; i--) last = (last << 8) | data[i];
  return finish(h, last, length & 3);
}

/**
 * murmur2 of an ASCII string's bytes, read straight from its char codes (an ASCII string's
 * UTF-8 is its char codes): no encoding, no buffer. Undefined when a char is not ASCII.
 * partitioner.test pins it to murmur2 of the UTF-8.
 */
export function murmur2Ascii(text: string): number | undefined {
  const length = text.length;
  let h = 0x9747b28c ^ length;
  const tail = length & ~3;
  for (let i = 0; i < tail; i += 4) {
    const a = text.charCodeAt(i);
    const b = text.charCodeAt(i + 1);
    const c = text.charCodeAt(i + 2);
    const d = text.charCodeAt(i + 3);
    if ((a | b | c | d) > 0x7f) return undefined;
    h = mixWord(h, a | (b << 8) | (c << 16) | (d << 24));
  }
  let last = 0;
  for (let i = length - 1; i >= tail; i--) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) return undefined;
    last = (last << 8) | c;
  }
  return finish(h, last, length & 3);
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
  /**
   * The partition of a string key whose murmur2 (of its UTF-8) the caller has already
   * computed: the router's key table probes by that hash, so a new key is not hashed twice.
   * Only a partitioner that routes strings by murmur2 has it.
   */
  partitionOfMurmur2?(hash: number, numPartitions: number): number;
}

/** Kafka's `toPositive(hash) % n`. */
const partitionOfHash = (hash: number, numPartitions: number): number => (hash & 0x7fffffff) % numPartitions;

/** Kafka's default partitioner for keyed records: `toPositive(murmur2(bytes)) % n`. */
export const murmur2Partitioner: Partitioner = {
  name: 'murmur2',
  partition(key, numPartitions) {
    // Most keys are ASCII words or ids: hashed without encoding them first.
    return partitionOfHash((typeof key === 'string' ? murmur2Ascii(key) : undefined) ?? murmur2(keyBytes(key)), numPartitions);
  },
  partitionOfMurmur2: partitionOfHash,
};
