import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, cpSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import zookeeper from 'node-zookeeper-client';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, listSnapshots, murmur2Partitioner } from '../../src/index.js';
import { BatchLog, FORMAT_VERSION, readLayout, writeLayout, type StoreLayout } from '../../src/storage/partition/batch-log.js';
import { readStateExport, writeStateExport } from '../../src/storage/export/state-export.js';
import { messageCodec } from '../../src/storage/codec.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { verifySnapshot } from '../../src/storage/snapshots/manifest.js';
import { ZooKeeperSession } from '../../src/storage/zookeeper/session.js';
import { ownedOffsetStore } from '../storage/zookeeper/owned-store.js';
import { editLayout, fixture, keyedJob, runThenStop, tempDir } from '../helpers.js';
import { nextEvent, within } from '../wait.js';
import { startZooKeeper, type ZooKeeperServer } from '../integration/services/zookeeper.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(...args: string[]): Run {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Runs the CLI once for each argument list, four processes at a time; results by the arguments joined with spaces. */
async function runEach(argLists: string[][]): Promise<Map<string, Run>> {
  const results = new Map<string, Run>();
  const queue = [...argLists];
  const worker = async () => {
    for (let args = queue.shift(); args !== undefined; args = queue.shift()) {
      const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
      // Killed at the deadline: say which command hung.
      results.set(args.join(' '), { code, stdout, stderr: signal ? `statestream ${args.join(' ')} was killed (${signal}) after 60 s\n${stderr}` : stderr });
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return results;
}

type Key = string | [string, number];
const spec = (numPartitions = 3) => StateSpec.function<Key, number, number, [Key, number]>(fixture('count')).numPartitions(numPartitions);
const records = (batch: number): Array<[Key, number]> => [
  ...Array.from({ length: 60 }, (_, i) => [`w${(i * 7 + batch * 13) % 41}`, 1] as [Key, number]),
  [['user', 7], batch],
  [['user', 8], 1],
];

/**
 * A job's whole state, as the engine reads it. Every key must also answer get() (which reads
 * only the partition the router sends the key to) and sit in that partition on disk: entries()
 * merges partitions, so a key stored in the wrong one would pass unseen there, yet a running
 * job would not find it and would count it again from 1.
 */
async function stateOf(dataDir: string, startMs: number, numPartitions = 3): Promise<Array<[unknown, unknown]>> {
  const job = await keyedJob(spec(numPartitions), { dataDir, startMs });
  let entries: Array<[unknown, unknown]>;
  try {
    entries = [...job.stream.store().entries()] as Array<[unknown, unknown]>;
    for (const [key, state] of entries) assert.deepEqual(job.stream.store().get(key as Key), state, `get(${JSON.stringify(key)})`);
  } finally {
    await job.ssc.stop();
  }
  assertRoutedAsTheRouter(dataDir, numPartitions);
  return entries;
}

/** Each key of a stopped job's stores is in the partition murmur2 routes it to. */
function assertRoutedAsTheRouter(dataDir: string, numPartitions: number): void {
  for (let p = 0; p < numPartitions; p++) {
    const store = openPartitionStore(partitionPath(dataDir, 0, p));
    try {
      for (const key of store.state.getKeys()) {
        assert.equal(murmur2Partitioner.partition(key, numPartitions), p, `key ${JSON.stringify(key)} is stored in partition ${p} of ${numPartitions}`);
      }
    } finally {
      store.env.close();
    }
  }
}

/** The folder of a stopped job that ran batches 1000…4000 with snapshots at 2000 and 4000, and its state after each batch. */
let jobRun: Promise<{ dataDir: string; stateAt: Map<number, Array<[unknown, unknown]>> }> | undefined;
function jobFolder() {
  return (jobRun ??= runJob());
}
async function runJob() {
  const dataDir = tempDir();
  const stateAt = new Map<number, Array<[unknown, unknown]>>();
  const job = await keyedJob(spec(), { dataDir, snapshotEvery: 2 });
  try {
    for (let b = 1; b <= 4; b++) {
      // A snapshot still copying is not stacked with another: wait for each one.
      const copied = b % 2 === 0 ? nextEvent(job.ssc, BatchEvents.SNAPSHOT_COMPLETED, `the snapshot of batch ${b * 1000}`) : undefined;
      await job.batch(records(b));
      stateAt.set(b * 1000, [...job.stream.store().entries()] as Array<[unknown, unknown]>);
      await copied;
    }
  } finally {
    await job.ssc.stop();
  }
  return { dataDir, stateAt };
}

describe('statestream command-line tool', () => {
  let dataDir: string;
  let stateAt: Map<number, Array<[unknown, unknown]>>;
  before(async () => void ({ dataDir, stateAt } = await jobFolder()));

  /** A copy of the job's folder a test may change. */
  const copy = () => {
    const dir = tempDir();
    cpSync(dataDir, dir, { recursive: true });
    return dir;
  };
  const keysAt4000 = () => stateAt.get(4000)!.length;

  it('inspect prints the layout, partitions, snapshots and recorded offsets, and --json the same as one document', () => {
    const human = run('inspect', '--data-dir', dataDir);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /Stream 0/);
    assert.match(human.stdout, /layout: 3 partitions, partitioner murmur2, format version 1, time index off/);
    assert.match(human.stdout, new RegExp(`keys: ${keysAt4000()}\\s+last committed batch: 4000`));
    assert.match(human.stdout, /partition-0002/);
    assert.match(human.stdout, /Snapshots: 2, newest 4000/);
    assert.match(human.stdout, /Offsets \(as recorded by snapshot 4000/);

    const json = run('inspect', '--data-dir', dataDir, '--json');
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout);
    assert.equal(report.healthy, true);
    assert.equal(report.streams.length, 1);
    assert.equal(report.streams[0].layout.numPartitions, 3);
    assert.equal(report.streams[0].keyCount, keysAt4000());
    assert.equal(report.streams[0].lastBatch, 4000);
    assert.deepEqual(report.streams[0].partitions.map((p: { partition: number; problem?: string }) => [p.partition, p.problem]), [[0, undefined], [1, undefined], [2, undefined]]);
    assert.ok(report.streams[0].partitions.every((p: { bytes: number }) => p.bytes > 0));
    assert.deepEqual(report.snapshots.map((s: { batchTime: number }) => s.batchTime), [4000, 2000]);
    assert.deepEqual(report.offsets, { from: 'snapshot', snapshot: 4000, sources: [] });
  });

  it('inspect reports a partition whose folder is gone, with exit code 1', () => {
    const dir = copy();
    rmSync(partitionPath(dir, 0, 2), { recursive: true });
    const result = run('inspect', '--data-dir', dir, '--json');
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout);
    assert.equal(report.healthy, false);
    assert.deepEqual(report.streams[0].partitions.map((p: { partition: number }) => p.partition), [0, 1, 2]);
    assert.equal(report.streams[0].partitions[2].problem, 'the partition folder is missing');
  });

  it('inspect reports a truncated store as damaged with exit code 1, and state get refuses it without crashing', () => {
    const dir = copy();
    const file = join(partitionPath(dir, 0, 1), 'data.mdb');
    truncateSync(file, Math.floor(statSync(file).size / 2));
    const result = run('inspect', '--data-dir', dir, '--json');
    assert.equal(result.code, 1);
    const report = JSON.parse(result.stdout);
    assert.equal(report.healthy, false);
    assert.match(report.streams[0].partitions[1].problem, /truncated/);
    assert.match(result.stderr, /^statestream: stream 0 partition 1: data.mdb is truncated/);
    const count = run('state', 'count', '--data-dir', dir);
    assert.equal(count.code, 1);
    assert.match(count.stderr, /partition 1 of stream 0 is damaged/);
  });

  it('import --replace replaces a stream whose store is damaged: the damaged state is moved aside, not a reason to refuse', async () => {
    const dir = copy();
    truncateSync(join(partitionPath(dir, 0, 1), 'data.mdb'), 100);
    const file = join(tempDir(), 'small.msgpack');
    await writeStateExport(file, { stateVersion: 1, batchTime: 5000, numPartitions: 2 }, [['a', 1, 5000], ['b', 2, 5000], ['c', 3, 4000]]);
    const imported = run('import', file, '--replace', '--data-dir', dir);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /^Imported 3 keys into stream 0 .*\(2 partitions, state version 1, last batch 5000\)\.$/m);
    assert.match(imported.stdout, /The state it replaced is kept in .*replaced/);
    assert.equal(run('state', 'count', '--data-dir', dir).stdout.trim(), '3');
  });

  it('inspect counts each partition\'s dead letters, and shows a store a first start created but never initialised as empty', async () => {
    const dir = tempDir();
    // One poisoned key in partition 0, two in partition 1: each column's count is its own.
    const candidates = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const poisoned = [...candidates.filter((k) => murmur2Partitioner.partition(k, 2) === 0).slice(0, 1), ...candidates.filter((k) => murmur2Partitioner.partition(k, 2) === 1).slice(0, 2)];
    const faulty = StateSpec.function<string, unknown, number, unknown>(fixture('faulty')).numPartitions(2).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 });
    const job = await keyedJob(faulty, { dataDir: dir });
    let letters: number[];
    try {
      await job.batch([...poisoned.map((k): [string, unknown] => [k, { poison: true }]), ['a', 1]]);
      letters = [0, 1].map((p) => job.stream.deadLetters().filter((l) => l.partition === p).length);
    } finally {
      await job.ssc.stop();
    }
    assert.deepEqual(letters, [1, 2]);
    const json = run('inspect', '--data-dir', dir, '--json');
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout).streams[0].partitions.map((p: { deadLetters: number }) => p.deadLetters), letters);
    const human = run('inspect', '--data-dir', dir).stdout;
    for (const p of [0, 1]) assert.match(human, new RegExp(`^ +${p} +ok +\\d+ +1000 +\\S+ \\S+ +${letters[p]} +\\S+partition-000${p}$`, 'm'), human);

    // As a first start leaves a store it opened and died before writing its layout.
    const fresh = tempDir();
    openPartitionStore(partitionPath(fresh, 0, 0)).env.close();
    const empty = run('inspect', '--data-dir', fresh);
    assert.match(empty.stdout, /^ +0 +empty \(never initialised\) +0 +- +/m, empty.stdout);
    assert.equal(JSON.parse(run('inspect', '--data-dir', fresh, '--json').stdout).streams[0].partitions[0].initialised, false);

    // A reshard's report counts the dead letters it moved, beside the keys and the batch.
    const resharded = run('reshard', '--partitions', '3', '--data-dir', dir, '--json');
    assert.equal(resharded.code, 0, resharded.stderr);
    const report = JSON.parse(resharded.stdout) as Record<string, unknown>;
    assert.deepEqual([report.keyCount, report.deadLetters, report.batchTime], [1, 3, 1000]);
  });

  it('inspect gives no size for a partition whose data.mdb is gone, and names it missing', () => {
    const dir = copy();
    rmSync(join(dir, 'state-0', 'partition-0001', 'data.mdb'));
    const json = run('inspect', '--data-dir', dir, '--json');
    const partitions = (JSON.parse(json.stdout) as { streams: Array<{ partitions: Array<{ bytes?: number; problem?: string }> }> }).streams[0].partitions;
    assert.ok(partitions[0].bytes! > 0);
    assert.deepEqual([partitions[1].bytes, partitions[1].problem], [undefined, 'data.mdb is missing']);
  });

  it('inspect does not call a cluster instance\'s partitions behind: one it gave up holds an older batch, and no batch is in flight', () => {
    const dir = copy();
    // Partition 1 holds batch 2000, partition 0 batch 4000.
    const write = (each: (store: ReturnType<typeof openPartitionStore>, batchTime: number) => void) => {
      for (const [p, batchTime] of [[0, 4000], [1, 2000]]) {
        const store = openPartitionStore(partitionPath(dir, 0, p));
        try {
          store.env.transactionSync(() => each(store, batchTime));
        } finally {
          store.env.close();
        }
      }
    };
    write((store, batchTime) => new BatchLog(store).record({ batchTime, outputs: messageCodec.pack([]), keyCount: store.state.getKeysCount() }));
    // A single-process job's stores: partition 1 is behind, a batch was in flight.
    const single = run('inspect', '--data-dir', dir, '--json');
    assert.deepEqual(JSON.parse(single.stdout).streams[0].behind, [1], single.stdout);
    assert.match(run('inspect', '--data-dir', dir).stdout, /partitions 1 hold an older batch/);
    // As an instance leaves them: partition 1 was given up after batch 2000, partition 0 kept until 4000.
    write((store) => store.meta.putSync('cluster', { position: 0, marks: {}, changelogOffset: 0, epoch: 1, epochAt: 0 }));
    const result = run('inspect', '--data-dir', dir, '--json');
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout).streams[0].behind, []);
    assert.doesNotMatch(run('inspect', '--data-dir', dir).stdout, /hold an older batch/);
  });

  it('an interrupted reshard is reported by inspect, refused by reads, and settled before a restore', () => {
    const dir = copy();
    // New stores half-built (no complete marker): the next start rolls them back.
    cpSync(join(dir, 'state-0'), join(dir, 'state-0.reshard'), { recursive: true });
    const inspected = run('inspect', '--data-dir', dir);
    assert.equal(inspected.code, 0, inspected.stderr);
    assert.match(inspected.stdout, /a reshard of stream 0 was interrupted .*state-0\.reshard.*: the next start finishes it/);
    const count = run('state', 'count', '--data-dir', dir);
    assert.equal(count.code, 1);
    assert.match(count.stderr, /a reshard of stream 0 was interrupted .* start the job once/);
    const restored = run('snapshot', 'restore', '2000', '--data-dir', dir);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /A reshard a crash had interrupted was rolled back first/);
    assert.ok(!existsSync(join(dir, 'state-0.reshard')));
  });

  // Killed before the marker, the command changed nothing; killed after it, at either rename,
  // the next start finishes it: never a stream without state, never another snapshot's.
  const killPoints = (kind: 'importing' | 'restoring') =>
    [
      ['before its complete marker', `write:state-0.${kind}/complete.writing`, 4000],
      ['with its complete marker written but not yet in place', `rename:state-0.${kind}/complete.writing`, 4000],
      ['before the old state moves aside', 'rename:state-0', 2000],
      ['between the old state moving aside and the new moving in', `rename:state-0.${kind}`, 2000],
    ] as const;
  const killedRun = (killAt: string, ...args: string[]): Run => {
    const killAtFixture = fileURLToPath(fixture('kill-at'));
    const result = spawnSync(process.execPath, ['--import', killAtFixture, cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, STATESTREAM_TEST_KILL_AT: killAt } });
    assert.equal(result.signal, 'SIGKILL', `${args[0]} was killed at ${killAt}: ${result.stderr}`);
    return { code: result.status, stdout: result.stdout, stderr: result.stderr };
  };
  const replacedFolders = (dir: string) => (existsSync(join(dir, 'replaced')) ? readdirSync(join(dir, 'replaced')) : []);

  for (const [when, killAt, survivor] of killPoints('importing')) {
    it(`import --replace killed ${when}: the next start holds the ${survivor === 2000 ? 'imported' : 'old'} state, whole`, async () => {
      const dir = copy();
      const file = join(tempDir(), 'at-2000.msgpack');
      assert.equal(run('export', '--data-dir', dataDir, '--snapshot', '2000', '--out', file).code, 0);
      killedRun(killAt, 'import', file, '--replace', '--data-dir', dir);
      if (killAt !== 'rename:state-0') assert.match(run('inspect', '--data-dir', dir).stdout, /an import of stream 0 was interrupted .*state-0\.importing/);
      assert.deepEqual(await stateOf(dir, 5000), stateAt.get(survivor));
      assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('state-0.')), [], 'the start settled the import');
      assert.equal(replacedFolders(dir).length, survivor === 2000 ? 1 : 0, 'the replaced state is kept, once');
    });
  }

  for (const [when, killAt, survivor] of killPoints('restoring')) {
    it(`snapshot restore killed ${when}: the next start holds the ${survivor === 2000 ? 'restored snapshot' : 'old state'}, not the newest snapshot`, async () => {
      const dir = copy();
      killedRun(killAt, 'snapshot', 'restore', '2000', '--data-dir', dir);
      assert.deepEqual(await stateOf(dir, 5000), stateAt.get(survivor));
      assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('state-0.')), [], 'the start settled the restore');
      assert.equal(replacedFolders(dir).length, survivor === 2000 ? 1 : 0, 'the replaced state is kept, once');
    });
  }

  it('a restore given a relative --data-dir and killed after its marker is finished by a command run from another folder, the old state kept in the data folder', async () => {
    const dir = copy();
    const killed = spawnSync(process.execPath, ['--import', fileURLToPath(fixture('kill-at')), cli, 'snapshot', 'restore', '2000', '--data-dir', basename(dir)], {
      cwd: dirname(dir), encoding: 'utf8', timeout: 60_000, env: { ...process.env, STATESTREAM_TEST_KILL_AT: 'rename:state-0' },
    });
    assert.equal(killed.signal, 'SIGKILL', killed.stderr);
    const elsewhere = tempDir();
    const finished = spawnSync(process.execPath, [cli, 'reshard', '--partitions', '3', '--data-dir', dir], { cwd: elsewhere, encoding: 'utf8', timeout: 60_000 });
    assert.equal(finished.status, 0, finished.stderr);
    assert.match(finished.stdout, /^A snapshot restore a crash had interrupted was finished first/);
    assert.equal(replacedFolders(dir).length, 1, 'the replaced state is kept in the data folder');
    assert.deepEqual(readdirSync(elsewhere), [], 'nothing is written where the finishing command ran');
    assert.deepEqual(await stateOf(dir, 5000), stateAt.get(2000));
  });

  it('a restore marker an earlier version wrote with a relative folder keeps the old state under the data folder, not where the finishing command runs', async () => {
    const dir = copy();
    killedRun('rename:state-0', 'snapshot', 'restore', '2000', '--data-dir', dir);
    const marker = join(dir, 'state-0.restoring', 'complete');
    writeFileSync(marker, `${JSON.stringify({ at: new Date().toISOString(), keepOldIn: 'statestream-data/replaced/earlier-run/state-0' })}\n`);
    const elsewhere = tempDir();
    const finished = spawnSync(process.execPath, [cli, 'reshard', '--partitions', '3', '--data-dir', dir], { cwd: elsewhere, encoding: 'utf8', timeout: 60_000 });
    assert.equal(finished.status, 0, finished.stderr);
    assert.ok(existsSync(join(dir, 'replaced', 'earlier-run', 'state-0', 'partition-0000', 'data.mdb')), `the old state is in ${join(dir, 'replaced', 'earlier-run')}: ${replacedFolders(dir).join(', ')}`);
    assert.deepEqual(readdirSync(elsewhere), []);
  });

  it('a restore interrupted under one path and finished after its data folder moved keeps the old state in the moved folder', async () => {
    const dir = copy();
    killedRun('rename:state-0', 'snapshot', 'restore', '2000', '--data-dir', dir);
    const moved = join(tempDir(), 'moved-data');
    renameSync(dir, moved);
    const finished = spawnSync(process.execPath, [cli, 'reshard', '--partitions', '3', '--data-dir', moved], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(finished.status, 0, finished.stderr);
    assert.ok(!existsSync(dir), `nothing is made where the folder was (${dir})`);
    const [name] = replacedFolders(moved);
    assert.ok(existsSync(join(moved, 'replaced', name, 'state-0', 'partition-0000', 'data.mdb')), `the old state is in ${join(moved, 'replaced', name)}`);
    assert.deepEqual(await stateOf(moved, 5000), stateAt.get(2000));
  });

  it('an import whose marker an older version left unreadable still keeps the old state, in replaced/', async () => {
    const dir = copy();
    cpSync(join(dir, 'state-0'), join(dir, 'state-0.importing'), { recursive: true });
    writeFileSync(join(dir, 'state-0.importing', 'complete'), '');
    assert.deepEqual(await stateOf(dir, 5000), stateAt.get(4000));
    const [recovered] = replacedFolders(dir);
    assert.match(recovered, /^recovered-\d+$/);
    assert.ok(existsSync(join(dir, 'replaced', recovered, 'state-0', 'partition-0000', 'data.mdb')), 'the old stores are kept, not deleted');
  });

  it('a restore killed between its renames is reported by inspect, refused by reads, and finished by the next command', () => {
    const dir = copy();
    killedRun('rename:state-0.restoring', 'snapshot', 'restore', '2000', '--data-dir', dir);
    assert.ok(!existsSync(join(dir, 'state-0')), 'the old state had moved aside');
    assert.match(run('inspect', '--data-dir', dir).stdout, /a snapshot restore of stream 0 was interrupted .*state-0\.restoring.*: the next start finishes it/);
    assert.match(run('state', 'count', '--data-dir', dir).stderr, /a snapshot restore of stream 0 was interrupted .* start the job once/);
    const resharded = run('reshard', '--partitions', '3', '--data-dir', dir);
    assert.equal(resharded.code, 0, resharded.stderr);
    assert.match(resharded.stdout, /^A snapshot restore a crash had interrupted was finished first\.\nStream 0 already has 3 partitions/);
    const count = run('state', 'count', '--data-dir', dir);
    assert.equal(count.code, 0, count.stderr);
    assert.equal(Number(count.stdout.trim()), stateAt.get(2000)!.length);
  });

  it('snapshot create finishes a restore killed between its renames first, and snapshots the stream it left without a state folder', async () => {
    const dir = copy();
    killedRun('rename:state-0.restoring', 'snapshot', 'restore', '2000', '--data-dir', dir);
    assert.ok(!existsSync(join(dir, 'state-0')), 'the old state had moved aside');
    rmSync(join(dir, 'snapshots'), { recursive: true });
    const created = run('snapshot', 'create', '--data-dir', dir);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^A snapshot restore a crash had interrupted was finished first\.\nSnapshot 2000 written to .*: 3 partitions/);
    const [info] = listSnapshots(dir);
    assert.deepEqual(info.manifest.streams.map((m) => [m.stream, m.keyCount]), [[0, stateAt.get(2000)!.length]]);
    assert.deepEqual(await verifySnapshot(info), []);
  });

  it('with --json, a command lists what a crash had interrupted and it settled first under settledFirst', () => {
    const json = (r: Run) => {
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { settledFirst: unknown; snapshotsOfReplacedState?: boolean; keptNewerSnapshots?: number[]; retiredSnapshots?: number[] };
    };
    // A half-built reshard, rolled back by a restore and by an import.
    const halfReshard = () => {
      const dir = copy();
      cpSync(join(dir, 'state-0'), join(dir, 'state-0.reshard'), { recursive: true });
      return dir;
    };
    assert.deepEqual(json(run('snapshot', 'restore', '2000', '--data-dir', halfReshard(), '--json')).settledFirst, [{ command: 'reshard', stream: 0, outcome: 'rolled-back' }]);
    const file = join(tempDir(), 'at-2000.msgpack');
    assert.equal(run('export', '--data-dir', dataDir, '--snapshot', '2000', '--out', file).code, 0);
    const imported = json(run('import', file, '--replace', '--data-dir', halfReshard(), '--json'));
    assert.deepEqual(imported.settledFirst, [{ command: 'reshard', stream: 0, outcome: 'rolled-back' }]);
    assert.equal(imported.snapshotsOfReplacedState, true, 'the snapshots left are of the replaced state, as the text says');
    assert.equal(json(run('import', file, '--data-dir', tempDir(), '--json')).snapshotsOfReplacedState, false);
    // State replaced, and no snapshots of it to warn about.
    const noSnapshots = copy();
    rmSync(join(noSnapshots, 'snapshots'), { recursive: true });
    const replacedOnly = run('import', file, '--replace', '--data-dir', noSnapshots);
    assert.equal(replacedOnly.code, 0, replacedOnly.stderr);
    assert.match(replacedOnly.stdout, /The state it replaced is kept in /);
    assert.doesNotMatch(replacedOnly.stdout, /snapshots under .* are of the replaced state/);
    // A restore killed between its renames, finished by a snapshot; the reshard after it finds nothing to settle.
    const dir = copy();
    killedRun('rename:state-0.restoring', 'snapshot', 'restore', '2000', '--data-dir', dir);
    rmSync(join(dir, 'snapshots'), { recursive: true });
    assert.deepEqual(json(run('snapshot', 'create', '--data-dir', dir, '--json')).settledFirst, [{ command: 'snapshot restore', stream: 0, outcome: 'finished' }]);
    const resharded = json(run('reshard', '--partitions', '2', '--data-dir', dir, '--json')) as unknown as Record<string, unknown>;
    assert.deepEqual(resharded.settledFirst, []);
    // keyCount, as every other command's JSON names it.
    assert.deepEqual([resharded.from, resharded.to, resharded.keyCount, resharded.changed], [3, 2, stateAt.get(2000)!.length, true]);
    // A reshard that settles a killed restore first and then re-shards says so, in JSON and in text.
    const killed = () => {
      const at = copy();
      killedRun('rename:state-0.restoring', 'snapshot', 'restore', '2000', '--data-dir', at);
      return at;
    };
    assert.deepEqual(json(run('reshard', '--partitions', '2', '--data-dir', killed(), '--json')).settledFirst, [{ command: 'snapshot restore', stream: 0, outcome: 'finished' }]);
    const text = run('reshard', '--partitions', '2', '--data-dir', killed());
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^A snapshot restore a crash had interrupted was finished first\.\nResharded stream 0 from 3 to 2 partitions/);
  });

  it('state get refuses stores another partitioner placed, and inspect does not count a store of a newer format as healthy', () => {
    // Routed by murmur2, a present key would be looked for in another partition and said to be absent.
    const foreign = copy();
    for (const p of [0, 1, 2]) editLayout(foreign, p, { partitioner: 'crc32' });
    const refused = run('state', 'get', 'w13', '--data-dir', foreign);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /the stores use partitioner "crc32"; this tool knows only murmur2/);

    // Partition 0 in a format this version cannot read: unreadable, not a healthy partition behind the others.
    const newer = copy();
    editLayout(newer, 0, { formatVersion: FORMAT_VERSION + 1 });
    const inspected = run('inspect', '--data-dir', newer, '--json');
    const stream = JSON.parse(inspected.stdout).streams[0] as { behind: number[]; layout?: StoreLayout; partitions: Array<{ partition: number; unreadable?: string }> };
    assert.deepEqual(stream.behind, []);
    assert.equal(stream.layout?.numPartitions, 3, 'the layout of a readable partition');
    assert.match(stream.partitions[0].unreadable ?? '', /format/);

    // Stores written before the layout recorded timeIndexed kept their time index: absent means kept, not off.
    const older = copy();
    for (const p of [0, 1, 2]) {
      const store = openPartitionStore(partitionPath(older, 0, p));
      try {
        const { timeIndexed, ...layout } = readLayout(store)!;
        assert.equal(timeIndexed, false, 'the job ran without a timeout');
        writeLayout(store, layout);
      } finally {
        store.env.close();
      }
    }
    const olderInspected = run('inspect', '--data-dir', older);
    assert.equal(olderInspected.code, 0, olderInspected.stderr);
    assert.match(olderInspected.stdout, /layout: 3 partitions, partitioner murmur2, format version 1, time index kept, state version 1\n/);
  });

  it('state get prints a string key\'s and a tuple key\'s state and lastUpdated; an absent key exits 1', () => {
    const expected = new Map(stateAt.get(4000)!.map(([k, s]) => [JSON.stringify(k), s]));
    const word = run('state', 'get', 'w13', '--data-dir', dataDir);
    assert.equal(word.code, 0, word.stderr);
    const [stateLine, updatedLine] = word.stdout.trim().split('\n');
    assert.equal(Number(stateLine), expected.get('"w13"'));
    assert.match(updatedLine, /^lastUpdated \d+/);

    const tuple = run('state', 'get', '["user",7]', '--data-dir', dataDir, '--json');
    assert.equal(tuple.code, 0, tuple.stderr);
    const doc = JSON.parse(tuple.stdout);
    assert.deepEqual(doc.key, ['user', 7]);
    assert.equal(doc.state, 1 + 2 + 3 + 4);
    assert.equal(doc.lastUpdated, 4000);

    const absent = run('state', 'get', 'no-such-word', '--data-dir', dataDir);
    assert.equal(absent.code, 1);
    assert.equal(absent.stdout, '');
    assert.match(absent.stderr, /^statestream: key "no-such-word" is not in the state of stream 0/);
    assert.doesNotMatch(absent.stderr, /\n\s+at /, 'no stack trace');
    // Valid JSON that is no key, and --string that makes it one.
    assert.equal(run('state', 'get', '{"a":1}', '--data-dir', dataDir).code, 2);
    assert.equal(run('state', 'get', '{"a":1}', '--string', '--data-dir', dataDir).code, 1);
    // A key starting with - goes after --, and the refusal without it says so.
    assert.match(run('state', 'get', '--data-dir', dataDir, '--', '-5').stderr, /^statestream: key -5 is not in the state/);
    const optionAfter = run('state', 'get', '--', '-5', '--data-dir', dataDir);
    assert.equal(optionAfter.code, 2);
    assert.match(optionAfter.stderr, /^statestream: state get: unexpected argument "--data-dir" \(everything after -- is an argument: put the options before --\)\n/);
    const negative = run('state', 'get', '-5', '--data-dir', dataDir);
    assert.equal(negative.code, 2);
    assert.match(negative.stderr, /^statestream: unknown option '-5': an argument that starts with '-' goes after --, which ends the options, as in statestream state get \[options\] -- -5\n/);
    // parseArgs names only the first letter it does not know ('-1' of -1.5, '-a' of -abc): the hint names the argument.
    for (const key of ['-1.5', '-abc']) {
      const refused = run('state', 'get', key, '--data-dir', dataDir);
      assert.equal(refused.code, 2);
      assert.ok(refused.stderr.startsWith(`statestream: unknown option '${key}': an argument that starts with '-' goes after --, which ends the options, as in statestream state get [options] -- ${key}\n`), refused.stderr);
    }
    // A single unknown letter is a mistyped option, and a command that takes no argument gets no such hint.
    for (const args of [['state', 'get', 'k', '-j', '--data-dir', dataDir], ['inspect', '-abc', '--data-dir', dataDir]]) {
      const refused = run(...args);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /^statestream: Unknown option '-[ja]'/, refused.stderr);
      assert.doesNotMatch(refused.stderr, /goes after --/);
    }
  });

  it('state get of a number names the string key of the same text when that one is there', async () => {
    const dir = tempDir();
    await runThenStop(spec(2), { dataDir: dir }, [['42', 1]]);
    const hinted = run('state', 'get', '42', '--data-dir', dir);
    assert.equal(hinted.code, 1);
    assert.match(hinted.stderr, /^statestream: key 42 is not in the state of stream 0 \(it would be in partition \d\); the string key "42" is there: add --string to read it\n/);
    assert.equal(run('state', 'get', '42', '--string', '--data-dir', dir).code, 0);
    assert.doesNotMatch(run('state', 'get', '7', '--data-dir', dir).stderr, /string key/, 'no hint for a text that is no key either');
  });

  it('state count prints the number of keys', () => {
    const result = run('state', 'count', '--data-dir', dataDir);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), String(keysAt4000()));
    const missing = run('state', 'count', '--data-dir', dataDir, '--stream', '5');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /stream 5 has no state/);
    assert.equal(result.stderr, '', 'every partition holds one batch: nothing to say');
    assert.equal(JSON.parse(run('state', 'count', '--data-dir', dataDir, '--json').stdout).unevenBatches, false);

    // A partition ahead of the others, as when a batch was in flight: the sum is said to mix batches.
    const dir = copy();
    const store = openPartitionStore(partitionPath(dir, 0, 2));
    new BatchLog(store).record({ batchTime: 5000, outputs: messageCodec.pack([]), keyCount: new BatchLog(store).last()!.keyCount });
    store.env.close();
    const uneven = run('state', 'count', '--data-dir', dir);
    assert.equal(uneven.code, 0, uneven.stderr);
    assert.equal(uneven.stdout.trim(), String(keysAt4000()));
    assert.match(uneven.stderr, /^statestream: the partitions hold different batches \(partition 0: 4000, .*partition 2: 5000.*\): the count adds each one's own/);
    const asJson = JSON.parse(run('state', 'count', '--data-dir', dir, '--json').stdout) as { unevenBatches: boolean; partitions: Array<{ lastBatch: number }> };
    assert.deepEqual([asJson.unevenBatches, asJson.partitions[2].lastBatch], [true, 5000]);
  });

  it('usage errors exit 2 with a one-line hint; --help exits 0', async () => {
    const usageErrors = [
      [], ['bogus'], ['--data-dir', 'x', 'inspect'], ['inspect', '--bogus'], ['state', 'get'], ['state'], ['snapshot', 'restore'], ['snapshot', 'frobnicate'], ['state', 'count', '--stream', 'x'],
      ['snapshot', 'restore', 'abc'], ['constructor'], ['toString'], ['__proto__'], ['reshard', '--partitions', '5000'], ['import', 'x.msgpack', '--partitions', '4097'],
      ['reshard', '--partitions', '0'], ['import', 'x.msgpack', '--partitions', '0'], ['state', 'count', 'extra'], ['state', 'get', 'k', 'extra'],
      ['inspect', '--zookeeper', 'localhost:1', '--zk-root', '/a', '--zk-timeout', '50'], ['snapshot', 'create', '--zookeeper', 'localhost:1', '--zk-root', '/a', '--zk-timeout', '2s'],
      ['inspect', '--zk-timeout', '2000'], ['snapshot', 'create', '--zk-digest', 'user:pw'],
      ['export', '--out', 'a.msgpack', '--out', 'b.msgpack'],
    ];
    const helps = [['--help'], ['inspect', '--help'], ['snapshot', '--help'], ['snapshot', 'list', '--help'], ['snapshot', 'create', '--help'], ['snapshot', 'restore', '--help'], ['state', '--help'], ['state', '-h'], ['state', 'get', '--help'], ['help', 'inspect', '--help'], ['help', 'export', '-h']];
    // Each is a process of its own: started a few at a time, not one after the other.
    const results = await runEach([...usageErrors, ...helps, ['--version']]);
    const of = (...args: string[]) => results.get(args.join(' '))!;
    for (const args of usageErrors) {
      const result = of(...args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^statestream: .+\nRun 'statestream( \w+){0,2} --help' for usage\.\n$/, args.join(' '));
    }
    assert.match(of('export', '--out', 'a.msgpack', '--out', 'b.msgpack').stderr, /^statestream: export: --out is given more than once\n/);
    // The hint names the page with the options of the command that was given.
    assert.match(of('snapshot', 'restore', 'abc').stderr, /\nRun 'statestream snapshot restore --help' for usage\.\n$/);
    assert.match(of('snapshot', 'create', '--zk-digest', 'user:pw').stderr, /\nRun 'statestream snapshot create --help' for usage\.\n$/);
    assert.match(of('state', 'get').stderr, /\nRun 'statestream state --help' for usage\.\n$/);
    assert.match(of('constructor').stderr, /^statestream: unknown command "constructor"\n/);
    assert.match(of('--data-dir', 'x', 'inspect').stderr, /^statestream: put the command first \(statestream <command> --data-dir …\), got option --data-dir\n/);
    assert.match(of('reshard', '--partitions', '5000').stderr, /--partitions must be an integer from 1 to 4096, got "5000"/);
    assert.match(of('import', 'x.msgpack', '--partitions', '0').stderr, /--partitions must be an integer from 1 to 4096, got "0"/);
    assert.match(of('state', 'count', 'extra').stderr, /unexpected argument "extra"/);
    assert.match(of('inspect', '--zookeeper', 'localhost:1', '--zk-root', '/a', '--zk-timeout', '50').stderr, /--zk-timeout must be an integer from 100 to 3600000, got "50"/);
    assert.match(of('snapshot', 'create', '--zookeeper', 'localhost:1', '--zk-root', '/a', '--zk-timeout', '2s').stderr, /--zk-timeout must be an integer from 100 to 3600000, got "2s"/);
    assert.match(of('inspect', '--zk-timeout', '2000').stderr, /--zk-timeout needs --zookeeper host:port and --zk-root/);
    assert.match(of('snapshot', 'create', '--zk-digest', 'user:pw').stderr, /--zk-digest needs --zookeeper host:port and --zk-root/);
    const version = of('--version');
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^statestream \d+\.\d+\.\d+\n$/);
    // The package's bin is this file, runnable as it is.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
    assert.equal(pkg.bin.statestream, 'dist/src/cli/main.js');
    assert.match(readFileSync(cli, 'utf8'), /^#!\/usr\/bin\/env node\n/);
    for (const args of helps) {
      const result = of(...args);
      assert.equal(result.code, 0, args.join(' '));
      assert.match(result.stdout, /^Usage: statestream/, args.join(' '));
    }
  });

  it('snapshot list shows the snapshots and --verify checks their checksums', () => {
    const list = run('snapshot', 'list', '--data-dir', dataDir, '--verify');
    assert.equal(list.code, 0, list.stderr);
    const lines = list.stdout.trim().split('\n');
    assert.match(lines[0], /^batch time\s+created\s+partitions\s+keys\s+bytes\s+verify$/);
    assert.match(lines[1], /^4000\s+\S+\s+3\s+\d+\s+.+\s+ok$/);
    assert.match(lines[2], /^2000\s/);
    const json = JSON.parse(run('snapshot', 'list', '--data-dir', dataDir, '--json').stdout);
    assert.deepEqual(json.map((s: { batchTime: number; keyCount: number }) => [s.batchTime, s.keyCount]), [[4000, keysAt4000()], [2000, stateAt.get(2000)!.length]]);
    // Sizes are the whole snapshot's: every partition's copy.
    const manifestBytes = listSnapshots(dataDir).map((s) => s.manifest.streams.flatMap((m) => m.partitions).reduce((n, p) => n + p.bytes, 0));
    assert.deepEqual(json.map((s: { bytes: number }) => s.bytes), manifestBytes);
    const inspected = JSON.parse(run('inspect', '--data-dir', dataDir, '--json').stdout) as { snapshots: Array<{ keyCount: number; bytes: number }> };
    assert.deepEqual(inspected.snapshots.map((s) => [s.keyCount, s.bytes]), [[keysAt4000(), manifestBytes[0]], [stateAt.get(2000)!.length, manifestBytes[1]]]);

    const dir = copy();
    truncateSync(join(dir, 'snapshots', '2000', 'state-0', 'partition-0000', 'data.mdb'), 100);
    const bad = run('snapshot', 'list', '--data-dir', dir, '--verify');
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /FAILED: state-0\/partition-0000\/data.mdb does not match its checksum/);
    const badJson = run('snapshot', 'list', '--data-dir', dir, '--verify', '--json');
    assert.equal(badJson.code, 1);
    assert.deepEqual((JSON.parse(badJson.stdout) as Array<{ batchTime: number; verified: boolean }>).map((s) => [s.batchTime, s.verified]), [[4000, true], [2000, false]]);
    const exported = run('export', '--data-dir', dir, '--snapshot', '2000', '--out', join(tempDir(), 'damaged.msgpack'));
    assert.equal(exported.code, 1, 'a damaged snapshot is not exported');
    assert.match(exported.stderr, /snapshot 2000 is damaged: .*partition-0000\/data.mdb does not match its checksum/);

    // A copy gone is a problem too, and so are manifests that cannot be read or are another program's; newest first, whatever each is.
    const gone = copy();
    rmSync(join(gone, 'snapshots', '4000', 'state-0', 'partition-0001', 'data.mdb'));
    mkdirSync(join(gone, 'snapshots', '9000'));
    writeFileSync(join(gone, 'snapshots', '9000', 'manifest.json'), 'not json');
    mkdirSync(join(gone, 'snapshots', '3000'));
    writeFileSync(join(gone, 'snapshots', '3000', 'manifest.json'), JSON.stringify({ format: 'other', formatVersion: 1, streams: [], sources: [] }));
    const goneList = run('snapshot', 'list', '--data-dir', gone, '--verify', '--json');
    assert.equal(goneList.code, 1);
    const rows = JSON.parse(goneList.stdout) as Array<{ batchTime: number; verified: boolean; problems: string[] }>;
    assert.deepEqual(rows.map((r) => [r.batchTime, r.verified]), [[9000, false], [4000, false], [3000, false], [2000, true]]);
    assert.deepEqual(rows[1].problems, ['state-0/partition-0001/data.mdb is missing']);
    assert.match(rows[2].problems.join(), /3000\/manifest\.json is not a statestream snapshot manifest/);
    assert.match(run('snapshot', 'list', '--data-dir', gone).stderr, /snapshot 3000 cannot be read: .*is not a statestream snapshot manifest/);
  });

  it('snapshot create snapshots a stopped job, refuses one that exists or whose partitions hold different batches', async () => {
    const dir = copy();
    rmSync(join(dir, 'snapshots'), { recursive: true });
    // A stream folder without stores (a job stopped before its first store) is no stream to snapshot.
    mkdirSync(join(dir, 'state-1'));
    const created = run('snapshot', 'create', '--data-dir', dir);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^Snapshot 4000 written to .*snapshots\/4000: 3 partitions/);
    const [info] = listSnapshots(dir);
    assert.equal(info.batchTime, 4000);
    assert.deepEqual(info.manifest.streams.map((m) => m.stream), [0]);
    assert.deepEqual(await verifySnapshot(info), []);
    assert.equal(info.manifest.streams[0].keyCount, keysAt4000());

    const again = run('snapshot', 'create', '--data-dir', dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /a snapshot of batch 4000 already exists/);

    // A partition ahead of the others, as when a batch was in flight.
    const store = openPartitionStore(partitionPath(dir, 0, 2));
    new BatchLog(store).record({ batchTime: 5000, outputs: messageCodec.pack([]), keyCount: new BatchLog(store).last()!.keyCount });
    store.env.close();
    const uneven = run('snapshot', 'create', '--data-dir', dir);
    assert.equal(uneven.code, 1);
    assert.match(uneven.stderr, /partitions hold different batches .*partition 2: 5000/);
  });

  it('snapshot create of stores that hold no batch yet, and a restore of a stream the snapshot does not hold, are refused, named', async () => {
    const fresh = tempDir();
    await runThenStop(spec(), { dataDir: fresh });
    const none = run('snapshot', 'create', '--data-dir', fresh);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /the stores under .* hold no committed batch yet: nothing to snapshot/);
    assert.deepEqual(listSnapshots(fresh), [], 'no snapshot written');

    const dir = copy();
    const other = run('snapshot', 'restore', '2000', '--stream', '1', '--data-dir', dir);
    assert.equal(other.code, 1);
    assert.match(other.stderr, /^statestream: snapshot 2000 holds no state of stream 1 \(it holds streams 0\)\n/);
  });

  it('commands that change state refuse while a job holds the data folder, naming it; inspect shows the holder', async () => {
    const dir = tempDir();
    const job = await keyedJob(spec(), { dataDir: dir, snapshotEvery: 1, appName: 'cli-holder' });
    const holder = `in use by process ${process.pid} on host \\S+ \\(job "cli-holder", since [^)]+\\)`;
    try {
      const snapshotted = nextEvent(job.ssc, BatchEvents.SNAPSHOT_COMPLETED, 'the snapshot of the first batch');
      await job.batch(records(1));
      const { batchTime } = await snapshotted;
      const exported = join(tempDir(), 'running.msgpack');
      assert.equal(run('export', '--data-dir', dir, '--out', exported).code, 0, 'export reads a running job');
      const commands = [['snapshot', 'create'], ['snapshot', 'restore', String(batchTime)], ['import', exported, '--replace'], ['reshard', '--partitions', '5']];
      for (const args of commands) {
        const refused = run(...args, '--data-dir', dir);
        assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stderr}`);
        assert.match(refused.stderr, new RegExp(`^statestream: ${args.slice(0, args[0] === 'snapshot' ? 2 : 1).join(' ')}: the data folder ${dir} is ${holder}; it changes state, so it needs the folder to itself`));
      }
      assert.equal(listSnapshots(dir).length, 1, 'no snapshot was added');
      assert.ok((await job.batch(records(2))).length > 0, 'the job goes on');
      const inspected = run('inspect', '--data-dir', dir, '--json');
      assert.equal(inspected.code, 0, inspected.stderr);
      const { lock } = JSON.parse(inspected.stdout) as { lock: { held: boolean; holder: { pid: number; appName: string } } };
      assert.equal(lock.held, true);
      assert.equal(lock.holder.pid, process.pid);
      assert.equal(lock.holder.appName, 'cli-holder');
      assert.match(run('inspect', '--data-dir', dir).stdout, new RegExp(`^Data folder ${dir}\\n  ${holder}`));
    } finally {
      await job.ssc.stop();
    }
    assert.match(run('inspect', '--data-dir', dir).stdout, /^ {2}not in use \(no job or state-changing command holds its lock\)$/m);
    assert.equal(run('reshard', '--partitions', '5', '--data-dir', dir).code, 0, 'once the job stopped');
    // A folder copied without its lock file: not in use either.
    rmSync(join(dir, 'statestream.lock'));
    const copied = run('inspect', '--data-dir', dir);
    assert.equal(copied.code, 0, copied.stderr);
    assert.match(copied.stdout, /^ {2}not in use \(no job or state-changing command holds its lock\)$/m);
  });

  it('reshard, import, snapshot create and snapshot restore refuse while another process has the stores open without the folder lock, naming it', async () => {
    const dir = copy();
    const exported = join(tempDir(), 'state.msgpack');
    assert.equal(run('export', '--data-dir', dir, '--out', exported).code, 0);
    // Its stdin is a pipe: should this process die, the holder sees the end and goes too.
    const holder = spawn(process.execPath, [fileURLToPath(fixture('store-holder')), partitionPath(dir, 0, 1)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = once(holder, 'exit');
    try {
      const opened = once(holder.stdout!, 'data') as Promise<[Buffer]>;
      const [ready] = await within(Promise.race([opened, exited.then((exit) => assert.fail(`the store holder exited: ${JSON.stringify(exit)}`))]), 'the store holder to open the store');
      assert.equal(ready.toString(), `ready ${holder.pid}\n`);
      for (const args of [['reshard', '--partitions', '5'], ['import', exported, '--replace'], ['snapshot', 'create'], ['snapshot', 'restore', '2000']]) {
        const refused = run(...args, '--data-dir', dir);
        assert.equal(refused.code, 1, `${args.join(' ')}: ${refused.stderr}`);
        const command = args[0] === 'snapshot' ? `snapshot ${args[1]}` : args[0];
        assert.equal(refused.stderr, `statestream: ${command}: process ${holder.pid} has the stores of stream 0 open (${partitionPath(dir, 0, 1)}); stop the job first\n`);
      }
      assert.ok(!existsSync(join(dir, 'replaced')), 'the restore moved nothing');
    } finally {
      if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
      await within(exited, 'the store holder to exit');
    }
    assert.equal(JSON.parse(run('inspect', '--data-dir', dir, '--json').stdout).streams[0].layout.numPartitions, 3, 'nothing was changed');
    // A dead process's slot is cleared: the reshard goes ahead.
    const resharded = run('reshard', '--partitions', '5', '--data-dir', dir);
    assert.equal(resharded.code, 0, resharded.stderr);
  });

  it('snapshot restore puts the snapshot in place; the next job holds exactly the snapshot\'s state', async () => {
    const dir = copy();
    // A damaged snapshot changes nothing.
    const damagedCopy = copy();
    truncateSync(join(damagedCopy, 'snapshots', '4000', 'state-0', 'partition-0001', 'data.mdb'), 100);
    const damaged = run('snapshot', 'restore', '4000', '--data-dir', damagedCopy);
    assert.equal(damaged.code, 1);
    assert.match(damaged.stderr, /snapshot 4000 is damaged, nothing was changed/);
    assert.ok(!existsSync(join(damagedCopy, 'replaced')));

    const result = run('snapshot', 'restore', '2000', '--data-dir', dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Restored snapshot 2000 into .*state-0 \(3 partitions/);
    assert.match(result.stdout, /a queue job starts from the snapshot's state \(batch 2000\)/);
    const replaced = readdirSync(join(dir, 'replaced'));
    assert.equal(replaced.length, 1);
    assert.ok(existsSync(join(dir, 'replaced', replaced[0], 'state-0', 'partition-0000', 'data.mdb')), 'the replaced state is kept');
    assert.ok(!existsSync(join(dir, 'state-0.restoring')));
    assert.deepEqual(await stateOf(dir, 10_000), stateAt.get(2000));

    const missing = run('snapshot', 'restore', '9999', '--data-dir', dir);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /there is no snapshot 9999/);

    // A copy that fails (here a file size limit, as a full disk would) leaves the state as it was, and no half-copied folder.
    const limited = copy();
    const before = readFileSync(join(limited, 'state-0', 'partition-0000', 'data.mdb'));
    const shell = `ulimit -f 8; exec "${process.execPath}" "${cli}" snapshot restore 2000 --data-dir "${limited}"`;
    const cut = spawnSync('sh', ['-c', shell], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(cut.status, 1, cut.stderr);
    assert.match(cut.stderr, /copying snapshot 2000 failed, nothing was changed: .*EFBIG/);
    assert.ok(!existsSync(join(limited, 'state-0.restoring')), 'the half-copied folder is removed');
    assert.ok(readFileSync(join(limited, 'state-0', 'partition-0000', 'data.mdb')).equals(before));
    assert.equal(JSON.parse(run('inspect', '--data-dir', limited, '--json').stdout).streams[0].interrupted, undefined);
  });

  it('snapshot restore into a stream with no state folder says there was none to replace', () => {
    const dir = copy();
    rmSync(join(dir, 'state-0'), { recursive: true });
    const result = run('snapshot', 'restore', '2000', '--data-dir', dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^There was no state to replace\.$/m);
    assert.doesNotMatch(result.stdout, /The state it replaced is kept in|also holds streams/);
    assert.equal(run('state', 'count', '--data-dir', dir).stdout.trim(), String(stateAt.get(2000)!.length));
  });

  it('snapshot restore retires the newer snapshots: a damaged partition later is restored from the restored history, not the one undone', async () => {
    const dir = copy();
    const result = run('snapshot', 'restore', '2000', '--data-dir', dir);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /The snapshots newer than it \(4000\) hold batches this restore undoes; they are kept in .*replaced.*snapshots/);
    assert.deepEqual(listSnapshots(dir).map((s) => s.batchTime), [2000]);
    const [replaced] = readdirSync(join(dir, 'replaced'));
    assert.ok(existsSync(join(dir, 'replaced', replaced, 'snapshots', '4000', 'manifest.json')), 'the retired snapshot is kept');
    assert.deepEqual(readdirSync(join(dir, 'state-0')).sort(), ['partition-0000', 'partition-0001', 'partition-0002'], "neither the swap's marker nor its record of the snapshots it moved is left in the state folder");

    // The job goes on from 2000 (batch 5000), then partition 1 is lost: it comes back from 2000, not from 4000.
    await runThenStop(spec(), { dataDir: dir, startMs: 4000 }, records(5));
    rmSync(partitionPath(dir, 0, 1), { recursive: true });
    const restored: number[] = [];
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: dir, threads: 1, clock: new ManualClock(6000) });
    const stream = ssc.queueStream<[Key, number]>().mapWithState(spec());
    ssc.on(BatchEvents.STATE_RESTORED, (e) => void restored.push(e.snapshot));
    await ssc.start();
    try {
      assert.deepEqual(restored, [2000]);
      const inPartition1 = ([key]: [unknown, unknown]) => murmur2Partitioner.partition(key, 3) === 1;
      const held = ([...stream.store().entries()] as Array<[unknown, unknown]>).filter(inPartition1);
      assert.ok(held.length > 0);
      assert.deepEqual(held, stateAt.get(2000)!.filter(inPartition1), 'partition 1 holds what snapshot 2000 holds');
    } finally {
      await ssc.stop();
    }
  });

  it('snapshot restore of one stream leaves the newer snapshots that hold other streams too, and says so', async () => {
    const dir = tempDir();
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: dir, threads: 1, clock, snapshotEvery: 1 });
    const input = ssc.queueStream<[Key, number]>();
    input.mapWithState(spec()).foreachBatch(() => undefined);
    input.mapWithState(spec(2)).foreachBatch(() => undefined);
    await ssc.start();
    try {
      for (let b = 1; b <= 2; b++) {
        const copied = nextEvent(ssc, BatchEvents.SNAPSHOT_COMPLETED, `the snapshot of batch ${b * 1000}`);
        input.pushBatch(records(b));
        await clock.advance(1000);
        await copied;
      }
    } finally {
      await ssc.stop();
    }
    // A snapshot of two streams holds the keys of both.
    const listed = JSON.parse(run('snapshot', 'list', '--data-dir', dir, '--json').stdout) as Array<{ batchTime: number; streams: number[]; keyCount: number }>;
    const [latest] = listSnapshots(dir);
    assert.deepEqual([listed[0].batchTime, listed[0].streams], [2000, [0, 1]]);
    assert.equal(listed[0].keyCount, latest.manifest.streams[0].keyCount + latest.manifest.streams[1].keyCount);
    const copied = tempDir();
    cpSync(dir, copied, { recursive: true });
    // Stream 1's copy in the snapshot is damaged: a restore of stream 0 checks only stream 0's copies.
    truncateSync(join(copied, 'snapshots', '1000', 'state-1', 'partition-0000', 'data.mdb'), 100);
    const asJson = run('snapshot', 'restore', '1000', '--stream', '0', '--data-dir', copied, '--json');
    assert.equal(asJson.code, 0, asJson.stderr);
    const answer = JSON.parse(asJson.stdout) as { retiredSnapshots: number[]; keptNewerSnapshots: number[] };
    assert.deepEqual([answer.retiredSnapshots, answer.keptNewerSnapshots], [[], [2000]], '--json says what the text says');
    const damaged = run('snapshot', 'restore', '1000', '--stream', '1', '--data-dir', copied);
    assert.equal(damaged.code, 1);
    assert.match(damaged.stderr, /snapshot 1000 is damaged, nothing was changed: state-1\/partition-0000\/data\.mdb does not match its checksum/);
    const restored = run('snapshot', 'restore', '1000', '--stream', '0', '--data-dir', dir);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /The snapshots newer than it \(2000\) hold batches this restore undoes for stream 0, and other streams' state: they stay until every stream is restored/);
    // Stream 1 is still at 2000: the restore says to restore it too, so both streams are of one batch.
    assert.match(restored.stdout, /^The snapshot also holds streams 1; restore them with --stream <n> so every stream is of the same batch\.$/m);
    assert.deepEqual(listSnapshots(dir).map((s) => s.batchTime), [2000, 1000], 'stream 1 may still need snapshot 2000');
  });

  it('a reshard of a second stream killed between its renames is finished by the next start: that stream keeps its state', async () => {
    const dir = tempDir();
    const job = (clock: ManualClock) => {
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: dir, threads: 1, clock });
      const input = ssc.queueStream<[Key, number]>();
      const streams = [input.mapWithState(spec()), input.mapWithState(spec(2))];
      return { ssc, input, streams };
    };
    const entries = (stream: { store(): { entries(): Iterable<[Key, number]> } }) => [...stream.store().entries()].map((e) => JSON.stringify(e)).sort();
    const clock = new ManualClock(0);
    const first = job(clock);
    await first.ssc.start();
    let before: string[][];
    try {
      first.input.pushBatch(records(1));
      await clock.advance(1000);
      before = first.streams.map(entries);
    } finally {
      await first.ssc.stop();
    }
    assert.ok(before[1].length > 0);
    // Killed with stream 1's old stores moved aside and the new ones not yet in their place.
    killedRun('rename:state-1.reshard', 'reshard', '--stream', '1', '--partitions', '3', '--data-dir', dir);
    assert.ok(!existsSync(join(dir, 'state-1')), 'the kill left stream 1 without its folder');
    const second = job(new ManualClock(5000));
    await second.ssc.start();
    try {
      assert.deepEqual(second.streams.map(entries), before, 'both streams hold what they held');
    } finally {
      await second.ssc.stop();
    }
    assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('state-')).sort(), ['state-0', 'state-1'], 'the reshard was finished: nothing of it is left beside the stores');
  });

  it('a snapshot restore killed before its marker moves the retired snapshots back', () => {
    const dir = copy();
    killedRun('write:state-0.restoring/complete.writing', 'snapshot', 'restore', '2000', '--data-dir', dir);
    assert.ok(!existsSync(join(dir, 'snapshots', '4000')), 'the newer snapshot had moved aside before the kill');
    const inspected = run('inspect', '--data-dir', dir);
    assert.equal(inspected.code, 0, inspected.stderr);
    const restored = run('snapshot', 'restore', '4000', '--data-dir', dir);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /\nA snapshot restore a crash had interrupted was rolled back first\./);
    assert.deepEqual(listSnapshots(dir).map((s) => s.batchTime), [4000, 2000]);
    // The folders made to receive the retired snapshots went with the rollback: replaced/ holds the state the finished restore replaced, and no empty folder beside it.
    assert.equal(replacedFolders(dir).length, 1, `replaced/ holds ${replacedFolders(dir).join(', ')}`);
  });

  it('export → import into a new data folder: a job on it holds the same state; a snapshot exports without being touched', async () => {
    const file = join(tempDir(), 'state.msgpack');
    const exported = run('export', '--data-dir', dataDir, '--out', file);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, new RegExp(`^Exported ${keysAt4000()} keys of stream 0 \\(batch 4000, state version 1\\)`));

    const target = join(tempDir(), 'imported');
    const imported = run('import', file, '--data-dir', target, '--partitions', '3');
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, new RegExp(`^Imported ${keysAt4000()} keys into stream 0 .*\\(3 partitions, state version 1, last batch 4000\\)`));
    assert.equal(run('state', 'count', '--data-dir', target).stdout.trim(), String(keysAt4000()));
    assert.deepEqual(await stateOf(target, 10_000), stateAt.get(4000));

    // A stream with state is refused, and replaced only when asked.
    const refused = run('import', file, '--data-dir', target);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /already has state .* \(use --replace/);
    // A file that is not there, and a stream the snapshot does not hold, are named.
    const missing = run('import', join(tempDir(), 'nothing.msgpack'), '--data-dir', tempDir());
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /there is no file .*nothing\.msgpack/);
    const noStream = run('export', '--data-dir', dataDir, '--snapshot', '2000', '--stream', '1', '--out', join(tempDir(), 'one.msgpack'));
    assert.equal(noStream.code, 1);
    assert.match(noStream.stderr, /snapshot 2000 holds no state of stream 1/);

    // From a snapshot, through stdout; the snapshot folder gains no lock file.
    const before = readdirSync(join(dataDir, 'snapshots', '2000', 'state-0', 'partition-0000'));
    const scratch = tempDir();
    const piped = spawnSync(process.execPath, [cli, 'export', '--data-dir', dataDir, '--snapshot', '2000', '--out', '-'], { timeout: 60_000, env: { ...process.env, TMPDIR: scratch } });
    assert.equal(piped.status, 0, String(piped.stderr));
    assert.match(String(piped.stderr), /from snapshot 2000\) to stdout/);
    assert.deepEqual(readdirSync(join(dataDir, 'snapshots', '2000', 'state-0', 'partition-0000')), before);
    assert.deepEqual(readdirSync(scratch), [], 'the scratch copies are removed');
    // A path to stdout is stdout too: the summary goes to stderr, not into the export.
    // The pipe spawnSync gives is a socket, which /dev/stdout cannot open: said so.
    const socket = spawnSync(process.execPath, [cli, 'export', '--data-dir', dataDir, '--snapshot', '2000', '--out', '/dev/stdout'], { timeout: 60_000 });
    assert.equal(socket.status, 1);
    assert.match(String(socket.stderr), /cannot write the export \/dev\/stdout: it leads to a socket, which cannot be opened by a path; .*--out -/);
    // Stdout a file, as a shell's `>` makes it.
    const redirected = join(tempDir(), 'redirected.msgpack');
    const stdoutFd = openSync(redirected, 'w');
    const viaPath = spawnSync(process.execPath, [cli, 'export', '--data-dir', dataDir, '--snapshot', '2000', '--out', '/dev/stdout', '--json'], { timeout: 60_000, stdio: ['ignore', stdoutFd, 'pipe'] });
    closeSync(stdoutFd);
    assert.equal(viaPath.status, 0, String(viaPath.stderr));
    assert.equal(JSON.parse(String(viaPath.stderr)).out, '/dev/stdout');
    assert.equal(JSON.parse(String(viaPath.stderr)).snapshot, 2000, '--json names the snapshot exported');
    assert.equal(readFileSync(redirected).length, piped.stdout.length, 'stdout holds the export alone');
    const snapFile = join(tempDir(), 'snap.msgpack');
    writeFileSync(snapFile, piped.stdout);
    const replaced = run('import', snapFile, '--data-dir', target, '--replace');
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stdout, /The state it replaced is kept in .*replaced/);
    // Without --partitions the export's own partition count is used.
    assert.match(replaced.stdout, /\(3 partitions, state version 1, last batch 2000\)/);
    assert.deepEqual(await stateOf(target, 10_000), stateAt.get(2000));

    const notAnExport = run('import', join(partitionPath(dataDir, 0, 0), 'data.mdb'), '--data-dir', tempDir());
    assert.equal(notAnExport.code, 1);
    assert.match(notAnExport.stderr, /is not a statestream state export/);
    assert.equal(run('export', '--data-dir', dataDir).code, 2, 'export without --out');
  });

  it('export --out writes through a FIFO, replaces a symbolic link\'s target and not the link, and leaves a file named <out>.tmp alone', async () => {
    const folder = tempDir();
    const fifo = join(folder, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
    // A FIFO replaced by a file has no writer: its reader would wait for ever.
    const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 30_000 });
    const readerClosed = once(reader, 'close');
    const chunks: Buffer[] = [];
    reader.stdout.on('data', (d: Buffer) => chunks.push(d));
    const writer = spawn(process.execPath, [cli, 'export', '--data-dir', dataDir, '--out', fifo], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    let stderr = '';
    writer.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const [code] = (await once(writer, 'close')) as [number | null];
    await readerClosed;
    assert.equal(code, 0, stderr);
    assert.ok(statSync(fifo).isFIFO(), 'the FIFO is still a FIFO');
    const received = join(folder, 'received.msgpack');
    writeFileSync(received, Buffer.concat(chunks));
    assert.equal([...readStateExport(received).entries()].length, keysAt4000(), 'the reader got the whole export');

    const target = join(folder, 'target.msgpack');
    writeFileSync(target, 'old');
    writeFileSync(`${target}.tmp`, 'a file of its own');
    const link = join(folder, 'link.msgpack');
    symlinkSync(target, link);
    const exported = run('export', '--data-dir', dataDir, '--out', link);
    assert.equal(exported.code, 0, exported.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link is still a link');
    assert.equal([...readStateExport(target).entries()].length, keysAt4000());
    assert.equal(readFileSync(`${target}.tmp`, 'utf8'), 'a file of its own');
    assert.deepEqual(readdirSync(folder).sort(), ['fifo', 'link.msgpack', 'received.msgpack', 'target.msgpack', 'target.msgpack.tmp']);

    // /dev/stdout that the shell sent to a file (>>): written through, after what the file held.
    const log = join(folder, 'exports.log');
    writeFileSync(log, 'before\n');
    const inode = statSync(log).ino;
    const fd = openSync(log, 'a');
    try {
      const through = spawnSync(process.execPath, [cli, 'export', '--data-dir', dataDir, '--out', '/dev/stdout'], { stdio: ['ignore', fd, 'pipe'], encoding: 'utf8', timeout: 60_000 });
      assert.equal(through.status, 0, through.stderr);
    } finally {
      closeSync(fd);
    }
    assert.equal(statSync(log).ino, inode, 'the file was not replaced');
    const logged = readFileSync(log);
    assert.equal(logged.subarray(0, 7).toString(), 'before\n');
    assert.ok(logged.length > 100, 'the export follows');
  });

  it('export --snapshot interrupted by Ctrl-C exits 130, by SIGTERM 143, and leaves neither its scratch copy nor its temporary file', () => {
    for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const scratch = tempDir();
      const folder = tempDir();
      const killAtFixture = fileURLToPath(fixture('kill-at'));
      const result = spawnSync(process.execPath, ['--import', killAtFixture, cli, 'export', '--data-dir', dataDir, '--snapshot', '2000', '--out', join(folder, 'out.msgpack')], {
        encoding: 'utf8', timeout: 60_000,
        env: { ...process.env, TMPDIR: scratch, STATESTREAM_TEST_KILL_AT: 'copy:partition-0001/data.mdb', STATESTREAM_TEST_KILL_SIGNAL: signal },
      });
      assert.equal(result.status, status, `${signal}: ${result.signal ?? ''} ${result.stderr}`);
      assert.deepEqual(readdirSync(scratch), [], `${signal}: the scratch copies are removed`);
      assert.deepEqual(readdirSync(folder), [], `${signal}: the temporary file is removed`);
    }
  });

  it('export --snapshot refuses a snapshot in a newer store format, as restore does', () => {
    const dir = copy();
    const manifestPath = join(dir, 'snapshots', '2000', 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    for (const stream of manifest.streams) stream.storeFormatVersion = 99;
    writeFileSync(manifestPath, JSON.stringify(manifest));
    const out = join(tempDir(), 'out.msgpack');
    const refused = run('export', '--data-dir', dir, '--snapshot', '2000', '--out', out);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /snapshot 2000 cannot be read by this statestream: .*format 99/);
    assert.ok(!existsSync(out));
    const before = readFileSync(join(dir, 'state-0', 'partition-0000', 'data.mdb'));
    const restore = run('snapshot', 'restore', '2000', '--data-dir', dir);
    assert.equal(restore.code, 1);
    assert.match(restore.stderr, /snapshot 2000 cannot be restored by this statestream, nothing was changed: .*99/);
    assert.ok(!existsSync(join(dir, 'replaced')) && !existsSync(join(dir, 'state-0.restoring')));
    assert.ok(readFileSync(join(dir, 'state-0', 'partition-0000', 'data.mdb')).equals(before), 'the state is as it was');
  });

  it("import keeps the export's state version, and a header without a batch time gives the newest lastUpdated as the last batch", async () => {
    const file = join(tempDir(), 'v2.msgpack');
    await writeStateExport(file, { stateVersion: 2 }, [['a', { count: 3, firstSeen: null }, 7000], ['b', { count: 1, firstSeen: 2000 }, 2000]]);
    const target = tempDir();
    const imported = run('import', file, '--data-dir', target, '--partitions', '2');
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /\(2 partitions, state version 2, last batch 7000\)/);
    for (let p = 0; p < 2; p++) {
      const store = openPartitionStore(partitionPath(target, 0, p));
      try {
        assert.equal(readLayout(store)?.stateVersion, 2, `partition ${p} holds state version 2`);
        assert.equal(new BatchLog(store).last()?.batchTime, 7000, `partition ${p}'s last batch`);
      } finally {
        store.env.close();
      }
    }
    // A snapshot of it exports the same version.
    const snapshot = run('snapshot', 'create', '--data-dir', target);
    assert.equal(snapshot.code, 0, snapshot.stderr);
    const again = join(tempDir(), 'again.msgpack');
    const exported = run('export', '--data-dir', target, '--snapshot', '7000', '--out', again);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /\(batch 7000, state version 2, from snapshot 7000\)/);
    assert.equal(readStateExport(again).header.stateVersion, 2);
  });

  it("import takes the header's batch time over older lastUpdated, 4 partitions when neither header nor --partitions says, and an empty state folder as no state; a failed import leaves nothing behind", async () => {
    // The export's last batch (9000) touched no key: the stores are still of batch 9000.
    const file = join(tempDir(), 'idle-last.msgpack');
    await writeStateExport(file, { stateVersion: 1, batchTime: 9000 }, [['a', 1, 7000], ['b', 2, 3000]]);
    const target = tempDir();
    mkdirSync(join(target, 'state-0'));
    const imported = run('import', file, '--data-dir', target, '--json');
    assert.equal(imported.code, 0, imported.stderr);
    const result = JSON.parse(imported.stdout);
    assert.deepEqual([result.batchTime, result.numPartitions, result.keyCount, result.replacedDir], [9000, 4, 2, undefined]);
    assert.equal(readdirSync(join(target, 'state-0')).filter((f) => f.startsWith('partition-')).length, 4);
    assert.ok(!existsSync(join(target, 'replaced')), 'the empty folder was no state to keep');
    const store = openPartitionStore(partitionPath(target, 0, 0));
    try {
      assert.equal(new BatchLog(store).last()?.batchTime, 9000);
    } finally {
      store.env.close();
    }

    // Cut short: the import fails, and leaves no half-built stream beside the folder.
    const cut = join(tempDir(), 'cut.msgpack');
    const bytes = readFileSync(file);
    writeFileSync(cut, bytes.subarray(0, bytes.length - 12));
    const fresh = tempDir();
    const failed = run('import', cut, '--data-dir', fresh);
    assert.equal(failed.code, 1, failed.stdout);
    assert.deepEqual(readdirSync(fresh).filter((f) => f !== 'statestream.lock'), [], 'nothing but the lock file');
    const next = run('import', file, '--data-dir', fresh);
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stdout, /interrupted|rolled back/);
  });

  it('import --partitions 8 re-shards an export: each key in the partition the router picks, and a job on it counts on', async () => {
    const file = join(tempDir(), 'state.msgpack');
    assert.equal(run('export', '--data-dir', dataDir, '--out', file).code, 0);
    const target = join(tempDir(), 'eight');
    const imported = run('import', file, '--data-dir', target, '--partitions', '8', '--json');
    assert.equal(imported.code, 0, imported.stderr);
    assert.deepEqual(JSON.parse(imported.stdout).numPartitions, 8);
    assert.equal(readdirSync(join(target, 'state-0')).filter((f) => f.startsWith('partition-')).length, 8);
    assert.deepEqual(await stateOf(target, 10_000, 8), stateAt.get(4000));

    // Counting goes on from the imported counts, not from 1: every key is where the job looks.
    const before = new Map(stateAt.get(4000)!.map(([k, s]) => [JSON.stringify(k), s as number]));
    const job = await keyedJob(spec(8), { dataDir: target, startMs: 10_000 });
    try {
      const keys = stateAt.get(4000)!.map(([k]) => k as Key);
      const outputs = await job.batch(keys.map((k): [Key, number] => [k, 1]));
      assert.equal(outputs.length, keys.length);
      for (const [key, count] of outputs) assert.equal(count, before.get(JSON.stringify(key))! + 1, `${JSON.stringify(key)} counted on`);
    } finally {
      await job.ssc.stop();
    }
  });

  it("state get prints a Map, a Set, a bigint and bytes as JSON, and a wall-clock batch time with its date", async () => {
    const file = join(tempDir(), 'typed.msgpack');
    const batchTime = Date.UTC(2024, 0, 2, 3, 4, 5);
    const states: Array<[string, unknown]> = [
      ['map', new Map<string, number>([['x', 1], ['y', 2]])],
      ['set', new Set([3, 1, 2])],
      ['big', 2n ** 60n],
      ['bytes', new Uint8Array([1, 2, 255])],
    ];
    await writeStateExport(file, { stateVersion: 1, batchTime }, states.map(([k, s]) => [k, s, batchTime]));
    const target = tempDir();
    const imported = run('import', file, '--data-dir', target, '--partitions', '2');
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /last batch 1704164645000 \(2024-01-02T03:04:05\.000Z\)\)/);
    const got = (key: string) => {
      const result = run('state', 'get', key, '--data-dir', target, '--json');
      assert.equal(result.code, 0, result.stderr);
      return (JSON.parse(result.stdout) as { state: unknown }).state;
    };
    assert.deepEqual(got('map'), { x: 1, y: 2 });
    assert.deepEqual(got('set'), [3, 1, 2]);
    assert.equal(got('big'), String(2n ** 60n));
    assert.deepEqual(got('bytes'), { base64: Buffer.from([1, 2, 255]).toString('base64') });
    const text = run('state', 'get', 'map', '--data-dir', target);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout, `{"x":1,"y":2}\nlastUpdated 1704164645000 (2024-01-02T03:04:05.000Z)  (partition ${murmur2Partitioner.partition('map', 2)})\n`);
  });
});

describe('statestream command-line tool with ZooKeeper offsets', () => {
  let zk: ZooKeeperServer;
  let dataDir: string;
  const root = '/statestream/cli-test';
  const zkArgs = () => ['--zookeeper', zk.connectString, '--zk-root', root];
  const ranges = (batchTime: number) => [0, 1].map((partition) => ({ topic: 'words', partition, from: (batchTime / 1000 - 1) * 10, until: (batchTime / 1000) * 10 }));

  before(async () => {
    ({ dataDir } = await jobFolder());
    zk = await startZooKeeper();
    // What a Kafka job that kept its batch history would have left for batches 1000…4000.
    const session = new ZooKeeperSession({ connect: zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, root);
      await offsets.init([{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }]);
      for (let t = 1000; t <= 4000; t += 1000) await offsets.recordBatchEnd({ batchTime: t, ranges: ranges(t) }, true);
      await offsets.release();
    } finally {
      session.close();
    }
  });
  after(async () => zk?.stop());

  it('inspect reads the offsets, last batch and history from ZooKeeper', () => {
    const result = run('inspect', '--data-dir', dataDir, '--json', ...zkArgs());
    assert.equal(result.code, 0, result.stderr);
    const { offsets } = JSON.parse(result.stdout);
    assert.equal(offsets.from, 'zookeeper');
    assert.equal(offsets.lastBatch, 4000);
    assert.equal(offsets.inFlight, undefined);
    assert.deepEqual(offsets.positions, [{ topic: 'words', partition: 0, offset: 40 }, { topic: 'words', partition: 1, offset: 40 }]);
    assert.deepEqual(offsets.history, [1000, 2000, 3000, 4000]);
    const human = run('inspect', '--data-dir', dataDir, ...zkArgs());
    assert.match(human.stdout, /Offsets \(ZooKeeper \/statestream\/cli-test\): last batch 4000, no batch in flight\n  words\[0\] next offset 40/);
    // The batches a restore of an older snapshot could replay: a person deciding on one reads them here.
    assert.match(human.stdout, /\n  history kept for replay: batches 1000 … 4000 \(4\)\n  owned by no running copy of the job\n$/);
    assert.equal(run('inspect', '--data-dir', dataDir, '--zookeeper', zk.connectString).code, 2, '--zookeeper without --zk-root');
  });

  it('inspect names the copy that owns the root, the copies waiting to own it, and the batch in flight', async () => {
    const owned = `${root}-owned`;
    const session = new ZooKeeperSession({ connect: zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, owned);
      try {
        await offsets.init([{ topic: 'words', partition: 0 }]);
        await offsets.recordBatchEnd({ batchTime: 1000, ranges: ranges(1000).slice(0, 1) }, false);
        await offsets.recordBatchStart({ batchTime: 2000, ranges: ranges(2000).slice(0, 1) });
        // A copy on another host waiting behind the owner: its node, as acquire() makes it (the next in sequence).
        const waiter = { pid: 4242, host: 'node-b', since: '2026-01-02T03:04:05.000Z', dataDir: '/srv/count', appName: 'count', sessionTimeoutMs: 10_000 };
        await session.create(`${owned}/owners/owner-${'0'.repeat(8)}-`, Buffer.from(JSON.stringify(waiter)), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL);
        // Not spawnSync: this process's session must keep answering ZooKeeper while the command runs.
        const human = (await runEach([['inspect', '--data-dir', dataDir, '--zookeeper', zk.connectString, '--zk-root', owned]])).values().next().value!;
        assert.equal(human.code, 0, human.stderr);
        const escaped = owned.replace(/\//g, '\\/');
        assert.match(human.stdout, new RegExp(`\\nOffsets \\(ZooKeeper ${escaped}\\): last batch 1000, batch 2000 in flight\\n  words\\[0\\] next offset 10\\n`));
        assert.match(human.stdout, new RegExp(`\\n  owned by process ${process.pid} on host \\S+ \\(job "test" on data folder test, since [^)]+\\), node ${escaped}/owners/owner-[\\w-]+-\\d{10}\\n`));
        assert.match(human.stdout, /\n  waiting to own it: process 4242 on host node-b \(since 2026-01-02T03:04:05\.000Z\)\n$/);
      } finally {
        await offsets.release();
      }
    } finally {
      session.close();
    }
  });

  it('a --zk-root that names no node is refused by inspect and snapshot create and restore, naming the roots beside it', () => {
    const dir = tempDir();
    cpSync(dataDir, dir, { recursive: true });
    const misspelt = ['--zookeeper', zk.connectString, '--zk-root', '/statestream/cli-tset'];
    const before = listSnapshots(dir).map((s) => s.batchTime);
    const lastBatch = () => JSON.parse(run('inspect', '--json', '--data-dir', dir).stdout).streams[0].lastBatch as number;
    assert.equal(lastBatch(), 4000);
    for (const args of [['inspect', '--data-dir', dir], ['snapshot', 'create', '--data-dir', dir], ['snapshot', 'restore', '2000', '--data-dir', dir]]) {
      const result = run(...args, ...misspelt);
      assert.equal(result.code, 1, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, /ZooKeeper at \S+ has no node \/statestream\/cli-tset: no job keeps its offsets there \(give --zk-root the job's ZooKeeper root; \/statestream holds [^)]*\/statestream\/cli-test\b/, args.join(' '));
    }
    const json = run('inspect', '--json', '--data-dir', dir, ...misspelt);
    assert.equal(JSON.parse(json.stdout).offsets.from, 'zookeeper-root-missing', 'told apart from a ZooKeeper that does not answer');
    // A root right under / names the nodes beside it as /name, not //name.
    const topLevel = run('inspect', '--data-dir', dir, '--zookeeper', zk.connectString, '--zk-root', '/statestreem');
    assert.equal(topLevel.code, 1, topLevel.stderr);
    assert.match(topLevel.stderr, /has no node \/statestreem: .*; \/ holds (\S+, )*\/statestream\b/);
    assert.doesNotMatch(topLevel.stderr, /\/\//);
    assert.deepEqual(listSnapshots(dir).map((s) => s.batchTime), before, 'no snapshot taken');
    assert.equal(lastBatch(), 4000, 'the stores hold the batch they held: nothing was restored');
  });

  it('snapshot create takes the positions of the last batch with records when the batches after it took none (a job without snapshots records no empty batch)', async () => {
    const dir = tempDir();
    cpSync(dataDir, dir, { recursive: true });
    rmSync(join(dir, 'snapshots', '4000'), { recursive: true });
    // The stores hold batch 4000; ZooKeeper records batch 3000 as the last one that took records.
    const idleRoot = `${root}-idle`;
    const inFlightRoot = `${root}-in-flight`;
    const ahead = `${root}-ahead`;
    // The stores' batch ended, and the next one was in flight when the job died: no partition committed it.
    const newerInFlight = `${root}-newer-in-flight`;
    // A job that never took a record: only the positions its first start recorded.
    const neverRoot = `${root}-never`;
    // A root that records nothing at all (the parent of a job's root, say): no positions to take.
    const emptyRoot = `${root}-empty`;
    // Partition 1 appeared in the batch in flight (the topic grew): no position recorded for it before.
    const grownRoot = `${root}-grown`;
    const session = new ZooKeeperSession({ connect: zk.connectString });
    try {
      const empty = await ownedOffsetStore(session, emptyRoot);
      await empty.init([]);
      await empty.release();
      const grown = await ownedOffsetStore(session, grownRoot);
      await grown.init([{ topic: 'words', partition: 0 }]);
      for (let t = 1000; t <= 3000; t += 1000) await grown.recordBatchEnd({ batchTime: t, ranges: ranges(t).slice(0, 1) }, false);
      await grown.recordBatchStart({ batchTime: 4000, ranges: ranges(4000) });
      await grown.release();
      for (const [where, ended, inFlight] of [[idleRoot, 3000, undefined], [inFlightRoot, 2000, 3000], [ahead, 5000, undefined], [neverRoot, 0, undefined], [newerInFlight, 4000, 5000]] as const) {
        const offsets = await ownedOffsetStore(session, where);
        await offsets.init([{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }]);
        if (where === neverRoot) await offsets.recordPositions([0, 1].map((partition) => ({ topic: 'words', partition, offset: 30 })));
        for (let t = 1000; t <= ended; t += 1000) await offsets.recordBatchEnd({ batchTime: t, ranges: ranges(t) }, false);
        // Every partition committed it (the stores hold a later batch), and the job stopped before its end was recorded.
        if (inFlight !== undefined) await offsets.recordBatchStart({ batchTime: inFlight, ranges: ranges(inFlight) });
        await offsets.release();
      }
    } finally {
      session.close();
    }
    for (const [where, offset] of [[idleRoot, 30], [inFlightRoot, 30], [neverRoot, 30], [newerInFlight, 40], [grownRoot, 40]] as const) {
      const created = run('snapshot', 'create', '--data-dir', dir, '--zookeeper', zk.connectString, '--zk-root', where);
      assert.equal(created.code, 0, created.stderr);
      const [info] = listSnapshots(dir);
      assert.equal(info.batchTime, 4000);
      assert.deepEqual(info.manifest.sources, [{ kind: 'kafka', zookeeperRoot: where, positions: [{ topic: 'words', partition: 0, offset }, { topic: 'words', partition: 1, offset }] }], where);
      rmSync(info.path, { recursive: true });
    }
    // Stores behind ZooKeeper (restored from an older snapshot): its positions are past the stores' batch.
    const behind = run('snapshot', 'create', '--data-dir', dir, '--zookeeper', zk.connectString, '--zk-root', ahead);
    assert.equal(behind.code, 1);
    assert.match(behind.stderr, /the stores hold batch 4000, but ZooKeeper \(\/statestream\/cli-test-ahead\) records batch 5000 as the last one/);
    const nothing = run('snapshot', 'create', '--data-dir', dir, '--zookeeper', zk.connectString, '--zk-root', emptyRoot);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /the stores hold batch 4000, but ZooKeeper \(\/statestream\/cli-test-empty\) records batch none as the last one/);
    assert.deepEqual(listSnapshots(dir).map((x) => x.batchTime), [2000], 'no snapshot taken');
  });

  it('snapshot create records the Kafka positions; restore says how many batches ZooKeeper will replay, and refuses when it cannot', async () => {
    const dir = tempDir();
    cpSync(dataDir, dir, { recursive: true });
    rmSync(join(dir, 'snapshots', '4000'), { recursive: true });
    const created = run('snapshot', 'create', '--data-dir', dir, ...zkArgs());
    assert.equal(created.code, 0, created.stderr);
    const [info] = listSnapshots(dir);
    assert.deepEqual(info.manifest.sources, [{ kind: 'kafka', zookeeperRoot: root, positions: [{ topic: 'words', partition: 0, offset: 40 }, { topic: 'words', partition: 1, offset: 40 }] }]);
    // Without --zookeeper, inspect shows the positions the newest snapshot recorded.
    assert.deepEqual(JSON.parse(run('inspect', '--data-dir', dir, '--json').stdout).offsets, { from: 'snapshot', snapshot: 4000, sources: info.manifest.sources });

    // A snapshot of the job under another root: checked against this root, the replay would be judged on another job's history.
    const manifestPath = join(info.path, 'manifest.json');
    const original = readFileSync(manifestPath, 'utf8');
    writeFileSync(manifestPath, original.replace(JSON.stringify(root), JSON.stringify('/some/other-job')));
    const other = run('snapshot', 'restore', '4000', '--data-dir', dir, ...zkArgs());
    assert.equal(other.code, 1);
    assert.match(other.stderr, /snapshot 4000 was taken of the job whose ZooKeeper root is \/some\/other-job, not \S+: give --zk-root \/some\/other-job, nothing was changed/);
    // A job of two Kafka sources has a root for each: this root, named second, is the job's too.
    const twoSources = JSON.parse(original);
    twoSources.sources = [{ ...twoSources.sources[0], zookeeperRoot: '/some/other-job' }, twoSources.sources[0]];
    writeFileSync(manifestPath, JSON.stringify(twoSources));
    const second = run('snapshot', 'restore', '4000', '--data-dir', dir, ...zkArgs());
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /nothing to replay\); checked under \S+ only, not under the other sources' roots \(\/some\/other-job\)/);
    twoSources.sources[1].zookeeperRoot = '/yet/another-job';
    writeFileSync(manifestPath, JSON.stringify(twoSources));
    const neither = run('snapshot', 'restore', '4000', '--data-dir', dir, ...zkArgs());
    assert.equal(neither.code, 1);
    assert.match(neither.stderr, /whose ZooKeeper roots are \/some\/other-job, \/yet\/another-job \(one per Kafka source\), not \S+: give --zk-root one of them, nothing was changed/);
    writeFileSync(manifestPath, original);

    // A snapshot that names no source (taken without --zookeeper) cannot tell its root: a root that records no batch is no job's.
    const snapshot2000 = join(dir, 'snapshots', '2000', 'manifest.json');
    const before2000 = readFileSync(snapshot2000, 'utf8');
    assert.deepEqual(JSON.parse(before2000).sources, [], 'the snapshot of 2000 names no source');
    const parent = run('snapshot', 'restore', '2000', '--data-dir', dir, '--zookeeper', zk.connectString, '--zk-root', '/statestream');
    assert.equal(parent.code, 1, parent.stdout);
    assert.match(parent.stderr, /ZooKeeper \(\/statestream\) records no batch, so it is not the root of the job that ran batch 2000 \(it holds [^)]*\/statestream\/cli-test\b[^)]*\): give --zk-root the job's root, or leave out --zookeeper to restore anyway \(for a queue job\); nothing was changed/);
    assert.equal(JSON.parse(run('inspect', '--json', '--data-dir', dir).stdout).streams[0].lastBatch, 4000, 'nothing was restored');

    const restored = run('snapshot', 'restore', '2000', '--data-dir', dir, ...zkArgs());
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /The next start of a Kafka job replays the batches after 2000 from ZooKeeper's history \(2 batches, up to 4000\)/);

    const session = new ZooKeeperSession({ connect: zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, root);
      await offsets.pruneHistory(3000);
      await offsets.release();
    } finally {
      session.close();
    }
    const refused = run('snapshot', 'restore', '2000', '--data-dir', dir, ...zkArgs());
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /no longer keeps the ranges after 2000/);
  });
});
