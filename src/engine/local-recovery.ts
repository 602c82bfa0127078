import type { AnyActorRef } from 'xstate';
import { StoreMismatchError } from '../errors.js';
import { FirstFailure } from '../first-failure.js';
import type { ResolvedMappingRef } from '../actors/messages.js';
import type { WorkerSet } from '../actors/worker-set.js';
import { listSnapshots, removeIncompleteSnapshots } from '../storage/snapshots/manifest.js';
import { restoreDamagedStores, type RestoreReport } from '../storage/snapshots/restore.js';
import { recoverInterruptedSwaps } from '../storage/stream-swap.js';
import { BatchRun, type RecordPieces } from './batch.js';
import { BatchEvents, type BatchEventMap } from './batch-events.js';
import type { MapWithStateDStream } from './map-with-state-stream.js';
import type { InputStream, RecoveredBatch } from './sources/input.js';

type StateStream = MapWithStateDStream<unknown, unknown, unknown, unknown>;

/** What a local job's start-up is given: the job's streams and folder, and the context's own services. */
export interface RecoveryContext {
  dataDir: string;
  appName: string;
  /** The time of the first batch this run will generate: every recovered batch must be older. */
  firstBatch: number;
  stateStreams: readonly StateStream[];
  inputs: readonly InputStream[];
  /** A job that takes snapshots keeps its sources' history back to the oldest snapshot kept. */
  keepHistory: boolean;
  workers: WorkerSet;
  supervisor: AnyActorRef;
  readersOf(stream: StateStream): { emitOutputs: boolean; parentRead: boolean };
  checkModule(fn: ResolvedMappingRef): Promise<void>;
  emit<E extends keyof BatchEventMap>(event: E, payload: BatchEventMap[E]): void;
}

/** Partitions of a stream that are behind its newest batch. */
interface Gap {
  stream: number;
  lastBatch: number;
  behind: Array<{ partition: number; lastBatch: number | undefined }>;
}

/** What the stores hold, across the state streams: where replays begin, and what is missing where. */
interface StoresOpened {
  replayAfter: number | undefined;
  storesHoldState: boolean;
  gaps: Gap[];
}

/**
 * A local job's start-up recovery, in the order Spark's checkpoint recovery runs it: the
 * stores are settled (an interrupted reshard finished, damaged stores restored from a
 * snapshot) and opened, the sources opened from where the stores stand, and the batches the
 * stores miss rebuilt by the sources that can. Returns those batches, oldest first, for the
 * context to queue before its first live batch. On failure, whatever it opened is closed.
 */
export async function recoverLocalJob(context: RecoveryContext): Promise<BatchRun[]> {
  const opened: StateStream[] = [];
  const openedInputs: InputStream[] = [];
  try {
    removeIncompleteSnapshots(context.dataDir);
    // Every stream's interrupted swap first: a restore rolled back puts back snapshots another stream's repair may need.
    for (const stream of context.stateStreams) recoverInterruptedSwaps(context.dataDir, stream.stateIndex);
    const stores = await openStores(context, opened);
    const replays = await openInputs(context, stores, openedInputs);
    // A source's batch history is trimmed to the oldest snapshot kept: no restore goes further back.
    const oldestSnapshot = listSnapshots(context.dataDir).at(-1)?.batchTime;
    if (context.keepHistory && oldestSnapshot !== undefined) for (const input of context.inputs) await input.retainHistoryFrom?.(oldestSnapshot);
    reportGaps(context, stores.gaps);
    return replays;
  } catch (error) {
    // Each closed even when another close fails; the start's own failure is the one to report.
    const closing = new FirstFailure();
    for (const stream of opened) closing.runSync(() => stream.close());
    await Promise.all(openedInputs.map((input) => closing.run(() => input.close?.())));
    throw error;
  }
}

/** Settles and opens each state stream's stores (pushed to `opened` as they open), and checks their batch times. */
async function openStores(context: RecoveryContext, opened: StateStream[]): Promise<StoresOpened> {
  const { dataDir, firstBatch } = context;
  const result: StoresOpened = { replayAfter: undefined, storesHoldState: false, gaps: [] };
  const held: Array<{ stream: StateStream; lastBatch: number; behind: Gap['behind'] }> = [];
  for (const stream of context.stateStreams) {
    await context.checkModule(stream.spec.fn);
    const restored = await restoreDamagedStores(dataDir, stream.stateIndex);
    const recovery = openRestored(context, stream, restored);
    opened.push(stream);
    if (restored) announceRestore(context, stream, restored);
    if (recovery.lastBatch !== undefined) {
      result.storesHoldState = true;
      const oldest = recovery.behind.reduce((m, b) => (b.lastBatch !== undefined && b.lastBatch < m ? b.lastBatch : m), recovery.lastBatch);
      result.replayAfter = result.replayAfter === undefined ? oldest : Math.min(result.replayAfter, oldest);
    }
    if (recovery.lastBatch !== undefined) held.push({ stream, lastBatch: recovery.lastBatch, behind: recovery.behind });
    if (recovery.lastBatch !== undefined && recovery.lastBatch >= firstBatch) {
      throw new StoreMismatchError(
        `the stores under ${dataDir} hold batch ${recovery.lastBatch}, but this context's first batch would be at ${firstBatch}; ` +
          'batch times must move forward (start the clock later than the last batch, or use a new dataDir)',
        { lastBatch: recovery.lastBatch, firstBatch },
      );
    }
    if (recovery.initialNewest !== undefined && recovery.initialNewest >= firstBatch) {
      throw new StoreMismatchError(
        `the initial state of mapWithState stream ${stream.stateIndex} holds keys last updated at ${recovery.initialNewest}, but this context's first batch would be at ${firstBatch}; ` +
          'batch times must move forward (start the clock later than the newest lastUpdated)',
        { stream: stream.stateIndex, initialNewest: recovery.initialNewest, firstBatch },
      );
    }
  }
  // Streams apply a batch one after another: one may hold a batch another never committed (a
  // record failed in it, or the process died between them), and its partitions miss that batch.
  const newest = held.reduce((m, h) => Math.max(m, h.lastBatch), Number.NEGATIVE_INFINITY);
  for (const { stream, lastBatch, behind } of held) {
    const all = Array.from({ length: stream.numPartitions }, (_, partition) => behind.find((b) => b.partition === partition) ?? { partition, lastBatch });
    const missing = lastBatch < newest ? all : behind;
    if (missing.length > 0) result.gaps.push({ stream: stream.stateIndex, lastBatch: newest, behind: missing });
  }
  return result;
}

/**
 * Opens a stream's stores. A restore leaves its partitions at the snapshot's batch, behind
 * the others until the source replays; a rescale in the same start then finds the stores at
 * different batches, which is no half-committed batch: it says so.
 */
function openRestored(context: RecoveryContext, stream: StateStream, restored: RestoreReport | undefined): ReturnType<StateStream['open']> {
  try {
    return stream.open(context.workers, context.supervisor, context.readersOf(stream));
  } catch (error) {
    if (!restored) throw error;
    // The copies are in place whatever the open found: the restore is reported all the same.
    announceRestore(context, stream, restored);
    const had = restored.snapshot.manifest.streams.find((m) => m.stream === stream.stateIndex)?.numPartitions;
    // Only the reshard's refusals a restore can cause: partitions at different batches, or at different state versions.
    const levels = error instanceof StoreMismatchError && (error.context.lastBatches !== undefined || error.context.stateVersions !== undefined);
    if (!levels || had === undefined || had === stream.numPartitions) throw error;
    const which = restored.partitions.map((p) => p.partition);
    throw new StoreMismatchError(
      `mapWithState stream ${stream.stateIndex}: ${which.length === 1 ? `partition ${which[0]} was` : `partitions ${which.join(', ')} were`} damaged and restored from the snapshot of batch ${restored.snapshot.batchTime}, ` +
        `and this start also asks for ${stream.numPartitions} partitions where the stores have ${had}: a reshard needs every partition at the same batch and state version. ` +
        `Start once with numPartitions ${had}, so that the restored partitions catch up (a Kafka source replays the batches since the snapshot), then with ${stream.numPartitions}`,
      { stream: stream.stateIndex, snapshot: restored.snapshot.batchTime, numPartitions: stream.numPartitions, stored: had },
      error,
    );
  }
}

function announceRestore(context: RecoveryContext, stream: StateStream, restored: RestoreReport): void {
  context.emit(BatchEvents.STATE_RESTORED, {
    stream: stream.stateIndex, snapshot: restored.snapshot.batchTime, path: restored.snapshot.path, partitions: restored.partitions,
    damagedDir: restored.damagedDir, replayed: context.inputs.every((input) => input.replayable === true),
  });
}

/**
 * Opens each source (pushed to `opened` as it opens) from where the stores stand. Replayable
 * sources rebuild the batches the stores miss (the one in flight when the last run stopped,
 * and after a restore every batch since the snapshot), with their own batch times; they run
 * first, and partitions that hold a batch skip it.
 */
async function openInputs(context: RecoveryContext, stores: StoresOpened, opened: InputStream[]): Promise<BatchRun[]> {
  const { dataDir, appName, firstBatch, inputs } = context;
  const recovered = new Map<number, Map<number, RecoveredBatch['take']>>();
  const ended = new Set<number>();
  for (const input of inputs) {
    opened.push(input);
    const batches =
      (await input.open?.({
        dataDir, appName, replayAfter: stores.replayAfter, hasStateStreams: context.stateStreams.length > 0, storesHoldState: stores.storesHoldState,
        keepHistory: context.keepHistory, sweepsIdleKeys: context.stateStreams.some((s) => s.spec.getTimeout() !== null), announce: (event, payload) => context.emit(event, payload),
      })) ?? [];
    for (const batch of batches) {
      if (batch.batchTime >= firstBatch) {
        throw new StoreMismatchError(`the batch recorded at ${batch.batchTime} is not before this context's first batch at ${firstBatch}; batch times must move forward`, { recorded: batch.batchTime, firstBatch });
      }
      if (!recovered.has(batch.batchTime)) recovered.set(batch.batchTime, new Map());
      recovered.get(batch.batchTime)!.set(input.id, batch.take);
      if (batch.ended) ended.add(batch.batchTime);
    }
  }
  // Sources record a batch's end one after the other, after its outputs ran: a crash between
  // two leaves it in flight for some. Its outputs must not run again without the others' records.
  for (const input of inputs) {
    const through = input.endedThrough?.();
    if (through !== undefined) for (const time of recovered.keys()) if (time <= through) ended.add(time);
  }
  return [...recovered.keys()]
    .sort((a, b) => a - b)
    .map((time) => {
      // Each source's records are taken as the batch is about to run, in batch order.
      const pieces = new Map<number, RecordPieces>(inputs.map((input) => [input.id, []]));
      const takes = recovered.get(time)!;
      return new BatchRun(time, pieces, ended.has(time) ? 'replay' : 'in-flight', async () => {
        for (const [id, take] of takes) pieces.set(id, [await take()]);
      });
    });
}

/** What no source can rebuild is lost for the partitions that miss it: say which. */
function reportGaps(context: RecoveryContext, gaps: readonly Gap[]): void {
  if (context.inputs.every((input) => input.replayable === true)) return;
  for (const gap of gaps) {
    const message =
      `stream ${gap.stream}: ` +
      gap.behind.map((b) => `partition ${b.partition} holds ${b.lastBatch === undefined ? 'no batch' : `batch ${b.lastBatch}`}`).join(', ') +
      `; the batches after that up to ${gap.lastBatch} cannot be replayed by a queue source and are missing from those partitions' state`;
    context.emit(BatchEvents.RECOVERY_INCOMPLETE, { ...gap, message });
  }
}
