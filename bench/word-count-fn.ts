import type { State } from '../src/index.js';

/**
 * The bench's mapping function: the word count of the mapWithState article without its
 * "drop past 10" rule, so the state only grows. `state += value`, emit [word, count].
 * When a key times out (value undefined, state timing out) it emits its final count; a
 * state that is timing out must not be updated (Spark's rule).
 *
 * The runtime loads it on worker threads by module; the baselines import it directly.
 */
export default function wordCount(_time: number, word: string, value: number | undefined, state: State<number>): [string, number] {
  if (state.isTimingOut()) return [word, state.get()];
  const sum = (value ?? 0) + (state.getOption() ?? 0);
  state.update(sum);
  return [word, sum];
}
