/**
 * Where the CPU of the throughput scenario goes, thread by thread, measured by hand (not part
 * of `npm run bench`):
 *   node dist/bench/cpu-per-record.js [--vocab 10000] [--records 2000000] [--threads 2]
 * The scenario's runtime part alone (word count over Zipf(1), batches of 5·10^4, 4 partitions),
 * its first 3 batches left out as there. Each thread's user and system time comes from
 * /proc/self/task/<id>/stat before and after the timed batches (Linux only): on two cores the
 * figure that bounds throughput is the CPU all threads spend per record, not any one thread's.
 * Beside it, each thread's minor page faults per batch: on a VM a fault can cost over 10 µs,
 * and memory a batch takes afresh shows up here (docs/decisions.md).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { QUICK } from './config.js';
import { RuntimeJob, tempDataDir } from './runtime.js';
import { batches, vocabulary, zipfWords } from './zipf.js';
import { WARM_UP_BATCHES } from './scenarios/throughput.js';

const { values } = parseArgs({ options: { vocab: { type: 'string', default: '10000' }, records: { type: 'string', default: '2000000' }, threads: { type: 'string', default: '2' } } });
const { skew, batchRecords, partitions } = QUICK.throughput;
const size = Number(values.vocab);
const input = batches(zipfWords(vocabulary(size), Number(values.records), skew, 1000 + size), batchRecords);

/** Each thread's name, CPU ms so far (clock ticks of 10 ms) and minor page faults. */
function threadCpu(): Map<string, { name: string; userMs: number; systemMs: number; faults: number }> {
  const tick = 10;
  return new Map(
    readdirSync('/proc/self/task').map((id) => {
      const stat = readFileSync(`/proc/self/task/${id}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = readFileSync(`/proc/self/task/${id}/comm`, 'utf8').trim();
      return [id, { name, userMs: Number(fields[11]) * tick, systemMs: Number(fields[12]) * tick, faults: Number(fields[7]) }];
    }),
  );
}

const dir = tempDataDir('cpu-per-record');
try {
  const job = await RuntimeJob.start({ dataDir: dir.path, partitions, threads: Number(values.threads) });
  for (const batch of input.slice(0, WARM_UP_BATCHES)) await job.batch(batch);
  const before = threadCpu();
  let wallMs = 0;
  let records = 0;
  let timed = 0;
  for (const batch of input.slice(WARM_UP_BATCHES)) {
    wallMs += (await job.batch(batch)).wallMs;
    records += batch.length;
    timed++;
  }
  const after = threadCpu();
  await job.stop();
  const nsPerRecord = (ms: number) => ((ms * 1e6) / records).toFixed(0);
  let total = 0;
  const rows: string[] = [];
  for (const [id, now] of after) {
    const was = before.get(id) ?? { userMs: 0, systemMs: 0, faults: 0 };
    const ms = now.userMs - was.userMs + (now.systemMs - was.systemMs);
    total += ms;
    if (ms >= 20) rows.push(`  thread ${id} (${now.name}${id === String(process.pid) ? ', main' : ''}): ${nsPerRecord(ms)} ns a record (user ${now.userMs - was.userMs} ms, system ${now.systemMs - was.systemMs} ms, ${((now.faults - was.faults) / timed).toFixed(0)} page faults a batch)`);
  }
  console.log(`vocab ${size}: ${((records / wallMs) * 1000 / 1000).toFixed(0)} k records/s; all threads ${nsPerRecord(total)} ns of CPU a record`);
  console.log(rows.join('\n'));
} finally {
  dir.remove();
}
