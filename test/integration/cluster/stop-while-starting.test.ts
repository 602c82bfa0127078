import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, OffsetStoreError, StateSpec, StreamingContext } from '../../../src/index.js';
import { fixture, tempDir } from '../../helpers.js';
import { within } from '../../wait.js';
import { startMockKafka, type MockKafka } from '../services/kafka.js';

const TOPIC = 'stop-while-starting';
// Nothing listens on port 1: every ZooKeeper connection is refused, and a start retries for 10 minutes.
const UNREACHABLE = '127.0.0.1:1';

describe('a cluster instance stopped while it starts (librdkafka mock broker, ZooKeeper unreachable)', { timeout: 120_000 }, () => {
  let kafka: MockKafka;
  before(async () => {
    kafka = await startMockKafka({
      brokers: 1,
      topics: [
        ...[TOPIC, `${TOPIC}-0-repartition`, `${TOPIC}-0-changelog`].map((name) => ({ name, partitions: 2 })),
        // A job whose changelog was made with another partition count than its state has.
        { name: `${TOPIC}-misfit-0-repartition`, partitions: 2 },
        { name: `${TOPIC}-misfit-0-changelog`, partitions: 3 },
      ],
    });
  });
  after(async () => {
    await kafka?.stop();
  });

  /** An instance named `appName` of a word count over the test topic, whose ZooKeeper cannot be reached. */
  function instance(appName: string, brokers: string[], mapping = 'count') {
    const ssc = new StreamingContext({
      batchIntervalMs: 100, dataDir: tempDir(), threads: 1, appName,
      cluster: { zookeeper: { connect: UNREACHABLE, sessionTimeoutMs: 30_000 } },
    });
    ssc
      .kafkaStream({ brokers, topic: TOPIC, groupId: appName, zookeeper: { connect: UNREACHABLE } })
      .flatMap((record) => (record.value ?? '').split(' '))
      .map((word): [string, number] => [word, 1])
      .mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture(mapping)).numPartitions(2));
    return ssc;
  }

  it('a stop() that lands while the mapping module loads still ends the ZooKeeper waits that come after it', async () => {
    const ssc = instance(TOPIC, kafka.brokers, 'slow-import');
    const starting = ssc.start().then(() => 'started', (error: unknown) => error);
    // The module takes 1.5 s to load: the stop comes before the cluster runtime exists.
    await sleep(300);
    await within(ssc.stop(), 'stop() while the instance starts', { timeoutMs: 45_000 });
    const outcome = await within(starting, 'start() to settle');
    assert.ok(outcome instanceof Error, `start() gave ${String(outcome)}`);
    assert.match(outcome.message, /interrupted/);
  });

  it('a stop() while the instance waits for Kafka brokers it cannot reach ends that wait at once', async () => {
    const ssc = instance(`${TOPIC}-brokers`, [UNREACHABLE]);
    const starting = ssc.start().then(() => 'started', (error: unknown) => error);
    // Past the workers' start: the instance is connecting to the brokers, which kafkajs retries for about two minutes.
    await sleep(1500);
    await within(ssc.stop(), 'stop() while the instance connects to Kafka', { timeoutMs: 10_000 });
    const outcome = await within(starting, 'start() to settle');
    assert.ok(outcome instanceof OffsetStoreError, `start() gave ${String(outcome)}`);
    assert.equal(outcome.message, 'Kafka brokers 127.0.0.1:1: interrupted while connecting');
  });

  it("refuses to start on the job's own topics when one has another partition count than the state, naming it", async () => {
    const ssc = instance(`${TOPIC}-misfit`, kafka.brokers);
    try {
      await within(
        assert.rejects(ssc.start(), (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.match(error.message, new RegExp(`cluster: topic ${TOPIC}-misfit-0-changelog has 3 partitions, but the state stream has 2`));
          return true;
        }),
        'start() to be refused',
        { timeoutMs: 30_000 },
      );
    } finally {
      await ssc.stop();
    }
  });
});
