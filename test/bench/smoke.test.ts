import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers.js';

const run = promisify(execFile);
const bench = fileURLToPath(new URL('../../bench/run.js', import.meta.url));

describe('benchmark harness', () => {
  it('runs every scenario and baseline at smoke sizes and writes the tables, JSON and chart', async () => {
    const out = tempDir('statestream-bench-');
    const { stdout } = await run(process.execPath, [bench, '--smoke', '--out', out], { timeout: 240_000, maxBuffer: 16 * 1024 * 1024 });
    for (const title of ['1. Throughput', '2. State-size scaling', '3. Timeout sweep', '4. Threads and partitions', '5. Restart', '6. Snapshots every 5 batches vs none', 'raw lmdb-js']) {
      assert.ok(stdout.includes(title), `the report has "${title}"`);
    }
    assert.match(stdout, /÷ LMDB loop/);
    assert.match(stdout, /\| snapshots every 5 median \(min–max\) \| no snapshots \| ÷ no snapshots \|/);
    assert.match(stdout, /Goal: batch processing p99 with snapshots within 1\.1× of the p99 without/);
    const json = JSON.parse(readFileSync(join(out, 'latest-smoke.json'), 'utf8')) as {
      environment: Record<string, unknown>;
      scenarios: Array<{ name: string; rows: Array<{ figure: string; runtime: { median: number }; baselines: { none?: { median: number } }; details?: Record<string, unknown> }> }>;
    };
    const snapshots = json.scenarios.find((s) => s.name === 'snapshots');
    assert.ok(snapshots, 'the JSON has the snapshot scenario');
    const p99 = snapshots.rows.find((r) => r.figure === 'batch processing p99');
    assert.ok(p99 && p99.runtime.median > 0 && p99.baselines.none!.median > 0, 'p99 with and without snapshots');
    assert.equal(typeof p99.details!.ratio, 'number');
    const completed = snapshots.rows.find((r) => r.figure === 'snapshots completed');
    assert.ok(completed && completed.runtime.median >= 1, 'snapshots were taken, awaited and counted');
    // Memory beside every throughput figure: peak RSS and the state on disk.
    for (const [scenario, figures] of [['throughput', ['peak RSS above the start of the run', 'state on disk']], ['threadsPartitions', ['peak RSS above the start of the run', 'state on disk']], ['kafka', ['peak RSS above the start of the read', 'state on disk']]] as const) {
      const rows = json.scenarios.find((s) => s.name === scenario)?.rows ?? [];
      for (const figure of figures) assert.ok(rows.some((r) => r.figure === figure && r.runtime.median > 0), `${scenario} reports ${figure}`);
    }
    for (const field of ['cpuModel', 'cores', 'node', 'gitCommit']) assert.ok(json.environment[field] !== undefined, `the results name the machine's ${field}`);
    assert.ok(existsSync(join(out, 'latest-smoke.svg')));
    assert.match(readFileSync(join(out, 'latest-smoke.svg'), 'utf8'), /<svg/);
    assert.ok(readdirSync(out).some((f) => /^\d{4}-.*-smoke\.json$/.test(f)), 'a file per run, named by its time');
  });

  it('writes what it measured when a scenario fails, names the failure, and exits 1', async () => {
    const out = tempDir('statestream-bench-');
    // No PATH: the Kafka scenario cannot start ZooKeeper (java), the throughput scenario needs nothing from it.
    const failure = await run(process.execPath, [bench, '--smoke', '--only', 'throughput,kafka', '--out', out], { timeout: 240_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, PATH: '/nonexistent' } }).then(
      () => assert.fail('the harness exited 0 with a failed scenario'),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    assert.equal(failure.code, 1);
    assert.match(failure.stderr, /kafka: failed, going on without it/);
    assert.ok(failure.stdout.includes('1. Throughput'), 'the throughput scenario ran and was printed');
    const json = JSON.parse(readFileSync(join(out, 'latest-smoke-partial.json'), 'utf8')) as { complete: boolean; failed: Array<{ scenario: string; error: string }>; scenarios: Array<{ name: string }> };
    assert.equal(json.complete, false);
    assert.deepEqual(json.failed.map((f) => f.scenario), ['kafka']);
    assert.match(json.failed[0].error, /ZooKeeper/);
    assert.ok(json.scenarios.some((s) => s.name === 'throughput'), 'the figures measured before the failure are kept');
    assert.match(readFileSync(join(out, 'latest-smoke-partial.md'), 'utf8'), /Scenario kafka failed/);
  });
});
