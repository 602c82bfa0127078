import assert from 'node:assert/strict';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StoreOpenError } from '../../../src/errors.js';
import { GATE_FILE } from '../../../src/storage/open-gate.js';
import { closePartitionStores, openPartitionStore, openPartitionStores, partitionPath, withPartitionStore } from '../../../src/storage/partition/store.js';
import { fileLocks, openDataFiles, tempDir } from '../../helpers.js';

const { tryLock, unlock } = fileLocks;
// The gate is held past the wait on purpose here: a short wait keeps these tests short.
process.env.STATESTREAM_STORE_OPEN_WAIT_MS = '2000';

describe('opening and closing the stores of a stream together', { timeout: 120_000 }, () => {
  it('a store that cannot be opened closes the ones opened before it, and its error is the one thrown', () => {
    const dataDir = tempDir();
    const paths = [0, 1, 2].map((p) => partitionPath(dataDir, 0, p));
    closePartitionStores(openPartitionStores(paths.slice(0, 2)));
    // Partition 2's folder is a file.
    writeFileSync(paths[2], 'not a folder');

    assert.throws(() => openPartitionStores(paths), (error: NodeJS.ErrnoException) => error.code === 'EEXIST' && error.path === paths[2]);
    assert.deepEqual(openDataFiles(dataDir), [], 'a store opened before the failing one was left open');
  });

  it('a store used and closed at once: when the use fails and the close fails too, the use\'s failure is the one thrown', () => {
    const path = partitionPath(tempDir(), 0, 0);
    openPartitionStore(path).env.close();
    const held = openSync(join(path, GATE_FILE), 'r+');
    try {
      assert.throws(
        () =>
          withPartitionStore(path, () => {
            // From here on the close waits for the gate, and gives up.
            assert.ok(tryLock(held, { shared: true }));
            throw new Error('the read failed');
          }),
        /^Error: the read failed$/,
      );
    } finally {
      unlock(held);
      closeSync(held);
    }
  });

  it('a close that fails (the gate held past its wait) leaves the other stores closed and is thrown after them', () => {
    const dataDir = tempDir();
    const paths = [0, 1, 2].map((p) => partitionPath(dataDir, 0, p));
    const stores = openPartitionStores(paths);
    stores[1].env.transactionSync(() => stores[1].meta.putSync('n', 1));
    // Held alone through a descriptor of its own, as an open under way in another process holds it.
    const gate = openSync(join(paths[1], GATE_FILE), 'r+');
    try {
      assert.ok(tryLock(gate));
      assert.throws(
        () => closePartitionStores(stores),
        (error: unknown) => error instanceof StoreOpenError && error.message.includes(paths[1]) && error.message.includes(`waited its turn in ${GATE_FILE} for 2 s`) && error.retriable === true,
      );
      const stillOpen = openDataFiles(dataDir);
      assert.ok(stillOpen.some((f) => f.startsWith(paths[1])), 'the store whose close failed is not open any more');
      assert.deepEqual(stillOpen.filter((f) => !f.startsWith(paths[1])), [], 'a store after or before the failed close was left open');
      // It is whole and usable, and closes once the gate is free.
      assert.equal(stores[1].meta.get('n'), 1);
      unlock(gate);
      closePartitionStores([stores[1]]);
      assert.deepEqual(openDataFiles(dataDir), []);
      const again = openPartitionStore(paths[1]);
      assert.equal(again.meta.get('n'), 1);
      again.env.close();
    } finally {
      closeSync(gate);
    }
  });
});
