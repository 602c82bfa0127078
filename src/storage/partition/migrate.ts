import type { Database, Key } from 'lmdb';
import { StateMigrationError, StoreMismatchError, type ErrorContext } from '../../errors.js';
import { readLayout, writeLayout } from './batch-log.js';
import { assertEncodable, decodeEntry, encodeEntry } from '../codec.js';
import type { PartitionStore } from './store.js';
import type { ExportEntry } from '../export/state-export.js';
import type { StateSource } from '../export/state-source.js';

/** StateSpec.stateVersion's hook: turns a state written under `fromVersion` into the current shape. */
export type MigrateFunction<S = unknown> = (state: unknown, fromVersion: number) => S;

/**
 * Whether state written under `stored` can be used by a spec at `wanted`; throws a
 * StoreMismatchError that says what to do when it cannot. `what` names the state
 * ("the stores of stream 0 under /data", "export /x.msgpack").
 */
export function checkStateVersion(stored: number, wanted: number, canMigrate: boolean, what: string, context: ErrorContext): void {
  if (stored > wanted) {
    throw new StoreMismatchError(
      `${what} holds state version ${stored}, but the StateSpec is at version ${wanted}; ` +
        `it was written by newer code: run it with that code's mapping module and StateSpec.stateVersion(${stored}) or later`,
      { ...context, storedVersion: stored, specVersion: wanted },
    );
  }
  if (stored < wanted && !canMigrate) {
    throw new StoreMismatchError(
      `${what} holds state version ${stored}, but the StateSpec is at version ${wanted} and has no migrate function; ` +
        `pass one that turns version ${stored} state into version ${wanted}: stateVersion(${wanted}, (state, fromVersion) => newState)`,
      { ...context, storedVersion: stored, specVersion: wanted },
    );
  }
}

function isThenable(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** One state through the hook, with errors naming the key, where it lives, and the versions. */
function migrateState(migrate: MigrateFunction, state: unknown, key: unknown, from: number, to: number, where: string, context: ErrorContext): unknown {
  const about = `key ${JSON.stringify(key)} of ${where} (state version ${from} to ${to})`;
  const fullContext = { ...context, key, fromVersion: from, toVersion: to };
  let migrated: unknown;
  try {
    migrated = migrate(state, from);
  } catch (error) {
    throw new StateMigrationError(`migrate threw on ${about}: ${(error as Error)?.message ?? String(error)}; nothing was migrated`, fullContext, error);
  }
  if (migrated === undefined) {
    throw new StateMigrationError(`migrate returned undefined for ${about}; it must return the new state (a migration cannot remove keys); nothing was migrated`, fullContext);
  }
  // Migration runs inside write transactions, which cannot wait; a promise would be stored as {}.
  if (isThenable(migrated)) throw new StateMigrationError(`migrate returned a promise for ${about}; it must return the new state synchronously`, fullContext);
  assertEncodable(migrated, () => `the state migrate returned for ${about}`, () => fullContext);
  return migrated;
}

/**
 * Migrated entries are first written to a database of their own in the partition's
 * environment, so that a migrate function failing in the last partition leaves every
 * partition as it was: all partitions are staged before any is switched over.
 */
function stagingDb(store: PartitionStore): Database<Buffer, Key> {
  return store.env.openDB<Buffer, Key>({ name: 'migrating', encoding: 'binary' });
}

/** Writes every entry of the partition, migrated, lastUpdated unchanged, into its staging database. */
function stage(store: PartitionStore, fromVersion: number, toVersion: number, migrate: MigrateFunction, where: { stream: number; partition: number }): number {
  const staging = stagingDb(store);
  const label = `partition ${where.partition} of stream ${where.stream}`;
  let count = 0;
  store.env.transactionSync(() => {
    // Left over from a start that crashed while staging.
    staging.clearSync();
    for (const { key, value } of store.state.getRange({})) {
      const [state, lastUpdated] = decodeEntry(value);
      staging.putSync(key, encodeEntry(migrateState(migrate, state, key, fromVersion, toVersion, label, where), lastUpdated));
      count++;
    }
  });
  return count;
}

/**
 * Replaces the partition's entries with the staged ones and records the new version in one
 * write transaction: a crash before it commits leaves the old version, and the migration
 * runs again at the next start. The time index is untouched: lastUpdated does not change.
 */
function switchOver(store: PartitionStore, toVersion: number): void {
  const staging = stagingDb(store);
  const layout = readLayout(store)!;
  store.env.transactionSync(() => {
    for (const { key, value } of staging.getRange({})) store.state.putSync(key, value);
    staging.clearSync();
    writeLayout(store, { ...layout, stateVersion: toVersion });
  });
}

function discardStaged(store: PartitionStore): void {
  const staging = stagingDb(store);
  store.env.transactionSync(() => staging.clearSync());
}

/** Migrates one partition store from `fromVersion` to `toVersion`; returns how many entries it rewrote. */
export function migrateStore(store: PartitionStore, fromVersion: number, toVersion: number, migrate: MigrateFunction, where: { stream: number; partition: number }): number {
  if (!readLayout(store)) throw new StoreMismatchError(`partition ${where.partition} of stream ${where.stream} at ${store.path} has no layout to migrate`, { ...where, path: store.path });
  let count: number;
  try {
    count = stage(store, fromVersion, toVersion, migrate, where);
  } catch (error) {
    discardStaged(store);
    throw error;
  }
  switchOver(store, toVersion);
  return count;
}

/**
 * Migrates several partitions of one stream so that a failing migrate changes none of
 * them: every partition is staged before any is switched over. (A crash while switching
 * can leave some partitions migrated; each records its own version, so the next start
 * migrates only the rest.)
 */
export function migrateStores(
  targets: ReadonlyArray<{ store: PartitionStore; partition: number; fromVersion: number }>,
  toVersion: number,
  migrate: MigrateFunction,
  stream: number,
): void {
  for (const { store, partition } of targets) {
    if (!readLayout(store)) throw new StoreMismatchError(`partition ${partition} of stream ${stream} at ${store.path} has no layout to migrate`, { stream, partition, path: store.path });
  }
  const staged: PartitionStore[] = [];
  try {
    for (const { store, partition, fromVersion } of targets) {
      staged.push(store);
      stage(store, fromVersion, toVersion, migrate, { stream, partition });
    }
  } catch (error) {
    for (const store of staged) discardStaged(store);
    throw error;
  }
  for (const { store } of targets) switchOver(store, toVersion);
}

/** Entries of `source` (already checked) written under an older version, migrated one by one as they are read. */
export function* migrateEntries(source: StateSource, entries: Iterable<ExportEntry>, toVersion: number, migrate: MigrateFunction): Generator<ExportEntry> {
  for (const [key, state, lastUpdated] of entries) {
    yield [key, migrateState(migrate, state, key, source.stateVersion, toVersion, source.description, { source: source.description }), lastUpdated];
  }
}

/**
 * Brings a stream's stores to the spec's state version before anything reads them: checks
 * every partition first (so a refusal changes nothing), then migrates those that are older.
 * It reads and writes the state database in place: the stores' change logs must be folded
 * (a job folds them when it opens its stores, before this).
 */
export function upgradeStores(stores: readonly PartitionStore[], version: number, migrate: MigrateFunction | undefined, where: { stream: number; dataDir: string }): void {
  const stale: Array<{ store: PartitionStore; partition: number; fromVersion: number }> = [];
  stores.forEach((store, partition) => {
    const layout = readLayout(store);
    if (!layout) return;
    const stored = layout.stateVersion ?? 1;
    checkStateVersion(stored, version, migrate !== undefined, `partition ${partition} of the stores of mapWithState stream ${where.stream} under ${where.dataDir}`, { ...where, partition });
    if (stored < version) stale.push({ store, partition, fromVersion: stored });
  });
  if (stale.length > 0) migrateStores(stale, version, migrate!, where.stream);
}
