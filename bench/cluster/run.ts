/**
 * The cluster benchmark: `node dist/bench/cluster/run.js [--lines n] [--handoff-keys n] [--reps n]`
 * (`npm run bench:cluster`). Against a real ZooKeeper and librdkafka's mock broker, with
 * every instance a process of its own (bench/cluster/instance.ts):
 *
 * - throughput of 1, 2 and 3 instances of the word count, each run on fresh topics: the
 *   instances start and settle their assignment, then kcat writes the lines; the time runs
 *   until the instances together applied every word. CPU time per word is the sum of the
 *   instances' process CPU time (main and worker threads) over the same span. Baseline: a
 *   hand-written kafkajs eachBatch + Map count of the same topic, in the same run.
 * - handoff: one instance holds 2 partitions of 10^5 keys each; a second joins and takes
 *   one, restoring it from the changelog (cold: no store of its own); it then stops
 *   cleanly and the first takes the partition back onto the store it kept (warm).
 *
 * Writes bench/results/latest-cluster.{md,json}.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readClusterReport } from '../../src/cli/cluster-report.js';
import { startMockKafka, type MockKafka } from '../../test/integration/services/kafka.js';
import { startZooKeeper, type ZooKeeperServer } from '../../test/integration/services/zookeeper.js';
import { log, settle } from '../common.js';
import { environment, scenarioReport, type Row, type ScenarioResult } from '../report.js';
import { tempDataDir } from '../runtime.js';
import { Kafka, logLevel } from 'kafkajs';
import { produceFile, produceLines, WORDS_PER_LINE } from '../scenarios/kafka-intake.js';
import { summarize } from '../stats.js';

const SOURCE_PARTITIONS = 6;
const STATE_PARTITIONS = 6;
const BATCH_MS = 200;
const DEADLINE_MS = 240_000;
const script = fileURLToPath(new URL('./instance.js', import.meta.url));

const { values } = parseArgs({ options: { lines: { type: 'string' }, 'handoff-keys': { type: 'string' }, reps: { type: 'string' }, out: { type: 'string' } } });
const LINES = Number(values.lines ?? 40_000);
const HANDOFF_KEYS = Number(values['handoff-keys'] ?? 100_000);
const REPS = Number(values.reps ?? 3);
for (const [name, v] of Object.entries({ lines: LINES, 'handoff-keys': HANDOFF_KEYS, reps: REPS })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
}

type Line = { started?: true; taken?: { partition: number; records: number; reused: boolean; ms: number }; applied?: number; cpuUs?: number; failed?: string };

/** An instance process and what it printed. */
class Instance {
  readonly lines: Line[] = [];
  readonly child: ChildProcess;
  readonly startedAt = performance.now();
  private waiters: Array<{ test: (l: Line) => boolean; resolve: (l: Line) => void }> = [];
  readonly exited: Promise<number | null>;

  constructor(readonly id: string, config: Record<string, unknown>) {
    this.child = spawn(process.execPath, [script, JSON.stringify({ ...config, id })], { stdio: ['ignore', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      const line = JSON.parse(text) as Line & { at?: number };
      const at = performance.now();
      this.lines.push(line);
      if (line.failed) log(`cluster bench: instance ${id} failed: ${line.failed}`);
      this.waiters = this.waiters.filter((w) => (w.test(line) ? (w.resolve(Object.assign(line, { at })), false) : true));
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Resolves with the next line that passes `test` (or one already printed, when `past`). */
  next(test: (l: Line) => boolean, what: string, past = false): Promise<Line & { at: number }> {
    const seen = past ? this.lines.find(test) : undefined;
    if (seen) return Promise.resolve({ ...seen, at: performance.now() });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`cluster bench: instance ${this.id}: no ${what} within ${DEADLINE_MS / 1000} s`)), DEADLINE_MS);
      this.waiters.push({ test, resolve: (l) => (clearTimeout(timer), resolve(l as Line & { at: number })) });
      void this.exited.then((code) => reject(new Error(`cluster bench: instance ${this.id} exited (${code}) before ${what}`)));
    });
  }

  get applied(): number {
    return this.lines.reduce((n, l) => (l.applied !== undefined ? l.applied : n), 0);
  }

  async cpuUs(): Promise<number> {
    const reply = this.next((l) => l.cpuUs !== undefined, 'CPU time');
    this.child.kill('SIGUSR2');
    return (await reply).cpuUs!;
  }

  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    await this.exited;
  }
}

interface Services {
  zk: ZooKeeperServer;
  kafka: MockKafka;
}

async function makeTopics(kafka: MockKafka, app: string, sourcePartitions: number, statePartitions: number): Promise<string> {
  await kafka.createTopic(`${app}-lines`, sourcePartitions);
  await kafka.createTopic(`${app}-0-repartition`, statePartitions);
  await kafka.createTopic(`${app}-0-changelog`, statePartitions);
  return `${app}-lines`;
}

/** Waits until ZooKeeper shows `ids` as the members, each partition held by its assigned owner. */
async function settled(s: Services, app: string, ids: string[]): Promise<void> {
  const deadline = performance.now() + DEADLINE_MS;
  for (;;) {
    const report = await readClusterReport({ connect: s.zk.connectString, root: `/statestream-cluster/${app}` }, { appName: app }).catch(() => undefined);
    const members = report?.members.map((m) => m.id).sort().join(',');
    if (members === [...ids].sort().join(',') && report!.streams[0].partitions.every((p) => p.owner !== undefined && p.holder === p.owner && p.holderEpoch === p.epoch)) return;
    if (performance.now() > deadline) throw new Error(`cluster bench: ${app} did not settle on ${ids.join(', ')}: ${JSON.stringify(report)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Waits until the owners' published progress shows every repartition partition read to its
 * end and every source partition sharded to its end: all written was applied (once; the
 * high-water marks see to that). Progress is published with the ownership check before each
 * commit, so this sees a batch's work one batch interval late.
 */
async function caughtUp(s: Services, app: string, sourceLines: number): Promise<void> {
  const deadline = performance.now() + DEADLINE_MS;
  for (;;) {
    const report = await readClusterReport({ connect: s.zk.connectString, root: `/statestream-cluster/${app}` }, { appName: app, brokers: s.kafka.brokers }).catch(() => undefined);
    const sourced = report?.sources.reduce((n, x) => n + (x.end ?? 0), 0);
    if (report && !report.kafkaProblem && sourced === sourceLines && report.sources.every((x) => x.lag === 0) && report.streams[0].partitions.every((p) => p.repartitionLag === 0)) return;
    if (performance.now() > deadline) throw new Error(`cluster bench: ${app} did not catch up: ${JSON.stringify(report)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function instanceConfig(s: Services, app: string, topic: string, dataRoot: string, partitions: number) {
  return (id: string) => ({
    appName: app, dataDir: join(dataRoot, id), brokers: s.kafka.brokers, zookeeper: s.zk.connectString, topic, partitions, batchMs: BATCH_MS, maxRecordsPerBatch: 20_000,
  });
}

interface ThroughputRun {
  wordsPerSecond: number;
  cpuUsPerWord: number;
  /** Outputs the instances emitted: fewer than the words when a batch's commit was refused after its changelog write (see docs/scale-out.md). */
  outputs: number;
}

/** k instances count LINES lines written after they settled. */
async function throughputRun(s: Services, k: number, rep: number, inputDir: string): Promise<ThroughputRun> {
  const app = `bench-x${k}-${rep}`;
  const topic = await makeTopics(s.kafka, app, SOURCE_PARTITIONS, STATE_PARTITIONS);
  const data = tempDataDir(`cluster-${k}`);
  const config = instanceConfig(s, app, topic, data.path, STATE_PARTITIONS);
  const ids = Array.from({ length: k }, (_, i) => `i${i + 1}`);
  const instances = ids.map((id) => new Instance(id, config(id)));
  try {
    await Promise.all(instances.map((i) => i.next((l) => l.started === true, 'start', true)));
    await settled(s, app, ids);
    const cpu0 = await Promise.all(instances.map((i) => i.cpuUs()));
    const started = performance.now();
    await produceLines(s.kafka.brokers, topic, LINES, inputDir);
    const words = LINES * WORDS_PER_LINE;
    await caughtUp(s, app, LINES);
    const seconds = (performance.now() - started) / 1000;
    const cpu1 = await Promise.all(instances.map((i) => i.cpuUs()));
    const cpuUs = cpu1.reduce((n, c, i) => n + c - cpu0[i], 0);
    return { wordsPerSecond: words / seconds, cpuUsPerWord: cpuUs / words, outputs: instances.reduce((n, i) => n + i.applied, 0) };
  } finally {
    await Promise.all(instances.map((i) => i.stop()));
    data.remove();
  }
}

interface HandoffRun {
  coldMs: number;
  warmReused: boolean;
  coldRecords: number;
  /** From the second instance's spawn to its first partition taken: start-up, join, assignment, restore. */
  joinToTakenMs: number;
  warmMs: number;
  warmRecords: number;
}

/** Two partitions of HANDOFF_KEYS keys each on one instance; a second joins (cold restore), then leaves (warm return). */
async function handoffRun(s: Services, rep: number, inputDir: string): Promise<HandoffRun> {
  const app = `bench-handoff-${rep}`;
  const topic = await makeTopics(s.kafka, app, 2, 2);
  const data = tempDataDir('cluster-handoff');
  const config = instanceConfig(s, app, topic, data.path, 2);
  const a = new Instance('a', config('a'));
  let b: Instance | undefined;
  try {
    await a.next((l) => l.started === true, 'start', true);
    await settled(s, app, ['a']);
    const keys = 2 * HANDOFF_KEYS;
    const lines = Array.from({ length: keys / WORDS_PER_LINE }, (_, i) => Array.from({ length: WORDS_PER_LINE }, (_, j) => `k${i * WORDS_PER_LINE + j}`).join(' '));
    const file = join(inputDir, `handoff-${rep}.txt`);
    writeFileSync(file, lines.join('\n') + '\n');
    await produceFile(s.kafka.brokers, topic, file);
    await caughtUp(s, app, lines.length);
    b = new Instance('b', config('b'));
    const cold = await b.next((l) => l.taken !== undefined, 'a partition taken');
    await settled(s, app, ['a', 'b']);
    const back = a.next((l) => l.taken !== undefined, 'the partition back');
    await b.stop();
    const warm = await back;
    return { warmReused: warm.taken!.reused, coldMs: cold.taken!.ms, coldRecords: cold.taken!.records, joinToTakenMs: cold.at - b.startedAt, warmMs: warm.taken!.ms, warmRecords: warm.taken!.records };
  } finally {
    await Promise.all([a.stop(), b?.stop()]);
    data.remove();
  }
}

/**
 * The baseline, timed as the instances are: a hand-written kafkajs eachBatch + Map word
 * count, joined to its group on an empty topic before the clock starts; then kcat writes the
 * lines and the time runs until it counted every word. No state kept anywhere.
 */
async function kafkajsCount(s: Services, rep: number, inputDir: string): Promise<number> {
  const topic = await makeTopics(s.kafka, `bench-base-${rep}`, SOURCE_PARTITIONS, 1);
  const consumer = new Kafka({ clientId: 'bench-baseline', brokers: s.kafka.brokers, logLevel: logLevel.NOTHING }).consumer({ groupId: `bench-base-${rep}`, maxWaitTimeInMs: 50 });
  const counts = new Map<string, number>();
  const words = LINES * WORDS_PER_LINE;
  let seen = 0;
  let done: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (done = resolve));
  try {
    await consumer.connect();
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    await consumer.subscribe({ topic, fromBeginning: true });
    void consumer.run({
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          for (const word of message.value!.toString('utf8').split(' ')) {
            counts.set(word, (counts.get(word) ?? 0) + 1);
            seen++;
          }
        }
        if (seen >= words) done();
      },
    });
    await joined;
    const started = performance.now();
    await produceLines(s.kafka.brokers, topic, LINES, inputDir);
    const timer = setTimeout(() => done(), DEADLINE_MS);
    await finished;
    clearTimeout(timer);
    if (seen !== words) throw new Error(`cluster bench: the kafkajs baseline counted ${seen} of ${words} words`);
    return words / ((performance.now() - started) / 1000);
  } finally {
    await consumer.disconnect();
  }
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const env = environment();
  const input = tempDataDir('cluster-input');
  const [zk, kafka] = await Promise.all([startZooKeeper(), startMockKafka({ brokers: 1 })]);
  const s = { zk, kafka };
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    // Baseline: the hand-written kafkajs count, measured in this run.
    const base: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      await settle();
      base.push(await kafkajsCount(s, rep, input.path));
      log(`cluster bench: kafkajs + Map ${base.at(-1)!.toFixed(0)} words/s`);
    }
    const baseline = summarize(base);
    for (const k of [1, 2, 3]) {
      const runs: ThroughputRun[] = [];
      for (let rep = 0; rep < REPS; rep++) {
        await settle();
        runs.push(await throughputRun(s, k, rep, input.path));
        log(`cluster bench: ${k} instance(s) rep ${rep + 1}: ${runs.at(-1)!.wordsPerSecond.toFixed(0)} words/s, ${runs.at(-1)!.cpuUsPerWord.toFixed(1)} µs CPU per word`);
      }
      rows.push({ case: `${k} instance${k > 1 ? 's' : ''}`, figure: 'words/s', unit: 'records/s', runtime: summarize(runs.map((r) => r.wordsPerSecond)), baselines: { kafkajs: baseline }, details: { words: LINES * WORDS_PER_LINE, outputs: runs.map((r) => r.outputs) } });
      rows.push({ case: `${k} instance${k > 1 ? 's' : ''}`, figure: 'CPU µs per word (all instances)', unit: 'count', runtime: summarize(runs.map((r) => r.cpuUsPerWord)), baselines: {} });
    }
    const handoffs: HandoffRun[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      await settle();
      handoffs.push(await handoffRun(s, rep, input.path));
      log(`cluster bench: handoff rep ${rep + 1}: ${JSON.stringify(handoffs.at(-1))}`);
    }
    const keysCase = `partition of ${HANDOFF_KEYS.toExponential(0).replace('e+', 'e')} keys`;
    rows.push({ case: keysCase, figure: 'cold restore from the changelog', unit: 'ms', runtime: summarize(handoffs.map((h) => h.coldMs)), baselines: {}, details: { changelogRecords: handoffs.map((h) => h.coldRecords) } });
    rows.push({ case: keysCase, figure: 'join to partition taken (start-up, assignment, restore)', unit: 'ms', runtime: summarize(handoffs.map((h) => h.joinToTakenMs)), baselines: {} });
    rows.push({ case: keysCase, figure: 'warm return onto the kept store', unit: 'ms', runtime: summarize(handoffs.map((h) => h.warmMs)), baselines: {}, details: { changelogRecords: handoffs.map((h) => h.warmRecords), storeReused: handoffs.map((h) => h.warmReused) } });
    notes.push(
      `${LINES} lines of ${WORDS_PER_LINE} Zipf(1) words over a vocabulary of 10^4, on a source topic of ${SOURCE_PARTITIONS} partitions; ${STATE_PARTITIONS} state partitions; ${BATCH_MS} ms batches; one worker thread per instance; one mock broker.`,
      'Throughput: from the start of kcat writing the lines until the progress the owners publish in ZooKeeper shows every source partition sharded and every repartition partition applied to its end (published with the ownership check before the next commit, so it is seen one batch interval late). The instances start, join and settle their assignment before the clock starts.',
      `This machine has ${env.cores} cores and runs the broker, ZooKeeper and every instance: more instances add coordination and Kafka traffic, not cores, so expect no speed-up here; the figures say what the shuffle through Kafka costs.`,
      'Handoff: one instance holds both partitions; a second joins and restores one from the changelog (no store of its own); it then stops cleanly and the first takes the partition back onto the store it kept. The warm return applies only what was written since, but first reads its own epoch\'s records back (not applying them) to be sure no other owner was fenced in among them: that read is most of its changelog records.',
      'Baseline: a hand-written kafkajs eachBatch + Map count, joined to its group before the clock starts and timed the same way (kcat writes, the clock stops at the last word counted); it keeps no state and no offsets.',
    );
  } finally {
    await Promise.all([kafka.stop(), zk.stop()]);
    input.remove();
  }
  const result: ScenarioResult = {
    name: 'cluster', title: 'Cluster: throughput of 1–3 instances, and partition handoff',
    setup: { lines: LINES, handoffKeys: HANDOFF_KEYS, reps: REPS, sourcePartitions: SOURCE_PARTITIONS, statePartitions: STATE_PARTITIONS, batchMs: BATCH_MS },
    notes, rows, seconds: (Date.now() - startedAt.getTime()) / 1000,
  };
  const outDir = values.out ?? fileURLToPath(new URL('../../../bench/results/', import.meta.url));
  mkdirSync(outDir, { recursive: true });
  const markdown = [
    `${REPS} runs per figure; ${env.cpuModel}, ${env.cores} cores, Node ${env.node}, commit ${env.gitCommit.slice(0, 10)}${env.gitDirty ? ' (work tree dirty)' : ''}, ${startedAt.toISOString()}.`,
    'Each cell: median (min–max) of the runs; ÷ columns: statestream ÷ baseline (medians).',
    '',
    scenarioReport(result),
  ].join('\n');
  writeFileSync(join(outDir, 'latest-cluster.json'), JSON.stringify({ command: `node dist/bench/cluster/run.js ${process.argv.slice(2).join(' ')}`, startedAt, environment: env, result }, null, 2));
  writeFileSync(join(outDir, 'latest-cluster.md'), markdown + '\n');
  console.log(`\n${markdown}`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
