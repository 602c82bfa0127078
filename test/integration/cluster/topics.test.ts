import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { ensureTopics } from '../../../src/cluster/topics.js';
import { ConfigError } from '../../../src/index.js';
import { startMockKafka, type MockKafka } from '../services/kafka.js';

/**
 * A cluster's own topics at start, against librdkafka's mock broker. The mock implements no
 * CreateTopics, so a create always fails here: what the job then says is what a user whose
 * brokers refuse auto-creation (or whose ACLs forbid it) reads.
 */
describe("a cluster's own topics (librdkafka mock broker)", { timeout: 120_000 }, () => {
  let kafka: MockKafka;
  let admin: Admin;
  before(async () => {
    kafka = await startMockKafka({ brokers: 1, topics: [{ name: 'wc-repartition-0', partitions: 2 }, { name: 'wc-changelog-0', partitions: 2 }] });
    admin = new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
  });
  after(async () => {
    await admin?.disconnect();
    await kafka?.stop();
  });

  it('topics that exist with one partition per state partition pass; missing ones that cannot be created are named with their partitions and compaction; another partition count is refused', async () => {
    await ensureTopics(admin, [{ name: 'wc-repartition-0', partitions: 2, compacted: false }, { name: 'wc-changelog-0', partitions: 2, compacted: true }]);

    await assert.rejects(
      ensureTopics(admin, [
        { name: 'wc-repartition-0', partitions: 2, compacted: false },
        { name: 'wc-repartition-1', partitions: 3, compacted: false },
        { name: 'wc-changelog-1', partitions: 3, compacted: true },
      ]),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /^cluster: the topics wc-repartition-1 \(3 partitions\), wc-changelog-1 \(3 partitions, compacted\) do not exist and could not be created: .*; create them with your cluster's tools/);
        assert.deepEqual(error.context.topics, ['wc-repartition-1', 'wc-changelog-1']);
        return true;
      },
    );

    await assert.rejects(
      ensureTopics(admin, [{ name: 'wc-changelog-0', partitions: 3, compacted: true }]),
      (error: unknown) => error instanceof ConfigError && /^cluster: topic wc-changelog-0 has 2 partitions, but the state stream has 3/.test(error.message),
    );
  });
});
