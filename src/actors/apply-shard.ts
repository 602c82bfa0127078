import { performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { serializeError } from '../errors.js';
import { StateHandle } from '../engine/state.js';
import { assertEncodable } from '../storage/codec.js';
import { BatchCache, type Slot } from '../storage/partition/batch-cache.js';
import { BatchLog } from '../storage/partition/batch-log.js';
import { DeadLetterStore } from '../storage/partition/dead-letters.js';
import { TimeIndex } from '../storage/partition/time-index.js';
import type { ApplyResult, ApplyTask, InitialEntry } from './messages.js';
import { NO_OUTPUTS, OutputWriter } from '../storage/partition/batch-outputs.js';
import { readShard } from './shard-format.js';
import type { WorkerPartition } from './worker-partitions.js';
import { compareKeys, type Key } from 'lmdb';

export type MappingFunction = (time: number, key: unknown, value: unknown, state: StateHandle<unknown>) => unknown;

class RecordFailure {
  constructor(readonly index: number, readonly key: unknown, readonly value: unknown, readonly timingOut: boolean, readonly error: unknown) {}
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * Keys idle since before `threshold`: those in the store's time index, then initial keys
 * loaded in this batch with an old lastUpdated (from a StateSource) that no record touched,
 * oldest first as the index orders them. The index cannot hold the latter: they reach the
 * store with this batch's commit.
 */
function* idleKeys(index: TimeIndex, threshold: number, cache: BatchCache<unknown>, initial: InitialEntry[] | undefined): Generator<[time: number, key: unknown, loaded: boolean]> {
  for (const [time, key] of index.olderThan(threshold)) yield [time, key, false];
  if (!initial) return;
  const idle: Array<[number, unknown, boolean]> = [];
  for (const [key] of initial) {
    // A record for the key in this batch moved its time to the batch's; a removal dropped it.
    const time = cache.get(key)?.[1];
    if (time !== undefined && time < threshold) idle.push([time, key, true]);
  }
  // A key listed twice in the source is one key: time it out once.
  const seen = new Set<string>();
  idle.sort((a, b) => a[0] - b[0] || compareKeys(a[1] as Key, b[1] as Key));
  for (const entry of idle) {
    const id = JSON.stringify(entry[1]);
    if (seen.has(id)) continue;
    seen.add(id);
    yield entry;
  }
}

/**
 * One batch of one partition, Spark's MapWithStateRDDRecord.updateRecordWithData: each
 * record sees the state its predecessors left, then idle keys are swept, then everything
 * (state, time index, batch id, outputs, dead letters) commits in one LMDB transaction.
 * A failure anywhere before the commit leaves the store as the last batch left it, and the
 * partition's memory as the store.
 */
export async function applyShard(partition: WorkerPartition, fn: MappingFunction, task: ApplyTask): Promise<ApplyResult> {
  const started = performance.now();
  const { store, memory } = partition;
  // The batch log is the truth: what this worker remembers must be of the batch it names.
  store.env.resetReadTxn();
  const log = new BatchLog(store);
  const last = log.last();
  if (partition.batch !== last?.batchTime) {
    memory.clear();
    partition.batch = last?.batchTime;
  }
  memory.checkComplete();
  if (last && last.batchTime >= task.batchTime) {
    return {
      status: 'ok', outputs: last.batchTime === task.batchTime ? last.outputs : NO_OUTPUTS,
      recordsApplied: 0, keysTimedOut: 0, keyCount: last.keyCount, replayed: true, applyMs: 0, commitMs: 0,
      memoryHits: 0, storeReads: 0, memoryEntries: memory.size, thread: threadId,
    };
  }

  const { refs, keys, values, initialState, keysBytes } = readShard(task.shard);
  const { batchTime } = task;
  const index = new TimeIndex(store);
  const sweeping = task.timeoutMs !== null;
  const cache = new BatchCache<unknown>(memory, sweeping ? index : undefined);
  const skipped = new Map(task.deadLetters.map((d) => [d.index, d]));
  const state = new StateHandle<unknown>();
  const emit = task.emitOutputs;
  const outputs = new OutputWriter();
  const letters = new DeadLetterStore(store);
  const lettersToWrite: Parameters<DeadLetterStore['add']>[0][] = [];
  const { hits, misses } = memory;

  const initial = !last ? initialState : undefined;
  if (initial) {
    for (const [key, state, lastUpdated] of initial) cache.put(key, state, lastUpdated ?? batchTime);
  }

  const call = async (i: number, key: unknown, value: unknown, timingOut: boolean): Promise<unknown> => {
    try {
      const out = fn(batchTime, key, value, state);
      return isThenable(out) ? await out : out;
    } catch (error) {
      throw new RecordFailure(i, key, value, timingOut, error);
    }
  };

  try {
    let applied = 0;
    // The working-set slot of each distinct key, found once: records name their key by index.
    const slots: Array<Slot<unknown> | undefined> = new Array(keys.length);
    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i];
      const slot = slots[ref] ?? (slots[ref] = initial ? cache.slot(keys[ref]) : cache.fresh(keys[ref]));
      const key = slot.key;
      if (skipped.size > 0 && skipped.has(i)) {
        lettersToWrite.push({ batchTime, partition: task.partition, index: i, key, value: values[i], timingOut: false, attempts: skipped.get(i)!.attempts, error: skipped.get(i)!.error });
        // It is still a record for its key: the key's time moves, as it would have.
        if (sweeping && slot.exists) cache.putSlot(slot, slot.state, batchTime);
        continue;
      }
      state.wrap(key, slot.state, slot.exists);
      let mapped: unknown;
      try {
        mapped = fn(batchTime, key, values[i], state);
        if (isThenable(mapped)) mapped = await mapped;
      } catch (error) {
        throw new RecordFailure(i, key, values[i], false, error);
      }
      if (state.isRemoved()) cache.removeSlot(slot);
      else if (state.isUpdated() || (sweeping && state.exists())) cache.putSlot(slot, state.getOption(), batchTime);
      if (emit && mapped !== undefined) outputs.push(mapped, key, ref);
      applied++;
    }

    let timedOut = 0;
    if (sweeping) {
      const threshold = batchTime - task.timeoutMs!;
      // Timeout calls are numbered after the records, for retries and dead letters.
      let i = refs.length;
      for (const [, key, loaded] of idleKeys(index, threshold, cache, initial)) {
        // A key with a record in this batch is in the working set with a fresh time.
        if (!loaded && cache.has(key)) continue;
        const entry = cache.get(key)!;
        const position = i++;
        const letter = skipped.get(position);
        if (letter) {
          lettersToWrite.push({ batchTime, partition: task.partition, index: position, key, value: undefined, timingOut: true, state: entry[0], attempts: letter.attempts, error: letter.error });
        } else {
          state.wrapTimingOut(key, entry[0]);
          const out = await call(position, key, undefined, true);
          if (emit && out !== undefined) outputs.push(out, key, undefined);
        }
        cache.remove(key);
        timedOut++;
      }
    }

    const where = task.partition;
    cache.prepare((key, value) => assertEncodable(value, () => `the state of key ${JSON.stringify(key)}`, () => ({ partition: where, batchTime, key })));
    for (const out of outputs.unkeyed) assertEncodable(out, () => 'a mapped record', () => ({ partition: where, batchTime }));
    const encodedOutputs = emit ? outputs.encode(keysBytes) : NO_OUTPUTS;
    const applyMs = performance.now() - started;

    const keyCount = (last?.keyCount ?? 0) + cache.keyCountDelta;
    try {
      store.env.transactionSync(() => {
        cache.flush();
        for (const letter of lettersToWrite) letters.add(letter);
        log.record({ batchTime, outputs: encodedOutputs, keyCount });
      });
    } catch (error) {
      memory.aborted();
      throw error;
    }
    memory.committed();
    partition.batch = batchTime;
    return {
      status: 'ok', outputs: encodedOutputs, recordsApplied: applied, keysTimedOut: timedOut, keyCount,
      replayed: false, applyMs, commitMs: performance.now() - started - applyMs,
      memoryHits: memory.hits - hits, storeReads: memory.misses - misses, memoryEntries: memory.size, thread: threadId,
    };
  } catch (error) {
    memory.aborted();
    if (error instanceof RecordFailure) {
      return { status: 'record-failed', index: error.index, key: error.key, value: error.value, timingOut: error.timingOut, error: serializeError(error.error) };
    }
    throw error;
  }
}
