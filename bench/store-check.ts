/**
 * What the start-up store check costs on a large partition store, measured by hand (not part
 * of `npm run bench`):
 *   node dist/bench/store-check.js [--keys 1000000] [--reps 20]
 * Builds one partition of 10^6 fresh keys through the runtime (batches of 10^5, a timeout so
 * the time index is kept, as the scaling scenario does), then times checkStoreFile — which
 * walks the pages the newest commit can reach with plain reads — beside reading the whole
 * file once, the cost a check that reads every page would have.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { checkStoreFile } from '../src/storage/partition/store-check.js';
import { findUnreachablePage, readMeta } from '../src/storage/partition/lmdb-file.js';
import { partitionPath } from '../src/storage/partition/store.js';
import { summarize } from './stats.js';
import { RuntimeJob, tempDataDir } from './runtime.js';

const { values } = parseArgs({ options: { keys: { type: 'string', default: '1000000' }, reps: { type: 'string', default: '20' } } });
const keys = Number(values.keys);
const reps = Number(values.reps);
const BATCH = 100_000;

const dir = tempDataDir('store-check');
try {
  const job = await RuntimeJob.start({ dataDir: dir.path, partitions: 1, threads: 1, timeoutMs: 3_600_000 });
  for (let done = 0; done < keys; done += BATCH) await job.batch(Array.from({ length: Math.min(BATCH, keys - done) }, (_, i) => `key-${done + i}`));
  await job.stop();

  const store = partitionPath(dir.path, 0, 0);
  const file = join(store, 'data.mdb');
  const size = statSync(file).size;
  const timings: number[] = [];
  for (let i = 0; i < reps; i++) {
    const started = performance.now();
    const problem = checkStoreFile(store);
    timings.push(performance.now() - started);
    if (problem) throw new Error(`the healthy store was judged damaged: ${problem}`);
  }
  const fd = openSync(file, 'r');
  const counter = { pagesRead: 0 };
  const read = readMeta(fd, size);
  if ('meta' in read) findUnreachablePage(fd, size, read.meta, counter);
  const whole: number[] = [];
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < Math.min(reps, 5); i++) {
    const started = performance.now();
    for (let at = 0; at < size; at += chunk.length) readSync(fd, chunk, 0, chunk.length, at);
    whole.push(performance.now() - started);
  }
  closeSync(fd);
  const pageSize = 'meta' in read ? read.meta.pageSize : 4096;
  console.log(`${keys} keys in one partition: data.mdb ${(size / 2 ** 20).toFixed(1)} MiB (${size / pageSize} pages)`);
  console.log(`checkStoreFile: median ${summarize(timings).median.toFixed(2)} ms (min ${Math.min(...timings).toFixed(2)}, max ${Math.max(...timings).toFixed(2)}) over ${reps} runs, reading ${counter.pagesRead} pages (${((counter.pagesRead / (size / pageSize)) * 100).toFixed(2)}% of the file)`);
  console.log(`reading the whole file once (1 MiB reads, page cache warm): median ${summarize(whole).median.toFixed(1)} ms`);
} finally {
  dir.remove();
}
