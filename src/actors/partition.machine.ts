import { assign, fromPromise, sendTo, setup, type AnyActorRef } from 'xstate';
import { PoisonRecordError, WorkerCrashError, deserializeError, serializeError } from '../errors.js';
import { readReply, type ApplyDone, type ApplyPrepared, type ApplyResult, type ApplyTask, type CommitTask, type ResolvedMappingRef, type WorkerReply } from './messages.js';
import type { WorkerSet } from './worker-set.js';
import type { ChunkedShard } from './chunked-shard.js';

/** Numbers the attempts at batches, so a worker can tell the chunks of an abandoned attempt. */
let attempts = 0;

/**
 * The second phase of a held batch: the caller's word (its meta records, or a refusal),
 * then the worker commits or drops it. A refusal fails the batch, named by its error.
 */
async function commitPrepared(context: PartitionContext, batchTime: number, attempt: number, prepared: ApplyPrepared): Promise<ApplyResult> {
  let meta: Record<string, unknown> | undefined;
  let refusal: unknown;
  try {
    meta = await context.beforeCommit!(prepared, batchTime);
  } catch (error) {
    refusal = error;
  }
  const task: CommitTask = {
    op: 'commit', storePath: context.storePath, partition: context.partition, incarnation: context.incarnation, cacheEntries: context.workers.cacheEntriesOf(context.worker),
    fn: context.fn, batchTime, attempt, meta,
  };
  const result = readReply<ApplyResult>(await context.workers.run<WorkerReply>(context.worker, task));
  if (refusal !== undefined) return { status: 'batch-failed', error: serializeError(refusal) };
  // The thread that prepared it died and a fresh one holds nothing: a replay, as for a crash.
  if (result.status === 'stale') throw new Error(`the worker that prepared partition ${context.partition}'s batch ${batchTime} was replaced before it committed`);
  return result;
}

/** One batch for one partition, as the router hands it over. */
export interface PartitionBatch {
  batchTime: number;
  /** The shard, arriving in chunks; kept on the main thread so a retry or a restarted worker can replay it. */
  shard: ChunkedShard;
  resolve(result: ApplyDone): void;
  reject(error: Error): void;
}

export interface PartitionInput {
  stream: number;
  partition: number;
  storePath: string;
  fn: ResolvedMappingRef;
  timeoutMs: number | null;
  policy: 'stop' | 'dead-letter';
  maxAttempts: number;
  /** The worker threads, and the one this partition is pinned to. */
  workers: WorkerSet;
  worker: number;
  /** This opening of the stores (see ApplyTask.incarnation). */
  incarnation: string;
  /** Whether an output operation reads the mapped records. */
  emitOutputs: boolean;
  /**
   * Two-phase batches (a cluster's partitions): called with a batch's changes once the worker
   * has prepared it, before it commits; resolves with meta records to commit beside the state
   * (positions, marks), or rejects to drop the batch (ownership lost, the changelog not written).
   */
  beforeCommit?: (prepared: ApplyPrepared, batchTime: number) => Promise<Record<string, unknown>>;
  supervisor: AnyActorRef;
  /** Reads the partition's last committed batch time from its store (main-thread handle). */
  lastCommitted: () => number | undefined;
}

interface PartitionContext extends PartitionInput {
  batch: PartitionBatch | undefined;
  /** Failed attempts per record position in this batch. */
  attempts: Record<number, number>;
  deadLetters: ApplyTask['deadLetters'];
  crashes: number;
}

export type PartitionEvent =
  | { type: 'APPLY'; batch: PartitionBatch }
  | { type: 'RESTORE' }
  | { type: 'GIVE_UP'; error: Error };

type Failed = Extract<ApplyResult, { status: 'record-failed' }>;

/** The output of the applyShard invocation carried by a done event. */
function outputOf(event: unknown): ApplyResult {
  return (event as { output: ApplyResult }).output;
}

function asFailed(output: unknown): Failed {
  return output as Failed;
}

function describeKey(key: unknown): string {
  try {
    return JSON.stringify(key) ?? String(key);
  } catch {
    return String(key);
  }
}

/**
 * The main-thread side of a partition actor. Its work (apply the shard, commit) runs on a
 * Piscina worker; this machine owns the retries: a record that throws is retried, then
 * dead-lettered or reported as poison; a worker that dies is reported to the supervisor,
 * which decides (its restart policy) whether the partition restores and replays.
 *
 *   idle ──APPLY──▶ applying ──ok──▶ idle
 *                     │  └─record failed─▶ applying (retry | dead-letter) or idle (poison)
 *                     └─worker died──▶ failed ──RESTORE──▶ restoring ──▶ applying
 *                                         └────GIVE_UP───▶ idle (batch fails)
 */
export const partitionMachine = setup({
  types: {
    context: {} as PartitionContext,
    events: {} as PartitionEvent,
    input: {} as PartitionInput,
  },
  actors: {
    // The thread's death while the batch is under way, between its tasks too, is the batch's to handle (a crash, replayed).
    applyShard: fromPromise<ApplyResult, { context: PartitionContext }>(({ input: { context } }) => context.workers.during(context.worker, () => {
      const batch = context.batch!;
      const attempt = ++attempts;
      const replies: Array<Promise<ApplyResult>> = [];
      return new Promise<ApplyResult>((resolve, reject) => {
        batch.shard.follow({
          // Each chunk goes to the worker as soon as it exists (the router may still be
          // routing the rest of the batch); the worker takes them in order.
          chunk: ({ bytes, last }, index) => {
            // Shared, not transferred: a worker that dies with it leaves it whole for the replay.
            const task: ApplyTask = {
              op: 'apply', storePath: context.storePath, partition: context.partition, batchTime: batch.batchTime,
              attempt, chunk: index, last, timeoutMs: context.timeoutMs, fn: context.fn, shard: bytes.buffer as SharedArrayBuffer,
              deadLetters: index === 0 ? context.deadLetters : [], incarnation: context.incarnation,
              cacheEntries: context.workers.cacheEntriesOf(context.worker), emitOutputs: context.emitOutputs,
              hold: context.beforeCommit !== undefined,
            };
            replies.push(context.workers.run<WorkerReply>(context.worker, task).then((reply) => readReply<ApplyResult>(reply)));
            if (!last) return;
            // A worker that died rejects its chunks: the supervisor decides about a replay.
            Promise.all(replies)
              .then((results) => {
                const outcome = results.find((r) => r.status === 'record-failed' || r.status === 'batch-failed') ?? results.at(-1)!;
                // Its thread died between the chunks: Piscina rejects only the tasks in flight on
                // it, and a chunk still queued ran on the fresh thread, which holds nothing of the
                // attempt. A replay, as for a crash.
                if (outcome.status === 'stale') throw new Error(`the worker applying partition ${context.partition}'s batch ${batch.batchTime} was replaced between its chunks`);
                return outcome.status === 'prepared' ? commitPrepared(context, batch.batchTime, attempt, outcome) : outcome;
              })
              .then(resolve, reject);
          },
          // The batch could not be sharded (a record that is no pair, a bad key): it fails, named.
          failed: (error) => void Promise.allSettled(replies).then(() => resolve({ status: 'batch-failed', error: serializeError(error) })),
        });
      });
    })),
    // The dead attempt's transaction never committed: the store is at its last commit, which
    // the replay starts from (or skips to, if the attempt died after committing).
    restore: fromPromise<number | undefined, { context: PartitionContext }>(async ({ input: { context } }) => context.lastCommitted()),
  },
  guards: {
    succeeded: ({ event }) => outputOf(event).status === 'ok',
    batchFailed: ({ event }) => outputOf(event).status === 'batch-failed',
    recordMayRetry: ({ context, event }) => {
      const failed = asFailed(outputOf(event));
      return (context.attempts[failed.index] ?? 0) + 1 < context.maxAttempts;
    },
    deadLetterPolicy: ({ context }) => context.policy === 'dead-letter',
  },
  actions: {
    startBatch: assign(({ event }) => ({
      batch: (event as Extract<PartitionEvent, { type: 'APPLY' }>).batch,
      attempts: {},
      deadLetters: [],
      crashes: 0,
    })),
    resolveBatch: ({ context, event }) => context.batch!.resolve(outputOf(event) as ApplyDone),
    countAttempt: assign(({ context, event }) => {
      const failed = asFailed(outputOf(event));
      return { attempts: { ...context.attempts, [failed.index]: (context.attempts[failed.index] ?? 0) + 1 } };
    }),
    addDeadLetter: assign(({ context, event }) => {
      const failed = asFailed(outputOf(event));
      const attempts = (context.attempts[failed.index] ?? 0) + 1;
      return { deadLetters: [...context.deadLetters, { index: failed.index, attempts, error: failed.error }] };
    }),
    rejectPoison: ({ context, event }) => {
      const failed = asFailed(outputOf(event));
      const cause = deserializeError(failed.error);
      const attempts = (context.attempts[failed.index] ?? 0) + 1;
      const what = failed.timingOut ? `the timeout call for key ${describeKey(failed.key)}` : `key ${describeKey(failed.key)} (record ${failed.index} of the shard)`;
      context.batch!.reject(
        new PoisonRecordError(
          `the mapping function failed ${attempts} time(s) on ${what} in partition ${context.partition} of mapWithState stream ${context.stream}, batch ${context.batch!.batchTime}: ${cause.message}`,
          { stream: context.stream, partition: context.partition, batchTime: context.batch!.batchTime, key: failed.key, index: failed.index, timingOut: failed.timingOut, attempts },
          cause,
        ),
      );
    },
    rejectBatchFailed: ({ context, event }) => {
      context.batch!.reject(deserializeError((outputOf(event) as Extract<ApplyResult, { status: 'batch-failed' }>).error));
    },
    reportCrash: sendTo(
      ({ context }) => context.supervisor,
      ({ context, event, self }) => ({
        type: 'PARTITION_CRASHED',
        stream: context.stream,
        partition: context.partition,
        batchTime: context.batch!.batchTime,
        crashes: context.crashes + 1,
        error: (event as unknown as { error: unknown }).error,
        ref: self,
      }),
    ),
    countCrash: assign(({ context }) => ({ crashes: context.crashes + 1 })),
    rejectCrash: ({ context, event }) => {
      const error = (event as Extract<PartitionEvent, { type: 'GIVE_UP' }>).error;
      context.batch!.reject(
        new WorkerCrashError(
          `the worker applying partition ${context.partition} of mapWithState stream ${context.stream} in batch ${context.batch!.batchTime} died ${context.crashes} time(s); the restart limit is reached: ${error.message}`,
          { stream: context.stream, partition: context.partition, batchTime: context.batch!.batchTime, crashes: context.crashes },
          error,
        ),
      );
    },
    clearBatch: assign({ batch: undefined }),
  },
}).createMachine({
  id: 'partition',
  context: ({ input }) => ({ ...input, batch: undefined, attempts: {}, deadLetters: [], crashes: 0 }),
  initial: 'idle',
  states: {
    idle: {
      on: { APPLY: { target: 'applying', actions: 'startBatch' } },
    },
    applying: {
      invoke: {
        src: 'applyShard',
        input: ({ context }) => ({ context }),
        onDone: [
          { guard: 'succeeded', target: 'idle', actions: ['resolveBatch', 'clearBatch'] },
          { guard: 'batchFailed', target: 'idle', actions: ['rejectBatchFailed', 'clearBatch'] },
          { guard: 'recordMayRetry', target: 'applying', reenter: true, actions: 'countAttempt' },
          { guard: 'deadLetterPolicy', target: 'applying', reenter: true, actions: 'addDeadLetter' },
          { target: 'idle', actions: ['rejectPoison', 'clearBatch'] },
        ],
        onError: { target: 'failed', actions: ['reportCrash', 'countCrash'] },
      },
    },
    failed: {
      on: {
        RESTORE: 'restoring',
        GIVE_UP: { target: 'idle', actions: ['rejectCrash', 'clearBatch'] },
      },
    },
    restoring: {
      invoke: {
        src: 'restore',
        input: ({ context }) => ({ context }),
        onDone: 'applying',
        onError: { target: 'idle', actions: [({ context, event }) => context.batch!.reject(event.error as Error), 'clearBatch'] },
      },
    },
  },
});
