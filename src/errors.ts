import { types } from 'node:util';

/**
 * Every error statestream raises, in one small hierarchy. Callers branch on `code` and
 * `retriable`, never on message text; `context` names what failed (partition, batch
 * time, key, option) so a log line is enough to find it.
 */
export type ErrorContext = Record<string, unknown>;

export class StatestreamError extends Error {
  readonly code: string;
  readonly context: ErrorContext;
  readonly retriable: boolean;

  constructor(code: string, message: string, options: { context?: ErrorContext; retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = options.context ?? {};
    this.retriable = options.retriable ?? false;
  }
}

/** An option given to StreamingContext, StateSpec or a stream is out of range or of the wrong type. */
export class ConfigError extends StatestreamError {
  constructor(message: string, context: ErrorContext = {}) {
    super('ERR_CONFIG', message, { context });
  }
}

/** A short text for a value in an error message. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'symbol' || typeof value === 'function' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  // JSON would call these null.
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (Array.isArray(value) && value.some((v) => typeof v === 'number' && !Number.isFinite(v))) return `[${value.map((v) => (typeof v === 'number' ? String(v) : describeValue(v))).join(',')}]`;
  try {
    const json = JSON.stringify(value);
    return json === undefined ? String(value) : json.length > 60 ? json.slice(0, 60) + '…' : json;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * A thrown value as an Error: one that is not (a string, a plain object) is wrapped in an
 * Error that names it and keeps it as its `cause`, so whoever catches it can still read its
 * fields, rather than `new Error(String(value))` ("[object Object]", the fields lost).
 */
export function asError(value: unknown, where: string): Error {
  return isError(value) ? value : new Error(`${where}: ${notAnError(value)} (it is this error's cause)`, { cause: value });
}

/** An Error, also one of another realm (a vm context the mapping module made), which `instanceof` misses. */
function isError(value: unknown): value is Error {
  return value instanceof Error || types.isNativeError(value);
}

/** A thrown value that is no Error, in words: `String({ code: 42 })` would be "[object Object]". */
function notAnError(value: unknown): string {
  return `${describeValue(value)} was thrown, which is not an Error`;
}

/**
 * An option's value, or `fallback` when it was not given. Only `undefined` means "not
 * given": a `null` is a value, and the option's check refuses it by name, rather than
 * the default standing in for a mistake the caller should hear about.
 */
export function given<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}

/** An integer from `min` to `max`, both included: NaN, a fraction, a numeric string or a bigint is none. */
export function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return Number.isInteger(value) && (value as number) >= min && (value as number) <= max;
}

/** The first own key of an options object that is none of `known`: a misspelt option would otherwise be ignored without a word. */
export function unknownOption(options: object, known: Iterable<string>): string | undefined {
  const names = new Set(known);
  return Object.keys(options).find((key) => !names.has(key));
}

/** The mapping-function module cannot be loaded, or has no such export, or the export is not a function. */
export class MappingModuleError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_MAPPING_MODULE', message, { context, cause });
  }
}

/** A `State` handle was used against Spark's contract (get when absent, update after remove, …). */
export class StateContractError extends StatestreamError {
  constructor(message: string, context: ErrorContext = {}) {
    super('ERR_STATE_CONTRACT', message, { context });
  }
}

/** A record entering mapWithState is not a [key, value] pair, or its key cannot be an LMDB key. */
export class InvalidRecordError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_INVALID_RECORD', message, { context });
  }
}

/** A state or mapped value cannot be encoded for LMDB (functions, symbols, cycles, huge bigints). */
export class EncodingError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_ENCODING', message, { context, cause });
  }
}

/** The mapping function kept throwing on one record; the batch failed and nothing of it was committed. */
export class PoisonRecordError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_POISON_RECORD', message, { context, cause });
  }
}

/** A worker thread died while applying a shard, more often than the restart policy allows. */
export class WorkerCrashError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_WORKER_CRASH', message, { context, cause, retriable: true });
  }
}

/**
 * stop({ timeoutMs }) ran out of time while a batch still applied: the worker threads were
 * terminated, so the batch did not commit and its outputs did not run. `context.batchTime`
 * names it; a source that can replay (Kafka) runs it again on the next start.
 */
export class StopTimeoutError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_STOP_TIMEOUT', message, { context, cause });
  }
}

/** A partition store does not match what the job asks of it (partition count, layout, time going backwards). */
export class StoreMismatchError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_STORE_MISMATCH', message, { context, cause });
  }
}

/**
 * A partition store whose file is whole could not be opened, for a reason that is not its
 * data (lmdb-js failing while another process opens the same store at the same moment, a
 * permission, a full disk). Not damage, so nothing is restored over it. Retriable when it
 * is that race: a new process can try again.
 */
export class StoreOpenError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown, retriable = false) {
    super('ERR_STORE_OPEN', message, { context, cause, retriable });
  }
}

/**
 * A partition store failed under a batch (a full disk, a file-size limit, an I/O error, a
 * read that LMDB refused): the batch did not commit, so the store is as the last committed
 * batch left it. Names the partition, its store and what the system said.
 */
export class StoreIOError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_STORE_IO', message, { context, cause });
  }
}

/** A state export file (or another StateSource) cannot be used: not an export, written by a newer format, truncated, or holding an entry that cannot be state. */
export class StateExportError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_STATE_EXPORT', message, { context, cause });
  }
}

/** StateSpec.stateVersion's migrate function threw or returned no state; nothing was migrated. */
export class StateMigrationError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_STATE_MIGRATION', message, { context, cause });
  }
}

/**
 * Source positions could not be read from or written to ZooKeeper (after retrying), or the
 * Kafka source could not reach its brokers, or a stop interrupted the start's wait for either.
 */
export class OffsetStoreError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_OFFSETS', message, { context, cause, retriable: true });
  }
}

/**
 * Records a Kafka job needs are gone from the broker (retention deleted them while the job
 * was stopped or behind, or the topic was recreated): `context.gaps` names each topic,
 * partition and range of offsets lost. Raised while `failOnDataLoss` is true (the default).
 */
export class DataLossError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_DATA_LOSS', message, { context });
  }
}

/**
 * Another process, or another context in this one, is using the job's data folder: a second
 * copy of a job, or a command that changes state while the job runs. `context.holder` names
 * it (pid, host, since when, what it is), as the folder's lock file recorded it.
 */
export class DataDirLockedError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_DATA_DIR_LOCKED', message, { context });
  }
}

/**
 * Another running copy of the job owns its ZooKeeper root (its owner node is there and did
 * not go within its session timeout): `context.owner` names it (pid, host, since, data folder).
 */
export class JobOwnedError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_JOB_OWNED', message, { context });
  }
}

/**
 * The job's owner node in ZooKeeper is gone (its session expired while the process was paused
 * or cut off, or someone deleted it): the job may no longer write positions, so it stops.
 * Another copy may own the root now; this one must be restarted to take it back.
 */
export class OwnershipLostError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_OWNERSHIP_LOST', message, { context });
  }
}

/**
 * A cluster instance cannot join or run: its instance id is taken by a live instance, the
 * job's topics are missing or mis-sized, or a store under its data folder belongs elsewhere.
 */
export class ClusterError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_CLUSTER', message, { context });
  }
}

/** A state query for a key whose partition another cluster instance owns; the context names it. */
export class NotOwnerError extends StatestreamError {
  constructor(message: string, context: ErrorContext) {
    super('ERR_NOT_OWNER', message, { context });
  }
}

/** A source message could not be decoded; the context names topic, partition and offset. */
export class SourceRecordError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_SOURCE_RECORD', message, { context, cause });
  }
}

/** A map, flatMap or filter function threw (or a flatMap returned no iterable); the context names the operation, where it was defined, the batch and the record. */
export class StreamOperationError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_STREAM_OPERATION', message, { context, cause });
  }
}

/** The context is not in a state that allows the call (start twice, add a stream after start, …). */
export class LifecycleError extends StatestreamError {
  constructor(message: string, context: ErrorContext = {}) {
    super('ERR_LIFECYCLE', message, { context });
  }
}

/** A snapshot cannot be written, read, verified or restored; `context.snapshot` names it. */
export class SnapshotError extends StatestreamError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('ERR_SNAPSHOT', message, { context, cause });
  }
}

/** What crosses a thread boundary: errors lose their class in structured clone, so we carry the parts. */
export interface SerializedError {
  name: string;
  code?: string;
  message: string;
  stack?: string;
  context?: ErrorContext;
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof StatestreamError) {
    return { name: error.name, code: error.code, message: error.message, stack: error.stack, context: error.context };
  }
  if (isError(error)) return { name: error.name, message: error.message, stack: error.stack };
  return { name: 'Error', message: notAnError(error) };
}

const byName: Record<string, new (message: string, context: ErrorContext) => StatestreamError> = {
  StateContractError,
  InvalidRecordError,
  EncodingError,
  MappingModuleError: MappingModuleError as never,
  StoreMismatchError,
  StoreIOError,
  OwnershipLostError,
};

/** Rebuilds an error sent from a worker so that `instanceof` and `code` work on the main thread. */
export function deserializeError(data: SerializedError): Error {
  const Ctor = byName[data.name];
  const error = Ctor ? new Ctor(data.message, data.context ?? {}) : Object.assign(new Error(data.message), { name: data.name });
  if (data.stack) error.stack = data.stack;
  return error;
}
