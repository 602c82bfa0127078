import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { SourceDeadLetterStore } from '../../src/storage/sources/dead-letters.js';
import { tempDir } from '../helpers.js';
import { useServices } from './services/suite.js';
import { highWatermarks, JobProcess, readCounts, runUntilCaughtUp, startKafkaWordCount, tally, zkOffsets, type JobConfig } from './job-process.js';
import { produceWithKcat } from './services/kafka.js';

const PARTITIONS = 3;
const words = (n: number, seed: number) => Array.from({ length: n }, (_, i) => `w${(i * 7 + seed) % 23}`);

describe('Kafka source with ZooKeeper offsets (real ZooKeeper, librdkafka mock broker)', { timeout: 600_000 }, () => {
  const services = useServices();
  let topics = 0;


  async function freshJob(overrides: Partial<JobConfig> = {}): Promise<JobConfig> {
    const topic = `words-${++topics}`;
    await services.kafka.createTopic(topic, PARTITIONS);
    return {
      brokers: services.kafka.brokers, topic, zookeeper: services.zk.connectString, zkRoot: `/statestream/test-${topic}`, dataDir: join(tempDir(), 'data'),
      groupId: `group-${topic}`, batchMs: 150, partitions: 4, maxRecordsPerBatch: 50, ...overrides,
    };
  }

  const send = (topic: string, batch: string[]) => services.producer.send({ topic, messages: batch.map((w) => ({ key: w, value: w })) });

  it('counts words produced by kcat across partitions exactly, and leaves the offsets at the end of the topic', async () => {
    const config = await freshJob();
    const input = words(400, 1);
    await produceWithKcat(services.kafka.brokers, config.topic, input.map((w) => ({ key: w, value: w })));
    const end = await highWatermarks(services.kafka.brokers, config.topic);
    assert.equal(end.reduce((a, b) => a + b, 0), 400);
    assert.ok(end.filter((n) => n > 0).length > 1, 'the words spread over several partitions');

    const job = await runUntilCaughtUp(config, PARTITIONS);
    const sizes = job.lines.filter((l) => l.startsWith('BATCH')).map((l) => Number(l.split(' ')[2]));
    assert.ok(sizes.length >= 3, 'maxRecordsPerBatch split the backlog into several batches');
    assert.ok(Math.max(...sizes) <= PARTITIONS * config.maxRecordsPerBatch, `no batch takes more than maxRecordsPerBatch per partition: ${sizes.join(',')}`);
    assert.equal(sizes.reduce((a, b) => a + b, 0), 400);
    assert.deepEqual(await zkOffsets(services.zk.connectString, config.zkRoot, config.topic, PARTITIONS), end);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(input));

    const admin = new Kafka({ brokers: services.kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const [group] = await admin.fetchOffsets({ groupId: config.groupId, topics: [config.topic] });
    await admin.disconnect();
    assert.deepEqual(group.partitions.sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset)), end, 'the consumer group shows the same progress');
  });

  it('survives SIGKILL at random moments, mid-batch, after commit and during start-up: every count exact', async () => {
    const config = await freshJob();
    const produced: string[] = [];
    let producing = true;
    let round = 0;
    const production = (async () => {
      while (producing) {
        const batch = words(15, round++);
        await send(config.topic, batch);
        produced.push(...batch);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();

    const plans: Array<{ name: string; env?: Record<string, string>; config?: Partial<JobConfig>; killAfterMs?: number }> = [
      { name: 'random moment', killAfterMs: 900 },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '40' } },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 2 } },
      { name: 'during start-up', killAfterMs: 150 },
      { name: 'random moment', killAfterMs: 1400 },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '7' } },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 1 } },
      { name: 'during start-up', killAfterMs: 400 },
      { name: 'random moment', killAfterMs: 600 + Math.floor(Math.random() * 1500) },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 3 } },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '120' } },
      { name: 'random moment', killAfterMs: 300 + Math.floor(Math.random() * 1500) },
    ];
    let kills = 0;
    for (const plan of plans) {
      // librdkafka's mock coordinator never evicts a member killed while its JoinGroup was
      // pending (a real broker does, after the session timeout), so each run joins a group
      // of its own; positions come from ZooKeeper either way.
      const job = new JobProcess({ ...config, ...plan.config, groupId: `${config.groupId}-run-${kills}` }, plan.env);
      if (plan.killAfterMs !== undefined) setTimeout(() => job.kill('SIGKILL'), plan.killAfterMs);
      const exit = await Promise.race([job.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 60_000))]);
      assert.notEqual(exit, 'timeout', `${plan.name}: the job should have died; output:\n${job.lines.slice(-10).join('\n')}`);
      assert.equal((exit as { signal: string | null }).signal, "SIGKILL", `${plan.name}: ${JSON.stringify(exit)}\n${job.lines.join("\n")}`);
      assert.ok(!job.lines.some((l) => l.startsWith('FAILED')), job.lines.join('\n'));
      kills++;
    }
    producing = false;
    await production;
    assert.equal(kills, plans.length);

    await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-final` }, PARTITIONS);
    const counts = await readCounts(config.dataDir, config.partitions);
    assert.deepEqual(counts, tally(produced), `after ${kills} kills, ${produced.length} messages`);
  });

  it('ZooKeeper and a broker going down and up mid-stream pause the stream; nothing is lost or counted twice', async () => {
    const config = await freshJob();
    const produced: string[] = [];
    const job = new JobProcess(config);
    await job.waitForLine(/^STARTED$/);
    const produce = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const batch = words(10, produced.length + i);
        await send(config.topic, batch);
        produced.push(...batch);
        await new Promise((r) => setTimeout(r, 30));
      }
    };
    await produce(10);
    await services.zk.stop();
    await produce(10); // the job's batches wait for ZooKeeper now
    // Longer than the job's 4 s ZooKeeper session: it comes back to an expired session.
    await new Promise((r) => setTimeout(r, 5000));
    await services.zk.start();
    await produce(10);
    await job.waitForLine(/^BATCH/);
    await services.kafka.brokerDown(1);
    await new Promise((r) => setTimeout(r, 1500));
    await services.kafka.brokerUp(1);
    await produce(10);
    job.kill('SIGTERM');
    await job.exited;
    assert.ok(!job.lines.some((l) => l.startsWith('FAILED')), job.lines.join('\n'));

    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('stop() while ZooKeeper is away returns promptly, and the batch it left is replayed at the next start', async () => {
    const config = await freshJob();
    const produced = words(60, 3);
    const job = new JobProcess(config);
    await job.waitForLine(/^STARTED$/);
    await send(config.topic, produced.slice(0, 30));
    await job.waitForLine(/^BATCH/);
    await services.zk.stop();
    await send(config.topic, produced.slice(30));
    await new Promise((r) => setTimeout(r, 1000)); // a batch now waits to record its ranges
    const stopping = Date.now();
    job.kill('SIGTERM');
    const exit = await Promise.race([job.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    assert.notEqual(exit, 'hung', `stop() waited for ZooKeeper; output:\n${job.lines.slice(-10).join('\n')}`);
    assert.ok(Date.now() - stopping < 20_000);
    await services.zk.start();
    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('rebuilds a recorded batch larger than the new maxRecordsPerBatch allows to buffer', async () => {
    const config = await freshJob({ maxRecordsPerBatch: 200 });
    const produced = words(300, 5);
    await services.producer.send({ topic: config.topic, messages: produced.map((w) => ({ key: w, value: w, partition: 0 })) });
    // The first run dies with [0, 200) recorded in ZooKeeper and committed by the partitions.
    const first = new JobProcess({ ...config, dieAfterCommitOfBatch: 1, groupId: `${config.groupId}-1` });
    assert.equal((await first.exited).signal, 'SIGKILL');
    await runUntilCaughtUp({ ...config, maxRecordsPerBatch: 5, groupId: `${config.groupId}-2` }, PARTITIONS, 60_000);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('a Kafka consumer that will not restart fails the job loudly instead of going quiet', async () => {
    const config = await freshJob({ maxRecordsPerBatch: 20 });
    const produced = words(100, 9);
    await services.producer.send({ topic: config.topic, messages: produced.map((w) => ({ key: w, value: w, partition: 0 })) });
    const job = new JobProcess(config);
    try {
      await job.waitForLine(/^BATCH/);
      // 29: TOPIC_AUTHORIZATION_FAILED, which kafkajs does not retry.
      await services.kafka.pushRequestErrors(1, Array(20).fill(29));
      const failed = await job.waitForLine(/^FAILED/, 30_000);
      assert.match(failed, /the Kafka consumer stopped and will not restart/);
    } finally {
      await services.kafka.clearRequestErrors(1);
      job.kill('SIGKILL');
      await job.exited;
    }
    await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-after` }, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('the kafka-word-count example counts words typed with kcat, as the README shows', async () => {
    const config = await freshJob();
    const example = startKafkaWordCount({ brokers: services.kafka.brokers, topic: config.topic, zookeeper: services.zk.connectString, group: config.groupId, dataDir: config.dataDir, zkRoot: config.zkRoot });
    try {
      await produceWithKcat(services.kafka.brokers, config.topic, [{ value: 'AAAA BB AAAA' }, { value: 'CCC AAAA' }]);
      const deadline = Date.now() + 60_000;
      while (!/Word AAAA, count 3/.test(example.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.match(example.output(), /Word AAAA, count 3/);
      assert.match(example.output(), /Word BB, count 1/);
      assert.match(example.output(), /-+ batch .* -+/);
    } finally {
      await example.stop();
    }
  });

  it("a message the decoder cannot read: policy 'stop' fails naming topic, partition and offset", async () => {
    const config = await freshJob({ decoder: 'json', onDecodeFailure: 'stop' });
    await services.producer.send({ topic: config.topic, messages: [{ key: 'k', value: '"fine"', partition: 1 }, { key: 'k', value: '{not json', partition: 1 }] });
    const job = new JobProcess(config);
    const failed = await job.waitForLine(/^FAILED/);
    job.kill('SIGTERM');
    await job.exited;
    const error = JSON.parse(failed.slice('FAILED '.length)) as { code: string; message: string };
    assert.equal(error.code, 'ERR_SOURCE_RECORD');
    assert.match(error.message, new RegExp(`cannot decode the message at ${config.topic}\\[1\\] offset 1 `));
    assert.equal((await readCounts(config.dataDir, config.partitions)).size, 0, 'the batch with the bad message committed nothing');
  });

  it("a message the decoder cannot read: policy 'dead-letter' keeps it and the rest is counted", async () => {
    const config = await freshJob({ decoder: 'json', onDecodeFailure: 'dead-letter' });
    await services.producer.send({ topic: config.topic, messages: [{ key: 'k', value: '"fine"', partition: 2 }, { key: 'k', value: '{not json', partition: 2 }, { key: 'k', value: '"fine"', partition: 2 }] });
    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), new Map([['fine', 2]]));
    const store = new SourceDeadLetterStore(config.dataDir, 0);
    const letters = store.list();
    store.close();
    assert.equal(letters.length, 1);
    assert.deepEqual([letters[0].topic, letters[0].partition, letters[0].offset], [config.topic, 2, 1]);
    assert.equal(letters[0].value?.toString(), '{not json');
    assert.match(letters[0].error.message, /JSON/);
  });
});
