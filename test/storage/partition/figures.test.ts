import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { partitionFigures } from '../../../src/storage/partition/figures.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

type PageStats = { pageSize: number; treeBranchPageCount: number; treeLeafPageCount: number; overflowPages: number };

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
});
