import { cpSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { BatchEvents, listSnapshots, type SnapshotCompletedEvent } from '../../src/index.js';
import type { BenchConfig } from '../config.js';
import { freshKeyBatches, keyName, log, overBudget, pow10, settle } from '../common.js';
import type { Row, ScenarioResult } from '../report.js';
import { RuntimeJob, tempDataDir } from '../runtime.js';
import { percentile, summarize, type Summary } from '../stats.js';
import { batches as cut, zipfWords } from '../zipf.js';

/** snapshotsKept of the runtime's default: what must be on disk after a run. */
const SNAPSHOTS_KEPT = 3;

interface SnapshotSeen extends SnapshotCompletedEvent {
  /** Timed batches that had started when the snapshot completed (0: during the warm-up). */
  completedDuring: number;
  /** Timed batches that ran while its copy went on (between its batch and its completion). */
  batchesDuringCopy: number;
}

interface RunFigures {
  snapshots: boolean;
  processingMs: number[];
  wallMs: number[];
  /** Timed batch indices (0-based) that ran while a copy was going on. */
  duringCopy: number[];
  seen: SnapshotSeen[];
  /** From the last timed batch to stop() resolved: stop waits for a copy still running. */
  stopMs: number;
}

/**
 * One run: a copy of the grown state, a context on it (with or without snapshotEvery), the
 * warm-up batches, then the timed batches back to back (a ManualClock: the worst case for
 * a copy running beside them). stop() waits for the last snapshot, whose event is counted.
 */
async function run(config: BenchConfig, template: { path: string; time: number }, input: string[][], withSnapshots: boolean): Promise<RunFigures> {
  const { stateKeys, warmUpBatches, every, partitions, threads } = config.snapshots;
  const dir = tempDataDir(withSnapshots ? 'snapshots-on' : 'snapshots-off');
  try {
    cpSync(template.path, dir.path, { recursive: true });
    const job = await RuntimeJob.start({ dataDir: dir.path, partitions, threads, startMs: template.time, ...(withSnapshots ? { snapshotEvery: every } : {}) });
    const figures: RunFigures = { snapshots: withSnapshots, processingMs: [], wallMs: [], duringCopy: [], seen: [], stopMs: 0 };
    const batchTimes: number[] = []; // of the timed batches
    let started = 0; // timed batches begun
    const failures: Error[] = [];
    job.ssc.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => {
      const after = batchTimes.indexOf(e.batchTime) + 1; // 0: taken after a warm-up batch
      figures.seen.push({ ...e, completedDuring: started, batchesDuringCopy: Math.max(0, started - after) });
      for (let i = after; i < started; i++) if (!figures.duringCopy.includes(i)) figures.duringCopy.push(i);
    });
    job.ssc.on(BatchEvents.SNAPSHOT_FAILED, (e) => void failures.push(e.error));
    try {
      for (const batch of input.slice(0, warmUpBatches)) await job.batch(batch);
      await settle();
      for (const batch of input.slice(warmUpBatches)) {
        started++;
        const t = await job.batch(batch);
        batchTimes.push(job.time);
        figures.processingMs.push(t.processingMs);
        figures.wallMs.push(t.wallMs);
      }
      if (job.count() !== stateKeys) throw new Error(`snapshots: the state holds ${job.count()} keys, expected ${stateKeys}`);
    } finally {
      const t0 = performance.now();
      await job.stop();
      figures.stopMs = performance.now() - t0;
    }
    if (failures.length > 0) throw new Error(`snapshots: ${failures.length} snapshot(s) failed: ${failures[0].message}`);
    if (withSnapshots) {
      // The grown state has no snapshot: its first batch takes one (docs/snapshots.md), then every `every`.
      const due = 1 + Math.floor((input.length - 1) / every);
      if (figures.seen.length === 0 || figures.seen.length > due) throw new Error(`snapshots: ${figures.seen.length} snapshots completed, ${due} were due`);
      const onDisk = listSnapshots(dir.path).length;
      if (onDisk !== Math.min(SNAPSHOTS_KEPT, figures.seen.length)) throw new Error(`snapshots: ${onDisk} snapshots on disk after ${figures.seen.length} completed`);
    } else if (figures.seen.length > 0) {
      throw new Error('snapshots: a snapshot was taken without snapshotEvery');
    }
    return figures;
  } finally {
    dir.remove();
  }
}

const p = (xs: number[], q: number) => percentile(xs, q);
const ms = (xs: number[]) => xs.map((m) => m.toFixed(0)).join('/');

/**
 * Scenario 6: batch processing time with a snapshot every n batches against none. One
 * state of `stateKeys` keys is grown through the runtime (as the scaling scenario grows
 * its state), then each run works on a copy of it: the same Zipf batches over those keys,
 * with snapshots and without, the order alternating from rep to rep.
 */
export async function snapshotPause(config: BenchConfig): Promise<ScenarioResult> {
  const began = Date.now();
  const { stateKeys, batches, warmUpBatches, batchRecords, every, goalRatio, partitions, threads } = config.snapshots;
  const skew = config.throughput.skew;
  const growBatch = config.scaling.growBatchRecords;

  const template = tempDataDir('snapshots-state');
  const runs: { on: RunFigures[]; off: RunFigures[] } = { on: [], off: [] };
  let reps = 0;
  try {
    const grower = await RuntimeJob.start({ dataDir: template.path, partitions, threads });
    const growStarted = Date.now();
    try {
      for (const fresh of freshKeyBatches(0, stateKeys, growBatch)) await grower.batch(fresh);
      if (grower.count() !== stateKeys) throw new Error(`snapshots: grew ${grower.count()} keys, expected ${stateKeys}`);
    } finally {
      await grower.stop();
    }
    const time = grower.time;
    log(`snapshots: state of ${stateKeys} keys grown in ${((Date.now() - growStarted) / 1000).toFixed(1)} s`);

    const vocab = Array.from({ length: stateKeys }, (_, i) => keyName(i));
    const input = cut(zipfWords(vocab, (warmUpBatches + batches) * batchRecords, skew, 4242), batchRecords);

    for (let rep = 0; rep < config.reps && !(rep > 0 && overBudget()); rep++, reps++) {
      // Alternate which configuration runs first, so neither always gets the quieter (or the warmer) slot.
      const order = rep % 2 === 0 ? [false, true] : [true, false];
      for (const withSnapshots of order) {
        await settle();
        const r = await run(config, { path: template.path, time }, input, withSnapshots);
        (withSnapshots ? runs.on : runs.off).push(r);
        const snaps = withSnapshots
          ? `; ${r.seen.length} snapshots, gate ${ms(r.seen.map((s) => s.gateMs))} ms, copy ${ms(r.seen.map((s) => s.durationMs))} ms, ${(r.seen[0]?.bytes ?? 0) / 2 ** 20 | 0} MiB each`
          : '';
        log(`snapshots rep ${rep + 1} ${withSnapshots ? `every ${every}` : 'none'}: batch p50 ${p(r.processingMs, 0.5).toFixed(0)} ms, p99 ${p(r.processingMs, 0.99).toFixed(0)} ms, wall p99 ${p(r.wallMs, 0.99).toFixed(0)} ms${snaps}`);
      }
    }
  } finally {
    template.remove();
  }

  const both = (f: (r: RunFigures) => number): { runtime: Summary; none: Summary } => ({ runtime: summarize(runs.on.map(f)), none: summarize(runs.off.map(f)) });
  const on = (f: (r: RunFigures) => number): Summary => summarize(runs.on.map(f));
  const caseName = `state ${pow10(stateKeys)} keys`;
  const row = (figure: string, unit: Row['unit'], s: { runtime: Summary; none?: Summary }, details?: Record<string, unknown>): Row => ({
    case: caseName, figure, unit, runtime: s.runtime, baselines: s.none ? { none: s.none } : {}, ...(details ? { details } : {}),
  });
  // The same batch positions in the run without snapshots: what those batches cost anyway.
  const duringCopyP99 = runs.on.map((r, i) => {
    const off = runs.off[i];
    return { on: p(r.duringCopy.map((j) => r.processingMs[j]), 0.99), off: off ? p(r.duringCopy.map((j) => off.processingMs[j]), 0.99) : NaN };
  });
  const p99 = both((r) => p(r.processingMs, 0.99));
  const ratio = p99.runtime.median / p99.none.median;
  const paired = runs.on.map((r, i) => (runs.off[i] ? p(r.processingMs, 0.99) / p(runs.off[i].processingMs, 0.99) : NaN));
  const wallRatio = both((r) => p(r.wallMs, 0.99));
  const met = ratio <= goalRatio;
  const rows: Row[] = [
    row('batch processing p50', 'ms', both((r) => p(r.processingMs, 0.5))),
    row('batch processing p99', 'ms', p99, { goalRatio, ratio, met, pairedRatios: paired }),
    row('batch processing p99, all reps pooled', 'ms', { runtime: summarize([p(runs.on.flatMap((r) => r.processingMs), 0.99)]), none: summarize([p(runs.off.flatMap((r) => r.processingMs), 0.99)]) }),
    row('batch wall p99 (gate included)', 'ms', wallRatio, { ratio: wallRatio.runtime.median / wallRatio.none.median }),
    row('batches during a copy: processing p99', 'ms', { runtime: summarize(duringCopyP99.map((d) => d.on)), none: summarize(duringCopyP99.map((d) => d.off)) }),
    row('gate: next batch waits (max per run)', 'ms', { runtime: on((r) => Math.max(...r.seen.map((s) => s.gateMs))) }),
    row('snapshots completed', 'count', { runtime: on((r) => r.seen.length) }, { due: 1 + Math.floor((warmUpBatches + batches - 1) / every) }),
    row('snapshot duration (median per run)', 'ms', { runtime: on((r) => p(r.seen.map((s) => s.durationMs), 0.5)) }),
    row('snapshot size', 'MB', { runtime: on((r) => p(r.seen.map((s) => s.bytes), 0.5) / 2 ** 20) }, { keyCount: runs.on[0]?.seen[0]?.keyCount }),
    row('timed batches run during one copy (median)', 'count', { runtime: on((r) => p(r.seen.map((s) => s.batchesDuringCopy), 0.5)) }),
    row('stop() after the last batch (waits for a copy)', 'ms', both((r) => r.stopMs)),
  ];
  rows[1].details!.runs = { on: runs.on.map(({ processingMs, wallMs, duringCopy, seen, stopMs }) => ({ processingMs, wallMs, duringCopy, seen, stopMs })), off: runs.off.map(({ processingMs, wallMs, stopMs }) => ({ processingMs, wallMs, stopMs })) };

  const notes = [
    `Goal: batch processing p99 with snapshots within ${goalRatio}× of the p99 without. Here ${ratio.toFixed(2)}× on the medians (per rep, paired: ${paired.map((x) => `${x.toFixed(2)}×`).join(', ')}): ${met ? 'met' : 'not met'}.`,
    `${reps} reps; each rep runs both configurations on its own copy of one grown state of ${pow10(stateKeys)} keys, in alternating order (none first in odd reps). A run: ${warmUpBatches} untimed batches, then ${batches} timed batches of ${pow10(batchRecords)} records, Zipf(${skew}) over the state's keys, the same batches in both; ${partitions} partitions, ${threads} threads, ManualClock batches back to back, so copies overlap the batches that follow them.`,
    `Snapshots: snapshotEvery ${every} (counting the warm-up batches; the first batch takes one, as the grown state has no snapshot yet), one copy at a time (a snapshot that falls due while one is copying is skipped), snapshotsKept ${SNAPSHOTS_KEPT}; every run's snapshots are awaited (stop() waits for the last copy) and counted, and those on disk checked.`,
    'processing: the batch.completed processingTimeMs; p50/p99 per run, then the median (min–max) of the runs; "pooled": one p99 over the timed batches of every rep together (less at the mercy of one slow batch on a shared machine).'
      + ' wall: push + clock.advance, which also holds the gate (the wait, after batch.completed, until every copy has its read transaction) — so a pause at the gate shows in the wall figure, not in processing. "batches during a copy": the timed batches run between a snapshot\'s batch and its completion; the no-snapshots column takes the same batch positions of the paired run.',
  ];
  if (config.mode !== 'full') notes.unshift(`${config.mode === 'quick' ? 'Quick' : 'Smoke'} mode: ${batches} timed batches per run, not the 60 of the full mode; a run's p99 is then its slowest batch or next to it.`);
  if (reps < config.reps) notes.unshift(`Only ${reps} of ${config.reps} reps: the ${config.mode}-mode time budget (${config.budgetSeconds} s) ran out (a busy machine).`);
  return {
    name: 'snapshots', title: `6. Snapshots every ${every} batches vs none`, subject: `snapshots every ${every}`,
    setup: { ...config.snapshots, growBatchRecords: growBatch, skew, reps: config.reps, repsRun: reps }, notes, rows, seconds: (Date.now() - began) / 1000,
  };
}
