import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface RssSampler {
  /** Stops sampling; the highest resident set size seen, in MB. */
  stop(): number;
}

/**
 * The process's peak resident set size over a stretch of a run (worker threads included:
 * they share the process). Node's own maxRSS covers the whole process life, so one
 * scenario's peak is sampled instead, every 20 ms.
 */
export function peakRss(): RssSampler {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss()) / 2 ** 20;
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
