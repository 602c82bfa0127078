import { assign, fromPromise, sendTo, setup, type AnyActorRef } from 'xstate';
import { asError } from '../errors.js';

export interface PartitionCrashed {
  type: 'PARTITION_CRASHED';
  stream: number;
  partition: number;
  batchTime: number;
  /** Crashes of this partition within the current batch, this one included. */
  crashes: number;
  error: unknown;
  ref: AnyActorRef;
}

export type SupervisorEvent =
  | { type: 'START' }
  | { type: 'STOP' }
  | { type: 'FAIL'; error: Error }
  /** stop() ran out of time and terminates the threads: a partition whose thread goes is not restarted. */
  | { type: 'CUT' }
  | PartitionCrashed;

export interface SupervisorInput {
  /** Worker restarts allowed per partition per batch before the batch fails. */
  maxRestarts: number;
  onRestart: (crash: PartitionCrashed) => void;
}

interface SupervisorContext extends SupervisorInput {
  restarts: number;
  error: Error | undefined;
  /** What failed while stopping (the job's own failure, if any, stays in `error`). */
  shutdownError: Error | undefined;
}

/**
 * The context's lifecycle and the restart policy for partition actors:
 *
 *   idle ──START──▶ starting ──▶ running ──STOP──▶ stopping ──▶ stopped
 *                      └─error─▶ failed ◀──FAIL──┘        failed ──STOP──▶ stopping
 *                                                 running ──CUT──▶ cut ──STOP──▶ stopping
 *
 * In `running`, a partition whose worker died is told to restore and replay while
 * `withinRestartBudget` holds, and to give up (failing its batch) once it does not.
 * `startup` and `shutdown` are provided by the StreamingContext.
 */
export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
  },
  actors: {
    startup: fromPromise<void>(async () => {
      throw new Error('supervisor: startup must be provided');
    }),
    shutdown: fromPromise<void>(async () => {
      throw new Error('supervisor: shutdown must be provided');
    }),
  },
  guards: {
    withinRestartBudget: ({ context, event }) => (event as PartitionCrashed).crashes <= context.maxRestarts,
  },
  actions: {
    countRestart: assign({ restarts: ({ context }) => context.restarts + 1 }),
    restorePartition: sendTo(({ event }) => (event as PartitionCrashed).ref, { type: 'RESTORE' }),
    announceRestart: ({ context, event }) => context.onRestart(event as PartitionCrashed),
    giveUp: sendTo(
      ({ event }) => (event as PartitionCrashed).ref,
      ({ event }) => {
        const { error } = event as PartitionCrashed;
        return { type: 'GIVE_UP', error: asError(error, `partition ${(event as PartitionCrashed).partition}`) };
      },
    ),
    recordError: assign({ error: ({ event }) => (event as { error: Error }).error }),
  },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({ ...input, restarts: 0, error: undefined, shutdownError: undefined }),
  initial: 'idle',
  states: {
    idle: { on: { START: 'starting' } },
    starting: {
      invoke: {
        src: 'startup',
        onDone: 'running',
        onError: { target: 'failed', actions: assign({ error: ({ event }) => event.error as Error }) },
      },
    },
    running: {
      on: {
        PARTITION_CRASHED: [
          { guard: 'withinRestartBudget', actions: ['countRestart', 'restorePartition', 'announceRestart'] },
          { actions: 'giveUp' },
        ],
        FAIL: { target: 'failed', actions: 'recordError' },
        STOP: 'stopping',
        CUT: 'cut',
      },
    },
    // The threads are being terminated under the batches still applying: those fail.
    cut: {
      on: {
        PARTITION_CRASHED: { actions: 'giveUp' },
        FAIL: { actions: 'recordError' },
        STOP: 'stopping',
      },
    },
    failed: {
      on: {
        // A crash reported while the context fails must still release the batch waiting on it.
        PARTITION_CRASHED: { actions: 'giveUp' },
        STOP: 'stopping',
      },
    },
    stopping: {
      invoke: { src: 'shutdown', onDone: 'stopped', onError: { target: 'stopped', actions: assign({ shutdownError: ({ event }) => event.error as Error }) } },
      on: { PARTITION_CRASHED: { actions: 'giveUp' } },
    },
    stopped: { type: 'final' },
  },
});
