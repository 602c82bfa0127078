import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { openPartitionStore, type PartitionStore } from '../../../src/storage/partition/store.js';
import { StateSpec } from '../../../src/index.js';
import { partitionPath } from '../../../src/storage/partition/store.js';
import { fixture, keyedJob, runThenStop, tempDir } from '../../helpers.js';

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

  const spec = () => StateSpec.function<string, number, number, unknown>(fixture('idle-count')).numPartitions(1).timeout(2500);

  /** A store whose key a was updated at 1000, its time index given `stale` entries beside a's own. */
  async function withStaleEntries(stale: Array<[number, string]>): Promise<string> {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir }, [['a', 1]]);
    const store = openPartitionStore(partitionPath(dataDir, 0, 0));
    try {
      store.env.transactionSync(() => {
        for (const [time, key] of stale) new TimeIndex(store).add(time, key);
      });
    } finally {
      store.env.close();
    }
    return dataDir;
  }

  it('a sweep goes by each key\'s own time: an index entry of a key the store does not hold, or an older time of it, times nothing out', async () => {
    const dataDir = await withStaleEntries([[500, 'ghost'], [200, 'a']]);
    const second = await keyedJob(spec(), { dataDir, startMs: 1000 });
    try {
      assert.deepEqual(await second.batch([['b', 1]]), [['b', 1]]);
      assert.deepEqual(await second.batch([]), [], 'batch 3000: a was updated at 1000, not 200');
      assert.deepEqual(await second.batch([]), [['timeout', 'a', 1, 4000]], 'batch 4000: a times out; the ghost entry is passed over');
      assert.equal(second.stream.store().get('ghost'), undefined);
    } finally {
      await second.ssc.stop();
    }
    const after = openPartitionStore(partitionPath(dataDir, 0, 0));
    try {
      assert.deepEqual([...new TimeIndex(after).olderThan(Infinity)], [[2000, 'b']], 'the stale entries were removed with the batches that passed over them');
    } finally {
      after.env.close();
    }
  });

  it('a sweep goes by each key\'s own time: a key whose older entry the same sweep passed over still times out at its own', async () => {
    const dataDir = await withStaleEntries([[200, 'a']]);
    // The first batch at 4000 sweeps below 1500: the stale entry at 200 reads a into the
    // batch's working set, and a's own entry at 1000 comes next in the same sweep.
    const second = await keyedJob(spec(), { dataDir, startMs: 3000 });
    try {
      assert.deepEqual(await second.batch([['b', 1]]), [['b', 1], ['timeout', 'a', 1, 4000]], 'a, read for its stale entry, is not taken for a key with a record');
    } finally {
      await second.ssc.stop();
    }
  });
});
