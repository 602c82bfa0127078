/**
 * Whether `statestream export` on a running job costs the job a commit, measured by hand (not
 * part of `npm run bench`; docs/operations.md tells what it found):
 *   node dist/bench/running-export.js [--minutes 10] [--parallel 3] [--exports 3] [--keys 20000]
 * Each round starts `parallel` jobs at once (test/fixtures/busy-job: every batch adds 1 to each
 * of `keys` keys in 4 partitions, on 2 threads); once each has completed 3 batches, it runs
 * `exports` CLI exports of it one after another, lets it complete 2 more batches, stops it
 * cleanly and exports it once more. Every key then holds the same count, unless a partition
 * lost a batch: such a job is reported with its counts. Three at a time on 2 cores is the
 * load under which the test suite met it (about one job in 25 before the open gate).
 */
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { readStateExport } from '../src/index.js';
import { tempDataDir } from './runtime.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const busyJob = fileURLToPath(new URL('../test/fixtures/busy-job.js', import.meta.url));

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    parallel: { type: 'string', default: '3' },
    exports: { type: 'string', default: '3' },
    keys: { type: 'string', default: '20000' },
  },
});
const [minutes, parallel, exportsPerJob, keys] = [values.minutes, values.parallel, values.exports, values.keys].map(Number);

/** The counts the job's keys hold after a clean stop: one count when no partition lost a batch. */
async function oneJob(): Promise<Record<number, number>> {
  const dir = tempDataDir('running-export');
  const job = spawn(process.execPath, [busyJob, dir.path, String(keys)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => job.once('exit', (code) => resolve(code)));
  let batches = 0;
  createInterface({ input: job.stdout! }).on('line', (line) => {
    if (line.startsWith('BATCH ')) batches++;
  });
  const batchesReach = async (n: number) => {
    while (batches < n) await new Promise((resolve) => setTimeout(resolve, 20));
  };
  try {
    await batchesReach(3);
    const out = join(dir.path, 'export.msgpack');
    for (let i = 0; i < exportsPerJob; i++) await run(process.execPath, [cli, 'export', '--data-dir', dir.path, '--out', out, '--quiet'], { timeout: 60_000 });
    await batchesReach(batches + 2);
    job.stdin!.write('stop\n');
    if ((await exited) !== 0) throw new Error('the job did not stop cleanly');
    await run(process.execPath, [cli, 'export', '--data-dir', dir.path, '--out', out, '--quiet'], { timeout: 60_000 });
    const counts: Record<number, number> = {};
    for (const [, count] of readStateExport<string, number>(out).entries()) counts[count] = (counts[count] ?? 0) + 1;
    return counts;
  } finally {
    job.kill('SIGKILL');
    await exited;
    dir.remove();
  }
}

const deadline = Date.now() + minutes * 60_000;
let jobs = 0;
let lost = 0;
while (Date.now() < deadline) {
  const round = await Promise.all(Array.from({ length: parallel }, () => oneJob()));
  for (const counts of round) {
    jobs++;
    if (Object.keys(counts).length > 1) {
      lost++;
      console.log(`job ${jobs}: a partition lost a batch: keys by count ${JSON.stringify(counts)}`);
    }
  }
}
console.log(`${jobs} jobs, ${parallel} at a time, ${exportsPerJob} exports each while running: ${lost} lost a batch`);
