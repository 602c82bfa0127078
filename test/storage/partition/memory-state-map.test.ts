import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { encodeEntry } from '../../../src/storage/codec.js';
import { LmdbStateMap } from '../../../src/storage/partition/state-map.js';
import { LoggedStateMap } from '../../../src/storage/partition/logged-state-map.js';
import { MemoryStateMap } from '../../../src/storage/partition/memory-state-map.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

/** The LMDB map with its reads counted, so a test sees which reads memory answered. */
function countingLmdb(store: ReturnType<typeof openPartitionStore>) {
  const lmdb = new LmdbStateMap<unknown>(store);
  const counted = Object.assign(Object.create(lmdb) as LmdbStateMap<unknown>, {
    reads: 0,
    getEncoded(key: unknown) {
      counted.reads++;
      return lmdb.getEncoded(key);
    },
  });
  return counted;
}

function commit(store: ReturnType<typeof openPartitionStore>, memory: MemoryStateMap<unknown>, writes: Array<[unknown, unknown, number] | [unknown]>, previous = new Map<unknown, ReturnType<MemoryStateMap['get']>>()): void {
  store.env.transactionSync(() => {
    for (const w of writes) {
      if (w.length === 1) memory.remove(w[0]);
      else memory.put(w[0], encodeEntry(w[1], w[2]), { key: w[0], state: w[1], time: w[2], original: previous.get(w[0]) });
    }
  });
  memory.committed();
}

describe('MemoryStateMap: a partition state in memory over LMDB', () => {
  const stores: Array<ReturnType<typeof openPartitionStore>> = [];
  after(() => stores.forEach((s) => s.env.close()));
  const open = () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    return store;
  };

  it('reads a key from LMDB once, then from memory; a store that was empty is never asked for missing keys', () => {
    const store = open();
    const lmdb = countingLmdb(store);
    const memory = new MemoryStateMap(lmdb, 100);
    memory.checkComplete(0);
    assert.equal(memory.get('nothing'), undefined);
    assert.equal(lmdb.reads, 0, 'an empty store: memory holds every key it has (none)');
    commit(store, memory, [['a', 1, 10]]);
    assert.deepEqual(memory.get('a'), [1, 10]);
    assert.equal(lmdb.reads, 0);

    // A store that already held keys: the first read of each goes to LMDB.
    const later = new MemoryStateMap(countingLmdb(store), 100);
    const reads = () => (later as unknown as { durable: { reads: number } }).durable.reads;
    later.checkComplete(1);
    assert.deepEqual(later.get('a'), [1, 10]);
    assert.equal(reads(), 1);
    assert.deepEqual(later.get('a'), [1, 10]);
    assert.equal(reads(), 1, 'the second read is served from memory');
    later.checkComplete(1);
    assert.equal(later.get('b'), undefined);
    assert.equal(reads(), 1, 'memory now holds every stored key: a missing key is missing from the store');
  });

  it('writes reach memory only when their transaction commits', () => {
    const store = open();
    const memory = new MemoryStateMap(new LmdbStateMap(store), 100);
    commit(store, memory, [['k', 1, 10]]);
    assert.throws(() =>
      store.env.transactionSync(() => {
        memory.put('k', encodeEntry(2, 20), { key: 'k', state: 2, time: 20, original: memory.get('k') });
        throw new Error('the batch failed before its commit');
      }),
      /the batch failed before its commit/,
    );
    memory.aborted();
    assert.deepEqual(memory.get('k'), [1, 10], 'memory kept what LMDB kept');
    assert.deepEqual(new LmdbStateMap(store).get('k'), [1, 10]);
    // The next batch's commit, of another key, must not bring the aborted write in with it.
    commit(store, memory, [['other', 5, 30]]);
    assert.deepEqual(memory.get('k'), [1, 10], 'a write of the aborted transaction reached memory at the next commit');
    commit(store, memory, [['k']]);
    assert.equal(memory.get('k'), undefined);
    assert.equal(new LmdbStateMap(store).get('k'), undefined);
  });

  it('an object state is held as bytes: changing the object handed out does not change what memory holds', () => {
    const store = open();
    const memory = new MemoryStateMap(new LmdbStateMap(store), 100);
    commit(store, memory, [['s', { pages: ['home'] }, 10]]);
    const first = memory.get('s') as [{ pages: string[] }, number];
    first[0].pages.push('changed without update()');
    assert.deepEqual(memory.get('s'), [{ pages: ['home'] }, 10]);
    // A primitive replaced by an object and back, through the in-place path.
    const previous = new Map([['n', memory.get('n')]]);
    commit(store, memory, [['n', 5, 10]], previous);
    commit(store, memory, [['n', { big: true }, 20]], new Map([['n', memory.get('n')]]));
    assert.deepEqual(memory.get('n'), [{ big: true }, 20]);
    commit(store, memory, [['n', 7, 30]], new Map([['n', memory.get('n')]]));
    assert.deepEqual(memory.get('n'), [7, 30]);
    assert.deepEqual(new LmdbStateMap(store).get('n'), [7, 30]);
  });

  it("an object state read from LMDB keeps bytes of its own, not lmdb-js's read buffer that the next read overwrites", () => {
    const store = open();
    // As a run before this one (or another owner) left the store: nothing of it in memory.
    store.env.transactionSync(() => {
      store.state.putSync('a', encodeEntry({ n: 1 }, 10));
      store.state.putSync('b', encodeEntry({ n: 2, more: 'bytes' }, 20));
    });
    for (const durable of [new LmdbStateMap(store), new LoggedStateMap(store)]) {
      const memory = new MemoryStateMap(durable, 100);
      memory.checkComplete(2);
      assert.deepEqual(memory.get('a'), [{ n: 1 }, 10]);
      assert.deepEqual(memory.get('b'), [{ n: 2, more: 'bytes' }, 20]);
      assert.deepEqual(memory.get('a'), [{ n: 1 }, 10], 'served from memory, after another read');
    }
  });

  it('an object state read from LMDB and changed in place by its reader is not changed in memory', () => {
    const store = open();
    store.env.transactionSync(() => store.state.putSync('a', encodeEntry({ n: 1 }, 10)));
    const memory = new MemoryStateMap(new LmdbStateMap(store), 100);
    const read = memory.get('a') as [{ n: number }, number];
    read[0].n = 99;
    assert.deepEqual(memory.get('a'), [{ n: 1 }, 10], 'memory holds what LMDB holds');
  });

  it('a key in the old generation when its batch commits is updated or removed there too: no stale copy is left', () => {
    for (const change of ['remove', 'update then remove'] as const) {
      const store = open();
      // A bound of 4: two keys a generation.
      const memory = new MemoryStateMap(new LmdbStateMap(store), 4);
      commit(store, memory, [['a', { v: 1 }, 10], ['b', { v: 1 }, 10]]);
      // Written by an earlier run: in LMDB, not in memory.
      store.env.transactionSync(() => store.state.putSync('c', encodeEntry({ v: 1 }, 10)));
      // The batch reads a, then c, whose read turns the generations: a is in the old one at the commit.
      const original = memory.get('a');
      assert.deepEqual(memory.get('c'), [{ v: 1 }, 10]);
      if (change === 'remove') {
        commit(store, memory, [['a']]);
      } else {
        commit(store, memory, [['a', { v: 2 }, 20]], new Map([['a', original]]));
        assert.deepEqual(memory.get('a'), [{ v: 2 }, 20], change);
        assert.ok(memory.size <= 3, `${change}: memory holds ${memory.size} entries for the 3 stored keys`);
        commit(store, memory, [['a']]);
      }
      assert.equal(memory.get('a'), undefined, `${change}: the removed key is gone from memory`);
      assert.equal(new LmdbStateMap(store).get('a'), undefined);
    }
  });

  it('an object state updated while its generation is full is held once, and gone once removed', () => {
    const store = open();
    const memory = new MemoryStateMap(new LmdbStateMap(store), 4);
    commit(store, memory, [['a', { v: 1 }, 10], ['b', { v: 1 }, 10]]);
    commit(store, memory, [['a', { v: 2 }, 20]], new Map([['a', memory.get('a')]]));
    assert.deepEqual(memory.get('a'), [{ v: 2 }, 20]);
    assert.equal(memory.size, 2, 'a and b, each once');
    commit(store, memory, [['a']]);
    assert.equal(memory.get('a'), undefined, 'a removed key is not served');
  });

  it('a key read from the old generation moves to the young one: a key that is only read stays while it is read', () => {
    const store = open();
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    store.env.transactionSync(() => keys.forEach((k, i) => store.state.putSync(k, encodeEntry(i, 1))));
    const lmdb = countingLmdb(store);
    const memory = new MemoryStateMap(lmdb, 10);
    memory.checkComplete(40);
    let k0 = 0;
    for (let round = 0; round < 8; round++) {
      const before = lmdb.reads;
      memory.get('k0');
      k0 += lmdb.reads - before;
      for (let j = 0; j < 4; j++) memory.get(`k${1 + round * 4 + j}`);
    }
    assert.equal(k0, 1, 'k0, read in every round among four new keys, was read from LMDB once');
  });

  it('keeps at most its bound, evicting keys not read since, and then reads them from LMDB again', () => {
    for (const bound of [1, 2, 3, 10]) {
      const store = open();
      const lmdb = countingLmdb(store);
      const memory = new MemoryStateMap(lmdb, bound);
      commit(store, memory, Array.from({ length: 40 }, (_, i) => [`k${i}`, i, 1] as [string, number, number]));
      assert.ok(memory.size <= bound, `memory holds ${memory.size} entries, over its bound of ${bound}`);
      for (let i = 0; i < 40; i++) {
        assert.deepEqual(memory.get(`k${i}`), [i, 1], `k${i} reads back (bound ${bound})`);
        assert.ok(memory.size <= bound, `after reading k${i}, memory holds ${memory.size} entries, over its bound of ${bound}`);
      }
      assert.ok(lmdb.reads >= 40 - bound, `evicted keys are read from LMDB (${lmdb.reads} reads, bound ${bound})`);
      // Every stored key was read once, but memory could not keep them all: it is not complete.
      memory.checkComplete(40);
      assert.deepEqual(memory.get('k0'), [0, 1], `k0 is read from LMDB again (bound ${bound})`);
    }
  });

  it('once full, keeps the keys in use rather than a run of new keys written once, which enter memory when read', () => {
    const store = open();
    const lmdb = countingLmdb(store);
    const memory = new MemoryStateMap(lmdb, 10);
    // Keys in use: within half the bound, what the two generations keep for sure.
    const hot = Array.from({ length: 4 }, (_, i) => `hot${i}`);
    commit(store, memory, hot.map((k) => [k, 1, 1] as [string, number, number]));
    for (let batch = 2; batch <= 4; batch++) {
      const previous = new Map(hot.map((k) => [k, memory.get(k)]));
      commit(store, memory, hot.map((k) => [k, batch, batch] as [string, number, number]), previous);
    }
    // A backfill: 50 keys the store never held, written once.
    for (let i = 0; i < 50; i += 10) commit(store, memory, Array.from({ length: 10 }, (_, j) => [`new${i + j}`, 0, 5] as [string, number, number]));
    assert.ok(memory.size <= 10, `memory holds ${memory.size} entries, over its bound of 10`);
    const before = lmdb.reads;
    for (const k of hot) assert.deepEqual(memory.get(k), [4, 4], k);
    assert.equal(lmdb.reads, before, 'the hot keys were all still in memory');
    // The new keys are stored; read, they come from LMDB once, then from memory.
    assert.deepEqual(memory.get('new7'), [0, 5]);
    assert.equal(lmdb.reads, before + 1);
    assert.deepEqual(memory.get('new7'), [0, 5]);
    assert.equal(lmdb.reads, before + 1, 'read once, kept');
  });

  it('with a bound of 1, the one key in use stays while each batch writes a new key', () => {
    const store = open();
    const lmdb = countingLmdb(store);
    const memory = new MemoryStateMap(lmdb, 1);
    commit(store, memory, [['h', 1, 1]]);
    for (let batch = 2; batch <= 6; batch++) {
      const previous = new Map([['h', memory.get('h')]]);
      commit(store, memory, [['h', batch, batch], [`new${batch}`, 0, batch]], previous);
      assert.ok(memory.size <= 1, `memory holds ${memory.size} entries`);
    }
    const before = lmdb.reads;
    for (let batch = 7; batch <= 9; batch++) {
      const previous = new Map([['h', memory.get('h')]]);
      commit(store, memory, [['h', batch, batch], [`new${batch}`, 0, batch]], previous);
    }
    assert.deepEqual(memory.get('h'), [9, 9]);
    assert.equal(lmdb.reads, before, 'h was served from memory in every batch: the new keys waited for a read');
    assert.deepEqual(memory.get('new8'), [0, 8], 'a new key is in LMDB');
  });

  it('tuple keys and string keys that look like them are held apart', () => {
    const store = open();
    const memory = new MemoryStateMap(new LmdbStateMap(store), 100);
    commit(store, memory, [[['a', 1], 1, 1], ['["a",1]', 2, 1]]);
    assert.deepEqual(memory.get(['a', 1]), [1, 1]);
    assert.deepEqual(memory.get('["a",1]'), [2, 1]);
  });
  it('names the keys it holds updated since a time, for the warm-up hint: the young generation\'s first, so a limit keeps those read last', () => {
    const store = open();
    store.env.transactionSync(() => {
      for (const [key, time] of [['a', 1], ['b', 5], ['c', 5], ['d', 5]] as const) store.state.putSync(key, encodeEntry(0, time));
    });
    const memory = new MemoryStateMap(new LmdbStateMap<unknown>(store), 4);
    // Read in turn: a and b fill the young generation (half the bound); c turns it old.
    for (const key of ['a', 'b', 'c', 'd']) memory.get(key);
    assert.deepEqual(memory.keysUpdatedSince(0, 2), ['c', 'd']);
    assert.deepEqual(memory.keysUpdatedSince(0, 3), ['c', 'd', 'a']);
    assert.deepEqual(memory.keysUpdatedSince(5, 10), ['c', 'd', 'b'], 'a, last updated at 1, is older');
  });
  it('over the change log: a logged batch read back after memory let the key go comes from the log, as committed', () => {
    const store = open();
    const memory = new MemoryStateMap(new LoggedStateMap<unknown>(store), 2);
    // A state large enough that each batch of one change is logged, not written in place.
    const batch = (batchTime: number, writes: Array<[string, number]>) => {
      store.env.transactionSync(() => {
        for (const [key, value] of writes) memory.put(key, encodeEntry(value, batchTime), { key, state: value, time: batchTime, original: undefined });
        memory.endBatch(batchTime, 1_000_000);
      });
      memory.committed();
    };
    batch(1000, [['a', 1]]);
    batch(2000, [['b', 2]]);
    assert.equal(store.state.getBinary('a'), undefined, 'a is only in the log');
    // Memory holds at most 2: reading others lets a go.
    store.env.transactionSync(() => {
      for (const key of ['x', 'y', 'z']) store.state.putSync(key, encodeEntry(0, 1));
    });
    for (const key of ['x', 'y', 'z']) memory.get(key);
    assert.deepEqual(memory.get('a'), [1, 1000]);
    assert.deepEqual(memory.get('b'), [2, 2000]);
  });
  it('over the change log: the writes of a batch that failed before its commit do not come in with the next batch', () => {
    const store = open();
    const memory = new MemoryStateMap(new LoggedStateMap<unknown>(store), 100);
    const batch = (batchTime: number, writes: Array<[string, number]>, fail = false) => {
      store.env.transactionSync(() => {
        for (const [key, value] of writes) memory.put(key, encodeEntry(value, batchTime), { key, state: value, time: batchTime, original: undefined });
        memory.endBatch(batchTime, 1_000_000);
        if (fail) throw new Error('the batch failed before its commit');
      });
      memory.committed();
    };
    batch(1000, [['a', 1]]);
    assert.throws(() => batch(2000, [['a', 99], ['gone', 99]], true), /failed before its commit/);
    memory.aborted();
    batch(3000, [['b', 3]]);
    // What the store holds, read afresh (the next start), and through memory.
    const afresh = new LoggedStateMap<unknown>(store);
    assert.deepEqual([afresh.get('a'), afresh.get('gone'), afresh.get('b')], [[1, 1000], undefined, [3, 3000]]);
    assert.deepEqual(memory.get('a'), [1, 1000]);
    assert.equal(memory.get('gone'), undefined);
  });
});
