import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** A run's memory, in MB: the process's highest resident set size, and how far it rose above the size at the start. */
export interface RssFigures {
  peak: number;
  rise: number;
}

export interface RssSampler {
  /** Takes a sample now: a run that never yields to the event loop (a baseline's batch loop) calls it between batches. */
  sample(): void;
  /** Stops sampling. The peak is the whole process (the inputs and whatever earlier runs left included); the rise is what this run added. */
  stop(): RssFigures;
}

/**
 * The process's peak resident set size over a stretch of a run (worker threads included:
 * they share the process). Node's own maxRSS covers the whole process life, so one
 * scenario's peak is sampled instead, every 20 ms while the event loop turns, and wherever
 * the run calls sample().
 */
export function peakRss(): RssSampler {
  const start = process.memoryUsage.rss();
  let peak = start;
  const sample = () => {
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  const timer = setInterval(sample, 20);
  timer.unref();
  return {
    sample,
    stop() {
      clearInterval(timer);
      sample();
      return { peak: peak / 2 ** 20, rise: (peak - start) / 2 ** 20 };
    },
  };
}

/** Bytes of the files under `dir` (a job's data folder: its LMDB environments), in MB. */
export function bytesOnDisk(dir: string): number {
  let bytes = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) bytes += bytesOnDisk(path) * 2 ** 20;
    else if (entry.isFile()) bytes += statSync(path).size;
  }
  return bytes / 2 ** 20;
}
