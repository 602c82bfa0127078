import { performance } from 'node:perf_hooks';
import type { BenchConfig } from '../config.js';
import { log, pow10, rawTime, settle, type RawBaseline } from '../common.js';
import { LmdbLoop, MapLoop } from '../baselines.js';
import type { Row, ScenarioResult } from '../report.js';
import { BATCH_INTERVAL_MS, RuntimeJob, tempDataDir } from '../runtime.js';
import { summarize } from '../stats.js';

/**
 * Scenario 3: the idle sweep. Batches of keys that will expire are written first, one group
 * per batch (0, 10^3, 10^5 keys, repeated), then a large idle state; the timeout is set so
 * that the idle state stays inside it while, one batch after another, exactly one group
 * falls out of it. Each of those (otherwise empty) batches is timed.
 *
 * Batch k (time k·100) writes group k, k = 1..G; batches G+1..W write the idle keys;
 * idleMs = W·100. The batch at (W+1+k)·100 has threshold (k+1)·100: it expires group k only.
 */
export async function timeoutSweep(config: BenchConfig, raw: RawBaseline): Promise<ScenarioResult> {
  const started = Date.now();
  const { idleKeys, expiring, partitions, threads } = config.timeout;
  const growBatch = config.scaling.growBatchRecords;
  const groups: Array<{ rep: number; n: number; keys: string[] }> = [];
  for (let rep = 0; rep < config.reps; rep++) {
    for (const n of expiring) groups.push({ rep, n, keys: Array.from({ length: n }, (_, i) => `x${rep}-${n}-${i}`) });
  }
  const idleBatches: string[][] = [];
  for (let i = 0; i < idleKeys; i += growBatch) idleBatches.push(Array.from({ length: Math.min(growBatch, idleKeys - i) }, (_, j) => `idle${i + j}`));
  const writes = [...groups.map((g) => g.keys), ...idleBatches];
  const idleMs = writes.length * BATCH_INTERVAL_MS;
  const expectedKeys = idleKeys + groups.reduce((n, g) => n + g.n, 0);

  const runtime = new Map<number, number[]>(expiring.map((n) => [n, []]));
  const mapMs = new Map<number, number[]>(expiring.map((n) => [n, []]));
  const lmdbMs = new Map<number, number[]>(expiring.map((n) => [n, []]));

  // statestream
  const dir = tempDataDir('timeout');
  try {
    const job = await RuntimeJob.start({ dataDir: dir.path, partitions, threads, timeoutMs: idleMs });
    try {
      for (const batch of writes) {
        const t = await job.batch(batch);
        if (t.keysTimedOut !== 0) throw new Error('timeout: a key expired while the state was written');
      }
      if (job.count() !== expectedKeys) throw new Error(`timeout: the state has ${job.count()} keys, expected ${expectedKeys}`);
      log(`timeout: state of ${expectedKeys} keys written, idleMs ${idleMs}`);
      const quiet = await job.batch([]);
      if (quiet.keysTimedOut !== 0) throw new Error('timeout: keys expired one batch early');
      for (const group of groups) {
        await settle();
        const t = await job.batch([]);
        if (t.keysTimedOut !== group.n) throw new Error(`timeout: expected ${group.n} keys to expire at ${job.time}, ${t.keysTimedOut} did`);
        if (t.outputs !== group.n) throw new Error(`timeout: expected ${group.n} outputs for the expired keys, got ${t.outputs}`);
        runtime.get(group.n)!.push(t.processingMs);
      }
      if (job.count() !== idleKeys) throw new Error(`timeout: the idle state should remain (${idleKeys} keys), ${job.count()} did`);
    } finally {
      await job.stop();
    }
  } finally {
    dir.remove();
  }
  log(`timeout: statestream sweeps ${expiring.map((n) => `${n}: ${runtime.get(n)!.map((m) => m.toFixed(0)).join('/')} ms`).join(', ')}`);

  // the baselines: the same writes at the same batch times, then a full-scan sweep at each measured batch time
  const map = new MapLoop({ trackTimes: true });
  const ldir = tempDataDir('timeout-lmdb');
  try {
    const loop = new LmdbLoop(ldir.path, { trackTimes: true });
    writes.forEach((batch, k) => {
      map.batch((k + 1) * BATCH_INTERVAL_MS, batch);
      loop.batch((k + 1) * BATCH_INTERVAL_MS, batch);
    });
    for (const [k, group] of groups.entries()) {
      const time = (writes.length + 2 + k) * BATCH_INTERVAL_MS;
      await settle();
      let t = performance.now();
      const fromMap = map.sweep(time, idleMs).length;
      mapMs.get(group.n)!.push(performance.now() - t);
      t = performance.now();
      const fromLmdb = loop.sweep(time, idleMs).length;
      lmdbMs.get(group.n)!.push(performance.now() - t);
      if (fromMap !== group.n || fromLmdb !== group.n) throw new Error(`timeout: the baselines expired ${fromMap} and ${fromLmdb} keys, expected ${group.n}`);
    }
    await loop.close();
  } finally {
    ldir.remove();
  }
  log(`timeout: Map-scan sweeps ${expiring.map((n) => `${n}: ${mapMs.get(n)!.map((m) => m.toFixed(0)).join('/')}`).join(', ')} ms; LMDB-scan ${expiring.map((n) => `${n}: ${lmdbMs.get(n)!.map((m) => m.toFixed(0)).join('/')}`).join(', ')} ms`);

  const rows: Row[] = expiring.map((n) => ({
    case: `${pow10(n)} keys expire`, figure: 'sweep batch', unit: 'ms', runtime: summarize(runtime.get(n)!),
    baselines: { map: summarize(mapMs.get(n)!), lmdb: summarize(lmdbMs.get(n)!), raw: rawTime(raw, n) },
    details: { expired: n, idleKeys },
  }));
  const notes = [
    `Idle state: ${pow10(idleKeys)} keys inside the timeout (${idleMs} ms) that do not expire; ${config.reps} sweeps of each size. The figure: processingTimeMs of a batch with no records in which exactly that many keys expire (the mapping function is called for each with isTimingOut, its output emitted); ${partitions} partitions, ${threads} threads.`,
    'The baselines keep no time index: their sweep scans every key (the Map loop its Map, the LMDB loop its database) and removes the expired ones in one transaction, as a hand-written loop would. raw lmdb-js: one get and one put per expired key.',
  ];
  return { name: 'timeout', title: '3. Timeout sweep', setup: { ...config.timeout, idleMs, reps: config.reps }, notes, rows, seconds: (Date.now() - started) / 1000 };
}
