import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as lmdb from 'lmdb';
import { Partitioners } from 'kafkajs';
import { murmur2, murmur2Partitioner } from '../../src/index.js';
import { murmur2Ascii } from '../../src/engine/partitioner.js';

// Exported by lmdb-js at run time, missing from its type declarations.
const keyValueToBuffer = (lmdb as unknown as { keyValueToBuffer(key: unknown): Uint8Array }).keyValueToBuffer;
const utf8 = (s: string) => new TextEncoder().encode(s);
const hex = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));
const toPositive = (n: number) => n & 0x7fffffff;

describe('murmur2 partitioner', () => {
  it("matches Kafka's Utils.murmur2 on its own test vectors, for strings and raw bytes", () => {
    const vectors: Array<[string | Uint8Array, number]> = [
      // Kafka's UtilsTest.testMurmur2
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      [Uint8Array.from([0x61, 0x62, 0x63]), 479470107],
      // Kafka's Utils.murmur2 as other clients pin it (every tail length 1..3 and none)
      ['1', -1993445489],
      ['12', 126087238],
      ['123', -267702483],
      ['1234', -1614185708],
      ['12345', -1188365604],
    ];
    for (const [input, expected] of vectors) {
      assert.equal(murmur2(typeof input === 'string' ? utf8(input) : input), expected, JSON.stringify(typeof input === 'string' ? input : [...input]));
    }
  });

  it('hashes an ASCII string from its char codes exactly as murmur2 hashes its UTF-8, and leaves any other string to murmur2', () => {
    const ascii = ['', '1', '12', '123', '1234', '12345', 'foobar', 'a-little-bit-longer-string', '~\x7f\x00 z'];
    for (let length = 0; length < 40; length++) ascii.push(Array.from({ length }, (_, i) => String.fromCharCode((i * 37 + length * 11) % 128)).join(''));
    for (const text of ascii) assert.equal(murmur2Ascii(text), murmur2(utf8(text)), JSON.stringify(text));
    // A non-ASCII char anywhere (a 4-byte group, the tail) is not hashed here: its UTF-8 is not its char code.
    for (const text of ['é', 'abcé', 'abcdé', 'éabcdefg', 'abcdefgé', 'ab\u0080', '日本語のキー']) {
      assert.equal(murmur2Ascii(text), undefined, JSON.stringify(text));
      assert.equal(murmur2Partitioner.partition(text, 7), toPositive(murmur2(utf8(text))) % 7, JSON.stringify(text));
    }
  });

  it("places string keys where Kafka's default partitioner (kafkajs's Java-compatible one) places them, for any count", () => {
    const kafka = Partitioners.DefaultPartitioner();
    // Long keys of 2- and 3-byte chars about the size of the encoder's scratch buffer (4 KiB):
    // the largest that fit encode there, the rest on their own.
    const long = ['é'.repeat(2048), 'é'.repeat(3000), '日'.repeat(1365), '日'.repeat(1366), '日'.repeat(2000)];
    const keys = ['foobar', 'a', 'AAAA', 'user-17', ...long, '日本語のキー', ...Array.from({ length: 200 }, (_, i) => `w${i}`)];
    for (const n of [1, 3, 8, 32]) {
      const partitionMetadata = Array.from({ length: n }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1] }));
      for (const key of keys) {
        const expected = kafka({ topic: 't', partitionMetadata, message: { key, value: null } });
        assert.equal(murmur2Partitioner.partition(key, n), expected, `${JSON.stringify(key.slice(0, 20))} of ${n}`);
        // The router's key table hands over the hash it probed with: the same partition.
        const hash = murmur2Ascii(key);
        if (hash !== undefined) assert.equal(murmur2Partitioner.partitionOfMurmur2!(hash, n), expected, `${key} of ${n}, from its hash`);
      }
    }
    assert.equal(murmur2Partitioner.partition('foobar', 8), toPositive(-790332482) % 8);
  });

  it("hashes numbers, booleans and tuples by LMDB's key encoding, to pinned partitions", () => {
    // The bytes are LMDB's key encoding (ordered-binary), as the stores keep the keys: if that
    // encoding changed, stored keys would no longer sit where the router sends them.
    const pinned: Array<[unknown, string, number, number[]]> = [
      // key, its encoding, murmur2 of it, partition of 2, 3, 8, 16, 32
      [12345, '140c81c8', 1475245596, [0, 0, 4, 12, 28]],
      [-7, '0bfe3ffffffffffff0', -400230282, [0, 2, 6, 6, 22]],
      [1.5, '13ff8000', -902254440, [0, 2, 0, 8, 24]],
      [true, '07', 493069161, [1, 0, 1, 9, 9]],
      [false, '06', 689762013, [1, 0, 5, 13, 29]],
      [['user', 7], '75736572001401c0000000000000', 228478086, [0, 0, 6, 6, 6]],
      [['region', 3], '726567696f6e00140080000000000000', -329884659, [1, 2, 5, 13, 13]],
      [['a', 'b'], '610062', -19837367, [1, 0, 1, 9, 9]],
    ];
    for (const [key, encoding, hash, partitions] of pinned) {
      const what = JSON.stringify(key);
      assert.equal(Buffer.from(keyValueToBuffer(key)).toString('hex'), encoding, `${what}: LMDB's key encoding`);
      assert.equal(murmur2(hex(encoding)), hash, `${what}: murmur2 of its encoding`);
      assert.deepEqual([2, 3, 8, 16, 32].map((n) => murmur2Partitioner.partition(key, n)), partitions, `${what}: partitions`);
      for (const n of [2, 3, 8, 16, 32]) assert.equal(murmur2Partitioner.partition(key, n), toPositive(hash) % n, `${what} of ${n}`);
    }
  });

  it('spreads keys of every kind over every partition', () => {
    const kinds: Record<string, unknown[]> = {
      strings: Array.from({ length: 400 }, (_, i) => `key-${i}`),
      numbers: Array.from({ length: 400 }, (_, i) => i * 7 - 1000),
      tuples: Array.from({ length: 400 }, (_, i) => ['user', i]),
    };
    for (const [kind, keys] of Object.entries(kinds)) {
      const seen = new Set(keys.map((k) => murmur2Partitioner.partition(k, 8)));
      assert.equal(seen.size, 8, `${kind} reach all 8 partitions`);
    }
  });
});
