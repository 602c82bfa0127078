/**
 * A clustered word count on a real ZooKeeper and librdkafka's mock cluster of three
 * brokers, each instance a process of its own with its own data folder (as on separate
 * machines). Input is typed with kcat. The state is read from the instances' LMDB stores
 * (each running instance reads its own, store-report.ts says why) and checked against
 * ZooKeeper's assignment and owner nodes.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type zookeeper from 'node-zookeeper-client';
import { Kafka, logLevel } from 'kafkajs';
import { murmur2Partitioner } from '../../../src/engine/partitioner.js';
import { readPairs } from '../../../src/cluster/pairs.js';
import type { Assignment } from '../../../src/cluster/assignment.js';
import type { ClusterMeta } from '../../../src/cluster/restore-store.js';
import { startMockKafka, produceWithKcat, type MockKafka } from '../services/kafka.js';
import { connectClient, startZooKeeper, type ZooKeeperServer } from '../services/zookeeper.js';
import { ChildProcessLines, tally } from '../job-process.js';
import { within } from '../../wait.js';
import { readStores, type StoreReport } from './store-report.js';
import { countsByWord } from '../../examples/printed-counts.js';

export interface ClusterInstanceConfig {
  brokers: string[];
  topic: string;
  zookeeper: string;
  appName: string;
  dataDir: string;
  instanceId: string;
  partitions: number;
  batchMs: number;
  zkSessionTimeoutMs: number;
  groupSessionTimeoutMs: number;
  /** This instance's clock runs this far behind the others (machines whose clocks disagree). */
  clockBehindMs?: number;
  /** StateSpec.timeout: the instance counts with idle-count and prints its timeouts. */
  timeoutMs?: number;
  /** The instance counts with the spin fixture: the word SPIN never returns, and writes `<spinGate>/entered` first. */
  spinGate?: string;
  /** SIGTERM stops the instance with this stop({ timeoutMs }). */
  stopTimeoutMs?: number;
  /** The instance counts with poison-count under the dead-letter policy: the word POISON is dead-lettered. */
  deadLetters?: boolean;
  /** cluster.maxPairsPerBatch; the instance then prints `APPLIED <batchTime> <pairs>` for each batch that applied any. */
  maxPairsPerBatch?: number;
}

const fixture = fileURLToPath(new URL('../fixtures/cluster-count-job.js', import.meta.url));
const cli = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));
const example = fileURLToPath(new URL('../../../examples/kafka-word-count/main.js', import.meta.url));

export interface ClusterServices {
  zk: ZooKeeperServer;
  kafka: MockKafka;
}

export async function startClusterServices(): Promise<ClusterServices> {
  const [zk, kafka] = await Promise.all([startZooKeeper(), startMockKafka({ brokers: 3 })]);
  return { zk, kafka };
}

/** What the stores and ZooKeeper say once the instances are done. */
export interface ClusterState {
  /** The union of the owners' stores. */
  counts: Map<string, number>;
  /** Per partition: its owner and epoch by the assignment, by its owner node, and by the stores. */
  partitions: Array<{ partition: number; assigned: string | undefined; epoch: number; ownerNode: { instance: string; epoch: number } | undefined; storesAtEpoch: string[] }>;
}

/** What ZooKeeper says of the partitions: the assignment, and each partition's owner node. */
export interface ZooKeeperView {
  assignment: Assignment | undefined;
  ownerNodes: Array<{ instance: string; epoch: number } | undefined>;
  /** The instance whose candidate node has the lowest sequence number (the coordinator's rule). */
  leader: string | undefined;
}

/** ZooKeeper's NO_NODE: the node is not there (yet). */
const noNode = (error: unknown) => (error as { getCode?: () => number }).getCode?.() === -101;

function getData(client: zookeeper.Client, path: string): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => client.getData(path, (error, data) => (error ? (noNode(error) ? resolve(undefined) : reject(error)) : resolve(data))));
}

function getChildren(client: zookeeper.Client, path: string): Promise<string[]> {
  return new Promise((resolve, reject) => client.getChildren(path, (error, children) => (error ? (noNode(error) ? resolve([]) : reject(error)) : resolve(children))));
}

/** One job (appName) on the shared services: its topics, its instances, the words typed so far. */
export class ClusterJobUnderTest {
  readonly instances = new Map<string, ChildProcessLines>();
  readonly sent: string[] = [];
  private readonly base = mkdtempSync(join(tmpdir(), 'statestream-cluster-'));
  readonly root: string;

  constructor(
    private readonly services: ClusterServices,
    readonly appName: string,
    readonly options: { partitions: number; sourcePartitions: number; batchMs?: number; zkSessionTimeoutMs?: number; groupSessionTimeoutMs?: number },
  ) {
    this.root = `/statestream-cluster/${appName}`;
  }

  get topic(): string {
    return `${this.appName}-words`;
  }

  /** The source topic and the job's own topics (the mock implements no CreateTopics: made with its own API, as docs/scale-out.md says). */
  async createTopics(): Promise<void> {
    const { kafka } = this.services;
    await kafka.createTopic(this.topic, this.options.sourcePartitions, 3);
    await kafka.createTopic(`${this.appName}-0-repartition`, this.options.partitions, 3);
    await kafka.createTopic(`${this.appName}-0-changelog`, this.options.partitions, 3);
  }

  dataDir(id: string): string {
    return join(this.base, id);
  }

  private config(id: string): ClusterInstanceConfig {
    return {
      brokers: this.services.kafka.brokers, topic: this.topic, zookeeper: this.services.zk.connectString, appName: this.appName, dataDir: this.dataDir(id),
      instanceId: id, partitions: this.options.partitions, batchMs: this.options.batchMs ?? 250,
      zkSessionTimeoutMs: this.options.zkSessionTimeoutMs ?? 4_000, groupSessionTimeoutMs: this.options.groupSessionTimeoutMs ?? 6_000,
    };
  }

  /** Starts instance `id` (the test fixture, or the word-count example as the README runs it); resolves once it has joined. */
  async start(id: string, how: 'fixture' | 'example' = 'fixture', extra: Partial<ClusterInstanceConfig> = {}): Promise<ChildProcessLines> {
    const c = { ...this.config(id), ...extra };
    const child =
      how === 'fixture'
        ? new ChildProcessLines(fixture, [JSON.stringify(c)], {}, { input: true })
        : new ChildProcessLines(example, [
            '--brokers', c.brokers.join(','), '--topic', c.topic, '--zookeeper', c.zookeeper, '--group', `${this.appName}-source`, '--data-dir', c.dataDir,
            '--batch-ms', String(c.batchMs), '--partitions', String(c.partitions), '--instance-id', id, '--app-name', this.appName,
            '--zk-session-ms', String(c.zkSessionTimeoutMs), '--group-session-ms', String(c.groupSessionTimeoutMs),
          ]);
    this.kinds.set(id, how);
    const before = this.instances.get(id);
    if (before) this.past.push(`--- ${id} (an earlier run)\n${before.lines.join('\n')}`);
    this.instances.set(id, child);
    await child.waitForLine(how === 'fixture' ? /^STARTED$/ : /^kafka-word-count: instance /, { from: 0, timeoutMs: 60_000 });
    return child;
  }

  private questions = 0;
  /** How each instance was started (the example takes no questions). */
  private readonly kinds = new Map<string, 'fixture' | 'example'>();

  /** Asks instance `id` (a fixture) a question (`OWNER <word>`, `GET <word>`, `MEMBERS`, `STORES`) and resolves with its answer. */
  async ask(id: string, question: string, timeoutMs = 10_000): Promise<unknown> {
    const child = this.instances.get(id)!;
    const n = ++this.questions;
    child.send(`ASK ${n} ${question}`);
    const line = await child.waitForLine(new RegExp(`^ANSWER ${n} `), { from: 0, timeoutMs });
    return JSON.parse(line.slice(`ANSWER ${n} `.length));
  }

  /** Runs `statestream inspect` on instance `id`'s data folder and the cluster's root, as an operator would. */
  inspect(id: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.cli(id, ['inspect', '--zookeeper', this.services.zk.connectString, '--zk-root', this.root, ...extra]);
  }

  /** Runs a `statestream` command on instance `id`'s data folder. */
  async cli(id: string, command: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const args = [cli, ...command, '--data-dir', this.dataDir(id)];
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, args, { timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(error) };
    }
  }

  /** Types `lines` with kcat (each line a few words). */
  async type(lines: string[]): Promise<void> {
    await produceWithKcat(this.services.kafka.brokers, this.topic, lines.map((value) => ({ value })));
    for (const line of lines) this.sent.push(...line.split(' ').filter(Boolean));
  }

  expected(): Map<string, number> {
    return tally(this.sent);
  }

  /** The assignment and the owner node of each partition, from ZooKeeper. */
  async readZooKeeper(): Promise<ZooKeeperView> {
    const client = await connectClient(this.services.zk.connectString);
    let assignment: Assignment | undefined;
    let leader: string | undefined;
    const ownerNodes: ZooKeeperView['ownerNodes'] = [];
    try {
      const read = async () => {
        const data = await getData(client, `${this.root}/assignment`);
        assignment = data ? (JSON.parse(data.toString()) as Assignment) : undefined;
        const candidates = await getChildren(client, `${this.root}/leader`);
        const lowest = candidates.sort((a, b) => Number(a.split('-').at(-1)) - Number(b.split('-').at(-1)))[0];
        leader = lowest === undefined ? undefined : (await getData(client, `${this.root}/leader/${lowest}`))?.toString();
        for (let p = 0; p < this.options.partitions; p++) {
          const node = await getData(client, `${this.root}/owners/0/${p}`);
          ownerNodes[p] = node ? (JSON.parse(node.toString()) as { instance: string; epoch: number }) : undefined;
        }
      };
      await within(read(), `the cluster's nodes under ${this.root}`, { timeoutMs: 10_000 });
    } finally {
      client.close();
    }
    return { assignment, ownerNodes, leader };
  }

  /**
   * Instance `id`'s stores: a running fixture is asked (it reads its own folder); the folder
   * of an instance that exited is read here. A running example cannot be asked, and its
   * stores are not opened from this process (see store-report.ts): stop it first.
   */
  async stores(id: string): Promise<StoreReport[]> {
    const child = this.instances.get(id)!;
    if (!child.running) return readStores(this.dataDir(id), this.options.partitions);
    if (this.kinds.get(id) !== 'fixture') throw new Error(`instance ${id} runs the example, which cannot be asked for its stores: stop it before reading them`);
    let answer: unknown;
    try {
      // An instance busy restoring a partition answers between its steps.
      answer = await this.ask(id, 'STORES', 30_000);
    } catch (error) {
      // It exited (was killed) while asked: nothing has its folder open any more.
      if (!child.running) return readStores(this.dataDir(id), this.options.partitions);
      throw error;
    }
    if (!Array.isArray(answer)) throw new Error(`instance ${id} could not read its stores: ${JSON.stringify(answer)}`);
    return answer as StoreReport[];
  }

  /** Reads the assignment and owner nodes from ZooKeeper, and every instance's stores. */
  async read(zk?: ZooKeeperView): Promise<ClusterState> {
    const { assignment, ownerNodes } = zk ?? (await this.readZooKeeper());
    const stores = new Map<string, StoreReport[]>();
    for (const id of this.instances.keys()) stores.set(id, await this.stores(id));
    const counts = new Map<string, number>();
    const partitions: ClusterState['partitions'] = [];
    for (let p = 0; p < this.options.partitions; p++) {
      const assigned = assignment?.streams['0']?.[p];
      const storesAtEpoch: string[] = [];
      for (const [id, reports] of stores) {
        const store = reports.find((r) => r.partition === p);
        if (!store?.meta || store.meta.restoring || store.meta.epoch !== assigned?.epoch) continue;
        storesAtEpoch.push(id);
        if (id === assigned.owner) for (const [word, n] of store.counts) counts.set(word, n);
      }
      partitions.push({ partition: p, assigned: assigned?.owner, epoch: assigned?.epoch ?? 0, ownerNode: ownerNodes[p], storesAtEpoch });
    }
    return { counts, partitions };
  }

  /** What instance `id`'s own store of `partition` records of the cluster (epoch, positions). */
  async storeMeta(id: string, partition: number): Promise<ClusterMeta | undefined> {
    return (await this.stores(id)).find((r) => r.partition === partition)?.meta;
  }

  /** The count of each word as the example instances printed it ("Word w, count n"): counts only grow, so the largest. */
  printedCounts(): Map<string, number> {
    const printed = countsByWord([...this.instances.values()].map((child) => child.lines.join('\n')).join('\n'));
    return new Map([...printed].map(([word, counts]) => [word, Math.max(...counts)]));
  }

  /**
   * For a failure: reads the source topic and the repartition topic whole and says, for state
   * partition `partition`, which pairs the source records should have made but the topic
   * lacks, and which first arrived after a later pair of the same source partition (a pair
   * the owners' high-water marks would drop).
   */
  async explain(partition: number): Promise<string> {
    const read = async (topic: string) => {
      const admin = new Kafka({ brokers: this.services.kafka.brokers, logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const ends = await admin.fetchTopicOffsets(topic);
      await admin.disconnect();
      const consumer = new Kafka({ brokers: this.services.kafka.brokers, logLevel: logLevel.NOTHING }).consumer({ groupId: `explain-${topic}-${Date.now()}` });
      const out: Array<{ partition: number; offset: number; value: Buffer }> = [];
      const want = ends.reduce((n, e) => n + Number(e.high) - Number(e.low), 0);
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await within(new Promise<void>((resolve) => {
        if (want === 0) resolve();
        void consumer.run({ eachMessage: async ({ partition: p, message }) => {
          out.push({ partition: p, offset: Number(message.offset), value: message.value! });
          if (out.length >= want) resolve();
        } });
      }), `all ${want} messages of ${topic}`, { timeoutMs: 30_000 });
      await consumer.disconnect();
      return out;
    };
    const expected = new Set<string>();
    for (const r of await read(this.topic)) {
      r.value.toString('utf8').split(' ').filter(Boolean).forEach((word, n) => {
        if (murmur2Partitioner.partition(word, this.options.partitions) === partition) expected.add(`${r.partition}:${r.offset}:${n}`);
      });
    }
    const seen = new Set<string>();
    const marks = new Map<number, [number, number]>();
    const late: string[] = [];
    const repartition = (await read(`${this.appName}-0-repartition`)).filter((m) => m.partition === partition).sort((a, b) => a.offset - b.offset);
    for (const m of repartition) {
      for (const pair of readPairs(m.value)) {
        const id = `${pair.origin.partition}:${pair.origin.offset}:${pair.origin.n}`;
        const mark = marks.get(pair.origin.partition);
        const before = mark !== undefined && (pair.origin.offset < mark[0] || (pair.origin.offset === mark[0] && pair.origin.n <= mark[1]));
        if (!seen.has(id) && before) late.push(`${id} at repartition offset ${m.offset} after mark ${mark!.join(':')}`);
        seen.add(id);
        if (!before) marks.set(pair.origin.partition, [pair.origin.offset, pair.origin.n]);
      }
    }
    const missing = [...expected].filter((id) => !seen.has(id));
    return `partition ${partition}: ${expected.size} pairs expected, ${repartition.length} repartition messages; missing from the topic: ${missing.slice(0, 20).join(' ') || 'none'} (${missing.length}); first seen after a later pair: ${late.slice(0, 20).join('; ') || 'none'} (${late.length})`;
  }

  /** The lines of instances' earlier runs (before a restart under the same id). */
  private readonly past: string[] = [];

  /** Writes every line each instance printed (a failure's tail is too short to follow a partition) to a file; returns its path. */
  keepLogs(): string {
    const path = join(tmpdir(), `statestream-cluster-${this.appName}-${Date.now()}.log`);
    writeFileSync(path, [...this.past, ...[...this.instances].map(([id, child]) => `--- ${id}\n${child.lines.join('\n')}`)].join('\n'));
    return path;
  }

  /** What differs between the stores and what was typed, for assertion messages. */
  static diff(expected: Map<string, number>, actual: Map<string, number>): string {
    const out: string[] = [];
    for (const [w, n] of expected) if (actual.get(w) !== n) out.push(`${w}: ${actual.get(w) ?? 'missing'} (expected ${n})`);
    for (const [w, n] of actual) if (!expected.has(w)) out.push(`${w}: ${n} (never typed)`);
    return out.length === 0 ? 'equal' : `${out.length} words differ: ${out.slice(0, 10).join(', ')}`;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.instances.values()].map((child) => child.stop('SIGKILL').catch(() => undefined)));
  }
}
