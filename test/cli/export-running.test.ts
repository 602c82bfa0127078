import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { StateSpec, readStateExport } from '../../src/index.js';
import { BatchLog } from '../../src/storage/partition/batch-log.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { messageCodec } from '../../src/storage/codec.js';
import { fixture, runThenStop, tempDir } from '../helpers.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const KEYS = 20_000;

describe('statestream export on a running job', { timeout: 300_000 }, () => {
  it('writes the state of one batch: every partition read as of the same batch, while batches keep committing', async () => {
    const dataDir = tempDir();
    const job = spawn(process.execPath, [fileURLToPath(fixture('busy-job')), dataDir, String(KEYS)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<number | null>((r) => job.once('exit', (code) => r(code)));
    const batches: number[] = [];
    createInterface({ input: job.stdout! }).on('line', (line) => {
      if (line.startsWith('BATCH ')) batches.push(Number(line.slice(6)));
      if (line.startsWith('FAILED')) batches.push(NaN);
    });
    try {
      const deadline = Date.now() + 60_000;
      while (batches.length < 3) {
        if (Date.now() > deadline) assert.fail(`the job did not complete 3 batches within 60 s (${batches.length})`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const seen = new Set<number>();
      let highest = 0;
      for (let i = 0; i < 8; i++) {
        const out = join(tempDir(), `export-${i}.msgpack`);
        const result = await run(process.execPath, [cli, 'export', '--data-dir', dataDir, '--out', out, '--json'], { timeout: 60_000 });
        const summary = JSON.parse(result.stdout) as { keyCount: number; batchTime: number };
        const source = readStateExport<string, number>(out);
        const counts = new Set([...source.entries()].map(([, count]) => count));
        assert.equal(summary.keyCount, KEYS);
        assert.equal(counts.size, 1, `export ${i} (batch ${summary.batchTime}) holds one batch's counts, not several: ${[...counts].join(', ')}`);
        assert.equal(source.header.batchTime, summary.batchTime);
        seen.add(summary.batchTime);
        highest = Math.max(highest, ...counts);
      }
      assert.ok(!batches.some(Number.isNaN), 'no batch failed');
      assert.ok(seen.size > 1, `the job committed batches between the exports (batches ${[...seen].join(', ')})`);

      // The job lost nothing to the exports opening its stores: a commit lost in one partition
      // would leave that partition's keys a count behind the others' for good.
      const printed = batches.length;
      while (batches.length < printed + 2) {
        if (Date.now() > deadline + 60_000) assert.fail('the job stopped committing after the exports');
        await new Promise((r) => setTimeout(r, 50));
      }
      // A clean stop: a kill could land between two partitions' commits of one batch.
      job.stdin!.write('stop\n');
      assert.equal(await exited, 0, 'the job stopped cleanly');
      const out = join(tempDir(), 'export-after.msgpack');
      await run(process.execPath, [cli, 'export', '--data-dir', dataDir, '--out', out], { timeout: 60_000 });
      const after = readStateExport<string, number>(out);
      const counts = new Set([...after.entries()].map(([, count]) => count));
      assert.equal([...after.entries()].length, KEYS);
      assert.equal(counts.size, 1, `after the exports every key holds the same count: ${[...counts].join(', ')}`);
      assert.ok([...counts][0] >= highest + 2, `the job kept counting after the exports (${[...counts][0]} after ${highest})`);
    } finally {
      job.kill('SIGKILL');
      await exited;
    }
  });

  it('refuses stores left at different batches by a failed batch, naming the partitions, once they stop moving', async () => {
    const dataDir = tempDir();
    await runThenStop(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(3), { dataDir }, [['a', 1], ['b', 1], ['c', 1], ['d', 1]], [['a', 1]]);
    // As a batch that failed in partition 1 leaves it: its batch log one batch behind.
    const store = openPartitionStore(partitionPath(dataDir, 0, 1));
    new BatchLog(store).record({ batchTime: 1000, outputs: messageCodec.pack([]), keyCount: new BatchLog(store).last()!.keyCount });
    store.env.close();
    const started = Date.now();
    const result = await run(process.execPath, [cli, 'export', '--data-dir', dataDir, '--out', join(tempDir(), 'x.msgpack')], { timeout: 60_000 }).then(
      () => assert.fail('export succeeded'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /partitions 1 of stream 0 under .* did not commit batch 2000, so the stores are not of one batch/);
    assert.ok(Date.now() - started < 30_000);
  });
});
