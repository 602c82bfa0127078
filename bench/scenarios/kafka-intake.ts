import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Kafka, logLevel } from 'kafkajs';
import { BatchEvents, StateSpec, StreamingContext, type MapWithStateStream } from '../../src/index.js';
import { startMockKafka, type MockKafka } from '../../test/integration/services/kafka.js';
import { startZooKeeper, type ZooKeeperServer } from '../../test/integration/services/zookeeper.js';
import type { BenchConfig } from '../config.js';
import { log, overBudget, pow10, settle } from '../common.js';
import { bytesOnDisk, peakRss, type RssFigures, type RssSampler } from '../memory.js';
import type { Row, ScenarioResult } from '../report.js';
import { tempDataDir, WORD_COUNT_FN } from '../runtime.js';
import { summarize } from '../stats.js';
import { vocabulary, zipfWords } from '../zipf.js';

export const WORDS_PER_LINE = 5;
const TOPIC_PARTITIONS = 4;
/** Longest any reader may take for the whole topic before the run counts as failed. */
const READ_DEADLINE_MS = 180_000;

interface Reading {
  seconds: number;
  rss: RssFigures;
}

/** kcat reads the whole topic from the beginning and exits at its end. */
async function kcatRead(brokers: string[], topic: string, lines: number): Promise<Reading> {
  const rss = peakRss();
  const started = performance.now();
  const kcat = spawn('kcat', ['-C', '-b', brokers.join(','), '-t', topic, '-o', 'beginning', '-e', '-q', '-f', '%s\n'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let seen = 0;
  kcat.stdout!.on('data', (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) seen++;
  });
  let stderr = '';
  kcat.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const timer = setTimeout(() => kcat.kill('SIGKILL'), READ_DEADLINE_MS);
  const [code] = (await once(kcat, 'exit')) as [number | null];
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0 || seen !== lines) throw new Error(`kafka intake: kcat exited ${code} after ${seen} of ${lines} lines: ${stderr.trim().slice(-400)}`);
  return { seconds, rss: rss.stop() };
}

/** The obvious hand-written consumer: kafkajs eachBatch, split each line, count words in a Map. No durability. */
export async function kafkajsRead(brokers: string[], topic: string, lines: number, groupId: string): Promise<Reading & { counts: Map<string, number> }> {
  const rss = peakRss();
  const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100 });
  const counts = new Map<string, number>();
  let seen = 0;
  const started = performance.now();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kafka intake: kafkajs read ${seen} of ${lines} lines within ${READ_DEADLINE_MS / 1000} s`)), READ_DEADLINE_MS);
    void consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) {
          for (const word of message.value!.toString('utf8').split(' ')) counts.set(word, (counts.get(word) ?? 0) + 1);
        }
        seen += batch.messages.length;
        if (seen >= lines) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await done;
  const seconds = (performance.now() - started) / 1000;
  await consumer.disconnect();
  return { seconds, rss: rss.stop(), counts };
}

/** statestream: kafkaStream with ZooKeeper offsets → split → mapWithState word count, on the system clock. */
async function statestreamRead(
  config: BenchConfig['kafka'],
  services: { brokers: string[]; zookeeper: string },
  topic: string,
  lines: number,
  run: number,
): Promise<Reading & { state: MapWithStateStream<string, number, [string, number]>; stop: () => Promise<void>; batches: number; disk: number }> {
  const rss: RssSampler = peakRss();
  const dir = tempDataDir('kafka');
  const ssc = new StreamingContext({ batchIntervalMs: config.batchIntervalMs, dataDir: dir.path, threads: config.threads, appName: `bench-kafka-${run}` });
  const state = ssc
    .kafkaStream({
      brokers: services.brokers, topic, groupId: `bench-statestream-${run}`, zookeeper: { connect: services.zookeeper, root: `/bench/kafka-intake-${run}` },
      maxRecordsPerBatch: config.maxRecordsPerBatch, startingOffsets: 'earliest',
    })
    .flatMap((r) => (r.value ?? '').split(' '))
    .map((w) => [w, 1] as [string, number])
    .mapWithState(StateSpec.function<string, number, number, [string, number]>(WORD_COUNT_FN).numPartitions(config.partitions)) as MapWithStateStream<string, number, [string, number]>;
  let seen = 0;
  let batches = 0;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kafka intake: statestream took ${seen} of ${lines} lines within ${READ_DEADLINE_MS / 1000} s`)), READ_DEADLINE_MS);
    ssc.on(BatchEvents.COMPLETED, (e) => {
      seen += e.records;
      if (e.records > 0) batches++;
      if (seen >= lines) {
        clearTimeout(timer);
        resolve();
      }
    });
    ssc.on(BatchEvents.FAILED, (e) => reject(e.error));
  });
  const started = performance.now();
  await ssc.start();
  await done;
  const seconds = (performance.now() - started) / 1000;
  const reading = {
    seconds, rss: rss.stop(), state, batches, disk: 0,
    stop: async () => {
      await ssc.stop();
      reading.disk = bytesOnDisk(dir.path);
      dir.remove();
    },
  };
  return reading;
}

/** Writes the topic with kcat from a file: `lines` lines of five Zipf words. */
export async function produceLines(brokers: string[], topic: string, lines: number, dir: string): Promise<void> {
  const words = zipfWords(vocabulary(10_000, 7), lines * WORDS_PER_LINE, 1.0, 17);
  const text: string[] = [];
  for (let i = 0; i < lines; i++) text.push(words.slice(i * WORDS_PER_LINE, (i + 1) * WORDS_PER_LINE).join(' '));
  const file = join(dir, 'lines.txt');
  writeFileSync(file, text.join('\n') + '\n');
  await produceFile(brokers, topic, file);
}

/** Writes each line of `file` to `topic` with kcat. */
export async function produceFile(brokers: string[], topic: string, file: string): Promise<void> {
  const kcat = spawn('kcat', ['-P', '-b', brokers.join(','), '-t', topic, '-l', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  kcat.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const [code] = (await once(kcat, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`kcat could not produce ${topic} (exit ${code}): ${stderr.trim().slice(-400)}`);
}

async function topicSize(brokers: string[], topic: string): Promise<{ low: number; high: number }> {
  const admin = new Kafka({ brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return { low: offsets.reduce((n, o) => n + Number(o.low), 0), high: offsets.reduce((n, o) => n + Number(o.high), 0) };
  } finally {
    await admin.disconnect();
  }
}

/**
 * Scenario 7: Kafka intake. One topic on the mock broker, read whole in the same run by
 * kcat, by a hand-written kafkajs eachBatch + Map word count, and by statestream's
 * kafkaStream with ZooKeeper offsets + mapWithState. Figure: lines/s of each.
 */
export async function kafkaIntake(config: BenchConfig): Promise<ScenarioResult> {
  const started = Date.now();
  const k = config.kafka;
  const files = tempDataDir('kafka-input');
  let zk: ZooKeeperServer | undefined;
  let kafka: MockKafka | undefined;
  try {
    log('kafka intake: starting ZooKeeper and the mock broker');
    [zk, kafka] = await Promise.all([startZooKeeper(), startMockKafka({ brokers: 1 })]);
    const topic = 'bench-lines';
    await kafka.createTopic(topic, TOPIC_PARTITIONS);
    log(`kafka intake: producing ${k.lines} lines of ${WORDS_PER_LINE} words with kcat`);
    await produceLines(kafka.brokers, topic, k.lines, files.path);
    const size = await topicSize(kafka.brokers, topic);
    // The mock keeps only the newest part of a very large topic: every reader must see it all.
    if (size.low !== 0 || size.high !== k.lines) throw new Error(`kafka intake: the broker holds offsets ${size.low}–${size.high} of the ${k.lines} lines produced; make the topic smaller`);

    const runs = { kcat: [] as Reading[], kafkajs: [] as Reading[], statestream: [] as Array<Reading & { batches: number; disk: number }> };
    let reps = 0;
    for (let rep = 0; rep < config.reps && !(rep > 0 && overBudget()); rep++, reps++) {
      await settle();
      runs.kcat.push(await kcatRead(kafka.brokers, topic, k.lines));
      await settle();
      const map = await kafkajsRead(kafka.brokers, topic, k.lines, `bench-kafkajs-${rep}`);
      runs.kafkajs.push(map);
      await settle();
      const ss = await statestreamRead(k, { brokers: kafka.brokers, zookeeper: zk.connectString }, topic, k.lines, rep);
      try {
        // Same counts as the hand-written consumer, word for word: nothing lost or counted twice.
        for (const [word, count] of map.counts) {
          const got = ss.state.store().get(word);
          if (got !== count) throw new Error(`kafka intake: statestream counted ${word} ${got} times, the kafkajs consumer ${count}`);
        }
        if (ss.state.store().count() !== map.counts.size) throw new Error('kafka intake: statestream holds other words than the kafkajs consumer');
      } finally {
        await ss.stop();
      }
      runs.statestream.push(ss);
      const rate = (r: Reading) => (k.lines / r.seconds).toFixed(0);
      log(`kafka intake rep ${rep + 1}: kcat ${rate(runs.kcat.at(-1)!)}, kafkajs+Map ${rate(map)}, statestream ${rate(ss)} lines/s (${ss.batches} batches)`);
    }

    const rate = (rs: Reading[]) => summarize(rs.map((r) => k.lines / r.seconds));
    const rss = (rs: Reading[], figure: 'peak' | 'rise') => summarize(rs.map((r) => r.rss[figure]));
    const kafkaCase = `${pow10(k.lines)} lines`;
    const rows: Row[] = [
      { case: kafkaCase, figure: 'intake', unit: 'records/s', runtime: rate(runs.statestream), baselines: { kafkajs: rate(runs.kafkajs), kcat: rate(runs.kcat) }, details: { unit: 'lines/s', batches: runs.statestream.map((r) => r.batches) } },
      { case: kafkaCase, figure: 'peak RSS', unit: 'MB', runtime: rss(runs.statestream, 'peak'), baselines: { kafkajs: rss(runs.kafkajs, 'peak') } },
      { case: kafkaCase, figure: 'peak RSS above the start of the read', unit: 'MB', runtime: rss(runs.statestream, 'rise'), baselines: { kafkajs: rss(runs.kafkajs, 'rise') } },
      { case: kafkaCase, figure: 'state on disk', unit: 'MB', runtime: summarize(runs.statestream.map((r) => r.disk)), baselines: {} },
    ];
    const notes = [
      `One topic of ${pow10(k.lines)} lines of ${WORDS_PER_LINE} Zipf(1) words (vocabulary 10^4) in ${TOPIC_PARTITIONS} partitions on the mock broker, produced with kcat; each reader reads it whole from the beginning, ${config.reps} runs each. The "records/s" of this table are lines/s.`,
      'kcat: `kcat -C -o beginning -e`, lines counted from its output. kafkajs + Map: a consumer group of its own, `eachBatch`, split each line and count in a Map, no durability. statestream: `kafkaStream` with ZooKeeper offsets (a root and group of its own) → flatMap(split) → map → mapWithState(word count), ' +
        `${k.partitions} partitions, ${k.threads} threads, batchIntervalMs ${k.batchIntervalMs} on the system clock, maxRecordsPerBatch ${pow10(k.maxRecordsPerBatch)}; its counts are checked against the kafkajs consumer's, word for word.`,
      'Each time runs from the call that starts reading (consumer.run / ssc.start, connecting and joining the group included) to the last line counted. Peak RSS: of the bench process while the reader runs, sampled every 20 ms (kcat runs in a process of its own and is not measured); the row above the start is what the read added to the process, the other is the whole process (the input and the readers before it included). State on disk: statestream\'s data folder once the job stopped (the kafkajs count keeps nothing).',
    ];
    if (reps < config.reps) notes.unshift(`Only ${reps} of ${config.reps} runs: the ${config.mode}-mode time budget ran out.`);
    return { name: 'kafka', title: '7. Kafka intake: kcat, kafkajs + Map, statestream', setup: { ...k, reps: config.reps }, notes, rows, seconds: (Date.now() - started) / 1000 };
  } finally {
    await Promise.all([kafka?.stop(), zk?.stop()]);
    files.remove();
  }
}
