import { ConfigError, describeValue, given, unknownOption } from '../../errors.js';

/**
 * State that comes from outside the live stores — an export file or a snapshot — to seed
 * a job (StateSpec.initialState) or to be written somewhere else. It carries the user's
 * state version it was written under, so a newer mapping module can migrate it.
 */
export interface StateSource<K = unknown, S = unknown> {
  /** Names the source in errors ("export /x/y.msgpack", "snapshot 1700000000000"). */
  readonly description: string;
  /** StateSpec.stateVersion of the code that wrote the entries (1 when never set). */
  readonly stateVersion: number;
  /** Every [key, state, lastUpdated] once; lastUpdated is the batch time of the key's last record. */
  entries(): Iterable<[key: K, state: S, lastUpdated: number]>;
}

export function isStateSource(value: unknown): value is StateSource {
  return typeof value === 'object' && value !== null && typeof (value as StateSource).entries === 'function' && typeof (value as StateSource).stateVersion === 'number';
}

/**
 * `{ stream }` of exportJobState and readSnapshotState: which mapWithState stream (default
 * 0). Checked whole, since a misspelt `stream` would read stream 0 without a word.
 */
export function streamOption(where: string, options: unknown): number {
  if (options === undefined) return 0;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError(`${where}: options must be an object like { stream: 0 }, got ${describeValue(options)}`, { option: 'options' });
  }
  const unknown = unknownOption(options, ['stream']);
  if (unknown !== undefined) throw new ConfigError(`${where}: unknown option "${unknown}" (known: stream)`, { option: unknown });
  const stream = given((options as { stream?: unknown }).stream, 0);
  if (typeof stream !== 'number' || !Number.isSafeInteger(stream) || stream < 0) {
    throw new ConfigError(`${where}: stream must be an integer ≥ 0 (the mapWithState stream, in the order the job defined them), got ${describeValue(stream)}`, { option: 'stream', value: stream });
  }
  return stream;
}

/** A folder or file argument: a non-empty string. */
export function pathArgument(where: string, name: string, path: unknown): string {
  if (typeof path !== 'string' || path.trim() === '') throw new ConfigError(`${where}: ${name} must be a non-empty path string, got ${describeValue(path)}`, { option: name });
  return path;
}
