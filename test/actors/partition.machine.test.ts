import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor, fromCallback } from 'xstate';
import { ChunkedShard } from '../../src/actors/chunked-shard.js';
import type { ApplyResult, ApplyTask, WorkerReply } from '../../src/actors/messages.js';
import { partitionMachine } from '../../src/actors/partition.machine.js';
import type { WorkerSet } from '../../src/actors/worker-set.js';
import { messageViews } from '../../src/storage/codec.js';
import { within } from '../wait.js';

describe('partition machine', () => {
  /**
   * The threads answer the chunks as `answers` says, packed as a worker packs them. The real
   * case: a thread dies (another partition's mapping function exits) after it applied this
   * partition's first chunk, while the last one still waits in Piscina's queue behind more than
   * the 1024 tasks a thread takes at once. Piscina rejects only the tasks in flight, so the last
   * chunk runs on the fresh thread, which holds nothing of the attempt and answers "stale".
   */
  function partition(answers: ApplyResult[], maxAttempts: number) {
    const heard: Array<{ type: string; crashes?: number }> = [];
    const supervisor = createActor(fromCallback(({ receive }) => receive((e) => void heard.push(e as never)))).start();
    const tasks: ApplyTask[] = [];
    const workers = {
      cacheEntriesOf: () => 100,
      during: <T>(_worker: number, batch: () => Promise<T>) => batch(),
      run: async (_worker: number, task: ApplyTask): Promise<WorkerReply> => {
        tasks.push(task);
        const packed = messageViews.pack(answers[task.chunk]);
        return { packed: packed.buffer.slice(packed.byteOffset, packed.byteOffset + packed.byteLength) as ArrayBuffer };
      },
    } as unknown as WorkerSet;
    const actor = createActor(partitionMachine, {
      input: {
        stream: 0, partition: 3, storePath: '/nowhere/partition-0003', fn: { kind: 'module', specifier: 'unused' } as never, timeoutMs: null, policy: 'stop',
        maxAttempts, workers, worker: 0, incarnation: 'test', emitOutputs: false, supervisor, lastCommitted: () => undefined,
      },
    }).start();
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    return { actor, heard, tasks, uncaught, done: () => process.off('uncaughtException', onUncaught) };
  }

  for (const maxAttempts of [1, 3]) {
    it(`a last chunk answered "stale" (its thread was replaced between the chunks) is a crash the supervisor hears of, not a failed record (maxAttempts ${maxAttempts})`, async () => {
      const p = partition([{ status: 'chunk-ok' }, { status: 'stale' }], maxAttempts);
      try {
        const shard = new ChunkedShard();
        let settled: string | undefined;
        p.actor.send({ type: 'APPLY', batch: { batchTime: 1000, shard, resolve: () => (settled = 'resolved'), reject: (e) => (settled = `rejected: ${e.message}`) } });
        shard.push(new Uint8Array(8), false);
        shard.push(new Uint8Array(8), true);
        await within(
          new Promise<void>((resolve) => {
            const check = setInterval(() => (p.heard.length > 0 || settled || p.uncaught.length > 0) && (clearInterval(check), resolve()), 5);
          }),
          'the partition to report the batch',
        );
        assert.deepEqual(p.uncaught, [], 'nothing thrown out of the machine');
        assert.equal(settled, undefined, 'the batch waits for the supervisor: a replay, not a poison record');
        assert.deepEqual(p.heard.map((e) => [e.type, e.crashes]), [['PARTITION_CRASHED', 1]]);
        assert.ok(p.actor.getSnapshot().matches('failed'));
        assert.deepEqual(p.actor.getSnapshot().context.attempts, {}, 'no record counted as failing');
        assert.equal(p.tasks.length, 2, 'no retry was sent');
      } finally {
        p.done();
        p.actor.stop();
      }
    });
  }
});
