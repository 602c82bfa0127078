import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { ManualClock, StateSpec, StreamingContext } from '../../src/index.js';
import { connectClient } from './services/zookeeper.js';
import { waitUntil, within } from '../wait.js';
import { tempDir } from '../helpers.js';
import type { SuiteServices } from './services/suite.js';

export interface JobConfig {
  brokers: string[];
  topic: string;
  zookeeper: string;
  zkRoot: string;
  dataDir: string;
  groupId: string;
  batchMs: number;
  partitions: number;
  maxRecordsPerBatch: number;
  decoder?: 'string' | 'json';
  onDecodeFailure?: 'stop' | 'dead-letter';
  dieAfterCommitOfBatch?: number;
  snapshotEvery?: number;
  /** Snapshots kept (default 3). */
  snapshotsKept?: number;
  /** The job's ZooKeeper session timeout (default 4000 ms). */
  zkSessionTimeoutMs?: number;
  /** Worker threads (default 2). */
  threads?: number;
  /** The mapping function: a module in test/fixtures (default count-or-die). */
  mapping?: string;
  /** StateSpec.timeout, when set. */
  timeoutMs?: number;
}

const script = fileURLToPath(new URL('./fixtures/kafka-count-job.js', import.meta.url));

/** A node script in a process of its own, its output kept line by line, so a test can wait for lines and SIGKILL it. */
export class ChildProcessLines {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];

  constructor(script: string, args: string[], env: Record<string, string> = {}, options: { input?: boolean } = {}) {
    this.child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const onLine = (line: string) => {
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => (w.pattern.test(line) ? (w.resolve(line), false) : true));
    };
    createInterface({ input: this.child.stdout! }).on('line', onLine);
    createInterface({ input: this.child.stderr! }).on('line', (l) => onLine(`stderr: ${l}`));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    // A line written as the process dies fails with EPIPE: its waiter then sees the exit.
    this.child.stdin?.on('error', () => undefined);
  }

  /** Writes a line to the script's standard input (made with `input: true`). */
  send(line: string): void {
    if (!this.child.stdin) throw new Error('this script was started without an input');
    this.child.stdin.write(`${line}\n`);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Whether the process has not exited yet (a stopped one, SIGSTOP, still runs). */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Resolves with the first line matching `pattern` printed after this call, or after line
   * `from` (an index into `lines`, e.g. `lines.length` taken before an action): a line printed
   * before the situation a test waits for must not pass for it.
   */
  waitForLine(pattern: RegExp, options: { from?: number; timeoutMs?: number } = {}): Promise<string> {
    const seen = this.lines.slice(options.from ?? this.lines.length).find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    const line = new Promise<string>((resolve, reject) => {
      this.waiters.push({ pattern, resolve });
      // The exit is seen after the last lines are read.
      void this.exited.then((exit) => setTimeout(() => reject(new Error(`the process exited (${exit.signal ?? `code ${exit.code}`}) before printing a line matching ${pattern}; output:\n${this.tail()}`)), 50));
    });
    return within(line, `the process to print a line matching ${pattern}`, { timeoutMs: options.timeoutMs, detail: () => `its output:\n${this.tail()}` });
  }

  /** Its last lines, for failure messages. */
  tail(lines = 30): string {
    return this.lines.slice(-lines).join('\n');
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }

  /** Sends `signal` and waits for the exit: SIGTERM stops the context gracefully. */
  stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.kill(signal);
    return this.exit(`the process to exit after ${signal}`, timeoutMs);
  }

  /** Waits for the process to exit by itself (a kill point it reaches, a failure). */
  exit(what = 'the process to exit', timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return within(this.exited, what, { timeoutMs, detail: () => `its output:\n${this.tail()}` });
  }
}

/** The word-count job in a process of its own, so a test can SIGKILL it. */
export class JobProcess extends ChildProcessLines {
  constructor(config: JobConfig, env: Record<string, string> = {}) {
    super(script, [JSON.stringify(config)], env);
  }
}

/** Where ZooKeeper says each partition's next batch starts, read with a client of its own. */
export async function zkOffsets(connect: string, root: string, topic: string, partitions: number): Promise<number[]> {
  const client = await connectClient(connect);
  try {
    const read = (p: number) =>
      new Promise<number>((resolve, reject) =>
        client.getData(`${root}/offsets/${topic}/${p}`, (error, data) => (error ? reject(error) : resolve(Number(data?.toString() || "NaN")))),
      );
    return await within(Promise.all(Array.from({ length: partitions }, (_, p) => read(p))), `the positions under ${root}`, { timeoutMs: 10_000 });
  } finally {
    client.close();
  }
}

export async function highWatermarks(brokers: string[], topic: string): Promise<number[]> {
  const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.sort((a, b) => a.partition - b.partition).map((o) => Number(o.high));
  } finally {
    await admin.disconnect();
  }
}

/** Runs the job until ZooKeeper's positions reach the end of the topic, then stops it gracefully. */
export async function runUntilCaughtUp(config: JobConfig, topicPartitions: number, timeoutMs = 90_000): Promise<JobProcess> {
  const job = new JobProcess(config);
  try {
    await waitUntilCaughtUp(job, config, topicPartitions, timeoutMs);
  } catch (error) {
    job.kill('SIGKILL');
    throw error;
  }
  await job.stop();
  return job;
}

export async function waitUntilCaughtUp(job: JobProcess, config: JobConfig, topicPartitions: number, timeoutMs: number): Promise<void> {
  await job.waitForLine(/^STARTED$/, { from: 0, timeoutMs });
  const end = await highWatermarks(config.brokers, config.topic);
  let at: number[] = [];
  await waitUntil(
    `ZooKeeper's positions to reach the end of ${config.topic} (${end.join(',')})`,
    async () => {
      at = await zkOffsets(config.zookeeper, config.zkRoot, config.topic, topicPartitions).catch(() => [] as number[]);
      if (job.lines.some((l) => l.startsWith('FAILED'))) throw new Error(`the job failed: ${job.lines.filter((l) => l.startsWith('FAILED')).join('\n')}`);
      return at.length === end.length && at.every((o, p) => o === end[p]);
    },
    { timeoutMs, intervalMs: 100, detail: () => `ZooKeeper at ${at.join(',')}; output:\n${job.tail(20)}` },
  );
  // A start queues the batches it rebuilds (after a restore, every batch since the snapshot)
  // and takes their records from Kafka as each runs, while the positions already stand at the
  // end: a live batch that ended says they have all run.
  await job.waitForLine(/^END \d+ \d+ live$/, { from: 0, timeoutMs });
}

/** The job's state, read through the public API from its data folder. */
export async function readCounts(dataDir: string, partitions: number): Promise<Map<string, number>> {
  const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock: new ManualClock(Date.now() + 3_600_000), threads: 1 });
  const counts = ssc
    .queueStream<[string, number]>()
    .mapWithState(StateSpec.function<string, number, number, unknown>(new URL('../fixtures/count-or-die.js', import.meta.url)).numPartitions(partitions));
  await ssc.start();
  try {
    return new Map(counts.store().entries());
  } finally {
    await ssc.stop();
  }
}

export function tally(words: string[]): Map<string, number> {
  const expected = new Map<string, number>();
  for (const w of words) expected.set(w, (expected.get(w) ?? 0) + 1);
  return expected;
}

export interface ExampleRun {
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  stop(): Promise<void>;
}

/** examples/kafka-word-count in a process of its own, as the README runs it. */
export function startKafkaWordCount(o: { brokers: string[]; topic: string; zookeeper: string; group: string; dataDir: string; zkRoot: string }): ExampleRun {
  const example = fileURLToPath(new URL('../../examples/kafka-word-count/main.js', import.meta.url));
  const child = spawn(process.execPath, [
    example, '--brokers', o.brokers.join(','), '--topic', o.topic, '--zookeeper', o.zookeeper,
    '--group', o.group, '--data-dir', o.dataDir, '--batch-ms', '200', '--zk-root', o.zkRoot,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    output: () => output,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Source partitions of the topics jobConfigs makes. */
export const PARTITIONS = 3;

/** `n` words of 23, the same for the same seed. */
export const words = (n: number, seed: number) => Array.from({ length: n }, (_, i) => `w${(i * 7 + seed) % 23}`);

/** Makes a JobConfig on a new topic of PARTITIONS partitions (`<prefix>-1`, `<prefix>-2`, …) and a data folder of its own. */
export function jobConfigs(services: SuiteServices, prefix: string): (overrides?: Partial<JobConfig>) => Promise<JobConfig> {
  let topics = 0;
  return async (overrides = {}) => {
    const topic = `${prefix}-${++topics}`;
    await services.kafka.createTopic(topic, PARTITIONS);
    return {
      brokers: services.kafka.brokers, topic, zookeeper: services.zk.connectString, zkRoot: `/statestream/test-${topic}`, dataDir: join(tempDir(), 'data'),
      groupId: `group-${topic}`, batchMs: 150, partitions: 4, maxRecordsPerBatch: 50, ...overrides,
    };
  };
}
