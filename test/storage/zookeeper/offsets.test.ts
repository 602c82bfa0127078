import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OffsetStoreError } from '../../../src/index.js';
import { ZooKeeperOffsetStore, type RecordedBatch } from '../../../src/storage/zookeeper/offsets.js';
import { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';
import { ownedOffsetStore } from './owned-store.js';
import { connectClient, startZooKeeper, zkAnswer, type ZooKeeperServer } from '../../integration/services/zookeeper.js';
import { within } from '../../wait.js';
import { startZooKeeperProxy, type ZooKeeperProxy } from '../../integration/services/zookeeper-proxy.js';

const OP_MULTI = 14;
const OP_GET_DATA = 4;

describe('ZooKeeper offset store writes that are retried (real ZooKeeper)', { timeout: 120_000 }, () => {
  let zk: ZooKeeperServer;
  let proxy: ZooKeeperProxy;
  let roots = 0;
  const sessions: ZooKeeperSession[] = [];

  before(async () => {
    zk = await startZooKeeper();
    proxy = await startZooKeeperProxy(zk.connectString);
  });
  after(async () => {
    sessions.forEach((s) => s.close());
    await proxy?.close();
    await zk?.stop();
  });

  /** An offset store through the proxy, under a root of its own, with one batch recorded as started. */
  async function storeWithBatch(): Promise<{ store: ZooKeeperOffsetStore; batch: RecordedBatch; root: string }> {
    const session = new ZooKeeperSession({ connect: proxy.connectString, sessionTimeoutMs: 6000 });
    sessions.push(session);
    const root = `/retries/job-${++roots}`;
    const store = await ownedOffsetStore(session, root);
    await store.init([{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }]);
    await store.anchorHistory(0);
    const batch = { batchTime: 2000, ranges: [{ topic: 'words', partition: 0, from: 0, until: 40 }, { topic: 'words', partition: 1, from: 0, until: 7 }] };
    await store.recordBatchStart(batch);
    return { store, batch, root };
  }

  /** A store whose history holds the anchor, batch 2000 and batch 3000, both ended. */
  async function storeWithTwoBatches(): Promise<{ store: ZooKeeperOffsetStore; root: string }> {
    const { store, batch, root } = await storeWithBatch();
    await store.recordBatchEnd(batch, true);
    const next = { batchTime: 3000, ranges: [{ topic: 'words', partition: 0, from: 40, until: 50 }] };
    await store.recordBatchStart(next);
    await store.recordBatchEnd(next, true);
    return { store, root };
  }

  async function assertEnded(store: ZooKeeperOffsetStore, batch: RecordedBatch): Promise<void> {
    assert.deepEqual(await store.positions([{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }]), new Map([['words:0', 40], ['words:1', 7]]));
    assert.equal(await store.pendingBatch(), undefined);
    assert.equal(await store.lastEnded(), 2000);
    assert.deepEqual(await store.historyAfter(0), [batch]);
  }

  it('the end-of-batch multi-op whose answer was lost is recognised as done when retried', async () => {
    const { store, batch } = await storeWithBatch();
    const lost = proxy.loseNextReply(OP_MULTI);
    await store.recordBatchEnd(batch, true);
    await within(lost, 'the multi-op reply was dropped', { timeoutMs: 1000 });
    await assertEnded(store, batch);
  });

  it('the same multi-op already applied by another client is recognised as done', async () => {
    const { store, batch, root } = await storeWithBatch();
    const other = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => {
        const tx = other.transaction();
        tx.setData(`${root}/offsets/words/0`, Buffer.from('40')).setData(`${root}/offsets/words/1`, Buffer.from('7'));
        tx.setData(`${root}/batch`, Buffer.alloc(0)).setData(`${root}/last-batch`, Buffer.from('2000'));
        tx.create(`${root}/history/2000`, Buffer.from(JSON.stringify(batch)));
        tx.commit((error) => done(error));
      });
    } finally {
      other.close();
    }
    await store.recordBatchEnd(batch, true);
    await assertEnded(store, batch);
  });

  it('a history entry holding other ranges is still a conflict, reported', async () => {
    const { store, batch, root } = await storeWithBatch();
    const other = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => other.create(`${root}/history/2000`, Buffer.from(JSON.stringify({ batchTime: 2000, ranges: [] })), (error) => done(error)));
    } finally {
      other.close();
    }
    await assert.rejects(store.recordBatchEnd(batch, true), (e: unknown) => e instanceof OffsetStoreError && /NODE_EXISTS.*\(a node under the job's root \/retries\/job-\d+; 'statestream inspect --zk-root \/retries\/job-\d+' shows what it holds\)$/.test((e as Error).message));
    assert.equal(await store.lastEnded(), undefined, 'nothing of the multi-op was applied');
  });

  it('an end retried where only its history entry, or only the batch in flight, differs is a conflict, not taken as done', async () => {
    const conflict = (e: unknown) => e instanceof OffsetStoreError && /NODE_EXISTS/.test((e as Error).message);
    // Positions, last batch and batch node as this end leaves them; the history entry another's.
    const ended = await storeWithBatch();
    await ended.store.recordBatchEnd(ended.batch, false);
    const other = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => other.create(`${ended.root}/history/2000`, Buffer.from(JSON.stringify({ batchTime: 2000, ranges: [] })), (error) => done(error)));
    } finally {
      other.close();
    }
    await assert.rejects(ended.store.recordBatchEnd(ended.batch, true), conflict, 'another history entry');
    // Everything as this end leaves it, but a later batch has started since.
    const later = await storeWithBatch();
    await later.store.recordBatchEnd(later.batch, true);
    await later.store.recordBatchStart({ batchTime: 3000, ranges: [{ topic: 'words', partition: 0, from: 40, until: 50 }] });
    await assert.rejects(later.store.recordBatchEnd(later.batch, true), conflict, 'a batch in flight since');
    assert.equal((await later.store.pendingBatch())?.batchTime, 3000, 'the batch in flight is left as it was');
    // Everything as this end leaves it but one node another writer changed since: the last batch, or a position.
    for (const node of ['last-batch', 'offsets/words/1']) {
      const moved = await storeWithBatch();
      await moved.store.recordBatchEnd(moved.batch, true);
      const writer = await connectClient(zk.connectString);
      try {
        await zkAnswer((done) => writer.setData(`${moved.root}/${node}`, Buffer.from('9999'), -1, (error) => done(error)));
      } finally {
        writer.close();
      }
      await assert.rejects(moved.store.recordBatchEnd(moved.batch, true), conflict, `${node} changed since`);
    }
  });

  it('start positions read back as recorded; an anchor at a batch the history holds already is no conflict', async () => {
    const { store, batch } = await storeWithBatch();
    await store.recordPositions([{ topic: 'words', partition: 0, offset: 17 }, { topic: 'words', partition: 1, offset: 3 }]);
    assert.deepEqual(await store.positions([{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }]), new Map([['words:0', 17], ['words:1', 3]]));
    await store.recordBatchEnd(batch, true);
    // A start with snapshots anchors the history at the last batch, which its end recorded.
    await store.anchorHistory(batch.batchTime);
    assert.deepEqual(await store.historyAfter(batch.batchTime), []);
  });

  it('an empty range (a batch that read nothing of a partition) reads back; a partition with no position yet has none; a position written by hand reads with its line end, and within 19 digits', async () => {
    const { store, root } = await storeWithBatch();
    assert.deepEqual(await store.positions([{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }]), new Map(), 'no position before one is recorded');
    const empty = { batchTime: 2000, ranges: [{ topic: 'words', partition: 0, from: 0, until: 40 }, { topic: 'words', partition: 1, from: 5, until: 5 }] };
    const client = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => client.setData(`${root}/batch`, Buffer.from(JSON.stringify(empty)), -1, (e) => done(e)));
      assert.deepEqual(await store.pendingBatch(), empty);
      await zkAnswer((done) => client.setData(`${root}/offsets/words/0`, Buffer.from('42\n'), -1, (e) => done(e)));
      assert.deepEqual(await store.positions([{ topic: 'words', partition: 0 }]), new Map([['words:0', 42]]));
      await zkAnswer((done) => client.setData(`${root}/offsets/words/0`, Buffer.from(`${'0'.repeat(20)}42`), -1, (e) => done(e)));
      await assert.rejects(store.positions([{ topic: 'words', partition: 0 }]), (error: unknown) => error instanceof OffsetStoreError && /offsets\/words\/0 holds "0+42", not an offset/.test(error.message));
      // A negative offset, edited in by hand: a replay would read from before the partition's start.
      await zkAnswer((done) => client.setData(`${root}/batch`, Buffer.from('{"batchTime":2000,"ranges":[{"topic":"words","partition":0,"from":-1,"until":5}]}'), -1, (e) => done(e)));
      await assert.rejects(store.pendingBatch(), (error: unknown) => error instanceof OffsetStoreError && error.message.startsWith(`the batch record in ZooKeeper at ${root}/batch holds`));
    } finally {
      client.close();
    }
  });

  it('the history anchor whose answer was lost is recognised as done when retried', async () => {
    const session = new ZooKeeperSession({ connect: proxy.connectString, sessionTimeoutMs: 6000 });
    sessions.push(session);
    const store = await ownedOffsetStore(session, `/retries/anchor-${++roots}`);
    await store.init([{ topic: 'words', partition: 0 }]);
    const lost = proxy.loseNextReply(OP_MULTI);
    await store.anchorHistory(5000);
    await within(lost, 'the anchor\'s reply was dropped', { timeoutMs: 1000 });
    assert.deepEqual(await store.historyAfter(5000), []);
    assert.equal(await store.historyAfter(4000), undefined);
  });

  it('a history prune whose answer was lost is recognised as done when retried', async () => {
    const { store } = await storeWithTwoBatches();
    const lost = proxy.loseNextReply(OP_MULTI);
    await store.pruneHistory(3000);
    await within(lost, 'the prune reply was dropped', { timeoutMs: 1000 });
    assert.deepEqual(await store.historyAfter(3000), [], 'the entry of 3000 stays, as the floor');
    assert.equal(await store.historyAfter(2000), undefined, 'the entries before 3000 are gone');
  });

  it('a prune for a snapshot older than the whole history removes nothing: the history still proves itself complete from its oldest entry', async () => {
    const { store } = await storeWithTwoBatches();
    await store.pruneHistory(3000);
    assert.deepEqual(await store.historyAfter(3000), [], 'the history starts at 3000');
    // A snapshot of 2500: no entry at or before it, so no entry is known to be unneeded.
    await store.pruneHistory(2500);
    assert.deepEqual(await store.historyAfter(3000), [], 'the entry of 3000 stays');
  });

  it('a history entry removed between the listing and its read fails the read, naming it, rather than leaving its batch out of a replay', async () => {
    const { store, root } = await storeWithTwoBatches();
    const held = proxy.holdNextRequest(OP_GET_DATA, `${root}/history/2000`);
    const reading = store.historyAfter(0);
    void reading.catch(() => undefined);
    const release = await within(held, 'the read of history entry 2000');
    const other = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => other.remove(`${root}/history/2000`, (error) => done(error)));
    } finally {
      other.close();
    }
    release();
    await assert.rejects(reading, (e: unknown) => e instanceof OffsetStoreError && new RegExp(`lost ${root}/history/2000 while it was read; the batches after 0 cannot be replayed`).test(e.message));
  });

  it('a history of 50 000 batches is trimmed and dropped (one multi-op for all would pass ZooKeeper\'s 1 MB request limit)', async () => {
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 6000 });
    sessions.push(session);
    const root = `/retries/long-history-${++roots}`;
    const store = await ownedOffsetStore(session, root);
    await store.init([{ topic: 'words', partition: 0 }]);
    await store.anchorHistory(0);
    // Half a day of one-second batches each side of the trim, written straight into the history as a run keeping it would.
    const client = await connectClient(zk.connectString);
    try {
      for (let from = 1; from <= 50_000; from += 1000) {
        await new Promise<void>((resolve, reject) => {
          const tx = client.transaction();
          for (let i = from; i < from + 1000; i++) tx.create(`${root}/history/${i * 1000}`, Buffer.from(JSON.stringify({ batchTime: i * 1000, ranges: [] })));
          tx.commit((error) => (error ? reject(error) : resolve()));
        });
      }
    } finally {
      client.close();
    }
    await store.pruneHistory(25_000_000);
    assert.equal(await store.historyAfter(24_999_000), undefined, 'the entries before 25 000 000 are gone');
    assert.equal((await store.historyAfter(25_000_000))?.length, 25_000, 'the floor and the entries after it stay');
    await store.dropHistory();
    assert.deepEqual(await session.children(`${root}/history`), []);
  });

  it('a batch record or history entry that holds something else is named with its node, not parsed into a TypeError', async () => {
    const { store, root } = await storeWithBatch();
    const client = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => client.setData(`${root}/batch`, Buffer.from('not json {'), -1, (e) => done(e)));
      await assert.rejects(store.pendingBatch(), (error: unknown) => {
        assert.ok(error instanceof OffsetStoreError, String(error));
        assert.equal(error.message, `the batch record in ZooKeeper at ${root}/batch holds "not json {", not a recorded batch ({"batchTime":…,"ranges":[…]}); it was not written by statestream`);
        return true;
      });
      await zkAnswer((done) => client.create(`${root}/history/5000`, Buffer.from('{"batchTime":5000}'), (e) => done(e)));
      await assert.rejects(store.historyAfter(0), (error: unknown) => error instanceof OffsetStoreError && error.message.startsWith(`the batch record in ZooKeeper at ${root}/history/5000 holds "{\\"batchTime\\":5000}", not a recorded batch`));
      // A range edited by hand: without offsets it would replay nothing, without a word.
      await zkAnswer((done) => client.setData(`${root}/batch`, Buffer.from('{"batchTime":6000,"ranges":[{"topic":"words","partition":0,"until":50}]}'), -1, (e) => done(e)));
      await assert.rejects(store.pendingBatch(), (error: unknown) => error instanceof OffsetStoreError && error.message.startsWith(`the batch record in ZooKeeper at ${root}/batch holds "{\\"batchTime\\":6000,`));
      // A last ended batch that is no batch time would read as NaN: every replay after it skipped.
      await zkAnswer((done) => client.setData(`${root}/last-batch`, Buffer.from('20x0'), -1, (e) => done(e)));
      await assert.rejects(store.lastEnded(), (error: unknown) => error instanceof OffsetStoreError && error.message === `the last ended batch in ZooKeeper at ${root}/last-batch holds "20x0", not a batch time; it was not written by statestream`);
    } finally {
      client.close();
    }
  });
});
