import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { BatchCache } from '../../../src/storage/partition/batch-cache.js';
import { decodeEntry, encodeEntry } from '../../../src/storage/codec.js';
import { LmdbStateMap, type StateMap } from '../../../src/storage/partition/state-map.js';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

/** The real LMDB state map, counting what reaches it. */
function countingMap(map: StateMap<number>) {
  const calls = { get: 0, put: 0, remove: 0 };
  const counting: StateMap<number> = {
    get: (k) => (calls.get++, map.get(k)),
    put: (k, v, w) => (calls.put++, map.put(k, v, w)),
    remove: (k) => (calls.remove++, map.remove(k)),
  };
  return { counting, calls };
}

/** The real time index, counting its writes. */
class CountingIndex extends TimeIndex {
  adds = 0;
  removes = 0;
  override add(time: number, key: unknown): void {
    this.adds++;
    super.add(time, key);
  }
  override remove(time: number, key: unknown): void {
    this.removes++;
    super.remove(time, key);
  }
}

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
    const { counting, calls } = countingMap(map);
    const cache = new BatchCache<number>(counting, index);
    for (let i = 0; i < 100; i++) cache.put('hot', (cache.get('hot')?.[0] ?? 0) + 1, 200);
    assert.equal(calls.get, 1);
    store.env.transactionSync(() => cache.flush());
    assert.equal(calls.put, 1);
    assert.deepEqual(map.get('hot'), [105, 200]);
    assert.deepEqual([...index.olderThan(1000)], [[200, 'hot']], 'the index moved with the key: the old time is gone');
  });

  it('removing a key removes its index entry; keys only read are not written', () => {
    store.env.transactionSync(() => {
      map.put('kept', encodeEntry(7, 150));
      index.add(150, 'kept');
    });
    const { counting, calls } = countingMap(map);
    const countingIndex = new CountingIndex(store);
    const cache = new BatchCache<number>(counting, countingIndex);
    cache.remove('hot');
    assert.deepEqual(cache.get('kept'), [7, 150], 'a stored key, only read');
    assert.equal(cache.get('never-there'), undefined, 'an absent key, only read');
    assert.equal(cache.keyCountDelta, -1);
    store.env.transactionSync(() => cache.flush());
    assert.deepEqual(calls, { get: 3, put: 0, remove: 1 }, 'one removal reached LMDB, no write');
    assert.deepEqual([countingIndex.adds, countingIndex.removes], [0, 1], "only the removed key's index entry changed");
    assert.equal(map.get('hot'), undefined);
    assert.deepEqual(map.get('kept'), [7, 150]);
    assert.deepEqual([...index.olderThan(1000)], [[150, 'kept']]);
    store.env.transactionSync(() => {
      map.remove('kept');
      index.remove(150, 'kept');
    });
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
  it("hands out what it changes before its commit (a cluster's replicas get it): each changed key with its entry, a removal as null, and no key created and removed again within it", () => {
    store.env.transactionSync(() => {
      map.put('gone', encodeEntry(1, 100));
      map.put('only-read', encodeEntry(2, 100));
    });
    const cache = new BatchCache<number>(map, index);
    cache.put('new', 3, 200);
    cache.remove('gone');
    cache.put('brief', 4, 200);
    cache.remove('brief');
    assert.deepEqual(cache.get('only-read'), [2, 100]);
    cache.prepare(() => undefined);
    const { keys, entries } = cache.changes();
    assert.deepEqual(keys, ['new', 'gone']);
    assert.deepEqual(entries.map((entry) => (entry === null ? null : decodeEntry<number>(entry))), [[3, 200], null]);
    store.env.transactionSync(() => {
      map.remove('gone');
      map.remove('only-read');
    });
  });

  it('a key written again at the time its entry already has keeps its index entry: it still times out', () => {
    store.env.transactionSync(() => {
      map.put('steady', encodeEntry(1, 400));
      index.add(400, 'steady');
    });
    const cache = new BatchCache<number>(map, index);
    cache.put('steady', 2, 400);
    store.env.transactionSync(() => cache.flush());
    assert.deepEqual(map.get('steady'), [2, 400]);
    assert.deepEqual([...index.olderThan(1000)].filter(([, key]) => key === 'steady'), [[400, 'steady']], 'the key still times out');
    store.env.transactionSync(() => {
      map.remove('steady');
      index.remove(400, 'steady');
    });
  });
});
