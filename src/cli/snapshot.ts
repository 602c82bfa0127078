import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { BatchLog } from '../storage/partition/batch-log.js';
import { closePartitionStores, partitionFolder, partitionsOnDisk, stateDir } from '../storage/partition/store.js';
import { findSnapshot, listSnapshots, newerStoreFormat, scanSnapshots, verifySnapshot, type SnapshotInfo, type SourcePositions } from '../storage/snapshots/manifest.js';
import { beginSnapshot } from '../storage/snapshots/writer.js';
import { batchTimeArg, CliFailure, checkDataFolder, common, formatBatch, formatBytes, parseCommand, print, table, toJson, UsageError, zookeeperOptions, zookeeperTarget, type ZooKeeperTarget } from './args.js';
import { asideFolder, commitSwap, interruptedSwap, moveWithSwap, recoverInterruptedSwaps, streamsMidSwap, swapPaths } from '../storage/stream-swap.js';
import { assertJobStopped, lockFolder, openStream, settledJson, settledNotes, settleInterruptedSwaps, streamsOnDisk } from './stores.js';
import { copyFileCounted, Progress } from './progress.js';

export const snapshotUsage = `Usage: statestream snapshot <list|create|restore> [options]

  statestream snapshot list [--verify]         the snapshots under <data-dir>/snapshots, newest first
  statestream snapshot create                   snapshot a stopped job's stores
  statestream snapshot restore <batchTime>      put a snapshot's copies in place of a stopped job's state

Run 'statestream snapshot <command> --help' for each command's options.`;

const listUsage = `Usage: statestream snapshot list [--data-dir <path>] [--stream <n>] [--verify] [--json]

Lists the whole snapshots, newest first: batch time, when it was created, partitions,
keys and bytes. --stream lists only the snapshots that hold that stream. --verify
recomputes every copy's SHA-256 and compares it with the manifest; a snapshot folder
whose manifest cannot be read fails it too (without --verify it is named on stderr).

Exit codes: 0 success, 1 a snapshot fails verification or there is no data folder, 2 usage
error.`;

const createUsage = `Usage: statestream snapshot create [--data-dir <path>] [--stream <n>] [--zookeeper host:port --zk-root <path>] [--json]

Snapshots a STOPPED job's state (a running job snapshots itself with snapshotEvery).
Every partition of every stream must hold the same last batch; the snapshot is named
after it. With --zookeeper and --zk-root, the Kafka positions after that batch are
recorded in the manifest.

Options:
  --data-dir <path>      the job's data folder (default ./statestream-data)
  --stream <n>           snapshot only this stream (default: every stream found)
  --zookeeper host:port  record the Kafka positions read from ZooKeeper ...
  --zk-root <path>       ... under the job's root, e.g. /statestream/word-count
  --zk-digest user:pw    ZooKeeper digest credentials, when the nodes have an ACL
  --zk-timeout <ms>      how long to wait for ZooKeeper to answer (default 10000)

Exit codes: 0 success, 1 refused (partitions at different batches, no state, snapshot exists), 2 usage error.`;

const restoreUsage = `Usage: statestream snapshot restore <batchTime> [--data-dir <path>] [--stream <n>] [--zookeeper host:port --zk-root <path>] [--json]

For a STOPPED job: verifies the snapshot's checksums, moves the current state-<stream>
folder to <data-dir>/replaced/<timestamp>/ and puts the snapshot's copies in its place.
Then says what the next start will do: a Kafka job replays the batches after the
snapshot from ZooKeeper's history; a queue job starts from the snapshot's state.
With --zookeeper and --zk-root (and --zk-digest user:pw for ACLs, --zk-timeout <ms> to
wait other than 10 s for an answer), checks first that ZooKeeper still keeps that
history, and refuses when it does not.

Options:
  --data-dir <path>   the job's data folder (default ./statestream-data)
  --stream <n>        the stream to restore (default 0)

Progress of the copy goes to stderr: a bar on a terminal, a line every 2 s otherwise (--quiet: none).

Exit codes: 0 success, 1 no such snapshot, damaged snapshot, or it does not hold the stream, 2 usage error.`;

export async function snapshot(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'list':
      return list(rest);
    case 'create':
      return create(rest);
    case 'restore':
      return restore(rest);
    case undefined:
    case '--help':
    case '-h':
      if (sub === undefined) throw new UsageError('snapshot: missing command (list, create or restore)', 'snapshot');
      print(snapshotUsage);
      return 0;
    default:
      throw new UsageError(`snapshot: unknown command ${JSON.stringify(sub)} (list, create or restore)`, 'snapshot');
  }
}

function summary(s: SnapshotInfo) {
  const parts = s.manifest.streams.flatMap((m) => m.partitions);
  return {
    batchTime: s.batchTime, createdAt: s.manifest.createdAt, path: s.path,
    streams: s.manifest.streams.map((m) => m.stream), partitions: parts.length,
    keyCount: s.manifest.streams.reduce((n, m) => n + m.keyCount, 0), bytes: parts.reduce((n, p) => n + p.bytes, 0),
    sources: s.manifest.sources,
  };
}

async function list(args: string[]): Promise<number> {
  const { values } = parseCommand('snapshot list', args, { verify: { type: 'boolean' } }, { min: 0, max: 0, names: '' });
  if (values.help) return print(listUsage), 0;
  const { dataDir, json, stream, streamGiven } = common('snapshot list', values);
  checkDataFolder(dataDir, { existing: true });
  const rows = [];
  const { readable, unreadable } = scanSnapshots(dataDir);
  for (const s of readable) {
    if (streamGiven && !s.manifest.streams.some((m) => m.stream === stream)) continue;
    const problems = values.verify ? await verifySnapshot(s) : undefined;
    rows.push({ ...summary(s), ...(problems ? { verified: problems.length === 0, problems } : {}) });
  }
  // A snapshot whose manifest cannot be read is no candidate for restore: --verify fails on it, a plain list names it.
  if (values.verify) {
    for (const u of unreadable) rows.push({ batchTime: u.batchTime, createdAt: '-', path: u.path, streams: [], partitions: 0, keyCount: 0, bytes: 0, sources: [], verified: false, problems: [u.problem] });
    rows.sort((a, b) => b.batchTime - a.batchTime);
  } else {
    for (const u of unreadable) process.stderr.write(`statestream: snapshot ${u.batchTime} cannot be read: ${u.problem}\n`);
  }
  if (json) print(toJson(rows, 2));
  else if (rows.length === 0) print(streamGiven && readable.length > 0 ? `No snapshot under ${join(dataDir, 'snapshots')} holds stream ${stream}.` : `No snapshots under ${join(dataDir, 'snapshots')}.`);
  else {
    print(
      table([
        ['batch time', 'created', 'partitions', 'keys', 'bytes', ...(values.verify ? ['verify'] : [])],
        ...rows.map((r) => [
          formatBatch(r.batchTime), r.createdAt, String(r.partitions), String(r.keyCount), formatBytes(r.bytes),
          ...(r.problems ? [r.problems.length === 0 ? 'ok' : `FAILED: ${r.problems.join('; ')}`] : []),
        ]),
      ]),
    );
  }
  const failed = rows.filter((r) => r.problems && r.problems.length > 0);
  if (failed.length > 0) {
    process.stderr.write(`statestream: ${failed.length} snapshot(s) fail verification: ${failed.map((r) => r.batchTime).join(', ')}\n`);
    return 1;
  }
  return 0;
}

/** The Kafka positions after `batchTime`, as ZooKeeper records them for a stopped job. */
async function kafkaPositions(zk: ZooKeeperTarget, batchTime: number): Promise<SourcePositions> {
  // ZooKeeper's client is loaded only when a command is given a ZooKeeper.
  const offsets = await (await import('./zk.js')).readZooKeeperOffsets(zk);
  const positions = offsets.positions.map((p) => ({ ...p }));
  const { inFlight, lastBatch } = offsets;
  // Batches run one at a time, and one that takes records is recorded before it runs (one
  // without records only when the job keeps a history or has a timeout): the batches after
  // the newest recorded one the stores hold took none, and moved no position. A batch in
  // flight that the stores hold was committed by every partition; its end was not recorded.
  const committed = inFlight !== undefined && inFlight.batchTime <= batchTime ? inFlight : undefined;
  // With no batch ended, the positions are those the first start recorded (and a committed batch in flight moves them below).
  if (lastBatch === undefined ? positions.length === 0 : lastBatch > batchTime) {
    throw new CliFailure(
      `the stores hold batch ${batchTime}, but ZooKeeper (${zk.root}) records batch ${lastBatch ?? 'none'} as the last one` +
        `${inFlight ? ` and ${inFlight.batchTime} in flight` : ''}: its positions are not those after the stores' batch. Start the job once so they agree, or leave out --zookeeper`,
    );
  }
  for (const r of committed?.ranges ?? []) {
    const p = positions.find((q) => q.topic === r.topic && q.partition === r.partition);
    if (p) p.offset = r.until;
    else positions.push({ topic: r.topic, partition: r.partition, offset: r.until });
  }
  return { kind: 'kafka', zookeeperRoot: zk.root, positions };
}

async function create(args: string[]): Promise<number> {
  const { values } = parseCommand('snapshot create', args, zookeeperOptions, { min: 0, max: 0, names: '' });
  if (values.help) return print(createUsage), 0;
  const { dataDir, stream, streamGiven, json } = common('snapshot create', values);
  const zk = zookeeperTarget('snapshot create', values);
  checkDataFolder(dataDir);
  // A stream whose reshard, import or restore a crash interrupted may have no state folder until that is settled: it is snapshotted too.
  const candidates = streamGiven ? [stream] : existsSync(dataDir) ? [...new Set([...streamsOnDisk(dataDir), ...streamsMidSwap(dataDir)])].sort((a, b) => a - b) : [];
  if (candidates.length === 0) throw new CliFailure(`there is no state to snapshot under ${dataDir}`);
  // Looked for before the lock is taken: taking it would create a mistyped folder and its lock file.
  for (const s of candidates) {
    if (!existsSync(stateDir(dataDir, s)) && !interruptedSwap(dataDir, s)) throw new CliFailure(`stream ${s} has no state under ${dataDir} (no ${stateDir(dataDir, s)})`);
  }
  const lock = await lockFolder(dataDir, 'snapshot create');
  try {
    const settled: Array<ReturnType<typeof recoverInterruptedSwaps>[number] & { stream: number }> = [];
    for (const s of candidates) {
      assertJobStopped(dataDir, s, 'snapshot create');
      settled.push(...recoverInterruptedSwaps(dataDir, s).map((x) => ({ ...x, stream: s })));
    }
    // Without --stream, an empty stream folder (a job stopped before its first store) has nothing to snapshot.
    const indexes = streamGiven ? candidates : candidates.filter((s) => partitionsOnDisk(dataDir, s).length > 0);
    if (indexes.length === 0) throw new CliFailure(`there is no state to snapshot under ${dataDir}`);
    const opened: Array<{ stream: number } & ReturnType<typeof openStream>> = [];
    let failed = true;
    try {
      for (const s of indexes) opened.push({ stream: s, ...openStream(dataDir, s) });
      // One batch for every partition of every stream: the snapshot is named after it.
      const held = opened.flatMap((o) => o.stores.map((store, partition) => ({ stream: o.stream, partition, lastBatch: new BatchLog(store).last()?.batchTime })));
      const times = [...new Set(held.map((h) => h.lastBatch))];
      if (times.length > 1) {
        throw new CliFailure(
          `the partitions hold different batches (${held.map((h) => `stream ${h.stream} partition ${h.partition}: ${h.lastBatch ?? 'none'}`).join(', ')}); ` +
            'a batch was in flight when the job stopped. Start the job once so it completes that batch, stop it, then snapshot',
        );
      }
      const batchTime = times[0];
      if (batchTime === undefined) throw new CliFailure(`the stores under ${dataDir} hold no committed batch yet: nothing to snapshot`);
      const sources = zk ? [await kafkaPositions(zk, batchTime)] : [];
      let info;
      try {
        const running = beginSnapshot({ dataDir, batchTime, appName: 'statestream-cli', streams: opened.map((o) => ({ stream: o.stream, stores: o.stores })), sources });
        // Both awaited together: a copy that fails rejects `done` while `started` still waits.
        [, info] = await Promise.all([running.started, running.done]);
      } catch (error) {
        throw new CliFailure((error as Error).message);
      }
      if (json) print(toJson({ ...summary(info), settledFirst: settledJson(settled) }, 2));
      else print([...settledNotes(settled), `Snapshot ${formatBatch(batchTime)} written to ${info.path}: ${summary(info).partitions} partitions, ${summary(info).keyCount} keys, ${formatBytes(summary(info).bytes)}.`].join('\n'));
      failed = false;
      return 0;
    } finally {
      // Every stream's stores, even when one close fails; after another failure, that one is reported.
      closePartitionStores(opened.flatMap((o) => o.stores), { afterFailure: failed });
    }
  } finally {
    lock.release();
  }
}

async function restore(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand('snapshot restore', args, zookeeperOptions, { min: 1, max: 1, names: '<batchTime> (see statestream snapshot list)' });
  if (values.help) return print(restoreUsage), 0;
  const { dataDir, stream, json, quiet } = common('snapshot restore', values);
  const batchTime = batchTimeArg('snapshot restore', positionals[0], '<batchTime>');
  const zk = zookeeperTarget('snapshot restore', values);
  checkDataFolder(dataDir);
  // What a crash left of an earlier restore is settled first: rolled back, it puts back the snapshots it had retired.
  // Only then is the lock taken here: a folder with nothing to restore into keeps no lock file.
  const settled = existsSync(dataDir) && interruptedSwap(dataDir, stream) !== undefined ? await settleInterruptedSwaps(dataDir, stream, 'snapshot restore') : [];
  let info: SnapshotInfo;
  try {
    info = findSnapshot(dataDir, batchTime);
  } catch (error) {
    throw new CliFailure(`${(error as Error).message}; 'statestream snapshot list' shows the snapshots`);
  }
  const manifest = info.manifest.streams.find((m) => m.stream === stream);
  if (!manifest) throw new CliFailure(`snapshot ${batchTime} holds no state of stream ${stream} (it holds streams ${info.manifest.streams.map((m) => m.stream).join(', ')})`);
  const newer = newerStoreFormat(manifest);
  if (newer) throw new CliFailure(`snapshot ${batchTime} cannot be restored by this statestream, nothing was changed: ${newer}`);
  const problems = await verifySnapshot(info, { stream, partitions: manifest.partitions.map((p) => p.partition) });
  if (problems.length > 0) throw new CliFailure(`snapshot ${batchTime} is damaged, nothing was changed: ${problems.join('; ')}`);

  // Before anything moves: whether ZooKeeper can replay what came after the snapshot.
  const kafka = info.manifest.sources.some((s) => s.kind === 'kafka');
  // One root per Kafka source of the job; --zk-root names one of them.
  const kafkaRoots = info.manifest.sources.flatMap((s) => (s.kind === 'kafka' && s.zookeeperRoot !== undefined ? [s.zookeeperRoot] : []));
  // Another job's root would check the replay against that job's history, and say it holds.
  if (zk && kafkaRoots.length > 0 && !kafkaRoots.includes(zk.root)) {
    const roots = kafkaRoots.length === 1 ? `root is ${kafkaRoots[0]}` : `roots are ${kafkaRoots.join(', ')} (one per Kafka source)`;
    throw new CliFailure(`snapshot ${batchTime} was taken of the job whose ZooKeeper ${roots}, not ${zk.root}: give --zk-root ${kafkaRoots.length === 1 ? kafkaRoots[0] : 'one of them'}, nothing was changed`);
  }
  const unchecked = zk ? kafkaRoots.filter((r) => r !== zk.root) : [];
  let replay: { lastBatch: number | undefined; batches: number | undefined } | undefined;
  if (zk) {
    replay = await (await import('./zk.js')).withZooKeeper(zk, async (offsets, session) => {
      const lastBatch = await offsets.lastEnded();
      if (lastBatch === undefined && kafkaRoots.length === 0) {
        // With no root in the snapshot to check --zk-root against, a parent of the job's root,
        // or another job's that never ran a batch, would read as "nothing to replay" and pass.
        const held = (await session.children(zk.root)).sort();
        const holds = held.length === 0 ? 'it holds nothing' : `it holds ${held.slice(0, 10).map((name) => `${zk.root === '/' ? '' : zk.root}/${name}`).join(', ')}${held.length > 10 ? ', …' : ''}`;
        throw new CliFailure(
          `ZooKeeper (${zk.root}) records no batch, so it is not the root of the job that ran batch ${batchTime} (${holds}): give --zk-root the job's root, ` +
            'or leave out --zookeeper to restore anyway (for a queue job); nothing was changed',
        );
      }
      if (lastBatch === undefined || lastBatch <= batchTime) return { lastBatch, batches: 0 };
      const history = await offsets.historyAfter(batchTime);
      if (!history) {
        throw new CliFailure(
          `ZooKeeper (${zk.root}) records batches up to ${lastBatch} but no longer keeps the ranges after ${batchTime}: a Kafka job could not replay them. ` +
            'Restore a newer snapshot, or leave out --zookeeper to restore anyway (for a queue job)',
        );
      }
      // Batches without records are re-run too: restored partitions sweep idle keys in them.
      return { lastBatch, batches: history.length };
    });
  }

  const lock = await lockFolder(dataDir, 'snapshot restore');
  try {
    assertJobStopped(dataDir, stream, 'snapshot restore');
    // A reshard, an import or a restore a crash left half-done would otherwise be finished over the restored state at the next start.
    settled.push(...recoverInterruptedSwaps(dataDir, stream));
    // Copy, then swap in whole (stream-swap.ts): the stream's folder is either the old state or the whole snapshot.
    const target = stateDir(dataDir, stream);
    const paths = swapPaths(dataDir, stream, 'restoring');
    const incoming = paths.building;
    const progress = new Progress('restore', 'bytes', manifest.partitions.reduce((n, p) => n + p.bytes, 0), { quiet });
    try {
      for (const part of manifest.partitions) {
        const dir = join(incoming, partitionFolder(part.partition));
        mkdirSync(dir, { recursive: true });
        copyFileCounted(join(info.path, part.file), join(dir, 'data.mdb'), progress);
      }
      progress.finish();
    } catch (error) {
      progress.abandon();
      // A disk that filled up leaves the current state as it was.
      rmSync(incoming, { recursive: true, force: true });
      throw new CliFailure(`copying snapshot ${batchTime} failed, nothing was changed: ${(error as Error).message}`);
    }
    // Snapshots newer than this one hold batches the restore undoes: a later restore of a
    // damaged partition must not bring them back (as Flink's checkpoints after a restore
    // are only those taken since). They are kept beside the replaced state.
    // A snapshot holds every stream: one that also holds another stream's state, whose history
    // this restore does not undo, stays (the output says to move it once every stream is restored).
    const aside = asideFolder(dataDir, stream);
    const newerSnapshots = listSnapshots(dataDir).filter((s) => s.batchTime > batchTime);
    const soleStream = newerSnapshots.every((s) => s.manifest.streams.every((m) => m.stream === stream));
    const retired = soleStream ? newerSnapshots : [];
    moveWithSwap(paths, retired.map((s) => [s.path, join(dirname(aside), 'snapshots', basename(s.path))] as const));
    const replacedDir = commitSwap(paths, aside);

    const kafkaNext =
      `The next start of a Kafka job replays the batches after ${batchTime} from ZooKeeper's history` +
      (replay
        ? (replay.batches ? ` (${replay.batches} batches, up to ${replay.lastBatch})` : ' (ZooKeeper records nothing after it: nothing to replay)') +
          (unchecked.length > 0 ? `; checked under ${zk!.root} only, not under the other sources' roots (${unchecked.join(', ')})` : '')
        : ` (${kafkaRoots.length > 0 ? kafkaRoots.join(', ') : 'under its ZooKeeper root'}; give --zookeeper and --zk-root to check it still keeps them)`) +
      ', then continues from the positions ZooKeeper holds.';
    const queueNext = `The next start of a queue job starts from the snapshot's state (batch ${batchTime}); batches after it are not replayed.`;
    // The manifest names a Kafka source when a Kafka job took it; a queue job's (or one taken without --zookeeper) names none.
    const next = kafka || zk ? kafkaNext : `${queueNext}\nIf the job reads Kafka instead: ${kafkaNext.replace(/^The next start of a Kafka job/, 'its next start')}`;
    const others = info.manifest.streams.filter((m) => m.stream !== stream).map((m) => m.stream);
    const retiredTo = retired.length > 0 ? join(dirname(aside), 'snapshots') : undefined;
    const result = { restored: batchTime, stream, partitions: manifest.partitions.length, keyCount: manifest.keyCount, path: target, replacedDir, retiredSnapshots: retired.map((s) => s.batchTime), retiredTo, keptNewerSnapshots: soleStream ? [] : newerSnapshots.map((s) => s.batchTime), next, otherStreams: others, settledFirst: settledJson(settled, stream) };
    if (json) print(toJson(result, 2));
    else {
      print(
        [
          `Restored snapshot ${formatBatch(batchTime)} into ${target} (${manifest.partitions.length} partitions, ${manifest.keyCount} keys).`,
          replacedDir ? `The state it replaced is kept in ${replacedDir}.` : 'There was no state to replace.',
          ...(retiredTo ? [`The snapshots newer than it (${retired.map((s) => s.batchTime).join(', ')}) hold batches this restore undoes; they are kept in ${retiredTo}, out of reach of a later restore.`] : []),
          ...(!soleStream
            ? [`The snapshots newer than it (${newerSnapshots.map((s) => s.batchTime).join(', ')}) hold batches this restore undoes for stream ${stream}, and other streams' state: they stay until every stream is restored; then move them away, or a damaged partition may be restored from them.`]
            : []),
          ...settledNotes(settled),
          next,
          ...(others.length > 0 ? [`The snapshot also holds streams ${others.join(', ')}; restore them with --stream <n> so every stream is of the same batch.`] : []),
        ].join('\n'),
      );
    }
    return 0;
  } finally {
    lock.release();
  }
}
