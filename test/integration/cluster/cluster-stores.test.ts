import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { Kafka, logLevel, type Message } from 'kafkajs';
import { waitUntil } from '../../wait.js';
import { writeBehind } from '../../helpers.js';
import { repartitionTopic } from '../../../src/cluster/topics.js';
import { decodeEntry } from '../../../src/storage/codec.js';
import { murmur2Partitioner } from '../../../src/engine/partitioner.js';
import { FORMAT_VERSION, readLayout, writeLayout } from '../../../src/storage/partition/batch-log.js';
import { openPartitionStore, partitionPath } from '../../../src/storage/partition/store.js';
import { highWatermarks, type ChildProcessLines } from '../job-process.js';
import { settle, useClusterJobs } from './scenario.js';

describe("a cluster instance's stores: what it refuses, reuses and restores, and what a cut leaves (real ZooKeeper, mock cluster of 3 brokers)", () => {
  const cluster = useClusterJobs();
  const { newJob } = cluster;

  it('an instance whose folder holds a store a newer statestream wrote fails, naming the store and its format, and leaves the store as it was', async () => {
    const job = await newJob('wc-newer', { partitions: 2, sourcePartitions: 1 });
    // Partition 1's store, as a later version of statestream would leave it.
    const path = partitionPath(job.dataDir('solo'), 0, 1);
    const newer = { numPartitions: 2, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION + 1, timeIndexed: false, stateVersion: 1 };
    const written = openPartitionStore(path);
    writeLayout(written, newer);
    await written.env.close();
    const solo = await job.start('solo');
    const released = await solo.waitForLine(/^RELEASED 1 \d+ failed /, { from: 0, timeoutMs: 60_000 });
    assert.ok(released.includes(`partition 1 of mapWithState stream 0 at ${path} is in store format ${FORMAT_VERSION + 1}, written by a newer statestream`), released);
    // From the start, and FAILED from the released line on: each follows the line before it at
    // once, often in the same chunk of output, and a wait for lines after the call would miss it.
    const failed = await solo.waitForLine(/^FAILED /, { from: solo.lines.indexOf(released), timeoutMs: 30_000 });
    const error = JSON.parse(failed.slice('FAILED '.length)) as { name: string; message: string };
    assert.equal(error.name, 'StoreMismatchError', failed);
    assert.equal((await solo.exited).code, 1, 'the instance stops');
    const after = openPartitionStore(path);
    try {
      assert.deepEqual(readLayout(after), newer, 'the newer store is neither replaced nor rewritten');
    } finally {
      await after.env.close();
    }
  });

  it('pair messages the repartition topic holds twice (a producer retry that landed twice) are counted once', async () => {
    const job = await newJob('wc-twice', { partitions: 1, sourcePartitions: 1 });
    const a = await job.start('a');
    await job.type(['one two', 'one']);
    await waitUntil('a to count the words', async () => (await job.ask('a', 'GET one')) === 2 && (await job.ask('a', 'GET two')) === 1, { detail: () => a.tail() });
    // Every message of the repartition topic so far, sent again as they were.
    const topic = repartitionTopic(job.appName, 0);
    const [high] = await highWatermarks(cluster.services.kafka.brokers, topic);
    const kafka = new Kafka({ brokers: cluster.services.kafka.brokers, logLevel: logLevel.NOTHING });
    assert.ok(high > 0, 'the pairs went through the repartition topic');
    const consumer = kafka.consumer({ groupId: 'wc-twice-copier' });
    const messages: Message[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => void messages.push({ key: message.key, value: message.value, headers: message.headers }) });
      await waitUntil('the copier to read the repartition topic', () => messages.length >= high);
    } finally {
      await consumer.disconnect();
    }
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic, acks: -1, messages: messages.map((m) => ({ ...m, partition: 0 })) }).finally(() => producer.disconnect());
    await job.type(['two']);
    await waitUntil('a to count the word typed after the copies', async () => (await job.ask('a', 'GET two')) === 2, { detail: () => a.tail() });
    assert.equal(await job.ask('a', 'GET one'), 2, 'the pairs read twice are counted once');
  });

  it('a backlog of pairs is applied at most maxPairsPerBatch a batch', async () => {
    const job = await newJob('wc-backlog', { partitions: 1, sourcePartitions: 1 });
    // 6000 pairs at once: stage 1 sends them in messages of 500; a batch takes two of them.
    await job.type(Array.from({ length: 600 }, () => 'w w w w w w w w w w'));
    const a = await job.start('a', 'fixture', { maxPairsPerBatch: 1000 });
    await waitUntil('a to count the backlog', async () => (await job.ask('a', 'GET w')) === 6000, { detail: () => a.tail() });
    const applied = a.lines.filter((l) => l.startsWith('APPLIED ')).map((l) => Number(l.split(' ')[2]));
    assert.equal(applied.reduce((n, k) => n + k, 0), 6000, a.tail());
    assert.ok(applied.every((n) => n <= 1000), `batches of at most 1000 pairs: ${applied.join(', ')}`);
  });

  it('a batch whose changelog write outlives the lease of its ownership check is not committed: the partition is given up, and the counts stay exact', async () => {
    const job = await newJob('wc-slow-changelog', { partitions: 1, sourcePartitions: 1 });
    const { kafka } = cluster.services;
    // The changelog on broker 3, everything else of the job on broker 1.
    await kafka.setLeader(`${job.appName}-0-changelog`, 0, 3);
    await kafka.setLeader(`${job.appName}-0-repartition`, 0, 1);
    await kafka.setLeader(job.topic, 0, 1);
    const a = await job.start('a');
    await job.type(['one']);
    await waitUntil('a to count the first word', async () => (await job.ask('a', 'GET one')) === 1, { detail: () => a.tail() });
    const from = a.lines.length;
    // Each answer of broker 3 now comes after the lease of a 4 s session (two thirds of it) ran out.
    await kafka.setRtt(3, 4000);
    try {
      await job.type(['one']);
      await a.waitForLine(/^RELEASED 0 \d+ lost$/, { from, timeoutMs: 60_000 });
    } finally {
      await kafka.setRtt(3, 0);
    }
    await waitUntil('a to count the second word once it has the partition again', async () => (await job.ask('a', 'GET one')) === 2, { timeoutMs: 60_000, detail: () => a.tail() });
  });

  it("a dead letter moves with its partition: the instance that restores it from the changelog lists it once, as its first owner did", async () => {
    const job = await newJob('wc-letters', { partitions: 2, sourcePartitions: 1 });
    const a = await job.start('a', 'fixture', { deadLetters: true });
    await job.type(['one POISON two', 'three one']);
    type Letter = { batchTime: number; partition: number; index: number; key: unknown; value: unknown; attempts: number; error: { message: string } };
    const lettersOf = async (id: string) => (await job.ask(id, 'LETTERS')) as Letter[];
    const listed = await waitUntil('a to count the words and dead-letter POISON', async () => {
      const letters = await lettersOf('a');
      return letters.length > 0 && (await job.ask('a', 'GET one')) === 2 && (await job.ask('a', 'GET three')) === 1 ? letters : undefined;
    }, { detail: () => a.tail() });
    assert.equal(listed.length, 1, JSON.stringify(listed));
    assert.deepEqual([listed[0].key, listed[0].value, listed[0].attempts, listed[0].partition], ['POISON', 1, 2, murmur2Partitioner.partition('POISON', 2)]);
    assert.match(listed[0].error.message, /the word POISON cannot be counted/);
    assert.equal((await a.stop('SIGTERM')).code, 0);

    // b's folder is empty: it rebuilds both partitions from the changelog alone.
    const b = await job.start('b', 'fixture', { deadLetters: true });
    await waitUntil('b to restore the counts', async () => (await job.ask('b', 'GET one')) === 2 && (await job.ask('b', 'GET three')) === 1, { detail: () => b.tail() });
    assert.deepEqual(await lettersOf('b'), listed, 'the letter a recorded, once, with its batch, record index, attempts and error');
    assert.ok(b.lines.filter((l) => l.startsWith('TAKEN ')).every((l) => !l.endsWith(' reused')), `b rebuilt its stores: ${b.tail()}`);
    // The key counts came with the changelog's batch ends: one, two and three, before b's own first batch.
    const keys = (await job.ask('b', 'METRICS statestream_state_keys')) as Array<{ value: number }>;
    assert.equal(keys.reduce((n, k) => n + k.value, 0), 3, JSON.stringify(keys));
  });

  it('an instance whose folder holds what a single-process job wrote, or a store for another partition count, fails naming it and leaves the store as it was', async () => {
    const job = await newJob('wc-foreign', { partitions: 2, sourcePartitions: 1 });
    const layout = { numPartitions: 2, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed: false, stateVersion: 1 };
    /** Starts the instance and returns its error, once it has stopped. */
    const failure = async (partition: number) => {
      const solo = await job.start('solo');
      await solo.waitForLine(new RegExp(`^RELEASED ${partition} \\d+ failed `), { from: 0, timeoutMs: 60_000 });
      const failed = await solo.waitForLine(/^FAILED /, { from: 0, timeoutMs: 30_000 });
      assert.equal((await solo.exit('the instance to stop after FAILED')).code, 1, 'the instance stops');
      return JSON.parse(failed.slice('FAILED '.length)) as { name: string; message: string };
    };
    // Partition 1 as a single-process job left it: a batch of its own, no changelog position.
    const path = partitionPath(job.dataDir('solo'), 0, 1);
    const written = openPartitionStore(path);
    writeLayout(written, layout);
    await written.env.close();
    writeBehind(path, 5000, [['kept', 7]]);
    const single = await failure(1);
    assert.equal(single.name, 'ClusterError');
    assert.match(single.message, /the store of partition 1 of stream 0 under .* holds state a single-process job wrote/);
    const after = openPartitionStore(path);
    try {
      assert.equal(decodeEntry<number>(after.state.getBinary('kept')!)[0], 7, 'the state it holds is not replaced');
    } finally {
      await after.env.close();
    }

    // Partition 0 written for three partitions (the other store gone).
    rmSync(path, { recursive: true });
    const other = openPartitionStore(partitionPath(job.dataDir('solo'), 0, 0));
    writeLayout(other, { ...layout, numPartitions: 3 });
    await other.env.close();
    const mismatch = await failure(0);
    assert.equal(mismatch.name, 'ConfigError');
    assert.match(mismatch.message, /the store of partition 0 of stream 0 under .* was written for 3 partitions, not 2/);
  });

  it('an instance restarted without its timeout and then with it again times keys out from their last update, on stores it reused', async () => {
    const job = await newJob('wc-timeout-changed', { partitions: 2, sourcePartitions: 1 });
    // Well past the second between the first count and the stop: a loaded machine's backlog
    // of batches (they fall due on the clock) once reached past 1.5 s, and the first run
    // timed the word out itself before it stopped.
    const TIMEOUT = 3000;
    /** The batch time at which the instance counted the word. */
    const counted = async (child: ChildProcessLines) => Number((await child.waitForLine(/^BATCH \d+ 1$/, { from: 0, timeoutMs: 60_000 })).split(' ')[1]);
    // With the timeout: the key's time is indexed. Without it: its index entry is left as it was.
    const first = await job.start('solo', 'fixture', { timeoutMs: TIMEOUT });
    await job.type(['word']);
    const firstUpdate = await counted(first);
    // Batches after it record a later changelog offset in the store, so a reuse re-reads nothing of it.
    await sleep(1000);
    await first.stop();
    assert.deepEqual(first.lines.filter((l) => l.startsWith('TIMEOUT ')), [], 'the first run stopped before the word could time out');
    const second = await job.start('solo');
    await sleep(Math.max(0, firstUpdate + TIMEOUT + 500 - Date.now()));
    await job.type(['word']);
    const lastUpdate = await counted(second);
    await sleep(1000);
    await second.stop();
    // The same instance and folder: it reuses its stores. The key was last updated at lastUpdate, not firstUpdate.
    const third = await job.start('solo', 'fixture', { timeoutMs: TIMEOUT });
    try {
      const line = await third.waitForLine(/^TIMEOUT /, { from: 0, timeoutMs: 60_000 });
      const [, time, output] = line.split(' ');
      assert.deepEqual(JSON.parse(output), ['timeout', 'word', 2, Number(time)], line);
      assert.ok(Number(time) >= lastUpdate + TIMEOUT, `timed out at ${time}, ${Number(time) - lastUpdate} ms after its last update, with a timeout of ${TIMEOUT} ms`);
      assert.equal(third.lines.filter((l) => /^TAKEN .* reused$/.test(l)).length, 2, `both stores reused, not rebuilt from the changelog: ${third.tail()}`);
      await sleep(1000);
      assert.ok(!third.lines.some((l) => l.startsWith('FAILED')), third.tail());
      // Its metrics show the partitions it owns, and no source it does not open.
      const keys = (await job.ask('solo', 'METRICS statestream_state_keys')) as Array<{ value: number; labels: Record<string, string> }>;
      assert.deepEqual(keys.map((k) => k.labels.partition).sort(), ['0', '1'], JSON.stringify(keys));
      assert.equal(keys.reduce((n, k) => n + k.value, 0), 0, 'the word timed out: no key left');
      assert.deepEqual(await job.ask('solo', 'METRICS statestream_zookeeper_connected'), [], 'no Kafka source of its own reported as cut off from ZooKeeper');
    } finally {
      await third.stop();
    }
  });

  it('an instance stopped with a timeout while its mapping function spins: its threads are cut, the batch fails named, and restarted it counts exactly', async () => {
    const job = await newJob('wc-stop-timeout', { partitions: 2, sourcePartitions: 1 });
    const gate = mkdtempSync(join(tmpdir(), 'statestream-spin-'));
    const first = await job.start('solo', 'fixture', { spinGate: gate, stopTimeoutMs: 500 });
    await job.type(['apple banana', 'cherry apple']);
    await settle(job, ['solo']);
    await job.type(['apple SPIN cherry', 'banana']);
    await waitUntil('the mapping function to spin', () => existsSync(join(gate, 'entered')));
    await first.stop('SIGTERM', 60_000);
    const failed = first.lines.find((l) => l.startsWith('FAILED '));
    assert.ok(failed && JSON.parse(failed.slice('FAILED '.length)).name === 'StopTimeoutError', first.tail());
    // The pair the cut batch held is in the repartition topic, as the first instance mapped
    // it: released, it counts as 1 when the restarted instance applies it again.
    writeFileSync(join(gate, 'released'), '');
    const second = await job.start('solo', 'fixture', { spinGate: gate });
    try {
      const state = await settle(job, ['solo']);
      assert.deepEqual([...state.counts].sort(), [['SPIN', 1], ['apple', 3], ['banana', 2], ['cherry', 2]]);
    } finally {
      await second.stop();
    }
  });
});
