/**
 * The scaling scenario's hot batch, statestream alone in its process, measured by hand (not
 * part of `npm run bench`):
 *   node dist/bench/hot-batch-alone.js [--sizes 10000,10000000] [--batches 20]
 * In `npm run bench` the Map baseline grows beside the runtime, in the same process: at 10^7
 * keys its entries fill the main thread's heap, and every major collection the runtime's main
 * thread triggers marks them too. Here one context grows its state as the scenario does
 * (fresh keys `k<i>`, batches of 10^5, 4 partitions, 2 threads), and at each size runs one
 * untimed hot batch, then `--batches` timed ones: 10^5 records, Zipf(1) over the 10^4 hot keys.
 */
import { parseArgs } from 'node:util';
import { freshKeyBatches, keyName } from './common.js';
import { RuntimeJob, tempDataDir } from './runtime.js';
import { summarize } from './stats.js';
import { zipfWords } from './zipf.js';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '10000,10000000' }, batches: { type: 'string', default: '20' } } });
const sizes = values.sizes.split(',').map(Number);
const timed = Number(values.batches);
const hotBatch = zipfWords(Array.from({ length: 10_000 }, (_, i) => keyName(i)), 100_000, 1, 2024); // the scenario's hot batch

const dir = tempDataDir('hot-batch-alone');
try {
  const job = await RuntimeJob.start({ dataDir: dir.path, partitions: 4, threads: 2 });
  const medians: number[] = [];
  let have = 0;
  for (const size of sizes) {
    const started = Date.now();
    for (const batch of freshKeyBatches(have, size, 100_000)) await job.batch(batch);
    have = size;
    await job.batch(hotBatch);
    const ms: number[] = [];
    for (let i = 0; i < timed; i++) ms.push((await job.batch(hotBatch)).processingMs);
    const { median } = summarize(ms);
    medians.push(median);
    console.log(`state ${size} keys (grown in ${((Date.now() - started) / 1000).toFixed(0)} s): hot batch median ${median.toFixed(1)} ms over ${timed} (min ${Math.min(...ms).toFixed(0)}, max ${Math.max(...ms).toFixed(0)}): ${ms.map((m) => m.toFixed(0)).join(' ')}`);
  }
  console.log(`largest ÷ smallest: ${(medians.at(-1)! / medians[0]).toFixed(2)}×`);
  await job.stop();
} finally {
  dir.remove();
}
