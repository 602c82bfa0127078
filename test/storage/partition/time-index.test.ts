import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

describe('TimeIndex', () => {
  const store = openPartitionStore(tempDir());
  const index = new TimeIndex(store);
  after(() => store.env.close());

  it('returns exactly the keys older than the threshold, oldest first, whatever else it holds', () => {
    store.env.transactionSync(() => {
      for (let i = 0; i < 1000; i++) index.add(10_000, `fresh-${i}`);
      index.add(300, 'c');
      index.add(100, 'a');
      index.add(200, ['tuple', 2]);
      index.add(300, 'b');
    });
    assert.deepEqual([...index.olderThan(300)], [[100, 'a'], [200, ['tuple', 2]]]);
    assert.deepEqual([...index.olderThan(301)].map(([, k]) => k), ['a', ['tuple', 2], 'b', 'c']);
    assert.deepEqual([...index.olderThan(100)], []);
  });

  it('reads only the expired front: stopping early never touches the rest', () => {
    const first = index.olderThan(Number.MAX_SAFE_INTEGER).next();
    assert.deepEqual(first.value, [100, 'a']);
  });

  it('removes an entry by its time and key', () => {
    store.env.transactionSync(() => index.remove(100, 'a'));
    assert.deepEqual([...index.olderThan(201)], [[200, ['tuple', 2]]]);
  });
});
