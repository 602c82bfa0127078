import { performance } from 'node:perf_hooks';
import type { BenchConfig } from '../config.js';
import { freshKeyBatches, keyName, log, pow10, rawRate, rawTime, settle, type RawBaseline } from '../common.js';
import { LmdbLoop } from '../baselines.js';
import { MapLoopThread } from '../map-loop-thread.js';
import type { Row, ScenarioResult } from '../report.js';
import { BATCH_INTERVAL_MS, RuntimeJob, tempDataDir } from '../runtime.js';
import { bytesOnDisk } from '../memory.js';
import { summarize } from '../stats.js';
import { zipfWords } from '../zipf.js';

function timed(fn: () => unknown): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

/**
 * Scenario 2 (state-size scaling) and scenario 5 (restart), on one growing state: fresh keys
 * are run through the runtime (and the baselines) in batches until the state has each size;
 * at each size a fixed batch over hot keys is timed; at the restart sizes the context is
 * stopped and re-created on the same data folder, and the time to its first completed batch
 * is measured.
 */
export async function scalingAndRestart(config: BenchConfig, raw: RawBaseline): Promise<[ScenarioResult, ScenarioResult]> {
  const started = Date.now();
  const { sizes, hotKeys, hotBatchRecords, growBatchRecords, partitions, threads } = config.scaling;
  const hotVocab = Array.from({ length: hotKeys }, (_, i) => keyName(i)); // the first keys of the state
  const hotBatch = zipfWords(hotVocab, hotBatchRecords, config.throughput.skew, 2024);
  const firstBatch = zipfWords(hotVocab, config.restart.firstBatchRecords, config.throughput.skew, 2025);

  const dir = tempDataDir('scaling');
  const ldir = tempDataDir('scaling-lmdb');
  const map = MapLoopThread.start();
  let loop = new LmdbLoop(ldir.path);
  let job = await RuntimeJob.start({ dataDir: dir.path, partitions, threads });
  let baselineTime = 0; // the baselines' batch clock
  let size = 0;
  const grow = { records: 0, runtimeMs: 0, mapMs: 0, lmdbMs: 0 };
  const scalingRows: Row[] = [];
  const restartRows: Row[] = [];
  const restartDetails: Record<string, unknown>[] = [];

  try {
    for (const target of sizes) {
      const growStarted = Date.now();
      for (const fresh of freshKeyBatches(size, target, growBatchRecords)) {
        grow.runtimeMs += (await job.batch(fresh)).wallMs;
        baselineTime += BATCH_INTERVAL_MS;
        grow.mapMs += await map.batch(baselineTime, fresh);
        grow.lmdbMs += timed(() => loop.batch(baselineTime, fresh));
        grow.records += fresh.length;
      }
      size = Math.max(size, target);
      const mapSize = await map.size();
      if (job.count() !== target || loop.count() !== target || mapSize !== target) {
        throw new Error(`scaling: expected ${target} keys, the runtime has ${job.count()}, the LMDB loop ${loop.count()}, the Map ${mapSize}`);
      }
      log(`scaling: state at ${target} keys (grew in ${((Date.now() - growStarted) / 1000).toFixed(1)} s)`);

      if (target === sizes[0]) {
        // Untimed hot batches, so the first size is not also the JIT's warm-up: three, as the
        // Map's thread ran its first timed hot batch at 2–3 times its later ones after one.
        for (let warm = 0; warm < 3; warm++) {
          await job.batch(hotBatch);
          await map.batch((baselineTime += BATCH_INTERVAL_MS), hotBatch, true);
          loop.batch(baselineTime, hotBatch);
        }
      }
      const runtime: number[] = [];
      const wall: number[] = [];
      let memoryEntries = 0;
      const mapMs: number[] = [];
      const lmdbMs: number[] = [];
      for (let rep = 0; rep < config.reps; rep++) {
        await settle();
        const t = await job.batch(hotBatch);
        memoryEntries = t.memoryEntries;
        runtime.push(t.processingMs);
        wall.push(t.wallMs);
        baselineTime += BATCH_INTERVAL_MS;
        mapMs.push(await map.batch(baselineTime, hotBatch, true));
        lmdbMs.push(timed(() => loop.batch(baselineTime, hotBatch)));
      }
      log(`scaling: hot batch at ${target} keys: statestream ${runtime.map((m) => m.toFixed(0)).join('/')} ms, Map ${mapMs.map((m) => m.toFixed(0)).join('/')} ms, LMDB loop ${lmdbMs.map((m) => m.toFixed(0)).join('/')} ms`);
      scalingRows.push({
        case: `state ${pow10(target)} keys`, figure: `batch of ${pow10(hotBatchRecords)}`, unit: 'ms', runtime: summarize(runtime),
        baselines: { map: summarize(mapMs), lmdb: summarize(lmdbMs), raw: rawTime(raw, hotBatchRecords) },
        details: { stateKeys: target, wallMs: summarize(wall) },
      });
      scalingRows.push(
        { case: `state ${pow10(target)} keys`, figure: 'entries held in worker memory', unit: 'count', runtime: summarize([memoryEntries]), baselines: { map: summarize([mapSize]) } },
        { case: `state ${pow10(target)} keys`, figure: 'RSS after the hot batches', unit: 'MB', runtime: summarize([process.memoryUsage.rss() / 2 ** 20]), baselines: {} },
        { case: `state ${pow10(target)} keys`, figure: 'state on disk', unit: 'MB', runtime: summarize([bytesOnDisk(dir.path)]), baselines: { lmdb: summarize([bytesOnDisk(ldir.path)]) } },
      );

      if (config.restart.sizes.includes(target)) {
        await job.stop();
        const total: number[] = [];
        const startMs: number[] = [];
        const firstMs: number[] = [];
        for (let rep = 0; rep < config.reps; rep++) {
          await settle();
          const t0 = performance.now();
          const next = RuntimeJob.create({ dataDir: dir.path, partitions, threads, startMs: job.time });
          await next.ssc.start();
          const t1 = performance.now();
          const first = await next.batch(firstBatch);
          total.push(performance.now() - t0);
          startMs.push(t1 - t0);
          firstMs.push(first.processingMs);
          if (next.count() !== target) throw new Error(`restart: the restarted context has ${next.count()} keys, expected ${target}`);
          job = next;
          if (rep < config.reps - 1) await job.stop();
        }
        const lmdbRestart: number[] = [];
        const mapRestart: number[] = [];
        for (let rep = 0; rep < config.reps; rep++) {
          await loop.close();
          await settle();
          baselineTime += BATCH_INTERVAL_MS;
          lmdbRestart.push(
            timed(() => {
              loop = new LmdbLoop(ldir.path);
              loop.batch(baselineTime, firstBatch);
            }),
          );
        }
        for (let rep = 0; rep < config.reps; rep++) {
          await settle();
          // A thread of its own, as a restarted process would be: the scaling baseline's thread
          // holds the grown Map, which every collection of the reload would mark again.
          const restarted = MapLoopThread.start();
          try {
            mapRestart.push(await restarted.reload(ldir.path, baselineTime + BATCH_INTERVAL_MS, firstBatch));
          } finally {
            await restarted.stop();
          }
        }
        log(`restart at ${target} keys: statestream ${total.map((m) => m.toFixed(0)).join('/')} ms (start ${startMs.map((m) => m.toFixed(0)).join('/')}), LMDB loop ${lmdbRestart.map((m) => m.toFixed(0)).join('/')} ms, Map reload ${mapRestart.map((m) => m.toFixed(0)).join('/')} ms`);
        restartRows.push(
          {
            case: `state ${pow10(target)} keys`, figure: 'new context → first batch done', unit: 'ms', runtime: summarize(total),
            baselines: { map: summarize(mapRestart), lmdb: summarize(lmdbRestart) }, details: { stateKeys: target },
          },
          { case: `state ${pow10(target)} keys`, figure: '… of which start()', unit: 'ms', runtime: summarize(startMs), baselines: {} },
          { case: `state ${pow10(target)} keys`, figure: '… first batch processing', unit: 'ms', runtime: summarize(firstMs), baselines: {} },
        );
        restartDetails.push({ stateKeys: target });
      }
    }
  } finally {
    await job.stop();
    await map.stop();
    await loop.close();
    dir.remove();
    ldir.remove();
  }

  const growRate = (ms: number) => summarize([(grow.records / ms) * 1000]);
  scalingRows.push({
    case: `0 → ${pow10(size)} keys`, figure: `grow: fresh keys, batches of ${pow10(growBatchRecords)}`, unit: 'records/s',
    runtime: growRate(grow.runtimeMs), baselines: { map: growRate(grow.mapMs), lmdb: growRate(grow.lmdbMs), raw: rawRate(raw) },
    details: { records: grow.records, runtimeSeconds: grow.runtimeMs / 1000 },
  });
  const seconds = (Date.now() - started) / 1000;
  const scalingNotes = [
    `The batch: ${pow10(hotBatchRecords)} records, Zipf(${config.throughput.skew}) over the ${pow10(hotKeys)} hot keys (in the state from the start); the same batch at every size, ${config.reps} times. The figure is the batch.completed processingTimeMs; ${partitions} partitions, ${threads} threads.`,
    `The state grows by runs of fresh keys through the runtime itself (the last row: one run of the growth, so no range).`,
    'Memory: the entries the worker threads hold (bounded by stateCacheEntries per thread, default 10^6) beside the Map baseline\'s size; the RSS is the whole bench process, which also holds the Map baseline and the LMDB loop, so it bounds the runtime\'s memory from above.',
    'The Map baseline runs on a worker thread of its own (bench/map-loop-thread.ts), its batches timed there: at 10^7 keys its Map fills a heap, which on the main thread every major collection of the runtime\'s main thread would mark too.',
  ];
  if (!sizes.includes(10_000_000)) scalingNotes.unshift('Quick mode: the state grows to 10^6 keys; the full mode goes to 10^7.');
  const restartNotes = [
    `From \`new StreamingContext\` on the data folder of the scaling scenario, through start(), to the first batch (${pow10(config.restart.firstBatchRecords)} hot records) completed; ${config.reps} restarts. The files are in the page cache (a warm restart).`,
    'LMDB loop: open the environment and run the same first batch. Map loop: a Map made durable the obvious way, on a thread started for the restart (an empty heap, as a restarted process has): open the LMDB loop\'s database, reload its every entry, then the batch.',
  ];
  if (!config.restart.sizes.includes(10_000_000)) restartNotes.unshift('Quick mode: 10^6 keys only; the full mode also restarts on 10^7.');
  return [
    { name: 'scaling', title: '2. State-size scaling', setup: { ...config.scaling, reps: config.reps }, notes: scalingNotes, rows: scalingRows, seconds },
    { name: 'restart', title: '5. Restart', setup: { ...config.restart, partitions, threads, reps: config.reps }, notes: restartNotes, rows: restartRows, seconds: 0 },
  ];
}
