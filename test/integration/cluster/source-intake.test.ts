import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { PartitionReader } from '../../../src/cluster/partition-reader.js';
import { SourceIntake, type IntakeMessage } from '../../../src/cluster/source-intake.js';
import { DataLossError, OffsetStoreError, type DataLostEvent } from '../../../src/index.js';
import { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';
import { waitUntil, within } from '../../wait.js';
import { produceWithKcat } from '../services/kafka.js';
import { useServices } from '../services/suite.js';

const TOPIC = 'cluster-retention';
/** Enough lines that the mock broker drops the oldest (it keeps about 5.5·10^5 of them). */
const MANY = 1_000_000;
/** Where the cluster last stood in the source partition: long deleted once MANY lines followed. */
const STOPPED_AT = 10;

/**
 * A cluster instance takes a source partition whose position under the cluster root the
 * broker no longer holds (the cluster was down longer than the topic's retention). As in a
 * single process, with failOnDataLoss the job fails and the position stays; without it, the
 * gap is reported and reading goes on from the earliest offset held.
 */
describe('a cluster source position the broker no longer holds (real ZooKeeper, librdkafka mock broker)', { timeout: 300_000 }, () => {
  let admin: Admin;
  let client: Kafka;
  let reader: PartitionReader;
  const readers: PartitionReader[] = [];
  let session: ZooKeeperSession;
  let low = 0;
  // Registered before the services' own: the clients close while the broker and ZooKeeper are still up.
  after(async () => {
    session?.close();
    for (const r of [reader, ...readers]) await r?.stop();
    await admin?.disconnect();
  });
  const services = useServices();

  before(async () => {
    await services.kafka.createTopic(TOPIC, 1);
    await produceWithKcat(services.kafka.brokers, TOPIC, Array.from({ length: MANY }, (_, i) => ({ value: `w${i % 13}` })), 0);
    client = new Kafka({ brokers: services.kafka.brokers, logLevel: logLevel.NOTHING });
    admin = client.admin();
    await admin.connect();
    low = Number((await admin.fetchTopicOffsets(TOPIC))[0].low);
    assert.ok(low > STOPPED_AT, `the broker dropped the oldest lines (earliest offset ${low})`);
    reader = new PartitionReader(client, [TOPIC], 'intake-test');
    await reader.start();
    session = new ZooKeeperSession({ connect: services.zk.connectString });
  });

  /** An intake under its own cluster root, whose position in the partition is STOPPED_AT. */
  async function intakeAt(root: string, failOnDataLoss: boolean, at = STOPPED_AT, through = reader): Promise<{ intake: SourceIntake; lost: DataLostEvent[] }> {
    const lost: DataLostEvent[] = [];
    const intake = new SourceIntake(admin, through, session, root, {
      topics: [TOPIC], startingOffsets: 'earliest', maxRecordsPerBatch: 1000, failOnDataLoss, announce: (_event, payload) => void lost.push(payload),
    });
    await intake.record([{ topic: TOPIC, partition: 0, offset: at }]);
    intake.assign([{ topic: TOPIC, partition: 0 }]);
    return { intake, lost };
  }
  const positionAt = async (root: string) => (await session.read(`${root}/sources/${TOPIC}/0`))?.toString('utf8');

  it('with failOnDataLoss, the next batch fails with a DataLossError naming the gap, and the position stays', async () => {
    const root = '/cluster-loss-fails';
    const { intake, lost } = await intakeAt(root, true);
    const error = await waitUntil('a batch to fail', () => {
      try {
        assert.deepEqual(intake.take().messages, [], 'nothing is read past the gap');
        return undefined;
      } catch (e) {
        return e as Error;
      }
    });
    assert.ok(error instanceof DataLossError, String(error));
    assert.match(error.message, new RegExp(`${TOPIC}\\[0\\] offsets ${STOPPED_AT}–${low - 1} \\(${low - STOPPED_AT} records\\)`));
    assert.match(error.message, /failOnDataLoss: false/);
    assert.deepEqual(error.context.gaps, [{ topic: TOPIC, partition: 0, from: STOPPED_AT, until: low, where: 'position' }]);
    assert.deepEqual(lost, []);
    assert.equal(await positionAt(root), String(STOPPED_AT));
  });

  it('with failOnDataLoss: false, the gap is reported once and reading goes on from the earliest offset held', async () => {
    const root = '/cluster-loss-goes-on';
    const { intake, lost } = await intakeAt(root, false);
    const taken: IntakeMessage[] = await waitUntil('the first records', () => {
      const { messages } = intake.take();
      return messages.length > 0 ? messages : undefined;
    });
    assert.equal(taken[0].offset, low, 'from the earliest offset the broker holds');
    assert.deepEqual(taken.map((m) => m.offset), Array.from({ length: taken.length }, (_, i) => low + i), 'in order, none skipped after the gap');
    assert.deepEqual(
      lost.map(({ topic, partition, from, until, where }) => ({ topic, partition, from, until, where })),
      [{ topic: TOPIC, partition: 0, from: STOPPED_AT, until: low, where: 'position' }],
    );
    assert.match(lost[0].message, /went on without/);
  });

  it('a position node that holds no decimal offset fails the intake, naming the node, rather than reading from NaN', async () => {
    const root = '/cluster-bad-position';
    const intake = new SourceIntake(admin, reader, session, root, { topics: [TOPIC], startingOffsets: 'earliest', maxRecordsPerBatch: 1000, failOnDataLoss: true, announce: () => undefined });
    await intake.record([{ topic: TOPIC, partition: 0, offset: low }]);
    await session.run('spoil the position', (client, done) => client.setData(`${root}/sources/${TOPIC}/0`, Buffer.from('six'), -1, (error) => done(error)));
    intake.assign([{ topic: TOPIC, partition: 0 }]);
    let poll: NodeJS.Timeout | undefined;
    const failure = await within(new Promise<unknown>((resolve) => {
      poll = setInterval(() => {
        try {
          intake.take();
        } catch (error) {
          resolve(error);
        }
      }, 20);
    }), 'the intake to fail on the position').finally(() => clearInterval(poll));
    assert.ok(failure instanceof OffsetStoreError, String(failure));
    assert.match((failure as Error).message, new RegExp(`the position at ${root}/sources/${TOPIC}/0 is "six", not a decimal offset`));
  });

  it('a batch taken while the job is behind takes nothing and moves no position; the records wait for the next', async () => {
    const behindReader = new PartitionReader(client, [TOPIC], 'behind');
    readers.push(behindReader);
    await behindReader.start();
    const held = Number((await admin.fetchTopicOffsets(TOPIC))[0].low);
    const { intake } = await intakeAt('/cluster-behind', false, held, behindReader);
    await waitUntil('a batch of records fetched', () => (behindReader.buffered(TOPIC, 0) >= 1000 ? true : undefined));
    assert.deepEqual(intake.take(true), { messages: [], positions: [] });
    const next = intake.take();
    assert.equal(next.messages[0]?.offset, held, 'the next batch begins where the position stood');
    assert.equal(next.messages.length, 1000);
    assert.deepEqual(next.positions, [{ topic: TOPIC, partition: 0, offset: held + 1000 }]);
  });

  it('a source partition is read about two batches ahead (maxRecordsPerBatch), not as far as the reader\'s limit for every partition', async () => {
    const ahead = new PartitionReader(client, [TOPIC], 'read-ahead');
    readers.push(ahead);
    await ahead.start();
    const held = Number((await admin.fetchTopicOffsets(TOPIC))[0].low);
    await intakeAt('/cluster-read-ahead', false, held, ahead);
    await waitUntil('the first fetch', () => (ahead.buffered(TOPIC, 0) > 0 ? true : undefined));
    await sleep(3000);
    // 2 × 1000, and what the fetch that passed it brought (the reader's limit was 200 000, and the partition holds some 5·10^5).
    const buffered = ahead.buffered(TOPIC, 0);
    assert.ok(buffered < 50_000, `${buffered} records buffered`);
  });

  it('a gap that opens while an instance reads (retention overtook it): failOnDataLoss fails the next batch, false reports the gap and reads on after it', async () => {
    // Two instances, each reading from the earliest offset through a reader that buffers
    // little: most of the topic is still unread when the lines below push it out.
    const start = Number((await admin.fetchTopicOffsets(TOPIC))[0].low);
    const opened = [];
    for (const [name, failOnDataLoss] of [['fails', true], ['goes-on', false]] as const) {
      const small = new PartitionReader(client, [TOPIC], `running-gap-${name}`, 1000);
      readers.push(small);
      await small.start();
      opened.push({ ...(await intakeAt(`/cluster-running-gap-${name}`, failOnDataLoss, start, small)), reader: small, taken: [] as number[] });
    }
    for (const o of opened) {
      const first = await waitUntil('the first records', () => {
        const offsets = o.intake.take().messages.map((m) => m.offset);
        return offsets.length > 0 ? offsets : undefined;
      });
      assert.equal(first[0], start);
      o.taken.push(...first);
    }
    const fetched = Math.max(...opened.map((o) => o.reader.fetchedUntil(TOPIC, 0)!));
    await produceWithKcat(services.kafka.brokers, TOPIC, Array.from({ length: MANY }, (_, i) => ({ value: `v${i % 13}` })), 0);
    const lowAfter = Number((await admin.fetchTopicOffsets(TOPIC))[0].low);
    assert.ok(lowAfter > fetched, `the broker dropped lines no reader fetched (earliest offset ${lowAfter}, fetched up to ${fetched})`);

    const [failing, goingOn] = opened;
    const error = await waitUntil('the failing instance to meet the gap', () => {
      try {
        failing.taken.push(...failing.intake.take().messages.map((m) => m.offset));
        return undefined;
      } catch (e) {
        return e as Error;
      }
    });
    assert.ok(error instanceof DataLossError, String(error));
    const end = failing.taken.at(-1)! + 1;
    assert.deepEqual(failing.taken, Array.from({ length: end - start }, (_, i) => start + i), 'every record before the gap, in order, none after it');
    const [gap] = error.context.gaps as Array<{ from: number; until: number; where: string }>;
    assert.deepEqual({ ...gap, until: undefined }, { topic: TOPIC, partition: 0, from: end, until: undefined, where: 'running' });
    assert.ok(gap.until > end && gap.until <= lowAfter, `the gap ${end}–${gap.until} ends at or before the earliest offset held, ${lowAfter}`);
    assert.match(error.message, /deleted while the job was behind, before it fetched them/);
    assert.throws(() => failing.intake.take(), DataLossError, 'and every batch after it fails');

    await waitUntil('the other instance to read past the gap', () => {
      goingOn.taken.push(...goingOn.intake.take().messages.map((m) => m.offset));
      return goingOn.taken.at(-1)! >= lowAfter + 5000;
    });
    const jumps = goingOn.taken.flatMap((offset, i) => (i > 0 && offset !== goingOn.taken[i - 1] + 1 ? [[goingOn.taken[i - 1] + 1, offset]] : []));
    assert.equal(jumps.length, 1, `one gap in what was read: ${JSON.stringify(jumps)}`);
    assert.deepEqual(
      goingOn.lost.map(({ topic, partition, from, until, where }) => ({ topic, partition, from, until, where })),
      [{ topic: TOPIC, partition: 0, from: jumps[0][0], until: jumps[0][1], where: 'running' }],
      'reported once, as the range passed over',
    );
  });

  it("'latest' is recorded as a partition is first read, so its next reader (a rebalance, a restart) starts there rather than at a later 'latest'", async () => {
    const topic = 'cluster-latest';
    await services.kafka.createTopic(topic, 2);
    for (const partition of [0, 1]) await produceWithKcat(services.kafka.brokers, topic, Array.from({ length: 5 }, (_, i) => ({ value: `before-${i}` })), partition);
    const root = '/cluster-latest';
    // Partition 1's node was made empty, as a crash between a first record's two steps leaves it.
    await session.mkdirp(`${root}/sources/${topic}/1`, root);
    const intakeThrough = async (name: string) => {
      const through = new PartitionReader(client, [topic], `latest-${name}`);
      readers.push(through);
      await through.start();
      const intake = new SourceIntake(admin, through, session, root, {
        topics: [topic], startingOffsets: 'latest', maxRecordsPerBatch: 1000, failOnDataLoss: true, announce: () => undefined,
      });
      intake.assign([{ topic, partition: 0 }, { topic, partition: 1 }]);
      return intake;
    };
    // The first reader takes the partitions and moves on before its first batch (no record came).
    await intakeThrough('first');
    const positions = async () => Promise.all([0, 1].map(async (p) => (await session.read(`${root}/sources/${topic}/${p}`))?.toString('utf8')));
    let seen: Array<string | undefined> = [];
    await waitUntil('the first reader to record where it starts', async () => (seen = await positions()).every((at) => at === '5'), { detail: () => JSON.stringify(seen) });
    for (const partition of [0, 1]) await produceWithKcat(services.kafka.brokers, topic, Array.from({ length: 3 }, (_, i) => ({ value: `after-${i}` })), partition);
    const next = await intakeThrough('next');
    const taken: IntakeMessage[] = [];
    await waitUntil('the next reader to take the records written since', () => {
      taken.push(...next.take().messages);
      return taken.length >= 6;
    });
    for (const partition of [0, 1]) {
      assert.deepEqual(taken.filter((m) => m.partition === partition).map((m) => [m.offset, m.message.value?.toString()]), [[5, 'after-0'], [6, 'after-1'], [7, 'after-2']], `partition ${partition}`);
    }
  });

  it('a read up to an offset not yet written ends with the reason given when the instance stops, not at its timeout', async () => {
    const waiting = new PartitionReader(client, [TOPIC], 'cancelled-read');
    readers.push(waiting);
    await waiting.start();
    const high = Number((await admin.fetchTopicOffsets(TOPIC))[0].high);
    const read = waiting.readUntil(TOPIC, 0, high + 1_000_000, 20_000, () => undefined);
    await sleep(500);
    const reason = new Error('the instance stops');
    waiting.cancelReads(reason);
    await assert.rejects(within(read, 'the read to end', { timeoutMs: 3_000 }), (e: unknown) => e === reason);
  });
});
