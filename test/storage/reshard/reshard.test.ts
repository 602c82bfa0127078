import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { StateSpec, StoreMismatchError, murmur2Partitioner } from '../../../src/index.js';
import { messageCodec } from '../../../src/storage/codec.js';
import { DeadLetterStore } from '../../../src/storage/partition/dead-letters.js';
import type { FaultyValue } from '../../fixtures/faulty.js';
import { BatchLog } from '../../../src/storage/partition/batch-log.js';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { decodeOutputs } from '../../../src/storage/partition/batch-outputs.js';
import { openPartitionStore, partitionPath } from '../../../src/storage/partition/store.js';
import { interruptedSwap, type SwapStep } from '../../../src/storage/stream-swap.js';
import { readStoredLayout, reshardStores } from '../../../src/storage/reshard/reshard.js';
import { editLayout, fixture, keyedJob, runThenStop, sorted, tempDir } from '../../helpers.js';
import { testRandom } from '../../random.js';
import { within } from '../../wait.js';

type Key = string | [string, number];

const spec = (n: number) => StateSpec.function<Key, number, number, unknown>(fixture('idle-count')).numPartitions(n).timeout(1_000_000);
const child = fileURLToPath(fixture('reshard-child'));

interface Run {
  /** ms from the child's 'ready' to its exit */
  ms: number;
  signal: NodeJS.Signals | null;
  code: number | null;
}

/** Runs the reshard child; kills it `killAfterMs` after it is ready, when given. */
function runChild(dataDir: string, to: number, killAt: SwapStep | 'none', killAfterMs?: number): Promise<Run> {
  return within(childRun(dataDir, to, killAt, killAfterMs), `the reshard child (to ${to}, killed at ${killAfterMs === undefined ? killAt : `${killAfterMs} ms`}) to exit`, { timeoutMs: 120_000 });
}

function childRun(dataDir: string, to: number, killAt: SwapStep | 'none', killAfterMs?: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, dataDir, '0', String(to), killAt], { stdio: ['ignore', 'pipe', 'pipe'] });
    let ready = 0;
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    proc.stdout.on('data', (d: Buffer) => {
      if (ready || !d.toString().startsWith('ready')) return;
      ready = performance.now();
      if (killAfterMs !== undefined) setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      if (code !== 0 && signal === null) reject(new Error(`reshard child failed (${code}): ${stderr}`));
      else resolve({ ms: performance.now() - ready, signal, code });
    });
  });
}

async function stateOf(dataDir: string, n: number, startMs: number): Promise<{ entries: Array<[Key, number]>; count: number }> {
  const job = await keyedJob(spec(n), { dataDir, startMs });
  try {
    return { entries: [...job.stream.store().entries()] as Array<[Key, number]>, count: job.stream.store().count() };
  } finally {
    await job.ssc.stop();
  }
}

describe('reshard crash safety: a reshard killed at any moment leaves the old state or the new, whole', () => {
  it('SIGKILL at each protocol step and at random moments of a 10^5-key reshard; start() settles it', { timeout: 240_000 }, async (t) => {
    const random = testRandom(t);
    const dataDir = tempDir();
    const keys = 100_000;
    await runThenStop(spec(4), { dataDir }, Array.from({ length: keys }, (_, i): [Key, number] => [i % 5 === 0 ? ['t', i] : `key-${i}`, (i % 7) + 1]));
    const original = await stateOf(dataDir, 4, 1000);
    assert.equal(original.entries.length, keys);
    assert.equal(original.count, keys);

    const check = async (what: string, n: number) => {
      const now = await stateOf(dataDir, n, 1000);
      assert.equal(now.count, keys, `${what}: count()`);
      assert.equal(now.entries.length, keys, `${what}: no key lost or duplicated`);
      assert.deepEqual(now.entries, original.entries, `${what}: the same states`);
      assert.deepEqual(readdirSync(dataDir).sort(), ['state-0', 'statestream.lock'], `${what}: nothing left beside the stores and the folder's lock file`);
    };

    // Killed exactly at each step: before the marker the old stores stay, from it on the new ones
    // win. Nothing here settles the interrupted reshard: the next start() must, before it opens
    // a store. The surviving stores are the very files the reshard left (by inode), not rebuilt.
    const storeFile = (folder: string) => join(dataDir, folder, 'partition-0000', 'data.mdb');
    let stored = 4;
    for (const [step, to, survivor, survivingFolder] of [
      ['copied', 8, 4, 'state-0'],
      ['marked', 8, 8, 'state-0.reshard'],
      ['old-moved', 3, 3, 'state-0.reshard'],
      ['new-moved', 5, 5, 'state-0'],
    ] as const) {
      const run = await runChild(dataDir, to, step);
      assert.equal(run.signal, 'SIGKILL', `the child died at ${step}`);
      assert.notDeepEqual(readdirSync(dataDir).filter((f) => f !== 'state-0' && f !== 'statestream.lock'), [], `killed at ${step}: the reshard was left half done`);
      const survivorInode = statSync(storeFile(survivingFolder)).ino;
      await check(`killed at ${step} (${stored} → ${to}), then started with ${survivor}`, survivor);
      assert.equal(readStoredLayout(dataDir, 0)?.numPartitions, survivor, `killed at ${step}: ${survivor} partitions`);
      assert.equal(statSync(storeFile('state-0')).ino, survivorInode, `killed at ${step}: start() kept the stores that were in ${survivingFolder}`);
      stored = survivor;
    }

    // An uninterrupted run, to time the random kills against.
    const full = await runChild(dataDir, 4, 'none');
    assert.equal(full.code, 0);
    assert.equal(readStoredLayout(dataDir, 0)?.numPartitions, 4);
    stored = 4;
    t.diagnostic(`an uninterrupted reshard of ${keys} keys took ${full.ms.toFixed(0)} ms from the child's start`);

    let killed = 0;
    for (const [i, to] of [8, 3, 6, 4, 7].entries()) {
      // The first kill comes early, so one lands even when the timed run was slowed by other work.
      const delay = random.next() * full.ms * (i === 0 ? 0.3 : 1.2);
      const run = await runChild(dataDir, to, 'none', delay);
      if (run.signal === 'SIGKILL') killed++;
      t.diagnostic(`${stored} → ${to}: kill after ${delay.toFixed(0)} ms: ${run.signal ?? 'finished first'}; on disk: ${readdirSync(dataDir).join(', ')}`);
      // Open with the partition count it had or the one it was going to: both must give the original state.
      const openWith = i % 2 === 0 ? to : stored;
      await check(`killed after ${delay.toFixed(0)} ms (${run.signal ?? 'finished'}), opened with ${openWith}; ${random.replay}`, openWith);
      stored = openWith;
      assert.equal(readdirSync(`${dataDir}/state-0`).filter((f) => f.startsWith('partition-')).length, stored);
    }
    assert.ok(killed > 0, `at least one random kill landed before the reshard finished (${random.replay})`);
  });
});

describe('reshardStores', () => {
  it("moves the last batch's outputs to partition 0, so a replay of that batch emits them again", async () => {
    const dataDir = tempDir();
    const job = await keyedJob(spec(3), { dataDir });
    let outputs: unknown[];
    try {
      outputs = await job.batch(Array.from({ length: 50 }, (_, i): [Key, number] => [`k${i}`, 1]));
    } finally {
      await job.ssc.stop();
    }
    const report = reshardStores(dataDir, 0, 2);
    assert.deepEqual(report, { from: 3, to: 2, batchTime: 1000, keys: 50, deadLetters: 0 });
    assert.deepEqual(readdirSync(join(dataDir, 'state-0')).sort(), ['partition-0000', 'partition-0001'], "the swap's complete marker is not left in the state folder");
    const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      const last = stores.map((s) => new BatchLog(s).last()!);
      assert.deepEqual(last.map((b) => b.batchTime), [1000, 1000]);
      assert.equal(last[0].keyCount + last[1].keyCount, 50);
      assert.deepEqual(sorted(decodeOutputs(last[0].outputs)), sorted(outputs));
      assert.deepEqual(decodeOutputs(last[1].outputs), []);
    } finally {
      stores.forEach((s) => void s.env.close());
    }
  });

  it('stores whose layout predates its timeIndexed field (absent: kept) are resharded with their time index', async () => {
    const dataDir = tempDir();
    const timed = StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(2).timeout(10_000);
    await runThenStop(timed, { dataDir }, Array.from({ length: 20 }, (_, i): [string, number] => [`k${i}`, 1]));
    for (const p of [0, 1]) editLayout(dataDir, p, { timeIndexed: undefined });
    reshardStores(dataDir, 0, 3);
    const indexed = [0, 1, 2].map((p) => {
      const store = openPartitionStore(partitionPath(dataDir, 0, p));
      try {
        return [...new TimeIndex(store).olderThan(Number.POSITIVE_INFINITY)];
      } finally {
        store.env.close();
      }
    });
    assert.deepEqual(indexed.flat().map(([, key]) => key as string).sort(), Array.from({ length: 20 }, (_, i) => `k${i}`).sort(), 'every key in the time index of its new partition');
    assert.deepEqual([...new Set(indexed.flat().map(([time]) => time))], [1000], 'each at the time its key was last updated (batch 1000), not at 0');
  });

  it('keeps no time index for a stream without a timeout', async () => {
    const dataDir = tempDir();
    await runThenStop(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir }, Array.from({ length: 20 }, (_, i): [string, number] => [`k${i}`, 1]));
    reshardStores(dataDir, 0, 3);
    const counts = [0, 1, 2].map((p) => {
      const store = openPartitionStore(partitionPath(dataDir, 0, p));
      try {
        return [store.state.getCount(), store.timeIndex.getCount()];
      } finally {
        store.env.close();
      }
    });
    assert.equal(counts.reduce((n, [keys]) => n + keys, 0), 20);
    assert.deepEqual(counts.map(([, indexed]) => indexed), [0, 0, 0]);
  });

  it('refuses stores with a partition missing, naming its folder, and makes no empty store in its place (its keys would be lost)', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(3), { dataDir }, Array.from({ length: 30 }, (_, i): [Key, number] => [`k${i}`, 1]));
    rmSync(partitionPath(dataDir, 0, 2), { recursive: true });
    assert.throws(() => reshardStores(dataDir, 0, 2), (e: unknown) => {
      assert.ok(e instanceof StoreMismatchError, String(e));
      assert.match(e.message, /^the layout of mapWithState stream 0 says 3 partitions, but .*partition-0002 is missing$/);
      return true;
    });
    assert.ok(!existsSync(partitionPath(dataDir, 0, 2)), 'no store was made for the missing partition');
    assert.equal(readStoredLayout(dataDir, 0)?.numPartitions, 3, 'the stores are left as they were');
  });

  it('a half-committed batch is named by the newest batch any partition holds, beside each partition\'s', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(2), { dataDir }, Array.from({ length: 30 }, (_, i): [Key, number] => [`k${i}`, 1]));
    // Partition 1 committed batch 2000; a crash stopped partition 0 before it did.
    const store = openPartitionStore(partitionPath(dataDir, 0, 1));
    try {
      const keyCount = new BatchLog(store).last()!.keyCount;
      store.env.transactionSync(() => new BatchLog(store).record({ batchTime: 2000, outputs: messageCodec.pack([]), keyCount }));
    } finally {
      store.env.close();
    }
    assert.throws(() => reshardStores(dataDir, 0, 3), (e: unknown) => {
      assert.ok(e instanceof StoreMismatchError, String(e));
      assert.match(e.message, /from 2 to 3 partitions: batch 2000 was only half committed \(last committed batch per partition: partition 0: 1000, partition 1: 2000\)/);
      return true;
    });
  });

  it('stopped once its new stores moved in but before the old ones went, is reported as interrupted until a start settles it', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(2), { dataDir }, Array.from({ length: 30 }, (_, i): [Key, number] => [`k${i}`, 1]));
    const stop = (step: SwapStep) => {
      if (step === 'new-moved') throw new Error('stopped at new-moved');
    };
    assert.throws(() => reshardStores(dataDir, 0, 3, { onStep: stop }), /stopped at new-moved/);
    assert.ok(existsSync(join(dataDir, 'state-0.old')));
    // Reads and inspect go by this: the folder is not as a finished reshard leaves it.
    assert.match(interruptedSwap(dataDir, 0) ?? 'not reported', /^a reshard of stream 0 was interrupted \(.*state-0\.old is still there\)$/);
    const { count } = await stateOf(dataDir, 3, 1000);
    assert.equal(count, 30);
    assert.equal(interruptedSwap(dataDir, 0), undefined, 'the start finished it');
    assert.ok(!existsSync(join(dataDir, 'state-0.old')));
    assert.deepEqual(readdirSync(join(dataDir, 'state-0')).sort(), ['partition-0000', 'partition-0001', 'partition-0002'], "and took the swap's marker out of the state folder");
  });

  it('moves each dead letter into the store of the partition its key routes to now, and counts them in its report', async () => {
    const dataDir = tempDir();
    const poisoned = StateSpec.function<string, FaultyValue, number, unknown>(fixture('faulty')).numPartitions(2).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 });
    await runThenStop(poisoned, { dataDir }, [...Array.from({ length: 12 }, (_, i): [string, FaultyValue] => [`p${i}`, { poison: true }]), ['a', 1]]);
    const report = reshardStores(dataDir, 0, 3);
    assert.equal(report.deadLetters, 12);
    const stores = [0, 1, 2].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      const held = stores.map((store) => [...new DeadLetterStore(store).list()].map((letter) => letter.key as string));
      assert.deepEqual(held.flat().sort(), Array.from({ length: 12 }, (_, i) => `p${i}`).sort());
      held.forEach((keys, p) => {
        for (const key of keys) assert.equal(murmur2Partitioner.partition(key, 3), p, `the letter of ${key} in partition ${p}`);
      });
      assert.ok(held.filter((keys) => keys.length > 0).length > 1, 'the letters are spread over the new partitions');
    } finally {
      stores.forEach((s) => void s.env.close());
    }
  });
});
