import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ManualClock, StateSpec, StreamingContext } from '../../src/index.js';
import { fixture, tempDir } from '../helpers.js';

// A full collection on demand, without a flag on the test runner's command line.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/** Whether the object behind `ref` is still reachable after full collections (a few turns of the event loop apart). */
async function reachable(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    collect();
  }
  return ref.deref() !== undefined;
}

describe('memory between batches', () => {
  it('keeps nothing of a finished batch: the mapped records its output read can be collected', async () => {
    const clock = new ManualClock(0);
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock, threads: 1 });
    const words = ssc.queueStream<string>();
    const spec = StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2);
    const counts = words.map((w) => [w, 1] as [string, number]).mapWithState(spec);
    let mapped: WeakRef<object> | undefined;
    let seen: Array<[string, number]> = [];
    counts.foreachBatch((records) => {
      mapped = new WeakRef(records);
      seen = records.map(([w, n]) => [w, n]);
    });
    await ssc.start();
    try {
      words.pushBatch(['a', 'b', 'a']);
      await clock.advance(1000);
      assert.deepEqual(seen.sort(), [['a', 1], ['a', 2], ['b', 1]], 'the batch ran');
      assert.ok(mapped, 'the output operation ran');
      // The context holds the job, its streams and actors: none of them may hold the last batch.
      assert.equal(await reachable(mapped), false, 'the mapped records of a finished batch are still reachable');
    } finally {
      await ssc.stop();
    }
  });

  it('leaves the mapped records of a batch that ran to young collections, though the batch is old by then', () => {
    const records = 100_000;
    const run = spawnSync(
      process.execPath,
      ['--expose-gc', '--max-semi-space-size=32', '--min-semi-space-size=32', fileURLToPath(fixture('young-kept')), tempDir(), String(records), '3'],
      { encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(run.status, 0, `the job failed: ${run.stderr}`);
    const kept = [...run.stdout.matchAll(/^KEPT ([\d.]+) /gm)].map((m) => Number(m[1]));
    assert.equal(kept.length, 3, `one figure a batch: ${run.stdout}`);
    // Held through the old batch, its 10^5 decoded pairs (about 7 MB) would wait for a full
    // collection. The least of three: V8 may still make one batch's outputs array old at once.
    assert.ok(Math.min(...kept) < 3, `young collections left ${kept.join(', ')} MB a batch that only a full collection freed`);
  });
});
