import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StateSpec, StoreMismatchError } from '../../../src/index.js';
import { decodeEntry } from '../../../src/storage/codec.js';
import { FORMAT_VERSION, readLayout, writeLayout, type StoreLayout } from '../../../src/storage/partition/batch-log.js';
import { readBinary } from '../../../src/storage/partition/state-map.js';
import { openPartitionStore, partitionPath, stateDir } from '../../../src/storage/partition/store.js';
import { fixture, keyedJob, runThenStop, tempDir } from '../../helpers.js';

const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(3);
const cli = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));

/** A job folder whose stores hold `keys`, one record each, after a clean stop. */
async function jobFolder(keys: string[]): Promise<string> {
  const dataDir = tempDir();
  await runThenStop(spec(), { dataDir }, keys.map((k) => [k, 1]));
  return dataDir;
}

function withStore<T>(dataDir: string, partition: number, use: (store: ReturnType<typeof openPartitionStore>) => T): T {
  const store = openPartitionStore(partitionPath(dataDir, 0, partition));
  try {
    return use(store);
  } finally {
    store.env.close();
  }
}

/** Starts a job on the folder (and stops it again, should it start: a test then fails cleanly). */
async function startedAndStopped(dataDir: string): Promise<void> {
  await runThenStop(spec(), { dataDir, startMs: 5000 });
}

/** What a newer statestream would leave: partition `partition`'s layout in a format this one does not know. */
function writtenByNewerVersion(dataDir: string, partition: number): StoreLayout {
  return withStore(dataDir, partition, (store) => {
    const layout = { ...readLayout(store)!, formatVersion: FORMAT_VERSION + 1 };
    writeLayout(store, layout);
    return layout;
  });
}

describe('a partition store in a newer format', () => {
  const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);

  it('stops the job at start with an error naming the store and both versions, and leaves the store as it was', async () => {
    const dataDir = await jobFolder(keys);
    const layout = writtenByNewerVersion(dataDir, 1);
    const entriesBefore = withStore(dataDir, 1, (store) => [...store.state.getRange({})].map(({ key, value }) => [key, decodeEntry(value)]));
    assert.ok(entriesBefore.length > 0, 'partition 1 holds state');

    await assert.rejects(startedAndStopped(dataDir), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, new RegExp(`partition 1 of mapWithState stream 0 at .*partition-0001 is in store format ${FORMAT_VERSION + 1}`));
      assert.match(error.message, new RegExp(`reads formats up to ${FORMAT_VERSION}: run it with a newer statestream`));
      assert.equal(error.context.formatVersion, FORMAT_VERSION + 1);
      return true;
    });

    // Not taken for damage: nothing was moved aside or restored, and no batch or migration wrote to it.
    assert.deepEqual(readdirSync(stateDir(dataDir, 0)).sort(), ['partition-0000', 'partition-0001', 'partition-0002']);
    withStore(dataDir, 1, (store) => {
      assert.deepEqual(readLayout(store), layout);
      assert.deepEqual([...store.state.getRange({})].map(({ key, value }) => [key, decodeEntry(value)]), entriesBefore);
      assert.equal(decodeEntry(readBinary(store, String(entriesBefore[0][0]))!)[0], 1);
    });
  });

  it('a layout without a valid format version (absent, 0, 1.5, "1") is refused as no store this statestream wrote', async () => {
    const dataDir = await jobFolder(keys);
    for (const formatVersion of [undefined, 0, 1.5, '1']) {
      const layout = withStore(dataDir, 2, (store) => {
        const bad = { ...readLayout(store)!, formatVersion } as unknown as StoreLayout;
        writeLayout(store, bad);
        return readLayout(store);
      });
      await assert.rejects(startedAndStopped(dataDir), (error: unknown) => {
        assert.ok(error instanceof StoreMismatchError, `${String(formatVersion)}: ${String(error)}`);
        assert.match(error.message, new RegExp(`partition 2 of mapWithState stream 0 at .*partition-0002 has a layout without a valid format version \\(${String(formatVersion).replace('.', '\\.')}\\); it is not a store this statestream wrote`));
        return true;
      });
      withStore(dataDir, 2, (store) => assert.deepEqual(readLayout(store), layout, 'the layout is left as it was'));
    }
  });

  it('is refused, not taken for damage and restored over, when this version cannot even decode its records', async () => {
    // A job folder with a snapshot to restore from, should the start call the store damaged.
    const dataDir = tempDir();
    const job = await keyedJob(spec(), { dataDir, snapshotEvery: 1 });
    try {
      await job.batchWithSnapshot(keys.map((k) => [k, 1]));
    } finally {
      await job.ssc.stop();
    }
    writtenByNewerVersion(dataDir, 1);
    // Its last-batch record in a form this version's MessagePack reader cannot decode (an array of 3 that ends after 1).
    withStore(dataDir, 1, (store) => store.env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' }).putSync('last-batch', Buffer.from([0x93, 0x01])));
    const before = withStore(dataDir, 1, (store) => store.env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' }).getBinary('last-batch'));

    await assert.rejects(startedAndStopped(dataDir), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /partition 1 of mapWithState stream 0 at .*partition-0001 is in store format/);
      return true;
    });
    assert.equal(existsSync(`${dataDir}/damaged`), false, 'nothing was moved aside');
    withStore(dataDir, 1, (store) => {
      assert.equal(readLayout(store)?.formatVersion, FORMAT_VERSION + 1, 'the store was not replaced by the snapshot\'s copy');
      assert.deepEqual(store.env.openDB<Buffer, string>({ name: 'meta', encoding: 'binary' }).getBinary('last-batch'), before);
    });
  });

  it('is refused by the command-line tool too, before it reads an entry', async () => {
    const dataDir = await jobFolder(keys);
    writtenByNewerVersion(dataDir, 2);
    const out = tempDir();
    const result = spawnSync(process.execPath, [cli, 'export', '--data-dir', dataDir, '--out', `${out}/state.export`], { encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(result.status, 0, result.stdout);
    assert.match(result.stderr, new RegExp(`partition 2 of mapWithState stream 0 at .*partition-0002 is in store format ${FORMAT_VERSION + 1}`));
    assert.equal(existsSync(`${out}/state.export`), false, 'no export was written');
  });

  it('inspect reports it as unreadable, not damaged, and still reports the other partitions', async () => {
    const dataDir = await jobFolder(keys);
    writtenByNewerVersion(dataDir, 2);
    const result = spawnSync(process.execPath, [cli, 'inspect', '--data-dir', dataDir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(result.status, 1, result.stderr);
    assert.match(result.stdout, /0\s+ok\s+/);
    assert.match(result.stdout, /1\s+ok\s+/);
    assert.match(result.stdout, new RegExp(`2\\s+UNREADABLE: partition 2 of mapWithState stream 0 at .*partition-0002 is in store format ${FORMAT_VERSION + 1}`));
    assert.doesNotMatch(result.stdout, /DAMAGED/);
  });

  it('a store in this version\'s format starts as before (the check lets it through)', async () => {
    const dataDir = await jobFolder(keys);
    const job = await keyedJob(spec(), { dataDir, startMs: 5000 });
    try {
      assert.deepEqual(await job.batch([['k1', 2]]), [['k1', 3]]);
    } finally {
      await job.ssc.stop();
    }
  });
});
