import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { lastCommittedBatch } from '../../../src/storage/partition/batch-log.js';
import { partitionFigures } from '../../../src/storage/partition/figures.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

type PageStats = { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number };

/** The compiled store module, for a writer in another process. */
const storeModule = new URL('../../../src/storage/partition/store.js', import.meta.url).href;

/**
 * Another process commits a batch record and a dead letter to the store at `path` and exits,
 * while this thread's read transaction is left as it was (no turn of the event loop between).
 */
function commitElsewhere(path: string, batchTime: number, keyCount: number): void {
  execFileSync(process.execPath, ['--input-type=module', '-e', `
    const { openPartitionStore } = await import(${JSON.stringify(storeModule)});
    const store = openPartitionStore(${JSON.stringify(path)});
    store.env.transactionSync(() => {
      store.meta.putSync('last-batch', { batchTime: ${batchTime}, keyCount: ${keyCount} });
      store.deadLetters.putSync([${batchTime}, 0], { batchTime: ${batchTime}, partition: 0, index: 0 });
    });
    store.env.close();
  `], { timeout: 60_000 });
}

describe("a partition's figures for metrics and the status page", () => {
  const store = openPartitionStore(tempDir());
  after(() => store.env.close());

  it('counts every page of the state and the change log: branch pages, leaves and overflow runs', () => {
    store.env.transactionSync(() => {
      for (let i = 0; i < 20_000; i++) store.state.putSync(`key-${i}`, Buffer.alloc(40, i % 256));
      store.state.putSync('large', Buffer.alloc(20_000, 7));
      store.changeLog.putSync(1, Buffer.alloc(10, 1));
    });
    const state = store.state.getStats() as PageStats;
    const log = store.changeLog.getStats() as PageStats;
    assert.ok(state.treeBranchPageCount > 0 && state.overflowPages > 0, 'the state has branch pages and an overflow run');
    const pages = (s: PageStats) => s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
    assert.equal(partitionFigures(store, 3).stateBytes, state.pageSize * (pages(state) + pages(log)));
    assert.equal(partitionFigures(store, 3).partition, 3);
  });

  it("are read afresh: a store with no batch counts no key, and a batch another thread or process committed since shows at once, with its dead letter", () => {
    const path = tempDir();
    const fresh = openPartitionStore(path);
    try {
      assert.deepEqual({ ...partitionFigures(fresh, 0), stateBytes: 0 }, { partition: 0, keyCount: 0, lastBatch: undefined, stateBytes: 0, deadLetters: 0 });
      assert.equal(lastCommittedBatch(fresh), undefined);
      // This thread's read transaction (the main thread's, shared) began before the commit.
      assert.equal(fresh.meta.get('last-batch'), undefined);
      commitElsewhere(path, 7000, 5);
      const figures = partitionFigures(fresh, 0);
      assert.equal(figures.keyCount, 5);
      assert.equal(figures.lastBatch, 7000);
      assert.equal(figures.deadLetters, 1);
      // The worker's last commit, as a supervisor asks for it after the worker died.
      commitElsewhere(path, 8000, 6);
      assert.equal(lastCommittedBatch(fresh), 8000);
    } finally {
      fresh.env.close();
    }
  });
});
