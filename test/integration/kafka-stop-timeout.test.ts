import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, StopTimeoutError, StreamingContext, type BatchFailedEvent, type MapWithStateStream } from '../../src/index.js';
import type { SpinValue } from '../fixtures/spin.js';
import { fixture, sorted, tempDir } from '../helpers.js';
import { waitUntil, within } from '../wait.js';
import { ChildProcessLines } from './job-process.js';
import { useServices } from './services/suite.js';

describe('stop({ timeoutMs }) on a Kafka job (real ZooKeeper, librdkafka mock broker)', { timeout: 240_000 }, () => {
  const services = useServices();

  /** A word count whose record SPIN never returns while `gate` is given. */
  function job(dataDir: string, topic: string, gate?: string, hangOn?: string) {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 2, appName: 'stop-timeout' });
    const outputs: Array<{ time: number; records: Array<[string, number]> }> = [];
    const stream = ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `${topic}-${Date.now()}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/${topic}` }, groupSessionTimeoutMs: 6000 })
      .map((record) => [record.value as string, record.value === 'SPIN' && gate ? { spin: gate } : 1] as [string, SpinValue])
      .mapWithState(StateSpec.function<string, SpinValue, number, [string, number]>(fixture('spin')).numPartitions(4));
    let hung = false;
    stream.foreachBatch((records, time) => {
      // An output whose sink never answers: its promise never settles.
      if (hangOn !== undefined && records.some(([word]) => word === hangOn)) return new Promise<void>(() => void (hung = true));
      if (records.length > 0) outputs.push({ time, records });
    });
    return { ssc, stream: stream as unknown as MapWithStateStream<string, number, unknown>, outputs, hung: () => hung };
  }

  /**
   * Starts `first`, lets it count a, b and c, sends `next` and waits until `stuck` says the
   * batch is stuck (`what`), then stops with a 300 ms timeout. Returns the batches that failed.
   */
  async function cutWhileStuck(first: ReturnType<typeof job>, topic: string, next: string[], what: string, stuck: () => boolean): Promise<BatchFailedEvent[]> {
    const failed: BatchFailedEvent[] = [];
    first.ssc.on(BatchEvents.FAILED, (e) => failed.push(e));
    await first.ssc.start();
    try {
      await services.producer.send({ topic, messages: ['a', 'b', 'c'].map((value) => ({ value })) });
      await waitUntil('a, b and c counted', () => first.outputs.flatMap((o) => o.records).length >= 3);
      await services.producer.send({ topic, messages: next.map((value) => ({ value })) });
      await waitUntil(`the batch to be stuck: ${what}`, stuck);
    } finally {
      await within(first.ssc.stop({ timeoutMs: 300 }), `stop() with a timeout, while ${what}`);
    }
    return failed;
  }

  /**
   * The fixture's job in a child process, with `args` after the ZooKeeper connect string and
   * a data folder: the stop it calls while the start waits for `brokers` returns within 3 s,
   * the start fails naming them, and the process then exits by itself within `exitMs`.
   */
  async function stopWhileConnecting(args: string[], brokers: string, exitMs: number): Promise<void> {
    const script = fileURLToPath(new URL('./fixtures/stop-while-kafka-connects.js', import.meta.url));
    const child = new ChildProcessLines(script, [services.zk.connectString, tempDir(), ...args]);
    try {
      const stopped = await child.waitForLine(/^STOPPED \d+$/, { from: 0, timeoutMs: 40_000 });
      assert.ok(Number(stopped.split(' ')[1]) < 3_000, `stop() took ${stopped.split(' ')[1]} ms`);
      assert.equal(await child.waitForLine(/^START /, { from: 0 }), `START OffsetStoreError: Kafka brokers ${brokers}: interrupted while connecting`);
      const exit = await child.exit('the process to exit by itself once stopped', exitMs);
      assert.deepEqual(exit, { code: 0, signal: null }, child.tail());
    } finally {
      if (child.running) child.kill();
    }
  }

  it('a start waiting for Kafka brokers it cannot reach ends at once on stop(): start() fails, named, and nothing keeps the process alive', async () => {
    // kafkajs would go on retrying the connection for about two minutes; it gives up at its next attempt, at most 5 s on.
    await stopWhileConnecting([], '127.0.0.1:1', 20_000);
  });

  it('a start whose brokers answer slowly ends at once on stop(): the connection left behind is closed once it settles, and the process exits', async () => {
    // Every answer of the broker takes 6 s: the start's first request, and a disconnect that waited for it.
    try {
      await services.kafka.setRtt(1, 6000);
      const brokers = services.kafka.brokers.join(',');
      await stopWhileConnecting([brokers, '500'], brokers, 30_000);
    } finally {
      await services.kafka.setRtt(1, 0);
    }
  });

  it('a batch whose output operation was still pending at the deadline runs its outputs again on the next start, its state counted once', async () => {
    const topic = 'stop-timeout-output';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    const first = job(dataDir, topic, undefined, 'HANG');
    const failed = await cutWhileStuck(first, topic, ['a', 'HANG', 'd'], 'an output operation hangs', first.hung);
    assert.equal(failed.length, 1, 'the batch whose output hung failed');
    assert.ok(failed[0].error instanceof StopTimeoutError, `${failed[0].error.name}: ${failed[0].error.message}`);
    assert.match(failed[0].error.message, /an output operation of batch \d+ was still running/);
    assert.deepEqual(sorted(first.outputs.flatMap((o) => o.records)), [['a', 1], ['b', 1], ['c', 1]]);

    const second = job(dataDir, topic);
    await second.ssc.start();
    try {
      await waitUntil('the batch run again', () => second.outputs.flatMap((o) => o.records).length >= 3);
      await second.ssc.awaitIdle();
      // The outputs its partitions recorded when they committed it, once more; its state not applied twice.
      assert.deepEqual(sorted(second.outputs.flatMap((o) => o.records)), [['HANG', 1], ['a', 2], ['d', 1]]);
      for (const [word, count] of [['a', 2], ['b', 1], ['c', 1], ['d', 1], ['HANG', 1]] as const) assert.equal(second.stream.store().get(word), count, word);
    } finally {
      await second.ssc.stop();
    }
  });

  it('the batch cut short is not committed and runs again, exactly once, on the next start', async () => {
    const topic = 'stop-timeout';
    await services.kafka.createTopic(topic, 1);
    const dir = tempDir();
    const dataDir = join(dir, 'data');
    const gate = join(dir, 'gate');
    mkdirSync(gate);

    const first = job(dataDir, topic, gate);
    const failed = await cutWhileStuck(first, topic, ['a', 'SPIN', 'b', 'c', 'd'], 'a mapping function spins', () => existsSync(join(gate, 'entered')));
    assert.equal(failed.length, 1, 'the batch under way failed');
    assert.ok(failed[0].error instanceof StopTimeoutError, `${failed[0].error.name}: ${failed[0].error.message}`);
    assert.deepEqual(sorted(first.outputs.flatMap((o) => o.records)), [['a', 1], ['b', 1], ['c', 1]], 'the cut batch ran no outputs');

    const second = job(dataDir, topic);
    await second.ssc.start();
    try {
      await waitUntil('the cut batch run again', () => second.outputs.flatMap((o) => o.records).length >= 5);
      await second.ssc.awaitIdle();
      assert.deepEqual(sorted(second.outputs.flatMap((o) => o.records)), [['SPIN', 1], ['a', 2], ['b', 2], ['c', 2], ['d', 1]]);
      for (const [word, count] of [['a', 2], ['b', 2], ['c', 2], ['d', 1], ['SPIN', 1]] as const) assert.equal(second.stream.store().get(word), count, word);
    } finally {
      await second.ssc.stop();
    }
  });
});
