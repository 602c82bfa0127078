import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, cpSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { compareKeys, open } from 'lmdb';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, listSnapshots, murmur2Partitioner, type StateRestoredEvent } from '../../../src/index.js';
import { readMeta } from '../../../src/storage/partition/lmdb-file.js';
import { checkStoreFile } from '../../../src/storage/partition/store-check.js';
import { openPartitionStore, partitionPath, type PartitionStore } from '../../../src/storage/partition/store.js';
import { fixture, keyedJob, tempDir } from '../../helpers.js';

const run = promisify(execFile);
const PAGE = 4096;

interface ProbeResult {
  signal: string | null;
  code: number | null;
  output: { state?: Array<[string, number]>; restored?: StateRestoredEvent[]; entries?: Array<[string, number]>; error?: { name: string; message: string } } | undefined;
}

/** Runs test/fixtures/store-probe in a child process: a SIGBUS there fails the test instead of killing the runner. */
async function probe(...args: string[]): Promise<ProbeResult> {
  try {
    const { stdout } = await run(process.execPath, [fileURLToPath(fixture('store-probe')), ...args], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    return { signal: null, code: 0, output: JSON.parse(stdout.trim().split('\n').at(-1)!) };
  } catch (error) {
    const e = error as { signal?: string; code?: number; stderr?: string };
    return { signal: e.signal ?? null, code: e.code ?? null, output: undefined };
  }
}

/** A closed store of `n` small values, one commit each (and what `more` writes after them): a few pages. Returns its folder. */
function smallStore(n: number, more: (store: PartitionStore) => void = () => undefined): string {
  const dir = join(tempDir(), 'partition');
  const store = openPartitionStore(dir);
  try {
    for (let i = 0; i < n; i++) store.env.transactionSync(() => store.state.putSync(`k${i}`, Buffer.alloc(10, i)));
    more(store);
  } finally {
    store.env.close();
  }
  return dir;
}

describe('the store file check', () => {
  it("counts a large value's pages as LMDB does: a value that fills its last page to the byte, at the file's end, is a whole store", async () => {
    // A fresh environment's first commit puts the value's pages last in the file. LMDB gives a
    // value of n bytes floor((24 - 1 + n) / page) + 1 pages: 4072 bytes (a page less its
    // 24-byte header) take one, 8168 take two; one more counted would lie past the end.
    for (const bytes of [4072, 4071, 4073, 8168]) {
      const dir = tempDir();
      const env = open({ path: dir, encoding: 'binary' });
      await env.put('large', Buffer.alloc(bytes, 7));
      await env.close();
      const pages = statSync(join(dir, 'data.mdb')).size / PAGE;
      assert.equal(pages, 3 + Math.floor((24 - 1 + bytes) / PAGE) + 1, `${bytes} bytes: two meta pages, a leaf and the value's pages`);
      assert.equal(checkStoreFile(dir), undefined, `a value of ${bytes} bytes`);
    }
  });

  it('reads a store by its valid meta page: one whose magic is spoiled is passed over whatever it claims, and an impossible page size is named', () => {
    const dir = smallStore(5);
    const file = join(dir, 'data.mdb');
    const bytes = readFileSync(file);
    // The meta page of the older commit: spoilt, it claims the newest transaction and a root past the file's end.
    const TXN_AT = 24 + 128;
    const older = bytes.readBigUInt64LE(TXN_AT) < bytes.readBigUInt64LE(PAGE + TXN_AT) ? 0 : PAGE;
    // Page 1: a spoilt page 0 is refused before any choice, as LMDB refuses it.
    assert.equal(older, PAGE, 'precondition: the second meta page holds the older commit');
    const spoilt = Buffer.from(bytes);
    spoilt.writeUInt32LE(0, older + 24);
    spoilt.writeBigUInt64LE(2n ** 40n, older + TXN_AT);
    spoilt.writeBigUInt64LE(10n ** 6n, older + 24 + 24 + 48 + 40);
    writeFileSync(file, spoilt);
    assert.equal(checkStoreFile(dir), undefined, 'the valid meta page describes a whole store');
    const oddPages = Buffer.from(bytes);
    oddPages.writeUInt32LE(3000, 24 + 24);
    writeFileSync(file, oddPages);
    assert.equal(checkStoreFile(dir), 'data.mdb declares an impossible page size (3000)');
  });

  it('finds a store cut inside the overflow pages of its last, large value, and names the database as the job does, without LMDB\'s NUL', () => {
    // Larger than a page: LMDB keeps it in a run of overflow pages, the last pages of the file.
    const dir = smallStore(6, (store) => store.env.transactionSync(() => store.state.putSync('large', Buffer.alloc(8180, 7))));
    assert.equal(checkStoreFile(dir), undefined);
    const file = join(dir, 'data.mdb');
    const cut = statSync(file).size - PAGE;
    truncateSync(file, cut);
    const problem = checkStoreFile(dir) ?? 'called whole';
    const named = /^data\.mdb is truncated: (\d+) bytes, but page (\d+) of its "state" database, which its newest commit refers to, ends at byte (\d+)$/.exec(problem);
    assert.ok(named, problem);
    assert.equal(Number(named[1]), cut, 'the file\'s size as it is');
    assert.equal(Number(named[3]), (Number(named[2]) + 1) * PAGE, 'where the page it refers to ends, past the cut');
    assert.ok(Number(named[3]) > cut);
  });

  it('names a page of the list of databases as damaged, not as whole nor with a read past the page, when its number, its node count, a node offset or the size of a node is wrong', () => {
    const damages: Array<[string, (page: Buffer, root: number) => void]> = [
      ['another page\'s number in its header', (page, root) => page.writeBigUInt64LE(BigInt(root + 1), 0)],
      // Its nodes wiped too: each one the count reaches reads as an empty node, so only the count itself is wrong.
      ['a node count larger than the page holds', (page) => page.fill(0, 24).writeUInt16LE(0xfffe, 20)],
      ['a node offset past the end of the page', (page) => page.writeUInt16LE(0xfff0, 24)],
      // The first node's data size: a database's record is 48 bytes, this one would run past the page.
      ['a node whose data runs past the end of the page', (page) => page.writeUInt16LE(0xffff, 24 + page.readUInt16LE(24))],
    ];
    for (const [what, damage] of damages) {
      const dir = smallStore(5);
      assert.equal(checkStoreFile(dir), undefined, `whole before: ${what}`);
      const file = join(dir, 'data.mdb');
      const fd = openSync(file, 'r+');
      let root: number;
      try {
        const read = readMeta(fd, statSync(file).size);
        assert.ok('meta' in read && read.meta.main.root !== undefined);
        root = read.meta.main.root;
        const page = Buffer.alloc(PAGE);
        readSync(fd, page, 0, PAGE, root * PAGE);
        damage(page, root);
        writeSync(fd, page, 0, PAGE, root * PAGE);
      } finally {
        closeSync(fd);
      }
      let problem: string | undefined;
      assert.doesNotThrow(() => (problem = checkStoreFile(dir)), what);
      assert.equal(problem, `data.mdb is damaged: page ${root} of its list of databases, which its newest commit refers to, is not a B-tree page`, what);
    }
  });

  it('names a leaf of the state database damaged whose large value\'s node says its key runs past the page, rather than reading past it', () => {
    const dir = join(tempDir(), 'partition');
    const store = openPartitionStore(dir);
    try {
      // One commit in a new store: every page in the file is its own, none a stale copy.
      store.env.transactionSync(() => {
        for (let i = 0; i < 5; i++) store.state.putSync(`k${i}`, Buffer.alloc(10, i));
        store.state.putSync('large', Buffer.alloc(8180, 7));
      });
    } finally {
      store.env.close();
    }
    const file = join(dir, 'data.mdb');
    const bytes = readFileSync(file);
    // The leaf holding the large value's node: flagged as a leaf, with a node flagged F_BIGDATA.
    let found: { pgno: number; node: number } | undefined;
    for (let pgno = 2; pgno * PAGE < bytes.length && !found; pgno++) {
      const at = pgno * PAGE;
      if ((bytes.readUInt16LE(at + 18) & 0x02) === 0) continue;
      for (let i = 0; i < bytes.readUInt16LE(at + 20) >> 1; i++) {
        const node = 24 + bytes.readUInt16LE(at + 24 + 2 * i);
        if (bytes.readUInt16LE(at + node + 4) & 0x01) found = { pgno, node };
      }
    }
    assert.ok(found, 'the large value has a node on a leaf');
    bytes.writeUInt16LE(0xfff0, found.pgno * PAGE + found.node + 6);
    writeFileSync(file, bytes);
    let problem: string | undefined;
    assert.doesNotThrow(() => (problem = checkStoreFile(dir)));
    assert.equal(problem, `data.mdb is damaged: page ${found.pgno} of its "state" database, which its newest commit refers to, is not a B-tree page`);
  });

  it('names a damaged page of the free-page list LMDB reads when it allocates', () => {
    const dir = join(tempDir(), 'partition');
    const store = openPartitionStore(dir);
    try {
      store.env.transactionSync(() => {
        for (let i = 0; i < 50_000; i++) store.state.putSync(`k${i}`, Buffer.alloc(100, i % 256));
      });
      // One commit that frees over a thousand pages: their list is a record longer than a
      // page, so the free database has overflow pages, and the check reads its leaves.
      store.env.transactionSync(() => {
        for (let i = 0; i < 50_000; i++) store.state.removeSync(`k${i}`);
      });
    } finally {
      store.env.close();
    }
    const file = join(dir, 'data.mdb');
    const fd = openSync(file, 'r+');
    try {
      const read = readMeta(fd, statSync(file).size);
      assert.ok('meta' in read && read.meta.free.root !== undefined && read.meta.free.overflowPages > 0, 'the store has a free-page list, with overflow pages');
      writeSync(fd, Buffer.alloc(PAGE), 0, PAGE, read.meta.free.root * PAGE);
    } finally {
      closeSync(fd);
    }
    assert.match(checkStoreFile(dir) ?? 'called whole', /^data\.mdb is damaged: page \d+ of its free-page list, which its newest commit refers to, is not a B-tree page$/);
  });

  it('does not call a store damaged that ends before the last page its meta page counts, when LMDB reads it whole (the reproduction of issue 14)', { timeout: 180_000 }, async () => {
    // One partition, idle keys swept every batch: commits free pages, and LMDB need not write
    // pages freed in the commit that allocated them, so a healthy file can end early.
    const dataDir = tempDir();
    const spec = () => StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(1).timeout(150);
    const clock = new ManualClock(0);
    const first = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, clock });
    const input = first.queueStream<[string, number]>();
    const counts = input.mapWithState(spec());
    await first.start();
    let expected: Array<[string, number]>;
    try {
      for (const [b, n] of [3230, 2875, 2271, 1590, 2182].entries()) {
        input.pushBatch(Array.from({ length: n }, (_, i) => [`k${i}-${b + 1}`, 1] as [string, number]));
        await clock.advance(100);
      }
      expected = [...counts.store().entries()] as Array<[string, number]>;
    } finally {
      await first.stop();
    }
    const store = partitionPath(dataDir, 0, 0);
    const file = join(store, 'data.mdb');
    // Free pages at the end of the file, as a workload that frees what it allocated leaves
    // them (whether a sweep's commits leave some depends on how LMDB places each batch's
    // pages): large values written, then removed, in commits of their own.
    const direct = openPartitionStore(store);
    try {
      direct.env.transactionSync(() => {
        for (let i = 0; i < 40; i++) direct.meta.putSync(`filler-${i}`, Buffer.alloc(3 * PAGE, i));
      });
      direct.env.transactionSync(() => {
        for (let i = 0; i < 40; i++) direct.meta.removeSync(`filler-${i}`);
      });
    } finally {
      direct.env.close();
    }
    // A file that ends before such pages is what LMDB leaves when it did not write them.
    // Find how many pages LMDB itself reads past (in copies, in a child process: a SIGBUS
    // there is an answer).
    // Whether LMDB reads every value of a copy cut `pages` pages short (monotonic: a cut
    // into a used page fails, and so does any longer one), searched by halves.
    const readsWhole = async (pages: number) => {
      const copy = join(tempDir(), 'partition');
      cpSync(store, copy, { recursive: true });
      truncateSync(join(copy, 'data.mdb'), statSync(file).size - pages * PAGE);
      const raw = await probe('raw', copy);
      rmSync(copy, { recursive: true, force: true });
      return raw.signal === null && JSON.stringify(raw.output?.state) === JSON.stringify(expected);
    };
    let free = 0;
    for (let low = 1, high = 128; low <= high; ) {
      const mid = (low + high) >> 1;
      if (await readsWhole(mid)) [free, low] = [mid, mid + 1];
      else high = mid - 1;
    }
    assert.ok(free >= 1, 'precondition: the workload leaves free pages at the end of the file, which LMDB never reads');
    truncateSync(file, statSync(file).size - free * PAGE);
    const raw = await probe('raw', store);
    assert.equal(raw.signal, null, 'LMDB reads the shortened store without SIGBUS');
    assert.deepEqual(raw.output?.state, expected, 'LMDB reads every value of the shortened store');

    assert.equal(checkStoreFile(store), undefined);
    const again = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, clock: new ManualClock(10_000) });
    const restarted = again.queueStream<[string, number]>().mapWithState(spec());
    const restored: StateRestoredEvent[] = [];
    again.on(BatchEvents.STATE_RESTORED, (e) => restored.push(e));
    await again.start();
    try {
      assert.deepEqual(restored, []);
      assert.deepEqual([...restarted.store().entries()], expected);
    } finally {
      await again.stop();
    }
    const inspect = await run(process.execPath, [fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url)), 'inspect', '--data-dir', dataDir, '--json']);
    assert.equal(JSON.parse(inspect.stdout).healthy, true, 'inspect calls it healthy');
  });

  it('finds a file cut at any of several points, a removed data.mdb and a removed partition folder, restores each from the snapshot, and never dies of SIGBUS', { timeout: 600_000 }, async () => {
    const dataDir = tempDir();
    const words = (b: number) => Array.from({ length: 3000 }, (_, i) => [`w${(i * 7 + b * 131) % 5000}-${i % 3}`, 1] as [string, number]);
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2), { dataDir, snapshotEvery: 3 });
    let atSnapshot: Array<[string, number]> = [];
    let latest: Array<[string, number]>;
    try {
      for (let b = 1; b <= 4; b++) {
        await job.batch(words(b));
        if (b === 3) atSnapshot = [...job.stream.store().entries()] as Array<[string, number]>;
      }
      await job.ssc.awaitIdle();
      latest = [...job.stream.store().entries()] as Array<[string, number]>;
    } finally {
      await job.ssc.stop();
    }
    assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [3000]);
    // After the restore partition 0 still holds batch 4000; partition 1 is back at the snapshot's batch 3000.
    const inPartition = (p: number, entries: Array<[string, number]>) => entries.filter(([key]) => murmur2Partitioner.partition(key, 2) === p);
    const afterRestore = [...inPartition(0, latest!), ...inPartition(1, atSnapshot)].sort(([a], [b]) => compareKeys(a, b));
    assert.notDeepEqual(afterRestore, latest!, 'batch 4000 changed partition 1');
    const size = statSync(join(partitionPath(dataDir, 0, 1), 'data.mdb')).size;
    // A cut near the end may remove only pages on LMDB's free list: then the store is whole.
    const cuts = [0, 100, PAGE, 2 * PAGE, 2 * PAGE + 100, Math.floor(size / 4), Math.floor(size / 2), Math.floor((size * 3) / 4)].map((cut) => ({ cut, mayBeWhole: false }));
    cuts.push({ cut: size - PAGE - 1, mayBeWhole: true }, { cut: size - 1, mayBeWhole: true });
    const damage = [
      ...cuts.map(({ cut, mayBeWhole }) => ({ what: `data.mdb cut at byte ${cut} of ${size}`, mayBeWhole, harm: (dir: string) => truncateSync(join(partitionPath(dir, 0, 1), 'data.mdb'), cut) })),
      { what: 'data.mdb removed', mayBeWhole: false, harm: (dir: string) => rmSync(join(partitionPath(dir, 0, 1), 'data.mdb')) },
      { what: 'the partition folder removed', mayBeWhole: false, harm: (dir: string) => rmSync(partitionPath(dir, 0, 1), { recursive: true }) },
    ];
    let restoredCount = 0;
    for (const { what, mayBeWhole, harm } of damage) {
      const copy = tempDir();
      cpSync(dataDir, copy, { recursive: true });
      harm(copy);
      const result = await probe('start', copy, '10000', '2');
      assert.equal(result.signal, null, `${what}: the start did not die of a signal`);
      assert.equal(result.code, 0, `${what}: the start exited normally`);
      const out = result.output!;
      assert.equal(out.error, undefined, `${what}: ${out.error?.message}`);
      if (out.restored!.length === 0 && mayBeWhole) {
        assert.deepEqual(out.entries, latest!, `${what}: judged whole, so every value reads as before`);
        continue;
      }
      assert.equal(out.restored!.length, 1, `${what}: the damaged store was found and restored`);
      assert.deepEqual(out.restored![0].partitions.map((p) => p.partition), [1], what);
      assert.match(out.restored![0].partitions[0].problem, /truncated|too short|shorter than its two meta pages|missing/, what);
      assert.deepEqual(out.entries, afterRestore, `${what}: partition 1 holds its snapshot's state, partition 0 its own`);
      restoredCount++;
    }
    assert.ok(restoredCount >= damage.length - 2);
  });
});
