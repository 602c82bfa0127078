import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BatchEvents, ConfigError, ManualClock, OffsetStoreError, StateSpec, StopTimeoutError, StreamingContext, type BatchFailedEvent } from '../../src/index.js';
import type { SpinValue } from '../fixtures/spin.js';
import { fixture, keyedJob, sorted, startStopExit, tempDir } from '../helpers.js';
import { waitUntil, within } from '../wait.js';

const spinning = () => StateSpec.function<string, SpinValue, number, [string, number]>(fixture('spin'));

/** A one-partition job after one batch, whose next batch (2000) spins in its mapping function; resolves once it spins. */
async function spinningBatch() {
  const dir = tempDir();
  const gate = join(dir, 'gate');
  mkdirSync(gate);
  const job = await keyedJob(spinning().numPartitions(1), { dataDir: join(dir, 'data'), threads: 1 });
  const failed: BatchFailedEvent[] = [];
  job.ssc.on(BatchEvents.FAILED, (e) => failed.push(e));
  await job.batch([['a', 1]]);
  job.input.pushBatch([['spin', { spin: gate }]]);
  const advanced = job.clock.advance(1000).catch(() => undefined);
  await waitUntil('the mapping function to spin', () => existsSync(join(gate, 'entered')));
  return { job, failed, advanced };
}

describe('stop({ timeoutMs }): a stop that runs out of time terminates the threads still applying a batch', () => {
  it('a mapping function that never returns: the batch fails with StopTimeoutError, nothing of it commits, and the next start goes on from the last commit', async () => {
    const dir = tempDir();
    const dataDir = join(dir, 'data');
    const gate = join(dir, 'gate');
    mkdirSync(gate);
    const job = await keyedJob(spinning().numPartitions(2), { dataDir, threads: 2 });
    const failed: BatchFailedEvent[] = [];
    job.ssc.on(BatchEvents.FAILED, (e) => failed.push(e));
    const restarted: unknown[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarted.push(e));
    let stopped = false;
    try {
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1]])), [['a', 1], ['b', 1]]);
      job.input.pushBatch([['a', 1], ['spin', { spin: gate }], ['b', 1]]);
      const advanced = job.clock.advance(1000).then(() => 'done', (error: unknown) => error);
      await waitUntil('the mapping function to spin', () => existsSync(join(gate, 'entered')));
      await within(job.ssc.stop({ timeoutMs: 200 }), 'stop() with a timeout, while a mapping function spins');
      stopped = true;
      await within(advanced, 'the batch to settle');
      assert.equal(failed.length, 1, 'the batch under way failed');
      assert.ok(failed[0].error instanceof StopTimeoutError, `a StopTimeoutError, not ${failed[0].error.name}: ${failed[0].error.message}`);
      assert.equal(failed[0].batchTime, 2000);
      assert.deepEqual(failed[0].error.context, { batchTime: 2000, timeoutMs: 200 });
      assert.match(failed[0].error.message, /batch 2000 was still applying: the worker threads were terminated, the batch did not commit/);
      assert.equal(job.outputs.length, 1, 'its outputs did not run');
      assert.deepEqual(restarted, [], 'the threads the stop cut are not taken for crashes: no partition restarts to replay the batch');
    } finally {
      if (!stopped) await job.ssc.stop({ timeoutMs: 0 });
    }

    // The stores were left at a commit, their write locks free: the job starts again on them.
    const again = await keyedJob(spinning().numPartitions(2), { dataDir, threads: 2, startMs: 2000 });
    try {
      const partitionOf = (key: string) => again.stream.store().get(key) as number | undefined;
      // The partition of 'spin' did not commit batch 2000; 'a' and 'b' may share it or not.
      const before = { a: partitionOf('a'), b: partitionOf('b'), spin: partitionOf('spin') };
      assert.equal(before.spin, undefined, 'the key of the record that spun was never written');
      assert.ok([1, 2].includes(before.a!) && [1, 2].includes(before.b!), `counts of batch 1000, or of 2000 where its partition committed: ${JSON.stringify(before)}`);
      assert.deepEqual(sorted(await again.batch([['a', 1], ['b', 1], ['spin', 1]])), sorted([['a', before.a! + 1], ['b', before.b! + 1], ['spin', 1]]));
    } finally {
      await again.ssc.stop();
    }
  });

  it('a stop already under way is bounded by a later call with a timeout (a second SIGTERM, say); both calls resolve once it is done', async () => {
    const { job, failed, advanced } = await spinningBatch();
    let firstDone = false;
    const first = job.ssc.stop().then(() => (firstDone = true));
    await sleep(300);
    assert.equal(firstDone, false, 'without a timeout, the stop waits for the batch');
    const second = job.ssc.stop({ timeoutMs: 50 });
    // A third call with a longer timeout does not put the deadline back.
    const third = job.ssc.stop({ timeoutMs: 60_000 });
    await within(second, 'the second stop() call, with a timeout', { timeoutMs: 10_000 });
    await within(third, 'the third stop() call, with a longer timeout', { timeoutMs: 10_000 });
    assert.equal(firstDone || (await within(first, 'the first stop() call')), true);
    await advanced;
    assert.deepEqual(failed.map((e) => [e.batchTime, e.error.name, (e.error as StopTimeoutError).context]), [[2000, 'StopTimeoutError', { batchTime: 2000, timeoutMs: 50 }]]);
  });

  it('a later call with a shorter timeout brings the deadline of a stop under way forward', async () => {
    const { job, failed, advanced } = await spinningBatch();
    const first = job.ssc.stop({ timeoutMs: 30_000 });
    const second = job.ssc.stop({ timeoutMs: 50 });
    await within(second, 'the second stop() call, with the shorter timeout', { timeoutMs: 10_000 });
    await within(first, 'the first stop() call', { timeoutMs: 10_000 });
    await advanced;
    assert.deepEqual(failed.map((e) => [e.batchTime, e.error.name, (e.error as StopTimeoutError).context]), [[2000, 'StopTimeoutError', { batchTime: 2000, timeoutMs: 50 }]]);
  });

  it('batches that end in time are not touched: stop() waits for them as without a timeout', async () => {
    const dir = tempDir();
    const job = await keyedJob(spinning().numPartitions(2), { dataDir: join(dir, 'data'), threads: 2 });
    const failed: BatchFailedEvent[] = [];
    job.ssc.on(BatchEvents.FAILED, (e) => failed.push(e));
    await job.batch([['a', 1]]);
    job.input.pushBatch([['a', 1], ['b', 1]]);
    const advanced = job.clock.advance(1000);
    await job.ssc.stop({ timeoutMs: 60_000 });
    await advanced;
    assert.deepEqual(failed, []);
    assert.deepEqual(sorted(job.outputs[1].records), [['a', 2], ['b', 1]]);
  });

  it('a batch that fails for a reason of its own while a stop with a timeout waits is reported with its own error, not as cut by a deadline that never passed', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock, threads: 1 });
    const input = ssc.queueStream<[string, number]>();
    input.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(1)).foreachBatch((records) => {
      if (records.some(([key]) => key === 'bad')) throw new Error('the sink refused key bad');
    });
    const failed: BatchFailedEvent[] = [];
    const states: string[] = [];
    ssc.on(BatchEvents.FAILED, (e) => void (failed.push(e), states.push(ssc.state)));
    await ssc.start();
    input.pushBatch([['a', 1]]);
    await clock.advance(1000);
    input.pushBatch([['bad', 1]]);
    const advanced = clock.advance(1000).then(() => 'done', (error: unknown) => error);
    // The batch is under way: the stop's deadline (a minute) is armed, and never passes.
    await within(ssc.stop({ timeoutMs: 60_000 }), 'stop() with a timeout, while a batch fails on its own');
    const outcome = await within(advanced, 'the batch to settle');
    assert.deepEqual(failed.map((e) => [e.batchTime, e.error.name, e.error.message]), [[2000, 'Error', 'the sink refused key bad']]);
    assert.ok(!(outcome instanceof StopTimeoutError), `the batch's own failure, not ${String(outcome)}`);
    assert.deepEqual(states, ['stopping'], 'a batch failing while the context stops leaves it stopping, not failed');
    assert.equal(ssc.state, 'stopped');
  });

  it('a stop with a timeout that ends in time leaves no timer behind: the process can exit by itself', async () => {
    // A deadline left armed would hold the process for ten minutes.
    const { exit, output } = await startStopExit(600_000);
    assert.deepEqual(exit, [0, null], output.slice(-2000));
    assert.match(output, /^stopped$/m);
  });

  it('a bad option is named, and the job goes on running', async () => {
    const dir = tempDir();
    const job = await keyedJob(spinning().numPartitions(1), { dataDir: join(dir, 'data'), threads: 1 });
    try {
      await assert.rejects(job.ssc.stop({ timeoutMs: -1 }), (error: unknown) => error instanceof ConfigError && /stop\(\): timeoutMs must be a number of milliseconds from 0 to 2147483647 \(about 24\.8 days\), or Infinity for no limit, got -1/.test(error.message));
      await assert.rejects(job.ssc.stop({ timeoutMs: Number.NaN }), /timeoutMs must be a number of milliseconds from 0 .* got NaN/);
      await assert.rejects(job.ssc.stop({ timeout: 100 } as never), (error: unknown) => error instanceof ConfigError && error.message === 'stop(): unknown option "timeout" (known: timeoutMs)');
      // A number where { timeoutMs } was meant is not a stop without a limit.
      await assert.rejects(job.ssc.stop(5000 as never), (error: unknown) => error instanceof ConfigError && error.message === 'stop() expects an options object, got 5000');
      assert.deepEqual(await job.batch([['a', 1]]), [['a', 1]], 'still running');
    } finally {
      await job.ssc.stop({ timeoutMs: Infinity });
    }
  });

  it('an output operation still pending at the deadline is left behind: the batch fails with StopTimeoutError, its state committed', async () => {
    const dataDir = tempDir();
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, threads: 2, clock, dataDir });
    const input = ssc.queueStream<[string, number]>();
    const outputs: Array<[number, Array<[string, number]>]> = [];
    let hung = false;
    const counts = input.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    counts.foreachBatch(async (records, time) => {
      if (records.some(([word]) => word === 'hang')) {
        hung = true;
        return new Promise<void>(() => undefined);
      }
      outputs.push([time, sorted(records)]);
    });
    const failed: BatchFailedEvent[] = [];
    ssc.on(BatchEvents.FAILED, (e) => failed.push(e));
    await ssc.start();
    input.pushBatch([['a', 1]]);
    await clock.advance(1000);
    input.pushBatch([['a', 1], ['hang', 1]]);
    const advanced = clock.advance(1000).catch(() => undefined);
    await waitUntil('the output operation to hang', () => hung);
    await within(ssc.stop({ timeoutMs: 200 }), 'stop() with a timeout, while an output operation hangs', { timeoutMs: 10_000 });
    await advanced;
    assert.deepEqual(outputs, [[1000, [['a', 1]]]]);
    assert.equal(failed.length, 1, 'the batch whose output hung failed');
    assert.ok(failed[0].error instanceof StopTimeoutError, `${failed[0].error.name}: ${failed[0].error.message}`);
    assert.deepEqual(failed[0].error.context, { batchTime: 2000, timeoutMs: 200 });
    assert.match(failed[0].error.message, /^stop\(\) waited 200 ms and an output operation of batch 2000 was still running: it was left behind/);

    // Its state had committed before the outputs ran: counted once, not lost.
    const again = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2), { dataDir, threads: 2, startMs: 2000 });
    try {
      assert.deepEqual(sorted(await again.batch([['a', 1], ['hang', 1]])), [['a', 3], ['hang', 2]]);
    } finally {
      await again.ssc.stop();
    }
  });

  it('a start that waits for an unreachable ZooKeeper ends at once when stop() is called: start() fails, named, and the folder is free again', async () => {
    const dataDir = tempDir();
    // Nothing listens on port 1: each connection is refused, and the start would retry for 10 minutes.
    const options = { batchIntervalMs: 100, dataDir, threads: 1 };
    const kafka = { brokers: ['127.0.0.1:1'], topic: 'words', groupId: 'g', zookeeper: { connect: '127.0.0.1:1', root: '/stop-while-starting', sessionTimeoutMs: 30_000 } };
    const ssc = new StreamingContext(options);
    ssc.kafkaStream(kafka).foreachBatch(() => undefined);
    const starting = ssc.start().then(() => 'started', (error: unknown) => error);
    await sleep(300);
    await within(ssc.stop(), 'stop() while the start waits for ZooKeeper', { timeoutMs: 10_000 });
    const outcome = await within(starting, 'start() to settle');
    assert.ok(outcome instanceof OffsetStoreError, `start() gave ${String(outcome)}`);
    assert.match(outcome.message, /ZooKeeper at 127\.0\.0\.1:1: interrupted while connecting/);
    // The folder's lock went with the stop: another context can take the folder.
    const again = new StreamingContext(options);
    again.queueStream<string>().foreachBatch(() => undefined);
    await again.start();
    await again.stop();
  });
});
