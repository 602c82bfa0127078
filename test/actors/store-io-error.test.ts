import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { StateSpec } from '../../src/index.js';
import { murmur2Partitioner } from '../../src/engine/partitioner.js';
import { BatchLog } from '../../src/storage/partition/batch-log.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';

/** Runs the growing-states fixture under a file-size limit of `kib` KiB (bash's `ulimit -f`); resolves with its stdout lines. */
function runLimited(dataDir: string, kib: number): Promise<{ lines: string[]; code: number | null }> {
  const child = spawn('bash', ['-c', `ulimit -f ${kib} && exec "${process.execPath}" "$0" "$1"`, fileURLToPath(fixture('growing-states')), dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => child.on('close', (code) => {
    clearTimeout(timer);
    resolve({ lines: out.split('\n').filter(Boolean), code });
  }));
}

describe('a store that fails under a commit', () => {
  it('fails the batch with a StoreIOError naming the partition, the batch and the store; the store keeps the last committed batch and the job starts again', async () => {
    const dataDir = tempDir();
    const { lines, code } = await runLimited(dataDir, 4000);
    assert.equal(code, 0, `the job stops by itself after the failed batch: ${lines.join('\n')}`);
    const completed = lines.filter((l) => l.startsWith('COMPLETED ')).map((l) => Number(l.split(' ')[1]));
    const failedLine = lines.find((l) => l.startsWith('FAILED '));
    assert.ok(failedLine, `a batch failed under the 4000 KiB limit: ${lines.join('\n')}`);
    assert.ok(completed.length >= 2, `batches committed before the limit was reached (${completed.length})`);
    const failure = JSON.parse(failedLine.slice('FAILED '.length)) as { name: string; code: string; message: string; context: { partition: number; batchTime: number; path: string } };
    assert.equal(failure.name, 'StoreIOError');
    assert.equal(failure.code, 'ERR_STORE_IO');
    const { partition, batchTime, path } = failure.context;
    assert.ok(partition === 0 || partition === 1, `the partition is named: ${failure.message}`);
    assert.equal(path, partitionPath(dataDir, 0, partition), 'the store named is the failed partition\'s');
    assert.ok(!completed.includes(batchTime), 'the batch named is the one that failed');
    assert.match(failure.message, new RegExp(`^partition ${partition} could not commit batch ${batchTime}, store .*partition-000${partition}: .*did not commit`));

    // The failed partition's store is as its last committed batch left it.
    const failedBatch = completed.length; // one pushed batch per batch, from k-0-*
    const store = openPartitionStore(path);
    try {
      assert.ok(new BatchLog(store).last()!.batchTime < batchTime, 'the failed batch is not in the batch log');
    } finally {
      store.env.close();
    }

    // Without the limit the job starts again on the same stores and serves every committed key, and none of the failed partition's in the failed batch.
    const job = await keyedJob(StateSpec.function<string, string, string, unknown>(fixture('keep-value')).numPartitions(2), { dataDir, threads: 1, startMs: Date.now() });
    try {
      const view = job.stream.store();
      for (let b = 0; b < failedBatch; b++) {
        for (let i = 0; i < 50; i++) assert.equal((view.get(`k-${b}-${i}`) as string | undefined)?.length, 20_000, `k-${b}-${i} kept`);
      }
      const lost = Array.from({ length: 50 }, (_, i) => `k-${failedBatch}-${i}`).filter((k) => murmur2Partitioner.partition(k, 2) === partition);
      assert.ok(lost.length > 0);
      for (const key of lost) assert.equal(view.get(key), undefined, `${key} of the failed batch is not in partition ${partition}`);
    } finally {
      await job.ssc.stop();
    }
  });
});
