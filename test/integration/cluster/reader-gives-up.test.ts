import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { PartitionReader } from '../../../src/cluster/partition-reader.js';
import { OffsetStoreError } from '../../../src/errors.js';
import { waitUntil } from '../../wait.js';
import { startMockKafka, type MockKafka } from '../services/kafka.js';

const TOPIC = 'crashing-repartition';

/**
 * A reader whose consumer kafkajs keeps giving up (each fetch refused as not authorized)
 * starts a new one each time, up to five times a minute; at the sixth it stops and reports
 * why, instead of crash-looping. A broker of its own: the refused fetches must all reach
 * this reader's consumers.
 */
describe("a cluster partition reader whose consumer keeps failing (librdkafka mock broker)", { timeout: 120_000 }, () => {
  let kafka: MockKafka;
  let client: Kafka;

  before(async () => {
    kafka = await startMockKafka({ brokers: 1, topics: [{ name: TOPIC, partitions: 1 }] });
    client = new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING });
  });
  after(async () => {
    await kafka?.stop();
  });

  it('gives up at the sixth failure within a minute, naming how many and the last error', async () => {
    const reader = new PartitionReader(client, [TOPIC], 'crash-test');
    await reader.start();
    try {
      reader.open(TOPIC, 0, 0);
      await kafka.pushRequestErrors(1, [29, 29, 29, 29, 29, 29]);
      let problem: unknown;
      await waitUntil('the reader to give up', () => {
        try {
          reader.take(TOPIC, 0, 10);
          return false;
        } catch (error) {
          problem = error;
          return true;
        }
      }, { timeoutMs: 90_000, intervalMs: 500 });
      assert.ok(problem instanceof OffsetStoreError, String(problem));
      assert.match(problem.message, new RegExp(`^reading ${TOPIC}.* failed 6 times within a minute; the last: .*`));
    } finally {
      await reader.stop();
    }
  });
});
