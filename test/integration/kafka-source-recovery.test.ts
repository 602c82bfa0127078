import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SourceDeadLetterStore } from '../../src/storage/sources/dead-letters.js';
import { fixture, tempDir } from '../helpers.js';
import { BatchEvents, StateSpec, StreamingContext } from '../../src/index.js';
import { ZooKeeperSession } from '../../src/storage/zookeeper/session.js';
import { ownedOffsetStore } from '../storage/zookeeper/owned-store.js';
import { nextEvent, waitUntil, within } from '../wait.js';
import { useServices } from './services/suite.js';
import { fileURLToPath } from 'node:url';
import { ChildProcessLines, highWatermarks, JobProcess, jobConfigs, PARTITIONS, readCounts, runUntilCaughtUp, startKafkaWordCount, tally, words, zkOffsets } from './job-process.js';
import { produceWithKcat } from './services/kafka.js';

describe('Kafka source with ZooKeeper offsets: a batch rebuilt, a consumer that will not restart, bad messages, two sources (real ZooKeeper, librdkafka mock broker)', { timeout: 600_000 }, () => {
  const services = useServices();
  const freshJob = jobConfigs(services, 'words');

  it('rebuilds a recorded batch larger than the new maxRecordsPerBatch allows to buffer; the partitions that committed it hand back the outputs they recorded', async () => {
    const config = await freshJob({ maxRecordsPerBatch: 200 });
    const produced = words(300, 5);
    await services.producer.send({ topic: config.topic, messages: produced.map((w) => ({ key: w, value: w, partition: 0 })) });
    // The first run dies with a range from offset 0 recorded in ZooKeeper and committed by the
    // partitions, after its outputs ran and before its end reached ZooKeeper: 200 records, or as
    // many as its consumer had fetched when the batch fell due, more than 5 all the same.
    const first = new JobProcess({ ...config, dieAfterCommitOfBatch: 1, groupId: `${config.groupId}-1` });
    assert.equal((await first.exit('the job to die after its first batch committed')).signal, 'SIGKILL');
    const [committed] = first.lines.filter((l) => l.startsWith('OUTPUT '));
    const records = Number(/^OUTPUT \d+ (\d+) /.exec(committed ?? '')?.[1]);
    assert.ok(records > 5 && records <= 200, `the first batch took more records than the next run's maxRecordsPerBatch of 5, at most 200: ${first.tail()}`);
    const again = await runUntilCaughtUp({ ...config, maxRecordsPerBatch: 5, groupId: `${config.groupId}-2` }, PARTITIONS, 60_000);
    const batchTime = committed.split(' ')[1];
    assert.deepEqual(again.lines.filter((l) => l.startsWith(`OUTPUT ${batchTime} `)), [committed], 'the re-run batch emits exactly what it emitted before the crash');
    // batch.completed says what the batch was: rebuilt at start, its records taken from the range recorded for it.
    const ends = again.lines.filter((l) => l.startsWith(`END ${batchTime} `));
    assert.equal(ends.length, 1, ends.join('\n'));
    assert.match(ends[0], / in-flight$/);
    assert.ok(again.lines.some((l) => / live$/.test(l) && l.startsWith('END ')), 'the batches after it are live');
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

  it('a batch in flight whose records a consumer that will not restart cannot fetch fails with that, at once, not after the wait for its records', async () => {
    const config = await freshJob();
    await services.producer.send({ topic: config.topic, messages: words(10, 3).map((w) => ({ key: w, value: w, partition: 0 })) });
    // As if the job had died with partition 0's ten records in flight.
    const session = new ZooKeeperSession({ connect: services.zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, config.zkRoot);
      await offsets.init(Array.from({ length: PARTITIONS }, (_, partition) => ({ topic: config.topic, partition })));
      await offsets.recordBatchStart({ batchTime: Date.now(), ranges: [{ topic: config.topic, partition: 0, from: 0, until: 10 }] });
      await offsets.release();
    } finally {
      session.close();
    }
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: config.dataDir, threads: 1, appName: config.topic });
    ssc
      .kafkaStream({ brokers: config.brokers, topic: config.topic, groupId: config.groupId, zookeeper: { connect: config.zookeeper, root: config.zkRoot }, groupSessionTimeoutMs: 6000 })
      .map((r): [string, number] => [r.value as string, 1])
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2));
    // 29: TOPIC_AUTHORIZATION_FAILED, which kafkajs does not retry.
    await services.kafka.pushRequestErrors(1, Array(20).fill(29));
    try {
      // The rebuild waits up to 5 minutes for a range still to come; a consumer gone for good brings none.
      const failed = nextEvent(ssc, BatchEvents.FAILED, 'the rebuilt batch to fail', { timeoutMs: 60_000 });
      await ssc.start();
      const { error } = await failed;
      assert.match(error.message, /the Kafka consumer stopped and will not restart/);
    } finally {
      await services.kafka.clearRequestErrors(1);
      await ssc.stop();
    }
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

    const second = new ChildProcessLines(script, [JSON.stringify({ ...JSON.parse(config), run: 2 })]);
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
