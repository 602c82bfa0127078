import type { State } from '../../src/index.js';

/**
 * The mapping function from the Spark mapWithState article. Counts past 10 are dropped so
 * the state cannot grow without bound; the word starts again at 1 the next time it is typed.
 * It runs on a worker thread, so it is a module of its own rather than a closure in main.ts.
 */
export default function count(_time: number, key: string, value: number | undefined, state: State<number>): [string, number] | undefined {
  const sum = (value ?? 0) + (state.getOption() ?? 0);
  if (sum > 10) {
    state.remove();
    return undefined;
  }
  state.update(sum);
  return [key, sum];
}
