import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PairBundler, PAIRS_PER_MESSAGE, readPairs, type TaggedPair } from '../../src/cluster/pairs.js';

const pair = (i: number): TaggedPair => ({ key: `k${i}`, value: i % 3 === 0 ? new Map([[i, 'x']]) : i, origin: { topic: 't', partition: i % 2, offset: Math.floor(i / 2), n: i % 4 } });

describe('repartition messages', () => {
  it('bundle up to 500 pairs each and give them back in order, with their origins and value types', () => {
    const bundler = new PairBundler();
    const pairs = Array.from({ length: 2 * PAIRS_PER_MESSAGE + 7 }, (_, i) => pair(i));
    for (const p of pairs) bundler.add(p);
    const values = bundler.finish();
    assert.deepEqual(values.map((v) => readPairs(v).length), [PAIRS_PER_MESSAGE, PAIRS_PER_MESSAGE, 7]);
    assert.deepEqual(values.flatMap((v) => readPairs(v)), pairs);
  });

  it('make no message when there is no pair', () => {
    assert.deepEqual(new PairBundler().finish(), []);
  });
});
