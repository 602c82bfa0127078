import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Gauge, Registry } from 'prom-client';
import { BatchEvents, ConfigError, ManualClock, StateSpec, StreamingContext, murmur2Partitioner, type BatchCompletedEvent, type SnapshotCompletedEvent } from '../../src/index.js';
import type { FaultyValue } from '../fixtures/faulty.js';
import { listSnapshots } from '../../src/storage/snapshots/manifest.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { freePort } from '../integration/services/zookeeper.js';
import { nextEvent } from '../wait.js';
import { byLabel, curl, parseSamples, sample, scrape } from './scrape.js';

/** A request with a target fetch would not send as given. */
async function raw(url: string, target: string): Promise<string> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.end(`GET ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

// Each test fails rather than hangs when a batch or a service never answers.
describe('Prometheus metrics', { timeout: 180_000 }, () => {
  it('curl of /metrics during a running job shows what the batch events said: batches, delays, records, state per partition, timeouts, snapshots', async () => {
    const spec = StateSpec.function<string, number, number, unknown>(fixture('idle-count')).numPartitions(3).timeout(1500);
    const dataDir = tempDir();
    const job = await keyedJob(spec, { dataDir, snapshotEvery: 2, metrics: { port: 0 }, appName: 'metrics-test' });
    const completed: BatchCompletedEvent[] = [];
    const snapshots: SnapshotCompletedEvent[] = [];
    job.ssc.on(BatchEvents.COMPLETED, (e) => void completed.push(e));
    job.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => void snapshots.push(e));
    const url = job.ssc.endpoints().metrics!;
    try {
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      // Keys a0…a29 once, then only b-keys: the a-keys go idle and time out.
      await job.batch(Array.from({ length: 30 }, (_, i): [string, number] => [`a${i}`, 1]));
      for (let b = 2; b <= 4; b++) {
        // A snapshot still copying is not stacked with another: each one is awaited.
        const copied = b % 2 === 0 ? nextEvent(job.ssc, BatchEvents.SNAPSHOT_COMPLETED, `the snapshot of batch ${b * 1000}`) : undefined;
        await job.batch(Array.from({ length: 10 * b }, (_, i): [string, number] => [`b${i % 17}`, 1]));
        await copied;
      }
      const samples = await scrape(url);
      const app = { app: 'metrics-test' };

      assert.equal(completed.length, 4);
      assert.equal(sample(samples, 'statestream_batches_total', { ...app, outcome: 'completed' }), completed.length);
      assert.equal(sample(samples, 'statestream_batch_processing_seconds_count', app), completed.length);
      assert.ok(close(sample(samples, 'statestream_batch_processing_seconds_sum', app), completed.reduce((n, e) => n + e.processingTimeMs / 1000, 0)));
      assert.ok(close(sample(samples, 'statestream_batch_scheduling_delay_seconds_sum', app), completed.reduce((n, e) => n + e.schedulingDelayMs / 1000, 0)));
      assert.ok(close(sample(samples, 'statestream_batch_total_delay_seconds_sum', app), completed.reduce((n, e) => n + (e.schedulingDelayMs + e.processingTimeMs) / 1000, 0)));
      // The histogram's buckets hold each batch where its processing time falls.
      const under = (s: number) => completed.filter((e) => e.processingTimeMs / 1000 <= s).length;
      for (const le of ['0.01', '0.1', '1', '+Inf']) assert.equal(sample(samples, 'statestream_batch_processing_seconds_bucket', { ...app, le }), under(Number(le === '+Inf' ? Infinity : le)), `bucket le=${le}`);
      assert.equal(sample(samples, 'statestream_records_total', app), completed.reduce((n, e) => n + e.records, 0));
      const timedOut = completed.reduce((n, e) => n + e.keysTimedOut, 0);
      assert.equal(timedOut, 30, 'every a-key timed out');
      assert.equal(sample(samples, 'statestream_keys_timed_out_total', app), timedOut);
      assert.equal(sample(samples, 'statestream_last_batch_timestamp_seconds', app), completed.at(-1)!.batchTime / 1000);
      assert.equal(sample(samples, 'statestream_batch_interval_seconds', app), 1);
      assert.equal(sample(samples, 'statestream_job_failed', app), 0);

      // State per partition: the keys the store holds, routed as the router routes them.
      const expected = [0, 0, 0];
      for (const [key] of job.stream.store().entries()) expected[murmur2Partitioner.partition(key, 3)]++;
      assert.equal(expected.reduce((a, b) => a + b), 17);
      const keys = byLabel(samples.filter((s) => s.labels.stream === '0'), 'statestream_state_keys', 'partition');
      assert.deepEqual([0, 1, 2].map((p) => keys.get(String(p))), expected);
      const bytes = byLabel(samples, 'statestream_state_bytes', 'partition');
      for (const p of [0, 1, 2]) assert.ok(bytes.get(String(p))! > 0 && bytes.get(String(p))! % 4096 === 0, `partition ${p}: ${bytes.get(String(p))} bytes in whole pages`);

      // Memory per partition, and where each batch's reads came from, as the events reported them.
      const memory = byLabel(samples.filter((s) => s.labels.stream === '0'), 'statestream_state_memory_entries', 'partition');
      assert.deepEqual([0, 1, 2].map((p) => memory.get(String(p))), completed.at(-1)!.partitionStats[0].map((p) => p.memoryEntries));
      // No bound: each partition's memory holds the keys its store holds (the a-keys went with their timeout).
      assert.deepEqual([0, 1, 2].map((p) => memory.get(String(p))), expected);
      for (const from of ['memory', 'lmdb'] as const) {
        const total = samples.filter((s) => s.name === 'statestream_state_reads_total' && s.labels.from === from).reduce((n, s) => n + s.value, 0);
        const reported = completed.flatMap((e) => e.partitionStats[0]).reduce((n, p) => n + (from === 'memory' ? p.memoryHits : p.storeReads), 0);
        assert.equal(total, reported, `reads from ${from}`);
      }
      assert.ok(completed.flatMap((e) => e.partitionStats[0]).reduce((n, p) => n + p.memoryHits, 0) > 0, 'the b-keys were read from memory after their first batch');

      assert.equal(snapshots.length, 2);
      assert.equal(sample(samples, 'statestream_snapshot_duration_seconds_count', app), snapshots.length);
      assert.ok(close(sample(samples, 'statestream_snapshot_duration_seconds_sum', app), snapshots.reduce((n, e) => n + e.durationMs / 1000, 0)));
      assert.equal(sample(samples, 'statestream_snapshot_bytes', app), snapshots.at(-1)!.bytes);
      const lastSuccess = sample(samples, 'statestream_snapshot_last_success_timestamp_seconds', app);
      assert.ok(Math.abs(lastSuccess - Date.now() / 1000) < 120, `last success ${lastSuccess} is recent`);

      // Another batch moves the figures, as a later scrape shows.
      await job.batch([['c', 1]]);
      const later = await scrape(url);
      assert.equal(sample(later, 'statestream_batch_processing_seconds_count', app), 5);
      assert.equal(sample(later, 'statestream_state_keys', { stream: '0', partition: String(murmur2Partitioner.partition('c', 3)) }), expected[murmur2Partitioner.partition('c', 3)] + 1);
      await assert.rejects(curl(url.replace('/metrics', '/other')), /returned error: 404/, 'only /metrics is served');
      // What Prometheus reads: its text format's content type, and a HELP and TYPE line for each metric.
      const served = await fetch(url);
      assert.equal(served.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      // Nothing cached or sniffed, as every answer of the page's server.
      for (const answer of [served, await fetch(url.replace('/metrics', '/other'))]) {
        assert.deepEqual([answer.headers.get('cache-control'), answer.headers.get('x-content-type-options')], ['no-store', 'nosniff'], String(answer.status));
      }
      const text = await served.text();
      for (const [name, type] of [['statestream_batches_total', 'counter'], ['statestream_batch_processing_seconds', 'histogram'], ['statestream_state_keys', 'gauge'], ['statestream_partition_restarts_total', 'counter']]) {
        assert.match(text, new RegExp(`^# HELP ${name} \\S.*\n# TYPE ${name} ${type}$`, 'm'), name);
      }
      // Reading, and only reading: HEAD gives the headers alone, another method 405, a target that is no path 400.
      const head = await fetch(url, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), '');
      const post = await fetch(url, { method: 'POST', body: 'x' });
      assert.deepEqual([post.status, post.headers.get('allow')], [405, 'GET, HEAD']);
      assert.match(await raw(url, '//'), /^HTTP\/1\.1 400 /);
    } finally {
      await job.ssc.stop();
    }
    // Stopped: the server is closed, and its address no longer given.
    assert.deepEqual(job.ssc.endpoints(), {});
    await assert.rejects(curl(url));

    // Started again: the newest snapshot's time from its first batch, before this run takes one.
    const again = await keyedJob(spec, { dataDir, snapshotEvery: 100, metrics: { port: 0 }, appName: 'metrics-test', startMs: 100_000 });
    try {
      await again.batch([['d', 1]]);
      const samples = await scrape(again.ssc.endpoints().metrics!);
      const newest = listSnapshots(dataDir)[0];
      assert.equal(sample(samples, 'statestream_snapshot_last_success_timestamp_seconds', { app: 'metrics-test' }), statSync(join(newest.path, 'manifest.json')).mtimeMs / 1000);
      assert.equal(sample(samples, 'statestream_snapshot_failures_total', { app: 'metrics-test' }), 0);
    } finally {
      await again.ssc.stop();
    }
  });

  it('counts partition restarts and dead letters per partition, and a failed job', async () => {
    const dir = tempDir();
    const spec = StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty')).numPartitions(2).onRecordFailure({ policy: 'dead-letter', maxAttempts: 2 });
    const job = await keyedJob(spec, { dataDir: join(dir, 'data'), metrics: { port: 0 } });
    const restarted = nextEvent(job.ssc, BatchEvents.PARTITION_RESTARTED, 'the partition restart');
    try {
      await job.batch([['x', { exitOnce: join(dir, 'crashed') }], ['p', { poison: true }], ['q', { poison: true }], ['ok', 1]]);
      const restart = await restarted;
      const samples = await scrape(job.ssc.endpoints().metrics!);
      const app = { app: 'statestream' };
      assert.equal(sample(samples, 'statestream_partition_restarts_total', { ...app, stream: '0', partition: String(restart.partition) }), 1);
      const letters = job.stream.deadLetters();
      assert.equal(letters.length, 2);
      for (const p of [0, 1]) {
        assert.equal(sample(samples, 'statestream_dead_letters_total', { ...app, stream: '0', partition: String(p) }), letters.filter((l) => l.partition === p).length, `partition ${p}`);
      }
      assert.equal(sample(samples, 'statestream_job_failed', app), 0);
    } finally {
      await job.ssc.stop();
    }

    const stopping = await keyedJob(spec.onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir: join(dir, 'stop'), metrics: { port: 0 } });
    try {
      await assert.rejects(stopping.batch([['p', { poison: true }]]), /poisoned record for p/);
      const samples = await scrape(stopping.ssc.endpoints().metrics!);
      assert.equal(sample(samples, 'statestream_job_failed', { app: 'statestream' }), 1);
      assert.equal(sample(samples, 'statestream_batches_total', { app: 'statestream', outcome: 'failed' }), 1);
    } finally {
      await stopping.ssc.stop();
    }
  });

  it('a batch a batch.completed listener fails is counted once: as completed on /metrics (its state and outputs are done) with the job failed, as failed on the status page', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir(), metrics: { port: 0 }, ui: { port: 0 } });
    try {
      await job.batch([['k', 1]]);
      job.ssc.on(BatchEvents.COMPLETED, () => {
        throw new Error('the sink is away');
      });
      await assert.rejects(job.batch([['k', 1], ['l', 1]]), /the sink is away/);
      const samples = await scrape(job.ssc.endpoints().metrics!);
      const app = { app: 'statestream' };
      assert.equal(sample(samples, 'statestream_batches_total', { ...app, outcome: 'completed' }), 2);
      assert.equal(sample(samples, 'statestream_batches_total', { ...app, outcome: 'failed' }), 0);
      assert.equal(sample(samples, 'statestream_job_failed', app), 1);
      const status = JSON.parse(await curl(`${job.ssc.endpoints().ui!}api/status`)) as { totals: { batches: number; failed: number; records: number }; batches: Array<{ batchTime: number; status: string }> };
      assert.deepEqual(status.totals && { batches: status.totals.batches, failed: status.totals.failed, records: status.totals.records }, { batches: 1, failed: 1, records: 1 }, 'the records of the batches counted completed');
      assert.deepEqual(status.batches.map((b) => b.status), ['completed', 'failed'], 'one row per batch');
    } finally {
      await job.ssc.stop();
    }
  });

  it('registers on the service\'s own registry without serving, and validates the options when the context is made', async () => {
    const registry = new Registry();
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir(), metrics: { registry }, appName: 'own-registry' });
    try {
      assert.equal(job.ssc.metricsRegistry, registry);
      assert.deepEqual(job.ssc.endpoints(), {});
      await job.batch([['k', 1], ['l', 1]]);
      const samples = parseSamples(await registry.metrics());
      assert.equal(sample(samples, 'statestream_records_total', { app: 'own-registry' }), 2);
      assert.equal([...byLabel(samples, 'statestream_state_keys', 'partition').values()].reduce((a, b) => a + b), 2);
    } finally {
      await job.ssc.stop();
    }
    const bad: Array<[unknown, RegExp]> = [
      [{ port: -1 }, /metrics\.port must be an integer from 0 to 65535/],
      [{ port: 65536 }, /metrics\.port must be an integer from 0 to 65535/],
      [{ port: 9464.5 }, /metrics\.port/],
      [{ port: 9464, bogus: 1 }, /unknown option "metrics\.bogus"/],
      [{ registry: {} }, /metrics\.registry must be a prom-client Registry/],
      [{ registry: null }, /metrics\.registry must be a prom-client Registry/],
      // Duck-typed, but whole: a registry a scrape cannot read is refused too.
      [{ registry: { registerMetric() {}, getSingleMetric() {} } }, /metrics\.registry must be a prom-client Registry/],
      [{ host: 'not a host' }, /metrics\.host must be a host name/],
      [{ host: '0.0.0.0' }, /metrics\.host is "0\.0\.0\.0" but metrics\.port is not given: nothing serves \/metrics/],
      ['9464', /metrics must be an object/],
      [[], /metrics must be an object/],
    ];
    for (const [metrics, message] of bad) {
      assert.throws(() => new StreamingContext({ batchIntervalMs: 1000, metrics: metrics as never }), (e: unknown) => e instanceof ConfigError && message.test(e.message) && typeof e.context.option === 'string', JSON.stringify(metrics));
    }
    // The top of the range is a port: only its start would fail, were it taken.
    new StreamingContext({ batchIntervalMs: 1000, metrics: { port: 65535 } });
  });

  it('a registry that cannot be read answers the scrape 500 with what went wrong, and the job goes on', async () => {
    const registry = new Registry();
    new Gauge({ name: 'service_broken', help: 'a metric of the service whose collect fails', registers: [registry], collect() {
      throw new Error('boom');
    } });
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')), { dataDir: tempDir(), metrics: { port: 0, registry } });
    try {
      const answer = await raw(job.ssc.endpoints().metrics!, '/metrics');
      assert.match(answer, /^HTTP\/1\.1 500 /);
      assert.match(answer, /\r\ncontent-type: text\/plain; charset=utf-8\r\n/);
      assert.match(answer, /\r\nstatestream: boom\n\r\n/, 'the error in words, no stack trace');
      assert.deepEqual(await job.batch([['k', 1]]), [['k', 1]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('on a shared registry: a second job under the same appName is refused, and a stopped job takes its series with it', async () => {
    const registry = new Registry();
    const spec = () => StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(3);
    // It restarts a partition and takes a snapshot, so that those series exist before it stops.
    const wide = await keyedJob(StateSpec.function<string, FaultyValue, number, unknown>(fixture('faulty')).numPartitions(3), { dataDir: tempDir(), metrics: { registry }, appName: 'shared', snapshotEvery: 1 });
    const other = await keyedJob(spec(), { dataDir: tempDir(), metrics: { registry }, appName: 'other' });
    try {
      try {
        assert.throws(
          () => new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), metrics: { registry }, appName: 'shared' }),
          (e: unknown) => e instanceof ConfigError && e.context.option === 'appName' && /metrics\.registry already has a job with appName "shared"/.test(e.message),
        );
        await wide.batchWithSnapshot([['a', 1], ['b', 1], ['c', 1], ['d', 1], ['crash', { exitOnce: join(tempDir(), 'crashed') }]]);
        await other.batch([['x', 1]]);
        const before = parseSamples(await registry.metrics());
        assert.equal(byLabel(before, 'statestream_state_memory_entries', 'partition').size, 3);
        for (const name of ['statestream_partition_restarts_total', 'statestream_snapshot_duration_seconds_count', 'statestream_snapshot_last_success_timestamp_seconds', 'statestream_snapshot_bytes']) {
          assert.ok(before.some((s) => s.name === name && s.labels.app === 'shared'), `${name} has a series of the job before it stops`);
        }
      } finally {
        await wide.ssc.stop();
      }
      let samples = parseSamples(await registry.metrics());
      assert.equal(samples.filter((s) => s.labels.app === 'shared').length, 0, `no series of the stopped job: ${JSON.stringify(samples.filter((s) => s.labels.app === 'shared'))}`);
      assert.equal(sample(samples, 'statestream_records_total', { app: 'other' }), 1, 'the other job\'s series stay');
      // The same app again, with fewer partitions: only its own partitions have series.
      const narrow = await keyedJob(spec().numPartitions(1), { dataDir: tempDir(), metrics: { registry }, appName: 'shared' });
      try {
        await narrow.batch([['a', 1]]);
        samples = parseSamples(await registry.metrics());
        assert.deepEqual([...new Set(samples.filter((s) => s.name === 'statestream_state_memory_entries' && s.labels.app === 'shared').map((s) => s.labels.partition))], ['0']);
        assert.equal(sample(samples, 'statestream_records_total', { app: 'shared' }), 1);
      } finally {
        await narrow.ssc.stop();
      }
    } finally {
      await other.ssc.stop();
    }
    // A context made and stopped without starting leaves its app name free too.
    await new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), metrics: { registry }, appName: 'again' }).stop();
    await new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), metrics: { registry }, appName: 'again' }).stop();
  });

  it('statestream_state_bytes counts the change log, where a large state keeps a batch\'s changes until they cool', async () => {
    const job = await keyedJob(StateSpec.function<string, unknown, unknown, unknown>(fixture('keep-value')).numPartitions(1), { dataDir: tempDir(), threads: 1 });
    try {
      await job.batch(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, i] as [string, unknown]));
      // 100 values of 100 kB: a change small beside the state's keys, so it goes to the log.
      await job.batch(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'x'.repeat(100_000)] as [string, unknown]));
      const bytes = sample(parseSamples(await job.ssc.metricsRegistry.metrics()), 'statestream_state_bytes', { partition: '0' });
      assert.ok(bytes >= 100 * 100_000, `state bytes ${bytes} hold the 10 MB written`);
    } finally {
      await job.ssc.stop();
    }
  });

  it('the state series of a job with two state streams are labelled by each stream, not all as stream 0', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock, threads: 1, appName: 'two-streams' });
    const input = ssc.queueStream<[string, number]>();
    input.mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2));
    input.filter(([k]) => k === 'a').mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(1));
    await ssc.start();
    try {
      input.pushBatch([['a', 1], ['b', 1], ['c', 1]]);
      await clock.advance(1000);
      const samples = parseSamples(await ssc.metricsRegistry.metrics());
      const keys = (stream: string) => samples.filter((s) => s.name === 'statestream_state_keys' && s.labels.stream === stream).map((s) => [s.labels.partition, s.value]).sort();
      const expected = [0, 0];
      for (const k of ['a', 'b', 'c']) expected[murmur2Partitioner.partition(k, 2)]++;
      assert.deepEqual(keys('0'), [['0', expected[0]], ['1', expected[1]]]);
      assert.deepEqual(keys('1'), [['0', 1]]);
    } finally {
      await ssc.stop();
    }
  });

  it('a port already in use fails start() with a ConfigError naming metrics.port, and leaves nothing open', async () => {
    const first = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')), { dataDir: tempDir(), metrics: { port: 0 } });
    try {
      const port = Number(new URL(first.ssc.endpoints().metrics!).port);
      const second = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), metrics: { port } });
      second.queueStream<[string, number]>().mapWithState(StateSpec.function(fixture('count')));
      await assert.rejects(second.start(), (e: unknown) => e instanceof ConfigError && e.context.option === 'metrics.port' && /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/.test(e.message));
      assert.equal(second.state, 'stopped');

      // The status page's port taken: the metrics server the start had opened closes with it.
      const free = await freePort();
      const third = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), metrics: { port: free }, ui: { port } });
      third.queueStream<[string, number]>().mapWithState(StateSpec.function(fixture('count')));
      await assert.rejects(third.start(), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.port' && /EADDRINUSE/.test(e.message));
      assert.equal(await freePort(free), free, `the metrics port ${free} is free again`);
    } finally {
      await first.ssc.stop();
    }
  });
});
