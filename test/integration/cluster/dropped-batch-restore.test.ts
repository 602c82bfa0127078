import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { ChangelogRestore, entryMessage, type BatchEnd, type ChangelogRecord } from '../../../src/cluster/changelog.js';
import { ChangelogWriter, readChangelog } from '../../../src/cluster/changelog-io.js';
import { PartitionReader } from '../../../src/cluster/partition-reader.js';
import { readClusterMeta, restorePartition } from '../../../src/cluster/restore-store.js';
import { ClusterError, OwnershipLostError } from '../../../src/errors.js';
import { decodeEntry, encodeEntry } from '../../../src/storage/codec.js';
import { readBinary } from '../../../src/storage/partition/state-map.js';
import { openPartitionStore, partitionPath, type PartitionStore } from '../../../src/storage/partition/store.js';
import { BatchLog } from '../../../src/storage/partition/batch-log.js';
import { TimeIndex } from '../../../src/storage/partition/time-index.js';
import { tempDir } from '../../helpers.js';
import { waitUntil } from '../../wait.js';
import { startMockKafka, type MockKafka } from '../services/kafka.js';

const TOPIC = 'dropped-batch-changelog';
const LONG_TOPIC = 'long-changelog';
const FENCE_TOPIC = 'fence-changelog';
const LEASE_TOPIC = 'lease-changelog';
const ZOMBIE_TOPIC = 'zombie-changelog';
const TIMEOUT_TOPIC = 'timeout-changelog';
const REJOIN_TOPIC = 'rejoin-repartition';
const RECREATE_TOPIC = 'recreate-repartition';
const end = (epoch: number, batchTime: number, position: number, keyCount: number): BatchEnd => ({ epoch, batchTime, position, marks: { 'words:0': [position, 0] }, keyCount });

/**
 * A new owner takes a state partition whose owner died in the middle of a batch: its
 * changelog holds that batch's entries but not its end. The restore drops the batch, and
 * writes each key it touched again, with the value the partition holds as restored, so that
 * compaction (which keeps only the newest record of a key) cannot bring the dropped value
 * back for the next owner. On a real broker (librdkafka's mock cluster) and a real LMDB store.
 */
describe('cluster restore after an owner died in a batch (librdkafka mock broker)', { timeout: 120_000 }, () => {
  let kafka: MockKafka;
  let client: Kafka;
  let producer: Producer;
  let reader: PartitionReader;
  let writer: ChangelogWriter;

  before(async () => {
    kafka = await startMockKafka({ brokers: 1, topics: [{ name: TOPIC, partitions: 1 }, { name: LONG_TOPIC, partitions: 1 }, { name: FENCE_TOPIC, partitions: 2 }, { name: LEASE_TOPIC, partitions: 1 }, { name: ZOMBIE_TOPIC, partitions: 1 }, { name: TIMEOUT_TOPIC, partitions: 1 }, { name: REJOIN_TOPIC, partitions: 1 }, { name: RECREATE_TOPIC, partitions: 1 }] });
    client = new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING });
    producer = client.producer({ maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    writer = new ChangelogWriter(producer, TOPIC);
    reader = new PartitionReader(client, [TOPIC, ZOMBIE_TOPIC, TIMEOUT_TOPIC], 'dropped-batch-test');
    await reader.start();
  });
  after(async () => {
    await reader?.stop();
    await producer?.disconnect();
    await kafka?.stop();
  });

  async function highWatermark(): Promise<number> {
    const admin = client.admin();
    await admin.connect();
    try {
      return Number((await admin.fetchTopicOffsets(TOPIC))[0].high);
    } finally {
      await admin.disconnect();
    }
  }

  async function changelogRecords(): Promise<ChangelogRecord[]> {
    const records: ChangelogRecord[] = [];
    await readChangelog(reader, TOPIC, 0, 0, await highWatermark(), { read: (r) => void records.push(r) }, 30_000);
    return records;
  }

  function restoreOptions(epoch: number, owner: string) {
    // The ownership check of a coordinator that still holds the partition: a lease without end.
    return { timeIndexed: false, reader, writer, partition: 0, low: 0, epoch, owner, timeoutMs: 30_000, stillOwned: async () => Number.POSITIVE_INFINITY };
  }

  function state(store: PartitionStore, key: unknown): unknown {
    const bytes = readBinary(store, key as string);
    return bytes === undefined ? undefined : decodeEntry(bytes)[0];
  }

  it('writes the keys of the batch that never ended again, with their restored values, and the next owner restores those', async () => {
    // Owner a, epoch 1: batch 100 whole, then batch 250 cut short after two of its entries.
    await writer.writeEpoch(0, 1, 'a');
    await writer.writeTakeover(0, 1, undefined);
    await writer.writeBatch(0, ['y', 'z', ['t', 2]], [encodeEntry(5, 100), encodeEntry(7, 100), null], end(1, 100, 10, 2));
    await producer.send({ topic: TOPIC, acks: -1, messages: [entryMessage(1, 250, 'y', encodeEntry(9, 250)), entryMessage(1, 250, ['t', 2], encodeEntry(1, 250))].map((m) => ({ ...m, partition: 0 })) });

    // Owner b, epoch 2, on a store of its own.
    const storeB = openPartitionStore(partitionPath(tempDir(), 0, 0));
    try {
      const outcome = await restorePartition(storeB, restoreOptions(2, 'b'));
      assert.equal(outcome.rewritten, 2, 'the two keys batch 250 touched');
      assert.deepEqual(outcome.last, end(1, 100, 10, 2), 'batch 100 is the last whole batch');
      assert.equal(state(storeB, 'y'), 5, 'batch 250 was dropped');
      assert.equal(state(storeB, 'z'), 7);
      assert.equal(state(storeB, JSON.parse('["t",2]')), undefined);
      assert.equal(readClusterMeta(storeB)?.epoch, 2);
      const logged = new BatchLog(storeB).last();
      assert.deepEqual([logged?.batchTime, logged?.keyCount], [100, 2], "the store records batch 100 and its key count, which store().count() reports");
      // Its own rewrite's end is the last record: a reuse of the store reads on after it.
      assert.equal(readClusterMeta(storeB)?.changelogOffset, (await highWatermark()) - 1);
    } finally {
      storeB.env.close();
    }

    // What b wrote after its takeover: each dropped key again, byte for byte the entry it
    // restored (not the dropped one, and no more bytes than the entry), then a batch end of epoch 2.
    const records = await changelogRecords();
    const takeover = records.findIndex((r) => r.kind === 'takeover' && r.epoch === 2);
    assert.ok(takeover > 0, 'b wrote its takeover');
    const rewrite = records.slice(takeover + 1);
    assert.deepEqual(
      rewrite.map((r) => (r.kind === 'entry' ? [r.epoch, r.key, r.value === null ? null : Buffer.from(r.value).toString('hex')] : [r.kind, r.epoch])),
      [[2, 'y', encodeEntry(5, 100).toString('hex')], [2, ['t', 2], null], ['end', 2]],
    );
    const rewriteEnd = rewrite.at(-1);
    assert.ok(rewriteEnd?.kind === 'end');
    assert.deepEqual([rewriteEnd.batchTime, rewriteEnd.position, rewriteEnd.marks, rewriteEnd.keyCount], [100, 10, { 'words:0': [10, 0] }, 2], "the rewrite's end carries the restored batch's position, marks and key count on to the next owner");

    // Owner c, epoch 3, on a fresh store: restores the same state, batch 250 nowhere.
    const storeC = openPartitionStore(partitionPath(tempDir(), 0, 0));
    try {
      const outcome = await restorePartition(storeC, restoreOptions(3, 'c'));
      assert.equal(outcome.rewritten, 0, "b's rewrite made the keys whole again: nothing to write again");
      assert.equal(state(storeC, 'y'), 5);
      assert.equal(state(storeC, 'z'), 7);
      assert.equal(state(storeC, JSON.parse('["t",2]')), undefined);
    } finally {
      storeC.env.close();
    }

    const afterC = await changelogRecords();
    const takeoverC = afterC.findIndex((r) => r.kind === 'takeover' && r.epoch === 3);
    assert.ok(takeoverC > takeover, 'c wrote its takeover');
    assert.deepEqual(afterC.slice(takeoverC + 1), [], 'and nothing after it');

    // A log compacted down to the newest record of each key still restores y = 5: the
    // rewrite is newer than batch 250's entry, which a restore would otherwise be left with.
    const compacted = new Map<string, ChangelogRecord>();
    for (const r of records) if (r.kind === 'entry') compacted.set(JSON.stringify(r.key), r);
    const newest = compacted.get('"y"');
    assert.ok(newest?.kind === 'entry' && newest.epoch === 2 && decodeEntry(newest.value!)[0] === 5);
    const restored = new Map<string, number | null>();
    const restore = new ChangelogRestore((key, value) => void restored.set(JSON.stringify(key), value === null ? null : (decodeEntry(value)[0] as number)));
    for (const r of records.filter((r) => r.kind !== 'entry' || compacted.get(JSON.stringify(r.key)) === r)) restore.read(r);
    restore.dropWaiting(3);
    assert.equal(restored.get('"y"'), 5);
    assert.equal(restored.get('["t",2]') ?? null, null);
  });

  it("a store its owner kept is not reused once the changelog shows it was fenced: a zombie's late batch is gone from it, keys and all", async () => {
    const zombie = new ChangelogWriter(producer, ZOMBIE_TOPIC);
    const take = (store: PartitionStore, epoch: number, owner: string) => restorePartition(store, { ...restoreOptions(epoch, owner), writer: zombie });
    // What a's batch commits to its store, beside the changelog: the entries and where its end is.
    const commit = (store: PartitionStore, batchTime: number, entries: Array<[string, number]>, at: number) => {
      store.env.transactionSync(() => {
        for (const [key, count] of entries) store.state.putSync(key, encodeEntry(count, batchTime));
        store.meta.putSync('cluster', { ...readClusterMeta(store)!, changelogOffset: at });
      });
    };
    const storeA = openPartitionStore(partitionPath(tempDir(), 0, 0));
    const storeB = openPartitionStore(partitionPath(tempDir(), 0, 0));
    try {
      await take(storeA, 1, 'a');
      commit(storeA, 100, [['k', 1]], await zombie.writeBatch(0, ['k'], [encodeEntry(1, 100)], end(1, 100, 1, 1)));
      // b takes the partition (epoch 2); a, paused past its session, still commits a batch of epoch 1.
      await take(storeB, 2, 'b');
      commit(storeA, 200, [['k', 2], ['only-a', 3]], await zombie.writeBatch(0, ['k', 'only-a'], [encodeEntry(2, 200), encodeEntry(3, 200)], end(1, 200, 3, 2)));
      // a takes it back (epoch 3) on the store it kept: that store holds what the changelog's readers ignore.
      const outcome = await take(storeA, 3, 'a');
      assert.equal(outcome.reused, false, 'a store written after its epoch was fenced is rebuilt');
      assert.equal(state(storeA, 'k'), 1, "the zombie's batch is not in the state");
      assert.equal(state(storeA, 'only-a'), undefined, 'nor a key only that batch wrote');
      assert.deepEqual(outcome.last, end(1, 100, 1, 1));
    } finally {
      storeA.env.close();
      storeB.env.close();
    }
  });

  it('a partition with a timeout restored from its changelog has its keys in the time index, so they time out on the new owner', async () => {
    const timed = new ChangelogWriter(producer, TIMEOUT_TOPIC);
    await timed.writeEpoch(0, 1, 'a');
    await timed.writeTakeover(0, 1, undefined);
    await timed.writeBatch(0, ['y', 'z', 'gone'], [encodeEntry(5, 100), encodeEntry(7, 300), encodeEntry(1, 100)], end(1, 300, 3, 3));
    await timed.writeBatch(0, ['gone'], [null], end(1, 400, 4, 2));
    const store = openPartitionStore(partitionPath(tempDir(), 0, 0));
    try {
      await restorePartition(store, { ...restoreOptions(2, 'b'), writer: timed, timeIndexed: true });
      assert.deepEqual([...new TimeIndex(store).olderThan(Number.POSITIVE_INFINITY)], [[100, 'y'], [300, 'z']]);
    } finally {
      store.env.close();
    }
  });

  // A rebalance: the consumer joins its group again, which pauses every partition until the reader
  // seeks them again. A fetch refused as not authorized: kafkajs gives the consumer up (no restart
  // of its own), and the reader starts a new one, in a group of its own, which must seek them too.
  for (const [what, apiKey, codes] of [['rebalances (its consumer joins again)', 12, [27, 27]], ['loses its consumer to an error kafkajs does not restart from', 1, [29]]] as const) {
    it(`a reader whose group ${what} reads the partitions it opened on from where they were`, async () => {
      const topic = apiKey === 12 ? REJOIN_TOPIC : RECREATE_TOPIC;
      const rejoining = new PartitionReader(client, [topic], 'rejoin-test');
      await rejoining.start();
      try {
        const send = (values: string[]) => producer.send({ topic, acks: -1, messages: values.map((value) => ({ value, partition: 0 })) });
        const taken: string[] = [];
        const takeUntil = (n: number, label: string) =>
          waitUntil(label, () => {
            taken.push(...rejoining.take(topic, 0, 100).map(({ message }) => message.value!.toString()));
            return taken.length >= n;
          }, { timeoutMs: 30_000, detail: () => taken.join(',') });
        await send(['a', 'b', 'c']);
        rejoining.open(topic, 0, 1);
        await takeUntil(2, 'b and c');
        await kafka.pushRequestErrors(apiKey, [...codes]);
        await sleep(8_000);
        await send(['d', 'e']);
        await takeUntil(4, 'd and e after the consumer joined again');
        assert.deepEqual(taken, ['b', 'c', 'd', 'e']);
      } finally {
        await rejoining.stop();
      }
    });
  }

  it('restores a changelog longer than what its reader buffers: records are taken as they come, so the paused partition goes on', async () => {
    // A reader pauses a partition whose buffer is full until something is taken; a restore
    // that waited for the whole range before taking any waited until its timeout.
    const smallReader = new PartitionReader(client, [LONG_TOPIC], 'long-changelog-test', 40);
    await smallReader.start();
    try {
      const longWriter = new ChangelogWriter(producer, LONG_TOPIC);
      await longWriter.writeEpoch(0, 1, 'a');
      await longWriter.writeTakeover(0, 1, undefined);
      // 10 batches of 400 KB: more than one fetch (kafkajs asks for 1 MB a partition), each fetch more records than the buffer.
      const keys = Array.from({ length: 500 }, (_, i) => `k${i}`);
      const stateOf = (i: number) => ({ i, pad: 'x'.repeat(8000) });
      for (let b = 0; b < 10; b++) {
        const batch = keys.slice(b * 50, (b + 1) * 50);
        await longWriter.writeBatch(0, batch, batch.map((_, j) => encodeEntry(stateOf(b * 50 + j), 100 * (b + 1))), end(1, 100 * (b + 1), 50 * (b + 1), 50 * (b + 1)));
      }
      const store = openPartitionStore(partitionPath(tempDir(), 0, 0));
      try {
        const outcome = await restorePartition(store, { ...restoreOptions(2, 'b'), reader: smallReader, writer: longWriter, timeoutMs: 20_000 });
        assert.deepEqual(outcome.last, end(1, 1000, 500, 500));
        assert.deepEqual(keys.map((key) => state(store, key)), keys.map((_, i) => stateOf(i)));
      } finally {
        store.env.close();
      }
    } finally {
      await smallReader.stop();
    }
  });

  it('a batch of many keys stops being sent at the first request after its lease ran out', async () => {
    const topic = LEASE_TOPIC;
    const guarded = new ChangelogWriter(producer, topic);
    const admin = client.admin();
    await admin.connect();
    try {
      const high = async () => Number((await admin.fetchTopicOffsets(topic))[0].high);
      const before = await high();
      const keys = Array.from({ length: 2500 }, (_, i) => `lease-${i}`);
      let requests = 0;
      const lapsed = new OwnershipLostError('the lease ran out', {});
      await assert.rejects(
        guarded.writeBatch(0, keys, keys.map(() => encodeEntry(1, 100)), end(9, 100, 1, keys.length), [], () => {
          if (++requests === 2) throw lapsed;
        }),
        (e: unknown) => e === lapsed,
      );
      assert.equal(await high(), before + 1000, 'the first request of 1000 records went; nothing after the check failed');
    } finally {
      await admin.disconnect();
    }
  });

  it('writes no takeover when the ownership check after the reads fails or its lease has run out, nor under an epoch older than a marker the changelog holds (a ZooKeeper reset beside the topics)', async () => {
    const fenceReader = new PartitionReader(client, [FENCE_TOPIC], 'fence-test');
    await fenceReader.start();
    try {
      const fenceWriter = new ChangelogWriter(producer, FENCE_TOPIC);
      for (const [partition, epoch] of [[0, 7], [1, 1]]) {
        await fenceWriter.writeEpoch(partition, epoch, 'a');
        await fenceWriter.writeTakeover(partition, epoch, undefined);
        await fenceWriter.writeBatch(partition, ['k'], [encodeEntry(3, 100)], end(epoch, 100, 1, 1));
      }
      const take = async (partition: number, stillOwned: () => Promise<number>) => {
        const store = openPartitionStore(partitionPath(tempDir(), 0, partition));
        try {
          return await restorePartition(store, { ...restoreOptions(2, 'b'), reader: fenceReader, writer: fenceWriter, partition, stillOwned });
        } finally {
          store.env.close();
        }
      };
      await assert.rejects(take(0, async () => Number.POSITIVE_INFINITY), (e: unknown) => e instanceof ClusterError && /partition 0 of fence-changelog holds the marker of epoch 7, later than this owner's 2/.test(e.message));
      const lost = new OwnershipLostError('cluster: the session expired during the restore', { partition: 1 });
      await assert.rejects(take(1, async () => Promise.reject(lost)), (e: unknown) => e === lost);
      // A check that passed, but whose lease ran out before the takeover could be sent (a long pause).
      await assert.rejects(take(1, async () => performance.now() - 1), (e: unknown) => e instanceof OwnershipLostError && /partition 1 of fence-changelog: the restore outlived the lease of its ownership check/.test((e as Error).message));

      const admin = client.admin();
      await admin.connect();
      const highs = await admin.fetchTopicOffsets(FENCE_TOPIC).finally(() => admin.disconnect());
      for (const partition of [0, 1]) {
        const records: ChangelogRecord[] = [];
        const high = Number(highs.find((h) => h.partition === partition)!.high);
        await readChangelog(fenceReader, FENCE_TOPIC, partition, 0, high, { read: (r) => void records.push(r) }, 30_000);
        const old = partition === 0 ? 7 : 1;
        const markers = partition === 0 ? [['epoch', 2]] : [['epoch', 2], ['epoch', 2]];
        assert.deepEqual(records.map((r) => [r.kind, r.epoch]), [['epoch', old], ['takeover', old], ['entry', old], ['end', old], ...markers], `partition ${partition}: only the new owner's markers after the old owner's records`);
      }
    } finally {
      await fenceReader.stop();
    }
  });
});
