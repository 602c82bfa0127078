import type { State } from '../../src/index.js';

/**
 * The mapping function from the Spark mapWithState article: a word whose existing count is
 * above 10 is removed (and nothing is emitted for it), so the state cannot grow without
 * bound; otherwise its count goes up and is emitted. So a word's counts read 1 … 11, its
 * next occurrence removes it, and the one after starts again at 1.
 * It runs on a worker thread, so it is a module of its own rather than a closure in main.ts.
 */
export default function count(_time: number, key: string, value: number | undefined, state: State<number>): [string, number] | undefined {
  // The article's job has no timeout; with one, a word that times out just goes.
  if (state.isTimingOut()) return undefined;
  const existing = state.getOption();
  if (existing !== undefined && existing > 10) {
    state.remove();
    return undefined;
  }
  const sum = (existing ?? 0) + (value ?? 1);
  state.update(sum);
  return [key, sum];
}
