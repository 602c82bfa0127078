import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, DataDirLockedError, ManualClock, StateSpec, StoreMismatchError, StreamingContext } from '../../src/index.js';
import { fixture, keyedJob, openDescriptorCount, runThenStop, tempDir } from '../helpers.js';
import { waitUntil } from '../wait.js';
import { DataDirLock } from '../../src/storage/data-lock.js';
import { thisProcess } from '../../src/storage/holder.js';

const { tryLock } = createRequire(import.meta.url)('fs-native-extensions') as { tryLock(fd: number, options?: { shared?: boolean }): boolean };

const spec = () => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);

/** A context on `dataDir` that is defined but not started. */
function copyOf(dataDir: string, appName: string, startMs = 100_000): StreamingContext {
  const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(startMs), appName });
  ssc.queueStream<[string, number]>().mapWithState(spec());
  return ssc;
}

function refusedNaming(dataDir: string, holder: string) {
  return (error: unknown) => {
    assert.ok(error instanceof DataDirLockedError, String(error));
    assert.equal(error.code, 'ERR_DATA_DIR_LOCKED');
    assert.equal(error.retriable, false);
    assert.equal(error.context.dataDir, dataDir);
    assert.equal((error.context.holder as { pid: number }).pid, process.pid);
    assert.match(error.message, new RegExp(`^start\\(\\): the data folder ${dataDir} is in use by this process \\(pid ${process.pid}, job "${holder}", since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\); a second copy of a job must not run on the same folder`));
    return true;
  };
}

describe('the data folder lock (in one process)', () => {
  it('a stop() called while the first one takes its last steps waits until the folder is given back', async () => {
    const dataDir = tempDir();
    // The job's metrics go into a registry of the test's: the stop's last steps take them out
    // of it (after its phase says stopped, before the folder is given back), and the second
    // stop() is called from there.
    const registry = new Registry();
    const first = await keyedJob(spec(), { dataDir, appName: 'first-copy', metrics: { registry } });
    await first.batch([['a', 1]]);
    const batches = registry.getSingleMetric('statestream_batches_total') as unknown as { remove(labels: Record<string, string>): void };
    let second: Promise<boolean> | undefined;
    let firstOver = false;
    const remove = batches.remove.bind(batches);
    batches.remove = (labels) => {
      if (second === undefined) {
        assert.equal(first.ssc.state, 'stopped');
        // With a timeout, as a second SIGTERM brings one: nothing is left to cut.
        second = first.ssc.stop({ timeoutMs: 3_600_000 }).then(() => firstOver);
      }
      remove(labels);
    };
    const stopping = first.ssc.stop().finally(() => (firstOver = true));
    await waitUntil('the stop to take the job\'s metrics out', () => second !== undefined);
    assert.equal(await second, true, 'the second stop() returned before the first had ended');
    const next = copyOf(dataDir, 'next-copy');
    await next.start();
    await next.stop();
    await stopping;
  });

  it('a second context on the same folder fails at start() naming this process; the first goes on, and stop() releases the folder', async () => {
    const dataDir = tempDir();
    const first = await keyedJob(spec(), { dataDir, appName: 'first-copy-with-a-longer-name' });
    try {
      assert.deepEqual(await first.batch([['a', 1]]), [['a', 1]]);
      const second = copyOf(dataDir, 'second-copy');
      await assert.rejects(second.start(), refusedNaming(dataDir, 'first-copy-with-a-longer-name'));
      assert.equal(second.state, 'stopped');
      // The refused copy closed its own descriptor of the lock file: the first still holds the folder.
      await assert.rejects(copyOf(dataDir, 'third-copy').start(), refusedNaming(dataDir, 'first-copy-with-a-longer-name'));
      assert.deepEqual(await first.batch([['a', 1], ['b', 1]]), [['a', 2], ['b', 1]], 'the first copy goes on, its state untouched');
    } finally {
      await first.ssc.stop();
    }
    const after = copyOf(dataDir, 'later');
    await after.start();
    try {
      assert.equal(after.state, 'running', 'the folder is free once the first copy stopped');
      // Its shorter record replaced the first copy's whole, not over its first bytes.
      await assert.rejects(copyOf(dataDir, 'refused').start(), refusedNaming(dataDir, 'later'));
    } finally {
      await after.stop();
    }
  });

  it('a start that meets a statestream command on the folder says to wait for it, not that a second copy of the job runs', async () => {
    const dataDir = tempDir();
    const command = await DataDirLock.acquire(dataDir, { command: 'import' });
    try {
      await assert.rejects(copyOf(dataDir, 'after-import').start(), (error: unknown) =>
        error instanceof DataDirLockedError && /^start\(\): the data folder .* is in use by this process \(pid \d+, statestream import, since [^)]+\); that command is changing the stores: start the job once it has finished \(lock file /.test(error.message));
    } finally {
      command.release();
    }
  });

  it("a refusal whose lock file still holds a gone process's record names no one rather than the gone process, and leaves no descriptor open", async () => {
    const dataDir = tempDir();
    (await DataDirLock.acquire(dataDir, { command: 'import' })).release();
    // Held by a descriptor of this process that has not written its record; the file keeps a gone job's.
    const holding = openSync(join(dataDir, 'statestream.lock'), 'r+');
    assert.equal(tryLock(holding), true);
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(dataDir, 'statestream.lock'), `${JSON.stringify({ ...thisProcess(), pid: gone, appName: 'long-gone' })}\n`);
    const before = openDescriptorCount();
    try {
      for (let i = 0; i < 3; i++) {
        await assert.rejects(DataDirLock.acquire(dataDir, { command: 'reshard' }), (error: unknown) => {
          assert.ok(error instanceof DataDirLockedError, String(error));
          assert.match(error.message, /is in use by a process that has not yet written its name into the lock file/);
          assert.doesNotMatch(error.message, /long-gone/);
          return true;
        });
      }
      assert.equal(openDescriptorCount(), before, 'the refused attempts closed their descriptors');
    } finally {
      closeSync(holding);
    }
  });

  it("a start that meets inspect's brief look at the lock waits it out rather than failing", async () => {
    const dataDir = tempDir();
    (await DataDirLock.acquire(dataDir, { command: 'import' })).release();
    // What folderLockHolder does: a shared lock on the file for a moment. Here, for 100 ms.
    const fd = openSync(join(dataDir, 'statestream.lock'), 'r');
    assert.equal(tryLock(fd, { shared: true }), true);
    let open = true;
    const close = () => {
      if (open) closeSync(fd);
      open = false;
    };
    const looked = setTimeout(close, 100);
    try {
      const lock = await DataDirLock.acquire(dataDir, { command: 'reshard' });
      lock.release();
    } finally {
      clearTimeout(looked);
      close();
    }
  });

  it('a start that fails after taking the folder releases it', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir, startMs: 50_000 }, [['a', 1]]);
    // A clock behind the stored batch fails start() once the stores are open, with the folder locked.
    // Its worker threads end with it: the process's threads are counted, libuv's pool grown to its size first.
    await Promise.all(Array.from({ length: 8 }, () => readFile(join(dataDir, 'statestream.lock'))));
    const threads = () => readdirSync('/proc/self/task').length;
    const before = threads();
    const behind = copyOf(dataDir, 'behind', 0);
    await assert.rejects(behind.start(), StoreMismatchError);
    await waitUntil('the failed start to end its threads', () => threads() <= before, { timeoutMs: 5000 });
    const next = await keyedJob(spec(), { dataDir, startMs: 100_000 });
    try {
      assert.deepEqual(await next.batch([['a', 1]]), [['a', 2]], 'the next start takes the folder and the state');
    } finally {
      await next.ssc.stop();
    }
  });

  it('a data folder that cannot be locked (here: a file) fails start() naming it', async () => {
    const notAFolder = join(tempDir(), 'a-file');
    writeFileSync(notAFolder, '');
    const ssc = copyOf(notAFolder, 'nowhere');
    await assert.rejects(ssc.start(), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, new RegExp(`^the data folder ${notAFolder} cannot be locked \\(.+\\): it must be a writable folder on a file system with file locks$`));
      return true;
    });
    assert.equal(ssc.state, 'stopped');
  });
});
