import assert from 'node:assert/strict';
import { appendFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, rmdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ConfigError, EncodingError, StateExportError, StateSpec, type StateSource, StoreMismatchError, exportJobState, readStateExport, writeStateExport, type ExportEntry } from '../../../src/index.js';
import { BatchLog, readLayout, writeLayout } from '../../../src/storage/partition/batch-log.js';
import { messageCodec } from '../../../src/storage/codec.js';
import { entryCodec } from '../../../src/storage/codec.js';
import { openPartitionStore, partitionPath, stateDir } from '../../../src/storage/partition/store.js';
import { storeEntries } from '../../../src/storage/export/state-export.js';
import { storesOrigin } from '../../../src/storage/export/job-export.js';
import { storeCommitter } from '../../committer.js';
import { fixture, keyedJob, tempDir } from '../../helpers.js';

const byKey = (a: ExportEntry, b: ExportEntry) => (JSON.stringify(a[0]) < JSON.stringify(b[0]) ? -1 : 1);

function exportOf(entries: ExportEntry[], stateVersion = 1): string {
  const file = join(tempDir(), 'state.msgpack');
  writeFileSync(file, Buffer.concat([
    entryCodec.pack({ format: 'statestream-state', formatVersion: 1, stateVersion, createdAt: new Date().toISOString() }),
    ...entries.map((e) => entryCodec.pack(e)),
    entryCodec.pack({ end: true, keyCount: entries.length }),
  ]));
  return file;
}

function rejectsWith(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof StateExportError, `expected StateExportError, got ${String(error)}`);
    assert.match((error as Error).message, pattern);
    return true;
  });
}

describe('state export', () => {
  it("round-trips a job's stores: every key with its state and lastUpdated", async () => {
    const dataDir = tempDir();
    const spec = StateSpec.function<unknown, number, unknown, unknown>(fixture('idle-tally')).numPartitions(3).timeout(10_000);
    const job = await keyedJob(spec, { dataDir });
    await job.batch([['a', 1], [7, 2], [['x', 1], 1]]); // 1000
    await job.batch([['a', 1], ['b', 5]]); // 2000
    await job.batch([[['x', 1], 1]]); // 3000
    await job.ssc.stop();

    const file = join(tempDir(), 'job.msgpack');
    assert.equal(await exportJobState(dataDir, file), 4);
    assert.ok(!existsSync(`${file}.tmp`), 'the temporary file was renamed');
    const exported = readStateExport(file);
    assert.equal(exported.header.format, 'statestream-state');
    assert.equal(exported.header.formatVersion, 1);
    assert.equal(exported.stateVersion, 1);
    assert.equal(exported.header.batchTime, 3000);
    assert.equal(exported.header.numPartitions, 3);
    assert.ok(!Number.isNaN(Date.parse(exported.header.createdAt)));
    const expected: ExportEntry[] = [
      ['a', { count: 2, firstSeen: 1000 }, 2000],
      [7, { count: 2, firstSeen: 1000 }, 1000],
      [['x', 1], { count: 2, firstSeen: 1000 }, 3000],
      ['b', { count: 5, firstSeen: 2000 }, 2000],
    ];
    assert.deepEqual([...exported.entries()].sort(byKey), expected.sort(byKey));
    assert.deepEqual([...exported.entries()].sort(byKey), expected, 'entries() can be read again');

    // The same stores, read directly, hold what the file holds.
    const stores = [0, 1, 2].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      assert.deepEqual(stores.flatMap((s) => [...storeEntries(s)]).sort(byKey), expected);
    } finally {
      stores.forEach((s) => s.env.close());
    }
  });

  it('writes to a stream the same bytes it reads back, across chunk boundaries and with binary states', async () => {
    const entries: ExportEntry[] = Array.from({ length: 3000 }, (_, i) => [
      i % 2 ? `key-${i}` : i,
      i % 500 === 0 ? { big: 'x'.repeat(100_000), bytes: Buffer.from([i % 256, 1, 2, 3]) } : { n: i, bytes: Buffer.from([i % 256]) },
      1000 + i,
    ]);
    const stream = new PassThrough();
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    assert.equal(await writeStateExport(stream, { stateVersion: 4, batchTime: 9000, job: 'test' }, entries), 3000);
    const file = join(tempDir(), 'streamed.msgpack');
    writeFileSync(file, Buffer.concat(chunks));

    const exported = readStateExport(file);
    assert.equal(exported.stateVersion, 4);
    assert.equal(exported.header.job, 'test');
    const read = [...exported.entries()];
    assert.equal(read.length, 3000);
    for (let i = 0; i < entries.length; i++) {
      const [key, state, lastUpdated] = read[i];
      assert.equal(key, entries[i][0]);
      assert.equal(lastUpdated, entries[i][2]);
      const want = entries[i][1] as { bytes: Buffer };
      const got = state as { bytes: Uint8Array };
      assert.deepEqual(Buffer.from(got.bytes), want.bytes, `binary state of entry ${i}`);
      assert.deepEqual({ ...got, bytes: null }, { ...want, bytes: null });
    }
  });

  it('reads back Map states keyed by tuples, objects and Dates, mixed with plain entries, across chunk boundaries', async () => {
    // The store keeps such Maps (its codec is picked by an entry's first byte); an export once
    // wrote them and then could not read them: its reader tried plain maps as objects first.
    const entries: ExportEntry[] = Array.from({ length: 12_000 }, (_, i) => {
      const state =
        i % 3 === 0 ? new Map<unknown, number>([[[`page-${i}`, i % 7], i], [{ day: i % 5 }, 2], [new Date(86_400_000 * i), 3]])
        : i % 3 === 1 ? new Map<unknown, number>([[i, 1], ['s', 2]])
        : { n: i, tags: [`t${i}`] };
      return [`key-${i}`, state, 1000 + i];
    });
    const file = join(tempDir(), 'maps.msgpack');
    assert.equal(await writeStateExport(file, { stateVersion: 1, batchTime: 9000 }, entries), entries.length);
    assert.ok(readFileSync(file).length > 3 * 64 * 1024, 'the file spans several of the reader\'s chunks');
    const read = [...readStateExport(file).entries()];
    assert.equal(read.length, entries.length);
    for (let i = 0; i < entries.length; i++) assert.deepEqual(read[i], entries[i], `entry ${i}`);
  });

  it('reads small numbers after a state whose Map sits in an object as numbers, not as that object', async () => {
    // Such an entry is written with records; their definitions stayed in force to the end of
    // the reader's chunk, where a plain entry's 64–127 (one byte each) then read as them.
    const entries: ExportEntry[] = Array.from({ length: 3000 }, (_, i) =>
      i % 2 === 0 ? [`map-${i}`, [{}, { tags: new Map([['k', i]]) }], 1] : [`n-${i}`, { n: 64 + (i % 64), list: [64, 65, 127] }, 64 + (i % 64)],
    );
    const file = join(tempDir(), 'records.msgpack');
    assert.equal(await writeStateExport(file, { stateVersion: 1, batchTime: 9000 }, entries), entries.length);
    const read = [...readStateExport(file).entries()];
    assert.equal(read.length, entries.length);
    for (let i = 0; i < entries.length; i++) assert.deepEqual(read[i], entries[i], `entry ${i}`);
  });

  it('a folder that takes no new file is named with the path asked for, not the temporary file written first', async () => {
    // sysfs refuses new files even to root (EACCES; EROFS where it is mounted read-only, as in a container).
    await assert.rejects(writeStateExport('/sys/statestream-export.msgpack', { stateVersion: 1, batchTime: 1000 }, [['a', 1, 1000]]), (e: unknown) =>
      e instanceof StateExportError && /^cannot write the export \/sys\/statestream-export\.msgpack: no new file can be made in \/sys \((EACCES|EROFS)\)$/.test((e as Error).message));
  });

  it('detects a truncated file and says how many entries it read', () => {
    const entries: ExportEntry[] = Array.from({ length: 50 }, (_, i) => [`k${i}`, { n: i }, i]);
    const whole = readFileSync(exportOf(entries));
    const trailer = entryCodec.pack({ end: true, keyCount: 50 }).length;

    const noTrailer = exportOf([]);
    writeFileSync(noTrailer, whole.subarray(0, whole.length - trailer));
    const source = readStateExport(noTrailer);
    rejectsWith(() => [...source.entries()], new RegExp(`${noTrailer} is truncated: it ends after 50 entries`));

    const midEntry = exportOf([]);
    writeFileSync(midEntry, whole.subarray(0, Math.floor(whole.length / 2)));
    rejectsWith(() => [...readStateExport(midEntry).entries()], /is truncated: it ends after \d+ entries without its end marker/);

    const inHeader = exportOf([]);
    truncateSync(inHeader, 10);
    rejectsWith(() => readStateExport(inHeader), new RegExp(`${inHeader} is not a statestream state export: it ends inside its first value`));

    // A first value that claims 4 GiB (a MessagePack str32) is no header: refused after 1 MiB, not read to its end.
    const huge = exportOf([]);
    writeFileSync(huge, Buffer.concat([Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff]), Buffer.alloc(3 * 1024 * 1024, 0x61)]));
    rejectsWith(() => readStateExport(huge), new RegExp(`${huge} is not a statestream state export: its first value is larger than 1048576 bytes`));
  });

  it('refuses files that are not exports, newer formats, bad keys and wrong counts, naming the file', () => {
    const dir = tempDir();
    const json = join(dir, 'state.json');
    writeFileSync(json, JSON.stringify({ a: 1 }));
    rejectsWith(() => readStateExport(json), new RegExp(`${json} is not a statestream state export`));
    const empty = join(dir, 'empty');
    writeFileSync(empty, '');
    rejectsWith(() => readStateExport(empty), /the file is empty/);
    rejectsWith(() => readStateExport(join(dir, 'missing.msgpack')), /cannot read state export .*missing\.msgpack.*ENOENT/);

    const newer = join(dir, 'newer.msgpack');
    writeFileSync(newer, entryCodec.pack({ format: 'statestream-state', formatVersion: 2, stateVersion: 1, createdAt: '' }));
    rejectsWith(() => readStateExport(newer), /has format version 2, but this statestream reads versions up to 1/);
    const formatless = join(dir, 'formatless.msgpack');
    writeFileSync(formatless, entryCodec.pack({ format: 'statestream-state', stateVersion: 1, createdAt: '' }));
    rejectsWith(() => readStateExport(formatless), new RegExp(`${formatless} is not a statestream state export: its header has no valid formatVersion \\(undefined\\)`));
    const versionless = join(dir, 'versionless.msgpack');
    writeFileSync(versionless, entryCodec.pack({ format: 'statestream-state', formatVersion: 1, createdAt: '' }));
    rejectsWith(() => readStateExport(versionless), /its header has no valid stateVersion \(undefined\)/);

    const badKey = exportOf([['a', 1, 1], [['only'], 2, 1]]);
    rejectsWith(() => [...readStateExport(badKey).entries()], new RegExp(`entry 1 of state export ${badKey}: key \\["only"\\] cannot be an LMDB key`));
    const badTime = exportOf([['a', 1, 'soon' as never]]);
    rejectsWith(() => [...readStateExport(badTime).entries()], /entry 0 of state export .*: lastUpdated must be a batch time/);
    const endless = exportOf([['a', 1, Number.POSITIVE_INFINITY]]);
    rejectsWith(() => [...readStateExport(endless).entries()], /entry 0 of state export .*: lastUpdated must be a batch time/);

    const counted = exportOf([['a', 1, 1]]);
    const bytes = readFileSync(counted);
    const trailer = entryCodec.pack({ end: true, keyCount: 1 }).length;
    writeFileSync(counted, Buffer.concat([bytes.subarray(0, bytes.length - trailer), entryCodec.pack({ end: true, keyCount: 2 })]));
    rejectsWith(() => [...readStateExport(counted).entries()], /says it holds 2 entries, but 1 were read/);
    const trailing = exportOf([['a', 1, 1]]);
    appendFileSync(trailing, Buffer.from([1]));
    rejectsWith(() => [...readStateExport(trailing).entries()], /data after its end marker/);
  });

  it('writes nothing under the target name when an entry cannot be exported', async () => {
    const file = join(tempDir(), 'bad.msgpack');
    await assert.rejects(writeStateExport(file, { stateVersion: 1 }, [['a', 1, 1], ['b', { f: () => 1 }, 1]]), (error: unknown) => {
      assert.ok(error instanceof EncodingError);
      assert.match((error as Error).message, /the state of entry 1 given to writeStateExport \(key "b"\) cannot be stored: the value\.f is a function/);
      return true;
    });
    await assert.rejects(writeStateExport(file, { stateVersion: 1 }, [[{ no: 1 }, 1, 1]]), /entry 0 given to writeStateExport: key \{"no":1\} cannot be an LMDB key/);
    await assert.rejects(writeStateExport(file, null as never, []), (e: unknown) => e instanceof ConfigError && /writeStateExport: the header must be an object with a stateVersion, got null/.test((e as Error).message));
    await assert.rejects(writeStateExport(file, { stateVersion: 0 }, []), /header.stateVersion must be a positive integer, got 0/);
    await assert.rejects(writeStateExport(file, { stateVersion: 1 }, [['a', 1, 5, 'more'] as never]), /entry 0 given to writeStateExport .*is not a \[key, state, lastUpdated\] array/);
    await assert.rejects(writeStateExport(file, { stateVersion: 1 }, 5 as never), (e: unknown) => e instanceof ConfigError && /entries must be an iterable/.test((e as Error).message));
    assert.deepEqual(readdirSync(dirname(file)), [], 'neither the target nor a temporary file');
    // A blank path names no file: it is refused, not written as a file named by spaces in the working folder.
    try {
      await assert.rejects(writeStateExport('   ', { stateVersion: 1 }, [['a', 1, 1]]), (e: unknown) => e instanceof ConfigError && /^writeStateExport: target must be a file path or a writable stream, got "   "$/.test((e as Error).message));
    } finally {
      rmSync('   ', { force: true });
    }
    // What the caller gives as the header's origin cannot make the file another format than the one this writes (and reads).
    await writeStateExport(file, { stateVersion: 1, formatVersion: 2 } as never, [['a', 1, 5]]);
    assert.deepEqual([readStateExport(file).header.format, readStateExport(file).header.formatVersion], ['statestream-state', 1]);
  });

  it('exportJobState refuses a missing or damaged partition store, a swap a crash left half-done, a newer store format and a cluster instance\'s folder, without making an empty store in its place', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(3), { dataDir });
    await job.batch([['a', 1], ['b', 1], ['c', 1], ['d', 1], ['e', 1]]);
    await job.ssc.stop();
    const file = join(tempDir(), 'state.msgpack');

    const gone = partitionPath(dataDir, 0, 2);
    const kept = join(tempDir(), 'partition-0002');
    renameSync(gone, kept);
    await assert.rejects(exportJobState(dataDir, file), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /partition 2 of mapWithState stream 0 is damaged: the partition folder is missing .* a start restores it from the newest snapshot that fits/);
      return true;
    });
    assert.equal(existsSync(gone), false, 'no empty store was made in its place');
    assert.equal(existsSync(file), false);
    renameSync(kept, gone);

    // A swap a crash left half-done: the folder may hold the state before it.
    mkdirSync(`${stateDir(dataDir, 0)}.importing`);
    await assert.rejects(exportJobState(dataDir, file), (error: unknown) => error instanceof StoreMismatchError && /an import of stream 0 was interrupted .*; start the job once so that it finishes it/.test(error.message));
    rmdirSync(`${stateDir(dataDir, 0)}.importing`);

    // A store written by a newer statestream, and a cluster instance's copy: neither is read as this job's state.
    const second = partitionPath(dataDir, 0, 1);
    const rewrite = (change: (store: ReturnType<typeof openPartitionStore>) => void) => {
      const store = openPartitionStore(second);
      try {
        change(store);
      } finally {
        store.env.close();
      }
    };
    let layout: ReturnType<typeof readLayout>;
    rewrite((store) => {
      layout = readLayout(store);
      writeLayout(store, { ...layout!, formatVersion: 99 });
    });
    await assert.rejects(exportJobState(dataDir, file), (error: unknown) => error instanceof StoreMismatchError && /partition 1 of mapWithState stream 0 at .* is in store format 99, written by a newer statestream/.test(error.message));
    rewrite((store) => {
      writeLayout(store, layout!);
      store.meta.putSync('cluster', { instance: 'a' });
    });
    await assert.rejects(exportJobState(dataDir, file), (error: unknown) => error instanceof StoreMismatchError && /exportJobState: .* is a cluster instance's folder: it holds copies of the partitions of stream 0/.test(error.message));
    // An instance that never owned partition 0 has no folder for it: the folder is what is wrong, not a partition.
    const first = partitionPath(dataDir, 0, 0);
    const firstKept = join(tempDir(), 'partition-0000');
    renameSync(first, firstKept);
    await assert.rejects(exportJobState(dataDir, file), (error: unknown) => error instanceof StoreMismatchError && /exportJobState: .* is a cluster instance's folder: it holds copies of the partitions of stream 0/.test(error.message));
    renameSync(firstKept, first);
    rewrite((store) => store.meta.removeSync('cluster'));
    assert.equal(existsSync(file), false);
    assert.equal(await exportJobState(dataDir, file), 5);
  });

  it('exportJobState says which state is missing: no folder for the stream, a folder with no partition store, or a partition 0 with no layout', async () => {
    const file = join(tempDir(), 'state.msgpack');
    const bare = tempDir();
    await assert.rejects(exportJobState(bare, file), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.message, `exportJobState: no state stores of mapWithState stream 0 under ${bare} (no ${stateDir(bare, 0)})`);
      return true;
    });
    assert.equal(existsSync(stateDir(bare, 0)), false, 'no folder made in its place');
    mkdirSync(stateDir(bare, 0));
    await assert.rejects(exportJobState(bare, file), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.message, `exportJobState: no state stores of mapWithState stream 0 under ${bare} (${stateDir(bare, 0)} holds no partition store)`);
      return true;
    });
    // A store a first start created and never initialised.
    openPartitionStore(partitionPath(bare, 0, 0)).env.close();
    await assert.rejects(exportJobState(bare, file), (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(error.message, `exportJobState: ${partitionPath(bare, 0, 0)} is not a statestream partition store (it has no layout)`);
      return true;
    });
    assert.equal(existsSync(file), false);
  });

  it('exportJobState refuses a target in the job\'s data folder, also through a link (to a file or to nothing yet), and leaves its files as they were', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(1), { dataDir });
    await job.batch([['a', 1]]);
    await job.ssc.stop();
    const store = join(partitionPath(dataDir, 0, 0), 'data.mdb');
    const before = readFileSync(store);
    const link = join(tempDir(), 'out.msgpack');
    symlinkSync(store, link);
    const dangling = join(tempDir(), 'to-nothing.msgpack');
    symlinkSync(join(dataDir, 'new.msgpack'), dangling);
    for (const target of [store, join(dataDir, 'statestream.lock'), join(dataDir, 'new.msgpack'), link, dangling, dataDir]) {
      await assert.rejects(exportJobState(dataDir, target), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /^exportJobState: target .* would write .*, inside the data folder .*, whose files are the job's; write the export outside it$/);
        return true;
      }, target);
    }
    assert.deepEqual(readFileSync(store), before, 'the store is as it was');
    assert.ok(!existsSync(join(dataDir, 'new.msgpack')));
    // A file of the data folder named through a link to the folder itself.
    const alias = join(tempDir(), 'alias');
    symlinkSync(dataDir, alias);
    await assert.rejects(exportJobState(dataDir, join(alias, 'state-0', 'partition-0000', 'data.mdb')), (error: unknown) => error instanceof ConfigError && /inside the data folder/.test(error.message));
    assert.deepEqual(readFileSync(store), before, 'the store is as it was');
    // A file beside the folder whose name begins with the folder's is outside it; an empty dataDir is no folder.
    assert.equal(await exportJobState(dataDir, `${dataDir}-state.msgpack`), 1);
    await assert.rejects(exportJobState('', join(tempDir(), 'x.msgpack')), /dataDir must be a non-empty path string/);
    await assert.rejects(exportJobState('  ', join(tempDir(), 'x.msgpack')), /dataDir must be a non-empty path string, got "  "/);
    // `{ stream }` checked whole: a misspelt option or a stream below 0 would otherwise read stream 0 without a word.
    for (const [options, message] of [[{ strem: 1 }, /exportJobState: unknown option "strem" \(known: stream\)/], [{ stream: -1 }, /exportJobState: stream must be an integer ≥ 0 .*got -1/], [[1], /options must be an object like \{ stream: 0 \}/]] as const) {
      await assert.rejects(exportJobState(dataDir, join(tempDir(), 'x.msgpack'), options as never), (e: unknown) => e instanceof ConfigError && message.test((e as Error).message), JSON.stringify(options));
    }
    // The stream's folder moved to another disk and linked back: its files are the job's by either path.
    const elsewhere = tempDir();
    renameSync(join(dataDir, 'state-0'), join(elsewhere, 'state-0'));
    symlinkSync(join(elsewhere, 'state-0'), join(dataDir, 'state-0'));
    for (const target of [store, join(elsewhere, 'state-0', 'partition-0000', 'data.mdb')]) {
      await assert.rejects(exportJobState(dataDir, target), (error: unknown) => error instanceof ConfigError && /inside the data folder/.test(error.message), target);
    }
    assert.deepEqual(readFileSync(store), before, 'the store is as it was');
    assert.equal(await exportJobState(dataDir, join(tempDir(), 'outside.msgpack')), 1, 'a target outside is written');
    // A chain of links to a file outside is followed to its end (only 40 hops make a loop), and that file written.
    const outside = tempDir();
    writeFileSync(join(outside, 'final.msgpack'), 'older');
    symlinkSync(join(outside, 'final.msgpack'), join(outside, 'second'));
    symlinkSync(join(outside, 'second'), join(outside, 'first'));
    assert.equal(await exportJobState(dataDir, join(outside, 'first')), 1);
    assert.equal(readStateExport(join(outside, 'final.msgpack')).header.format, 'statestream-state');
  });

  it('exportJobState refuses stores whose partitions hold different batches or state versions, and writes nothing', async () => {
    const stopped = async () => {
      const dataDir = tempDir();
      const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(3), { dataDir });
      await job.batch([['a', 1], ['b', 1], ['c', 1], ['d', 1], ['e', 1]]);
      await job.ssc.stop();
      return dataDir;
    };
    const change = (dataDir: string, partition: number, edit: (store: ReturnType<typeof openPartitionStore>) => void) => {
      const store = openPartitionStore(partitionPath(dataDir, 0, partition));
      try {
        edit(store);
      } finally {
        store.env.close();
      }
    };

    // A batch committed by partition 2 only, as when a job stopped in the middle of one.
    const ahead = await stopped();
    change(ahead, 2, (store) => new BatchLog(store).record({ batchTime: 5000, outputs: messageCodec.pack([]), keyCount: new BatchLog(store).last()!.keyCount }));
    const file = join(tempDir(), 'mixed.msgpack');
    await assert.rejects(exportJobState(ahead, file), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /partitions 0, 1 of stream 0 under .* did not commit batch 5000, so the stores are not of one batch/);
      return true;
    });

    // A partition whose store records no batch at all, beside partitions that committed one.
    const unlogged = await stopped();
    change(unlogged, 1, (store) => store.meta.removeSync('last-batch'));
    await assert.rejects(exportJobState(unlogged, file), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /partitions 1 of stream 0 under .* did not commit batch \d+, so the stores are not of one batch/);
      return true;
    });

    // A migration that did not finish: partition 1 at version 2.
    const migrating = await stopped();
    change(migrating, 1, (store) => writeLayout(store, { ...readLayout(store)!, stateVersion: 2 }));
    await assert.rejects(exportJobState(migrating, file), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /are at state versions 1 and 2, because a migration did not finish/);
      return true;
    });
    assert.ok(!existsSync(file) && !existsSync(`${file}.tmp`), 'nothing written');
  });

  it('the batch check and the entries of an export read the pinned transactions, not a batch committed after the pin', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir });
    await job.batch([['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
    await job.ssc.stop();
    const stores = [0, 1].map((p) => openPartitionStore(partitionPath(dataDir, 0, p)));
    try {
      const pinnedBatch = new BatchLog(stores[0]).last()!.batchTime;
      const txns = stores.map((store) => {
        store.env.resetReadTxn();
        return store.env.useReadTransaction();
      });
      try {
        // Partition 0 commits a later batch after the pin, as a running job's worker would.
        const log = new BatchLog(stores[0]);
        log.record({ batchTime: pinnedBatch + 1000, outputs: messageCodec.pack([]), keyCount: log.last()!.keyCount });
        assert.deepEqual(storesOrigin(stores, dataDir, 0, txns), { stateVersion: 1, numPartitions: 2, stream: 0, batchTime: pinnedBatch });
        assert.throws(() => storesOrigin(stores, dataDir, 0), /partitions 1 of stream 0 under .* did not commit batch/, 'unpinned, the stores are at different batches');
      } finally {
        txns.forEach((txn) => txn.done());
      }
    } finally {
      stores.forEach((store) => store.env.close());
    }
  });

  it('a partition one batch behind, as a running job leaves it between two commits, is waited for: the export is of the batch it then commits', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir });
    await job.batch([['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
    await job.ssc.stop();
    const path = partitionPath(dataDir, 0, 1);
    const store = openPartitionStore(path);
    const last = new BatchLog(store).last()!;
    new BatchLog(store).record({ ...last, batchTime: last.batchTime - 1000 });
    store.env.close();
    // Another process commits partition 1's batch while the export waits, as a running job's worker would.
    const worker = await storeCommitter(path);
    const file = join(tempDir(), 'state.msgpack');
    try {
      setTimeout(() => worker.send(`batch ${last.batchTime}`), 300);
      assert.equal(await exportJobState(dataDir, file), 4);
      await worker.printed(`recorded ${last.batchTime}`);
    } finally {
      await worker.stop();
    }
    const source = readStateExport<string, number>(file);
    assert.equal(source.header.batchTime, last.batchTime, 'the export is of the batch partition 1 committed while it waited');
    assert.deepEqual([...source.entries()].map(([key, count]) => [key, count]).sort(), [['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
  });

  it('a stream destroyed without an error (an HTTP client gone) ends the export with an error instead of waiting for good', async () => {
    let received = 0;
    const gone = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        // Destroyed with its write unanswered: neither 'drain' nor 'error' will come.
        if (received > 200_000) this.destroy();
        else setImmediate(done);
      },
    });
    const entries = Array.from({ length: 100_000 }, (_, i): ExportEntry => [`key-${i}`, i, 1000]);
    await assert.rejects(writeStateExport(gone, { stateVersion: 1 }, entries), (error: unknown) => {
      assert.ok(error instanceof StateExportError, String(error));
      assert.match((error as Error).message, /the stream the export was written to was closed before the export ended/);
      return true;
    });
  });

  // A stream that gives no sign (no 'drain', 'close' or 'error') would keep the export waiting for good: a time limit makes that a failure.
  it('a stream destroyed or ended before the export, or destroyed by its last write, ends the export with an error', { timeout: 30_000 }, async () => {
    const closedBefore = /the stream the export was written to was closed before the export ended/;
    const destroyed = new PassThrough();
    destroyed.destroy();
    await assert.rejects(writeStateExport(destroyed, { stateVersion: 1 }, [['a', 1, 1000]]), (e: unknown) => e instanceof StateExportError && closedBefore.test((e as Error).message));
    const ended = new PassThrough();
    ended.end();
    ended.resume();
    await assert.rejects(writeStateExport(ended, { stateVersion: 1 }, [['a', 1, 1000]]), (e: unknown) => e instanceof StateExportError && closedBefore.test((e as Error).message));
    // Takes the whole export in one write, then is gone: the export did not reach anyone whole.
    let writes = 0;
    const goneAfter = new Writable({
      write(_chunk, _encoding, done) {
        writes++;
        done();
        this.destroy();
      },
    });
    await assert.rejects(writeStateExport(goneAfter, { stateVersion: 1 }, [['a', 1, 1000]]), (e: unknown) => e instanceof StateExportError && closedBefore.test((e as Error).message));
    assert.equal(writes, 1);
  });

  it('a target that is a loop of symbolic links is refused, named, and nothing is written beside it', async () => {
    const dir = tempDir();
    symlinkSync(join(dir, 'b.msgpack'), join(dir, 'a.msgpack'));
    symlinkSync(join(dir, 'a.msgpack'), join(dir, 'b.msgpack'));
    await assert.rejects(writeStateExport(join(dir, 'a.msgpack'), { stateVersion: 1 }, [['a', 1, 1000]]), (e: unknown) => e instanceof StateExportError && /cannot write the export .*a\.msgpack: it is a loop of symbolic links/.test((e as Error).message));
    assert.deepEqual(readdirSync(dir).sort(), ['a.msgpack', 'b.msgpack']);
    assert.ok(!existsSync(join(process.cwd(), 'undefined')));
  });

  it('a regular file under /dev/shm is replaced whole, as any file is, not appended to', async () => {
    const file = `/dev/shm/statestream-export-test-${process.pid}-${Date.now()}.msgpack`;
    try {
      await writeStateExport(file, { stateVersion: 1 }, [['a', 1, 1000]]);
      await writeStateExport(file, { stateVersion: 1 }, [['b', 2, 2000]]);
      assert.deepEqual([...readStateExport(file).entries()], [['b', 2, 2000]]);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('a symbolic link to no file yet: the export is made where it points, and the link stays', async () => {
    const dir = tempDir();
    symlinkSync('target.msgpack', join(dir, 'link.msgpack'));
    await writeStateExport(join(dir, 'link.msgpack'), { stateVersion: 1 }, [['a', 1, 1000]]);
    assert.ok(lstatSync(join(dir, 'link.msgpack')).isSymbolicLink(), 'the link is still a link');
    assert.deepEqual([...readStateExport(join(dir, 'target.msgpack')).entries()], [['a', 1, 1000]]);
    // A relative link resolves from the folder it is really in: here through a linked folder, '..' is real/, not dir/.
    mkdirSync(join(dir, 'real', 'inner'), { recursive: true });
    symlinkSync(join(dir, 'real', 'inner'), join(dir, 'via'));
    symlinkSync('../up.msgpack', join(dir, 'real', 'inner', 'out.msgpack'));
    await writeStateExport(join(dir, 'via', 'out.msgpack'), { stateVersion: 1 }, [['b', 2, 2000]]);
    assert.deepEqual([...readStateExport(join(dir, 'real', 'up.msgpack')).entries()], [['b', 2, 2000]]);
    assert.ok(!existsSync(join(dir, 'up.msgpack')));
  });

  it('a header whose batchTime is no batch time is refused, not recorded as the last batch', async () => {
    // Not written either: its own reader would refuse it.
    for (const batchTime of [Number.NaN, Number.NEGATIVE_INFINITY]) {
      const file = join(tempDir(), 'state.msgpack');
      await assert.rejects(writeStateExport(file, { stateVersion: 1, batchTime }, [['a', 1, 0]]), (e: unknown) => e instanceof ConfigError && /header\.batchTime must be a finite number/.test((e as Error).message));
      assert.ok(!existsSync(file));
    }
    for (const batchTime of [Number.NaN, Number.POSITIVE_INFINITY, 'soon']) {
      const file = join(tempDir(), 'state.msgpack');
      writeFileSync(file, Buffer.concat([
        entryCodec.pack({ format: 'statestream-state', formatVersion: 1, stateVersion: 1, batchTime, createdAt: new Date().toISOString() }),
        entryCodec.pack({ end: true, keyCount: 0 }),
      ]));
      rejectsWith(() => readStateExport(file), /is not a statestream state export: its header's batchTime is not a batch time/);
    }
  });

  it('an export replaced after it was opened is refused when read, not read as of the old header', async () => {
    const file = join(tempDir(), 'state.msgpack');
    await writeStateExport(file, { stateVersion: 1 }, [['a', 1, 1000]]);
    const opened = readStateExport(file);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await writeStateExport(file, { stateVersion: 2 }, [['a', { count: 1 }, 1000]]);
    rejectsWith(() => [...opened.entries()], /state export .* was replaced after it was opened \(its header changed\); open it again with readStateExport/);
    assert.deepEqual([...readStateExport(file).entries()], [['a', { count: 1 }, 1000]]);
    // A header field of the caller's that JSON cannot carry still reads back.
    await writeStateExport(file, { stateVersion: 1, note: 2n ** 70n }, [['a', 1, 1000]]);
    assert.deepEqual([...readStateExport(file).entries()], [['a', 1, 1000]]);
  });

  it('initialState from a source written by hand: a state no batch could store, or none, fails the start, named', async () => {
    const source = (state: unknown): StateSource => ({ description: 'the test source', stateVersion: 1, entries: () => [['ok', 1, 0], ['bad', state, 0]] });
    for (const [state, pattern] of [
      [{ f: () => 1 }, /the state of entry 1 of the test source \(key "bad"\) cannot be stored/],
      ['x\ud800', /the state of entry 1 of the test source \(key "bad"\) cannot be stored/],
      [undefined, /entry 1 of the test source \(key "bad"\) has no state \(undefined\): leave the key out instead/],
    ] as const) {
      const spec = StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2).initialState(source(state) as StateSource<string, number>);
      await assert.rejects(keyedJob(spec, { dataDir: tempDir() }), (error: unknown) => {
        assert.match((error as Error).message, pattern);
        return true;
      }, String(pattern));
    }
  });

  it('initialState from a source written by hand: a key of -0, alone or in a tuple, is the key 0, one state that records of 0 find', async () => {
    const source: StateSource<unknown, number> = { description: 'the test source', stateVersion: 1, entries: () => [[-0, 5, 0], [['t', -0], 7, 0]] };
    const job = await keyedJob(StateSpec.function<unknown, number, number, unknown>(fixture('count')).numPartitions(4).initialState(source), { dataDir: tempDir() });
    try {
      const out = await job.batch([[0, 1], [['t', 0], 1]]);
      assert.deepEqual(out.map((r) => JSON.stringify(r)).sort(), ['[0,6]', '[["t",0],8]']);
      assert.equal(job.stream.store().count(), 2, 'no second state under -0');
      assert.deepEqual([job.stream.store().get(0), job.stream.store().get(['t', 0])], [6, 8]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('initialState from a source written by hand: each key times out once, by its own lastUpdated, on the same rule as a stored key; the clock must start after the newest', async () => {
    const source: StateSource<string, number> = { description: 'the test source', stateVersion: 1, entries: () => [['twice', 1, -1], ['edge', 7, 0], ['twice', 2, -1]] };
    const spec = () => StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(1).timeout(1000).initialState(source);
    const job = await keyedJob(spec(), { dataDir: tempDir() });
    try {
      // Batch 1000: the threshold is 0. A key last updated at -1 is idle past it; one at 0 is not, yet.
      assert.deepEqual(await job.batch([]), [['timeout', 'twice', 2, 1000]]);
      assert.deepEqual(await job.batch([]), [['timeout', 'edge', 7, 2000]]);
    } finally {
      await job.ssc.stop();
    }
    // The newest entry last: the clock is checked against it, not against the first.
    const late: StateSource<string, number> = { description: 'the late source', stateVersion: 1, entries: () => [['x', 1, 0], ['y', 1, 5000], ['z', 1, 10]] };
    await assert.rejects(
      keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(1).initialState(late), { dataDir: tempDir() }),
      (error: unknown) => error instanceof StoreMismatchError && /holds keys last updated at 5000, but this context's first batch would be at 1000/.test((error as Error).message),
    );
  });
});
