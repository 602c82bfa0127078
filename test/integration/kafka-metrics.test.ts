import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, type BatchCompletedEvent } from '../../src/index.js';
import { fixture, tempDir } from '../helpers.js';
import { eventually, within } from '../wait.js';
import { curl, sample, scrape, type Sample } from '../metrics/scrape.js';
import { highWatermarks } from './job-process.js';
import { useServices } from './services/suite.js';

describe('metrics of a Kafka job (real ZooKeeper, librdkafka mock broker)', { timeout: 180_000 }, () => {
  const services = useServices();

  it('while the job starts, before its source has a ZooKeeper session, neither /metrics nor the page report ZooKeeper as unreachable', async () => {
    const topic = 'metrics-starting';
    await services.kafka.createTopic(topic, 1);
    const connect = services.zk.connectString;
    const ssc = new StreamingContext({ batchIntervalMs: 1000, clock: new ManualClock(Date.now()), dataDir: tempDir(), threads: 1, appName: 'kafka-starting', metrics: { port: 0 }, ui: { port: 0 } });
    ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: 'starting-group', zookeeper: { connect, root: '/statestream/kafka-starting' } })
      .map((r): [string, number] => [r.value ?? '', 1])
      // Its module takes 1.5 s to load: the start checks it on the workers before it opens the source.
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('slow-import')).numPartitions(1));
    const starting = ssc.start();
    try {
      const urls = await eventually('the servers to listen', () => (ssc.endpoints().metrics && ssc.endpoints().ui ? ssc.endpoints() : undefined), { intervalMs: 10 });
      const samples = await scrape(urls.metrics!);
      const status = JSON.parse(await curl(`${urls.ui}api/status`)) as { problems: string[]; kafka: Array<{ zookeeper: { opened: boolean } }> };
      assert.equal(ssc.state, 'starting', 'both were read while the job was starting');
      assert.equal(samples.filter((s) => s.name === 'statestream_zookeeper_connected').length, 0);
      assert.equal(status.kafka[0].zookeeper.opened, false);
      assert.deepEqual(status.problems.filter((p) => /ZooKeeper/.test(p)), []);
      await starting;
      const started = await scrape(urls.metrics!);
      assert.equal(sample(started, 'statestream_zookeeper_connected', { app: 'kafka-starting', connect }), 1);
    } finally {
      await starting.catch(() => undefined);
      await ssc.stop();
    }
  });

  it('two Kafka sources reading one topic through one ZooKeeper each have their own lag, next offset and ZooKeeper series', async () => {
    const topic = 'metrics-two-sources';
    await services.kafka.createTopic(topic, 1);
    await services.producer.send({ topic, messages: Array.from({ length: 30 }, (_, i) => ({ value: `w${i % 3}`, partition: 0 })) });
    const connect = services.zk.connectString;
    const ssc = new StreamingContext({ batchIntervalMs: 1000, clock: new ManualClock(Date.now()), dataDir: tempDir(), threads: 1, appName: 'kafka-two-sources', metrics: { port: 0 } });
    for (const name of ['first', 'second']) {
      ssc
        .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `two-sources-${name}`, zookeeper: { connect, root: `/statestream/two-sources-${name}` } })
        .map((r): [string, number] => [r.value ?? '', 1])
        .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(1));
    }
    await ssc.start();
    try {
      const samples = await eventually('both sources\' lag in /metrics', async () => {
        const all = await scrape(ssc.endpoints().metrics!);
        return all.filter((x) => x.name === 'statestream_kafka_lag_records').length >= 2 ? all : undefined;
      });
      const series = (name: string) => samples.filter((x) => x.name === name && x.labels.app === 'kafka-two-sources');
      for (const name of ['statestream_kafka_lag_records', 'statestream_kafka_next_offset', 'statestream_zookeeper_connected']) {
        const sources = series(name).map((x) => x.labels.source);
        assert.equal(new Set(sources).size, 2, `${name}: a series per source, got ${JSON.stringify(series(name))}`);
      }
      assert.deepEqual(series('statestream_kafka_lag_records').map((x) => x.value), [30, 30]);
      assert.deepEqual(series('statestream_zookeeper_connected').map((x) => [x.labels.connect, x.value]), [[connect, 1], [connect, 1]]);
    } finally {
      await ssc.stop();
    }
  });

  it('curl of /metrics shows lag per topic-partition and the positions the batch events account for, and ZooKeeper going away', async () => {
    const topic = 'metrics-words';
    await services.kafka.createTopic(topic, 2);
    for (const partition of [0, 1]) {
      await services.producer.send({ topic, messages: Array.from({ length: 50 }, (_, i) => ({ value: `w${i % 7}`, partition })) });
    }
    const high = await highWatermarks(services.kafka.brokers, topic);
    assert.deepEqual(high, [50, 50]);

    // A manual clock: nothing moves between two advances, so one scrape can be checked against the events before it.
    const clock = new ManualClock(Date.now());
    const ssc = new StreamingContext({ batchIntervalMs: 1000, clock, dataDir: tempDir(), threads: 2, appName: 'kafka-metrics', metrics: { port: 0 } });
    // An output that batch 2 waits in until the test lets it go: the batch has taken its records and not ended.
    let held: { entered: () => void; release: Promise<void> } | undefined;
    ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: 'metrics-group', zookeeper: { connect: services.zk.connectString, root: '/statestream/kafka-metrics', sessionTimeoutMs: 4000 }, maxRecordsPerBatch: 20, groupSessionTimeoutMs: 6000 })
      .map((r): [string, number] => [r.value ?? '', 1])
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2))
      .foreachBatch(async () => {
        if (!held) return;
        held.entered();
        await held.release;
      });
    const completed: BatchCompletedEvent[] = [];
    ssc.on(BatchEvents.COMPLETED, (e) => void completed.push(e));
    await ssc.start();
    const url = ssc.endpoints().metrics!;
    try {
      const app = { app: 'kafka-metrics' };
      const lagOf = (samples: Sample[], partition: number) => sample(samples, 'statestream_kafka_lag_records', { ...app, topic, partition: String(partition) });
      const nextOf = (samples: Sample[], partition: number) => sample(samples, 'statestream_kafka_next_offset', { ...app, topic, partition: String(partition) });

      // Before any batch: the whole topic is lag.
      const first = await eventually('the broker\'s log-end offsets in /metrics', async () => {
        const samples = await scrape(url);
        return samples.some((s) => s.name === 'statestream_kafka_lag_records') ? samples : undefined;
      });
      assert.deepEqual([lagOf(first, 0), lagOf(first, 1)], [50, 50]);
      assert.equal(sample(first, 'statestream_zookeeper_connected', { ...app, connect: services.zk.connectString }), 1);

      // Batches of at most 20 per partition; each one moves next offset and lag by what its event counted.
      for (let batch = 1; batch <= 4; batch++) {
        // Wait until the consumer has fetched what the batch may take, so the batch takes its full share.
        await new Promise((resolve) => setTimeout(resolve, batch === 1 ? 3000 : 200));
        if (batch === 2) {
          // While the batch runs, its records are not yet done: next offset stays where the last ended batch left it.
          let release!: () => void;
          const entered = new Promise<void>((resolve) => (held = { entered: resolve, release: new Promise<void>((r) => (release = r)) }));
          const running = clock.advance(1000);
          await within(entered, 'batch 2 in its output');
          const during = await scrape(url);
          const ended = completed.reduce((n, e) => n + e.records, 0);
          assert.equal(nextOf(during, 0) + nextOf(during, 1), ended, 'next offset counts the ended batches only');
          held = undefined;
          release();
          await within(running, 'batch 2');
        } else await within(clock.advance(1000), `batch ${batch}`);
        const samples = await scrape(url);
        const taken = completed.reduce((n, e) => n + e.records, 0);
        const next = [nextOf(samples, 0), nextOf(samples, 1)];
        assert.equal(next[0] + next[1], taken, `batch ${batch}: the positions account for every record the events counted`);
        assert.deepEqual([lagOf(samples, 0), lagOf(samples, 1)], [high[0] - next[0], high[1] - next[1]], `batch ${batch}: lag = log end − next offset`);
        assert.equal(sample(samples, 'statestream_records_total', app), taken);
        assert.equal(sample(samples, 'statestream_batch_processing_seconds_count', app), completed.length);
        assert.ok(next.every((n) => n <= 20 * batch), `at most maxRecordsPerBatch per partition per batch: ${next}`);
      }
      const settled = await scrape(url);
      assert.deepEqual([lagOf(settled, 0), lagOf(settled, 1)], [0, 0], 'the job caught up with the topic');
      assert.equal(sample(settled, 'statestream_records_total', app), 100);
      const keys = settled.filter((s) => s.name === 'statestream_state_keys').reduce((n, s) => n + s.value, 0);
      assert.equal(keys, 7, 'w0…w6');

      // ZooKeeper away: the gauge says so at the next scrape, and again when it is back.
      await services.zk.stop();
      await eventually('statestream_zookeeper_connected 0', async () => (sample(await scrape(url), 'statestream_zookeeper_connected', app) === 0 ? true : undefined));
      await services.zk.start();
      // The session reconnects when it next has a request to send: a batch asks.
      const advancing = clock.advance(1000);
      await eventually('statestream_zookeeper_connected 1 again', async () => (sample(await scrape(url), 'statestream_zookeeper_connected', app) === 1 ? true : undefined), { timeoutMs: 60_000 });
      await within(advancing, 'the batch that waited for ZooKeeper');
    } finally {
      await ssc.stop();
    }
    await assert.rejects(curl(url), 'stop() closed the metrics server');
  });
});
