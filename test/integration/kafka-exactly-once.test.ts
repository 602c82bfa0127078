import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { SourceDeadLetterStore } from '../../src/storage/sources/dead-letters.js';
import { tempDir } from '../helpers.js';
import { testRandom } from '../random.js';
import { waitUntil, within } from '../wait.js';
import { useServices } from './services/suite.js';
import { fileURLToPath } from 'node:url';
import { ChildProcessLines, highWatermarks, JobProcess, readCounts, runUntilCaughtUp, startKafkaWordCount, tally, zkOffsets, type JobConfig } from './job-process.js';
import { produceWithKcat } from './services/kafka.js';
import { startZooKeeperProxy } from './services/zookeeper-proxy.js';

const PARTITIONS = 3;
/** Batches with records the job completed whose batch time is after `time` (batch times are the clock's). */
const batchesAfter = (job: JobProcess, time: number) => job.lines.filter((l) => l.startsWith('BATCH ') && Number(l.split(' ')[1]) > time);
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

  it('survives SIGKILL at random moments, mid-batch, after commit and during start-up: every count exact', async (t) => {
    const random = testRandom(t);
    const config = await freshJob();
    const produced: string[] = [];
    let producing = true;
    let round = 0;
    const production = (async () => {
      while (producing) {
        const batch = words(15, round++);
        await send(config.topic, batch);
        produced.push(...batch);
        await sleep(40);
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
      { name: 'random moment', killAfterMs: random.between(600, 2100) },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 3 } },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '120' } },
      { name: 'random moment', killAfterMs: random.between(300, 1800) },
    ];
    let kills = 0;
    try {
      for (const plan of plans) {
        const what = `${plan.name}${plan.killAfterMs === undefined ? '' : ` (${plan.killAfterMs} ms)`}; ${random.replay}`;
        // librdkafka's mock coordinator never evicts a member killed while its JoinGroup was
        // pending (a real broker does, after the session timeout), so each run joins a group
        // of its own; positions come from ZooKeeper either way.
        const job = new JobProcess({ ...config, ...plan.config, groupId: `${config.groupId}-run-${kills}` }, plan.env);
        if (plan.killAfterMs !== undefined) setTimeout(() => job.kill('SIGKILL'), plan.killAfterMs);
        const exit = await job.exit(`the job to die: ${what}`);
        assert.equal(exit.signal, 'SIGKILL', `${what}: ${JSON.stringify(exit)}\n${job.lines.join('\n')}`);
        if (plan.name === 'during start-up') assert.ok(!job.lines.includes('STARTED'), `${what}: killed before start() returned`);
        assert.ok(!job.lines.some((l) => l.startsWith('FAILED')), job.lines.join('\n'));
        kills++;
      }
    } finally {
      producing = false;
      await within(production, 'the producer loop to stop');
    }
    assert.equal(kills, plans.length);

    await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-final` }, PARTITIONS);
    const counts = await readCounts(config.dataDir, config.partitions);
    assert.deepEqual(counts, tally(produced), `after ${kills} kills, ${produced.length} messages; ${random.replay}`);
  });

  it('ZooKeeper going away (down, then its session expired) stops the job without writing; a new copy resumes, rides out a broker going down, and nothing is lost or counted twice', async () => {
    const config = await freshJob();
    // The job reaches ZooKeeper through a proxy, which can keep it away while the server runs.
    const proxy = await startZooKeeperProxy(services.zk.port);
    const produced: string[] = [];
    const produce = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const batch = words(10, produced.length + i);
        await send(config.topic, batch);
        produced.push(...batch);
        await sleep(30);
      }
    };
    const job = new JobProcess({ ...config, zookeeper: proxy.connectString });
    let next: JobProcess | undefined;
    try {
      await job.waitForLine(/^STARTED$/);
      await produce(10);
      await job.waitForLine(/^BATCH/, { from: 0 });
      const [first] = proxy.handshakes;
      assert.equal(first?.requested, '0', 'the job opened a session');

      await services.zk.stop();
      const down = Date.now();
      await produce(10); // the job's batches wait for ZooKeeper now
      // The server comes back, but the job cannot reach it for longer than its 4 s session:
      // the server expires the session, and with it the job's owner node.
      proxy.cut();
      await services.zk.start();
      await sleep(6000);
      // Batch times are the clock's: a batch that began after ZooKeeper stopped cannot end
      // before its ranges are recorded there.
      assert.deepEqual(batchesAfter(job, down), [], 'no batch with records ended while ZooKeeper was away');
      proxy.restore();
      // Back in touch, it learns its session expired: it lost the root, and stops loudly
      // rather than write positions another copy may own now.
      await job.waitForLine(/^FAILED .*ERR_OWNERSHIP_LOST/, { from: 0, timeoutMs: 60_000 });
      assert.ok(job.lines.some((l) => l.startsWith('OWNERSHIP_LOST ')), job.tail());
      await job.stop();
      assert.deepEqual(batchesAfter(job, down), [], 'it ended no batch after losing the root');

      next = new JobProcess(config);
      await next.waitForLine(/^STARTED$/);
      const back = Date.now();
      await produce(10);
      await waitUntil('a batch with records to end on the new copy', () => batchesAfter(next!, back).length > 0, { detail: () => next!.tail() });

      await services.kafka.brokerDown(1);
      await sleep(1500);
      await services.kafka.brokerUp(1);
      const up = Date.now();
      await produce(10);
      await waitUntil('a batch with records to end after the broker came back', () => batchesAfter(next!, up).length > 0, { detail: () => next!.tail() });
      await next.stop();
      assert.ok(!next.lines.some((l) => l.startsWith('FAILED')), next.lines.join('\n'));
    } finally {
      job.kill('SIGKILL');
      next?.kill('SIGKILL');
      await proxy.close();
    }

    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('stop() while ZooKeeper is away returns promptly, though a batch waits for it, and that batch is rebuilt at the next start', async () => {
    const config = await freshJob();
    const produced = words(60, 3);
    const job = new JobProcess(config);
    let zkDown = false;
    try {
      await job.waitForLine(/^STARTED$/);
      const sent = job.lines.length;
      await send(config.topic, produced.slice(0, 30));
      // All 30 counted, however many batches took them: the batch that waits below took its
      // records after ZooKeeper stopped (under load the 30 can span two batches, and the second
      // would still be open when ZooKeeper goes).
      const counted = () => job.lines.slice(sent).filter((l) => l.startsWith('BATCH ')).reduce((n, l) => n + Number(l.split(' ')[2]), 0);
      await waitUntil('the first 30 words counted', () => counted() >= 30, { detail: () => job.tail() });
      await services.zk.stop();
      zkDown = true;
      const down = job.lines.length;
      await send(config.topic, produced.slice(30));
      // A batch that took records begins, and cannot end: it waits to record its ranges.
      let waiting: { batchTime: string; since: number } | undefined;
      await waitUntil('a batch that began after ZooKeeper stopped to wait for it for a second', () => {
        const begun = job.lines.slice(down).filter((l) => l.startsWith('BEGIN ')).map((l) => l.split(' ')[1]);
        const open = begun.find((t) => !job.lines.some((l) => l.startsWith(`END ${t} `)));
        if (open !== waiting?.batchTime) waiting = open === undefined ? undefined : { batchTime: open, since: Date.now() };
        return waiting !== undefined && Date.now() - waiting.since > 1000;
      }, { detail: () => job.tail() });
      const stopping = Date.now();
      const exit = await job.stop('SIGTERM', 20_000);
      assert.equal(exit.code, 0, 'stop() did not wait for ZooKeeper');
      assert.ok(Date.now() - stopping < 20_000);
      assert.ok(!job.lines.some((l) => l.startsWith(`END ${waiting!.batchTime} `)), `batch ${waiting!.batchTime} never ended`);
    } finally {
      // The later tests need ZooKeeper whatever happened here.
      if (job.running) job.kill('SIGKILL');
      if (zkDown) await services.zk.start();
    }
    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('rebuilds a recorded batch larger than the new maxRecordsPerBatch allows to buffer; the partitions that committed it hand back the outputs they recorded', async () => {
    const config = await freshJob({ maxRecordsPerBatch: 200 });
    const produced = words(300, 5);
    await services.producer.send({ topic: config.topic, messages: produced.map((w) => ({ key: w, value: w, partition: 0 })) });
    // The first run dies with [0, 200) recorded in ZooKeeper and committed by the partitions,
    // after its outputs ran and before its end reached ZooKeeper.
    const first = new JobProcess({ ...config, dieAfterCommitOfBatch: 1, groupId: `${config.groupId}-1` });
    assert.equal((await first.exit('the job to die after its first batch committed')).signal, 'SIGKILL');
    const [committed] = first.lines.filter((l) => l.startsWith('OUTPUT '));
    assert.match(committed ?? '', /^OUTPUT \d+ 200 /, first.tail());
    const again = await runUntilCaughtUp({ ...config, maxRecordsPerBatch: 5, groupId: `${config.groupId}-2` }, PARTITIONS, 60_000);
    const batchTime = committed.split(' ')[1];
    assert.deepEqual(again.lines.filter((l) => l.startsWith(`OUTPUT ${batchTime} `)), [committed], 'the re-run batch emits exactly what it emitted before the crash');
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
      const injected = job.lines.length;
      await services.kafka.pushRequestErrors(1, Array(20).fill(29));
      const failed = await job.waitForLine(/^FAILED/, { from: injected, timeoutMs: 30_000 });
      assert.match(failed, /the Kafka consumer stopped and will not restart/);
    } finally {
      await services.kafka.clearRequestErrors(1);
      await job.stop('SIGKILL');
    }
    await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-after` }, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('the kafka-word-count example counts words typed with kcat, as the README shows', async () => {
    const config = await freshJob();
    const example = startKafkaWordCount({ brokers: services.kafka.brokers, topic: config.topic, zookeeper: services.zk.connectString, group: config.groupId, dataDir: config.dataDir, zkRoot: config.zkRoot });
    try {
      await produceWithKcat(services.kafka.brokers, config.topic, [{ value: 'AAAA BB AAAA' }, { value: 'CCC AAAA' }]);
      // The batch's words, then the line that closes the batch.
      await waitUntil('the example to print "Word AAAA, count 3" and close its batch', () => /Word AAAA, count 3\n(.*\n)*-+ batch .* -+/.test(example.output()), { detail: () => example.output() });
      assert.match(example.output(), /Word BB, count 1/);
      assert.match(example.output(), /Word CCC, count 1/);
    } finally {
      await within(example.stop(), 'the example to exit after SIGTERM');
    }
  });

  it("a message the decoder cannot read: policy 'stop' fails naming topic, partition and offset", async () => {
    const config = await freshJob({ decoder: 'json', onDecodeFailure: 'stop' });
    await services.producer.send({ topic: config.topic, messages: [{ key: 'k', value: '"fine"', partition: 1 }, { key: 'k', value: '{not json', partition: 1 }] });
    const job = new JobProcess(config);
    const failed = await job.waitForLine(/^FAILED/);
    await job.stop();
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

  it('two Kafka sources, killed after one recorded the end of a batch and before the other: the batch is not run again with one source\'s records missing', async () => {
    const topics = ['two-a', 'two-b'] as [string, string];
    for (const topic of topics) await services.kafka.createTopic(topic, 1);
    const config = JSON.stringify({
      brokers: services.kafka.brokers, zookeeper: services.zk.connectString, topics, roots: topics.map((t) => `/statestream/${t}`), dataDir: join(tempDir(), 'data'),
    });
    const script = fileURLToPath(new URL('./fixtures/two-kafka-job.js', import.meta.url));
    const killer = fileURLToPath(new URL('./fixtures/kill-between-sources.js', import.meta.url));
    const outputs = (job: ChildProcessLines) => job.lines.filter((l) => l.startsWith('OUTPUT ')).map((l) => l.split(' ', 4));

    const first = new ChildProcessLines(script, [config], { NODE_OPTIONS: `--import=${killer}` });
    await first.waitForLine(/^STARTED$/, { from: 0, timeoutMs: 60_000 });
    // Until one batch takes records from both topics.
    let round = 0;
    while (first.running && round < 100) {
      await Promise.all(topics.map((topic) => services.producer.send({ topic, messages: [{ value: `${topic}-${round}` }] })));
      round++;
      await sleep(300);
    }
    assert.equal((await first.exit('the job to be killed between the sources')).signal, 'SIGKILL');
    const killedAt = (await first.waitForLine(/^KILLED /, { from: 0 })).split(' ')[1];
    const ran = outputs(first).filter(([, , time]) => time === killedAt);
    assert.equal(ran.length, 3, `the batch's outputs ran before the kill: ${first.tail()}`);
    assert.ok(ran.every(([, , , records]) => records !== '[]'), `both sources took records in batch ${killedAt}: ${JSON.stringify(ran)}`);

    const second = new ChildProcessLines(script, [config]);
    try {
      await second.waitForLine(/^STARTED$/, { from: 0, timeoutMs: 60_000 });
      await services.producer.send({ topic: topics[0], messages: [{ value: 'after' }] });
      await second.waitForLine(/^OUTPUT counts \d+ \["after,1"\]$/, { from: 0, timeoutMs: 60_000 });
    } finally {
      await second.stop();
    }
    assert.deepEqual(await zkOffsets(services.zk.connectString, `/statestream/${topics[1]}`, topics[1], 1), await highWatermarks(services.kafka.brokers, topics[1]), 'the second source recorded the end of the batch it had in flight');
    // Outputs that ran whole may run again (at least once), but never with part of the batch's records.
    for (const [, name, time, records] of outputs(second).filter(([, , time]) => time === killedAt)) {
      assert.equal(records, ran.find(([, n]) => n === name)![3], `output ${name} of batch ${time} run again after the restart`);
    }
  });
});
