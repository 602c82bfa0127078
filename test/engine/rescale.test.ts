import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PoisonRecordError, StateSpec, StoreMismatchError } from '../../src/index.js';
import { readStoredLayout, reshardStores } from '../../src/storage/reshard/reshard.js';
import { BatchLog } from '../../src/storage/partition/batch-log.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import type { FaultyValue } from '../fixtures/faulty.js';
import { editLayout, fixture, keyedJob, runThenStop, sorted, tempDir } from '../helpers.js';
import { seededRandom } from '../random.js';

type Key = string | number | [string, number];
type Value = number | 'touch';

const idleSpec = (n: number) => StateSpec.function<Key, Value, number, unknown>(fixture('idle-count')).numPartitions(n).timeout(2500);
const faulty = (n: number) => StateSpec.function<string, FaultyValue, number, [string, number]>(fixture('faulty')).numPartitions(n);

async function twoPartitionJob(): Promise<string> {
  const dataDir = tempDir();
  await runThenStop(idleSpec(2), { dataDir }, [['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
  return dataDir;
}

/** Batches over ~400 keys (strings, numbers, tuples): with a 2500 ms timeout about a third go idle and time out in any batch. */
function workload(batches: number): Array<Array<[Key, Value]>> {
  const { next } = seededRandom(42);
  const pool: Key[] = [
    ...Array.from({ length: 260 }, (_, i) => `user-${i}`),
    ...Array.from({ length: 40 }, (_, i) => i * 7 - 50),
    ...Array.from({ length: 100 }, (_, i): [string, number] => ['region', i]),
  ];
  return Array.from({ length: batches }, () =>
    Array.from({ length: 100 + Math.floor(next() * 100) }, (): [Key, Value] => [pool[Math.floor(next() * pool.length)], next() < 0.1 ? 'touch' : 1 + Math.floor(next() * 5)]),
  );
}

function partitionFolders(dataDir: string): string[] {
  return readdirSync(join(dataDir, 'state-0')).filter((name) => name.startsWith('partition-'));
}

describe('rescaling: a job started with another numPartitions than its stores', () => {
  it('4 → 8 → 3 partitions gives the outputs and final state of one uninterrupted 4-partition run', async () => {
    const batches = workload(12);

    const reference = await keyedJob(idleSpec(4), { dataDir: tempDir() });
    const expected: unknown[][] = [];
    let expectedEntries: Array<[Key, number]>;
    let expectedCount: number;
    try {
      for (const batch of batches) expected.push(sorted(await reference.batch(batch)));
      expectedEntries = [...reference.stream.store().entries()] as Array<[Key, number]>;
      expectedCount = reference.stream.store().count();
    } finally {
      await reference.ssc.stop();
    }
    assert.ok(expected.flat().some((r) => Array.isArray(r) && r[0] === 'timeout'), 'the workload makes keys time out');
    assert.ok(expectedEntries.some(([k]) => Array.isArray(k)) && expectedEntries.some(([k]) => typeof k === 'number'));

    const dataDir = tempDir();
    const actual: unknown[][] = [];
    let entries: Array<[Key, number]> = [];
    let count = 0;
    for (const [phase, n] of [[0, 4], [1, 8], [2, 3]] as const) {
      const job = await keyedJob(idleSpec(n), { dataDir, startMs: phase * 4000 });
      try {
        assert.equal(readStoredLayout(dataDir, 0)?.numPartitions, n, `the layout records ${n} partitions`);
        assert.equal(partitionFolders(dataDir).length, n, `${n} partition folders`);
        assert.deepEqual(readdirSync(dataDir).sort(), ['state-0', 'statestream.lock'], 'no .reshard or .old folder is left');
        if (phase > 0) assert.equal(job.stream.store().count(), count, 'the count survives the reshard');
        for (const batch of batches.slice(phase * 4, phase * 4 + 4)) actual.push(sorted(await job.batch(batch)));
        entries = [...job.stream.store().entries()] as Array<[Key, number]>;
        count = job.stream.store().count();
      } finally {
        await job.ssc.stop();
      }
    }
    for (let i = 0; i < batches.length; i++) assert.deepEqual(actual[i], expected[i], `outputs of batch ${(i + 1) * 1000}`);
    assert.deepEqual(entries, expectedEntries);
    assert.equal(count, expectedCount);
    assert.equal(count, entries.length);
  });

  it("keeps the last batch's timed-out key count in the batch logs it rewrites (what a replay of that batch reports)", async () => {
    const dataDir = tempDir();
    const timedOutOf = (n: number) =>
      Array.from({ length: n }, (_, p) => {
        const store = openPartitionStore(partitionPath(dataDir, 0, p));
        try {
          return new BatchLog(store).last()?.timedOut ?? 0;
        } finally {
          store.env.close();
        }
      }).reduce((a, b) => a + b, 0);
    await runThenStop(idleSpec(4), { dataDir }, ...workload(4));
    const before = timedOutOf(4);
    assert.ok(before > 0, 'the last batch timed keys out');
    await runThenStop(idleSpec(6), { dataDir, startMs: 4000 });
    assert.equal(timedOutOf(6), before);
  });

  it('keeps every dead letter, readable by deadLetters(), and new ones are added beside them', async () => {
    const dataDir = tempDir();
    const policy = { policy: 'dead-letter', maxAttempts: 1 } as const;
    // Every partition gets a poisoned record at shard index 0, 1, …: after the move, letters
    // of the same batch and index from different old partitions share a new partition.
    const poisoned = (batch: number) => Array.from({ length: 12 }, (_, i): [string, FaultyValue] => [`p${batch}-${i}`, { poison: true }]);
    const first = await keyedJob(faulty(3).onRecordFailure(policy), { dataDir });
    let before;
    try {
      await first.batch([...poisoned(1), ['a', 1], ['b', 1]]);
      await first.batch([['a', 1], ...poisoned(2)]);
      before = first.stream.deadLetters();
      assert.equal(before.length, 24);
    } finally {
      await first.ssc.stop();
    }

    const merged = await keyedJob(faulty(1).onRecordFailure(policy), { dataDir, startMs: 2000 });
    let after;
    try {
      assert.deepEqual(merged.stream.deadLetters(), before, 'all 24 letters, unchanged, in the single partition');
      assert.deepEqual(sorted(await merged.batch([['a', 1], ['x', { poison: true }]])), [['a', 3]]);
      after = merged.stream.deadLetters();
      assert.equal(after.length, 25);
      assert.deepEqual(after.slice(0, 24), before);
      assert.equal(after[24].key, 'x');
    } finally {
      await merged.ssc.stop();
    }

    const spread = await keyedJob(faulty(4).onRecordFailure(policy), { dataDir, startMs: 3000 });
    try {
      assert.deepEqual(spread.stream.deadLetters(), after);
      assert.equal(spread.stream.store().get('a'), 3);
      assert.equal(spread.stream.store().get('b'), 1);
    } finally {
      await spread.ssc.stop();
    }
  });

  it('refuses to reshard a half-committed batch, naming it, and reshards once one batch has completed', async () => {
    const dataDir = tempDir();
    const job = await keyedJob(faulty(2).onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir });
    // 'd' and 'bad' land in different partitions (murmur2 % 2): d's partition commits batch 1000, bad's does not.
    job.input.pushBatch([['a', 1], ['b', 1], ['c', 1], ['d', 1], ['bad', { poison: true }]]);
    await assert.rejects(job.clock.advance(1000), PoisonRecordError);
    await job.ssc.stop();

    await assert.rejects(keyedJob(faulty(5), { dataDir, startMs: 1000 }), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError);
      assert.match(error.message, /from 2 to 5 partitions: batch 1000 was only half committed/);
      assert.match(error.message, /partition \d: none/);
      assert.match(error.message, /Start once with numPartitions\(2\) and let one batch complete/);
      assert.deepEqual([...(error.context.lastBatches as unknown[])].sort(), [1000, undefined]);
      return true;
    });
    assert.equal(readStoredLayout(dataDir, 0)?.numPartitions, 2, 'the stores are left as they were');
    assert.ok(!existsSync(join(dataDir, 'state-0.reshard')));

    await runThenStop(faulty(2), { dataDir, startMs: 1000 }, [['a', 1]]);
    const rescaled = await keyedJob(faulty(5), { dataDir, startMs: 2000 });
    try {
      assert.deepEqual([...rescaled.stream.store().entries()], [['a', 1], ['d', 1]], 'batch 1000 counted d once; a came with the catch-up batch');
      assert.equal(rescaled.stream.store().count(), 2);
      assert.deepEqual(sorted(await rescaled.batch([['a', 1], ['bad', 1]])), [['a', 2], ['bad', 1]]);
    } finally {
      await rescaled.ssc.stop();
    }
  });

  it('refuses stores written with another partitioner, whatever the partition count, at start and in a reshard by hand, and changes nothing', async () => {
    const dataDir = await twoPartitionJob();
    for (const p of [0, 1]) editLayout(dataDir, p, { partitioner: 'crc32' });
    for (const n of [2, 5]) {
      await assert.rejects(keyedJob(idleSpec(n), { dataDir, startMs: 1000 }), (error: unknown) => {
        assert.ok(error instanceof StoreMismatchError, String(error));
        assert.match(error.message, /were partitioned with "crc32", but this version routes keys with "murmur2"; use a new dataDir/);
        return true;
      }, `started with ${n} partitions`);
    }
    // What `statestream reshard` calls: it would place every key with murmur2 under a layout that still says crc32.
    assert.throws(() => reshardStores(dataDir, 0, 3), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /were partitioned with "crc32", but this version routes keys with "murmur2"; use a new dataDir/);
      return true;
    });
    assert.deepEqual([readStoredLayout(dataDir, 0)?.partitioner, readStoredLayout(dataDir, 0)?.numPartitions], ['crc32', 2]);
    assert.deepEqual(readdirSync(dataDir).sort(), ['state-0', 'statestream.lock'], 'no .reshard or .old folder is left');
  });

  it('refuses to reshard partitions at different state versions (a migration cut short), and changes nothing', async () => {
    const dataDir = await twoPartitionJob();
    editLayout(dataDir, 0, { stateVersion: 2 });
    const v2 = (n: number) => idleSpec(n).stateVersion(2, (state) => state as number);
    await assert.rejects(keyedJob(v2(4), { dataDir, startMs: 1000 }), (error: unknown) => {
      assert.ok(error instanceof StoreMismatchError, String(error));
      assert.match(error.message, /from 2 to 4 partitions: its partitions hold different state versions \(partition 0: 2, partition 1: 1\)/);
      assert.match(error.message, /Start once with numPartitions\(2\) so the migration completes/);
      return true;
    });
    assert.equal(readStoredLayout(dataDir, 0)?.numPartitions, 2);
    assert.deepEqual(readdirSync(dataDir).sort(), ['state-0', 'statestream.lock'], 'no .reshard or .old folder is left');
    // As the error says: once at the old count (the migration completes), then the new one.
    await runThenStop(v2(2), { dataDir, startMs: 1000 });
    const rescaled = await keyedJob(v2(4), { dataDir, startMs: 1000 });
    try {
      assert.deepEqual([...rescaled.stream.store().entries()], [['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
    } finally {
      await rescaled.ssc.stop();
    }
  });
});
