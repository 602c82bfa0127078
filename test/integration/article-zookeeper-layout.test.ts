import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { OffsetStoreError, StateSpec, StreamingContext } from '../../src/index.js';
import { fixture, tempDir } from '../helpers.js';
import { highWatermarks, tally, zkOffsets } from './job-process.js';
import { useServices } from './services/suite.js';
import { connectClient, zkAnswer } from './services/zookeeper.js';

/** Writes nodes as a Kafka 0.8 consumer (the article's job) left them: decimal strings under /consumers/<group>/offsets. */
async function writeAsKafka08(connect: string, group: string, topic: string, offsets: Record<number, string>): Promise<void> {
  const client = await connectClient(connect);
  try {
    for (const [partition, offset] of Object.entries(offsets)) {
      const path = `/consumers/${group}/offsets/${topic}/${partition}`;
      await new Promise<void>((resolve, reject) => client.mkdirp(path, (error) => (error ? reject(error) : resolve())));
      await new Promise<void>((resolve, reject) => client.setData(path, Buffer.from(offset), (error) => (error ? reject(error) : resolve())));
    }
    // A 0.8 consumer group also registers its members and owners there.
    await new Promise<void>((resolve, reject) => client.mkdirp(`/consumers/${group}/ids`, (error) => (error ? reject(error) : resolve())));
  } finally {
    client.close();
  }
}

describe("moving the article's job over: offsets in Kafka 0.8's ZooKeeper layout (real ZooKeeper, librdkafka mock broker)", { timeout: 180_000 }, () => {
  const services = useServices();

  function job(topic: string, group: string, again?: { dataDir: string; snapshotEvery: number }) {
    const dataDir = again?.dataDir ?? join(tempDir(), 'data');
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, appName: group, snapshotEvery: again?.snapshotEvery });
    const counts = ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: group, zookeeper: { connect: services.zk.connectString, root: `/consumers/${group}` }, groupSessionTimeoutMs: 6000 })
      .map((record) => [record.value as string, 1] as [string, number])
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2));
    return { ssc, counts, dataDir };
  }

  it('a job rooted at /consumers/<group> continues from the decimal start offsets another client wrote there, and leaves them there for 0.8 tools', async () => {
    const [topic, group] = ['article-words', 'article-group'];
    await services.kafka.createTopic(topic, 2);
    const words = (p: number) => Array.from({ length: 10 }, (_, i) => `p${p}-w${i % 4}`);
    for (const p of [0, 1]) await services.producer.send({ topic, messages: words(p).map((value) => ({ value, partition: p })) });
    // The article's job had processed up to offset 6 of partition 0 and 3 of partition 1.
    await writeAsKafka08(services.zk.connectString, group, topic, { 0: '6', 1: '3' });

    const { ssc, counts, dataDir } = job(topic, group);
    await ssc.start();
    try {
      const end = await highWatermarks(services.kafka.brokers, topic);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const at = await zkOffsets(services.zk.connectString, `/consumers/${group}`, topic, 2);
        if (at.every((o, p) => o === end[p])) break;
        if (Date.now() > deadline) assert.fail(`the positions did not reach ${end.join(',')} within 60 s (at ${at.join(',')})`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await ssc.awaitIdle();
      assert.deepEqual(new Map(counts.store().entries()), tally([...words(0).slice(6), ...words(1).slice(3)]), 'exactly the records from the stored offsets on');
    } finally {
      await ssc.stop();
    }
    // Where the next batch starts, as decimal strings, where a 0.8 offset checker reads them.
    assert.deepEqual(await zkOffsets(services.zk.connectString, `/consumers/${group}`, topic, 2), [10, 10]);
    // A job without snapshots keeps no batch history: no snapshot could replay from it, and a node a batch would pile up.
    const client = await connectClient(services.zk.connectString);
    const history = () => zkAnswer<string[]>((done) => client.getChildren(`/consumers/${group}/history`, (e, names) => done(e, names)));
    try {
      assert.deepEqual(await history(), []);
      // A job with snapshots started there begins the history at the last ended batch: complete from there on, not from 0,
      // so a restore from a snapshot older than it is refused instead of replaying what the history never held.
      const snapshotting = job(topic, group, { dataDir, snapshotEvery: 1000 });
      await snapshotting.ssc.start();
      await snapshotting.ssc.stop();
      const lastBatch = (await zkAnswer<Buffer>((done) => client.getData(`/consumers/${group}/last-batch`, (e, data) => done(e, data)))).toString();
      assert.match(lastBatch, /^\d+$/);
      assert.deepEqual(await history(), [lastBatch]);
    } finally {
      client.close();
    }
  });

  it('a position that is not a decimal offset is refused, naming the node', async () => {
    const [topic, group] = ['article-bad', 'article-bad-group'];
    await services.kafka.createTopic(topic, 1);
    await writeAsKafka08(services.zk.connectString, group, topic, { 0: 'six' });
    const { ssc } = job(topic, group);
    try {
      await assert.rejects(ssc.start(), (e: unknown) => e instanceof OffsetStoreError && /\/consumers\/article-bad-group\/offsets\/article-bad\/0 holds "six", not an offset/.test((e as Error).message));
    } finally {
      await ssc.stop();
    }
  });
});
