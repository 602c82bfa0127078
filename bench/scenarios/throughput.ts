import type { BenchConfig } from '../config.js';
import { log, overBudget, pow10, rawRate, rawTime, settle, sum, timeBatches, type RawBaseline } from '../common.js';
import { LmdbLoop, MapLoop } from '../baselines.js';
import type { Row, ScenarioResult } from '../report.js';
import { BATCH_INTERVAL_MS, RuntimeJob, tempDataDir } from '../runtime.js';
import { bytesOnDisk, peakRss, type RssFigures } from '../memory.js';
import { percentile, summarize } from '../stats.js';
import { batches as cut, vocabulary, zipfWords } from '../zipf.js';

interface RunFigures {
  recordsPerS: number;
  p50: number;
  p99: number;
  /** Mean wall time of the first batches, which the figures above leave out. */
  warmUpMs: number;
}

/**
 * The batches each run leaves out of its figures: the first batches of a job run on fresh
 * worker threads whose JIT is cold, as the baselines' code would be but for the harness's
 * warm-up run (run.ts). Their cost is reported beside, as warmUpMs.
 */
export const WARM_UP_BATCHES = 3;

/** The records of the batches after the warm-up ones: what a run's rate counts. */
export function timedRecords(input: readonly string[][]): number {
  return input.slice(WARM_UP_BATCHES).reduce((n, b) => n + b.length, 0);
}

/** A run's figures from its per-batch times after the warm-up: records over their wall time, and batch time percentiles. */
function figures(input: readonly string[][], wallMs: number[], processingMs: number[]): RunFigures {
  const records = timedRecords(input);
  const wall = wallMs.slice(WARM_UP_BATCHES);
  const processing = processingMs.slice(WARM_UP_BATCHES);
  return {
    recordsPerS: (records / sum(wall)) * 1000, p50: percentile(processing, 0.5), p99: percentile(processing, 0.99),
    warmUpMs: sum(wallMs.slice(0, WARM_UP_BATCHES)) / WARM_UP_BATCHES,
  };
}

/** Scenario 1: word count over a Zipf vocabulary, end to end, durable commit per batch. */
export async function throughput(config: BenchConfig, raw: RawBaseline): Promise<ScenarioResult> {
  const started = Date.now();
  const { vocabularies, skew, records, batchRecords, partitions, threads } = config.throughput;
  const rows: Row[] = [];
  const perVocab = new Map<number, { input: string[][]; runtime: RunFigures[]; backlog: number[]; map: RunFigures[]; lmdb: RunFigures[]; distinct: number; memory: { runtime: RssFigures[]; map: RssFigures[]; lmdb: RssFigures[]; runtimeDisk: number[]; lmdbDisk: number[] } }>();

  for (const size of vocabularies) {
    log(`throughput: generating ${records} Zipf(${skew}) words over ${size} distinct`);
    const words = zipfWords(vocabulary(size), records, skew, 1000 + size);
    perVocab.set(size, { input: cut(words, batchRecords), runtime: [], backlog: [], map: [], lmdb: [], distinct: new Set(words).size, memory: { runtime: [], map: [], lmdb: [], runtimeDisk: [], lmdbDisk: [] } });
  }

  let reps = 0;
  for (let rep = 0; rep < config.reps && !(rep > 0 && overBudget()); rep++, reps++) {
    for (const size of vocabularies) {
      const v = perVocab.get(size)!;
      // statestream
      const dir = tempDataDir('throughput');
      try {
        await settle();
        const rss = peakRss();
        const job = await RuntimeJob.start({ dataDir: dir.path, partitions, threads });
        const wall: number[] = [];
        const processing: number[] = [];
        try {
          await settle();
          for (const batch of v.input) {
            const t = await job.batch(batch);
            wall.push(t.wallMs);
            processing.push(t.processingMs);
          }
          if (job.count() !== v.distinct) throw new Error(`throughput: the state holds ${job.count()} keys, expected ${v.distinct}`);
        } finally {
          await job.stop();
        }
        v.memory.runtime.push(rss.stop());
        v.memory.runtimeDisk.push(bytesOnDisk(dir.path));
        v.runtime.push(figures(v.input, wall, processing));
      } finally {
        dir.remove();
      }
      log(`throughput vocab ${size} rep ${rep + 1}: statestream ${v.runtime.at(-1)!.recordsPerS.toFixed(0)} records/s`);

      // statestream with a backlog: the same batches, each queued while the one before runs.
      const bdir = tempDataDir('throughput-backlog');
      try {
        await settle();
        const job = await RuntimeJob.start({ dataDir: bdir.path, partitions, threads });
        try {
          for (const batch of v.input.slice(0, WARM_UP_BATCHES)) await job.batch(batch);
          await settle();
          const wallMs = await job.backlog(v.input.slice(WARM_UP_BATCHES));
          if (job.count() !== v.distinct) throw new Error(`throughput (backlog): the state holds ${job.count()} keys, expected ${v.distinct}`);
          v.backlog.push((timedRecords(v.input) / wallMs) * 1000);
        } finally {
          await job.stop();
        }
      } finally {
        bdir.remove();
      }
      log(`throughput vocab ${size} rep ${rep + 1}: statestream with a backlog ${v.backlog.at(-1)!.toFixed(0)} records/s`);

      // Map loop
      await settle();
      const mapRss = peakRss();
      const map = new MapLoop();
      const mapMs = timeBatches(v.input, 0, BATCH_INTERVAL_MS, (time, batch) => map.batch(time, batch), mapRss.sample);
      v.memory.map.push(mapRss.stop());
      v.map.push(figures(v.input, mapMs, mapMs));

      // LMDB loop
      const ldir = tempDataDir('throughput-lmdb');
      try {
        await settle();
        const loopRss = peakRss();
        const loop = new LmdbLoop(ldir.path);
        const loopMs = timeBatches(v.input, 0, BATCH_INTERVAL_MS, (time, batch) => loop.batch(time, batch), loopRss.sample);
        if (loop.count() !== v.distinct) throw new Error('throughput: the LMDB loop lost keys');
        // Before the close, which unmaps the environment's pages.
        v.memory.lmdb.push(loopRss.stop());
        await loop.close();
        v.memory.lmdbDisk.push(bytesOnDisk(ldir.path));
        v.lmdb.push(figures(v.input, loopMs, loopMs));
      } finally {
        ldir.remove();
      }
      log(`throughput vocab ${size} rep ${rep + 1}: Map ${v.map.at(-1)!.recordsPerS.toFixed(0)}, LMDB loop ${v.lmdb.at(-1)!.recordsPerS.toFixed(0)} records/s`);
    }
  }

  for (const size of vocabularies) {
    const v = perVocab.get(size)!;
    const pick = (runs: RunFigures[], f: keyof RunFigures) => summarize(runs.map((r) => r[f]));
    const details = { vocabulary: size, distinctWordsSeen: v.distinct, records, batches: v.input.length, batchRecords };
    rows.push({
      case: `vocab ${pow10(size)}`, figure: 'throughput', unit: 'records/s', runtime: pick(v.runtime, 'recordsPerS'),
      baselines: { map: pick(v.map, 'recordsPerS'), lmdb: pick(v.lmdb, 'recordsPerS'), raw: rawRate(raw) }, details,
    });
    rows.push({
      case: `vocab ${pow10(size)}`, figure: 'throughput, one batch queued ahead', unit: 'records/s', runtime: summarize(v.backlog),
      baselines: { map: pick(v.map, 'recordsPerS'), lmdb: pick(v.lmdb, 'recordsPerS'), raw: rawRate(raw) },
    });
    for (const f of ['p50', 'p99'] as const) {
      rows.push({
        case: `vocab ${pow10(size)}`, figure: `batch ${f}`, unit: 'ms', runtime: pick(v.runtime, f),
        baselines: { map: pick(v.map, f), lmdb: pick(v.lmdb, f), raw: rawTime(raw, batchRecords) },
      });
    }
    rows.push({
      case: `vocab ${pow10(size)}`, figure: `first ${WARM_UP_BATCHES} batches, mean wall`, unit: 'ms', runtime: pick(v.runtime, 'warmUpMs'),
      baselines: { map: pick(v.map, 'warmUpMs'), lmdb: pick(v.lmdb, 'warmUpMs') },
    });
    const m = v.memory;
    for (const [figure, which] of [['peak RSS', 'peak'], ['peak RSS above the start of the run', 'rise']] as const) {
      rows.push({ case: `vocab ${pow10(size)}`, figure, unit: 'MB', runtime: summarize(m.runtime.map((r) => r[which])), baselines: { map: summarize(m.map.map((r) => r[which])), lmdb: summarize(m.lmdb.map((r) => r[which])) } });
    }
    rows.push({ case: `vocab ${pow10(size)}`, figure: 'state on disk', unit: 'MB', runtime: summarize(m.runtimeDisk), baselines: { lmdb: summarize(m.lmdbDisk) } });
  }

  const notes = [
    `${pow10(records)} records per run in ${records / batchRecords} batches of ${pow10(batchRecords)} records (one per 100 ms of ManualClock time), ${partitions} partitions, ${threads} threads, ${config.reps} runs each.`,
    `Throughput: records ÷ the summed wall time of the batches (push + clock.advance, commit and outputs included), from the ${WARM_UP_BATCHES + 1}th batch on; batch p50/p99: the batch.completed processingTimeMs percentiles of those batches (the baselines: their batch loop time). The first ${WARM_UP_BATCHES} batches of every run, statestream's on worker threads whose JIT is still cold, are left out of those figures (the baselines run on the main thread, which the harness warms up first) and reported in their own row.`,
    'Throughput, one batch queued ahead: the same batches on a fresh job, each pushed and its clock advance begun while the batch before still runs (a backlog, as when batches queue up on a system clock): the runtime maps and routes a batch while the one before applies. The figure is records ÷ the wall time from the first timed push to the last batch done; the baselines, single loops, are the same as above. The goals are judged on the throughput row, one batch at a time.',
    'raw lmdb-js: one raw get plus one raw put per record (rate), or per record of a batch (time).',
    'Peak RSS: the bench process (its worker threads included) during each run, sampled every 20 ms and, in the baselines\' loops (which never yield), after every batch; the LMDB loop is sampled before its environment closes. "Peak RSS" is the whole process (the inputs of both vocabularies and what earlier runs left included, which pulls the ratios towards 1×); "above the start of the run" is what the run added: the Map loop its Map, the LMDB loop its environment\'s pages, statestream its workers, memory and environments. State on disk: the data folder after the run (statestream: one LMDB environment per partition).',
  ];
  if (reps < config.reps) notes.unshift(`Only ${reps} of ${config.reps} runs: the ${config.mode}-mode time budget (${config.budgetSeconds} s) ran out (a busy machine).`);
  if (records < 10_000_000) notes.unshift(`Quick mode: ${pow10(records)} records per run, not the 10^7 of the full mode; with ${records / batchRecords} batches a run's p99 is close to its slowest batch.`);
  return { name: 'throughput', title: `1. Throughput: word count, Zipf(${skew})`, setup: { ...config.throughput, reps: config.reps }, notes, rows, seconds: (Date.now() - started) / 1000 };
}
