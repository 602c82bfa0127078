import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, Key, RootDatabase } from 'lmdb';
import { FirstFailure } from '../../first-failure.js';
import { openGated } from '../open-gate.js';

/**
 * One LMDB environment per state partition. Its named databases are the layers the
 * partition logic talks to: state entries, the time index, the batch log and the
 * dead letters. Every thread of the process that opens the same path shares one native
 * environment (lmdb-js keeps a registry), so the main thread can read what workers commit.
 */
export interface PartitionStore {
  readonly path: string;
  readonly env: RootDatabase;
  /** key → MessagePack [state, lastUpdated] */
  readonly state: Database<Buffer, Key>;
  /** [lastUpdated, key] → empty: what the idle sweep reads */
  readonly timeIndex: Database<Buffer, Key>;
  /** small records: last committed batch, key count, layout */
  readonly meta: Database<unknown, string>;
  /** [batchTime, recordIndex] → what failed and why */
  readonly deadLetters: Database<unknown, Key>;
  /** batchTime → the batch's changed entries, not yet written into `state` (see change-log.ts) */
  readonly changeLog: Database<Buffer, number>;
}

/** The folder holding every partition store of one mapWithState stream. */
export function stateDir(dataDir: string, streamIndex: number): string {
  return join(dataDir, `state-${streamIndex}`);
}

export function partitionFolder(partition: number): string {
  return `partition-${String(partition).padStart(4, '0')}`;
}

export function partitionPath(dataDir: string, streamIndex: number, partition: number): string {
  return join(stateDir(dataDir, streamIndex), partitionFolder(partition));
}

/** The partitions of a stream that have a folder on disk, in order. */
export function partitionsOnDisk(dataDir: string, streamIndex: number): number[] {
  const dir = stateDir(dataDir, streamIndex);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .flatMap((name) => (/^partition-\d{4}$/.test(name) ? [Number(name.slice(10))] : []))
    .sort((a, b) => a - b);
}

/**
 * `noSync` skips the fsync of each commit, for stores that are only written in bulk and
 * made durable as a whole afterwards (a reshard's new stores, fsynced before they count).
 */
export function openPartitionStore(path: string, options: { noSync?: boolean } = {}): PartitionStore {
  mkdirSync(path, { recursive: true });
  // Through the gate: another process's open must not hide this one's commits (open-gate.ts).
  return openGated(path, { maxDbs: 8, noSubdir: false, ...(options.noSync ? { noSync: true } : {}) }, (env) => ({
    path,
    state: env.openDB<Buffer, Key>({ name: 'state', encoding: 'binary' }),
    timeIndex: env.openDB<Buffer, Key>({ name: 'time-index', encoding: 'binary' }),
    meta: env.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' }),
    deadLetters: env.openDB<unknown, Key>({ name: 'dead-letters', encoding: 'msgpack' }),
    changeLog: env.openDB<Buffer, number>({ name: 'change-log', encoding: 'binary' }),
  }));
}

/**
 * Opens the store at `path`, runs `use` on it and closes it. A close that fails is thrown
 * only when `use` succeeded: after a failure of its own, that failure is the one reported.
 */
export function withPartitionStore<T>(path: string, use: (store: PartitionStore) => T): T {
  const store = openPartitionStore(path);
  let result: T;
  try {
    result = use(store);
  } catch (error) {
    closePartitionStores([store], { afterFailure: true });
    throw error;
  }
  closePartitionStores([store]);
  return result;
}

/** Opens the stores at `paths` in order; when one fails, those opened before it are closed again. */
export function openPartitionStores(paths: string[], options: { noSync?: boolean } = {}): PartitionStore[] {
  const stores: PartitionStore[] = [];
  try {
    for (const path of paths) stores.push(openPartitionStore(path, options));
  } catch (error) {
    closePartitionStores(stores, { afterFailure: true });
    throw error;
  }
  return stores;
}

/**
 * Closes every store, each one even when a close before it fails (a close waits for the
 * store's open gate and can give up, leaving that store open: open-gate.ts), and throws the
 * first failure once all were tried. `afterFailure`: closing because of another error, which
 * is the one to report, so a failed close is not thrown.
 */
export function closePartitionStores(stores: Iterable<PartitionStore>, options: { afterFailure?: boolean } = {}): void {
  const failures = new FirstFailure();
  for (const store of stores) failures.runSync(() => void store.env.close());
  if (!options.afterFailure) failures.rethrow();
}
