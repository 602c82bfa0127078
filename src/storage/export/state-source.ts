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
