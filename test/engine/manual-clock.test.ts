import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchEvents, ManualClock, StateSpec, StreamingContext } from '../../src/index.js';
import { fixture, tempDir } from '../helpers.js';

describe('ManualClock', () => {
  it('runs each batch of one advance at its own time, with no scheduling delay', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock, threads: 1 });
    const words = ssc.queueStream<string>();
    const seen: Array<[batchTime: number, clockTime: number]> = [];
    const delays: number[] = [];
    words.foreachBatch((_, time) => void seen.push([time, clock.now()]));
    ssc.on(BatchEvents.STARTED, (e) => void delays.push(e.schedulingDelayMs));
    await ssc.start();
    try {
      words.push('a');
      await clock.advance(300);
    } finally {
      await ssc.stop();
    }
    assert.deepEqual(seen, [[100, 100], [200, 200], [300, 300]]);
    assert.deepEqual(delays, [0, 0, 0]);
  });

  it('awaitIdle() resolves once the batch that fell due, and its outputs, are done', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock, threads: 1 });
    const words = ssc.queueStream<string>();
    const done: string[] = [];
    words.foreachBatch(async (records, time) => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      done.push(`output ${time}: ${records.join(',')}`);
    });
    ssc.on(BatchEvents.COMPLETED, (e) => void done.push(`completed ${e.batchTime}`));
    await ssc.start();
    try {
      words.push('a');
      const advancing = clock.advance(100);
      await ssc.awaitIdle();
      assert.deepEqual(done, ['output 100: a', 'completed 100']);
      await advancing;
    } finally {
      await ssc.stop();
    }
  });

  it('a ManualClock made without a start time starts at 0: the first batch of a 100 ms interval is batch 100', async () => {
    const clock = new ManualClock();
    assert.equal(clock.now(), 0);
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock, threads: 1 });
    const seen: number[] = [];
    ssc.queueStream<string>().foreachBatch((_, time) => void seen.push(time));
    await ssc.start();
    try {
      await clock.advance(200);
    } finally {
      await ssc.stop();
    }
    assert.deepEqual(seen, [100, 200]);
  });

  it('advance() by a negative time is refused, and neither moves time nor runs a timer', async () => {
    const clock = new ManualClock(1000);
    const ran: number[] = [];
    clock.schedule(900, () => void ran.push(900));
    await assert.rejects(clock.advance(-1), (e: unknown) => e instanceof RangeError && e.message === 'ManualClock.advance: ms must be a finite number >= 0, got -1');
    assert.equal(clock.now(), 1000);
    assert.deepEqual(ran, []);
  });

  it('a cancelled timer does not run', async () => {
    const clock = new ManualClock(0);
    const ran: number[] = [];
    const cancel = clock.schedule(100, () => void ran.push(100));
    clock.schedule(200, () => void ran.push(200));
    cancel();
    await clock.advance(300);
    assert.deepEqual(ran, [200]);
  });

  it('timers of one time run in the order they were scheduled, and a timer scheduled in the past runs at the clock\'s time, not back at its own', async () => {
    const clock = new ManualClock(1000);
    const ran: Array<[string, number]> = [];
    for (const name of ['a', 'b', 'c']) clock.schedule(1100, () => void ran.push([name, clock.now()]));
    clock.schedule(500, () => void ran.push(['late', clock.now()]));
    await clock.advance(100);
    assert.deepEqual(ran, [['late', 1000], ['a', 1100], ['b', 1100], ['c', 1100]]);
  });

  it('runs the batches of two advances started together in order, and its time never goes back', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock, threads: 1 });
    const words = ssc.queueStream<string>({ oneAtATime: true });
    const counts = words
      .map((w) => [w, 1] as [string, number])
      .mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    const outputs: Array<{ batchTime: number; clockTime: number; records: Array<[string, number]> }> = [];
    counts.foreachBatch((records, time) => void outputs.push({ batchTime: time, clockTime: clock.now(), records: [...records].sort() }));
    await ssc.start();
    try {
      words.pushBatch(['a']);
      words.pushBatch(['a', 'b']);
      // The second call starts while the first one's batch still runs.
      const first = clock.advance(100);
      const second = clock.advance(100);
      await Promise.all([first, second]);
      assert.equal(clock.now(), 200);
      assert.deepEqual(
        outputs.map(({ batchTime, records }) => [batchTime, records]),
        [
          [100, [['a', 1]]],
          [200, [['a', 2], ['b', 1]]],
        ],
      );
      for (const { batchTime, clockTime } of outputs) assert.ok(clockTime >= batchTime, `the output of batch ${batchTime} ran at clock time ${clockTime}`);
      await clock.advance(100);
      assert.equal(clock.now(), 300);
      assert.equal(counts.store().get('a'), 2);
      // setTime moves to a time, running the batches up to it; an earlier time moves nothing.
      words.pushBatch(['c']);
      await clock.setTime(500);
      assert.equal(clock.now(), 500);
      await clock.setTime(400);
      assert.equal(clock.now(), 500, 'time never goes back');
      assert.deepEqual(outputs.slice(2).map(({ batchTime, records }) => [batchTime, records]), [[300, []], [400, [['c', 1]]], [500, []]]);
    } finally {
      await ssc.stop();
    }
  });
});
