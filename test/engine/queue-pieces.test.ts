import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, StateSpec, StatestreamError, StreamingContext } from '../../src/index.js';
import { joinPieces } from '../../src/engine/batch.js';
import { PIECE_RECORDS } from '../../src/engine/sources/queue.js';
import { fixture, tempDir } from '../helpers.js';

/** A batch of `n` words over a vocabulary of 50, in an order a test can check. */
const words = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `w${(from + i) % 50}`);

function countWords(list: string[], into = new Map<string, number>()): Map<string, number> {
  for (const w of list) into.set(w, (into.get(w) ?? 0) + 1);
  return into;
}

/** The last count each word reached in a batch's [word, count] records. */
const lastCounts = (records: Array<[string, number]>) => new Map(records.map(([w, n]) => [w, n]));

describe('a queue stream keeps each pushed batch as a copy in pieces', () => {
  it('batches larger than a piece, pushed as arrays and as iterables, arrive whole and in order, however the caller reuses its array', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(0), threads: 2 });
    const input = ssc.queueStream<string>();
    const seen: string[][] = [];
    const mapped: string[][] = [];
    input.foreachBatch((records) => void seen.push(records));
    const pairs = input.map((w) => [w, 1] as [string, number]);
    pairs.foreachBatch((records) => void mapped.push(records.map(([w]) => w)));
    const counts = pairs.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(3));
    const outputs: Array<Array<[string, number]>> = [];
    counts.foreachBatch((records) => void outputs.push(records));
    await ssc.start();
    try {
      // Two pieces and a bit, then reused by the caller at once: the batch keeps what was pushed.
      const first = words(2 * PIECE_RECORDS + 5);
      const pushed = [...first];
      input.pushBatch(pushed);
      pushed.fill('changed');
      pushed.length = 3;
      // An iterable of more than a piece, in the same batch.
      const second = words(PIECE_RECORDS + 1, 7);
      input.pushBatch((function* () {
        yield* second;
      })());
      await (ssc.clock as ManualClock).advance(100);
      const batch1 = [...first, ...second];
      assert.deepEqual(seen[0], batch1);
      assert.deepEqual(mapped[0], batch1);
      assert.equal(outputs[0].length, batch1.length);
      assert.deepEqual(lastCounts(outputs[0]), countWords(batch1));

      // A batch of exactly one piece, then an empty push: counts go on from the first batch.
      const third = words(PIECE_RECORDS, 3);
      input.pushBatch(third);
      input.pushBatch([]);
      await (ssc.clock as ManualClock).advance(100);
      assert.deepEqual(seen[1], third);
      assert.deepEqual(lastCounts(outputs[1]), countWords(third, countWords(batch1)));
      assert.equal((await counts.store().get('w0')) ?? 0, countWords([...batch1, ...third]).get('w0'));
    } finally {
      await ssc.stop();
    }
  });

  it('a batch of 196 611 single-record pushes reaches a reader of the whole batch and a state stream whole; an iterable that throws pushes nothing', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const input = ssc.queueStream<[string, number]>();
    const seen: Array<[string, number]> = [];
    // (Loops, not push(...records): a spread of 200 000 arguments overflows the stack.)
    input.foreachBatch((records) => records.forEach((r) => seen.push(r)));
    const counts = input.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    const outputs: Array<[string, number]> = [];
    counts.foreachBatch((records) => records.forEach((r) => outputs.push(r)));
    await ssc.start();
    try {
      // 24 full pieces' worth, one record a push.
      const pushed = words(24 * PIECE_RECORDS);
      for (const w of pushed) input.push([w, 1]);
      /** An iterable that throws after two records: neither of them is in the batch, and the records before are intact. */
      const broken = () =>
        (function* () {
          yield ['x', 1] as [string, number];
          yield ['y', 1] as [string, number];
          throw new Error('the source broke');
        })();
      // Its records would have begun a new piece…
      assert.throws(() => input.pushBatch(broken()), /the source broke/);
      const more = words(3, 5);
      for (const w of more) input.push([w, 1]);
      pushed.push(...more);
      // …and here they would have gone into the last one.
      assert.throws(() => input.pushBatch(broken()), /the source broke/);
      assert.equal(input.pending, pushed.length);
      await (ssc.clock as ManualClock).advance(100);
      assert.equal(seen.length, pushed.length);
      assert.deepEqual(seen.map(([w]) => w), pushed);
      assert.deepEqual(lastCounts(outputs), countWords(pushed));
    } finally {
      await ssc.stop();
    }
  });

  it('an iterable that throws into an empty queue, or behind a single record, fails with its own error and leaves the queue as it was', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const input = ssc.queueStream<[string, number]>();
    const seen: Array<[string, number]> = [];
    input.foreachBatch((records) => records.forEach((r) => seen.push(r)));
    const broken = () =>
      (function* () {
        yield ['x', 1] as [string, number];
        throw new Error('the source broke');
      })();
    await ssc.start();
    try {
      assert.throws(() => input.pushBatch(broken()), /^Error: the source broke$/);
      assert.equal(input.pending, 0);
      input.push(['a', 1]);
      assert.throws(() => input.pushBatch(broken()), /^Error: the source broke$/);
      assert.equal(input.pending, 1);
      await (ssc.clock as ManualClock).advance(100);
      assert.deepEqual(seen, [['a', 1]]);
    } finally {
      await ssc.stop();
    }
  });

  it('joins any number of pieces into one array, in order', () => {
    const many = Array.from({ length: 200_000 }, (_, i) => [i]);
    const joined = joinPieces(many);
    assert.equal(joined.length, many.length);
    assert.ok(joined.every((v, i) => v === i));
    const one = ['a', 'b'];
    assert.equal(joinPieces([one]), one);
    assert.deepEqual(joinPieces([]), []);
  });

  it('a push of fewer records than a piece is copied too: the caller may reuse its array at once, with or without oneAtATime', async () => {
    for (const oneAtATime of [false, true]) {
      const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
      const input = ssc.queueStream<string>({ oneAtATime });
      const seen: string[][] = [];
      input.foreachBatch((records) => void seen.push(records));
      await ssc.start();
      try {
        // Into an empty queue: the push is the batch's first piece.
        const pushed = ['a', 'b', 'c'];
        input.pushBatch(pushed);
        pushed.fill('changed');
        pushed.push('added');
        await (ssc.clock as ManualClock).advance(100);
        assert.deepEqual(seen, [['a', 'b', 'c']], `oneAtATime ${String(oneAtATime)}`);
      } finally {
        await ssc.stop();
      }
    }
  });

  it('oneAtATime gives each batch one pushed batch, whole', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const input = ssc.queueStream<string>({ oneAtATime: true });
    const seen: string[][] = [];
    input.map((w) => w.toUpperCase()).foreachBatch((records) => void seen.push(records));
    await ssc.start();
    try {
      const a = words(PIECE_RECORDS + 10);
      const b = words(3, 11);
      input.pushBatch(a);
      input.pushBatch(b);
      assert.equal(input.pending, a.length + b.length);
      await (ssc.clock as ManualClock).advance(100);
      assert.equal(input.pending, b.length);
      await (ssc.clock as ManualClock).advance(100);
      assert.deepEqual(seen, [a.map((w) => w.toUpperCase()), b.map((w) => w.toUpperCase())]);
    } finally {
      await ssc.stop();
    }
  });

  it('a map that throws on a record past the first piece names its index in the batch', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const input = ssc.queueStream<string>();
    const bad = PIECE_RECORDS + 7;
    input
      .map((w) => {
        if (w === 'bad') throw new Error('no bad words');
        return w;
      })
      .foreachBatch(() => undefined);
    await ssc.start();
    try {
      const batch = words(2 * PIECE_RECORDS);
      batch[bad] = 'bad';
      input.pushBatch(batch);
      await assert.rejects((ssc.clock as ManualClock).advance(100), (e: unknown) => {
        assert.ok(e instanceof StatestreamError, String(e));
        assert.match(e.message, new RegExp(`threw on record ${bad} of batch 100 \\("bad"\\): no bad words$`));
        assert.equal(e.context.index, bad);
        return true;
      });
    } finally {
      await ssc.stop();
    }
  });
});
