/**
 * The throughput scenario's runtime part alone (no baselines), for profiling:
 *   node --cpu-prof --cpu-prof-dir=prof dist/bench/profile-throughput.js [--vocab 1000000] [--records 2000000]
 *   node dist/bench/profile-summary.js prof
 * Worker threads inherit --cpu-prof and write a profile each.
 */
import { parseArgs } from 'node:util';
import { sum } from './common.js';
import { QUICK } from './config.js';
import { RuntimeJob, tempDataDir } from './runtime.js';
import { batches, vocabulary, zipfWords } from './zipf.js';

const { values } = parseArgs({ options: { vocab: { type: 'string', default: '1000000' }, records: { type: 'string', default: '2000000' } } });
const { skew, batchRecords, partitions, threads } = QUICK.throughput;
const size = Number(values.vocab);
const records = Number(values.records);
const input = batches(zipfWords(vocabulary(size), records, skew, 1000 + size), batchRecords);
const dir = tempDataDir('profile');
try {
  const job = await RuntimeJob.start({ dataDir: dir.path, partitions, threads });
  const wall: number[] = [];
  for (const batch of input) wall.push((await job.batch(batch)).wallMs);
  await job.stop();
  console.log(`vocab ${size}: ${records} records in ${input.length} batches, ${((records / sum(wall)) * 1000).toFixed(0)} records/s`);
} finally {
  dir.remove();
}
