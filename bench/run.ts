/**
 * The benchmark harness: `node dist/bench/run.js --quick | --full [--only a,b] [--reps n]`.
 * Runs the scenarios through the public API against the baselines, prints a Markdown table
 * per scenario, and writes bench/results/<ISO time>-<mode>.json, latest-<mode>.json,
 * latest-<mode>.md and latest-<mode>.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LmdbLoop, MapLoop, rawLmdbRates } from './baselines.js';
import { renderChart } from './chart.js';
import { log, pow10, setBudget, type RawBaseline } from './common.js';
import { FULL, QUICK, SMOKE, type BenchConfig } from './config.js';
import { environment, fmt, scenarioReport, type ScenarioResult } from './report.js';
import { RuntimeJob, tempDataDir } from './runtime.js';
import { scalingAndRestart } from './scenarios/scaling-restart.js';
import { kafkaIntake } from './scenarios/kafka-intake.js';
import { snapshotPause } from './scenarios/snapshots.js';
import { threadsPartitions } from './scenarios/threads-partitions.js';
import { throughput } from './scenarios/throughput.js';
import { timeoutSweep } from './scenarios/timeout.js';
import { summarize } from './stats.js';
import { batches, vocabulary, zipfWords } from './zipf.js';

const SCENARIOS = ['throughput', 'scaling', 'timeout', 'threads', 'snapshots', 'kafka'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    only: { type: 'string' },
    reps: { type: 'string' },
    out: { type: 'string' },
  },
});

if ([values.quick, values.full, values.smoke].filter(Boolean).length !== 1) {
  console.error('usage: node dist/bench/run.js --quick | --full | --smoke [--only throughput,scaling,timeout,threads,snapshots,kafka] [--reps n] [--out dir]\n  (scaling includes the restart scenario; --smoke: tiny sizes, for the test suite)');
  process.exit(2);
}
const base: BenchConfig = values.full ? FULL : values.smoke ? SMOKE : QUICK;
const config: BenchConfig = { ...base, reps: values.reps ? Number(values.reps) : base.reps };
const only = values.only ? (values.only.split(',').map((s) => s.trim()) as ScenarioName[]) : [...SCENARIOS];
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`--only: unknown scenario "${name}" (known: ${SCENARIOS.join(', ')})`);
setBudget(config.budgetSeconds);
// Ctrl-C: exit through 'exit', where the bench's data folders are removed.
process.once('SIGINT', () => process.exit(130));
const outDir = values.out ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));

function rawBaseline(): { raw: RawBaseline; result: ScenarioResult } {
  const started = Date.now();
  const keys = vocabulary(config.rawKeys, 11);
  const put: number[] = [];
  const get: number[] = [];
  for (let rep = 0; rep < config.reps; rep++) {
    const dir = tempDataDir('raw');
    try {
      const rates = rawLmdbRates(dir.path, keys);
      put.push(rates.putPerS);
      get.push(rates.getPerS);
    } finally {
      dir.remove();
    }
  }
  const getPut = put.map((p, i) => 1 / (1 / p + 1 / get[i]));
  const raw: RawBaseline = { keys: config.rawKeys, put: summarize(put), get: summarize(get), getPut: summarize(getPut) };
  log(`raw lmdb-js: put ${fmt(raw.put.median, 'ops/s')}/s, get ${fmt(raw.get.median, 'ops/s')}/s`);
  return {
    raw,
    result: {
      name: 'raw', title: 'Baseline: raw lmdb-js in one transaction', subject: 'lmdb-js', setup: { keys: config.rawKeys, reps: config.reps },
      notes: [`${pow10(config.rawKeys)} distinct word keys with number values, in random key order: putSync in one transactionSync, then get in one read transaction. "get+put" is the rate of one get and one put per record, the raw column of the scenario tables.`],
      rows: [
        { case: `${pow10(config.rawKeys)} keys`, figure: 'put', unit: 'ops/s', runtime: raw.put, baselines: {} },
        { case: `${pow10(config.rawKeys)} keys`, figure: 'get', unit: 'ops/s', runtime: raw.get, baselines: {} },
        { case: `${pow10(config.rawKeys)} keys`, figure: 'get+put', unit: 'ops/s', runtime: raw.getPut, baselines: {} },
      ],
      seconds: (Date.now() - started) / 1000,
    },
  };
}

/** An untimed run of the runtime and the baselines, so the first measured run is not also the JIT's warm-up. */
async function warmUp(): Promise<void> {
  const words = zipfWords(vocabulary(10_000, 3), 250_000, 1.0, 3);
  const input = batches(words, config.throughput.batchRecords);
  const dir = tempDataDir('warm-up');
  const ldir = tempDataDir('warm-up-lmdb');
  try {
    const job = await RuntimeJob.start({ dataDir: dir.path, partitions: config.throughput.partitions, threads: config.throughput.threads });
    for (const batch of input) await job.batch(batch);
    await job.stop();
    const map = new MapLoop();
    const loop = new LmdbLoop(ldir.path);
    input.forEach((batch, i) => {
      map.batch(i * 100, batch);
      loop.batch(i * 100, batch);
    });
    await loop.close();
  } finally {
    dir.remove();
    ldir.remove();
  }
}

/** A scenario's number in its title ("4. Threads and partitions"); 0 for the unnumbered baseline. */
function sectionNumber(result: ScenarioResult): number {
  return Number(/^(\d+)\./.exec(result.title)?.[1] ?? 0);
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const env = environment();
  log(`${config.mode} mode, ${config.reps} runs per figure; ${env.cpuModel}, ${env.cores} cores, Node ${env.node}, commit ${env.gitCommit.slice(0, 10)}${env.gitDirty ? ' (dirty)' : ''}`);
  await warmUp();
  const { raw, result: rawResult } = rawBaseline();
  const results: ScenarioResult[] = [rawResult];
  const print = (r: ScenarioResult) => console.log(`\n${scenarioReport(r)}`);
  print(rawResult);
  // A scenario that fails (a service missing, a machine too small) costs its own figures, not
  // those the run already measured: the others go on, the results are written, the exit is 1.
  const failed: Array<{ scenario: string; error: string }> = [];
  const run = async (name: (typeof SCENARIOS)[number], scenario: () => Promise<ScenarioResult | ScenarioResult[]>) => {
    if (!only.includes(name)) return;
    try {
      for (const result of [await scenario()].flat()) {
        results.push(result);
        print(result);
      }
    } catch (error) {
      console.error(error);
      log(`${name}: failed, going on without it (${(error as Error).message})`);
      failed.push({ scenario: name, error: (error as Error).message ?? String(error) });
    }
  };
  await run('throughput', () => throughput(config, raw));
  await run('scaling', () => scalingAndRestart(config, raw));
  await run('timeout', () => timeoutSweep(config, raw));
  await run('snapshots', () => snapshotPause(config));
  await run('kafka', () => kafkaIntake(config));
  // Last: it measures no goal, so it is the one that gives up runs when quick mode's budget is spent.
  await run('threads', () => threadsPartitions(config, raw));
  // The report keeps the scenarios' numbered order, whatever order they ran in.
  results.sort((a, b) => sectionNumber(a) - sectionNumber(b));

  const seconds = (Date.now() - startedAt.getTime()) / 1000;
  const command = `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`;
  const report = {
    mode: config.mode,
    complete: only.length === SCENARIOS.length && failed.length === 0,
    failed,
    command,
    startedAt: startedAt.toISOString(),
    seconds,
    environment: env,
    config,
    scenarios: results,
  };
  mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const suffix = report.complete ? config.mode : `${config.mode}-partial`;
  const json = JSON.stringify(report, null, 2);
  writeFileSync(join(outDir, `${stamp}-${suffix}.json`), json);
  const markdown = [
    `Mode ${config.mode}, ${config.reps} runs per figure, ${seconds.toFixed(0)} s in all; ${env.cpuModel}, ${env.cores} cores, ${env.memoryGiB} GiB, Node ${env.node}, commit ${env.gitCommit.slice(0, 10)}${env.gitDirty ? ' (work tree dirty)' : ''}, ${startedAt.toISOString()}.`,
    'Each cell: median (min–max) of the runs; ÷ columns: statestream ÷ baseline (medians).',
    ...failed.map((f) => `\n**Scenario ${f.scenario} failed**, its figures are missing: ${f.error}`),
    ...results.map((r) => `\n${scenarioReport(r)}`),
  ].join('\n');
  const svg = await renderChart(results, env, config.mode);
  writeFileSync(join(outDir, `latest-${suffix}.json`), json);
  writeFileSync(join(outDir, `latest-${suffix}.md`), markdown + '\n');
  writeFileSync(join(outDir, `latest-${suffix}.svg`), svg);
  log(`wrote ${join(outDir, stamp)}-${suffix}.json, latest-${suffix}.{json,md,svg}; ${seconds.toFixed(0)} s in all`);
  if (failed.length > 0) {
    log(`failed: ${failed.map((f) => f.scenario).join(', ')}`);
    process.exitCode = 1;
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
