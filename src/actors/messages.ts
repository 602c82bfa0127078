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
  /** messageCodec-encoded ShardPayload, transferred rather than cloned. */
  shard: ArrayBuffer;
  /** Records (by shard position) the dead-letter policy takes out of this batch. */
  deadLetters: Array<{ index: number; attempts: number; error: SerializedError }>;
}

export interface CheckModuleTask {
  op: 'check-module';
  fn: ResolvedMappingRef;
}

export type WorkerTask = ApplyTask | CheckModuleTask;

export interface ShardPayload {
  /** keys[i] and values[i] are record i of this partition's shard, in arrival order. */
  keys: unknown[];
  values: unknown[];
  /** StateSpec.initialState for this partition, until the store holds a batch. */
  initialState?: InitialEntry[];
}

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
