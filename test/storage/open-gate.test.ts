import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { GATE_FILE, openGated } from '../../src/storage/open-gate.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { storeCommitter } from '../committer.js';
import { fileLocks, openDescriptorCount, tempDir } from '../helpers.js';

const { tryLock, unlock } = fileLocks;
/** The gate's first byte, as a commit holds it shared and an open (after its turn, the second byte) alone. */
const GATE_BYTE = [0, 1] as const;

/** A fresh store, a committer process on it, and a descriptor of its gate file to hold the gate with as the other side would. */
async function besideCommitter(run: (beside: { path: string; other: Awaited<ReturnType<typeof storeCommitter>>; gate: number }) => Promise<void>): Promise<void> {
  const path = partitionPath(tempDir(), 0, 0);
  openPartitionStore(path).env.close();
  const other = await storeCommitter(path);
  const gate = openSync(join(path, GATE_FILE), 'r+');
  try {
    await run({ path, other, gate });
  } finally {
    closeSync(gate);
    await other.stop();
  }
}

describe('a gated store closed, or whose open fails', () => {
  it('a second close does nothing, a write after the close is refused by lmdb, and an open whose databases fail leaves no descriptor open', () => {
    const path = partitionPath(tempDir(), 0, 0);
    openPartitionStore(path).env.close();
    const before = openDescriptorCount();
    for (let i = 0; i < 3; i++) {
      assert.throws(() => openGated(path, {}, () => {
        throw new Error('no databases');
      }), /no databases/);
    }
    assert.equal(openDescriptorCount(), before, 'neither the environment nor the gate file is left open');

    const store = openPartitionStore(path);
    store.meta.putSync('a', 1);
    store.env.close();
    assert.equal(openDescriptorCount(), before);
    store.env.close();
    assert.throws(() => store.meta.putSync('b', 2), (e: unknown) => !/EBADF|bad file descriptor/i.test(String(e)) && /closed/i.test(String(e)));
    const again = openPartitionStore(path);
    try {
      assert.deepEqual([again.meta.get('a'), again.meta.get('b')], [1, undefined]);
    } finally {
      again.env.close();
    }
  });
});

// lmdb's open writes the lock file's last-transaction id from a meta page it read a moment
// before: a commit by another process in between was hidden, and lost (src/storage/open-gate.ts).
describe('opening a store and committing to it, from two processes', { timeout: 60_000 }, () => {
  it('an open waits while a commit in another process holds the gate, then sees that commit', async () => {
    await besideCommitter(async ({ path, other, gate }) => {
      const store = openPartitionStore(path);
      store.env.transactionSync(() => store.meta.putSync('n', 1));
      // As a write transaction holds it, from before it begins to after it commits.
      assert.ok(tryLock(gate, ...GATE_BYTE, { shared: true }));
      other.send('open');
      await other.stalledAfter('opening', 'the other process opened the store while a commit held the gate');
      unlock(gate, ...GATE_BYTE);
      store.env.close();
      assert.equal(await other.printed('opened'), 'opened 1');
    });
  });

  it('a commit waits for an open under way in another process (which holds the gate alone while it opens)', async () => {
    await besideCommitter(async ({ path, other, gate }) => {
      assert.ok(tryLock(gate, ...GATE_BYTE), 'the gate is free while nothing commits');
      other.send('commit 0');
      await other.stalledAfter('committing', 'the other process began its transaction while an open held the gate');
      unlock(gate, ...GATE_BYTE);
      assert.equal(await other.printed('committed'), 'committed 1');
      const store = openPartitionStore(path);
      assert.equal(store.meta.get('n'), 1);
      store.env.close();
    });
  });

  it('an open gets in while two processes commit back to back, their commits overlapping, and hides none of them', async () => {
    const path = partitionPath(tempDir(), 0, 0);
    openPartitionStore(path).env.close();
    const others = [await storeCommitter(path), await storeCommitter(path)];
    try {
      // Each holds its transactions 20 ms and begins the next at once: together they keep the gate held all along.
      for (const other of others) other.send('loop 20 5000');
      await Promise.all(others.map((o) => o.printed('looping')));
      await new Promise((resolve) => setTimeout(resolve, 200));
      const store = openPartitionStore(path);
      // Lines the committers printed while this thread was opening arrive now.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(others.map((o) => o.lines.filter((l) => l.startsWith('looped'))), [[], []], 'the open waited for the commits to stop coming');
      store.env.close();
      const counts = await Promise.all(others.map(async (o) => Number((await o.printed('looped')).split(' ')[1])));
      const after = openPartitionStore(path);
      assert.equal(after.meta.get('n'), counts[0] + counts[1], 'a commit was lost');
      after.env.close();
    } finally {
      await Promise.all(others.map((o) => o.stop()));
    }
  });

  it('a commit inside a commit (lmdb nests it in the outer transaction) and a put outside one go through the gate once each', () => {
    const path = partitionPath(tempDir(), 0, 0);
    const store = openPartitionStore(path);
    const gate = openSync(join(path, GATE_FILE), 'r+');
    // What an open in another process would find: can it take the gate now?
    const free = () => {
      const taken = tryLock(gate, ...GATE_BYTE);
      if (taken) unlock(gate, ...GATE_BYTE);
      return taken;
    };
    try {
      store.env.transactionSync(() => {
        store.meta.putSync('a', 1);
        store.env.transactionSync(() => store.meta.putSync('b', 2));
        assert.equal(free(), false, 'the nested transaction let go of the gate its outer one holds');
      });
      store.meta.putSync('c', 3);
      store.env.transactionSync(() => assert.equal(free(), false, 'a later transaction ran outside the gate'));
      assert.ok(free(), 'a write left the gate held');
      assert.deepEqual([store.meta.get('a'), store.meta.get('b'), store.meta.get('c')], [1, 2, 3]);
    } finally {
      closeSync(gate);
      store.env.close();
    }
  });
});
