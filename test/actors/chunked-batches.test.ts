import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, type PartitionRestartedEvent } from '../../src/index.js';
import { CHUNK_RECORDS } from '../../src/actors/shard-encoder.js';
import type { FaultyValue } from '../fixtures/faulty.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';

// One partition and three chunks' worth of records, keys repeating across chunk boundaries.
const RECORDS = CHUNK_RECORDS * 2 + 1000;
const key = (i: number) => `k${i % 97}`;

/** What a running count emits for records 0..n-1 of key(i), in order. */
function expectedCounts(n: number, start = new Map<string, number>()): Array<[string, number]> {
  const counts = new Map(start);
  return Array.from({ length: n }, (_, i) => {
    const c = (counts.get(key(i)) ?? 0) + 1;
    counts.set(key(i), c);
    return [key(i), c] as [string, number];
  });
}

describe('a batch that reaches its worker in chunks', () => {
  it('applies records in order across chunks, with keys first seen in any chunk; sync and async mapping functions alike', async () => {
    for (const fn of ['count', 'async-count']) {
      const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture(fn)).numPartitions(1), { dataDir: tempDir(), threads: 1 });
      try {
        const batch = Array.from({ length: RECORDS }, (_, i) => [key(i), 1] as [string, number]);
        assert.deepEqual(await job.batch(batch), expectedCounts(RECORDS), `${fn}: records in order`);
        const afterFirst = new Map(expectedCounts(RECORDS));
        assert.deepEqual(await job.batch(batch), expectedCounts(RECORDS, afterFirst), `${fn}: the next batch continues`);
        const occurrences = Array.from({ length: RECORDS }, (_, i) => i).filter((i) => key(i) === 'k0').length;
        assert.equal(job.stream.store().get('k0'), 2 * occurrences);
      } finally {
        await job.ssc.stop();
      }
    }
  });

  it('a record that fails in a later chunk retries the whole batch, and its dead letter names its place in the batch', async () => {
    const dir = tempDir();
    const spec = StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty')).numPartitions(1);
    const poisonAt = CHUNK_RECORDS * 2 + 10;
    const batch = Array.from({ length: RECORDS }, (_, i) => [key(i), i === poisonAt ? { poison: true } : 1] as [string, FaultyValue]);

    // In the last chunk, and in the first, whose later chunks are answered as stale: the record's failure decides, not a crash.
    for (const at of [poisonAt, 10]) {
      const poisoned = Array.from({ length: RECORDS }, (_, i) => [key(i), i === at ? { poison: true } : 1] as [string, FaultyValue]);
      const lettered = await keyedJob(spec.onRecordFailure({ policy: 'dead-letter', maxAttempts: 2 }), { dataDir: join(dir, `a-${at}`), threads: 1 });
      const restarts: PartitionRestartedEvent[] = [];
      lettered.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => void restarts.push(e));
      try {
        const out = await lettered.batch(poisoned);
        assert.equal(out.length, RECORDS - 1, `record ${at}: every other record of the batch was applied once`);
        const letters = lettered.stream.deadLetters();
        assert.deepEqual(letters.map((l) => [l.index, l.key, l.attempts]), [[at, key(at), 2]]);
        const total = [...lettered.stream.store().entries()].reduce((n, [, c]) => n + (c as number), 0);
        assert.equal(total, RECORDS - 1);
        assert.deepEqual(restarts, [], `record ${at}: no worker restart`);
      } finally {
        await lettered.ssc.stop();
      }
    }

    // A record that fails once, then succeeds: the batch is applied once, whole.
    const counter = join(dir, 'attempts');
    const flaky = await keyedJob(spec.onRecordFailure({ policy: 'stop', maxAttempts: 3 }), { dataDir: join(dir, 'b'), threads: 1 });
    try {
      const records = batch.map(([k], i) => [k, i === poisonAt ? { failTimes: 1, counter } : 1] as [string, FaultyValue]);
      const out = await flaky.batch(records);
      assert.deepEqual(out, expectedCounts(RECORDS));
    } finally {
      await flaky.ssc.stop();
    }
  });

  it('a worker that dies in the middle of a chunked batch is replaced and the batch replayed from its first chunk: exact counts', async () => {
    const dir = tempDir();
    const marker = join(dir, 'fault-fired');
    const job = await keyedJob(StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty')).numPartitions(1), { dataDir: join(dir, 'data'), threads: 1 });
    const restarts: PartitionRestartedEvent[] = [];
    job.ssc.on(BatchEvents.PARTITION_RESTARTED, (e) => restarts.push(e));
    try {
      const crashAt = CHUNK_RECORDS + 500;
      const out = await job.batch(Array.from({ length: RECORDS }, (_, i) => [key(i), i === crashAt ? { exitOnce: marker } : 1] as [string, FaultyValue]));
      assert.ok(existsSync(marker), 'the worker died');
      assert.equal(restarts.length, 1);
      assert.deepEqual(out, expectedCounts(RECORDS));
    } finally {
      await job.ssc.stop();
    }
  });
});
