import type { SerializedError } from '../errors.js';

/** A mapping function named by module, after StateSpec resolved it to a file URL. */
export interface ResolvedMappingRef {
  url: string;
  exportName: string;
}

/** What a partition actor asks its worker to do with one batch. */
export interface ApplyTask {
  op: 'apply';
  storePath: string;
  partition: number;
  batchTime: number;
  timeoutMs: number | null;
  fn: ResolvedMappingRef;
  /** The shard (shard-format.ts), transferred rather than cloned. */
  shard: ArrayBuffer;
  /** Records (by shard position) the dead-letter policy takes out of this batch. */
  deadLetters: Array<{ index: number; attempts: number; error: SerializedError }>;
  /**
   * Which opening of the stores this task belongs to: a worker that holds the partition's
   * state in memory from another one drops it and reads the store again.
   */
  incarnation: string;
  /** Entries of this partition the worker keeps in memory (its share of the context's bound). */
  cacheEntries: number;
  /** Whether an output operation reads the mapped records; when none does, they are neither encoded nor kept. */
  emitOutputs: boolean;
}

export interface CheckModuleTask {
  op: 'check-module';
  fn: ResolvedMappingRef;
}

export type WorkerTask = ApplyTask | CheckModuleTask;

/** An initial key: pairs take the batch's time as lastUpdated, entries from a StateSource keep theirs. */
export type InitialEntry = [key: unknown, state: unknown, lastUpdated?: number];

export interface ApplyDone {
  status: 'ok';
  /** messageCodec-encoded array of mapped records: records first, then timeouts. */
  outputs: Uint8Array;
  recordsApplied: number;
  keysTimedOut: number;
  keyCount: number;
  /** The store already held this batch: outputs are the ones it recorded then. */
  replayed: boolean;
  applyMs: number;
  commitMs: number;
  /** Reads of this batch served from the worker's memory, and those that went to LMDB. */
  memoryHits: number;
  storeReads: number;
  /** Entries the worker holds in memory for this partition after the batch. */
  memoryEntries: number;
  /** The worker thread that applied it. */
  thread: number;
}

/** The mapping function threw (or its state could not be encoded) on one record; nothing was committed. */
export interface ApplyRecordFailed {
  status: 'record-failed';
  index: number;
  key: unknown;
  value: unknown;
  timingOut: boolean;
  error: SerializedError;
}

/** Anything else that failed the batch on the worker without killing it (a state that cannot be encoded, a bad module). */
export interface ApplyBatchFailed {
  status: 'batch-failed';
  error: SerializedError;
}

export type ApplyResult = ApplyDone | ApplyRecordFailed | ApplyBatchFailed;
