import { availableParallelism } from 'node:os';
import type { BenchConfig } from '../config.js';
import { log, overBudget, pow10, rawRate, settle, sum, timeBatches, type RawBaseline } from '../common.js';
import { LmdbLoop, MapLoop } from '../baselines.js';
import { bytesOnDisk, peakRss } from '../memory.js';
import type { Row, ScenarioResult } from '../report.js';
import { BATCH_INTERVAL_MS, RuntimeJob, tempDataDir } from '../runtime.js';
import { summarize } from '../stats.js';
import { batches as cut, vocabulary, zipfWords } from '../zipf.js';
import { timedRecords, WARM_UP_BATCHES } from './throughput.js';

/** Scenario 4: the word count's throughput for each number of threads and partitions. */
export async function threadsPartitions(config: BenchConfig, raw: RawBaseline): Promise<ScenarioResult> {
  const started = Date.now();
  const { threads, partitions, vocabulary: size, records } = config.threadsPartitions;
  const { skew, batchRecords } = config.throughput;
  const input = cut(zipfWords(vocabulary(size), records, skew, 4000 + size), batchRecords);
  // Each configuration with what its runs measured: rate, peak RSS above the start, state on disk.
  const configs = threads.flatMap((t) => partitions.map((p) => ({ threads: t, partitions: p, rates: [] as number[], rises: [] as number[], disks: [] as number[] })));
  // As in scenario 1: the first batches of a job run on workers whose JIT is cold, and are left out.
  const rate = (wall: number[]) => (timedRecords(input) / sum(wall.slice(WARM_UP_BATCHES))) * 1000;
  const mapRises: number[] = [];
  const lmdbRises: number[] = [];
  const lmdbDisks: number[] = [];
  const mapRuns: number[] = [];
  const lmdbRuns: number[] = [];

  let reps = 0;
  for (let rep = 0; rep < config.reps && !(rep > 0 && overBudget()); rep++, reps++) {
    for (const c of configs) {
      const dir = tempDataDir('threads');
      try {
        await settle();
        const rss = peakRss();
        const job = await RuntimeJob.start({ dataDir: dir.path, partitions: c.partitions, threads: c.threads });
        const wall: number[] = [];
        try {
          await settle();
          for (const batch of input) wall.push((await job.batch(batch)).wallMs);
        } finally {
          await job.stop();
        }
        c.rates.push(rate(wall));
        c.rises.push(rss.stop().rise);
        c.disks.push(bytesOnDisk(dir.path));
      } finally {
        dir.remove();
      }
    }
    await settle();
    const mapRss = peakRss();
    const map = new MapLoop();
    mapRuns.push(rate(timeBatches(input, 0, BATCH_INTERVAL_MS, (time, batch) => map.batch(time, batch), mapRss.sample)));
    mapRises.push(mapRss.stop().rise);
    const ldir = tempDataDir('threads-lmdb');
    try {
      await settle();
      const loopRss = peakRss();
      const loop = new LmdbLoop(ldir.path);
      lmdbRuns.push(rate(timeBatches(input, 0, BATCH_INTERVAL_MS, (time, batch) => loop.batch(time, batch), loopRss.sample)));
      lmdbRises.push(loopRss.stop().rise);
      await loop.close();
      lmdbDisks.push(bytesOnDisk(ldir.path));
    } finally {
      ldir.remove();
    }
    log(`threads/partitions rep ${rep + 1}: ${configs.map((c) => `${c.threads}t/${c.partitions}p ${c.rates.at(-1)!.toFixed(0)}`).join(', ')} records/s`);
  }

  const baselines = { map: summarize(mapRuns), lmdb: summarize(lmdbRuns), raw: rawRate(raw) };
  const rows: Row[] = configs.flatMap((c): Row[] => {
    const where = `threads ${c.threads}, partitions ${c.partitions}`;
    return [
      { case: where, figure: 'throughput', unit: 'records/s', runtime: summarize(c.rates), baselines, details: { threads: c.threads, partitions: c.partitions } },
      { case: where, figure: 'peak RSS above the start of the run', unit: 'MB', runtime: summarize(c.rises), baselines: { map: summarize(mapRises), lmdb: summarize(lmdbRises) } },
      { case: where, figure: 'state on disk', unit: 'MB', runtime: summarize(c.disks), baselines: { lmdb: summarize(lmdbDisks) } },
    ];
  });
  const notes: string[] = [
    `The throughput workload on vocab ${pow10(size)}: ${pow10(records)} records per run in batches of ${pow10(batchRecords)}, ${config.reps} runs of each configuration; the machine has ${availableParallelism()} cores, shared by the main thread (routing, outputs) and the workers.`,
    `As in scenario 1, each run's first ${WARM_UP_BATCHES} batches (a fresh job's workers, their JIT cold) are left out of its rate, the baselines' too.`,
    'Memory as in scenario 1: the peak RSS of the bench process above its size at the start of each run (sampled every 20 ms, and after every batch of the baselines\' loops), from the job\'s start to its stop; state on disk: the data folder after the run.',
  ];
  if (reps < config.reps) notes.unshift(`Only ${reps} of ${config.reps} runs: the ${config.mode}-mode time budget (${config.budgetSeconds} s) ran out (a busy machine).`);
  return { name: 'threadsPartitions', title: '4. Threads and partitions', setup: { ...config.threadsPartitions, batchRecords, skew, reps: config.reps }, notes, rows, seconds: (Date.now() - started) / 1000 };
}
