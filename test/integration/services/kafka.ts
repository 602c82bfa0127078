/**
 * A real Kafka-protocol broker for integration tests: librdkafka's mock
 * cluster, run by the small launcher in mock-kafka.c (built here with gcc),
 * and kcat to produce input with a client we did not write.
 *
 * Needs the Debian packages from scripts/install-services.sh (librdkafka-dev,
 * gcc, kcat).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describeExit, spawnService, type ServiceProcess } from './process.js';
import { within } from '../../wait.js';

const execFileP = promisify(execFile);

const INSTALL_HINT = 'run `bash scripts/install-services.sh` (as root) first';

/** Repository root: this file is dist/test/integration/services/kafka.js once compiled. */
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const SOURCE = fileURLToPath(new URL('../../../../test/integration/services/mock-kafka.c', import.meta.url));
const CACHE_DIR = fileURLToPath(new URL('../../../../node_modules/.cache/statestream/mock-kafka/', import.meta.url));
const BINARY = `${CACHE_DIR}mock-kafka`;

const START_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 10_000;

export interface MockKafkaTopic {
  name: string;
  partitions: number;
  /** Defaults to min(brokers, 3). */
  replication?: number;
}

export interface MockKafkaOptions {
  /** Number of brokers, ids 1..brokers. Default 1. */
  brokers?: number;
  /** Topics to create before the broker answers anyone. */
  topics?: MockKafkaTopic[];
}

export interface MockKafka {
  /** Bootstrap addresses, e.g. ['127.0.0.1:40401']: one per broker. */
  readonly brokers: string[];
  /** The broker process's id (for checks that nothing is left running). */
  readonly pid: number;
  /** Creates a topic (the mock does not implement the CreateTopics API). */
  createTopic(name: string, partitions: number, replication?: number): Promise<void>;
  /** Closes broker `id`'s listener and its connections, until brokerUp(id). */
  brokerDown(id: number): Promise<void>;
  brokerUp(id: number): Promise<void>;
  /** Moves a partition's leadership (-1: leaderless). */
  setLeader(topic: string, partition: number, brokerId: number): Promise<void>;
  /** Delays every response of broker `id` by `ms`. */
  setRtt(brokerId: number, ms: number): Promise<void>;
  /**
   * Fails the next requests of Kafka API `apiKey` (0 Produce, 1 Fetch, 3 Metadata,
   * 8 OffsetCommit, 9 OffsetFetch, 10 FindCoordinator, 11 JoinGroup, 14 SyncGroup…),
   * one per Kafka error code in `errorCodes`; -195 drops the client's connection.
   */
  pushRequestErrors(apiKey: number, errorCodes: number[]): Promise<void>;
  clearRequestErrors(apiKey: number): Promise<void>;
  /** Stops the broker; safe to call twice. */
  stop(): Promise<void>;
}

let built: Promise<string> | undefined;

/** Compiles mock-kafka.c into node_modules/.cache when the binary is missing or older; returns its path. */
export function buildMockKafka(): Promise<string> {
  built ??= build().catch((err: unknown) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function build(): Promise<string> {
  if (!existsSync(SOURCE)) throw new Error(`mock-kafka: source not found at ${SOURCE} (root ${ROOT})`);
  if (existsSync(BINARY) && statSync(BINARY).mtimeMs >= statSync(SOURCE).mtimeMs) return BINARY;
  mkdirSync(CACHE_DIR, { recursive: true });
  // Test files run in parallel processes: build aside, then rename into place atomically.
  const tmp = `${BINARY}.${process.pid}.tmp`;
  try {
    await execFileP('gcc', ['-O2', '-Wall', '-o', tmp, SOURCE, '-lrdkafka'], { timeout: 120_000 });
    renameSync(tmp, BINARY);
  } catch (err) {
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const detail = e.code === 'ENOENT' ? 'gcc not found' : (e.stderr || e.message).trim();
    throw new Error(`mock-kafka: building ${SOURCE} failed: ${detail}\n(${INSTALL_HINT})`);
  }
  return BINARY;
}

/** Starts a mock Kafka cluster on loopback. */
export async function startMockKafka(options: MockKafkaOptions = {}): Promise<MockKafka> {
  const brokerCount = options.brokers ?? 1;
  if (!Number.isInteger(brokerCount) || brokerCount < 1 || brokerCount > 64) {
    throw new RangeError(`startMockKafka: brokers must be an integer 1..64, got ${brokerCount}`);
  }
  const args = ['--brokers', String(brokerCount)];
  for (const topic of options.topics ?? []) {
    checkTopic(topic.name, topic.partitions, topic.replication);
    args.push('--topic', [topic.name, topic.partitions, topic.replication].filter((x) => x !== undefined).join(':'));
  }

  const binary = await buildMockKafka();
  const proc = spawnService('mock-kafka', binary, args, { stdin: 'pipe' });
  const lines = createInterface({ input: proc.child.stdout! });
  const waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];
  let bootstrapLine: ((line: string) => void) | undefined;
  lines.on('line', (line) => {
    if (bootstrapLine) {
      bootstrapLine(line);
      bootstrapLine = undefined;
    } else {
      waiting.shift()?.resolve(line);
    }
  });
  void proc.exited.then((exit) => {
    const err = new Error(`mock-kafka exited (${describeExit(exit)}): ${proc.stderrTail().trim()}`);
    for (const w of waiting.splice(0)) w.reject(err);
  });

  const first = new Promise<string>((resolve) => {
    bootstrapLine = resolve;
  });
  const startFailed = proc.exited.then((exit) => {
    throw new Error(`mock-kafka exited before listening (${describeExit(exit)}): ${proc.stderrTail().trim()}`);
  });
  let line: string;
  try {
    line = await within(Promise.race([first, startFailed]), 'mock-kafka to print BOOTSTRAP', { timeoutMs: START_TIMEOUT_MS, detail: () => proc.stderrTail().trim() });
  } catch (err) {
    await proc.terminate('SIGKILL');
    throw err;
  }
  const match = /^BOOTSTRAP (\S+)$/.exec(line);
  if (!match) {
    await proc.terminate('SIGKILL');
    throw new Error(`mock-kafka: expected "BOOTSTRAP host:port,...", got ${JSON.stringify(line)}`);
  }
  const brokers = match[1]!.split(',');

  let queue: Promise<unknown> = Promise.resolve();
  const send = (command: string): Promise<void> => {
    const run = async () => {
      if (!proc.running()) throw new Error(`mock-kafka: "${command}": the broker is not running`);
      const answer = new Promise<string>((resolve, reject) => waiting.push({ resolve, reject }));
      proc.child.stdin!.write(`${command}\n`);
      const reply = await within(answer, `mock-kafka to answer "${command}"`, { timeoutMs: COMMAND_TIMEOUT_MS });
      if (reply !== 'OK') throw new Error(`mock-kafka: "${command}": ${reply.replace(/^ERR /, '')}`);
    };
    const result = queue.then(run, run);
    queue = result.catch(() => undefined);
    return result;
  };
  const checkBroker = (id: number) => {
    if (!Number.isInteger(id) || id < 1 || id > brokerCount) {
      throw new RangeError(`mock-kafka: broker id must be 1..${brokerCount}, got ${id}`);
    }
  };

  let stopping: Promise<void> | undefined;
  return {
    brokers,
    pid: proc.pid,
    async createTopic(name, partitions, replication) {
      checkTopic(name, partitions, replication);
      await send(['create', name, partitions, replication].filter((x) => x !== undefined).join(' '));
    },
    async brokerDown(id) {
      checkBroker(id);
      await send(`down ${id}`);
    },
    async brokerUp(id) {
      checkBroker(id);
      await send(`up ${id}`);
    },
    async setLeader(topic, partition, brokerId) {
      checkTopic(topic, 1);
      await send(`leader ${topic} ${partition} ${brokerId}`);
    },
    async setRtt(brokerId, ms) {
      checkBroker(brokerId);
      await send(`rtt ${brokerId} ${ms}`);
    },
    async pushRequestErrors(apiKey, errorCodes) {
      if (errorCodes.length === 0 || errorCodes.length > 64) {
        throw new RangeError('mock-kafka: pushRequestErrors takes 1..64 error codes');
      }
      await send(`errors ${apiKey} ${errorCodes.join(' ')}`);
    },
    async clearRequestErrors(apiKey) {
      await send(`clear ${apiKey}`);
    },
    stop() {
      stopping ??= (async () => {
        if (proc.running()) {
          // "quit" and EOF both make it exit; SIGTERM, then SIGKILL, if it does not.
          proc.child.stdin!.end('quit\n');
          const exit = await within(proc.exited, 'mock-kafka to quit', { timeoutMs: 3000 }).catch(() => undefined);
          if (!exit) await proc.terminate('SIGTERM', 2000);
        }
        lines.close();
      })();
      return stopping;
    },
  };
}

function checkTopic(name: string, partitions: number, replication?: number): void {
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(name)) throw new Error(`mock-kafka: invalid topic name ${JSON.stringify(name)}`);
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`mock-kafka: partitions must be a positive integer, got ${partitions}`);
  }
  if (replication !== undefined && (!Number.isInteger(replication) || replication < 1)) {
    throw new RangeError(`mock-kafka: replication must be a positive integer, got ${replication}`);
  }
}

export interface KcatMessage {
  /** Omitted: a null key. Must not contain ':' or a newline. */
  key?: string;
  /** Must not contain a newline; without a key, not empty nor containing ':'. */
  value: string;
}

/**
 * Produces `messages` with `kcat -P -K :`, into `partition` if given, else by the Java
 * producer's murmur2 hash of the key (random for null keys); resolves once kcat has
 * delivered them all and exited 0.
 */
export async function produceWithKcat(
  brokers: string[] | string,
  topic: string,
  messages: KcatMessage[],
  partition?: number,
): Promise<void> {
  const input = messages
    .map((m, i) => {
      const where = `produceWithKcat: message ${i}`;
      if (m.value.includes('\n') || m.key?.includes('\n')) throw new Error(`${where}: newlines cannot be sent by line`);
      if (m.key === undefined) {
        if (m.value === '' || m.value.includes(':')) {
          throw new Error(`${where}: without a key, the value must be non-empty and contain no ':'`);
        }
        return m.value;
      }
      if (m.key.includes(':')) throw new Error(`${where}: the key must not contain ':'`);
      return `${m.key}:${m.value}`;
    })
    .join('\n');
  // murmur2_random: keys land where the Java producer (and kafkajs's DefaultPartitioner) put them;
  // librdkafka's own default (CRC32) would not.
  const args = ['-P', '-b', Array.isArray(brokers) ? brokers.join(',') : brokers, '-t', topic, '-K', ':', '-X', 'partitioner=murmur2_random'];
  if (partition !== undefined) args.push('-p', String(partition));
  if (messages.length === 0) return;

  const proc: ServiceProcess = spawnService('kcat', 'kcat', args, { stdin: 'pipe' });
  proc.child.stdin!.on('error', () => undefined); // EPIPE if kcat dies early: reported by its exit below
  proc.child.stdin!.end(`${input}\n`);
  const exit = await within(proc.exited, 'kcat to deliver its messages and exit', { timeoutMs: 30_000, detail: () => proc.stderrTail().trim() }).catch(
    async (err: unknown) => {
      await proc.terminate('SIGKILL');
      throw err;
    },
  );
  if (exit.code !== 0) {
    const tail = proc.stderrTail().trim();
    const hint = /ENOENT|No such file|not found/.test(tail) ? `\n(${INSTALL_HINT})` : '';
    throw new Error(`kcat ${args.join(' ')} failed (${describeExit(exit)}): ${tail}${hint}`);
  }
}
