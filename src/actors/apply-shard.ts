import { performance } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { StatestreamError, StoreIOError, describeValue, serializeError } from '../errors.js';
import { StateHandle } from '../engine/state.js';
import { assertEncodable, messageCodec } from '../storage/codec.js';
import { BatchCache, type Slot } from '../storage/partition/batch-cache.js';
import { BatchLog, type CommittedBatch } from '../storage/partition/batch-log.js';
import { DeadLetterStore, type DeadLetter } from '../storage/partition/dead-letters.js';
import { TimeIndex } from '../storage/partition/time-index.js';
import { KeyedMap } from '../storage/partition/keyed-map.js';
import type { ApplyDone, ApplyResult, ApplyTask, CommitTask, InitialEntry } from './messages.js';
import { NO_OUTPUTS, OutputWriter } from '../storage/partition/batch-outputs.js';
import { readShard } from './shard-format.js';
import { syncWithStore, type WorkerPartition } from './worker-partitions.js';
import { rememberBatch } from './memory-warm-up.js';
import { scheduleIdleWork } from './between-batches.js';
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

/** A mapped record MessagePack cannot carry fails the batch, as a state would, naming the key and the record it came from. */
function checkOutput(out: unknown, key: unknown, from: string, partition: number, batchTime: number): void {
  assertEncodable(out, () => `the record mapped from key ${describeValue(key)} (${from}) in partition ${partition} of batch ${batchTime}`, () => ({ partition, batchTime, key }));
}

/**
 * One batch of one partition as it applies on the worker, Spark's
 * MapWithStateRDDRecord.updateRecordWithData: each record sees the state its predecessors
 * left, then (with the last chunk) idle keys are swept and everything (state, time index,
 * batch id, outputs, dead letters) commits in one LMDB transaction. Records arrive in
 * chunks while the main thread still shards the rest of the batch. A failure anywhere
 * before the commit leaves the store as the last batch left it, and the partition's memory
 * as the store.
 */
export class BatchApplication {
  private readonly started = performance.now();
  private readonly log: BatchLog;
  private readonly last: CommittedBatch | undefined;
  private readonly cache: BatchCache<unknown> | undefined;
  private readonly index: TimeIndex;
  private readonly sweeping: boolean;
  private readonly skipped: Map<number, ApplyTask['deadLetters'][number]>;
  private readonly state = new StateHandle<unknown>();
  private readonly outputs = new OutputWriter();
  private readonly lettersToWrite: DeadLetter[] = [];
  /** Index entries the sweep found stale (their key gone, or at another time): removed with the commit, so no later sweep reads them again. */
  private readonly staleEntries: Array<[time: number, key: unknown]> = [];
  /** The batch's distinct keys so far, and their working-set slots: chunks name keys by index into these. */
  private readonly keys: unknown[] = [];
  private readonly slots: Array<Slot<unknown> | undefined> = [];
  private initial: InitialEntry[] | undefined;
  private records = 0;
  private applied = 0;
  private readonly hits: number;
  private readonly misses: number;
  /** The store already holds this batch: its chunks are skipped and its recorded outputs handed back. */
  readonly replayed: boolean;

  constructor(
    private readonly partition: WorkerPartition,
    private readonly fn: MappingFunction,
    private readonly task: ApplyTask,
  ) {
    const { store, memory } = partition;
    this.last = syncWithStore(partition);
    this.log = new BatchLog(store);
    memory.checkComplete(this.last?.keyCount ?? 0);
    this.replayed = this.last !== undefined && this.last.batchTime >= task.batchTime;
    this.index = new TimeIndex(store);
    this.sweeping = task.timeoutMs !== null;
    this.cache = this.replayed ? undefined : new BatchCache<unknown>(memory, this.sweeping ? this.index : undefined);
    this.skipped = new Map(task.deadLetters.map((d) => [d.index, d]));
    this.hits = memory.hits;
    this.misses = memory.misses;
  }

  get attempt(): number {
    return this.task.attempt;
  }

  get batchTime(): number {
    return this.task.batchTime;
  }

  /** Applies one chunk's records, in order. Throws RecordFailure (the attempt is over) when the mapping function throws. */
  async apply(chunk: ArrayBufferLike): Promise<void> {
    if (this.replayed) return;
    const cache = this.cache!;
    const { refs, keys, values, initialState } = readShard(chunk);
    const { batchTime, partition } = this.task;
    if (this.records === 0 && !this.last && initialState) {
      this.initial = initialState;
      for (const [key, state, lastUpdated] of initialState) cache.put(key, state, lastUpdated ?? batchTime);
    }
    for (const key of keys) this.keys.push(key);
    const { fn, state, skipped, sweeping, slots, outputs } = this;
    const emit = this.task.emitOutputs;
    const initial = this.initial;
    for (let j = 0; j < refs.length; j++) {
      // Records are numbered across the batch's chunks, for retries and dead letters.
      const i = this.records++;
      const ref = refs[j];
      // The working-set slot of each distinct key, found once: records name their key by index.
      const slot = slots[ref] ?? (slots[ref] = initial ? cache.slot(this.keys[ref]) : cache.fresh(this.keys[ref]));
      const key = slot.key;
      if (skipped.size > 0 && skipped.has(i)) {
        this.lettersToWrite.push({ batchTime, partition, index: i, key, value: values[j], timingOut: false, attempts: skipped.get(i)!.attempts, error: skipped.get(i)!.error });
        // It is still a record for its key: the key's time moves, as it would have.
        if (sweeping && slot.exists) cache.putSlot(slot, slot.state, batchTime);
        continue;
      }
      state.wrap(key, slot.state, slot.exists);
      let mapped: unknown;
      try {
        mapped = fn(batchTime, key, values[j], state);
        if (isThenable(mapped)) mapped = await mapped;
      } catch (error) {
        throw new RecordFailure(i, key, values[j], false, error);
      }
      if (state.isRemoved()) cache.removeSlot(slot);
      else if (state.isUpdated() || (sweeping && state.exists())) cache.putSlot(slot, state.getOption(), batchTime);
      if (emit && mapped !== undefined && outputs.push(mapped, key, ref)) checkOutput(mapped, key, `record ${i} of the shard`, partition, batchTime);
      this.applied++;
    }
  }

  /** After the last chunk: sweeps idle keys, commits everything in one transaction, and says what happened. */
  async commit(): Promise<ApplyDone> {
    if (this.replayed) return this.replay();
    await this.prepare();
    return this.write();
  }

  private replay(): ApplyDone {
    const last = this.last!;
    // This very batch committed before its answer was lost: what it did is reported now.
    const same = last.batchTime === this.task.batchTime;
    return {
      status: 'ok', partition: this.task.partition, outputs: same ? last.outputs : NO_OUTPUTS,
      recordsApplied: 0, keysTimedOut: same ? (last.timedOut ?? 0) : 0, keyCount: last.keyCount, replayed: true, applyMs: 0, commitMs: 0,
      memoryHits: 0, storeReads: 0, memoryEntries: this.partition.memory.size, thread: threadId,
    };
  }

  private prepared: { outputs: Uint8Array; keyCount: number; timedOut: number; applyMs: number } | undefined;

  /** Sweeps idle keys and encodes every change, ready to commit (a state that cannot be stored fails here). */
  async prepare(): Promise<void> {
    const cache = this.cache!;
    const { batchTime, partition } = this.task;
    const { state, skipped, outputs, initial } = this;
    const emit = this.task.emitOutputs;
    let timedOut = 0;
    if (this.sweeping) {
      const threshold = batchTime - this.task.timeoutMs!;
      // Timeout calls are numbered after the records, for retries and dead letters.
      let i = this.records;
      // Keys read here for an index entry that did not match them (below): in the working set, but not for a record.
      let passedOver: KeyedMap<true> | undefined;
      for (const [time, key, loaded] of idleKeys(this.index, threshold, cache, initial)) {
        // A key with a record in this batch is in the working set with a fresh time.
        if (!loaded && cache.has(key) && !passedOver?.get(key)) continue;
        const entry = cache.get(key);
        // An index entry that outlived its key, or an older time of it (as an earlier version's
        // reshard of a change log read out of LMDB's order left them): the entry's own time decides.
        if (entry === undefined || (!loaded && entry[1] !== time)) {
          (passedOver ??= new KeyedMap()).set(key, true);
          if (!loaded) this.staleEntries.push([time, key]);
          continue;
        }
        const position = i++;
        const letter = skipped.get(position);
        if (letter) {
          this.lettersToWrite.push({ batchTime, partition, index: position, key, value: undefined, timingOut: true, state: entry[0], attempts: letter.attempts, error: letter.error });
        } else {
          state.wrapTimingOut(key, entry[0]);
          let out: unknown;
          try {
            out = this.fn(batchTime, key, undefined, state);
            if (isThenable(out)) out = await out;
          } catch (error) {
            throw new RecordFailure(position, key, undefined, true, error);
          }
          if (emit && out !== undefined && outputs.push(out, key, undefined)) checkOutput(out, key, 'its timeout call', partition, batchTime);
        }
        cache.remove(key);
        timedOut++;
      }
    }
    // The whole batch's, checked once its records have run: it fails the batch, whatever the record-failure policy (no record is to blame alone).
    cache.prepare((key, value) => assertEncodable(value, () => `the state of key ${JSON.stringify(key)} in partition ${partition} of batch ${batchTime}`, () => ({ partition, batchTime, key })));
    this.prepared = {
      outputs: emit ? outputs.encode(outputs.length > 0 ? messageCodec.pack(this.keys) : new Uint8Array(0)) : NO_OUTPUTS,
      keyCount: (this.last?.keyCount ?? 0) + cache.keyCountDelta,
      timedOut,
      applyMs: performance.now() - this.started,
    };
  }

  /** What the prepared batch changes: each key with its new stored entry, or null when it goes, and the records it dead-letters. */
  changes(): { keys: unknown[]; entries: Array<Uint8Array | null>; letters: DeadLetter[]; keyCount: number } {
    const { keys, entries } = this.cache!.changes();
    return { keys, entries, letters: this.lettersToWrite, keyCount: this.prepared!.keyCount };
  }

  /** Commits the prepared batch in one transaction, with `meta` records of the caller's beside it. */
  write(meta?: Record<string, unknown>): ApplyDone {
    if (this.replayed) return this.replay();
    const { store, memory } = this.partition;
    const cache = this.cache!;
    const { batchTime } = this.task;
    const { outputs, keyCount, timedOut, applyMs } = this.prepared!;
    const letters = new DeadLetterStore(store);
    try {
      store.env.transactionSync(() => {
        cache.flush();
        for (const [time, key] of this.staleEntries) this.index.remove(time, key);
        memory.endBatch(batchTime, keyCount);
        for (const letter of this.lettersToWrite) letters.add(letter);
        this.log.record({ batchTime, outputs, keyCount, timedOut });
        for (const [name, value] of Object.entries(meta ?? {})) store.meta.putSync(name, value);
      });
    } catch (error) {
      memory.aborted();
      throw storeFailure(error, 'could not commit batch', this.partition.store.path, this.task);
    }
    memory.committed();
    this.partition.batch = batchTime;
    rememberBatch(this.partition, batchTime);
    scheduleIdleWork(this.partition);
    return {
      status: 'ok', partition: this.task.partition, outputs, recordsApplied: this.applied, keysTimedOut: timedOut, keyCount,
      replayed: false, applyMs, commitMs: performance.now() - this.started - applyMs,
      memoryHits: memory.hits - this.hits, storeReads: memory.misses - this.misses, memoryEntries: memory.size, thread: threadId,
    };
  }

  /** The attempt is over without a commit (a record failed, or a later attempt began): memory stays as LMDB is. */
  abandon(): void {
    this.partition.memory.aborted();
  }
}

/**
 * Applies one chunk of a batch to its partition: the first chunk begins the batch, the last
 * one commits it. A record that keeps failing ends the attempt; the partition actor starts
 * the next attempt from chunk 0, and chunks of an earlier attempt are answered as stale.
 */
export function applyChunk(partition: WorkerPartition, fn: MappingFunction, task: ApplyTask | CommitTask): Promise<ApplyResult> {
  // Chunks arrive without waiting for each other (a mapping function may be async): one at a time, in order.
  const result = partition.queue.then(() => applyInOrder(partition, fn, task));
  partition.queue = result.then(
    () => undefined,
    () => undefined,
  );
  return result;
}

async function applyInOrder(partition: WorkerPartition, fn: MappingFunction, task: ApplyTask | CommitTask): Promise<ApplyResult> {
  let application = partition.application;
  if (task.op === 'apply' && task.chunk === 0) {
    application?.abandon();
    partition.application = undefined;
    try {
      // It reads the store's batch log: the batch's first read.
      application = partition.application = new BatchApplication(partition, fn, task);
    } catch (error) {
      throw storeFailure(error, 'failed to read its store in batch', partition.store.path, task);
    }
  } else if (!application || application.attempt !== task.attempt || application.batchTime !== task.batchTime) {
    return { status: 'stale' };
  }
  try {
    if (task.op === 'commit') {
      partition.application = undefined;
      if (task.meta === undefined) {
        application.abandon();
        return { status: 'stale' };
      }
      return application.write(task.meta);
    }
    await application.apply(task.shard);
    if (!task.last) return { status: 'chunk-ok' };
    if (task.hold && !application.replayed) {
      // Two-phase: the changes go back first; the commit waits for the caller's word.
      await application.prepare();
      return { status: 'prepared', ...application.changes() };
    }
    partition.application = undefined;
    return await application.commit();
  } catch (error) {
    partition.application = undefined;
    application.abandon();
    if (error instanceof RecordFailure) {
      return { status: 'record-failed', index: error.index, key: error.key, value: error.value, timingOut: error.timingOut, error: serializeError(error.error) };
    }
    // An LMDB error (a number) or a system one (EIO, ENOSPC) while the batch read its store;
    // not Node's own (ERR_STRING_TOO_LONG and the like), which say nothing of the store.
    const code = (error as { code?: unknown } | undefined)?.code;
    if (!(error instanceof StatestreamError) && (typeof code === 'number' || (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)))) {
      throw storeFailure(error, 'failed to read its store in batch', partition.store.path, task);
    }
    throw error;
  }
}

/**
 * The error of a store that failed under a batch, naming the partition, the batch and the
 * store, with what LMDB or the system said: alone, lmdb-js's message ("Input/output error",
 * "MDB_MAP_FULL") says neither which partition nor which file.
 */
export function storeFailure(error: unknown, what: string, path: string, task: { partition: number; batchTime: number }): unknown {
  // A stop that ran out of time cut the thread: the batch fails as the stop's, not the store's.
  if (error instanceof StatestreamError || (error as Error | undefined)?.name === 'ThreadCutError') return error;
  const cause = error as { message?: string; code?: unknown };
  const code = cause.code === undefined ? '' : ` (code ${String(cause.code)})`;
  return new StoreIOError(
    `partition ${task.partition} ${what} ${task.batchTime}, store ${path}: ${cause.message ?? String(error)}${code}; the batch did not commit, and the store is as the last committed batch left it`,
    { partition: task.partition, batchTime: task.batchTime, path, code: cause.code },
    error,
  );
}
