import type { SerializedError } from '../errors.js';
import { messageViews } from '../storage/codec.js';
import type { DeadLetter } from '../storage/partition/dead-letters.js';

/** A mapping function named by module, after StateSpec resolved it to a file URL. */
export interface ResolvedMappingRef {
  url: string;
  exportName: string;
}

/**
 * What a partition actor asks its worker to do with one chunk of a batch. A batch's shard
 * arrives in chunks while the main thread still shards the rest; the worker applies each
 * as it comes and commits the batch with its last chunk.
 */
export interface ApplyTask {
  op: 'apply';
  storePath: string;
  partition: number;
  batchTime: number;
  /** Which attempt at the batch (a retry starts over from chunk 0; chunks of another attempt are stale). */
  attempt: number;
  /** The chunk's place in the batch, from 0; `last` on the final one. */
  chunk: number;
  last: boolean;
  timeoutMs: number | null;
  fn: ResolvedMappingRef;
  /** The chunk (shard-format.ts), shared with the main thread rather than copied. */
  shard: SharedArrayBuffer;
  /** Records (by position in the partition's whole batch) the dead-letter policy takes out of this batch. */
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
  /**
   * Two-phase (a cluster's partitions): with the last chunk, the worker prepares the batch
   * and sends its changes back instead of committing; a CommitTask commits it.
   */
  hold?: boolean;
}

/** Commits the batch a held last chunk prepared, with the caller's meta records in the same transaction; without meta, drops it. */
export interface CommitTask {
  op: 'commit';
  storePath: string;
  partition: number;
  incarnation: string;
  cacheEntries: number;
  fn: ResolvedMappingRef;
  batchTime: number;
  attempt: number;
  meta: Record<string, unknown> | undefined;
}

/** What a task sends back: its result, and a batch's mapped records beside it when they are in shared memory (no copy). */
export interface WorkerReply {
  packed: ArrayBuffer;
  outputs?: SharedArrayBuffer;
}

/** The result a worker sent, with its mapped records put back in place. */
export function readReply<R>(reply: WorkerReply): R {
  const result = messageViews.unpack(new Uint8Array(reply.packed)) as R & { outputs?: Uint8Array };
  if (reply.outputs) result.outputs = new Uint8Array(reply.outputs);
  return result;
}

export interface CheckModuleTask {
  op: 'check-module';
  fn: ResolvedMappingRef;
}

/** After a start: read the keys the partition's memory worked on at the last clean stop back into memory (memory-warm-up.ts). */
export interface WarmMemoryTask {
  op: 'warm-memory';
  storePath: string;
  incarnation: string;
  cacheEntries: number;
}

/** Before a clean stop lets the workers go: record the keys the partition's memory works on. */
export interface SaveWarmKeysTask {
  op: 'save-warm-keys';
  storePath: string;
  incarnation: string;
}

/** Before the workers go: every partition the thread holds stops its work between batches. */
export interface StopPartitionsTask {
  op: 'stop-partitions';
}

/** A cluster instance gave the partition up: the thread lets its store and memory go. */
export interface ReleasePartitionTask {
  op: 'release-partition';
  storePath: string;
  incarnation: string;
}

export interface WarmMemoryDone {
  status: 'ok';
  /** Keys the hint named, and how many of them memory holds now (the others were gone, or memory was full). */
  hinted: number;
  loaded: number;
  durationMs: number;
}

export type WorkerTask = ApplyTask | CommitTask | CheckModuleTask | WarmMemoryTask | SaveWarmKeysTask | StopPartitionsTask | ReleasePartitionTask;

/** An initial key: pairs take the batch's time as lastUpdated, entries from a StateSource keep theirs. */
export type InitialEntry = [key: unknown, state: unknown, lastUpdated?: number];

export interface ApplyDone {
  status: 'ok';
  /** The partition (its number in the stream): a cluster instance reports only the ones it owns. */
  partition: number;
  /** The mapped records in the OUT2 format (batch-outputs.ts): records first, then timeouts. */
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

/** The mapping function threw on one record; nothing was committed. */
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

/** A held batch prepared: what it changes, for the changelog; the worker waits for its CommitTask. */
export interface ApplyPrepared {
  status: 'prepared';
  keys: unknown[];
  /** Each key's new stored entry, or null when the key goes. */
  entries: Array<Uint8Array | null>;
  /** The records the batch dead-letters, which commit with it. */
  letters: DeadLetter[];
  keyCount: number;
}

/** A chunk applied (or skipped, for a batch the store already holds); the batch goes on. */
export interface ApplyChunkDone {
  status: 'chunk-ok';
}

/** A chunk of an attempt the worker is no longer on (an earlier chunk failed, or the worker was replaced). */
export interface ApplyStale {
  status: 'stale';
}

export type ApplyResult = ApplyDone | ApplyRecordFailed | ApplyBatchFailed | ApplyChunkDone | ApplyStale | ApplyPrepared;
