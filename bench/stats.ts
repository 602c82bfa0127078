import { max, median, min, quantile } from 'simple-statistics';

/** A figure measured several times: its median, the range, and every run. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function summarize(runs: number[]): Summary {
  if (runs.length === 0) return { median: NaN, min: NaN, max: NaN, runs: [] };
  return { median: median(runs), min: min(runs), max: max(runs), runs: [...runs] };
}

/** Percentile p (0–1) of a sample, interpolated as simple-statistics does. */
export function percentile(sample: number[], p: number): number {
  return sample.length === 0 ? NaN : quantile(sample, p);
}
