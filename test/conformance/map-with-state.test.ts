import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, StateSpec, StreamingContext } from '../../src/index.js';
import { fixture, keyedJob, sorted, tempDir } from '../helpers.js';

const articleSpec = () => StateSpec.function<string, number, number, [string, number]>(fixture('article-count'));

describe("Spark's mapWithState semantics", () => {
  it('counts across batches; each record sees the state its predecessors left', async () => {
    const job = await keyedJob(articleSpec().numPartitions(3), { dataDir: tempDir() });
    try {
      assert.deepEqual(sorted(await job.batch([['a', 1], ['b', 1], ['a', 1]])), [['a', 1], ['a', 2], ['b', 1]]);
      assert.deepEqual(sorted(await job.batch([['a', 1], ['c', 1]])), [['a', 3], ['c', 1]]);
      assert.deepEqual(await job.batch([]), []);
      assert.equal(job.stream.store().get('a'), 3);
      assert.equal(job.stream.store().count(), 3);
    } finally {
      await job.ssc.stop();
    }
  });

  it('remove() drops the key: the article removes a word whose existing count is above 10 and emits nothing for it', async () => {
    const job = await keyedJob(articleSpec().numPartitions(2), { dataDir: tempDir() });
    try {
      const first = await job.batch(Array.from({ length: 10 }, () => ['w', 1] as [string, number]));
      assert.deepEqual(first.at(-1), ['w', 10]);
      assert.deepEqual(await job.batch([['w', 1]]), [['w', 11]], 'the 11th occurrence is counted: the existing 10 is not above 10');
      assert.deepEqual(await job.batch([['w', 1]]), [], 'the 12th occurrence emits nothing');
      assert.equal(job.stream.store().get('w'), undefined);
      assert.equal(job.stream.store().count(), 0);
      assert.deepEqual(await job.batch([['w', 1]]), [['w', 1]], 'counting starts over after removal');
    } finally {
      await job.ssc.stop();
    }
  });

  it("each record's State starts afresh: an update or a removal of the record before it in the partition is not taken for this key's", async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number | null]>(fixture('tally-or-drop')).numPartitions(1), { dataDir: tempDir() });
    try {
      // z never had a state and calls neither update() nor remove(), after a that updated.
      assert.deepEqual(await job.batch([['a', 1], ['z', 0]]), [['a', 1], ['z', null]]);
      assert.equal(job.stream.store().get('z'), undefined);
      assert.equal(job.stream.store().count(), 1);
      // c updates right after a's removal, in the same partition and batch.
      assert.deepEqual(await job.batch([['a', 0], ['c', 1]]), [['a', null], ['c', 1]]);
      assert.deepEqual(sorted([...job.stream.store().entries()]), [['c', 1]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('times out idle keys by batch time, calls the function once with isTimingOut, and emits what it returns', async () => {
    const spec = StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(2).timeout(3000);
    const job = await keyedJob(spec, { dataDir: tempDir() });
    const timedOut: number[] = [];
    job.ssc.on('batch.completed', (e) => timedOut.push(e.keysTimedOut));
    try {
      await job.batch([['a', 1], ['b', 1]]); // t=1000: both at 1000
      await job.batch([['b', 'touch']]); // t=2000: b refreshed without update()
      await job.batch([]); // t=3000
      assert.deepEqual(await job.batch([]), [], 't=4000: a is idle 3000ms, not more; nothing times out yet');
      assert.deepEqual(await job.batch([]), [['timeout', 'a', 1, 5000]], 't=5000: a (last record at 1000 < 5000-3000) times out');
      assert.deepEqual(await job.batch([]), [['timeout', 'b', 1, 6000]], 't=6000: b, refreshed at 2000, times out one batch later');
      assert.deepEqual(timedOut, [0, 0, 0, 0, 1, 1]);
      assert.equal(job.stream.store().count(), 0);
      assert.deepEqual(await job.batch([['a', 5]]), [['a', 5]], 'a timed-out key starts afresh');
    } finally {
      await job.ssc.stop();
    }
  });

  it('a call that returns undefined emits nothing, a timing-out call included; the key still times out', async () => {
    const spec = StateSpec.function<string, number, number, undefined>(fixture('keep-value')).numPartitions(2).timeout(1000);
    const job = await keyedJob(spec, { dataDir: tempDir() });
    const timedOut: number[] = [];
    job.ssc.on('batch.completed', (e) => timedOut.push(e.keysTimedOut));
    try {
      assert.deepEqual(await job.batch([['a', 7], ['b', 8]]), []); // 1000
      assert.deepEqual(await job.batch([['b', 9]]), []); // 2000
      assert.deepEqual(await job.batch([]), [], '3000: a times out, and its call returned undefined');
      assert.deepEqual(await job.batch([]), [], '4000: b times out');
      assert.deepEqual(timedOut, [0, 0, 1, 1]);
      assert.equal(job.stream.store().count(), 0);
    } finally {
      await job.ssc.stop();
    }
  });

  it('a key with a record in the sweep batch does not time out', async () => {
    const spec = StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count')).numPartitions(1).timeout(1000);
    const job = await keyedJob(spec, { dataDir: tempDir() });
    try {
      await job.batch([['k', 1]]); // 1000
      await job.batch([]); // 2000
      // Behind two keys new to the batch, so that its own slot is not the first the batch made.
      assert.deepEqual(sorted(await job.batch([['x', 1], ['y', 1], ['k', 1]])), [['k', 2], ['x', 1], ['y', 1]], 'k is past the threshold but has a record: it is updated, not swept');
      assert.deepEqual(await job.batch([]), [], '4000: k was refreshed at 3000');
      assert.deepEqual(sorted(await job.batch([])), [['timeout', 'k', 2, 5000], ['timeout', 'x', 1, 5000], ['timeout', 'y', 1, 5000]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('loads initial state before the first batch and timestamps it with the first batch', async () => {
    const spec = StateSpec.function<string, number | 'touch', number, unknown>(fixture('idle-count'))
      .numPartitions(4)
      .timeout(1500)
      .initialState([['x', 100], ['y', 7]]);
    const job = await keyedJob(spec, { dataDir: tempDir() });
    try {
      assert.deepEqual(await job.batch([['x', 1]]), [['x', 101]]);
      assert.equal(job.stream.store().get('y'), 7);
      assert.deepEqual(job.snapshots[0].pairs, [['x', 101], ['y', 7]]);
      // Loaded once: the second batch goes on from the first's state, not from the initial state again.
      assert.deepEqual(await job.batch([['x', 1]]), [['x', 102]]); // 2000
      assert.deepEqual(await job.batch([]), [['timeout', 'y', 7, 3000]], 'initial state was stamped with the first batch (1000 < 3000-1500)');
    } finally {
      await job.ssc.stop();
    }
  });

  it('stateSnapshots emits every [key, state] after each batch, in key order, empty batches included', async () => {
    const job = await keyedJob(articleSpec().numPartitions(3), { dataDir: tempDir() });
    try {
      await job.batch([['b', 1], ['a', 1], [ 'c', 1]]);
      await job.batch([]);
      await job.batch([['a', 1]]);
      assert.deepEqual(job.snapshots.map((s) => s.time), [1000, 2000, 3000]);
      assert.deepEqual(job.snapshots[0].pairs, [['a', 1], ['b', 1], ['c', 1]]);
      assert.deepEqual(job.snapshots[1].pairs, [['a', 1], ['b', 1], ['c', 1]]);
      assert.deepEqual(job.snapshots[2].pairs, [['a', 2], ['b', 1], ['c', 1]]);
      assert.deepEqual([...job.stream.store().entries()], [['a', 2], ['b', 1], ['c', 1]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('runs async mapping functions and named exports', async () => {
    const asyncJob = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('async-count')).numPartitions(2), { dataDir: tempDir() });
    try {
      assert.deepEqual(sorted(await asyncJob.batch([['a', 2], ['a', 3], ['b', 1]])), [['a', 2], ['a', 5], ['b', 1]]);
    } finally {
      await asyncJob.ssc.stop();
    }
    // The module's default counts in steps of one: only its named export doubles.
    const named = await keyedJob(StateSpec.function<string, number, number, [string, number]>({ module: fixture('count'), export: 'byTwo' }), { dataDir: tempDir() });
    try {
      assert.deepEqual(await named.batch([['z', 4]]), [['z', 8]]);
      assert.deepEqual(await named.batch([['z', 1]]), [['z', 10]]);
    } finally {
      await named.ssc.stop();
    }
  });

  it('accepts numbers, booleans and tuples as keys, and orders them as LMDB does', async () => {
    const job = await keyedJob(StateSpec.function<unknown, number, number, unknown>(fixture('count')).numPartitions(3), { dataDir: tempDir() });
    try {
      await job.batch([[2, 1], ['b', 1], [['t', 1], 1], [1.5, 1], [['t', 1], 2], [true, 1]]);
      const store = job.stream.store();
      assert.equal(store.get(['t', 1] as never), 3);
      assert.equal(store.get(2 as never), 1);
      const keys = [...store.entries()].map(([k]) => k);
      assert.deepEqual(keys, [true, 1.5, 2, 'b', ['t', 1]], 'booleans, then numbers in numeric order, then strings and tuples by their bytes');
      await job.batch([[-0, 1], [0, 1], [['z', -0], 1], [['z', 0], 1]]);
      assert.equal(store.get(0 as never), 2, '-0 and 0 are one key');
      assert.equal(store.get(['z', 0] as never), 2);
      assert.equal(store.get(-0 as never), 2, 'a query for -0 finds 0');
      assert.equal(store.get(['z', -0] as never), 2);
      assert.equal(store.count(), 7);
    } finally {
      await job.ssc.stop();
    }
  });

  it('every batch runs its outputs in batch order, empty batches included', async () => {
    const clock = new ManualClock(10_000);
    const ssc = new StreamingContext({ batchIntervalMs: 250, dataDir: tempDir(), clock, threads: 1 });
    const input = ssc.queueStream<string>({ oneAtATime: true });
    const seen: Array<[number, string[]]> = [];
    input.map((w) => [w, 1] as [string, number]).mapWithState(articleSpec().numPartitions(2));
    input.foreachBatch((records, time) => void seen.push([time, records]));
    await ssc.start();
    try {
      input.push('a', 'b');
      input.push('c');
      await clock.advance(1000);
      assert.deepEqual(seen, [[10_250, ['a', 'b']], [10_500, ['c']], [10_750, []], [11_000, []]], 'oneAtATime: one pushed batch per batch');
    } finally {
      await ssc.stop();
    }
  });

  it('outputs run once every state stream has committed the batch, in the order foreachBatch was called', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock, threads: 2 });
    const input = ssc.queueStream<[string, number]>();
    const counts = input.mapWithState(articleSpec().numPartitions(2));
    const doubled = input.map(([k, v]): [string, number] => [k, v * 2]).mapWithState(articleSpec().numPartitions(3));
    const calls: Array<[string, number, unknown[], unknown, unknown]> = [];
    // Registered in another order than the streams were defined; each records what both stores hold when it runs.
    const record = (name: string) => (records: unknown[], time: number) => void calls.push([name, time, sorted(records), counts.store().get('a'), doubled.store().get('a')]);
    doubled.foreachBatch(record('doubled'));
    input.foreachBatch(record('input'));
    counts.foreachBatch(record('counts'));
    await ssc.start();
    try {
      input.pushBatch([['a', 1], ['b', 1]]);
      await clock.advance(1000);
      input.pushBatch([['a', 1]]);
      await clock.advance(1000);
      assert.deepEqual(calls, [
        ['doubled', 1000, [['a', 2], ['b', 2]], 1, 2],
        ['input', 1000, [['a', 1], ['b', 1]], 1, 2],
        ['counts', 1000, [['a', 1], ['b', 1]], 1, 2],
        ['doubled', 2000, [['a', 4]], 2, 4],
        ['input', 2000, [['a', 1]], 2, 4],
        ['counts', 2000, [['a', 2]], 2, 4],
      ]);
    } finally {
      await ssc.stop();
    }
  });
});
