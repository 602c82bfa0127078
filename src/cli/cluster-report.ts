import { Kafka, logLevel } from 'kafkajs';
import type { Assignment } from '../cluster/assignment.js';
import type { ClusterMember, OwnerNodeRecord } from '../cluster/coordinator.js';
import { changelogTopic, repartitionTopic } from '../cluster/topics.js';
import type { ZooKeeperSession } from '../storage/zookeeper/session.js';
import type { ZooKeeperTarget } from './args.js';
import { withZooKeeper } from './zk.js';

export interface ClusterPartitionReport {
  partition: number;
  /** Per the assignment. */
  owner: string | undefined;
  epoch: number;
  /** Per the owner node: who holds the partition now ('taking' while the assigned owner has not made it yet). */
  holder: string | undefined;
  holderEpoch: number | undefined;
  /** As of the owner's last batch: the next repartition offset and the changelog offset of its batch end. */
  position: number | undefined;
  changelogOffset: number | undefined;
  progressAt: string | undefined;
  /**
   * With --brokers: the topics' end offsets and how far the owner is behind them. The
   * changelog lag of a running owner is a batch or two (every batch writes a batch end, and
   * the progress is published before it); an owner still restoring has published none yet.
   */
  repartitionEnd?: number;
  repartitionLag?: number;
  changelogEnd?: number;
  changelogLag?: number;
}

export interface ClusterReport {
  root: string;
  appName: string;
  members: Array<ClusterMember & { leader: boolean }>;
  generation: number | undefined;
  streams: Array<{ stream: number; repartitionTopic: string; changelogTopic: string; partitions: ClusterPartitionReport[] }>;
  sources: Array<{ topic: string; partition: number; reader: string | undefined; position: number | undefined; end?: number; lag?: number }>;
  /** Set when --brokers was given but Kafka could not be read. */
  kafkaProblem?: string;
}

async function data(session: ZooKeeperSession, path: string): Promise<string | undefined> {
  return (await session.read(path))?.toString('utf8');
}

/**
 * Members, leader, the assignment with its epochs, who holds each owner node and how far
 * each partition got, and where stage 1 reads each source partition; with brokers, the lag
 * of each repartition, changelog and source partition behind its end. Undefined when `root`
 * is not a cluster's (no leader wrote an assignment there).
 */
export async function readClusterReport(target: ZooKeeperTarget, options: { appName: string; brokers?: string[] }): Promise<ClusterReport | undefined> {
  const report = await withZooKeeper(target, async (_, session): Promise<ClusterReport | undefined> => {
    const root = target.root;
    const assignment = JSON.parse((await data(session, `${root}/assignment`)) ?? 'null') as Assignment | null;
    if (!assignment) return undefined;
    const candidates = (await session.children(`${root}/leader`)).sort((a, b) => Number(a.split('-').at(-1)) - Number(b.split('-').at(-1)));
    const leader = candidates[0] === undefined ? undefined : await data(session, `${root}/leader/${candidates[0]}`);
    const members: ClusterReport['members'] = [];
    for (const id of (await session.children(`${root}/members`)).sort()) {
      const record = await data(session, `${root}/members/${id}`);
      if (record) members.push({ ...(JSON.parse(record) as ClusterMember), id, leader: id === leader });
    }
    const streams: ClusterReport['streams'] = [];
    for (const [stream, partitions] of Object.entries(assignment.streams)) {
      const rows: ClusterPartitionReport[] = [];
      for (const [partition, assigned] of partitions.entries()) {
        const raw = await data(session, `${root}/owners/${stream}/${partition}`);
        const node = raw ? (JSON.parse(raw) as OwnerNodeRecord) : undefined;
        rows.push({
          partition, owner: assigned.owner, epoch: assigned.epoch, holder: node?.instance, holderEpoch: node?.epoch,
          position: node?.progress?.position, changelogOffset: node?.progress?.changelogOffset,
          progressAt: node?.progress ? new Date(node.progress.at).toISOString() : undefined,
        });
      }
      streams.push({ stream: Number(stream), repartitionTopic: repartitionTopic(options.appName, Number(stream)), changelogTopic: changelogTopic(options.appName, Number(stream)), partitions: rows });
    }
    const sources: ClusterReport['sources'] = [];
    for (const [topic, partitions] of Object.entries(assignment.sources ?? {})) {
      for (const [partition, assigned] of partitions.entries()) {
        const position = await data(session, `${root}/sources/${encodeURIComponent(topic)}/${partition}`);
        sources.push({ topic, partition, reader: assigned.owner, position: position === undefined ? undefined : Number(position) });
      }
    }
    return { root, appName: options.appName, members, generation: assignment.generation, streams, sources };
  });
  if (report && options.brokers) await addLag(report, options.brokers);
  return report;
}

/** The end offsets of the job's topics, and each reader's distance from them. */
async function addLag(report: ClusterReport, brokers: string[]): Promise<void> {
  const admin = new Kafka({ clientId: 'statestream-inspect', brokers, logLevel: logLevel.NOTHING, retry: { retries: 2, initialRetryTime: 200 } }).admin();
  const ends = async (topic: string) => new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, Number(o.high)]));
  try {
    await admin.connect();
    for (const s of report.streams) {
      const repartition = await ends(s.repartitionTopic);
      const changelog = await ends(s.changelogTopic);
      for (const p of s.partitions) {
        p.repartitionEnd = repartition.get(p.partition);
        p.changelogEnd = changelog.get(p.partition);
        if (p.position !== undefined && p.repartitionEnd !== undefined) p.repartitionLag = Math.max(0, p.repartitionEnd - p.position);
        if (p.changelogOffset !== undefined && p.changelogEnd !== undefined) p.changelogLag = Math.max(0, p.changelogEnd - (p.changelogOffset + 1));
      }
    }
    const topics = [...new Set(report.sources.map((s) => s.topic))];
    for (const topic of topics) {
      const source = await ends(topic);
      for (const s of report.sources.filter((x) => x.topic === topic)) {
        s.end = source.get(s.partition);
        if (s.end !== undefined) s.lag = Math.max(0, s.end - (s.position ?? 0));
      }
    }
  } catch (error) {
    report.kafkaProblem = `cannot read the topics' end offsets from ${brokers.join(',')}: ${(error as Error).message}`;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

const dash = (v: unknown) => (v === undefined ? '-' : String(v));

/** The cluster section of `inspect`, as lines. */
export function clusterLines(report: ClusterReport, table: (rows: string[][]) => string): string[] {
  const out = [`Cluster (ZooKeeper ${report.root}, app ${report.appName}): ${report.members.length} members, assignment generation ${dash(report.generation)}`];
  for (const m of report.members) out.push(`  ${m.id}${m.leader ? ' (leader)' : ''}: pid ${m.pid} on ${m.host}, data folder ${m.dataDir}, since ${m.since}`);
  if (report.kafkaProblem) out.push(`  lag unknown: ${report.kafkaProblem}`);
  const indent = (text: string) => text.split('\n').map((l) => `  ${l}`).join('\n');
  for (const s of report.streams) {
    out.push(`  Stream ${s.stream} (${s.repartitionTopic} → ${s.changelogTopic})`);
    out.push(
      indent(
        table([
          ['partition', 'owner', 'epoch', 'held by', 'next pair', 'repartition lag', 'changelog at', 'changelog lag'],
          ...s.partitions.map((p) => [
            String(p.partition), dash(p.owner), String(p.epoch),
            p.holder === undefined ? 'nobody (taking)' : p.holder === p.owner && p.holderEpoch === p.epoch ? 'owner' : `${p.holder} (epoch ${dash(p.holderEpoch)}, handing over)`,
            dash(p.position), dash(p.repartitionLag), dash(p.changelogOffset), dash(p.changelogLag),
          ]),
        ]),
      ),
    );
  }
  if (report.sources.length > 0) {
    out.push('  Source partitions (stage 1)');
    out.push(indent(table([['topic', 'partition', 'read by', 'next offset', 'lag'], ...report.sources.map((s) => [s.topic, String(s.partition), dash(s.reader), dash(s.position), dash(s.lag)])])));
  }
  return out;
}
