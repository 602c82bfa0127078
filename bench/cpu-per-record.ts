/**
 * Where the CPU of the throughput scenario goes, thread by thread, measured by hand (not part
 * of `npm run bench`):
 *   node dist/bench/cpu-per-record.js [--vocab 10000] [--records 2000000] [--threads 2] [--backlog]
 * The scenario's runtime part alone (word count over Zipf(1), batches of 5·10^4, 4 partitions),
 * its first 3 batches left out as there; with --backlog, its "one batch queued ahead" part
 * (each batch pushed while the one before runs). Each thread's user and system time comes
 * from /proc/self/task/<id>/stat before and after the timed batches (Linux only). Two
 * figures bound the rate: the CPU all threads spend per record, and the share of the
 * machine's cores they keep busy (one batch at a time, a core idles while the main thread
 * waits for the commits, and while the workers wait for the first chunks). Beside them, each
 * thread's minor page faults per batch: on a VM a fault can cost over 10 µs, and memory a
 * batch takes afresh shows up here (docs/decisions.md).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { QUICK } from './config.js';
import { RuntimeJob, tempDataDir } from './runtime.js';
import { batches, vocabulary, zipfWords } from './zipf.js';
import { WARM_UP_BATCHES } from './scenarios/throughput.js';

const { values } = parseArgs({ options: { vocab: { type: 'string', default: '10000' }, records: { type: 'string', default: '2000000' }, threads: { type: 'string', default: '2' }, backlog: { type: 'boolean', default: false } } });
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
  const timedBatches = input.slice(WARM_UP_BATCHES);
  const records = timedBatches.reduce((n, batch) => n + batch.length, 0);
  const timed = timedBatches.length;
  const before = threadCpu();
  let wallMs = 0;
  if (values.backlog) wallMs = await job.backlog(timedBatches);
  else for (const batch of timedBatches) wallMs += (await job.batch(batch)).wallMs;
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
  const cores = availableParallelism();
  console.log(`vocab ${size}${values.backlog ? ', one batch queued ahead' : ''}: ${((records / wallMs) * 1000 / 1000).toFixed(0)} k records/s; all threads ${nsPerRecord(total)} ns of CPU a record, ${((total / wallMs / cores) * 100).toFixed(0)}% of ${cores} cores busy`);
  console.log(rows.join('\n'));
} finally {
  dir.remove();
}
