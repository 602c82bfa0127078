import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { StateSpec, murmur2Partitioner } from '../../src/index.js';
import { Progress, copyFileCounted } from '../../src/cli/progress.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { fixture, runThenStop, tempDir } from '../helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const KEYS = 25_000;

/** The CLI with progress lines on every update (no 2 s pause between them). */
function run(...args: string[]) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, STATESTREAM_PROGRESS_INTERVAL_MS: '0' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The same under a pseudo-terminal (util-linux script), as a person at a terminal runs it. */
function runOnTerminal(...args: string[]) {
  const command = [process.execPath, cli, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const result = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: 120_000 });
  return { code: result.status, output: result.stdout };
}

// Each test fails rather than hangs when a batch or a service never answers.
describe('progress of long CLI work', { timeout: 180_000 }, () => {
  let dataDir: string;
  before(async () => {
    dataDir = tempDir();
    await runThenStop(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir }, Array.from({ length: KEYS }, (_, i): [string, number] => [`key-${i}`, 1]));
  });

  it('draws a bar in place on a terminal, and plain lines without one', () => {
    const writes: string[] = [];
    const tty = new Progress('export', 'keys', 200, { sink: { write: (t: string) => writes.push(t), isTTY: true, columns: 100 } });
    tty.update(50);
    tty.finish(200);
    assert.match(writes[0], /^\r\x1b\[Kexport \[#{10}-{30}\]  25% 50 of 200 keys$/);
    assert.match(writes.at(-1)!, /^\r\x1b\[Kexport \[#{40}\] 100% 200 of 200 keys in \d+\.\d s\n$/);
    // More done than the total said (a key count recorded low): the bar stays full, at 100%.
    const over: string[] = [];
    new Progress('import', 'keys', 10, { sink: { write: (t: string) => over.push(t), isTTY: true, columns: 100 } }).update(15);
    assert.match(over[0], /^\r\x1b\[Kimport \[#{40}\] 100% 15 of 10 keys$/);
    // A terminal that does not say its width is taken as 80 columns: a bar of 80 - 60.
    const unsized: string[] = [];
    new Progress('export', 'keys', 200, { sink: { write: (t: string) => unsized.push(t), isTTY: true } }).update(50);
    assert.match(unsized[0], /^\r\x1b\[Kexport \[#{5}-{15}\]  25% 50 of 200 keys$/);
    // Rounded down: 199 of 200 is not yet done, on the bar or in a plain line.
    const nearly: string[] = [];
    new Progress('export', 'keys', 200, { sink: { write: (t: string) => nearly.push(t), isTTY: true, columns: 100 } }).update(199);
    assert.match(nearly[0], /^\r\x1b\[Kexport \[#{40}\]  99% 199 of 200 keys$/);
    const nearlyPlain: string[] = [];
    new Progress('export', 'keys', 200, { sink: { write: (t: string) => nearlyPlain.push(t) }, intervalMs: 0 }).update(199);
    assert.deepEqual(nearlyPlain, ['export: 199 of 200 keys (99%)\n']);

    const lines: string[] = [];
    const plain = new Progress('import', 'keys', undefined, { sink: { write: (t: string) => lines.push(t) }, intervalMs: 0 });
    plain.update(10_000);
    plain.advance(5);
    plain.finish();
    assert.deepEqual(lines.slice(0, 2), ['import: 10,000 keys\n', 'import: 10,005 keys\n']);
    assert.match(lines[2], /^import: done, 10,005 keys in \d+\.\d s\n$/);

    const quiet: string[] = [];
    const silent = new Progress('export', 'keys', 10, { sink: { write: (t: string) => quiet.push(t) }, quiet: true, intervalMs: 0 });
    silent.update(5);
    silent.finish();
    assert.deepEqual(quiet, []);
  });

  it('paces what it draws: plain lines one interval apart (2 s unless the environment says otherwise), the bar at most every 100 ms', () => {
    const collect = (tty: boolean) => {
      const writes: string[] = [];
      return { writes, sink: { write: (t: string) => writes.push(t), isTTY: tty, columns: 100 } };
    };
    const saved = process.env.STATESTREAM_PROGRESS_INTERVAL_MS;
    try {
      // Neither a default nor a negative value lets a line out before two seconds have passed.
      for (const env of [undefined, '-1', 'soon']) {
        if (env === undefined) delete process.env.STATESTREAM_PROGRESS_INTERVAL_MS;
        else process.env.STATESTREAM_PROGRESS_INTERVAL_MS = env;
        const { writes, sink } = collect(false);
        const progress = new Progress('export', 'keys', 10, { sink });
        progress.update(5);
        progress.finish(10);
        assert.deepEqual(writes, [], `STATESTREAM_PROGRESS_INTERVAL_MS ${String(env)}: work over before its first line prints nothing`);
      }
    } finally {
      if (saved === undefined) delete process.env.STATESTREAM_PROGRESS_INTERVAL_MS;
      else process.env.STATESTREAM_PROGRESS_INTERVAL_MS = saved;
    }
    const slow = collect(false);
    const paced = new Progress('export', 'keys', 10, { sink: slow.sink, intervalMs: 60_000 });
    paced.update(5);
    paced.finish(10);
    assert.deepEqual(slow.writes, [], 'the first plain line waits one interval from the start, and quick work closes with none');

    const bar = collect(true);
    const drawn = new Progress('export', 'keys', 10, { sink: bar.sink });
    drawn.abandon();
    assert.deepEqual(bar.writes, [], 'nothing drawn, nothing to end');
    drawn.update(1);
    drawn.update(2);
    assert.equal(bar.writes.length, 1, 'the bar is drawn at once, then redrawn at most every 100 ms');
    drawn.abandon();
    assert.equal(bar.writes.at(-1), '\n', 'a bar left half-way ends its line');
    const ended = bar.writes.length;
    drawn.abandon();
    assert.equal(bar.writes.length, ended, 'a line ended once is not ended again (no blank line before the error)');

    // The finished bar's line already ends with a newline: a failure after it adds no blank line.
    const finished = collect(true);
    const complete = new Progress('export', 'keys', 10, { sink: finished.sink });
    complete.update(5);
    complete.finish(10);
    const afterFinish = finished.writes.length;
    assert.match(finished.writes.at(-1)!, / in \d+\.\d s\n$/);
    complete.abandon();
    assert.equal(finished.writes.length, afterFinish, 'nothing written after the finished line');

    const empty = collect(false);
    new Progress('reshard', 'keys', 0, { sink: empty.sink, intervalMs: 0 }).update(0);
    assert.deepEqual(empty.writes, ['reshard: 0 of 0 keys\n'], 'a total of 0 shows no percentage (not NaN%)');
  });

  it('a file copied for a restore is counted as its chunks are written, not once it is whole', () => {
    const dir = tempDir();
    const content = randomBytes(2.5 * 2 ** 20);
    writeFileSync(join(dir, 'from'), content);
    const lines: string[] = [];
    const progress = new Progress('restore', 'bytes', content.length, { sink: { write: (t: string) => lines.push(t) }, intervalMs: 0 });
    copyFileCounted(join(dir, 'from'), join(dir, 'to'), progress, 2 ** 20);
    assert.deepEqual(lines, ['restore: 1,048,576 of 2,621,440 bytes (40%)\n', 'restore: 2,097,152 of 2,621,440 bytes (80%)\n', 'restore: 2,621,440 of 2,621,440 bytes (100%)\n']);
    assert.ok(readFileSync(join(dir, 'to')).equals(content));
  });

  it('export, import, reshard and snapshot restore report progress on stderr; stdout keeps the result; --quiet says nothing', () => {
    const file = join(tempDir(), 'state.msgpack');
    const exported = run('export', '--data-dir', dataDir, '--out', file);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /^Exported 25000 keys/);
    const exportLines = exported.stderr.trim().split('\n');
    assert.deepEqual(exportLines.slice(0, 3), ['export: 10,000 of 25,000 keys (40%)', 'export: 20,000 of 25,000 keys (80%)', 'export: 25,000 of 25,000 keys (100%)']);
    assert.match(exportLines[3], /^export: done, 25,000 of 25,000 keys in \d+\.\d s$/);

    const target = join(tempDir(), 'imported');
    const imported = run('import', file, '--data-dir', target, '--partitions', '2');
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /^Imported 25000 keys/);
    const importLines = imported.stderr.trim().split('\n');
    assert.deepEqual(importLines.slice(0, 2), ['import: 10,000 keys', 'import: 20,000 keys']);
    assert.match(importLines.at(-1)!, /^import: done, 25,000 keys in/);

    const resharded = run('reshard', '--partitions', '5', '--data-dir', target);
    assert.equal(resharded.code, 0, resharded.stderr);
    assert.match(resharded.stdout, /^Resharded stream 0 from 2 to 5 partitions: 25000 keys, 0 dead letters, last batch 1000.*\nStart the job with StateSpec\.numPartitions\(5\);/);
    const again = run('reshard', '--partitions', '5', '--data-dir', target, '--json');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout), { stream: 0, from: 5, to: 5, keyCount: 25_000, changed: false, settledFirst: [] }, 'nothing to do, and the keys still counted');
    assert.deepEqual(resharded.stderr.trim().split('\n').slice(0, 3), ['reshard: 10,000 of 25,000 keys (40%)', 'reshard: 20,000 of 25,000 keys (80%)', 'reshard: 25,000 of 25,000 keys (100%)']);
    // Every key sits where the router sends it among the 5 new partitions.
    for (let p = 0; p < 5; p++) {
      const store = openPartitionStore(partitionPath(target, 0, p));
      try {
        for (const { key } of store.state.getRange({})) assert.equal(murmur2Partitioner.partition(key, 5), p, String(key));
      } finally {
        store.env.close();
      }
    }
    assert.equal(run('state', 'count', '--data-dir', target).stdout.trim(), String(KEYS));
    assert.equal(run('state', 'get', 'key-24999', '--data-dir', target).stdout.split('\n')[0], '1');
    assert.match(run('reshard', '--partitions', '5', '--data-dir', target).stdout, /already has 5 partitions/);

    assert.equal(run('snapshot', 'create', '--data-dir', target).code, 0);
    const restored = run('snapshot', 'restore', '1000', '--data-dir', target);
    assert.equal(restored.code, 0, restored.stderr);
    const restoreLines = restored.stderr.trim().split('\n');
    assert.equal(restoreLines.length, 6, restored.stderr);
    assert.match(restoreLines[0], /^restore: [\d,]+ of [\d,]+ bytes \(\d+%\)$/);
    assert.match(restoreLines[4], /^restore: ([\d,]+) of \1 bytes \(100%\)$/);
    assert.match(restoreLines[5], /^restore: done/);

    const quiet = run('export', '--data-dir', dataDir, '--out', join(tempDir(), 'quiet.msgpack'), '--quiet');
    assert.equal(quiet.code, 0, quiet.stderr);
    assert.equal(quiet.stderr, '');
  });

  it('on a terminal, export redraws one bar and ends it with a newline', () => {
    const { code, output } = runOnTerminal('export', '--data-dir', dataDir, '--out', join(tempDir(), 'tty.msgpack'));
    assert.equal(code, 0, output);
    assert.match(output, /\r\x1b\[Kexport \[#+\] 100% 25,000 of 25,000 keys in \d+\.\d s\r?\n/);
    assert.doesNotMatch(output, /^export: /m, 'no plain lines on a terminal');
    assert.match(output, /Exported 25000 keys/);
  });
});
