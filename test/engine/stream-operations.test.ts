import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { types } from 'node:util';
import { runInNewContext } from 'node:vm';
import { describe, it } from 'node:test';
import { stateDir } from '../../src/storage/partition/store.js';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, StatestreamError, type BatchFailedEvent } from '../../src/index.js';
import { fixture, tempDir } from '../helpers.js';
import { useServices } from '../integration/services/suite.js';

/** Starts the context, runs one batch of `records` on its manual clock, and stops it. */
async function runOneBatch<T>(ssc: StreamingContext, input: { pushBatch(records: T[]): void }, records: T[]): Promise<void> {
  await ssc.start();
  try {
    input.pushBatch(records);
    await (ssc.clock as ManualClock).advance(1000);
  } finally {
    await ssc.stop();
  }
}

/** The error a failed batch reported, waited for with a deadline. */
function nextFailure(ssc: StreamingContext, timeoutMs: number): Promise<BatchFailedEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no batch.failed within ${timeoutMs} ms`)), timeoutMs);
    ssc.on(BatchEvents.FAILED, (e) => {
      clearTimeout(timer);
      resolve(e);
    });
  });
}

describe('filter', () => {
  it('keeps the records its function returns any truthy value for, as Array.prototype.filter does', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const words = ssc.queueStream<string>();
    const byLength: string[] = [];
    const byText: string[] = [];
    const none: string[] = [];
    words.filter((word) => word.length).foreachBatch((kept) => void byLength.push(...kept));
    words.filter((word) => word).foreachBatch((kept) => void byText.push(...kept));
    words.filter((word) => (word === 'a' ? 0 : word === 'bb' ? null : undefined)).foreachBatch((kept) => void none.push(...kept));
    await runOneBatch(ssc, words, ['a', '', 'bb']);
    assert.deepEqual(byLength, ['a', 'bb']);
    assert.deepEqual(byText, ['a', 'bb']);
    assert.deepEqual(none, []);
  });
});

describe('outputs', () => {
  it('each gets an array of its own: one that sorts or empties what it is given changes nothing another output, or a stream derived later, reads', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const lines = ssc.queueStream<string>();
    const counts = lines.map((w): [string, number] => [w, 1]).mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    const seen: Record<string, unknown[]> = {};
    lines.foreachBatch((rs) => void rs.splice(0, rs.length, 'x'));
    lines.foreachBatch((rs) => void (seen.lines = [...rs]));
    lines.filter(() => true).foreachBatch((rs) => void (seen.filtered = [...rs]));
    counts.foreachBatch((rs) => void rs.sort().reverse().pop());
    counts.foreachBatch((rs) => void (rs.length = 0));
    counts.foreachBatch((rs) => void (seen.counts = [...rs]));
    counts.stateSnapshots().foreachBatch((ps) => void ps.splice(0));
    counts.stateSnapshots().foreachBatch((ps) => void (seen.snapshots = [...ps]));
    await runOneBatch(ssc, lines, ['b', 'a', 'b']);
    assert.deepEqual(seen.lines, ['b', 'a', 'b']);
    assert.deepEqual(seen.filtered, ['b', 'a', 'b']);
    assert.deepEqual(seen.counts, [['b', 1], ['a', 1], ['b', 2]]);
    assert.deepEqual(seen.snapshots, [['a', 1], ['b', 2]]);
  });

  it('a stream read by several outputs is computed once a batch, and a state stream applied once, however many read it', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const lines = ssc.queueStream<string>();
    let mapped = 0;
    const pairs = lines.map((w): [string, number] => (mapped++, [w, 1]));
    const counts = pairs.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    const seen: unknown[][] = [];
    pairs.foreachBatch((rs) => void seen.push(rs));
    pairs.foreachBatch((rs) => void seen.push(rs));
    counts.foreachBatch((rs) => void seen.push(rs));
    counts.foreachBatch((rs) => void seen.push(rs));
    const replayed: boolean[] = [];
    ssc.on(BatchEvents.COMPLETED, (e) => void replayed.push(...e.partitionStats.flat().map((p) => p.replayed)));
    await runOneBatch(ssc, lines, ['b', 'a', 'b']);
    assert.equal(mapped, 3, 'the map ran once for each record, not once for each output');
    assert.deepEqual(seen.slice(2), [[['b', 1], ['a', 1], ['b', 2]], [['b', 1], ['a', 1], ['b', 2]]]);
    assert.deepEqual(replayed, [false, false], 'each partition applied the batch once: none saw it again as a replay');
  });
});

describe('an output that throws', () => {
  it('fails the batch with what it threw: an Error as it is, any other value named and kept as the cause', async () => {
    // The last an Error of another realm (a vm context): not `instanceof Error` here, an Error all the same.
    const thrown = [new RangeError('sink full'), { code: 'SINK_DOWN', retryAfterMs: 500 }, 'boom', runInNewContext("new RangeError('made elsewhere')")];
    for (const value of thrown) {
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
      const lines = ssc.queueStream<string>();
      lines.foreachBatch(() => {
        throw value;
      });
      const failed = nextFailure(ssc, 10_000);
      await ssc.start();
      try {
        lines.pushBatch(['a']);
        const rejected = await (ssc.clock as ManualClock).advance(1000).then(() => undefined, (error: unknown) => error);
        const { error, batchTime } = await failed;
        assert.equal(batchTime, 1000);
        assert.equal(rejected, error, 'advance() rejects with the error the event carries');
        if (types.isNativeError(value)) {
          assert.equal(error, value);
        } else {
          assert.ok(error instanceof Error);
          assert.equal(error.cause, value);
          assert.equal(error.message, `batch 1000: ${JSON.stringify(value)} was thrown, which is not an Error (it is this error's cause)`);
        }
      } finally {
        await ssc.stop().catch(() => undefined);
      }
    }
  });
});

describe('tuple keys', () => {
  it('a generator that reuses one key array for the pairs it yields: each pair keeps the key it had when yielded, in its own partition', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 2 });
    const sizes = ssc.queueStream<number>();
    const stream = sizes
      .flatMap(function* (n) {
        const key: [string, number] = ['u', 0];
        for (let i = 1; i <= n; i++) {
          key[1] = i;
          yield [key, 1] as [[string, number], number];
        }
      })
      .mapWithState(StateSpec.function<[string, number], number, number, unknown>(fixture('count')).numPartitions(4));
    const out: unknown[] = [];
    stream.foreachBatch((rs) => void out.push(...rs));
    await ssc.start();
    try {
      sizes.pushBatch([3]);
      await (ssc.clock as ManualClock).advance(1000);
      // Outputs come partition by partition.
      assert.deepEqual(out.map((r) => JSON.stringify(r)).sort(), ['[["u",1],1]', '[["u",2],1]', '[["u",3],1]']);
      assert.deepEqual([...stream.store().entries()].sort(), [[['u', 1], 1], [['u', 2], 1], [['u', 3], 1]]);
      assert.equal(stream.store().count(), 3);
    } finally {
      await ssc.stop();
    }
  });

  it('initial state from a generator that reuses one key array: each key keeps its state', async () => {
    function* reused(): Generator<[[string, number], number]> {
      const key: [string, number] = ['v', 0];
      for (let i = 1; i <= 6; i++) {
        key[1] = i;
        yield [key, i * 10];
      }
    }
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 2 });
    const input = ssc.queueStream<[[string, number], number]>();
    const stream = input.mapWithState(StateSpec.function<[string, number], number, number, unknown>(fixture('count')).numPartitions(4).initialState(reused()));
    await ssc.start();
    try {
      await (ssc.clock as ManualClock).advance(1000);
      assert.deepEqual([1, 2, 3, 4, 5, 6].map((i) => stream.store().get(['v', i])), [10, 20, 30, 40, 50, 60]);
      assert.equal(stream.store().count(), 6);
    } finally {
      await ssc.stop();
    }
  });
});

describe('a mapWithState stream fed by another', () => {
  it('gets its records though no output reads either stream', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const input = ssc.queueStream<[string, number]>();
    const first = input.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    const second = first.map(([key, n]): [string, number] => [`${key}:${n}`, 1]).mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2));
    await ssc.start();
    try {
      input.pushBatch([['a', 1], ['a', 1], ['b', 1]]);
      await (ssc.clock as ManualClock).advance(1000);
      assert.deepEqual([...second.store().entries()].sort(), [['a:1', 1], ['a:2', 1], ['b:1', 1]]);
    } finally {
      await ssc.stop();
    }
  });
});

describe('a StateSpec left at its defaults, with initial state in a Set', () => {
  it('has 4 partitions, and its Set (iterable again, unlike an iterator) seeds every stream and a later context given the spec', async () => {
    const spec = StateSpec.function<string, number, number, unknown>(fixture('count')).initialState(new Set<[string, number]>([['a', 5], ['b', 7]]));
    for (const run of [1, 2]) {
      const dataDir = tempDir();
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir, clock: new ManualClock(0), threads: 1 });
      const input = ssc.queueStream<[string, number]>();
      const streams = [input.mapWithState(spec), input.mapWithState(spec)];
      await ssc.start();
      try {
        await (ssc.clock as ManualClock).advance(1000);
        for (const [i, stream] of streams.entries()) {
          assert.deepEqual([stream.store().get('a'), stream.store().get('b')], [5, 7], `context ${run}, stream ${i}: seeded`);
          assert.deepEqual(readdirSync(stateDir(dataDir, i)).filter((n) => n.startsWith('partition-')).length, 4, `context ${run}, stream ${i}: four stores`);
        }
      } finally {
        await ssc.stop();
      }
    }
  });
});

describe('a map, flatMap or filter that throws', () => {
  it('fails the batch naming the operation, where it was defined, the batch and the record, with the cause kept', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const lines = ssc.queueStream<string | null>();
    const seen: string[] = [];
    lines
      .map((line) => line)
      .flatMap((line) => line!.split(' '))
      .filter((word) => word.length > 0)
      .foreachBatch((words) => void seen.push(...words));
    await ssc.start();
    try {
      lines.push('a b');
      await (ssc.clock as ManualClock).advance(1000);
      lines.push('c', null, 'd');
      await assert.rejects((ssc.clock as ManualClock).advance(1000), (e: unknown) => {
        assert.ok(e instanceof StatestreamError, String(e));
        assert.equal(e.code, 'ERR_STREAM_OPERATION');
        assert.match(e.message, /^flatMap \(operation 2 of the chain on queueStream 0, defined at .*stream-operations\.test\.js:\d+:\d+\) threw on record 1 of batch 2000 \(null\): Cannot read properties of null \(reading 'split'\)$/);
        assert.deepEqual({ ...e.context, definedAt: undefined }, { operation: 'flatMap', position: 2, stream: 'queueStream 0', definedAt: undefined, batchTime: 2000, index: 1 });
        assert.ok(e.cause instanceof TypeError);
        return true;
      });
      assert.deepEqual(seen, ['a', 'b'], 'the failed batch ran no output');
    } finally {
      await ssc.stop();
    }
  });

  it('names a filter and a map the same way, and a flatMap that returns no iterable', async () => {
    const counted = (s: ReturnType<StreamingContext['queueStream']>) => s.map((w): [string, number] => [String(w), 1]).mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')));
    const cases: Array<[(s: ReturnType<StreamingContext['queueStream']>) => void, RegExp]> = [
      [(s) => s.filter((n) => (n as number).toFixed(1) !== '').foreachBatch(() => {}), /^filter \(operation 1 of the chain on queueStream 0, defined at .*\) threw on record 0 of batch 1000 \("x"\): .*toFixed is not a function$/],
      [(s) => s.map((n) => JSON.parse(n as string)).foreachBatch(() => {}), /^map \(operation 1 of the chain on queueStream 0, defined at .*\) threw on record 0 of batch 1000 \("x"\): .*JSON/],
      [(s) => s.flatMap(() => 5 as never).foreachBatch(() => {}), /^flatMap \(operation 1 of the chain on queueStream 0, defined at .*\) threw on record 0 of batch 1000 \("x"\): flatMap function returned number, not an iterable$/],
      [(s) => s.flatMap(() => null as never).foreachBatch(() => {}), /^flatMap \(operation 1 of the chain on queueStream 0, defined at .*\) threw on record 0 of batch 1000 \("x"\): flatMap function returned null, not an iterable$/],
      // A generator that fails while it is read, not when it is called.
      [(s) => s.flatMap(function* (line) {
        yield line;
        throw new RangeError('the generator broke');
      }).foreachBatch(() => {}), /^flatMap \(operation 1 of the chain on queueStream 0, defined at .*\) threw on record 0 of batch 1000 \("x"\): the generator broke$/],
      // On a state stream (the context's third stream, its first mapWithState): named by its mapWithState number.
      [(s) => counted(s).map(() => {
        throw new Error('boom');
      }).foreachBatch(() => {}), /^map \(operation 1 of the chain on mapWithState stream 0, defined at .*\) threw on record 0 of batch 1000 \(.*\): boom$/],
      [(s) => counted(s).stateSnapshots().filter(() => {
        throw new Error('boom');
      }).foreachBatch(() => {}), /^filter \(operation 1 of the chain on stateSnapshots of mapWithState stream 0, defined at .*\) threw on record 0 of batch 1000 \(.*\): boom$/],
    ];
    for (const [build, message] of cases) {
      const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
      const input = ssc.queueStream<unknown>();
      build(input);
      await ssc.start();
      try {
        input.push('x');
        await assert.rejects((ssc.clock as ManualClock).advance(1000), (e: unknown) => e instanceof StatestreamError && message.test(e.message));
      } finally {
        await ssc.stop();
      }
    }
  });

  describe('on a Kafka stream', { timeout: 120_000 }, () => {
    const services = useServices();

    it('names the message by topic, partition and offset (a null value from a tombstone)', async () => {
      const topic = 'tombstones';
      await services.kafka.createTopic(topic, 2);
      await services.producer.send({ topic, messages: [{ key: 'a', value: 'x y', partition: 1 }, { key: 'a', value: null, partition: 1 }] });
      const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), threads: 1, appName: 'tombstones' });
      ssc
        .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: 'tombstones', zookeeper: { connect: services.zk.connectString }, groupSessionTimeoutMs: 6000 })
        // A function that forgets the tombstone's null value, as the type warns: it throws on it.
        .flatMap((record) => (record.value as string).split(' '))
        .foreachBatch(() => {});
      const failed = nextFailure(ssc, 60_000);
      await ssc.start();
      try {
        const { error } = await failed;
        assert.ok(error instanceof StatestreamError);
        assert.match(error.message, /^flatMap \(operation 1 of the chain on kafkaStream\(tombstones\), defined at .*stream-operations\.test\.js:\d+:\d+\) threw on the message at tombstones\[1\] offset 1 in batch \d+: Cannot read properties of null \(reading 'split'\)$/);
        assert.deepEqual([error.context.topic, error.context.partition, error.context.offset], [topic, 1, '1']);
      } finally {
        await ssc.stop();
      }
    });
  });
});
