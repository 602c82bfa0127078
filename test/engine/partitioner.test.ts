import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { murmur2, murmur2Partitioner } from '../../src/index.js';

describe('murmur2 partitioner', () => {
  it("matches Kafka's Utils.murmur2 test vectors", () => {
    const vectors: Array<[string | number[], number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      [[0x61, 0x62, 0x63], 479470107],
    ];
    for (const [input, expected] of vectors) {
      const bytes = typeof input === 'string' ? new TextEncoder().encode(input) : Uint8Array.from(input);
      assert.equal(murmur2(bytes), expected, JSON.stringify(input));
    }
  });

  it("places string keys where Kafka's default partitioner places them, for any count", () => {
    for (const n of [1, 3, 8, 32]) {
      assert.equal(murmur2Partitioner.partition('foobar', n), (-790332482 & 0x7fffffff) % n);
    }
    const long = 'é'.repeat(3000);
    assert.equal(murmur2Partitioner.partition(long, 7), (murmur2(new TextEncoder().encode(long)) & 0x7fffffff) % 7);
  });

  it('is stable for non-string keys', () => {
    assert.equal(murmur2Partitioner.partition(['a', 1], 16), murmur2Partitioner.partition(['a', 1], 16));
    assert.ok(murmur2Partitioner.partition(12345, 16) < 16);
  });
});
