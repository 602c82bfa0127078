import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StateSpec } from '../../src/index.js';
import { fixture, keyedJob, sorted, tempDir } from '../helpers.js';

/** A deterministic stream of skewed words, so every layout sees the same input. */
function batches(seed: number, count: number, size: number): Array<Array<[string, number]>> {
  let x = seed;
  const next = () => ((x = (x * 1103515245 + 12345) & 0x7fffffff), x);
  return Array.from({ length: count }, () => Array.from({ length: size }, () => [`w${Math.floor(Math.sqrt(next() % 400))}`, 1] as [string, number]));
}

describe('results do not depend on numPartitions or threads', () => {
  const input = batches(7, 6, 300);

  async function run(numPartitions: number, threads: number) {
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('article-count')).numPartitions(numPartitions), { dataDir: tempDir(), threads });
    try {
      const outputs = [];
      for (const b of input) outputs.push(sorted(await job.batch(b)));
      return { outputs, state: [...job.stream.store().entries()], snapshots: job.snapshots.map((s) => s.pairs) };
    } finally {
      await job.ssc.stop();
    }
  }

  it('1, 3 and 8 partitions on 1 and 2 threads give the same outputs, snapshots and state', async () => {
    const reference = await run(1, 1);
    assert.ok(reference.state.length > 5);
    for (const [p, t] of [[3, 1], [3, 2], [8, 2]] as const) {
      assert.deepEqual(await run(p, t), reference, `numPartitions=${p} threads=${t}`);
    }
  });
});
