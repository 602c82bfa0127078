import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { OffsetStoreError } from '../../src/index.js';
import { InterruptibleKafka } from '../../src/engine/sources/kafka-client.js';
import { within } from '../wait.js';

// kafkajs is CommonJS: its error classes are not among the names Node finds for ESM.
const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded } = kafkajs;

describe('InterruptibleKafka: the waits of a Kafka start', () => {
  const client = () => new InterruptibleKafka({ clientId: 'test', brokers: ['127.0.0.1:1', '127.0.0.1:2'] });

  it('a connection kafkajs gave up on is an OffsetStoreError naming the brokers and the step, with kafkajs\'s error as its cause', async () => {
    const gaveUp = new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1'), { retryCount: 30, retryTime: 5000 });
    await assert.rejects(client().step(() => Promise.reject(gaveUp), 'connecting'), (error: unknown) => {
      assert.ok(error instanceof OffsetStoreError, String(error));
      assert.equal(error.message, 'Kafka brokers 127.0.0.1:1,127.0.0.1:2: gave up connecting after 30 retries: Connection error: connect ECONNREFUSED 127.0.0.1:1');
      assert.deepEqual(error.context, { brokers: '127.0.0.1:1,127.0.0.1:2', step: 'connecting' });
      assert.equal(error.cause, gaveUp);
      return true;
    });
  });

  it('other errors pass as they are, and values as they come', async () => {
    const other = new Error('This server does not host this topic-partition');
    await assert.rejects(client().step(() => Promise.reject(other), 'subscribing'), (error: unknown) => error === other);
    assert.equal(await client().step(() => Promise.resolve(42), 'connecting'), 42);
  });

  it('an interrupt ends a wait at once, and one made before a step begins no work', async () => {
    const kafka = client();
    const waiting = kafka.step(() => new Promise<never>(() => undefined), 'connecting the consumer');
    kafka.interrupt();
    await assert.rejects(waiting, (error: unknown) => error instanceof OffsetStoreError && error.message === 'Kafka brokers 127.0.0.1:1,127.0.0.1:2: interrupted while connecting the consumer');
    let began = false;
    await assert.rejects(kafka.step(async () => void (began = true), 'subscribing'), /interrupted while subscribing/);
    assert.equal(began, false);
  });

  it('a step whose work failed as the interrupt came reports the interrupt, not the failure', async () => {
    const kafka = client();
    const failing = kafka.step(() => Promise.reject(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:1')), 'connecting the admin');
    kafka.interrupt();
    await assert.rejects(failing, (error: unknown) => error instanceof OffsetStoreError && error.message === 'Kafka brokers 127.0.0.1:1,127.0.0.1:2: interrupted while connecting the admin');
  });

  it("after an interrupt, kafkajs's own retrying of brokers that refuse ends at once instead of in about two minutes", async () => {
    const kafka = client();
    kafka.interrupt();
    const admin = kafka.kafka.admin();
    await assert.rejects(within(admin.connect(), 'the connection of an interrupted client to fail', { timeoutMs: 10_000 }), (error: unknown) => (error as Error).name === 'KafkaJSNonRetriableError' && /brokers array is empty/.test((error as Error).message));
    await admin.disconnect();
  });

  it('once the start is over, an interrupt changes nothing: a stop draining its batches may still need the brokers', async () => {
    const kafka = client();
    kafka.startDone();
    kafka.interrupt();
    assert.equal(await kafka.step(() => Promise.resolve('answered'), 'reading the offsets of topic t'), 'answered');
  });
});
