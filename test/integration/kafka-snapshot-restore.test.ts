import assert from 'node:assert/strict';
import { rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, ManualClock, OffsetStoreError, StateSpec, StreamingContext, listSnapshots, type RecoveryIncompleteEvent, type SnapshotInfo, type StateRestoredEvent } from '../../src/index.js';
import { ownedOffsetStore } from '../storage/zookeeper/owned-store.js';
import { ZooKeeperSession } from '../../src/storage/zookeeper/session.js';
import { partitionPath } from '../../src/storage/partition/store.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { waitUntil, within } from '../wait.js';
import { produceWithKcat } from './services/kafka.js';
import { useServices } from './services/suite.js';
import { connectClient, zkAnswer } from './services/zookeeper.js';
import { JobProcess, readCounts, runUntilCaughtUp, tally, waitUntilCaughtUp, type JobConfig } from './job-process.js';

const PARTITIONS = 3;
const words = (n: number, seed: number) => Array.from({ length: n }, (_, i) => `w${(i * 7 + seed) % 41}`);

const spec = () => StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2);

/** A data folder whose two partitions hold batch 3000, of a queue job, with a snapshot of batch 2000 only. */
async function storesAt3000(): Promise<string> {
  const dataDir = tempDir();
  const job = await keyedJob(spec(), { dataDir, snapshotEvery: 2, snapshotsKept: 5 });
  try {
    await job.batch([['a', 1], ['b', 1]]);
    await job.batchWithSnapshot([['a', 1]]);
    await job.batch([['b', 1]]);
  } finally {
    await job.ssc.stop();
  }
  return dataDir;
}

describe('restore from snapshots with a Kafka source (real ZooKeeper, librdkafka mock broker)', { timeout: 300_000 }, () => {
  const services = useServices();

  /** A fresh topic and the job config that reads it, snapshotting every `snapshotEvery` batches. */
  async function snapshottingJob(topic: string, partitions: number, snapshotEvery: number): Promise<JobConfig> {
    await services.kafka.createTopic(topic, PARTITIONS);
    return {
      brokers: services.kafka.brokers, topic, zookeeper: services.zk.connectString, zkRoot: `/statestream/test-${topic}`, dataDir: join(tempDir(), 'data'),
      groupId: `group-${topic}`, batchMs: 150, partitions, maxRecordsPerBatch: 50, snapshotEvery,
    };
  }

  it('snapshots while batches run; a deleted and a truncated store are restored and the batches since are replayed exactly', async (t) => {
    const config = await snapshottingJob('restore-words', 4, 3);
    const { topic } = config;
    const produced: string[] = [];
    let producing = true;
    const production = (async () => {
      for (let round = 0; producing; round++) {
        const batch = words(12, round);
        await services.producer.send({ topic, messages: batch.map((w) => ({ key: w, value: w })) });
        produced.push(...batch);
        await sleep(40);
      }
    })();
    const first = new JobProcess(config);
    let lastBatch: number;
    let newest: SnapshotInfo;
    // However the test ends, the producer stops before the suite disconnects it.
    try {
      await first.waitForLine(/^SNAPSHOT \d+/);
      await first.waitForLine(/^SNAPSHOT \d+/);
      // Let more batches commit after the newest snapshot: they are what the restore must replay.
      // (Snapshots count every batch, empty ones too, so another may come between batches with records.)
      await waitUntil('two batches with records after the newest snapshot', () => {
        const newestSnapshot = first.lines.findLastIndex((l) => l.startsWith('SNAPSHOT '));
        return first.lines.slice(newestSnapshot + 1).filter((l) => l.startsWith('BATCH ')).length >= 2;
      }, { detail: () => first.tail() });
      await first.stop();
      assert.ok(!first.lines.some((l) => l.startsWith('FAILED') || l.startsWith('SNAPSHOT_FAILED')), first.lines.join('\n'));

      const withRecords = first.lines.filter((l) => l.startsWith('BATCH ')).map((l) => Number(l.split(' ')[1]));
      lastBatch = Math.max(...withRecords);
      // A snapshot is taken every 3 batches, empty ones too, and its line may come after the
      // lines of later batches (the copy runs beside them); stop() also lets the batch in
      // progress finish, which may take one. Snapshots with fewer than two batches with
      // records after them leave the restore little or nothing to replay: set them aside, as
      // an operator restoring from an older snapshot would.
      for (const taken of listSnapshots(config.dataDir).filter((s) => withRecords.filter((b) => b > s.batchTime).length < 2)) {
        t.diagnostic(`snapshot ${taken.batchTime} has fewer than two batches with records after it (the last: ${lastBatch}): set aside`);
        rmSync(taken.path, { recursive: true });
      }
      newest = listSnapshots(config.dataDir)[0];
      assert.ok(newest.batchTime < lastBatch, `batches ran after the newest snapshot (${newest.batchTime} < ${lastBatch})`);
      const since = first.lines.filter((l) => l.startsWith('BATCH ') && Number(l.split(' ')[1]) > newest.batchTime);
      assert.ok(since.length >= 2, `batches with records after snapshot ${newest.batchTime}: ${since.join(', ')}`);
      assert.equal(newest.manifest.sources[0].kind, 'kafka');
      assert.equal(newest.manifest.sources[0].positions.length, PARTITIONS);

      rmSync(partitionPath(config.dataDir, 0, 1), { recursive: true });
      const file = join(partitionPath(config.dataDir, 0, 3), 'data.mdb');
      truncateSync(file, Math.floor(statSync(file).size / 3));
      await sleep(500);
    } finally {
      first.kill('SIGKILL');
      producing = false;
      await within(production, 'the producer loop to stop');
    }
    const second = await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-2` }, PARTITIONS);
    const restored = second.lines.find((l) => l.startsWith('RESTORED '));
    assert.ok(restored, second.lines.join('\n'));
    const event = JSON.parse(restored.slice('RESTORED '.length)) as { snapshot: number; partitions: Array<{ partition: number }>; replayed: boolean };
    assert.deepEqual(event.partitions.map((p) => p.partition), [1, 3]);
    assert.equal(event.snapshot, newest.batchTime);
    assert.equal(event.replayed, true);
    // The replayed batches' outputs ran, whole, in the first run: they are not run again partially.
    const replayedOutputs = second.lines.filter((l) => l.startsWith('OUTPUT ') && Number(l.split(' ')[1]) <= lastBatch);
    assert.deepEqual(replayedOutputs, [], 'no output for a batch the first run completed');
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced), `${produced.length} messages, restored from ${event.snapshot}`);
  });

  /**
   * A job that snapshots, run over 120 words and stopped; then only the snapshots from
   * before its first record are kept, and partition 0's store is lost: a restore must
   * replay every batch with records.
   */
  async function lostStoreWithEarlySnapshot(topic: string, seed: number): Promise<{ config: JobConfig; input: string[] }> {
    // Every snapshot kept: the ones taken after the first records must not prune the early ones away before the stop.
    const config = { ...(await snapshottingJob(topic, 2, 2)), snapshotsKept: 1000 };
    const job = new JobProcess(config);
    await job.waitForLine(/^SNAPSHOT \d+/);
    const input = words(120, seed);
    await services.producer.send({ topic, messages: input.map((w) => ({ key: w, value: w })) });
    await waitUntilCaughtUp(job, config, PARTITIONS, 90_000);
    await job.stop();
    const firstRecords = Math.min(...job.lines.filter((l) => l.startsWith('BATCH')).map((l) => Number(l.split(' ')[1])));
    const early = listSnapshots(config.dataDir).filter((s) => s.batchTime < firstRecords);
    assert.ok(early.length > 0, 'a snapshot was taken while the topic was empty');
    for (const later of listSnapshots(config.dataDir).filter((s) => s.batchTime >= firstRecords)) rmSync(later.path, { recursive: true });
    rmSync(partitionPath(config.dataDir, 0, 0), { recursive: true });
    return { config, input };
  }

  for (const [group, suffix] of [['a new consumer group', '-2'], ['the consumer group of the run before, whose committed offsets are at the end', '']] as const) {
    it(`a snapshot taken before the first record restores, and replays every batch since (${group})`, async () => {
      const { config, input } = await lostStoreWithEarlySnapshot(`early-snapshot${suffix}`, 5);
      // The group's offsets are not where reading starts: each join seeks to where ZooKeeper says.
      const again = await runUntilCaughtUp({ ...config, groupId: `${config.groupId}${suffix}` }, PARTITIONS);
      assert.ok(again.lines.some((l) => l.startsWith('RESTORED ')), again.lines.join('\n'));
      assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(input));
    });
  }

  it('a restore that replays many batches takes each one\'s records from Kafka as it runs: the first replayed batch starts before the last is fetched, and the counts are exact', async () => {
    const topic = 'long-replay';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    // 2·10^5 lines of 10^3 words, 2·10^4 a batch: ten batches, several fetches of the mock broker's (1 MB a partition) each.
    const lines = Array.from({ length: 200_000 }, (_, i) => `w${(i * 7) % 1000}`);
    const job = () => {
      const ssc = new StreamingContext({ batchIntervalMs: 200, dataDir, threads: 1, appName: 'long-replay', snapshotEvery: 1, snapshotsKept: 1000 });
      const stream = ssc.kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `g-${topic}-${Math.random()}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/test-${topic}` }, groupSessionTimeoutMs: 6000, maxRecordsPerBatch: 20_000 });
      const counts = stream.map((r): [string, number] => [r.value as string, 1]).mapWithState(spec());
      return { ssc, stream, counts };
    };
    const first = job();
    const taken = { records: 0, firstRecords: Infinity };
    first.ssc.on(BatchEvents.COMPLETED, (e) => {
      taken.records += e.records;
      if (e.records > 0) taken.firstRecords = Math.min(taken.firstRecords, e.batchTime);
    });
    const snapshotted = new Promise((resolve) => first.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, resolve));
    await first.ssc.start();
    try {
      await within(snapshotted, 'a snapshot of the empty state', { timeoutMs: 60_000 });
      await produceWithKcat(services.kafka.brokers, topic, lines.map((value) => ({ value })), 0);
      await waitUntil('every line counted', () => taken.records === lines.length, { timeoutMs: 120_000 });
    } finally {
      await first.ssc.stop();
    }
    // Only the snapshots from before the first record, and partition 0's store lost: every batch since is replayed.
    for (const later of listSnapshots(dataDir).filter((snapshot) => snapshot.batchTime >= taken.firstRecords)) rmSync(later.path, { recursive: true });
    rmSync(partitionPath(dataDir, 0, 0), { recursive: true });

    const second = job();
    let fetchedAtFirst: number | undefined;
    const origins: string[] = [];
    second.ssc.on(BatchEvents.STARTED, () => void (fetchedAtFirst ??= second.stream.status().partitions[0].fetched));
    second.ssc.on(BatchEvents.COMPLETED, (e) => void origins.push(e.origin));
    await second.ssc.start();
    try {
      await waitUntil('a live batch after the replays', () => origins.includes('live'), { timeoutMs: 120_000 });
      assert.ok(origins.filter((o) => o === 'replay').length >= 10, origins.join(' '));
      assert.ok(fetchedAtFirst !== undefined && fetchedAtFirst < lines.length, `fetched up to ${fetchedAtFirst} of ${lines.length} when the first replayed batch started`);
      const expected = new Map<string, number>();
      for (const w of lines) expected.set(w, (expected.get(w) ?? 0) + 1);
      assert.deepEqual(new Map(second.counts.store().entries()), expected);
    } finally {
      await second.ssc.stop();
    }
  });

  it('a start without snapshots that dies while it replays a restored store keeps the batch history, and the next start replays it exactly', async () => {
    const { config, input } = await lostStoreWithEarlySnapshot('replay-dies', 9);
    // Started without snapshots (so it keeps no batch history), it restores the store and
    // dies in the mapping function of the first batch it replays.
    const { snapshotEvery: _kept, ...noSnapshots } = config;
    const dying = new JobProcess({ ...noSnapshots, groupId: `${config.groupId}-2` }, { STATESTREAM_TEST_DIE_AT_CALL: '1' });
    const exit = await within(dying.exited, 'the start that dies in its replay');
    assert.equal(exit.signal, 'SIGKILL', dying.lines.join('\n'));
    assert.ok(dying.lines.some((l) => l.startsWith('RESTORED ')), dying.lines.join('\n'));

    const again = await runUntilCaughtUp({ ...noSnapshots, groupId: `${config.groupId}-3` }, PARTITIONS);
    assert.ok(!again.lines.some((l) => l.startsWith('FAILED')), again.lines.join('\n'));
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(input));
    // Its replays done and a live batch ended, it keeps no history (its batches wrote none: what was there has a hole now),
    // and no re-run of an ended batch is left recorded as in flight.
    const client = await connectClient(services.zk.connectString);
    try {
      assert.deepEqual(await zkAnswer<string[]>((done) => client.getChildren(`${config.zkRoot}/history`, (e, names) => done(e, names))), []);
      assert.equal((await zkAnswer<Buffer>((done) => client.getData(`${config.zkRoot}/batch`, (e, data) => done(e, data)))).length, 0);
    } finally {
      client.close();
    }
  });

  it('a job with no state restarts where it stopped (no store is expected to hold its batches)', async () => {
    const topic = 'stateless';
    await services.kafka.createTopic(topic, 1);
    const seen: string[] = [];
    const runOnce = async (send: string[]) => {
      const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: join(tempDir(), 'data'), threads: 1, appName: 'stateless' });
      ssc
        .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `g-${topic}-${seen.length}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/test-${topic}` }, groupSessionTimeoutMs: 6000, startingOffsets: 'earliest' })
        .foreachBatch((records) => void seen.push(...records.map((r) => r.value as string)));
      await ssc.start();
      try {
        const before = seen.length;
        await services.producer.send({ topic, messages: send.map((w) => ({ value: w })) });
        await waitUntil(`the stream to deliver ${send.join(', ')}`, () => seen.length >= before + send.length, { detail: () => `seen: ${seen.join(', ')}` });
      } finally {
        await ssc.stop();
      }
    };
    await runOnce(['a', 'b']);
    await runOnce(['c']);
    assert.deepEqual(seen, ['a', 'b', 'c']);
  });

  it('a restore whose replay the batch history no longer reaches back to fails the start with OffsetStoreError, instead of skipping records', async () => {
    const topic = 'short-history';
    await services.kafka.createTopic(topic, 1);
    const root = `/statestream/test-${topic}`;
    await services.producer.send({ topic, messages: ['a', 'b', 'a', 'b'].map((value) => ({ value })) });
    const dataDir = await storesAt3000();
    assert.deepEqual(listSnapshots(dataDir).map((s) => s.batchTime), [2000]);
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });
    // ZooKeeper records batches up to 3000, but its history starts after the snapshot's batch.
    const session = new ZooKeeperSession({ connect: services.zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, root);
      await offsets.init([{ topic, partition: 0 }]);
      await offsets.recordBatchEnd({ batchTime: 3000, ranges: [{ topic, partition: 0, from: 0, until: 4 }] }, true);
      await offsets.release();
    } finally {
      session.close();
    }

    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(3000), snapshotEvery: 2 });
    ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `group-${topic}`, zookeeper: { connect: services.zk.connectString, root } })
      .map((r): [string, number] => [r.value ?? '', 1])
      .mapWithState(spec());
    const starting = ssc.start();
    await within(assert.rejects(starting, (error: unknown) => {
      assert.ok(error instanceof OffsetStoreError, String(error));
      assert.match(error.message, /a partition store holds batch 2000, but ZooKeeper \(\/statestream\/test-short-history\) records batches up to 3000 and no longer keeps the ranges after 2000 to replay/);
      return true;
    }), 'start() to fail', { detail: () => `state: ${ssc.state}` }).finally(() => ssc.stop());
  });

  it('a job that reads a queue beside Kafka says the restored store is not replayed, and names the batches it misses', async () => {
    const topic = 'beside-a-queue';
    await services.kafka.createTopic(topic, 1);
    // Stores at batch 3000 from the queue, with a snapshot of batch 2000 only; partition 1 is lost.
    const dataDir = await storesAt3000();
    rmSync(partitionPath(dataDir, 0, 1), { recursive: true });

    // The state stream reads the queue; Kafka, which could replay its own part, feeds an output only.
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, threads: 1, clock: new ManualClock(3000) });
    ssc.queueStream<[string, number]>().mapWithState(spec());
    ssc.kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `group-${topic}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/test-${topic}` } }).foreachBatch(() => undefined);
    const restored: StateRestoredEvent[] = [];
    const gaps: RecoveryIncompleteEvent[] = [];
    ssc.on(BatchEvents.STATE_RESTORED, (e) => restored.push(e));
    ssc.on(BatchEvents.RECOVERY_INCOMPLETE, (e) => gaps.push(e));
    try {
      await within(ssc.start(), 'start() beside a queue');
      assert.deepEqual(restored.map((e) => [e.snapshot, e.replayed, e.partitions.map((p) => p.partition)]), [[2000, false, [1]]], 'a queue cannot replay its part of batch 3000');
      assert.deepEqual(gaps.map((g) => g.behind.map((b) => [b.partition, b.lastBatch])), [[[1, 2000]]]);
      assert.match(gaps[0].message, /the batches after that up to 3000 cannot be replayed by a queue source/);
    } finally {
      await ssc.stop();
    }
  });
});
