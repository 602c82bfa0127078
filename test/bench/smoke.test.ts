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
    for (const title of ['1. Throughput', '2. State-size scaling', '3. Timeout sweep', '4. Threads and partitions', '5. Restart', 'raw lmdb-js']) {
      assert.ok(stdout.includes(title), `the report has "${title}"`);
    }
    assert.match(stdout, /÷ LMDB loop/);
    const json = JSON.parse(readFileSync(join(out, 'latest-smoke.json'), 'utf8')) as { environment: Record<string, unknown> };
    for (const field of ['cpuModel', 'cores', 'node', 'gitCommit']) assert.ok(json.environment[field] !== undefined, `the results name the machine's ${field}`);
    assert.ok(existsSync(join(out, 'latest-smoke.svg')));
    assert.match(readFileSync(join(out, 'latest-smoke.svg'), 'utf8'), /<svg/);
    assert.ok(readdirSync(out).some((f) => /^\d{4}-.*-smoke\.json$/.test(f)), 'a file per run, named by its time');
  });
});
