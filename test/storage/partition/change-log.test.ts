import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { toBufferKey } from 'ordered-binary';
import { exportJobState, StateSpec } from '../../../src/index.js';
import { decodeEntry, encodeEntry } from '../../../src/storage/codec.js';
import { appendChanges, changeRecords, readEntries, readEntry, readLog } from '../../../src/storage/partition/change-log.js';
import { readStateExport } from '../../../src/storage/export/state-export.js';
import { openPartitionStore, partitionPath, type PartitionStore } from '../../../src/storage/partition/store.js';
import { fixture, keyedJob, statesOf, tempDir } from '../../helpers.js';
import { waitUntil, within } from '../../wait.js';

const COLD = 20_000;
const HOT = 40;
const hotKeys = Array.from({ length: HOT }, (_, i) => `hot-${i}`);

/** The state database alone, without the log: what a reader that ignored the log would see. */
function inPlace(store: PartitionStore): Map<string, number> {
  store.env.resetReadTxn();
  return new Map([...store.state.getRange({})].map(({ key, value }) => [key as string, decodeEntry<number>(value)[0]]));
}

function records(store: PartitionStore): number {
  store.env.resetReadTxn();
  return changeRecords(store);
}

/** A look at one partition's store beside the job (the same environment: lmdb-js shares it within a process); closed once the job is done. */
function probe(dataDir: string, partition = 0): PartitionStore {
  return openPartitionStore(partitionPath(dataDir, 0, partition));
}

describe('the change log: batches of a large state appended, the oldest folded in place', () => {
  it('every reader sees logged batches (store(), a running export, the next start), the log folds its oldest record past 15 between batches and all at stop', async () => {
    const dataDir = tempDir();
    const spec = StateSpec.function<string, number, number, [string, number | null]>(fixture('tally-or-drop')).numPartitions(1);
    const job = await keyedJob(spec, { dataDir, threads: 1 });
    const store = probe(dataDir);
    const expected = new Map<string, number>();
    try {
      const first: Array<[string, number]> = Array.from({ length: COLD }, (_, i) => [`cold-${i}`, 1]);
      await job.batch(first);
      for (const [key] of first) expected.set(key, 1);
      assert.equal(records(store), 0, 'a batch that changes most of the state is written in place');

      // Each batch: +1 on every hot key, and one cold key dropped: far fewer changes than keys, so logged.
      for (let b = 1; b <= 5; b++) {
        await job.batch([...hotKeys.map((k) => [k, 1] as [string, number]), [`cold-${b}`, 0]]);
        for (const k of hotKeys) expected.set(k, b);
        expected.delete(`cold-${b}`);
      }
      assert.equal(records(store), 5, 'five logged batches');
      const placed = inPlace(store);
      assert.equal(placed.get('hot-0'), undefined, 'the hot keys are in the log only');
      assert.equal(placed.get('cold-1'), 1, 'the dropped keys are still in place, removed by the log');

      const queries = job.stream.store();
      for (const k of hotKeys) assert.equal(queries.get(k), 5, k);
      assert.equal(queries.get('cold-1'), undefined, 'a key the log removes is gone');
      assert.equal(queries.get('cold-9'), 1);
      assert.equal(queries.count(), expected.size);
      const entries = [...queries.entries()] as Array<[string, number]>;
      assert.deepEqual(new Map(entries), expected, 'entries(): the state database overlaid by the log');
      for (let i = 1; i < entries.length; i++) assert.ok(Buffer.compare(toBufferKey(entries[i - 1][0] as string), toBufferKey(entries[i][0] as string)) < 0, `entries in LMDB's key order at ${i}`);

      // An export of the running job reads through the log too.
      const file = join(tempDir(), 'state.msgpack');
      assert.equal(await exportJobState(dataDir, file), expected.size);
      assert.deepEqual(statesOf(readStateExport<string, number>(file)), expected);

      // Sixteen records fill the log; from then on the oldest record is folded: the keys no
      // later record changed go in place, the others stay logged. The worker folds between
      // batches when it is idle, as here (the next batch's commit would fold it otherwise).
      for (let b = 6; b <= 16; b++) {
        await job.batch(hotKeys.map((k) => [k, 1] as [string, number]));
        for (const k of hotKeys) expected.set(k, b);
      }
      for (let b = 16; b <= 19; b++) {
        if (b > 16) {
          await job.batch(hotKeys.map((k) => [k, 1] as [string, number]));
          for (const k of hotKeys) expected.set(k, b);
        }
        await waitUntil(`the oldest of 16 records folded between batches after batch ${b}`, () => records(store) === 15);
        const placed = inPlace(store);
        for (let c = 1; c <= 5; c++) assert.equal(placed.get(`cold-${c}`), c <= b - 15 ? undefined : 1, `cold-${c} after batch ${b}: removed in place once its record folded`);
        assert.equal(placed.get('hot-0'), undefined, 'the hot keys, changed by every later record, stay in the log');
        assert.equal(queries.get('hot-7'), b);
        assert.equal(queries.count(), expected.size);
      }
      assert.deepEqual(new Map([...queries.entries()] as Array<[string, number]>), expected);
    } finally {
      await job.ssc.stop();
    }
    try {
      assert.equal(records(store), 0, 'a clean stop folds the log');
      assert.deepEqual(inPlace(store), expected, 'a stopped job holds its state in place');
    } finally {
      store.env.close();
    }
  });

  it('a key added and removed again within the log, never in place, is not read back: before, between and after the keys in place', async () => {
    const dataDir = tempDir();
    const spec = StateSpec.function<string, number, number, [string, number | null]>(fixture('tally-or-drop')).numPartitions(1);
    const job = await keyedJob(spec, { dataDir, threads: 1 });
    const store = probe(dataDir);
    const inPlace = Array.from({ length: 1000 }, (_, i): [string, number] => [`k-${String(i).padStart(4, '0')}`, 1]);
    const expected = new Map(inPlace);
    // 'a-…' sorts before every key in place, 'k-0500-…' between k-0500 and k-0501, 'z-…' after them all.
    const passing = ['a-passing', 'k-0500-passing', 'z-passing'];
    try {
      await job.batch(inPlace);
      await job.batch(passing.map((k) => [k, 1]));
      await job.batch(passing.map((k) => [k, 0]));
      assert.equal(records(store), 2, 'both batches logged, neither folded yet');
      const queries = job.stream.store();
      for (const k of passing) assert.equal(queries.get(k), undefined, k);
      assert.equal(queries.count(), expected.size);
      assert.deepEqual(new Map([...queries.entries()] as Array<[string, number]>), expected, 'entries(): no removed key, and no null');
      const file = join(tempDir(), 'state.msgpack');
      assert.equal(await exportJobState(dataDir, file), expected.size);
      assert.deepEqual(statesOf(readStateExport<string, number>(file)), expected);
    } finally {
      await job.ssc.stop();
      store.env.close();
    }
  });

  it('a job SIGKILLed with batches in its log restarts exactly from them, also when the restart reshards', async () => {
    const dataDir = tempDir();
    const child = spawn(process.execPath, [fileURLToPath(fixture('logged-job')), dataDir, String(COLD)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let printed = 0;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      for (const match of text.matchAll(/^BATCH (\d+)$/gm)) printed = Number(match[1]);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await waitUntil('the job to complete 6 batches', () => printed >= 6, { timeoutMs: 60_000 });
    } finally {
      child.kill('SIGKILL');
      await within(exited, 'the SIGKILLed job to exit');
    }
    const killed = probe(dataDir);
    const logged = records(killed);
    const placed = inPlace(killed);
    killed.env.close();
    assert.ok(logged > 0, `the killed job left batches in its change log (${logged} records)`);

    const copy = tempDir();
    cpSync(dataDir, copy, { recursive: true });
    assert.ok(existsSync(partitionPath(copy, 0, 0)));

    const spec = (n: number) => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(n);
    const counted = new Map<string, number>();
    for (const [dir, partitions] of [[dataDir, 1], [copy, 3]] as const) {
      const job = await keyedJob(spec(partitions), { dataDir: dir, threads: 2, startMs: Date.now() + 60_000 });
      try {
        const queries = job.stream.store();
        const batches = queries.get('hot-0') as number;
        counted.set(dir, batches);
        assert.ok(batches >= printed && batches <= printed + 1, `${partitions} partition(s): the hot keys count the committed batches (${batches}; ${printed} were reported before the kill)`);
        assert.ok(batches > (placed.get('hot-0') ?? 0), 'the newest batches were in the log, not in place');
        for (const k of hotKeys) assert.equal(queries.get(k), batches, `${k}, ${partitions} partition(s)`);
        assert.equal(queries.get('cold-0'), 1);
        assert.equal(queries.get(`cold-${COLD - 1}`), 1);
        assert.equal(queries.count(), COLD + HOT);
        const after = await job.batch([['hot-0', 1]]);
        assert.deepEqual(after, [['hot-0', batches + 1]], 'the next batch continues from the logged counts');
      } finally {
        await job.ssc.stop();
      }
    }
    // The starts folded the logs, the stops too: every store holds its state in place.
    const keysInPlace = new Map<string, number>();
    for (const [dir, p] of [[dataDir, 0], [copy, 0], [copy, 1], [copy, 2]] as const) {
      const store = probe(dir, p);
      try {
        assert.equal(records(store), 0, `${dir} partition ${p}`);
        const batches = counted.get(dir)!;
        for (const [key, count] of inPlace(store)) {
          // The last batch of each run added one more to hot-0.
          assert.equal(count, key === 'hot-0' ? batches + 1 : key.startsWith('hot-') ? batches : 1, `${key} in place, ${dir} partition ${p}`);
        }
        keysInPlace.set(dir, (keysInPlace.get(dir) ?? 0) + inPlace(store).size);
      } finally {
        store.env.close();
      }
    }
    assert.deepEqual([...keysInPlace.values()], [COLD + HOT, COLD + HOT], 'every key is in place');
  });

  it("keys LMDB orders by UTF-8 bytes ('好😀' after '好！', which UTF-16 puts first) read back once each through the log: store(), stateSnapshots(), a running export, a reshard of the unfolded log", async () => {
    const dataDir = tempDir();
    const spec = (n: number) => StateSpec.function<string, number, number, [string, number | null]>(fixture('tally-or-drop')).numPartitions(n);
    const job = await keyedJob(spec(1), { dataDir, threads: 1 });
    const store = probe(dataDir);
    const copy = tempDir();
    const filler: Array<[string, number]> = Array.from({ length: 400 }, (_, i) => [`w${i}`, 1]);
    const expected = [...filler.map(([k]) => [k, 1] as [string, number]), ['好！', 1], ['好😀', 6]].sort(([a], [b]) => Buffer.compare(toBufferKey(a), toBufferKey(b)));
    try {
      await job.batch([...filler, ['好！', 1], ['好😀', 1], ['gone😀', 1]]);
      // Two changes in a state of 403 keys: logged, not written in place.
      await job.batch([['好😀', 5], ['gone😀', 0]]);
      assert.equal(records(store), 1);
      assert.deepEqual([...job.stream.store().entries()], expected, 'store().entries(): each key once, in LMDB\'s order, the removed one gone');
      assert.equal(job.stream.store().count(), 402);
      assert.deepEqual(job.snapshots.at(-1)!.pairs, expected, 'stateSnapshots() of the logged batch');
      const file = join(tempDir(), 'state.msgpack');
      await exportJobState(dataDir, file);
      assert.deepEqual([...readStateExport(file).entries()].map(([k, s]) => [k, s]), expected, 'an export of the running job');
      // The stores as a crash would leave them (the log not folded), resharded at the next start.
      cpSync(dataDir, copy, { recursive: true });
      rmSync(join(copy, 'statestream.lock'), { force: true });
    } finally {
      await job.ssc.stop();
      store.env.close();
    }
    const resharded = await keyedJob(spec(2), { dataDir: copy, threads: 1, startMs: 10_000 });
    try {
      const queries = resharded.stream.store();
      assert.equal(queries.get('好😀'), 6);
      assert.equal(queries.get('gone😀'), undefined);
      assert.equal(queries.count(), 402);
      assert.deepEqual([...queries.entries()].sort(([a], [b]) => Buffer.compare(toBufferKey(a as string), toBufferKey(b as string))), expected);
    } finally {
      await resharded.ssc.stop();
    }
  });
  it('read in a given read transaction (a query\'s pinned one), the log is as that transaction sees it, not as the thread\'s newer one does', () => {
    const store = openPartitionStore(tempDir());
    try {
      store.env.transactionSync(() => {
        store.state.putSync('a', encodeEntry(1, 100));
        appendChanges(store, 200, [['a', encodeEntry(2, 200)]]);
      });
      store.env.resetReadTxn();
      const pinned = store.env.useReadTransaction();
      try {
        store.env.transactionSync(() => appendChanges(store, 300, [['a', encodeEntry(3, 300)], ['b', encodeEntry(3, 300)]]));
        // The thread reads the newest commit from here on.
        store.env.resetReadTxn();
        assert.equal(changeRecords(store), 2);
        const { overlay, records } = readLog(store, pinned);
        assert.deepEqual(records.map((r) => r.batchTime), [200]);
        assert.equal(overlay.get('b'), undefined);
        assert.deepEqual(decodeEntry(readEntry(store, 'a', pinned)!), [2, 200]);
        assert.deepEqual([...readEntries(store, pinned)].map(([key, bytes]) => [key, decodeEntry(bytes)]), [['a', [2, 200]]]);
      } finally {
        pinned.done();
      }
    } finally {
      store.env.close();
    }
  });
});
