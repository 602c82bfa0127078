/**
 * Why the hot batch at 10^7 keys cost more than at 10^4, and what the change log saves
 * (storage/partition/change-log.ts; docs/decisions.md), measured by hand, on LMDB alone (not
 * part of `npm run bench`):
 *   node dist/bench/write-layout.js [--keys 2500000] [--hot 2500] [--merge-every 16] [--batches 48]
 * One partition's LMDB environment (the scaling scenario's 10^7 keys over 4 partitions is
 * 2.5·10^6 keys each; its 10^4 hot keys are 2.5·10^3 each). Keys are the scenario's `k<i>`,
 * so the hot keys k0…k2499 lie spread over the whole key order, as hot keys in real data do.
 * Each timed batch changes every hot key, committed (and fsynced) in one transaction:
 * - in place: each changed key put into the state database (today's layout). Every key
 *   lands on its own leaf page in a large tree, so a batch copies and writes that many pages;
 * - change log: the batch's changes appended as one record to a log database (sequential
 *   keys: one page run at the end of the tree), and every `merge-every` batches the newest
 *   value of each key written in place, in one transaction: the in-place cost paid once per
 *   `merge-every` batches instead of every batch (a reader then consults the log first).
 * The same is timed on a state of only the hot keys (the 10^4 case), for the ratio.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { open } from 'lmdb';
import { encodeEntry } from '../src/storage/codec.js';
import { keyName } from './common.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: { keys: { type: 'string', default: '2500000' }, hot: { type: 'string', default: '2500' }, 'merge-every': { type: 'string', default: '16' }, batches: { type: 'string', default: '48' } },
});
const bigKeys = Number(values.keys);
const hot = Number(values.hot);
const mergeEvery = Number(values['merge-every']);
const batches = Number(values.batches);

interface Figures {
  inPlaceMs: number[];
  logMs: number[];
  mergeMs: number[];
}

function measure(keys: number): Figures {
  const path = mkdtempSync(join(tmpdir(), 'statestream-write-layout-'));
  try {
    // Opened as src/storage/partition/store.ts opens a partition store.
    const env = open({ path, maxDbs: 8, noSubdir: false });
    const state = env.openDB<Buffer, string>({ name: 'state', encoding: 'binary' });
    const log = env.openDB<Buffer, number>({ name: 'change-log', encoding: 'binary' });
    for (let from = 0; from < keys; from += 100_000) {
      env.transactionSync(() => {
        for (let i = from; i < Math.min(keys, from + 100_000); i++) state.putSync(keyName(i), encodeEntry(1, 0));
      });
    }
    const hotKeys = Array.from({ length: hot }, (_, i) => keyName(i));
    const figures: Figures = { inPlaceMs: [], logMs: [], mergeMs: [] };
    for (let b = 1; b <= batches; b++) {
      const entries = hotKeys.map((_, i) => encodeEntry(b * 1000 + i, b * 100));
      let started = performance.now();
      env.transactionSync(() => {
        for (let i = 0; i < hot; i++) state.putSync(hotKeys[i], entries[i]);
      });
      figures.inPlaceMs.push(performance.now() - started);

      // The same changes as one appended record: the keys and entries of the batch, back to back.
      started = performance.now();
      const record = Buffer.concat(entries.flatMap((e, i) => [Buffer.from(`${hotKeys[i]}\0`), Buffer.from([e.length]), e]));
      env.transactionSync(() => log.putSync(b, record));
      figures.logMs.push(performance.now() - started);
      if (b % mergeEvery === 0) {
        started = performance.now();
        env.transactionSync(() => {
          // Newest value of each key changed since the last merge (here: every hot key), then the merged records go.
          for (let i = 0; i < hot; i++) state.putSync(hotKeys[i], entries[i]);
          for (let m = b - mergeEvery + 1; m <= b; m++) log.removeSync(m);
        });
        figures.mergeMs.push(performance.now() - started);
      }
    }
    void env.close();
    return figures;
  } finally {
    rmSync(path, { recursive: true, force: true });
  }
}

const small = measure(hot);
const big = measure(bigKeys);
const median = (xs: number[]) => summarize(xs.slice(Math.min(4, xs.length - 1))).median;
const logged = (f: Figures) => median(f.logMs) + median(f.mergeMs) / mergeEvery;
console.log(`one partition, ${hot} hot keys changed per batch, ${batches} batches, medians after the first 4:`);
for (const [name, f, keys] of [['small state', small, hot], ['large state', big, bigKeys]] as const) {
  console.log(`  ${name} (${keys} keys): in place ${median(f.inPlaceMs).toFixed(2)} ms; change log ${median(f.logMs).toFixed(2)} ms + merge ${median(f.mergeMs).toFixed(1)} ms every ${mergeEvery} = ${logged(f).toFixed(2)} ms a batch`);
}
console.log(`  large ÷ small: in place ${(median(big.inPlaceMs) / median(small.inPlaceMs)).toFixed(2)}×, change log ${(logged(big) / logged(small)).toFixed(2)}×`);
