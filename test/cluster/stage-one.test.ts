import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { StageOneWriter } from '../../src/cluster/stage-one.js';
import { BatchRun } from '../../src/engine/batch.js';
import { ManualClock } from '../../src/engine/clock.js';
import type { KafkaRecord } from '../../src/engine/sources/kafka.js';
import { StreamingContext } from '../../src/engine/streaming-context.js';
import { InvalidRecordError } from '../../src/errors.js';
import { tempDir } from '../helpers.js';

/**
 * Stage one checks each pair as the single-process router does, before anything is
 * produced: the producer here is kafkajs's own, never connected, so a check that came
 * after the send would fail with kafkajs's "producer is disconnected" instead.
 */
describe("a cluster's stage one", () => {
  const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0) });
  after(() => ssc.stop());
  const input = ssc.queueStream<string>();
  const producer = new Kafka({ clientId: 'stage-one-test', brokers: ['127.0.0.1:9'], logLevel: logLevel.NOTHING }).producer();
  const records = (words: string[]): Array<KafkaRecord<unknown>> =>
    words.map((value, i) => ({ topic: 'lines', partition: 0, offset: String(i), key: null, value, timestamp: '0', headers: {} }));
  const writeBatch = (pairs: ReturnType<typeof input.map<unknown>>, words: string[]) =>
    new StageOneWriter(producer, [{ stream: { stateIndex: 0, numPartitions: 4, parentStream: pairs }, topic: 'app-repartition-0' }])
      .write(new BatchRun(1000, new Map([[input.id, [words]]])), records(words));

  it('refuses a value MessagePack cannot carry, naming the record, its key and the path in the value', async () => {
    const pairs = input.map<unknown>((w) => [w, w === 'bad' ? { count: 1, compute: () => 1 } : 1]);
    await assert.rejects(writeBatch(pairs, ['a', 'b', 'bad', 'c']), (error: unknown) => {
      assert.ok(error instanceof InvalidRecordError, String(error));
      assert.match(error.message, /^record 2 of batch 1000 \(key "bad", mapWithState stream 0\) cannot be sent to its partition: its value\.compute is a function/);
      return true;
    });
  });

  it('resolves only once its pairs are sent: a send that fails fails the write (here kafkajs refuses a producer never connected)', async () => {
    const pairs = input.map<unknown>((w) => [w, 1]);
    await assert.rejects(writeBatch(pairs, ['a', 'b']), (error: unknown) => {
      assert.ok(!(error instanceof InvalidRecordError), String(error));
      assert.match((error as Error).message, /producer is disconnected/);
      return true;
    });
  });

  it('refuses a record that is not a [key, value] pair, naming it', async () => {
    const pairs = input.map<unknown>((w) => (w === 'lone' ? w : [w, 1]));
    await assert.rejects(writeBatch(pairs, ['a', 'lone']), (error: unknown) => {
      assert.ok(error instanceof InvalidRecordError, String(error));
      assert.equal(error.message, 'mapWithState expects [key, value] pairs; record 1 of batch 1000 is "lone"');
      return true;
    });
  });
});
