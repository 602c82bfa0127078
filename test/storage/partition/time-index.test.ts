import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { openPartitionStore, type PartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

/**
 * Counts the index entries the real LMDB database hands out, by wrapping its getRange: what
 * a sweep costs is what it reads, whatever it then yields.
 */
function countReads(store: PartitionStore): { readonly entries: number; reset(): void } {
  let entries = 0;
  type Range = { map(fn: (entry: unknown) => unknown): Range };
  const db = store.timeIndex as unknown as { getRange(options: object): Range };
  const getRange = db.getRange;
  db.getRange = function (options) {
    return getRange.call(this, options).map((entry) => (entries++, entry));
  };
  return {
    get entries() {
      return entries;
    },
    reset: () => void (entries = 0),
  };
}

describe('TimeIndex', () => {
  const store = openPartitionStore(tempDir());
  const index = new TimeIndex(store);
  const reads = countReads(store);
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

  it('a sweep reads only the expired front: what it reads grows with the expiring keys, not with the index', () => {
    reads.reset();
    assert.equal([...index.olderThan(301)].length, 4);
    assert.equal(reads.entries, 4, 'the 1000 fresh entries behind the threshold are never read');
    reads.reset();
    assert.deepEqual([...index.olderThan(100)], []);
    assert.equal(reads.entries, 0, 'nothing expired, nothing read');
  });

  it('stopping early never touches the rest', () => {
    reads.reset();
    const first = index.olderThan(Number.MAX_SAFE_INTEGER).next();
    assert.deepEqual(first.value, [100, 'a']);
    assert.equal(reads.entries, 1, 'one entry taken, one read, of 1004');
  });

  it('removes an entry by its time and key', () => {
    store.env.transactionSync(() => index.remove(100, 'a'));
    assert.deepEqual([...index.olderThan(201)], [[200, ['tuple', 2]]]);
  });
});
