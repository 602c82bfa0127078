import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, DataLossError, ManualClock, OffsetStoreError, StateSpec, StreamingContext, listSnapshots, type DataLostEvent, type KafkaStreamOptions, type MapWithStateStream } from '../../src/index.js';
import { partitionPath } from '../../src/storage/partition/store.js';
import { fixture, tempDir } from '../helpers.js';
import { nextEvent, within } from '../wait.js';
import { JobProcess, highWatermarks, tally, zkOffsets } from './job-process.js';
import { produceWithKcat } from './services/kafka.js';
import { useServices } from './services/suite.js';
import { connectClient, zkAnswer } from './services/zookeeper.js';
import { ZooKeeperSession } from '../../src/storage/zookeeper/session.js';
import { ownedOffsetStore } from '../storage/zookeeper/owned-store.js';

/** The line at each offset of a one-partition topic: what the counts must hold is computed from offsets alone. */
const line = (offset: number) => `w${offset % 13}`;
const lines = (from: number, until: number) => Array.from({ length: until - from }, (_, i) => line(from + i));
const MANY = 1_000_000;

async function until(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('Kafka retention gaps are loud (real ZooKeeper, librdkafka mock broker keeping the newest ~5.5·10^5 of 10^6 lines)', { timeout: 900_000 }, () => {
  const services = useServices();

  /** A word count over a one-partition topic, in this process; the record at `poisonAt()` reads as POISON, which fails its batch. */
  function job(topic: string, dataDir: string, options: Partial<KafkaStreamOptions<string>> = {}, snapshotEvery?: number, clock?: ManualClock, poisonAt?: () => number | undefined) {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, appName: topic, snapshotEvery, snapshotsKept: 100, clock });
    const counts = ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `${topic}-${Date.now()}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/${topic}` }, groupSessionTimeoutMs: 6000, ...options })
      .map((record) => [record.offset === String(poisonAt?.()) ? 'POISON' : (record.value as string), 1] as [string, number])
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture(poisonAt ? 'poison-count' : 'count')).numPartitions(1));
    const lost: DataLostEvent[] = [];
    ssc.on(BatchEvents.DATA_LOST, (e) => lost.push(e));
    return { ssc, counts: counts as MapWithStateStream<string, number, unknown>, lost };
  }

  /** A start that must fail as `check` says; the context is stopped either way. */
  async function refusedStart(j: ReturnType<typeof job>, check: (e: unknown) => boolean, message?: string): Promise<void> {
    try {
      await assert.rejects(j.ssc.start(), check, message);
    } finally {
      await j.ssc.stop();
    }
  }

  /** A data folder where a job counted the topic until `key` held `count`, then stopped. */
  async function counted(topic: string, key: string, count: number): Promise<string> {
    const dataDir = join(tempDir(), 'data');
    const first = job(topic, dataDir);
    await first.ssc.start();
    try {
      await until(() => first.counts.store().get(key) === count, 60_000, `${key} counted ${count} times`);
    } finally {
      await first.ssc.stop();
    }
    return dataDir;
  }

  const readZkData = async (path: string): Promise<string> => {
    const client = await connectClient(services.zk.connectString);
    try {
      return await zkAnswer<string>((done) => client.getData(path, (e, data) => done(e, data?.toString('utf8') ?? '')));
    } finally {
      client.close();
    }
  };
  const position = async (topic: string) => (await zkOffsets(services.zk.connectString, `/statestream/${topic}`, topic, 1))[0];
  const low = async (topic: string, partition = 0) => {
    const admin = (await import('kafkajs')).Kafka;
    const client = new admin({ brokers: services.kafka.brokers, logLevel: 0 }).admin();
    await client.connect();
    try {
      return Number((await client.fetchTopicOffsets(topic)).find((p) => p.partition === partition)!.low);
    } finally {
      await client.disconnect();
    }
  };
  /** Produces lines for offsets [from, until) with kcat and checks the broker then dropped the oldest. */
  async function produceBeyondRetention(topic: string, from: number, partition = 0): Promise<{ low: number; high: number }> {
    await produceWithKcat(services.kafka.brokers, topic, lines(from, from + MANY).map((value) => ({ value })), partition);
    const high = (await highWatermarks(services.kafka.brokers, topic))[partition];
    assert.equal(high, from + MANY);
    const earliest = await low(topic, partition);
    assert.ok(earliest > from, `the broker dropped the oldest records (earliest offset ${earliest}, the job stopped at ${from})`);
    return { low: earliest, high };
  }

  async function runUntilCaughtUp(j: ReturnType<typeof job>, topic: string, end: number): Promise<void> {
    await j.ssc.start();
    try {
      await until(async () => (await position(topic)) === end, 300_000, `the position reaching ${end}`);
      await j.ssc.awaitIdle();
    } catch (error) {
      await j.ssc.stop();
      throw error;
    }
  }

  /** The counts of lines [0, end) when the offsets of `gaps` were lost: every other offset, once. */
  function countsWithout(gaps: readonly DataLostEvent[], end: number): Map<string, number> {
    const counts = new Map<string, number>();
    const lostAt = (offset: number) => gaps.some((g) => offset >= g.from && offset < g.until);
    for (let offset = 0; offset < end; offset++) if (!lostAt(offset)) counts.set(line(offset), (counts.get(line(offset)) ?? 0) + 1);
    return new Map([...counts.entries()].sort());
  }

  /** A job started again on the folder after `gap` was reported: it reads to `end`, reports nothing again, and counts every offset outside the gap once. */
  async function resumesPastReported(topic: string, dataDir: string, end: number, gap: DataLostEvent): Promise<void> {
    const again = job(topic, dataDir, { failOnDataLoss: false });
    await runUntilCaughtUp(again, topic, end);
    try {
      assert.deepEqual(again.lost, [], 'the gap was reported by the run before');
      assert.deepEqual(new Map([...again.counts.store().entries()].sort()), countsWithout([gap], end));
    } finally {
      await again.ssc.stop();
    }
  }

  it('failOnDataLoss is checked when the stream is defined', () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir() });
    assert.throws(() => ssc.kafkaStream({ brokers: ['127.0.0.1:9092'], topic: 't', groupId: 'g', zookeeper: { connect: '127.0.0.1:2181' }, failOnDataLoss: 'no' as never }), /kafkaStream: failOnDataLoss must be true or false, got "no"/);
  });

  it('a stored position the broker no longer holds fails the start whatever startingOffsets says, and moves nothing; failOnDataLoss: false goes on from the earliest offset held and reports the gap', async () => {
    const topic = 'retention-position';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    await produceWithKcat(services.kafka.brokers, topic, lines(0, 1000).map((value) => ({ value })), 0);
    const first = job(topic, dataDir);
    await runUntilCaughtUp(first, topic, 1000);
    await first.ssc.stop();

    const { low: earliest, high } = await produceBeyondRetention(topic, 1000);
    for (const startingOffsets of ['latest', 'earliest'] as const) {
      await refusedStart(job(topic, dataDir, { startingOffsets }), (e: unknown) => {
        assert.ok(e instanceof DataLossError, String(e));
        assert.match(e.message, new RegExp(`${topic}\\[0\\] offsets 1000–${earliest - 1} \\(${earliest - 1000} records\\): the job's position is 1000, the broker's earliest offset ${earliest}`));
        assert.match(e.message, /failOnDataLoss: false/);
        assert.deepEqual(e.context.gaps, [{ topic, partition: 0, from: 1000, until: earliest, where: 'position' }]);
        return true;
      }, `startingOffsets ${startingOffsets}`);
      assert.equal(await position(topic), 1000, 'the position in ZooKeeper is where the job stopped');
    }

    // failOnDataLoss: false reports the gap and records the position past it at start, before
    // any batch runs (a manual clock runs none): a gap is reported once, even if no record follows.
    const reporting = job(topic, dataDir, { startingOffsets: 'latest', failOnDataLoss: false }, undefined, new ManualClock(Date.now()));
    await reporting.ssc.start();
    try {
      assert.deepEqual(reporting.lost.map(({ topic: t, partition, from, until: u, where }) => ({ t, partition, from, u, where })), [{ t: topic, partition: 0, from: 1000, u: earliest, where: 'position' }]);
      assert.match(reporting.lost[0].message, /went on without/);
      assert.equal(await position(topic), earliest, 'the position past the gap, recorded at start');
    } finally {
      await reporting.ssc.stop();
    }

    const goOn = job(topic, dataDir, { startingOffsets: 'latest', failOnDataLoss: false });
    await runUntilCaughtUp(goOn, topic, high);
    try {
      assert.deepEqual(goOn.lost, [], 'the gap was reported by the start before');
      assert.deepEqual(new Map(goOn.counts.store().entries()), tally([...lines(0, 1000), ...lines(earliest, high)]), 'every line the broker still held, counted once, none before');
    } finally {
      await goOn.ssc.stop();
    }
  });

  it("a stateful job whose data folder is gone, while ZooKeeper records its batches, refuses to go on from ZooKeeper's positions with no state", async () => {
    const topic = 'state-gone';
    await services.kafka.createTopic(topic, 1);
    await services.producer.send({ topic, messages: [{ value: 'a' }, { value: 'a' }] });
    const dataDir = await counted(topic, 'a', 2);
    rmSync(dataDir, { recursive: true });
    await refusedStart(job(topic, dataDir), (e) => e instanceof OffsetStoreError && /the state stores under .* hold no batch, but ZooKeeper \(\/statestream\/state-gone\) records batches up to \d+ as processed: that state is gone/.test(e.message));
    assert.equal(await position(topic), 2, 'the stored position is left as it was');
  });

  it("a stored position past the partition's end (a topic made again, or truncated) fails the start, naming it, and moves nothing", async () => {
    const topic = 'past-end';
    await services.kafka.createTopic(topic, 1);
    await services.producer.send({ topic, messages: [{ value: 'a' }, { value: 'b' }] });
    const dataDir = await counted(topic, 'b', 1);
    // As if the topic had held 5 records when the job last ran.
    const client = await connectClient(services.zk.connectString);
    try {
      await zkAnswer((done) => client.setData(`/statestream/${topic}/offsets/${topic}/0`, Buffer.from('5'), (error) => done(error)));
    } finally {
      client.close();
    }
    await refusedStart(job(topic, dataDir), (e) => e instanceof OffsetStoreError && /the position in ZooKeeper \(\/statestream\/past-end\) for past-end\[0\] is 5, past the partition's end \(2\)/.test(e.message) && !/'latest'/.test(e.message));
    // Following the advice with 'latest' would skip what the recreated topic holds: the error says so.
    await refusedStart(job(topic, dataDir, { startingOffsets: 'latest' }), (e) => e instanceof OffsetStoreError && /Delete \/statestream\/past-end\/offsets\/past-end\/0 to read it from the beginning \(.*here 'latest': its records so far would be skipped; start once with startingOffsets 'earliest'/.test(e.message));
    assert.equal(await position(topic), 5, 'the stored position is left as it was');
  });

  it("a batch in flight whose range ends past the partition's end (a topic made again) fails the start, naming it, instead of waiting for records that would not be its own", async () => {
    const topic = 'in-flight-past-end';
    await services.kafka.createTopic(topic, 1);
    await services.producer.send({ topic, messages: [{ value: 'a' }, { value: 'b' }] });
    const dataDir = await counted(topic, 'b', 1);
    // As if the job had died with a batch of offsets 2–6 in flight, and the topic were made again with 2 records.
    const inFlight = Number(await readZkData(`/statestream/${topic}/last-batch`)) + 100;
    const client = await connectClient(services.zk.connectString);
    try {
      const batch = JSON.stringify({ batchTime: inFlight, ranges: [{ topic, partition: 0, from: 2, until: 7 }] });
      await zkAnswer((done) => client.setData(`/statestream/${topic}/batch`, Buffer.from(batch), (error) => done(error)));
    } finally {
      client.close();
    }
    await within(refusedStart(job(topic, dataDir), (e) =>
      e instanceof OffsetStoreError &&
      new RegExp(`cannot be read again: batch ${inFlight} in flight when the job stopped read in-flight-past-end\\[0\\] offsets 2–6, past the partition's end \\(2\\)\\. The topic was deleted and recreated`).test(e.message)), 'the refused start', { timeoutMs: 60_000 });
    assert.equal(await position(topic), 2, 'the stored position is left as it was');

    // A batch in flight that read a topic the stream no longer subscribes to is named as such, not as a recreated topic.
    const client2 = await connectClient(services.zk.connectString);
    try {
      const batch = JSON.stringify({ batchTime: inFlight, ranges: [{ topic: 'dropped-topic', partition: 0, from: 0, until: 5 }] });
      await zkAnswer((done) => client2.setData(`/statestream/${topic}/batch`, Buffer.from(batch), (error) => done(error)));
    } finally {
      client2.close();
    }
    const dropped = job(topic, dataDir);
    const failed = nextEvent(dropped.ssc, BatchEvents.FAILED, 'the rebuilt batch to fail');
    await dropped.ssc.start();
    try {
      const { error } = await failed;
      assert.ok(error instanceof OffsetStoreError, String(error));
      assert.match(error.message, /the batch recorded in ZooKeeper reads dropped-topic\[0\], which this stream does not subscribe to/);
    } finally {
      await dropped.ssc.stop();
    }
  });

  it('a gap passed at start beside a batch in flight that reads another partition is recorded at once: the next start does not report it again', async () => {
    const topic = 'retention-beside-in-flight';
    await services.kafka.createTopic(topic, 2);
    for (const partition of [0, 1]) await produceWithKcat(services.kafka.brokers, topic, lines(0, 10).map((value) => ({ value })), partition);
    const dataDir = join(tempDir(), 'data');
    const first = job(topic, dataDir);
    await first.ssc.start();
    try {
      await until(async () => (await zkOffsets(services.zk.connectString, `/statestream/${topic}`, topic, 2)).every((o) => o === 10), 60_000, 'both partitions read');
      await first.ssc.awaitIdle();
    } finally {
      await first.ssc.stop();
    }
    // As if the job had died with a batch of partition 0's next 5 lines in flight, recorded
    // before it ran; then partition 1 is overtaken by retention.
    await produceWithKcat(services.kafka.brokers, topic, lines(10, 15).map((value) => ({ value })), 0);
    const session = new ZooKeeperSession({ connect: services.zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, `/statestream/${topic}`);
      // After every batch the stores hold (the last ones took no record, so ZooKeeper's last ended batch is older), before the next run's first.
      await offsets.recordBatchStart({ batchTime: Date.now(), ranges: [{ topic, partition: 0, from: 10, until: 15 }] });
      await offsets.release();
    } finally {
      session.close();
    }
    const { low: earliest } = await produceBeyondRetention(topic, 10, 1);

    // A manual clock: the start rebuilds the batch in flight, and no live batch runs.
    const second = job(topic, dataDir, { failOnDataLoss: false }, undefined, new ManualClock(Date.now()));
    await second.ssc.start();
    try {
      await second.ssc.awaitIdle();
      assert.deepEqual(second.lost.map(({ partition, from, until: u }) => [partition, from, u]), [[1, 10, earliest]]);
      assert.deepEqual(await zkOffsets(services.zk.connectString, `/statestream/${topic}`, topic, 2), [15, earliest], 'the batch in flight ended; the position past the gap was recorded at start');
      assert.equal(second.counts.store().get(line(13)), 3, 'the batch in flight counted: w0 at offset 0 of both partitions, and at offset 13 of partition 0');
    } finally {
      await second.ssc.stop();
    }
    const third = job(topic, dataDir, { failOnDataLoss: false }, undefined, new ManualClock(Date.now()));
    await third.ssc.start();
    try {
      assert.deepEqual(third.lost, [], 'the gap was reported by the start before');
    } finally {
      await third.ssc.stop();
    }
  });

  it('a batch in flight when the job stopped whose records are gone fails the start, naming the batch', async () => {
    const topic = 'retention-in-flight';
    await services.kafka.createTopic(topic, 1);
    await produceWithKcat(services.kafka.brokers, topic, lines(0, 300).map((value) => ({ value })), 0);
    const config = {
      brokers: services.kafka.brokers, topic, zookeeper: services.zk.connectString, zkRoot: `/statestream/${topic}`, dataDir: join(tempDir(), 'data'),
      groupId: `${topic}-1`, batchMs: 100, partitions: 1, maxRecordsPerBatch: 200, dieAfterCommitOfBatch: 1,
    };
    // Dies with a range from offset 0 recorded in ZooKeeper as the batch in flight: at most 200
    // records, as many as its consumer had fetched when the batch fell due (under load, once 1).
    const first = new JobProcess(config);
    assert.equal((await first.exited).signal, 'SIGKILL');
    const { low: earliest } = await produceBeyondRetention(topic, 300);
    await refusedStart(job(topic, config.dataDir), (e: unknown) => {
      const named = e instanceof DataLossError ? new RegExp(`${topic}\\[0\\] offsets 0–(\\d+) \\((\\d+) records?\\) of batch \\d+, which was in flight when the job stopped`).exec(e.message) : null;
      if (named === null || Number(named[2]) !== Number(named[1]) + 1 || Number(named[2]) > 200) return false;
      // The offsets after the batch in flight: ZooKeeper's position is still 0, where the batch begins.
      const end = Number(named[2]);
      assert.match((e as Error).message, new RegExp(`${topic}\\[0\\] offsets ${end}–${earliest - 1} \\(${earliest - end} records\\): the job's position is 0 and its batch in flight ends at ${end}, the broker's earliest offset ${earliest}`));
      return true;
    });
    assert.ok(earliest > 300);

    // failOnDataLoss: false goes on. Each lost offset is reported once, and the batch in flight,
    // whose records are all gone, ends at the earliest offset held: the next start reports nothing.
    const inFlightEnd = Number(JSON.parse(await readZkData(`/statestream/${topic}/batch`)).ranges[0].until);
    const goingOn = job(topic, config.dataDir, { failOnDataLoss: false }, undefined, new ManualClock(Date.now()));
    await goingOn.ssc.start();
    try {
      await goingOn.ssc.awaitIdle();
      assert.deepEqual(goingOn.lost.map((e) => [e.where, e.from, e.until]), [['recorded-batch', 0, inFlightEnd], ['position', inFlightEnd, earliest]]);
      assert.equal(await position(topic), earliest, 'the batch in flight ended past the gap');
    } finally {
      await goingOn.ssc.stop();
    }
    const after = job(topic, config.dataDir, { failOnDataLoss: false }, undefined, new ManualClock(Date.now()));
    await after.ssc.start();
    try {
      assert.deepEqual(after.lost, [], 'reported by the start before');
    } finally {
      await after.ssc.stop();
    }
  });

  it('a replay after a restore whose ranges are gone fails the start, naming the batches', async () => {
    const topic = 'retention-replay';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    const first = job(topic, dataDir, {}, 1);
    await first.ssc.start();
    try {
      await until(() => listSnapshots(dataDir).length > 0, 60_000, 'a snapshot before the first record');
      await produceWithKcat(services.kafka.brokers, topic, lines(0, 100).map((value) => ({ value })), 0);
      await until(async () => (await position(topic)) === 100, 60_000, 'the position reaching 100');
      await first.ssc.awaitIdle();
    } finally {
      await first.ssc.stop();
    }
    const early = listSnapshots(dataDir).at(-1)!;
    for (const s of listSnapshots(dataDir)) if (s.batchTime !== early.batchTime) rmSync(s.path, { recursive: true });
    rmSync(partitionPath(dataDir, 0, 0), { recursive: true });
    await produceBeyondRetention(topic, 100);
    await refusedStart(job(topic, dataDir, {}, 1), (e: unknown) => e instanceof DataLossError && new RegExp(`${topic}\\[0\\] offsets 0–\\d+ \\(\\d+ records?\\) of batch \\d+, which a store restored from a snapshot must re-run`).test(e.message));
  });

  it('records deleted while a running job is behind fail the next batch, naming them', async () => {
    const topic = 'retention-running';
    await services.kafka.createTopic(topic, 1);
    const j = job(topic, join(tempDir(), 'data'), { maxRecordsPerBatch: 20 });
    const failed = new Promise<Error>((resolve) => j.ssc.on(BatchEvents.FAILED, (e) => resolve(e.error)));
    await j.ssc.start();
    try {
      await produceWithKcat(services.kafka.brokers, topic, lines(0, MANY).map((value) => ({ value })), 0);
      let timer: NodeJS.Timeout | undefined;
      const error = await Promise.race([failed, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no batch failed within 180 s')), 180_000)))]).finally(() => clearTimeout(timer));
      assert.ok(error instanceof DataLossError, String(error));
      assert.match(error.message, new RegExp(`${topic}\\[0\\] offsets \\d+–\\d+ \\(\\d+ records\\): deleted while the job was behind, before it fetched them`));
    } finally {
      await j.ssc.stop();
    }
  });

  it('with failOnDataLoss: false, records deleted while a running job is behind are reported, each once, and every record after them is counted', async () => {
    const topic = 'retention-running-on';
    await services.kafka.createTopic(topic, 1);
    // No batch runs until the clock moves: the consumer fetches two batches' worth and pauses.
    const clock = new ManualClock(Date.now());
    const j = job(topic, join(tempDir(), 'data'), { maxRecordsPerBatch: 5000, failOnDataLoss: false }, undefined, clock);
    const failures: Error[] = [];
    j.ssc.on(BatchEvents.FAILED, (e) => void failures.push(e.error));
    await j.ssc.start();
    try {
      const first = 800_000;
      await produceWithKcat(services.kafka.brokers, topic, lines(0, first).map((value) => ({ value })), 0);
      assert.ok((await low(topic)) > 20_000, 'retention overtook what the paused job fetched');
      // Batches run while the rest is written: the job meets the gap with retention still moving.
      const rest = produceWithKcat(services.kafka.brokers, topic, lines(first, MANY).map((value) => ({ value })), 0);
      const deadline = Date.now() + 150_000;
      while ((await position(topic)) !== MANY) {
        if (Date.now() > deadline) assert.fail(`the position did not reach ${MANY} within 150 s: ${await position(topic)}`);
        await clock.advance(100);
        await new Promise((r) => setTimeout(r, 10));
      }
      await rest;
      assert.deepEqual(failures, []);
      assert.ok(j.lost.length > 0, 'the job was overtaken');
      // Each gap once, in order, none overlapping: all found while running.
      for (const [i, gap] of j.lost.entries()) {
        assert.equal(gap.where, 'running');
        assert.ok(gap.from < gap.until && (i === 0 || j.lost[i - 1].until <= gap.from), JSON.stringify(j.lost));
      }
      // The counts hold every offset outside the gaps, once.
      assert.deepEqual(new Map([...j.counts.store().entries()].sort()), countsWithout(j.lost, MANY));
    } finally {
      await j.ssc.stop();
    }
  });

  it('with failOnDataLoss: false, the batch after a gap found while running is rebuilt after its failure without the gap, which is not reported again', async () => {
    const topic = 'retention-running-rebuilt';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    const end = 800_000;
    // No batch runs until the clock moves: the consumer fetches two batches' worth and pauses.
    const clock = new ManualClock(Date.now());
    let poisonAt: number | undefined;
    const first = job(topic, dataDir, { maxRecordsPerBatch: 5000, failOnDataLoss: false }, undefined, clock, () => poisonAt);
    const failed = new Promise<Error>((resolve) => first.ssc.on(BatchEvents.FAILED, (e) => resolve(e.error)));
    let gap: DataLostEvent;
    await first.ssc.start();
    try {
      await produceWithKcat(services.kafka.brokers, topic, lines(0, end).map((value) => ({ value })), 0);
      const earliest = await low(topic);
      assert.ok(earliest > 20_000, 'retention overtook what the paused job fetched');
      // The first record after the gap fails the batch that takes it.
      poisonAt = earliest + 10;
      let error: Error | undefined;
      void failed.then((e) => (error = e));
      const deadline = Date.now() + 150_000;
      while (!error) {
        if (Date.now() > deadline) assert.fail('no batch failed within 150 s');
        // The failed batch rejects the advance that ran it: the event says what failed.
        await clock.advance(100).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.match(error.message, /the word POISON cannot be counted/);
      assert.equal(first.lost.length, 1, JSON.stringify(first.lost));
      gap = first.lost[0];
      assert.equal(gap.where, 'running');
      assert.equal(gap.until, earliest);
    } finally {
      await first.ssc.stop();
    }
    // The failed batch is rebuilt from what it recorded: the records after the gap, not the gap.
    await resumesPastReported(topic, dataDir, end, gap);
  });

  it('with failOnDataLoss: false, a job stopped after a gap found while running and before the next batch: the next start does not report the gap again', async () => {
    const topic = 'retention-running-stopped';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    const end = 800_000;
    const clock = new ManualClock(Date.now());
    const first = job(topic, dataDir, { maxRecordsPerBatch: 5000, failOnDataLoss: false }, undefined, clock);
    let reported = false;
    first.ssc.on(BatchEvents.DATA_LOST, () => void (reported = true));
    await first.ssc.start();
    try {
      await produceWithKcat(services.kafka.brokers, topic, lines(0, end).map((value) => ({ value })), 0);
      assert.ok((await low(topic)) > 20_000, 'retention overtook what the paused job fetched');
      // Batches run until the fetch after the last records before the gap finds it; then the clock stands still.
      const deadline = Date.now() + 150_000;
      while (!reported) {
        if (Date.now() > deadline) assert.fail('no gap was reported within 150 s');
        await clock.advance(100);
        await new Promise((r) => setTimeout(r, 10));
      }
      await first.ssc.awaitIdle();
      assert.equal(first.lost.length, 1, JSON.stringify(first.lost));
    } finally {
      await first.ssc.stop();
    }
    await resumesPastReported(topic, dataDir, end, first.lost[0]);
  });
});
