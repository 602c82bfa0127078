import { assign, fromPromise, setup, type ActorRefFrom } from 'xstate';
import type { Partitioner } from '../engine/partitioner.js';
import type { EncodedOutputs } from '../storage/partition/batch-outputs.js';
import type { ApplyDone } from './messages.js';
import type { partitionMachine } from './partition.machine.js';
import type { ChunkedShard } from './chunked-shard.js';

export type PartitionRef = ActorRefFrom<typeof partitionMachine>;

/** The outcome of one batch of one mapWithState stream: what each partition reported, and its mapped records. */
export interface RoutedBatch {
  partitions: ApplyDone[];
  /** Per partition, its mapped records as its worker sent them: decoded only when an output operation reads them (decodeBatchOutputs). */
  outputs: EncodedOutputs[];
}

/** A batch's shards, one per partition, arriving in chunks (see ShardBuilder), and each one's distinct keys (whole once the last chunks are out). */
export interface Shards {
  chunked: ChunkedShard[];
  keys: unknown[][];
}

export interface RouteJob {
  batchTime: number;
  /** One shard per partition (see ShardBuilder). */
  shards: Shards;
  resolve(result: RoutedBatch): void;
  reject(error: unknown): void;
}

export interface RouterInput {
  stream: number;
  partitions: PartitionRef[];
  partitioner: Partitioner;
}

interface RouterContext extends RouterInput {
  job: RouteJob | undefined;
}

type RouterEvent = { type: 'ROUTE'; job: RouteJob };

/**
 * The router actor of one mapWithState stream: it hands each partition actor its shard of
 * a batch (sharded by key hash on the main thread, see ShardBuilder; its chunks reach the
 * workers while the rest is routed), and reports once every partition has committed, with
 * each partition's mapped records as its worker encoded them.
 *
 *   idle ──ROUTE──▶ applying ──▶ idle
 *                      └─error─▶ idle (the batch fails; partitions that committed it skip it when it runs again)
 */
export const routerMachine = setup({
  types: { context: {} as RouterContext, events: {} as RouterEvent, input: {} as RouterInput },
  actors: {
    apply: fromPromise<RoutedBatch, { context: RouterContext }>(async ({ input: { context } }) => {
      const job = context.job!;
      const settled = await Promise.allSettled(
        context.partitions.map(
          (partition, p) =>
            new Promise<ApplyDone>((resolve, reject) => {
              partition.send({ type: 'APPLY', batch: { batchTime: job.batchTime, shard: job.shards.chunked[p], resolve, reject } });
            }),
        ),
      );
      // Wait for every partition before failing, so that no partition is still applying
      // this batch when the next one (or a restart) begins.
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      const partitions = settled.map((s) => (s as PromiseFulfilledResult<ApplyDone>).value);
      // A replayed batch's records were recorded with their own keys: they decode with those.
      return { partitions, outputs: partitions.map((done, p) => ({ bytes: done.outputs, keys: done.replayed ? undefined : job.shards.keys[p] })) };
    }),
  },
  actions: {
    fail: ({ context, event }) => context.job!.reject((event as unknown as { error: unknown }).error),
    clear: assign({ job: undefined }),
  },
}).createMachine({
  id: 'router',
  context: ({ input }) => ({ ...input, job: undefined }),
  initial: 'idle',
  states: {
    idle: { on: { ROUTE: { target: 'applying', actions: assign({ job: ({ event }) => event.job }) } } },
    applying: {
      invoke: {
        src: 'apply',
        input: ({ context }) => ({ context }),
        onDone: { target: 'idle', actions: [({ context, event }) => context.job!.resolve(event.output), 'clear'] },
        onError: { target: 'idle', actions: ['fail', 'clear'] },
      },
    },
  },
});
