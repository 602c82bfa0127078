import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { BatchCache } from '../../../src/storage/partition/batch-cache.js';
import { encodeEntry } from '../../../src/storage/codec.js';
import { LmdbStateMap, type StateMap } from '../../../src/storage/partition/state-map.js';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

describe('BatchCache over LMDB', () => {
  const store = openPartitionStore(tempDir());
  const map = new LmdbStateMap<number>(store);
  const index = new TimeIndex(store);
  after(() => store.env.close());

  it('reads a key from LMDB once per batch however often it is touched, and writes it once', () => {
    store.env.transactionSync(() => {
      map.put('hot', encodeEntry(5, 100));
      index.add(100, 'hot');
    });
    let reads = 0;
    let writes = 0;
    const counting: StateMap<number> = {
      get: (k) => (reads++, map.get(k)),
      put: (k, v) => (writes++, map.put(k, v)),
      remove: (k) => map.remove(k),
    };
    const cache = new BatchCache<number>(counting, index);
    for (let i = 0; i < 100; i++) cache.put('hot', (cache.get('hot')?.[0] ?? 0) + 1, 200);
    assert.equal(reads, 1);
    store.env.transactionSync(() => cache.flush());
    assert.equal(writes, 1);
    assert.deepEqual(map.get('hot'), [105, 200]);
    assert.deepEqual([...index.olderThan(1000)], [[200, 'hot']], 'the index moved with the key: the old time is gone');
  });

  it('removing a key removes its index entry; keys only read are not written', () => {
    const cache = new BatchCache<number>(map, index);
    cache.remove('hot');
    cache.get('never-there');
    assert.equal(cache.keyCountDelta, -1);
    store.env.transactionSync(() => cache.flush());
    assert.equal(map.get('hot'), undefined);
    assert.deepEqual([...index.olderThan(1000)], []);
  });

  it('keeps array keys apart from string keys that look like them', () => {
    const cache = new BatchCache<number>(map, index);
    cache.put(['a', 1], 1, 300);
    cache.put('["a",1]', 2, 300);
    assert.equal(cache.keyCountDelta, 2);
    store.env.transactionSync(() => cache.flush());
    assert.deepEqual(map.get(['a', 1]), [1, 300]);
    assert.deepEqual(map.get('["a",1]'), [2, 300]);
  });
});
