import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, StreamingContext, listSnapshots, type MapWithStateStream, type StateRestoredEvent } from '../../src/index.js';
import { murmur2Partitioner } from '../../src/engine/partitioner.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { BatchLog } from '../../src/storage/partition/batch-log.js';
import { fixture, tempDir } from '../helpers.js';
import { JobProcess, type JobConfig } from './job-process.js';
import { ZooKeeperSession } from '../../src/storage/zookeeper/session.js';
import { ownedOffsetStore } from '../storage/zookeeper/owned-store.js';
import { useServices } from './services/suite.js';
import { openBrowser } from '../ui/browser.js';

// The page's own global, inside page.evaluate (the project compiles without the DOM library).
declare const document: any;

const TIMEOUT_MS = 350;

/** Waits for `check` to hold, failing after `ms` with `what`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('replay after a restore (real ZooKeeper, librdkafka mock broker)', { timeout: 240_000 }, () => {
  const services = useServices();

  // Long enough that the first run stops before K, counted again, could time out a second time.
  // Batches fall due on the clock however slowly they run, and each also snapshots and records
  // its offsets: under load the backlog when K's second count is seen passed 1.5 s.
  const IDLE_MS = 3000;

  function job(dataDir: string, topic: string) {
    // The status page on too: its totals follow the same rule as the metrics.
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, appName: 'replay-timeouts', snapshotEvery: 1, snapshotsKept: 200, metrics: {}, ui: { port: 0 } });
    const outputs: Array<{ time: number; records: unknown[] }> = [];
    const stream = ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `${topic}-${Date.now()}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/${topic}` }, groupSessionTimeoutMs: 6000 })
      .map((record) => [record.value as string, 1] as [string, number])
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('idle-count')).numPartitions(1).timeout(IDLE_MS));
    stream.foreachBatch((records, time) => void (records.length > 0 && outputs.push({ time, records })));
    return { ssc, stream: stream as MapWithStateStream<string, number, unknown>, outputs };
  }

  /**
   * Records a batch without records as in flight under `root`, as a crash inside it leaves
   * ZooKeeper, and returns its time. It comes after the last batch recorded as ended (a stop
   * can follow a batch by less than its interval): a batch in flight at or before that one is
   * ended, and is not re-run.
   */
  async function leaveBatchInFlight(root: string): Promise<number> {
    const session = new ZooKeeperSession({ connect: services.zk.connectString });
    try {
      const offsets = await ownedOffsetStore(session, root);
      const lastEnded = (await offsets.lastEnded()) ?? 0;
      await until(() => Date.now() - 50 > lastEnded, 5_000, 'the clock to pass the last ended batch');
      const time = Date.now() - 50;
      await offsets.recordBatchStart({ batchTime: time, ranges: [] });
      await offsets.release();
      return time;
    } finally {
      session.close();
    }
  }

  it('re-runs the batches that had no records, so a key times out in the restored partition as it did, and then starts afresh', async () => {
    const topic = 'idle-then-back';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');

    const first = job(dataDir, topic);
    await first.ssc.start();
    let firstRecord: number;
    let timedOutAt: number;
    try {
      await services.producer.send({ topic, messages: [{ value: 'K' }] });
      await until(() => first.outputs.length >= 1, 60_000, 'K counted');
      firstRecord = first.outputs[0].time;
      assert.deepEqual(first.outputs[0].records, [['K', 1]]);
      // K idles through empty batches and times out in one of them.
      await until(() => first.outputs.length >= 2, 60_000, 'K timed out');
      timedOutAt = first.outputs[1].time;
      assert.deepEqual(first.outputs[1].records, [['timeout', 'K', 1, timedOutAt]]);
      await services.producer.send({ topic, messages: [{ value: 'K' }] });
      await until(() => first.outputs.length >= 3, 60_000, 'K counted again');
      assert.deepEqual(first.outputs[2].records, [['K', 1]], 'a timed-out key starts afresh');
      await first.ssc.awaitIdle();
    } finally {
      await first.ssc.stop();
    }
    assert.equal(first.outputs.length, 3, `the first run stopped before K timed out again: ${JSON.stringify(first.outputs)}`);

    // Keep only a snapshot from before the timeout, in which K still holds 1, and lose the store.
    const kept = listSnapshots(dataDir).filter((s) => s.batchTime >= firstRecord && s.batchTime < timedOutAt);
    assert.ok(kept.length > 0, `a snapshot between ${firstRecord} and ${timedOutAt}`);
    for (const s of listSnapshots(dataDir)) if (s.batchTime !== kept[0].batchTime) rmSync(s.path, { recursive: true });
    rmSync(partitionPath(dataDir, 0, 0), { recursive: true });

    const second = job(dataDir, topic);
    const restored: StateRestoredEvent[] = [];
    second.ssc.on(BatchEvents.STATE_RESTORED, (e) => restored.push(e));
    // The last-batch gauge as each batch left it (read once the batch's listeners, the metrics' among them, have run).
    const gaugeAfter: Array<{ origin: string; batchTime: number; gauge: number | undefined }> = [];
    second.ssc.on(BatchEvents.COMPLETED, (e) => {
      void second.ssc.metricsRegistry.getSingleMetric('statestream_last_batch_timestamp_seconds')!.get().then((m) => gaugeAfter.push({ origin: e.origin, batchTime: e.batchTime, gauge: m.values[0]?.value }));
    });
    await second.ssc.start();
    try {
      await second.ssc.awaitIdle();
      assert.equal(restored[0]?.snapshot, kept[0].batchTime);
      // Re-run batches run no outputs, so the first output is a live batch's: once the source
      // reads again, K (last updated in the first run) times out. Its value says what the re-runs
      // left: 1 if K timed out in a re-run empty batch and its record started it afresh, 2 had the
      // empty batch been skipped. Nothing changes after it.
      await until(() => second.outputs.length > 0, 60_000, 'K timed out in a live batch');
      assert.deepEqual(second.outputs.map((o) => o.records), [[['timeout', 'K', 1, second.outputs[0].time]]], 'K held 1: it timed out in a re-run empty batch, then its record started it afresh');
      assert.equal(second.stream.store().get('K'), undefined);
      await second.ssc.awaitIdle();
      // The re-runs are batches the job ran again, not records or timeouts it met again: the only
      // timeout counted is the live one.
      const metric = async (name: string, labels: Record<string, string> = {}) =>
        (await second.ssc.metricsRegistry.getSingleMetric(name)!.get()).values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0);
      assert.ok((await metric('statestream_batches_total', { outcome: 'replayed' })) >= 2, 'the batches since the snapshot (the timeout, K again) were re-run');
      assert.equal(await metric('statestream_records_total'), 0, 'no record was new to this run');
      assert.equal(await metric('statestream_keys_timed_out_total'), 1, 'one key timed out anew in this run: K, in a live batch');
      // Their batch times are the first run's: no delay of theirs is a queue's, and the last-batch gauge never went back to them.
      const replayed = await metric('statestream_batches_total', { outcome: 'replayed' });
      const live = await metric('statestream_batches_total', { outcome: 'completed' });
      const observed = async (histogram: string) =>
        (await second.ssc.metricsRegistry.getSingleMetric(histogram)!.get()).values.filter((v) => (v as { metricName?: string }).metricName === `${histogram}_count`).reduce((n, v) => n + v.value, 0);
      assert.equal(await observed('statestream_batch_processing_seconds'), replayed + live);
      assert.equal(await observed('statestream_batch_scheduling_delay_seconds'), live, 'scheduling delays of the live batches only');
      assert.equal(await observed('statestream_batch_total_delay_seconds'), live);
      assert.ok(gaugeAfter.some((g) => g.origin === 'replay') && gaugeAfter.some((g) => g.origin === 'live'), JSON.stringify(gaugeAfter));
      for (const g of gaugeAfter) assert.equal(g.gauge, g.origin === 'replay' ? undefined : g.batchTime / 1000, `the last-batch gauge after batch ${g.batchTime} (${g.origin})`);
      const status = (await (await fetch(`${second.ssc.endpoints().ui}api/status`)).json()) as { totals: { batches: number; replayed: number; records: number; keysTimedOut: number }; batches: Array<{ origin?: string }> };
      assert.equal(status.totals.replayed, replayed, 'the page counts the re-runs apart, as the metrics do');
      assert.ok(status.totals.batches >= live, JSON.stringify(status.totals));
      assert.equal(status.batches.filter((b) => b.origin === 'replay').length, replayed, 'the page knows which batches were re-runs');
      // The page's charts and averages leave the re-runs out: they hold the other completed batches of its document.
      const browser = await openBrowser();
      try {
        const page = await browser.newPage();
        await page.goto(second.ssc.endpoints().ui!);
        await page.waitForFunction(() => document.body.dataset.rerunsLeftOut !== undefined);
        const { charted, leftOut } = await page.evaluate(() => ({ charted: Number(document.body.dataset.completedBatches), leftOut: Number(document.body.dataset.rerunsLeftOut) }));
        assert.equal(leftOut, replayed, 'every re-run is left out of the charts');
        assert.ok(charted > 0, 'the live batches are charted');
      } finally {
        await browser.close();
      }
      assert.deepEqual([status.totals.records, status.totals.keysTimedOut], [0, 1], 'the status page counts no record or timeout of a re-run batch');
    } finally {
      await second.ssc.stop();
    }
  });

  it('a crash in an idle sweep after one partition committed it: the sweep is re-run, and every key times out once, at that batch time', async () => {
    const topic = 'crash-in-sweep';
    await services.kafka.createTopic(topic, 1);
    // Two keys in different state partitions, so that one partition's sweep commits before the other's kills the job.
    const keys = ['K0', 'K1', 'K2', 'K3', 'K4', 'K5'];
    const a = keys[0];
    const b = keys.find((k) => murmur2Partitioner.partition(k, 2) !== murmur2Partitioner.partition(a, 2))!;
    const config: JobConfig = {
      brokers: services.kafka.brokers, topic, zookeeper: services.zk.connectString, zkRoot: `/statestream/${topic}`, dataDir: join(tempDir(), 'data'),
      groupId: `group-${topic}`, batchMs: 100, partitions: 2, maxRecordsPerBatch: 50, threads: 1, mapping: 'idle-count-or-die', timeoutMs: TIMEOUT_MS,
    };
    const outputs = (job: JobProcess) =>
      job.lines.filter((l) => l.startsWith('OUTPUT ')).flatMap((l) => (JSON.parse(l.split(' ').slice(3).join(' ')) as string[]).map((r) => ({ time: Number(l.split(' ')[1]), record: JSON.parse(r) as unknown[] })));

    // One worker applies both partitions in turn: the second timeout it meets is in the second partition's sweep.
    const first = new JobProcess(config, { STATESTREAM_TEST_DIE_AT_TIMEOUT: '2' });
    await first.waitForLine(/^STARTED$/, { from: 0, timeoutMs: 60_000 });
    await services.producer.send({ topic, messages: [{ value: a }, { value: b }] });
    assert.equal((await first.exit('the job to die in its idle sweep')).signal, 'SIGKILL');
    const counted = outputs(first);
    assert.deepEqual(counted.map((o) => o.record).sort(), [[a, 1], [b, 1]], `both keys counted, nothing timed out: ${first.tail()}`);
    assert.equal(new Set(counted.map((o) => o.time)).size, 1, 'both keys counted in one batch, so they time out in one sweep');
    // The premise: one partition committed the sweep the job died in, the other did not.
    const diedInSweep = Number(first.lines.filter((l) => l.startsWith('BEGIN ')).at(-1)!.split(' ')[1]);
    const lastBatches = [0, 1].map((p) => {
      const store = openPartitionStore(partitionPath(config.dataDir, 0, p));
      try {
        return new BatchLog(store).last()?.batchTime;
      } finally {
        store.env.close();
      }
    });
    assert.equal(lastBatches.filter((t) => t === diedInSweep).length, 1, `exactly one partition holds batch ${diedInSweep}: ${JSON.stringify(lastBatches)}`);

    const second = new JobProcess(config);
    try {
      await second.waitForLine(/^STARTED$/, { from: 0, timeoutMs: 60_000 });
      await until(() => outputs(second).length >= 1, 60_000, 'a timeout output');
      // Long enough for a key the re-run missed to time out later.
      await new Promise((r) => setTimeout(r, 5 * config.batchMs + 3 * TIMEOUT_MS));
    } finally {
      await second.stop();
    }
    const timedOut = outputs(second);
    assert.equal(timedOut.length, 2, `each key timed out once: ${JSON.stringify(timedOut)}`);
    const sweep = timedOut[0].time;
    const diedIn = Number(first.lines.filter((l) => l.startsWith('BEGIN ')).at(-1)!.split(' ')[1]);
    assert.ok(diedIn >= counted[0].time + TIMEOUT_MS, `the first run died in the sweep at ${diedIn}`);
    assert.equal(sweep, diedIn, 'the timeouts are output at the batch time of the sweep the first run died in');
    assert.deepEqual(
      timedOut.map((o) => o.record).sort(),
      [['timeout', a, 1, sweep], ['timeout', b, 1, sweep]].sort(),
      'both keys timed out in the re-run sweep, at its batch time, in one batch',
    );
    assert.ok(timedOut.every((o) => o.time === sweep));
  });

  it('a batch without records left in flight is re-run once, and cleared, by a start whose spec no longer has the timeout', async () => {
    const topic = 'stale-empty';
    const root = `/statestream/${topic}`;
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    const run = async (withTimeout: boolean) => {
      const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, appName: 'stale-empty' });
      const spec = StateSpec.function<string, number, number, unknown>(fixture('idle-count')).numPartitions(2);
      const counts = ssc
        .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `${topic}-${Date.now()}`, zookeeper: { connect: services.zk.connectString, root }, groupSessionTimeoutMs: 6000 })
        .map((record) => [record.value as string, 1] as [string, number])
        .mapWithState(withTimeout ? spec.timeout(60_000) : spec);
      const times: number[] = [];
      counts.foreachBatch((_records, time) => void times.push(time));
      await ssc.start();
      try {
        if (withTimeout) await services.producer.send({ topic, messages: [{ value: 'a' }] });
        await until(() => times.length >= 5, 60_000, 'five batches');
        await ssc.awaitIdle();
      } finally {
        await ssc.stop();
      }
      return times;
    };
    await run(true);
    // As a job with the timeout leaves ZooKeeper when it dies inside an idle sweep at batch T.
    const T = await leaveBatchInFlight(root);
    assert.ok((await run(false)).includes(T), 'the next start re-runs batch T');
    assert.ok(!(await run(false)).includes(T), 'the start after it does not: its end was recorded');
  });

  it('a rebuilt batch that fails before the start is over (its batch.started listener throws) fails the start', async () => {
    const topic = 'replay-fails-start';
    const root = `/statestream/${topic}`;
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');
    const context = () => {
      const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, appName: topic });
      ssc
        .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `${topic}-${Date.now()}`, zookeeper: { connect: services.zk.connectString, root }, groupSessionTimeoutMs: 6000 })
        .map((record) => [record.value as string, 1] as [string, number])
        .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2));
      return ssc;
    };
    const first = context();
    await first.start();
    await services.producer.send({ topic, messages: [{ value: 'a' }] });
    await first.awaitIdle();
    await first.stop();
    // A batch left in flight, as a crash inside it leaves ZooKeeper: the next start rebuilds it first.
    const T = await leaveBatchInFlight(root);
    const again = context();
    const failed: number[] = [];
    again.on(BatchEvents.STARTED, ({ batchTime }) => {
      if (batchTime === T) throw new Error(`refusing batch ${batchTime}`);
    });
    again.on(BatchEvents.FAILED, ({ batchTime }) => void failed.push(batchTime));
    await assert.rejects(again.start(), new RegExp(`refusing batch ${T}`));
    assert.deepEqual(failed, [T], 'the rebuilt batch is reported failed');
    assert.equal(again.state, 'stopped');
  });
});
