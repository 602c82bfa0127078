import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StoreOpenError, murmur2Partitioner } from '../../../src/index.js';
import { BatchLog, FORMAT_VERSION, writeLayout } from '../../../src/storage/partition/batch-log.js';
import { encodeRecords } from '../../../src/storage/partition/batch-outputs.js';
import { examinePartition, isStoreDamage } from '../../../src/storage/partition/store-check.js';
import { openPartitionStore, partitionPath, stateDir } from '../../../src/storage/partition/store.js';
import { restoreDamagedStores } from '../../../src/storage/snapshots/restore.js';
import { fixture, tempDir } from '../../helpers.js';

/** A stream of two healthy partition stores, each with its layout, a committed batch and some state. */
function healthyStream(): string {
  const dataDir = tempDir();
  for (let p = 0; p < 2; p++) {
    const store = openPartitionStore(partitionPath(dataDir, 0, p));
    writeLayout(store, { numPartitions: 2, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed: false, stateVersion: 1 });
    store.env.transactionSync(() => {
      for (let i = 0; i < 100; i++) store.state.putSync(`k${i}`, Buffer.from([0x92, i, 0]));
      new BatchLog(store).record({ batchTime: 1000, outputs: encodeRecords([]), keyCount: 100 });
    });
    store.env.close();
  }
  return dataDir;
}

/** Another process opening and closing the store for 4 s (`raw`: with lmdb's own open, not through the gate). */
async function otherOpener(path: string, how: 'gated' | 'raw') {
  const opener = spawn(process.execPath, [new URL(fixture('store-opener')).pathname, path, '4000', how], { stdio: ['ignore', 'pipe', 'inherit'] });
  let openerOut = '';
  const ready = new Promise<void>((resolve) =>
    opener.stdout.on('data', (chunk: Buffer) => {
      openerOut += chunk;
      if (openerOut.startsWith('ready\n')) resolve();
    }),
  );
  const exited = new Promise((resolve) => opener.on('exit', resolve));
  await Promise.race([ready, exited.then((code) => assert.fail(`the other process exited (${String(code)}) before it began: ${openerOut}`))]);
  return async () => {
    await exited;
    return JSON.parse(openerOut.slice('ready\n'.length)) as { opened: number; failed: number };
  };
}

describe('a partition store another process opens at the same moment', () => {
  it('opens every time, in both processes, when both go through the open gate (lmdb-js failed opens that met a close)', async (t) => {
    const dataDir = healthyStream();
    const finished = await otherOpener(partitionPath(dataDir, 0, 1), 'gated');
    let examined = 0;
    const deadline = Date.now() + 3500;
    while (Date.now() < deadline) {
      const report = examinePartition(dataDir, 0, 1);
      assert.equal(report.problem, undefined, `examination ${examined + 1} called a healthy store damaged`);
      assert.equal(report.lastBatch, 1000);
      examined++;
    }
    const { opened, failed } = await finished();
    t.diagnostic(`${examined} examinations, the other process opened it ${opened} times`);
    assert.equal(failed, 0, `the other process failed ${failed} of ${opened + failed} opens`);
    assert.ok(opened > 0 && examined > 0);
  });

  it('opened by a process that does not know the gate, is never reported damaged: a failure to open a whole file is a StoreOpenError, and a start-up check restores nothing over it', async (t) => {
    const dataDir = healthyStream();
    const path = partitionPath(dataDir, 0, 1);
    // A tool in another process opening and closing the store with lmdb's own open.
    const finished = await otherOpener(path, 'raw');

    let examined = 0;
    let failure: unknown;
    const deadline = Date.now() + 3500;
    while (Date.now() < deadline && failure === undefined) {
      try {
        const report = examinePartition(dataDir, 0, 1);
        assert.equal(report.problem, undefined, `examination ${examined + 1} called a healthy store damaged`);
        assert.equal(report.lastBatch, 1000);
        examined++;
      } catch (error) {
        if (!(error instanceof StoreOpenError)) throw error;
        failure = error;
      }
    }
    const { opened, failed } = await finished();
    // Either process may fail its very first open (then it keeps failing): what must hold is that both tried.
    assert.ok(opened + failed > 0 && (examined > 0 || failure !== undefined), `both processes opened the store (the other ${opened} times and failed ${failed} times, this one ${examined} times)`);
    t.diagnostic(`${examined} examinations, the other process opened it ${opened} times (and failed ${failed}); ${failure === undefined ? 'no open failed here' : 'then an open failed here'}`);

    if (failure !== undefined) {
      // lmdb-js failed this process's open (it does, sooner or later, under this race): the
      // error says where and why, and a start-up check stops on it rather than restoring.
      assert.match((failure as Error).message, /partition 1 of mapWithState stream 0 at .*partition-0001 could not be opened: .*not damage/);
      assert.equal((failure as StoreOpenError).code, 'ERR_STORE_OPEN');
      // lmdb-js has kept failing in this process so far; should it recover, the check finds nothing to restore.
      const outcome = await restoreDamagedStores(dataDir, 0).then((report) => ({ report }), (error: unknown) => ({ error }));
      if ('error' in outcome) assert.ok(outcome.error instanceof StoreOpenError, String(outcome.error));
      else assert.equal(outcome.report, undefined);
      assert.deepEqual(readdirSync(stateDir(dataDir, 0)).sort(), ['partition-0000', 'partition-0001'], 'nothing was moved aside');
      assert.equal(existsSync(join(dataDir, 'damaged')), false);
      assert.ok(existsSync(join(path, 'data.mdb')));
    }
  });
});

describe('which failures to open a whole store count as damage', () => {
  it('a first page without the meta flag is damage the file check finds (LMDB would refuse it as MDB_INVALID)', () => {
    const dataDir = healthyStream();
    const file = join(partitionPath(dataDir, 0, 1), 'data.mdb');
    const fd = openSync(file, 'r+');
    try {
      const flags = Buffer.alloc(2);
      readSync(fd, flags, 0, 2, 18);
      flags.writeUInt16LE(flags.readUInt16LE(0) & ~0x08, 0);
      writeSync(fd, flags, 0, 2, 18);
    } finally {
      closeSync(fd);
    }
    assert.match(examinePartition(dataDir, 0, 1).problem ?? '', /not flagged as a meta page/);
    assert.equal(examinePartition(dataDir, 0, 0).problem, undefined);
  });

  it('a store whose batch record does not decode is reported damaged, with what the decoder said', () => {
    const dataDir = healthyStream();
    const store = openPartitionStore(partitionPath(dataDir, 0, 1));
    try {
      // A map of one entry, cut off after its header.
      store.env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' }).putSync('last-batch', Buffer.from([0x81]));
    } finally {
      store.env.close();
    }
    assert.equal(examinePartition(dataDir, 0, 1).problem, 'the store fails to open: Unexpected end of MessagePack data');
    assert.equal(examinePartition(dataDir, 0, 0).problem, undefined);
  });

  const failure = (code: unknown, message = 'failed') => Object.assign(new Error(message), code === undefined ? {} : { code });

  it('LMDB\'s codes for wrong pages, and a record that does not decode (no code), are damage', () => {
    assert.equal(isStoreDamage(failure(-30796, 'MDB_CORRUPTED: Located page was wrong type')), true);
    assert.equal(isStoreDamage(failure(-30797, 'MDB_PAGE_NOTFOUND: Requested page not found')), true);
    assert.equal(isStoreDamage(failure(undefined, 'Unexpected end of MessagePack data')), true);
  });

  it('anything else is not: lmdb-js\'s race (EINVAL, MDB_BAD_TXN), a lock file or data of another LMDB version, the system\'s errors', () => {
    for (const code of [22, -30782, -30793, -30794, 'EACCES', 'ENOSPC']) assert.equal(isStoreDamage(failure(code)), false, String(code));
  });
});
