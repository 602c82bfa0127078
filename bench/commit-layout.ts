/**
 * What a batch's commits cost as the number of partitions grows, on LMDB alone (not part of
 * `npm run bench`; docs/decisions.md, "One commit per partition and batch"):
 *   node dist/bench/commit-layout.js [--keys 10000] [--records 50000] [--batches 40]
 * One batch of the throughput scenario at vocabulary 10^4: `keys` distinct keys change, and
 * `records` mapped records (13 bytes each in the batch log, as OUT2 keeps `[key, count]`)
 * are recorded beside them, split evenly over n partitions. Each layout writes the same
 * changes, on one thread, one batch after another:
 * - n environments, one per partition (the runtime's layout): n transactions, each
 *   committed and fsynced before the next begins, as a worker commits its partitions;
 * - one environment with each partition's data in databases of its own: one transaction
 *   and one fsync for all n;
 * - n environments opened with `noSync`: what the fsyncs cost (a measurement only: it
 *   gives up durability).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { open, type Database, type RootDatabase } from 'lmdb';
import { encodeEntry } from '../src/storage/codec.js';
import { keyName } from './common.js';
import { summarize, type Summary } from './stats.js';

const { values } = parseArgs({
  options: { keys: { type: 'string', default: '10000' }, records: { type: 'string', default: '50000' }, batches: { type: 'string', default: '40' } },
});
const keys = Number(values.keys);
const records = Number(values.records);
const batches = Number(values.batches);
const WARM_UP = 5;
const OUTPUT_BYTES_PER_RECORD = 13;

interface Partition {
  env: RootDatabase;
  state: Database<Buffer, string>;
  log: Database<Buffer, string>;
}

/** Opens `count` partitions' databases, in environments of their own or all in one. */
function openPartitions(path: string, count: number, layout: 'per-partition' | 'shared' | 'no-sync'): { partitions: Partition[]; envs: RootDatabase[] } {
  if (layout === 'shared') {
    const env = open({ path, maxDbs: 2 * count + 2, noSubdir: false });
    const partitions = Array.from({ length: count }, (_, p) => ({
      env,
      state: env.openDB<Buffer, string>({ name: `state-${p}`, encoding: 'binary' }),
      log: env.openDB<Buffer, string>({ name: `batch-log-${p}`, encoding: 'binary' }),
    }));
    return { partitions, envs: [env] };
  }
  const partitions = Array.from({ length: count }, (_, p) => {
    // As src/storage/partition/store.ts opens a partition store.
    const env = open({ path: join(path, `partition-${p}`), maxDbs: 8, noSubdir: false, ...(layout === 'no-sync' ? { noSync: true } : {}) });
    return { env, state: env.openDB<Buffer, string>({ name: 'state', encoding: 'binary' }), log: env.openDB<Buffer, string>({ name: 'batch-log', encoding: 'binary' }) };
  });
  return { partitions, envs: partitions.map((p) => p.env) };
}

/** Median wall time of a batch's commits (ms), after the warm-up batches. */
async function measure(count: number, layout: 'per-partition' | 'shared' | 'no-sync'): Promise<Summary> {
  const path = mkdtempSync(join(tmpdir(), 'statestream-commit-layout-'));
  try {
    const { partitions, envs } = openPartitions(path, count, layout);
    const names = Array.from({ length: keys }, (_, i) => keyName(i));
    const keysOf = partitions.map((_, p) => names.filter((_, i) => i % count === p));
    const outputs = partitions.map(() => Buffer.alloc(Math.ceil((records * OUTPUT_BYTES_PER_RECORD) / count), 7));
    const times: number[] = [];
    for (let b = 1; b <= batches + WARM_UP; b++) {
      // Encoded before the clock starts, as a worker encodes its entries before its commit.
      const entries = keysOf.map((ks) => ks.map((_, i) => encodeEntry(b * 10 + i, b * 100)));
      const write = (p: number) => {
        const { state, log } = partitions[p];
        const ks = keysOf[p];
        for (let i = 0; i < ks.length; i++) state.putSync(ks[i], entries[p][i]);
        log.putSync('last', outputs[p]);
      };
      const started = performance.now();
      if (layout === 'shared') partitions[0].env.transactionSync(() => partitions.forEach((_, p) => write(p)));
      else partitions.forEach((partition, p) => partition.env.transactionSync(() => write(p)));
      if (b > WARM_UP) times.push(performance.now() - started);
    }
    await Promise.all(envs.map((env) => env.close()));
    return summarize(times);
  } finally {
    rmSync(path, { recursive: true, force: true });
  }
}

const fmt = (s: Summary) => `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
console.log(`A batch changing ${keys} keys with ${records} mapped records, split over n partitions; ms a batch, median (min–max) of ${batches} batches`);
console.log('| partitions | one environment each | per commit | one environment, n databases | one environment each, noSync |');
console.log('| ---: | ---: | ---: | ---: | ---: |');
for (const n of [1, 2, 4, 8, 16, 32]) {
  const each = await measure(n, 'per-partition');
  const shared = await measure(n, 'shared');
  const noSync = await measure(n, 'no-sync');
  console.log(`| ${n} | ${fmt(each)} | ${(each.median / n).toFixed(2)} | ${fmt(shared)} | ${fmt(noSync)} |`);
}
