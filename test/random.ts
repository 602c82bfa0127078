/**
 * Random choices in tests (kill times, workloads) come from a seed that the test prints, so a
 * failure can be replayed: STATESTREAM_TEST_SEED=<seed> runs the same choices again.
 */
import type { TestContext } from 'node:test';
import { mulberry32 } from '../examples/word-count/typist.js';

export const SEED_VARIABLE = 'STATESTREAM_TEST_SEED';

export interface SeededRandom {
  readonly seed: number;
  /** A number in [0, 1). */
  next(): number;
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number;
  /** Says how to replay, for assertion messages. */
  readonly replay: string;
}

export function seededRandom(seed: number): SeededRandom {
  const next = mulberry32(seed);
  return {
    seed,
    next,
    between: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    replay: `seed ${seed}, replay with ${SEED_VARIABLE}=${seed}`,
  };
}

/** The seed from STATESTREAM_TEST_SEED, or a fresh one; printed in the test's diagnostics either way. */
export function testRandom(t: TestContext): SeededRandom {
  const given = process.env[SEED_VARIABLE];
  if (given !== undefined && !/^\d+$/.test(given)) throw new Error(`${SEED_VARIABLE} must be a non-negative integer, got ${JSON.stringify(given)}`);
  const random = seededRandom(given === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(given));
  t.diagnostic(`random choices from ${random.replay}`);
  return random;
}
