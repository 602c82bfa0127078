import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BatchEvents, StateSpec, type BatchCompletedEvent, type State } from '../../src/index.js';
import { applyChunk, type MappingFunction } from '../../src/actors/apply-shard.js';
import { encodeShards } from '../../src/actors/shard-encoder.js';
import { workerPartition } from '../../src/actors/worker-partitions.js';
import { murmur2Partitioner } from '../../src/engine/partitioner.js';
import { StateHandle } from '../../src/engine/state.js';
import { decodeOutputs } from '../../src/storage/partition/batch-outputs.js';
import type { ApplyDone } from '../../src/actors/messages.js';
import { fixture, keyedJob, sorted, tempDir, writeBehind } from '../helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const count: MappingFunction = (_time, key, value, state: StateHandle<unknown>) => {
  const sum = ((value as number) ?? 0) + ((state.getOption() as number) ?? 0);
  (state as State<number>).update(sum);
  return [key, sum];
};

/** One batch of [key, 1] records (or of `records`) applied in this thread, as a worker applies it. */
async function applyHere(path: string, incarnation: string, batchTime: number, keys: string[], fn = count, records: unknown[] = keys.map((k) => [k, 1])): Promise<unknown[]> {
  const [shard] = encodeShards(records, 1, murmur2Partitioner, { batchTime, stream: 0 });
  const result = await applyChunk(workerPartition({ storePath: path, incarnation, cacheEntries: 1000 }), fn, {
    op: 'apply', storePath: path, partition: 0, batchTime, attempt: batchTime, chunk: 0, last: true, timeoutMs: null, fn: { url: '', exportName: 'default' },
    shard: shard.buffer as SharedArrayBuffer, deadLetters: [], incarnation, cacheEntries: 1000, emitOutputs: true,
  });
  assert.equal(result.status, 'ok');
  return decodeOutputs((result as ApplyDone).outputs);
}

describe("a partition's state in worker memory is never stale", () => {
  it('memory that does not mirror the batch the log names is dropped, and so is memory of another opening of the stores', async () => {
    const path = join(tempDir(), 'partition-0000');
    assert.deepEqual(await applyHere(path, 'first', 1000, ['a', 'a']), [['a', 1], ['a', 2]]);
    assert.deepEqual(await applyHere(path, 'first', 2000, ['a']), [['a', 3]], 'served from memory');
    // Batch 3000 committed by someone else: a = 100.
    writeBehind(path, 3000, [['a', 100]]);
    assert.deepEqual(await applyHere(path, 'first', 4000, ['a']), [['a', 101]], 'the batch log names 3000, which this memory never saw');
    // The folder replaced by other stores (a reshard, a restore) opened anew: a = 7 as of batch 4000.
    rmSync(path, { recursive: true });
    writeBehind(path, 4000, [['a', 7]]);
    assert.deepEqual(await applyHere(path, 'second', 5000, ['a']), [['a', 8]], 'a new incarnation drops what the old one held');
  });

  it("a store written by someone else after this memory read its change log: the log is read again (a large state, whose changes go to the log)", async () => {
    const path = join(tempDir(), 'partition-0000');
    await applyHere(path, 'first', 1000, ['a', ...Array.from({ length: 300 }, (_, i) => `k${i}`)]);
    assert.deepEqual(await applyHere(path, 'first', 2000, ['a']), [['a', 2]], 'one change among 301 keys: logged, not written in place');
    writeBehind(path, 3000, [['a', 100]]);
    assert.deepEqual(await applyHere(path, 'first', 4000, ['a']), [['a', 101]]);
  });

  it('with stateCacheEntries 0, each batch reads what the batch before committed', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(1), { dataDir: tempDir(), threads: 1, stateCacheEntries: 0 });
    try {
      for (let n = 1; n <= 4; n++) assert.deepEqual(await job.batch([['a', 1]]), [['a', n]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('tuple keys in memory: one a batch removed has no state in the next, and each counts against the memory bound', async () => {
    const job = await keyedJob(StateSpec.function<[string, number], number, number, unknown>(fixture('tally-or-drop')).numPartitions(1), { dataDir: tempDir(), threads: 1, stateCacheEntries: 4 });
    const stats: BatchCompletedEvent[] = [];
    job.ssc.on(BatchEvents.COMPLETED, (e) => stats.push(e));
    try {
      assert.deepEqual(await job.batch([[['x', 1], 1]]), [[['x', 1], 1]]);
      assert.deepEqual(await job.batch([[['x', 1], 0]]), [[['x', 1], null]]);
      assert.deepEqual(await job.batch([[['x', 1], 1]]), [[['x', 1], 1]], 'counted from nothing, not from the state it had before its removal');
      // Ten tuple keys into a memory bound of 4 entries.
      await job.batch(Array.from({ length: 10 }, (_, i): [[string, number], number] => [['k', i], 1]));
      const entries = stats.at(-1)!.partitionStats[0][0].memoryEntries;
      assert.ok(entries > 0 && entries <= 4, `${entries} tuple keys in a memory of 4`);
    } finally {
      await job.ssc.stop();
    }
  });

  it('object states a batch only reads are served from memory as they are in LMDB, each key its own', async () => {
    const path = join(tempDir(), 'partition-0000');
    // 'set' stores an object naming its key; 'read' emits what the state says, and leaves it as it is.
    const owner: MappingFunction = (_time, key, value, state: StateHandle<unknown>) => {
      if (value === 'set') (state as State<{ owner: string }>).update({ owner: key as string });
      return [key, (state.get() as { owner: string }).owner];
    };
    const keys = ['apple', 'banana', 'cherry'];
    await applyHere(path, 'first', 1000, [], owner, keys.map((k) => [k, 'set']));
    const read = keys.map((k) => [k, 'read']);
    const expected = keys.map((k) => [k, k]);
    // Opened anew (a restart): each key is read from LMDB, one read after another…
    assert.deepEqual(await applyHere(path, 'second', 2000, [], owner, read), expected);
    // …and then from memory.
    assert.deepEqual(await applyHere(path, 'second', 3000, [], owner, read), expected, 'served from memory');
  });

  it('a job stopped, re-sharded, imported into and migrated continues from the stores, never from what its threads held', async () => {
    const dataDir = tempDir();
    const spec = (n: number) => StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(n);
    const words = ['a', 'b', 'c', 'd', 'e', 'f'];
    const batch = (n: number) => words.flatMap((w) => Array.from({ length: n }, () => [w, 1] as [string, number]));

    // Counts at 2 each, exported; then counted on to 5 each.
    let job = await keyedJob(spec(2), { dataDir, threads: 2 });
    await job.batch(batch(2));
    await job.ssc.stop();
    const exported = join(tempDir(), 'at-two.msgpack');
    const out = spawnSync(process.execPath, [cli, 'export', '--out', exported, '--data-dir', dataDir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(out.status, 0, out.stderr);
    job = await keyedJob(spec(2), { dataDir, threads: 2, startMs: 1000 });
    await job.batch(batch(3));
    await job.ssc.stop();

    // Re-sharded to 3 partitions at start: every key continues from 5.
    job = await keyedJob(spec(3), { dataDir, threads: 2, startMs: 2000 });
    assert.deepEqual(sorted(await job.batch(batch(1))), sorted(words.map((w) => [w, 6])));
    await job.ssc.stop();

    // The export (2 each) imported over the stores: they continue from 2, not 6.
    const imported = spawnSync(process.execPath, [cli, 'import', exported, '--replace', '--partitions', '3', '--data-dir', dataDir], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(imported.status, 0, imported.stderr);
    job = await keyedJob(spec(3), { dataDir, threads: 2, startMs: 10_000 });
    assert.deepEqual(sorted(await job.batch(batch(1))), sorted(words.map((w) => [w, 3])));
    await job.ssc.stop();

    // Migrated to version 2 (× 10): they continue from 30.
    job = await keyedJob(spec(3).stateVersion(2, (state) => (state as number) * 10), { dataDir, threads: 2, startMs: 20_000 });
    try {
      assert.deepEqual(sorted(await job.batch(batch(1))), sorted(words.map((w) => [w, 31])));
      for (const w of words) assert.equal(job.stream.store().get(w), 31);
    } finally {
      await job.ssc.stop();
    }
  });
});
