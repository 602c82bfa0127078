import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { decodeEntry, encodeEntry } from '../../../src/storage/codec.js';
import { changeRecords, foldChangeLog, readEntries, readLog } from '../../../src/storage/partition/change-log.js';
import { LoggedStateMap } from '../../../src/storage/partition/logged-state-map.js';
import { openPartitionStore, type PartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';
import { testRandom } from '../../random.js';

/** Large enough that every batch is logged (100 keys a change and more). */
const LARGE = 1_000_000;

/** One batch's commit as the worker makes it: the changes staged, the batch ended, all in one transaction. */
function commit(store: PartitionStore, map: LoggedStateMap<number>, batchTime: number, changes: Array<[string, number | null]>, fail = false, keyCount = LARGE): void {
  try {
    store.env.transactionSync(() => {
      for (const [key, value] of changes) {
        if (value === null) map.remove(key);
        else map.put(key, encodeEntry(value, batchTime));
      }
      map.endBatch(batchTime, keyCount);
      if (fail) throw new Error('the batch fails before its commit');
    });
  } catch (error) {
    map.aborted();
    if (!fail) throw error;
    return;
  }
  map.committed();
}

/** The state as a reader that opened the store afresh sees it: the state database through the log. */
function stored(store: PartitionStore): Map<string, number> {
  store.env.resetReadTxn();
  return new Map([...readEntries(store)].map(([key, bytes]) => [key as string, decodeEntry<number>(bytes)[0]]));
}

describe('LoggedStateMap: the change log folded a record at a time', () => {
  const stores: PartitionStore[] = [];
  after(() => stores.forEach((s) => s.env.close()));

  it('holds what a map would, through records folded oldest first, keys changed again, removals and failed batches', (t) => {
    const random = testRandom(t);
    const store = openPartitionStore(tempDir());
    stores.push(store);
    // At most 4 records, and at most 6 logged keys (or the batch's own, when more): both limits fold.
    const map = new LoggedStateMap<number>(store, 4, 6);
    const model = new Map<string, number>();
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
    for (let batch = 1; batch <= 60; batch++) {
      const changes = new Map<string, number | null>();
      // A few keys hot (changed in most batches), the rest now and then.
      for (let i = 0, n = random.between(1, 6); i < n; i++) {
        const key = random.between(0, 3) === 0 ? keys[random.between(0, 3)] : keys[random.between(4, keys.length - 1)];
        changes.set(key, random.between(0, 4) === 0 ? null : random.between(1, 1000));
      }
      const fail = random.between(0, 9) === 0;
      commit(store, map, batch * 100, [...changes], fail);
      if (!fail) for (const [key, value] of changes) value === null ? model.delete(key) : model.set(key, value);

      const where = `after batch ${batch}${fail ? ' (failed)' : ''}, ${random.replay}`;
      assert.deepEqual(stored(store), model, `read afresh ${where}`);
      for (const key of keys) assert.equal(map.get(key)?.[0], model.get(key), `${key} through the map ${where}`);
      store.env.resetReadTxn();
      assert.ok(changeRecords(store) <= 4, `${changeRecords(store)} records ${where}`);
      const logged = readLog(store).overlay.size;
      assert.ok(logged <= Math.max(6, changes.size), `${logged} logged keys ${where}`);
      assert.equal(map.loggedKeys, logged, `the log in memory is the log in LMDB ${where}`);
      // Now and then the worker is idle between batches and folds ahead of the next commit.
      if (random.between(0, 2) === 0) {
        while (map.hasIdleWork()) map.idleWork();
        assert.deepEqual(stored(store), model, `read afresh after idle folds ${where}`);
        store.env.resetReadTxn();
        assert.ok(changeRecords(store) < 4, `${changeRecords(store)} records after idle folds ${where}`);
        assert.equal(map.loggedKeys, readLog(store).overlay.size, `the log in memory is the log in LMDB after idle folds ${where}`);
      }
      // Every few batches, the map forgets what it kept and reads the log again (another writer, a restore).
      if (batch % 7 === 0) map.reset();
    }
  });

  it('between batches, the fold the next commit would do is done on its own: the oldest record goes in place, the state unchanged', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    const map = new LoggedStateMap<number>(store, 4, 12);
    const batchKeys = (b: number) => Array.from({ length: 3 }, (_, i) => `b${b}-${i}`);
    for (let b = 1; b <= 3; b++) commit(store, map, b * 100, batchKeys(b).map((k) => [k, b]));
    assert.equal(map.hasIdleWork(), false, 'three records of four, 9 keys of 12 with room for a batch of 3');
    commit(store, map, 400, batchKeys(4).map((k) => [k, 4]));
    assert.equal(map.hasIdleWork(), true, 'four records: the next commit would fold');
    const before = stored(store);
    map.idleWork();
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 3);
    assert.deepEqual(stored(store), before);
    for (const key of batchKeys(1)) assert.equal(decodeEntry<number>(store.state.getBinary(key)!)[0], 1, `${key} in place`);
    for (const key of batchKeys(2)) assert.equal(store.state.getBinary(key), undefined, `${key} still only in the log`);
    assert.equal(map.loggedKeys, readLog(store).overlay.size);
    // 9 logged keys, and the last batch changed 3: room for one more like it.
    assert.equal(map.hasIdleWork(), false);
    commit(store, map, 500, ['b5-0', 'b5-1', 'b5-2', 'b5-3'].map((k) => [k, 5]));
    assert.equal(map.hasIdleWork(), true, '13 keys would not leave room for another batch of 4 under 12');
  });

  it('hot keys, logged by every batch, are not written in place when the logged keys near their bound', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    // Room for 10 logged keys; each batch changes the same 6.
    const map = new LoggedStateMap<number>(store, 16, 10);
    const hot = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (let batch = 1; batch <= 40; batch++) commit(store, map, batch * 100, hot.map((k) => [k, batch]));
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 16, 'the log keeps its 16 records: the 6 keys fit its bound');
    assert.equal([...store.state.getKeys({})].length, 0, 'no hot key was written in place');
    assert.deepEqual(stored(store), new Map(hot.map((k) => [k, 40])));
  });

  it('idle turns fold no more than commits would: hot keys near the bound stay in the log, and the newest record is never folded for room', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    const map = new LoggedStateMap<number>(store, 16, 10);
    const hot = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (let batch = 1; batch <= 40; batch++) {
      commit(store, map, batch * 100, hot.map((k) => [k, batch]));
      while (map.hasIdleWork()) map.idleWork();
    }
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 15, 'the oldest of 16 folded between batches, no more');
    assert.equal([...store.state.getKeys({})].length, 0, 'no hot key was written in place');
    // One batch of 12 keys: more than the bound, all in its own record, which stays.
    commit(store, map, 4100, Array.from({ length: 12 }, (_, i) => [`wide-${i}`, 1]));
    while (map.hasIdleWork()) map.idleWork();
    store.env.resetReadTxn();
    assert.ok(changeRecords(store) >= 1);
    assert.equal(store.state.getBinary('wide-0'), undefined, 'the newest record is not folded for room');
    assert.equal(map.loggedKeys, readLog(store).overlay.size);
  });

  it('an idle fold whose record someone else removed (a restore emptied the log) folds nothing and reads the log again', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    const map = new LoggedStateMap<number>(store, 2, 100);
    commit(store, map, 100, [['a', 1]]);
    commit(store, map, 200, [['b', 2]]);
    assert.equal(map.hasIdleWork(), true);
    // Another writer empties the log and writes its own value of a in place.
    store.env.transactionSync(() => {
      for (const key of [...store.changeLog.getKeys({})]) store.changeLog.removeSync(key);
      store.state.putSync('a', encodeEntry(7, 300));
    });
    map.idleWork();
    assert.equal(decodeEntry<number>(store.state.getBinary('a')!)[0], 7, 'the stale logged value of a was not written over it');
    assert.equal(map.get('a')?.[0], 7, 'the map reads the store as it is now');
    assert.equal(map.get('b'), undefined);
  });

  it('a key its oldest record changed and the folding batch changes again keeps the batch\'s value', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    const map = new LoggedStateMap<number>(store, 2, 1000);
    commit(store, map, 100, [['a', 1], ['b', 1]]);
    commit(store, map, 200, [['c', 2]]);
    // The third record folds the first: a goes in place with 1, and this batch sets it to 3.
    commit(store, map, 300, [['a', 3]]);
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 2);
    assert.equal(decodeEntry<number>(store.state.getBinary('a')!)[0], 1, 'the folded value in place');
    assert.equal(map.get('a')?.[0], 3, 'the log\'s newer value over it, in memory');
    assert.deepEqual(stored(store), new Map([['a', 3], ['b', 1], ['c', 2]]));
    // The next fold (of batch 200's record) leaves a to its own record.
    commit(store, map, 400, [['d', 4]]);
    assert.equal(map.get('a')?.[0], 3);
    assert.deepEqual(stored(store), new Map([['a', 3], ['b', 1], ['c', 2], ['d', 4]]));
  });

  it('a batch too large for the log to pay, while the log holds records, writes them and itself in place and empties the log', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    const map = new LoggedStateMap<number>(store, 4, 1000);
    commit(store, map, 100, [['a', 1], ['b', 1]]);
    commit(store, map, 200, [['c', 2]]);
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 2);
    // A store of 3 keys after a batch changing 2 of them: in place.
    commit(store, map, 300, [['a', 3], ['c', null]], false, 3);
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 0, 'no record left to overlay what went in place');
    assert.deepEqual(stored(store), new Map([['a', 3], ['b', 1]]));
    assert.equal(map.get('a')?.[0], 3);
    assert.equal(map.get('c'), undefined);
    // A map that opens the store afresh (the next start) reads the same.
    assert.equal(new LoggedStateMap<number>(store, 4, 1000).get('a')?.[0], 3);
  });
  it('a batch logged after one written in place is read back through the log (the in-place flag does not outlive its batch)', () => {
    const store = openPartitionStore(tempDir());
    stores.push(store);
    const map = new LoggedStateMap<number>(store, 4, 1000);
    // A small state: the first batch goes in place, with no record.
    commit(store, map, 100, [['a', 1], ['b', 1]], false, 2);
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 0);
    // The state has grown: the next batch is logged.
    commit(store, map, 200, [['a', 2], ['b', null]]);
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 1);
    assert.equal(map.get('a')?.[0], 2, 'the logged value, not the one in place');
    assert.equal(map.get('b'), undefined, 'the logged removal, not the value in place');
    assert.equal(map.loggedKeys, readLog(store).overlay.size, 'the log in memory is the log in LMDB');
    assert.deepEqual(stored(store), new Map([['a', 2]]));
  });
  it('foldChangeLog folds a log another process wrote after this thread last read the store, as a start does before writing in place', () => {
    const path = tempDir();
    const store = openPartitionStore(path);
    stores.push(store);
    // This thread's read transaction begins here, before the other process's commit.
    assert.equal(changeRecords(store), 0);
    const module = (name: string) => JSON.stringify(new URL(`../../../src/storage/${name}.js`, import.meta.url).href);
    execFileSync(process.execPath, ['--input-type=module', '-e', `
      const { openPartitionStore } = await import(${module('partition/store')});
      const { appendChanges } = await import(${module('partition/change-log')});
      const { encodeEntry } = await import(${module('codec')});
      const store = openPartitionStore(${JSON.stringify(path)});
      store.env.transactionSync(() => appendChanges(store, 100, [['a', encodeEntry(1, 100)]]));
      store.env.close();
    `], { timeout: 60_000 });
    foldChangeLog(store);
    store.env.resetReadTxn();
    assert.equal(changeRecords(store), 0, 'the log is empty');
    assert.deepEqual(decodeEntry<number>(store.state.getBinary('a')!), [1, 100], 'its change is in place');
  });
});
