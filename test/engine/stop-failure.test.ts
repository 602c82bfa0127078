import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StateSpec, StoreOpenError } from '../../src/index.js';
import { GATE_FILE } from '../../src/storage/open-gate.js';
import { partitionPath } from '../../src/storage/partition/store.js';
import { fileLocks, fixture, keyedJob, openDataFiles, sorted, tempDir } from '../helpers.js';

const { tryLock, unlock } = fileLocks;
// The gate is held past the wait on purpose: a short wait keeps the test short (the workers start with this environment).
process.env.STATESTREAM_STORE_OPEN_WAIT_MS = '2000';

describe('a stop that cannot close everything', { timeout: 120_000 }, () => {
  it('closes what it can and rejects with what it could not close, instead of resolving as a clean stop', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2), { dataDir, threads: 2 });
    const stuck = partitionPath(dataDir, 0, 1);
    // Held shared, as a commit in another process that does not end holds it: a close waits 2 s (STATESTREAM_STORE_OPEN_WAIT_MS) for it and gives up.
    const gate = openSync(join(stuck, GATE_FILE), 'r+');
    try {
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1], ['c', 1]])), [['a', 1], ['b', 1], ['c', 1]]);
      assert.ok(tryLock(gate, 0, 1, { shared: true }));
      await assert.rejects(job.ssc.stop(), (error: unknown) => error instanceof StoreOpenError && error.message.includes(`cannot close the store at ${stuck}`));
      assert.deepEqual([...new Set(openDataFiles(dataDir))], [join(stuck, 'data.mdb')], 'the other partition\'s store was left open');
      // Stopped all the same: a second stop has nothing left to do.
      await job.ssc.stop();
    } finally {
      unlock(gate, 0, 1);
      closeSync(gate);
    }
  });
});
