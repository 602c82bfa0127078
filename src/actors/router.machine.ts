import { assign, fromPromise, setup, type ActorRefFrom } from 'xstate';
import type { Partitioner } from '../engine/partitioner.js';
import { messageCodec } from '../storage/codec.js';
import type { ApplyDone, InitialEntry } from './messages.js';
import type { partitionMachine } from './partition.machine.js';
import { encodeShards } from './shard-encoder.js';

export type PartitionRef = ActorRefFrom<typeof partitionMachine>;

/** The outcome of one batch of one mapWithState stream. */
export interface RoutedBatch {
  outputs: unknown[];
  partitions: ApplyDone[];
}

export interface RouteJob {
  batchTime: number;
  /** [key, value] records after the stream's map/flatMap/filter. */
  records: readonly unknown[];
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
  shards: Uint8Array[];
}

type RouterEvent = { type: 'ROUTE'; job: RouteJob };

/**
 * The router actor of one mapWithState stream: it shards a batch's records by key hash,
 * hands each partition actor its encoded shard, and gathers the mapped records in
 * partition order once every partition has committed.
 *
 *   idle ──ROUTE──▶ sharding ──▶ applying ──▶ idle
 *                      └──────error──────────▶ idle (the batch fails, nothing committed by this router)
 */
export const routerMachine = setup({
  types: { context: {} as RouterContext, events: {} as RouterEvent, input: {} as RouterInput },
  actors: {
    shard: fromPromise<Uint8Array[], { context: RouterContext }>(async ({ input: { context } }) => {
      const job = context.job!;
      return encodeShards(job.records, context.partitions.length, context.partitioner, { batchTime: job.batchTime, stream: context.stream }, job.initialState);
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
      const partitions = settled.map((s) => (s as PromiseFulfilledResult<ApplyDone>).value);
      const outputs: unknown[] = [];
      for (const done of partitions) {
        const mapped = messageCodec.unpack(done.outputs) as unknown[];
        for (let i = 0; i < mapped.length; i++) outputs.push(mapped[i]);
      }
      return { outputs, partitions };
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
