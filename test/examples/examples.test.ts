import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers.js';
import { eventually, within } from '../wait.js';
import { sample, scrape } from '../metrics/scrape.js';
import { countsByWord } from './printed-counts.js';

const execFileP = promisify(execFile);
/** Runs an example to its end; a hung example is killed, and fails the test, after two minutes. */
const run = (file: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}) => execFileP(file, args, { timeout: 120_000, ...options });
const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}/main.js`, import.meta.url));

/** The last count printed for each word. */
function lastCounts(stdout: string): Map<string, number> {
  return new Map([...countsByWord(stdout)].map(([word, counts]) => [word, counts.at(-1)!]));
}

/**
 * Checks the counts printed for each word, across runs, against the article's function: every
 * occurrence adds exactly one up to 11, the occurrence after 11 removes the word without
 * output, so the next one prints 1. A count applied twice, lost or restarted shows as a break
 * in a word's sequence.
 */
function checkCountSequences(...runs: string[]): void {
  const last = new Map<string, number>();
  runs.forEach((stdout, run) => {
    for (const [line, word, n] of stdout.matchAll(/^Word (\S+), count (\d+)$/gm)) {
      const count = Number(n);
      const before = last.get(word);
      const allowed = before === undefined ? [1] : before === 11 ? [1] : [before + 1];
      assert.ok(allowed.includes(count), `run ${run + 1}, "${line}": after ${before ?? 'no count'} the next count must be ${allowed.join(' or ')}`);
      last.set(word, count);
    }
  });
}

describe('examples', () => {
  it('word-count prints batches of "Word <w>, count <n>" and continues its counts exactly when run again', async () => {
    const dataDir = join(tempDir(), 'wc');
    const args = [example('word-count'), '--batch-ms', '200', '--batches', '3', '--data-dir', dataDir, '--seed', '5'];
    const first = await run(process.execPath, args);
    assert.match(first.stdout, /holds 0 word counts from earlier runs/);
    assert.equal(first.stdout.match(/^-+ batch .* -+$/gm)?.length, 3);
    const before = lastCounts(first.stdout);
    assert.ok(before.size > 0);

    const second = await run(process.execPath, args);
    assert.match(second.stdout, new RegExp(`holds ${before.size} word counts from earlier runs`));
    const continued = [...lastCounts(second.stdout).keys()].filter((w) => before.has(w));
    assert.ok(continued.length > 0, 'the second run counted words the first had counted');
    checkCountSequences(first.stdout, second.stdout);
  });

  it('word-count snapshots its counts, and a lost partition store is restored from the snapshot at the next run', async () => {
    const dataDir = join(tempDir(), 'wc');
    const first = await run(process.execPath, [example('word-count'), '--batch-ms', '200', '--batches', '2', '--snapshot-every', '2', '--data-dir', dataDir]);
    assert.match(first.stdout, /^word-count: snapshot of batch \S+ in \S+ \(\d+ words\)$/m);
    rmSync(join(dataDir, 'state-0', 'partition-0002'), { recursive: true });
    const second = await run(process.execPath, [example('word-count'), '--batch-ms', '200', '--batches', '1', '--data-dir', dataDir]);
    assert.match(second.stdout, /^word-count: restored partition 2 \(the partition folder is missing\) from the snapshot of /m);
    assert.match(second.stdout, new RegExp(`holds ${lastCounts(first.stdout).size} word counts from earlier runs`));
  });

  it('curl of /metrics during the word-count demo shows the batches, lines and state its batch lines report', async () => {
    const dataDir = join(tempDir(), 'wc');
    const demo = spawn(process.execPath, [example('word-count'), '--batch-ms', '200', '--batches', '25', '--data-dir', dataDir, '--metrics-port', '0', '--snapshot-every', '0']);
    let stdout = '';
    demo.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((resolve) => demo.on('close', resolve));
    try {
      const url = await eventually('the demo to print its metrics address', () => /^word-count: metrics at (\S+)$/m.exec(stdout)?.[1]);
      await eventually('five batches', () => ((stdout.match(/^word-count: batch /gm)?.length ?? 0) >= 5 ? true : undefined));
      const samples = await scrape(url);
      assert.equal(await within(exited, 'the demo to finish its 25 batches'), 0);
      // The batches the scrape had seen: those up to the last batch time it reports.
      const lastSeen = sample(samples, 'statestream_last_batch_timestamp_seconds', { app: 'word-count' }) * 1000;
      const batches = [...stdout.matchAll(/^word-count: batch (\S+) done: (\d+) lines in [\d.]+ ms/gm)].map((m) => ({ time: Date.parse(m[1]), lines: Number(m[2]) }));
      assert.equal(batches.length, 25);
      const seen = batches.filter((b) => b.time <= lastSeen);
      assert.ok(seen.length >= 5, `${seen.length} batches before the scrape`);
      assert.equal(sample(samples, 'statestream_batches_total', { app: 'word-count', outcome: 'completed' }), seen.length);
      assert.equal(sample(samples, 'statestream_batch_processing_seconds_count', { app: 'word-count' }), seen.length);
      assert.equal(sample(samples, 'statestream_records_total', { app: 'word-count' }), seen.reduce((n, b) => n + b.lines, 0));
      assert.equal(sample(samples, 'statestream_batch_interval_seconds', { app: 'word-count' }), 0.2);
      // State per partition: four partitions, their keys the words the demo counts (none past 10 are kept).
      const keys = samples.filter((s) => s.name === 'statestream_state_keys');
      assert.deepEqual(keys.map((s) => s.labels.partition).sort(), ['0', '1', '2', '3']);
      assert.ok(keys.reduce((n, s) => n + s.value, 0) > 0);
    } finally {
      demo.kill();
    }
  });

  it('a second word-count on the same data folder exits 1 naming the running one, which goes on', async () => {
    const dataDir = join(tempDir(), 'wc');
    const first = spawn(process.execPath, [example('word-count'), '--batch-ms', '200', '--batches', '300', '--data-dir', dataDir, '--snapshot-every', '0']);
    let stdout = '';
    first.stdout.on('data', (d) => (stdout += d));
    try {
      await eventually('the first demo to start', () => (/holds 0 word counts from earlier runs/.test(stdout) ? true : undefined));
      await assert.rejects(run(process.execPath, [example('word-count'), '--batches', '1', '--data-dir', dataDir]), (e: { code?: number; stderr?: string }) => {
        assert.equal(e.code, 1);
        assert.match(e.stderr ?? '', new RegExp(`^word-count: cannot start: start\\(\\): the data folder ${dataDir} is in use by process ${first.pid} on host \\S+ \\(job "word-count", since [^)]+\\)`));
        return true;
      });
      const done = stdout.match(/^word-count: batch /gm)?.length ?? 0;
      await eventually('the first demo to go on', () => ((stdout.match(/^word-count: batch /gm)?.length ?? 0) > done ? true : undefined));
    } finally {
      first.kill();
    }
  });

  it('word-count piped into a reader that stops reading (… | head) stops quietly, exit 0', async () => {
    const demo = spawn(process.execPath, [example('word-count'), '--batch-ms', '100', '--batches', '300', '--data-dir', join(tempDir(), 'wc'), '--snapshot-every', '0']);
    let stderr = '';
    demo.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<[number | null, string | null]>((resolve) => demo.once('exit', (code, signal) => resolve([code, signal])));
    let lines = 0;
    await new Promise<void>((resolve) => demo.stdout.on('data', (d: Buffer) => ((lines += d.toString().split('\n').length - 1) >= 3 ? resolve() : undefined)));
    demo.stdout.destroy();
    assert.deepEqual(await within(exited, 'the demo to stop'), [0, null], stderr);
    assert.doesNotMatch(stderr, /EPIPE|\n\s+at /);
  });

  it('word-count rejects a bad flag with exit code 2', async () => {
    await assert.rejects(run(process.execPath, [example('word-count'), '--batches', '0']), (e: { code?: number; stderr?: string }) => e.code === 2 && /--batches must be an integer/.test(e.stderr ?? ''));
  });

  it('kafka-word-count refuses a host without its port, and names where a page off loopback takes its token, with exit code 2 (before reaching Kafka)', async () => {
    const base = [example('kafka-word-count'), '--brokers', '127.0.0.1:1', '--topic', 'words', '--zookeeper', '127.0.0.1:1', '--data-dir', join(tempDir(), 'k')];
    const env = { ...process.env, STATESTREAM_UI_TOKEN: undefined };
    const refused = (args: string[], message: RegExp) =>
      assert.rejects(run(process.execPath, [...base, ...args], { env }), (e: { code?: number; stderr?: string }) => e.code === 2 && message.test(e.stderr ?? ''), args.join(' '));
    await refused(['--metrics-host', '0.0.0.0'], /^kafka-word-count: --metrics-host needs --metrics-port/);
    await refused(['--ui-host', '0.0.0.0'], /^kafka-word-count: --ui-host needs --ui-port/);
    await refused(['--ui-host', '0.0.0.0', '--ui-port', '0'], /give ui\.token.*\(this example reads it from the environment: STATESTREAM_UI_TOKEN\)/);
  });

  it('sessions emits one summary when a session times out, holding each of its clicks once', async () => {
    const { stdout } = await run(process.execPath, [example('sessions'), '--batch-ms', '400', '--idle-ms', '2000', '--batches', '14', '--data-dir', join(tempDir(), 's')]);
    const summaries = [...stdout.matchAll(/^Session (\w+): (\d+) pages? in [\d.]+ s \(.*\): (.*)$/gm)].map(([, user, pages, path]) => ({ user, pages: Number(pages), path: path.split(' > ') }));
    // The script: ann clicks in the first three batches (pages 1, 2 and 3 of PAGES), then goes
    // quiet and times out; cai clicks once in the first batch (page 5) and times out; dee clicks
    // every second batch and never times out: her gaps of 800 ms leave 1.2 s for a batch that
    // stalls on a loaded machine (the next batches' clicks then arrive late; 600 ms, at 200 ms
    // batches, was thin with the suite running beside it).
    assert.deepEqual(summaries.filter((s) => s.user === 'ann'), [{ user: 'ann', pages: 3, path: ['/search', '/item/17', '/item/42'] }]);
    assert.deepEqual(summaries.filter((s) => s.user === 'cai'), [{ user: 'cai', pages: 1, path: ['/checkout'] }]);
    assert.deepEqual(summaries.filter((s) => s.user === 'dee'), []);
    // bob clicks in batches 1 to 6 and times out five batches later, well before the 14th.
    assert.deepEqual(summaries.filter((s) => s.user === 'bob'), [{ user: 'bob', pages: 6, path: ['/item/42', '/cart', '/checkout', '/help', '/', '/search'] }]);
    assert.equal(summaries.length, 3, 'one summary per session that ended, none twice');
    const ended = [...stdout.matchAll(/^----- batch .*: \d+ clicks?, (\d+) sessions? ended, \d+ open -----$/gm)].reduce((n, [, k]) => n + Number(k), 0);
    assert.equal(ended, 3, 'the batches report the three sessions that ended');
  });
});
