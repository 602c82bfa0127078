import { assign, fromPromise, setup, type ActorRefFrom } from 'xstate';
import type { Partitioner } from '../engine/partitioner.js';
import type { ApplyDone, InitialEntry } from './messages.js';
import type { partitionMachine } from './partition.machine.js';
import { encodeShards } from './shard-encoder.js';

export type PartitionRef = ActorRefFrom<typeof partitionMachine>;

/** The outcome of one batch of one mapWithState stream: what each partition reported, its encoded outputs included. */
export interface RoutedBatch {
  partitions: ApplyDone[];
}

/** A batch's shards, one per partition, encoded ahead of the batch (see ShardPlan). */
export type Shards = Uint8Array[];

export interface RouteJob {
  batchTime: number;
  /** The batch's shards when they were encoded ahead; otherwise `records` are sharded now. */
  shards?: Shards;
  /** [key, value] records after the stream's map/flatMap/filter. */
  records?: readonly unknown[];
  /** Initial state per partition, for partitions whose store holds no batch yet. */
  initialState?: InitialEntry[][];
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
  shards: Shards;
}

type RouterEvent = { type: 'ROUTE'; job: RouteJob };

/** Shards a batch's records for a router's partitions: the main-thread work that may run ahead of the batch. */
export function shardBatch(input: RouterInput, batchTime: number, records: readonly unknown[], initialState?: InitialEntry[][]): Shards {
  return encodeShards(records, input.partitions.length, input.partitioner, { batchTime, stream: input.stream }, initialState);
}

/**
 * The router actor of one mapWithState stream: it shards a batch's records by key hash
 * (unless they were sharded ahead), hands each partition actor its shard, and gathers
 * what the partitions report once every one of them has committed.
 *
 *   idle ──ROUTE──▶ sharding ──▶ applying ──▶ idle
 *                      └──────error──────────▶ idle (the batch fails, nothing committed by this router)
 */
export const routerMachine = setup({
  types: { context: {} as RouterContext, events: {} as RouterEvent, input: {} as RouterInput },
  actors: {
    shard: fromPromise<Shards, { context: RouterContext }>(async ({ input: { context } }) => {
      const job = context.job!;
      return job.shards ?? shardBatch(context, job.batchTime, job.records ?? [], job.initialState);
    }),
    apply: fromPromise<RoutedBatch, { context: RouterContext }>(async ({ input: { context } }) => {
      const job = context.job!;
      const settled = await Promise.allSettled(
        context.partitions.map(
          (partition, p) =>
            new Promise<ApplyDone>((resolve, reject) => {
              partition.send({ type: 'APPLY', batch: { batchTime: job.batchTime, shard: context.shards[p], resolve, reject } });
            }),
        ),
      );
      // Wait for every partition before failing, so that no partition is still applying
      // this batch when the next one (or a restart) begins.
      const failed = settled.find((s) => s.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return { partitions: settled.map((s) => (s as PromiseFulfilledResult<ApplyDone>).value) };
    }),
  },
  actions: {
    fail: ({ context, event }) => context.job!.reject((event as unknown as { error: unknown }).error),
    clear: assign({ job: undefined, shards: [] }),
  },
}).createMachine({
  id: 'router',
  context: ({ input }) => ({ ...input, job: undefined, shards: [] }),
  initial: 'idle',
  states: {
    idle: { on: { ROUTE: { target: 'sharding', actions: assign({ job: ({ event }) => event.job }) } } },
    sharding: {
      invoke: {
        src: 'shard',
        input: ({ context }) => ({ context }),
        onDone: { target: 'applying', actions: assign({ shards: ({ event }) => event.output }) },
        onError: { target: 'idle', actions: ['fail', 'clear'] },
      },
    },
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
