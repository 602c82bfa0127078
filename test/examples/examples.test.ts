import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { eventually, tempDir, within } from '../helpers.js';
import { sample, scrape } from '../metrics/scrape.js';

const run = promisify(execFile);
const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}/main.js`, import.meta.url));

/** The last count printed for each word. */
function lastCounts(stdout: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const [, word, n] of stdout.matchAll(/^Word (\S+), count (\d+)$/gm)) counts.set(word, Number(n));
  return counts;
}

describe('examples', () => {
  it('word-count prints batches of "Word <w>, count <n>" and continues its counts when run again', async () => {
    const dataDir = join(tempDir(), 'wc');
    const args = [example('word-count'), '--batch-ms', '200', '--batches', '3', '--data-dir', dataDir, '--seed', '5'];
    const first = await run(process.execPath, args);
    assert.match(first.stdout, /holds 0 word counts from earlier runs/);
    assert.equal(first.stdout.match(/^-+ batch .* -+$/gm)?.length, 3);
    const before = lastCounts(first.stdout);
    assert.ok(before.size > 0);

    const second = await run(process.execPath, args);
    assert.match(second.stdout, new RegExp(`holds ${before.size} word counts from earlier runs`));
    // A word's first count in the second run follows its last count of the first (or restarts past 10).
    const firstSeen = new Map<string, number>();
    for (const [, word, n] of second.stdout.matchAll(/^Word (\S+), count (\d+)$/gm)) if (!firstSeen.has(word)) firstSeen.set(word, Number(n));
    let continued = 0;
    for (const [word, n] of firstSeen) {
      const prior = before.get(word);
      if (prior === undefined) continue;
      assert.ok(n > prior || (prior >= 9 && n <= 2), `${word}: ${prior} then ${n}`);
      if (n > prior) continued++;
    }
    assert.ok(continued > 0, 'some counts continued across runs');
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
      assert.equal(await within('the demo to finish its 25 batches', exited), 0);
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

  it('word-count rejects a bad flag with exit code 2', async () => {
    await assert.rejects(run(process.execPath, [example('word-count'), '--batches', '0']), (e: { code?: number; stderr?: string }) => e.code === 2 && /--batches must be an integer/.test(e.stderr ?? ''));
  });

  it('sessions emits a summary when a session times out', async () => {
    const { stdout } = await run(process.execPath, [example('sessions'), '--batch-ms', '200', '--idle-ms', '600', '--batches', '10', '--data-dir', join(tempDir(), 's')]);
    assert.match(stdout, /^Session ann: \d+ pages? in/m);
  });
});
