import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { BatchEvents, OffsetStoreError, StateSpec, StreamingContext, type BatchCompletedEvent, type KafkaRecord } from '../../src/index.js';
import { watermarksOf } from '../../src/engine/sources/kafka-gaps.js';
import type { GateValue } from '../fixtures/gate.js';
import { fixture, tempDir } from '../helpers.js';
import { waitUntil } from '../wait.js';
import { useServices } from './services/suite.js';
import { connectClient, zkAnswer } from './services/zookeeper.js';

describe('the Kafka source: records, decoders, topics, starting offsets and backpressure (real ZooKeeper, librdkafka mock broker)', { timeout: 300_000 }, () => {
  const services = useServices();

  /** A context reading with kafkaStream(options) on the system clock; `root` names its ZooKeeper root and consumer group. */
  function kafkaContext<V>(root: string, options: Record<string, unknown>, extra: { dataDir?: string } = {}) {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: extra.dataDir ?? tempDir(), threads: 1 });
    const stream = ssc.kafkaStream<V>({
      brokers: services.kafka.brokers, groupId: `group-${root}`, groupSessionTimeoutMs: 6000,
      zookeeper: { connect: services.zk.connectString, root: `/statestream/test-${root}`, sessionTimeoutMs: 4000 },
      ...options,
    } as never);
    const seen: Array<KafkaRecord<V>> = [];
    stream.foreachBatch((records) => void seen.push(...records));
    return { ssc, stream, seen };
  }

  it('hands each message over as { topic, partition, offset, key, value, timestamp, headers }, from several topics, through a custom decoder; a tombstone comes with value null, the decoder not called for it', async () => {
    await services.kafka.createTopic('shape-a', 2);
    await services.kafka.createTopic('shape-b', 1);
    await services.producer.send({ topic: 'shape-a', messages: [{ key: 'k1', value: '{"n":1}', partition: 1, timestamp: '1700000000000', headers: { trace: 'abc', hop: Buffer.from('2') } }] });
    await services.producer.send({ topic: 'shape-b', messages: [{ key: null, value: '{"n":2}', partition: 0, timestamp: '1700000000001' }, { key: 'gone', value: null, partition: 0, timestamp: '1700000000002' }] });
    const decoder = (value: Buffer, where: { topic: string; partition: number; offset: string }) => ({ parsed: JSON.parse(value.toString('utf8')), where });
    const { ssc, seen } = kafkaContext<ReturnType<typeof decoder>>('shape', { topics: ['shape-a', 'shape-b'], decoder });
    await ssc.start();
    try {
      await waitUntil('the three messages', () => seen.length >= 3, { detail: () => JSON.stringify(seen) });
    } finally {
      await ssc.stop();
    }
    assert.deepEqual([...seen].sort((a, b) => a.topic.localeCompare(b.topic)), [
      {
        topic: 'shape-a', partition: 1, offset: '0', key: 'k1', timestamp: '1700000000000', headers: { trace: 'abc', hop: '2' },
        value: { parsed: { n: 1 }, where: { topic: 'shape-a', partition: 1, offset: '0' } },
      },
      {
        topic: 'shape-b', partition: 0, offset: '0', key: null, timestamp: '1700000000001', headers: {},
        value: { parsed: { n: 2 }, where: { topic: 'shape-b', partition: 0, offset: '0' } },
      },
      { topic: 'shape-b', partition: 0, offset: '1', key: 'gone', timestamp: '1700000000002', headers: {}, value: null },
    ]);
  });

  it("policy 'dead-letter' keeps the messages the decoder cannot read, each partition's apart, and the metrics count them; a tombstone decodes as null", async () => {
    await services.kafka.createTopic('undecodable', 2);
    await services.producer.send({
      topic: 'undecodable',
      messages: [{ value: 'not json', partition: 0 }, { value: '{"n":1}', partition: 0 }, { value: '{oops', partition: 0 }, { key: 'gone', value: null, partition: 0 }, { value: 'bad', partition: 1 }],
    });
    const { ssc, stream, seen } = kafkaContext<{ n: number } | null>('undecodable', { topic: 'undecodable', decoder: 'json', onDecodeFailure: 'dead-letter' });
    await ssc.start();
    try {
      await waitUntil('the two readable messages', () => seen.length >= 2 && stream.deadLetters().length >= 3, { detail: () => JSON.stringify(seen) });
      assert.deepEqual(seen.map((r) => r.value), [{ n: 1 }, null]);
      assert.deepEqual(stream.deadLetters().map((l) => [l.partition, l.offset]).sort(), [[0, 0], [0, 2], [1, 0]]);
      const [metric] = (await ssc.metricsRegistry.getSingleMetric('statestream_source_dead_letters_total')!.get()).values;
      assert.equal(metric?.value, 3);
    } finally {
      await ssc.stop();
    }
  });

  it("startingOffsets 'latest' skips what was there at the first start, and keeps that position when the job restarts before its first record; decoder 'buffer' hands over the bytes", async () => {
    await services.kafka.createTopic('latest', 1);
    await services.producer.send({ topic: 'latest', messages: [{ value: 'before-the-first-start' }] });
    const options = { topic: 'latest', startingOffsets: 'latest', decoder: 'buffer' };
    const dataDir = tempDir();
    const first = kafkaContext<Buffer>('latest', options, { dataDir });
    await first.ssc.start();
    await first.ssc.stop();
    assert.deepEqual(first.seen, []);

    await services.producer.send({ topic: 'latest', messages: [{ value: Buffer.from([0xff, 0x00, 0x41]) }] });
    const second = kafkaContext<Buffer>('latest', options, { dataDir });
    await second.ssc.start();
    try {
      await waitUntil('the message sent while the job was stopped', () => second.seen.length >= 1);
      await services.producer.send({ topic: 'latest', messages: [{ value: 'live' }] });
      await waitUntil('the message sent while it runs', () => second.seen.length >= 2);
    } finally {
      await second.ssc.stop();
    }
    assert.ok(second.seen.every((r) => Buffer.isBuffer(r.value)), 'values are Buffers');
    assert.deepEqual(second.seen.map((r) => [r.offset, [...r.value!]]), [['1', [0xff, 0x00, 0x41]], ['2', [...Buffer.from('live')]]]);
  });

  it("a partition with no stored position, of a topic the job already reads, starts at its beginning whatever startingOffsets says ('latest' would skip what it holds)", async () => {
    await services.kafka.createTopic('no-position', 2);
    const options = { topic: 'no-position', startingOffsets: 'latest', decoder: 'string' };
    const dataDir = tempDir();
    const first = kafkaContext<string>('no-position', options, { dataDir });
    await first.ssc.start();
    await first.ssc.stop();
    // Partition 1's position gone (as for a partition the topic gained while the job was stopped), and records written to it.
    const zk = await connectClient(services.zk.connectString);
    try {
      await zkAnswer((done) => zk.remove('/statestream/test-no-position/offsets/no-position/1', -1, (error) => done(error)));
    } finally {
      zk.close();
    }
    await services.producer.send({ topic: 'no-position', messages: [{ value: 'p1-a', partition: 1 }, { value: 'p1-b', partition: 1 }] });
    const second = kafkaContext<string>('no-position', options, { dataDir });
    await second.ssc.start();
    try {
      await waitUntil('the records of the partition without a position', () => second.seen.length >= 2);
    } finally {
      await second.ssc.stop();
    }
    assert.deepEqual(second.seen.map((r) => [r.partition, r.offset, r.value]), [[1, '0', 'p1-a'], [1, '1', 'p1-b']]);
  });

  it('backpressure: a partition holding two batches of records stops fetching, and batches queued behind a running one take nothing; then everything is counted once', async () => {
    await services.kafka.createTopic('pressure', 1);
    const send = (from: number, n: number) =>
      services.producer.send({ topic: 'pressure', messages: Array.from({ length: n }, (_, i) => ({ value: `m${from + i}` })) });
    await send(0, 40);
    const gate = tempDir();
    const { ssc, stream } = kafkaContext<string>('pressure', { topic: 'pressure', maxRecordsPerBatch: 5 });
    // The first record holds its batch at the gate, so the batches after it queue up.
    const counts = stream
      .map((r): [string, GateValue] => [r.value!, r.value === 'm0' ? { gate } : 1])
      .mapWithState(StateSpec.function<string, GateValue, number, [string, number]>(fixture('gate')).numPartitions(2));
    const completed: BatchCompletedEvent[] = [];
    ssc.on(BatchEvents.COMPLETED, (e) => void completed.push(e));
    await ssc.start();
    try {
      await waitUntil('the first batch to hold at the gate', () => ssc.state === 'running' && existsSync(join(gate, 'entered')));
      // Two batches took five records each (the second waits behind the first); the rest stays fetched.
      await waitUntil('the fetch buffer to settle at two batches or more', async () => {
        const before = stream.bufferedRecords;
        await sleep(300);
        return before >= 10 && stream.bufferedRecords === before;
      });
      const paused = stream.bufferedRecords;
      await send(40, 50);
      await sleep(1500);
      assert.equal(stream.bufferedRecords, paused, `a paused partition fetches nothing more (${paused} buffered)`);
      assert.ok(paused <= 30, `no more than the 40 first messages, less the 10 two batches took, are buffered: ${paused}`);

      writeFileSync(join(gate, 'open'), '');
      await waitUntil('all 90 messages to be counted', () => completed.reduce((n, e) => n + e.records, 0) >= 90, { detail: () => completed.map((e) => e.records).join(',') });
      // Batches that ran before the first fetch arrived took nothing: they come before the gate's.
      const all = completed.map((e) => e.records);
      const sizes = all.slice(all.findIndex((n) => n > 0));
      assert.deepEqual(sizes.slice(0, 2), [5, 5], `batches: ${all.join(',')}`);
      const queued = sizes.slice(2, sizes.findIndex((n, i) => i >= 2 && n > 0));
      assert.ok(queued.length >= 2 && queued.every((n) => n === 0), `batches generated while two were queued took nothing: ${sizes.join(',')}`);
      assert.ok(sizes.every((n) => n <= 5), `no batch took more than maxRecordsPerBatch: ${sizes.join(',')}`);
      const entries = [...counts.store().entries()];
      assert.equal(entries.length, 90);
      assert.ok(entries.every(([, n]) => n === 1), 'each message counted once');
    } finally {
      writeFileSync(join(gate, 'open'), '');
      await ssc.stop();
    }
  });

  it("reads a partition's watermarks from the broker, and names a partition the topic does not have instead of reading it as offset 0", async () => {
    await services.kafka.createTopic('watermarks', 1);
    await services.producer.send({ topic: 'watermarks', messages: [{ value: 'a' }, { value: 'b' }] });
    const admin = new Kafka({ brokers: services.kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      assert.deepEqual(await watermarksOf(admin, 'watermarks', 0), { low: 0, high: 2 });
      await assert.rejects(watermarksOf(admin, 'watermarks', 3), (e: unknown) => {
        assert.ok(e instanceof OffsetStoreError, String(e));
        assert.equal(e.message, 'the topic watermarks has no partition 3');
        return true;
      });
    } finally {
      await admin.disconnect();
    }
  });
});
