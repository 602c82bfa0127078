import { existsSync } from 'node:fs';
import { stateDir } from '../storage/partition/store.js';
import { listSnapshots } from '../storage/snapshots/manifest.js';
import { describeHolder, folderLockHolder } from '../storage/data-lock.js';
import { describeProcess } from '../storage/holder.js';
import { CliFailure, UsageError, checkDataFolder, common, formatBatch, formatBytes, parseCommand, print, table, toJson, zookeeperOptions, zookeeperTarget } from './args.js';
import type { PartitionReport } from '../storage/partition/store-check.js';
import { examineStream, streamsOnDisk } from './stores.js';
import { interruptedSwap, streamsMidSwap } from '../storage/stream-swap.js';
import type { readZooKeeperOffsets } from './zk.js';
import type { ClusterReport, clusterLines } from './cluster-report.js';
import { isBrokerAddress, isPathName } from '../storage/zookeeper/connect-options.js';

export const inspectUsage = `Usage: statestream inspect [--data-dir <path>] [--stream <n>] [--zookeeper host:port --zk-root /statestream/<app>] [--brokers host:port,…] [--app-name <name>] [--json]

Shows who holds the data folder's lock (a running job or a command), each stream's
partition stores (path, data.mdb size, key count, last committed batch, layout, health),
the snapshots, and the source offsets: from ZooKeeper when --zookeeper and --zk-root are
given (with the copy of the job that owns the root), otherwise the positions the newest
snapshot recorded. It only reads. Beside a running job each run opens each store once; with
lmdb-js 3.5.6 opening a running job's store may harm its commits (seen with loops of opens,
not with single runs: see docs/operations.md).

When --zk-root is a cluster's root (/statestream-cluster/<app>), it shows the cluster
instead of offsets: the members and the leader, each state partition's owner and epoch
by the assignment and by its owner node, how far each got (the next repartition offset
and its changelog offset), and which instance reads each source partition from where.
With --brokers it adds each repartition, changelog and source partition's lag behind
its end.

Options:
  --data-dir <path>      the job's data folder (default ./statestream-data)
  --stream <n>           only this mapWithState stream (default: every stream found)
  --zookeeper host:port  read the offsets from ZooKeeper ...
  --zk-root <path>       ... under the job's root, e.g. /statestream/word-count
  --zk-digest user:pw    ZooKeeper digest credentials, when the nodes have an ACL
  --zk-timeout <ms>      how long to wait for ZooKeeper to answer (default 10000)
  --brokers host:port,…  with a cluster root: read the topics' ends and show the lag
  --app-name <name>      with a cluster root: the job's appName, which names its topics
                         (default: the root's last part)
  --json                 one JSON document instead of the tables

Exit codes: 0 every store is healthy, 1 a store is damaged or cannot be read (a newer store format, a failure to open that is
not its data), the data folder is missing, the stream given by --stream has no state, or ZooKeeper cannot be read, 2 usage
error.`;

interface StreamReport {
  stream: number;
  layout: PartitionReport['layout'];
  keyCount: number;
  lastBatch: number | undefined;
  /** Partitions whose last batch differs from the newest (a batch in flight when the job stopped). */
  behind: number[];
  /** Set when a reshard, an import or a snapshot restore was interrupted: the next start (or the next such command) finishes or rolls it back. */
  interrupted: string | undefined;
  partitions: PartitionReport[];
}

export async function inspect(args: string[]): Promise<number> {
  const { values } = parseCommand('inspect', args, { ...zookeeperOptions, brokers: { type: 'string' }, 'app-name': { type: 'string' } }, { min: 0, max: 0, names: '' });
  if (values.help) return print(inspectUsage), 0;
  const { dataDir, stream, streamGiven, json } = common('inspect', values);
  const zk = zookeeperTarget('inspect', values);
  const clusterOnly = ['brokers', 'app-name'].filter((o) => values[o] !== undefined).map((o) => `--${o}`);
  if (clusterOnly.length > 0 && !zk) throw new UsageError(`${clusterOnly.join(' and ')} need --zookeeper and --zk-root (the cluster's root)`, 'inspect');
  // Checked as given: a bad one would only show as "lag unknown" inside a report that exits 0.
  const brokers = typeof values.brokers === 'string' ? values.brokers.split(',') : undefined;
  if (brokers && !brokers.every(isBrokerAddress)) {
    throw new UsageError(`--brokers must be host:port[,host:port…], each port from 1 to 65535, got ${JSON.stringify(values.brokers)}`, 'inspect');
  }
  if (values['app-name'] !== undefined && !isPathName(values['app-name'])) {
    throw new UsageError(`--app-name must be the job's appName: 1–100 letters, digits, '.', '_' or '-' (not '.' or '..'), got ${JSON.stringify(values['app-name'])}`, 'inspect');
  }
  checkDataFolder(dataDir, { existing: true });

  // A stream whose folder is mid-rename in a reshard, an import or a restore shows under its index too.
  const indexes = streamGiven ? [stream] : [...new Set([...streamsOnDisk(dataDir), ...streamsMidSwap(dataDir)])].sort((a, b) => a - b);
  const streams: StreamReport[] = indexes.map((s) => {
    const partitions = examineStream(dataDir, s);
    const healthy = partitions.filter((p) => !p.problem && !p.unreadable);
    const lastBatch = healthy.reduce<number | undefined>((m, p) => (p.lastBatch !== undefined && (m === undefined || p.lastBatch > m) ? p.lastBatch : m), undefined);
    return {
      stream: s, layout: healthy[0]?.layout, keyCount: healthy.reduce((n, p) => n + (p.keyCount ?? 0), 0), lastBatch,
      // A cluster instance's partitions run on their owners' batches: one it gave up holds an older one, and nothing is in flight.
      behind: healthy.some((p) => p.cluster) ? [] : healthy.filter((p) => p.lastBatch !== lastBatch).map((p) => p.partition), partitions,
      interrupted: interruptedSwap(dataDir, s),
    };
  });
  const lock = await folderLockHolder(dataDir);
  const snapshots = listSnapshots(dataDir);
  const newest = snapshots[0];
  let offsets: unknown;
  let zkProblem: string | undefined;
  let linesOfCluster: typeof clusterLines | undefined;
  if (zk) {
    // Loaded when asked for: ZooKeeper's client and kafkajs cost every other run of the command their load.
    const [{ MissingRootFailure, readZooKeeperOffsets }, { clusterLines, readClusterReport }] = await Promise.all([import('./zk.js'), import('./cluster-report.js')]);
    linesOfCluster = clusterLines;
    // ZooKeeper away: the stores are still reported, and the offsets say why they are missing.
    try {
      const appName = typeof values['app-name'] === 'string' ? values['app-name'] : zk.root.split('/').at(-1)!;
      const cluster = await readClusterReport(zk, { appName, brokers });
      if (cluster) {
        offsets = { from: 'cluster', ...cluster };
      } else if (clusterOnly.length > 0) {
        throw new UsageError(`${clusterOnly.join(' and ')} apply to a cluster's root, and ${zk.root} is not one (it holds no assignment)`, 'inspect');
      } else offsets = { from: 'zookeeper', ...(await readZooKeeperOffsets(zk)) };
    } catch (error) {
      if (!(error instanceof CliFailure)) throw error;
      zkProblem = error.message;
      offsets = { from: error instanceof MissingRootFailure ? 'zookeeper-root-missing' : 'zookeeper-unreachable', connect: zk.connect, root: zk.root, problem: zkProblem };
    }
  } else if (newest) {
    offsets = { from: 'snapshot', snapshot: newest.batchTime, sources: newest.manifest.sources };
  } else {
    offsets = { from: 'none' };
  }
  const problems = streams.flatMap((s) => s.partitions.filter((p) => p.problem || p.unreadable).map((p) => `stream ${s.stream} partition ${p.partition}: ${p.problem ?? `not read: ${p.unreadable}`}`));
  const missing = [
    ...(streamGiven && streams[0].partitions.length === 0 ? [`stream ${stream} has no state under ${dataDir}`] : []),
    ...(zkProblem ? [zkProblem] : []),
  ];

  const report = {
    dataDir, lock, streams,
    snapshots: snapshots.map((s) => ({
      batchTime: s.batchTime, createdAt: s.manifest.createdAt, path: s.path,
      keyCount: s.manifest.streams.reduce((n, m) => n + m.keyCount, 0),
      bytes: s.manifest.streams.flatMap((m) => m.partitions).reduce((n, p) => n + p.bytes, 0),
    })),
    offsets, healthy: problems.length === 0 && missing.length === 0, problems: [...missing, ...problems],
  };
  if (json) {
    print(toJson(report, 2));
  } else {
    print(humanReport(report, streams, linesOfCluster));
  }
  if (!report.healthy) {
    process.stderr.write(`statestream: ${report.problems.join('; ')}\n`);
    return 1;
  }
  return 0;
}

type Report = { dataDir: string; lock: Awaited<ReturnType<typeof folderLockHolder>>; snapshots: Array<{ batchTime: number; createdAt: string; keyCount: number; bytes: number }>; offsets: unknown };

function humanReport(report: Report, streams: StreamReport[], linesOfCluster: typeof clusterLines | undefined): string {
  const out: string[] = [`Data folder ${report.dataDir}`];
  out.push(report.lock.held ? `  in use by ${describeHolder(report.lock.holder)}` : '  not in use (no job or state-changing command holds its lock)');
  if (streams.length === 0) out.push('', 'No state streams (no state-<n> folder).');
  for (const s of streams) {
    out.push('', `Stream ${s.stream}`);
    if (s.layout) {
      const l = s.layout;
      out.push(
        `  layout: ${l.numPartitions} partitions, partitioner ${l.partitioner}, format version ${l.formatVersion}, ` +
          `time index ${(l.timeIndexed ?? true) ? 'kept' : 'off'}` + (l.stateVersion !== undefined ? `, state version ${l.stateVersion}` : ''),
      );
    }
    out.push(`  keys: ${s.keyCount}   last committed batch: ${formatBatch(s.lastBatch)}`);
    if (s.interrupted) out.push(`  ${s.interrupted}: the next start finishes it (or rolls it back)`);
    if (s.behind.length > 0) out.push(`  partitions ${s.behind.join(', ')} hold an older batch (a batch was in flight when the job stopped; the next start completes it)`);
    if (s.partitions.length === 0) {
      out.push(existsSync(stateDir(report.dataDir, s.stream)) ? '  no partition stores: the folder is empty, the stream has no state yet' : `  no partition stores: there is no ${stateDir(report.dataDir, s.stream)}`);
      continue;
    }
    out.push(
      table([
        ['partition', 'health', 'keys', 'last batch', 'data.mdb', 'dead letters', 'path'],
        ...s.partitions.map((p) => [
          String(p.partition), p.problem ? `DAMAGED: ${p.problem}` : p.unreadable ? `UNREADABLE: ${p.unreadable}` : p.initialised === false ? 'empty (never initialised)' : 'ok', p.keyCount === undefined ? '-' : String(p.keyCount),
          p.lastBatch === undefined ? '-' : String(p.lastBatch), p.bytes === undefined ? '-' : formatBytes(p.bytes),
          p.deadLetters === undefined ? '-' : String(p.deadLetters), p.path,
        ]),
      ])
        .split('\n')
        .map((line) => `  ${line}`)
        .join('\n'),
    );
  }
  out.push('');
  if (report.snapshots.length === 0) out.push('Snapshots: none');
  else {
    out.push(`Snapshots: ${report.snapshots.length}, newest ${formatBatch(report.snapshots[0].batchTime)}`);
    out.push(...report.snapshots.map((s) => `  ${s.batchTime}  created ${s.createdAt}  ${s.keyCount} keys  ${formatBytes(s.bytes)}`));
  }
  out.push('');
  const offsets = report.offsets as { from: string; [k: string]: unknown };
  if (offsets.from === 'zookeeper') {
    const zk = offsets as unknown as Awaited<ReturnType<typeof readZooKeeperOffsets>>;
    out.push(`Offsets (ZooKeeper ${zk.root}): last batch ${formatBatch(zk.lastBatch)}` + (zk.inFlight ? `, batch ${zk.inFlight.batchTime} in flight` : ', no batch in flight'));
    out.push(...zk.positions.map((p) => `  ${p.topic}[${p.partition}] next offset ${p.offset}`));
    if (zk.history.length > 0) out.push(`  history kept for replay: batches ${zk.history[0]} … ${zk.history.at(-1)} (${zk.history.length})`);
    const owner = zk.owner?.record;
    out.push(owner ? `  owned by ${describeProcess(owner, `job "${owner.appName}" on data folder ${owner.dataDir}`)}, node ${zk.owner!.node}` : '  owned by no running copy of the job');
    if (zk.waiting.length > 0) out.push(`  waiting to own it: ${zk.waiting.map((w) => describeProcess(w.record)).join('; ')}`);
  } else if (offsets.from === 'cluster') {
    out.push(...linesOfCluster!(offsets as unknown as ClusterReport, table));
  } else if (offsets.from === 'zookeeper-unreachable' || offsets.from === 'zookeeper-root-missing') {
    out.push(`Offsets (ZooKeeper ${offsets.root}): unknown, ${offsets.problem}`);
  } else if (offsets.from === 'snapshot') {
    const sources = offsets.sources as Array<{ kind: string; zookeeperRoot?: string; positions: Array<{ topic: string; partition: number; offset: number }> }>;
    out.push(`Offsets (as recorded by snapshot ${offsets.snapshot}; give --zookeeper and --zk-root for the current ones):`);
    if (sources.length === 0) out.push('  none recorded (a queue source)');
    for (const source of sources) {
      out.push(`  ${source.kind}${source.zookeeperRoot ? ` (ZooKeeper ${source.zookeeperRoot})` : ''}`);
      out.push(...source.positions.map((p) => `    ${p.topic}[${p.partition}] next offset ${p.offset}`));
    }
  } else {
    out.push('Offsets: unknown (no snapshot; give --zookeeper and --zk-root to read them from ZooKeeper)');
  }
  return out.join('\n');
}

