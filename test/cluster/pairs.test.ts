import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MESSAGE_BYTES, pairMessagesPerBatch, PairBundler, PAIRS_PER_MESSAGE, readPairs, type TaggedPair } from '../../src/cluster/pairs.js';

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

  it('of large values are cut in order into messages a broker takes (max.message.bytes 1 MiB by default), a pair larger than that alone', () => {
    const bundler = new PairBundler();
    const large = (i: number, bytes: number): TaggedPair => ({ key: `k${i}`, value: 'v'.repeat(bytes), origin: { topic: 't', partition: 0, offset: i, n: 0 } });
    const pairs = [...Array.from({ length: PAIRS_PER_MESSAGE }, (_, i) => large(i, 2100)), large(PAIRS_PER_MESSAGE, MESSAGE_BYTES + 10)];
    for (const p of pairs) bundler.add(p);
    const values = bundler.finish();
    assert.ok(values.length > 2, `${values.length} messages`);
    for (const v of values.slice(0, -1)) assert.ok(v.length <= MESSAGE_BYTES, `a message of ${v.length} bytes`);
    assert.equal(readPairs(values.at(-1)!).length, 1, 'the pair larger than a message goes alone');
    assert.deepEqual(values.flatMap((v) => readPairs(v)), pairs);
  });

  it('make no message when there is no pair', () => {
    assert.deepEqual(new PairBundler().finish(), []);
  });
});

describe('maxPairsPerBatch in repartition messages', () => {
  it('a batch takes as many whole messages as keep it within the bound, and at least one', () => {
    assert.deepEqual([1, 499, 500, 1000, 1499, 100_000].map(pairMessagesPerBatch), [1, 1, 1, 2, 2, 200]);
  });
});
