/**
 * The integration-test services themselves, checked with real clients:
 * ZooKeeper with node-zookeeper-client, the mock Kafka broker with kcat and kafkajs.
 */
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel, Partitioners, type Consumer, type KafkaMessage } from 'kafkajs';
import zookeeper from 'node-zookeeper-client';
import { produceWithKcat, startMockKafka, type MockKafka } from './services/kafka.js';
import { startZooKeeper, type ZooKeeperServer } from './services/zookeeper.js';
import { waitUntil, within } from '../wait.js';

/** The mock's consumer groups wait sessionTimeout - 1 s before a rejoin and 3 s before a first join. */
const CONSUMER = { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100, allowAutoTopicCreation: false };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pid: number): Promise<boolean> {
  return waitUntil(`process ${pid} to be gone`, () => !alive(pid), { timeoutMs: 1000 }).catch(() => false);
}

function connectRefused(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = createConnection({ host: host!, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

describe('ZooKeeper service', { timeout: 60_000 }, () => {
  let zk: ZooKeeperServer;
  const clients: zookeeper.Client[] = [];

  const connect = (connectString: string) =>
    within(
      new Promise<zookeeper.Client>((resolve) => {
        const client = zookeeper.createClient(connectString, { sessionTimeout: 5000, spinDelay: 100, retries: 0 });
        clients.push(client);
        client.once('connected', () => resolve(client));
        client.connect();
      }),
      `a ZooKeeper session with ${connectString}`,
      { timeoutMs: 10_000 },
    );
  const create = (client: zookeeper.Client, path: string, data: string) =>
    new Promise<string>((resolve, reject) =>
      client.create(path, Buffer.from(data), zookeeper.CreateMode.PERSISTENT, (err, created) => (err ? reject(err) : resolve(created))),
    );
  const read = (client: zookeeper.Client, path: string) =>
    new Promise<string>((resolve, reject) =>
      client.getData(path, (err, data) => (err ? reject(err) : resolve(data?.toString() ?? ''))),
    );

  before(async () => {
    zk = await startZooKeeper();
  });
  after(async () => {
    clients.forEach((client) => client.close());
    await zk?.stop();
  });

  it('serves node-zookeeper-client on a loopback port', async () => {
    assert.match(zk.connectString, /^127\.0\.0\.1:\d+$/);
    const client = await connect(zk.connectString);
    assert.equal(await create(client, '/harness', 'kept'), '/harness');
    assert.equal(await read(client, '/harness'), 'kept');
  });

  it('keeps its data across restart() on the same port, and the open session reconnects', async () => {
    const [client] = clients;
    const { connectString, pid } = zk;
    await zk.restart();
    assert.equal(zk.connectString, connectString);
    assert.notEqual(zk.pid, pid);
    assert.ok(await gone(pid!), 'the old server process exited');
    assert.equal(await read(client!, '/harness'), 'kept', 'the first session carries on after the restart');
    assert.equal(await read(await connect(connectString), '/harness'), 'kept', 'a new session reads it too');
  });

  it('kill() is a crash: it comes back with start()', async () => {
    const pid = zk.pid!;
    await zk.kill();
    assert.ok(await gone(pid));
    assert.equal(zk.running(), false);
    await zk.start();
    assert.equal(await read(await connect(zk.connectString), '/harness'), 'kept');
  });

  it('stop() leaves no process behind', async () => {
    const pid = zk.pid!;
    await zk.stop();
    assert.ok(await gone(pid));
  });
});

describe('mock Kafka service', { timeout: 60_000 }, () => {
  let broker: MockKafka;
  let kafka: Kafka;
  const consumers: Consumer[] = [];

  before(async () => {
    broker = await startMockKafka();
    kafka = new Kafka({
      clientId: 'services-test',
      brokers: broker.brokers,
      logLevel: logLevel.NOTHING,
      retry: { initialRetryTime: 100, retries: 8 },
    });
  });
  after(async () => {
    await Promise.all(consumers.map((c) => c.disconnect()));
    await broker?.stop();
  });

  /** Consumes from the start until `count` messages came; leaves offsets uncommitted unless autoCommit. */
  async function consume(groupId: string, topic: string, count: number, autoCommit = false) {
    const consumer = kafka.consumer({ groupId, ...CONSUMER });
    consumers.push(consumer);
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const got: Array<{ partition: number; message: KafkaMessage }> = [];
    let done!: () => void;
    const all = new Promise<void>((resolve) => (done = resolve));
    await consumer.run({
      autoCommit,
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, message });
        if (got.length >= count) done();
      },
    });
    await within(all, `${count} messages of ${topic} for group ${groupId}`, { detail: () => `got ${got.length}` });
    return { consumer, got };
  }

  it('creates topics through its own API and refuses a second one with the same name', async () => {
    await broker.createTopic('words', 3);
    await assert.rejects(broker.createTopic('words', 3), /already exists/i);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const offsets = await admin.fetchTopicOffsets('words');
      assert.deepEqual(offsets.map((p) => [p.partition, p.high]).sort(), [[0, '0'], [1, '0'], [2, '0']]);
    } finally {
      await admin.disconnect();
    }
  });

  it('takes kcat input and serves a kafkajs consumer group, with offsets committed and fetched back', async () => {
    const sent = Array.from({ length: 30 }, (_, i) => ({ key: `key-${i}`, value: `value-${i}` }));
    await produceWithKcat(broker.brokers, 'words', sent);

    const { consumer, got } = await consume('harness-group', 'words', 30);
    assert.deepEqual(
      got.map(({ message }) => ({ key: message.key?.toString(), value: message.value?.toString() })).sort((a, b) => a.value!.localeCompare(b.value!)),
      [...sent].sort((a, b) => a.value.localeCompare(b.value)),
    );
    const partitions = new Set(got.map((m) => m.partition));
    assert.ok(partitions.size > 1, 'keys spread over several partitions');
    const javaPartitioner = Partitioners.DefaultPartitioner();
    const partitionMetadata = [0, 1, 2].map((partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1] }));
    for (const { partition, message } of got) {
      const expected = javaPartitioner({ topic: 'words', partitionMetadata, message: { key: message.key, value: message.value } });
      assert.equal(partition, expected, `kcat put ${message.key} where the Java producer and kafkajs would`);
    }

    const next = new Map<number, number>();
    for (const { partition, message } of got) next.set(partition, Math.max(next.get(partition) ?? 0, Number(message.offset) + 1));
    await consumer.commitOffsets([...next].map(([partition, offset]) => ({ topic: 'words', partition, offset: String(offset) })));
    await consumer.disconnect();

    const admin = kafka.admin();
    await admin.connect();
    try {
      const [committed] = await admin.fetchOffsets({ groupId: 'harness-group', topics: ['words'] });
      const high = await admin.fetchTopicOffsets('words');
      const byPartition = (list: Array<{ partition: number; offset: string }>) =>
        list.map((p) => [p.partition, Number(p.offset)]).sort((a, b) => a[0]! - b[0]!);
      assert.deepEqual(byPartition(committed!.partitions), byPartition(high), 'committed offsets are the end of every partition');
      assert.equal(high.reduce((sum, p) => sum + Number(p.offset), 0), 30);
    } finally {
      await admin.disconnect();
    }
  });

  it('kcat writes to a chosen partition, with null keys', async () => {
    await broker.createTopic('pinned', 2);
    await produceWithKcat(broker.brokers, 'pinned', [{ value: 'a' }, { value: 'b' }], 1);
    const { got, consumer } = await consume('pinned-group', 'pinned', 2);
    await consumer.disconnect();
    assert.deepEqual(
      got.map(({ partition, message }) => [partition, message.key, message.value?.toString()]),
      [[1, null, 'a'], [1, null, 'b']],
    );
  });

  it('a broker taken down and brought up again: kafkajs produces and consumes on', async () => {
    await broker.createTopic('events', 3);
    const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      await producer.send({ topic: 'events', messages: [{ key: 'k', value: 'before' }] });
      const { got } = await consume('events-group', 'events', 1, true);

      await broker.brokerDown(1);
      assert.equal(await connectRefused(broker.brokers[0]!), true, 'the broker refuses connections while down');
      await new Promise((r) => setTimeout(r, 1000));
      await broker.brokerUp(1);

      await producer.send({ topic: 'events', messages: Array.from({ length: 5 }, (_, i) => ({ key: `k${i}`, value: `after-${i}` })) });
      await waitUntil('the five messages sent after the broker came back', () => got.filter((m) => m.message.value?.toString().startsWith('after-')).length >= 5, {
        timeoutMs: 20_000,
        detail: () => `got ${got.map((m) => m.message.value?.toString()).join(', ')}`,
      });
      const values = new Set(got.map((m) => m.message.value?.toString()));
      assert.deepEqual([...values].sort(), ['after-0', 'after-1', 'after-2', 'after-3', 'after-4', 'before']);
    } finally {
      await producer.disconnect();
    }
  });

  it('stop() leaves no process behind, and refuses commands after', async () => {
    await Promise.all(consumers.splice(0).map((c) => c.disconnect()));
    await broker.stop();
    assert.ok(await gone(broker.pid));
    await assert.rejects(broker.createTopic('late', 1), /not running/);
    await broker.stop();
  });
});
