import { StatestreamError, StoreOpenError } from '../../errors.js';
import { BatchLog, readCheckedLayout, type StoreLayout } from './batch-log.js';
import { checkStoreFile, dataFileBytes } from './file-check.js';
import { partitionPath, withPartitionStore, type PartitionStore } from './store.js';

export { checkStoreFile, dataFileBytes, type StoreProblem } from './file-check.js';

export interface PartitionReport {
  partition: number;
  path: string;
  /** data.mdb's size in bytes, when it exists. */
  bytes: number | undefined;
  /** What is wrong with the store; undefined when it is healthy. */
  problem: string | undefined;
  /** Why the store could not be read now, when that is not damage (a newer store format, a failure to open that is not its data). */
  unreadable?: string;
  layout?: StoreLayout;
  /** False for a store a first start created and never initialised. */
  initialised?: boolean;
  lastBatch?: number;
  keyCount?: number;
  deadLetters?: number;
  /** Written by an instance of a cluster job, which holds only the partitions it owned. */
  cluster?: boolean;
}

/** Whether a cluster instance wrote the store: its restore leaves a cluster record, which a single-process job never writes. */
export function isClusterStore(store: PartitionStore): boolean {
  return store.meta.get('cluster') !== undefined;
}

/**
 * Looks at one partition store: the file check first (LMDB maps the file, and a truncated
 * one would kill this process with SIGBUS), then its layout and last batch. Throws
 * StoreMismatchError for a store in a newer format (checkStoreFormat), before its records
 * are decoded, and StoreOpenError when a whole file fails to open for a reason that is not
 * its contents: neither is damage, and neither may be restored over.
 */
export function examinePartition(dataDir: string, stream: number, partition: number): PartitionReport {
  const path = partitionPath(dataDir, stream, partition);
  let bytes: number | undefined;
  let problem: string | undefined;
  try {
    bytes = dataFileBytes(path);
    problem = checkStoreFile(path);
  } catch (error) {
    // Reading the file failed (EIO on a failing disk): not damage its contents show, and a
    // bare read error would name neither the partition nor the file.
    const code = (error as { code?: unknown }).code;
    throw new StoreOpenError(
      `partition ${partition} of mapWithState stream ${stream} at ${path} could not be read to check it: ${(error as Error).message} (code ${String(code)}); nothing is restored over it`,
      { partition, stream, path, code },
      error,
    );
  }
  if (problem) return { partition, path, bytes, problem };
  try {
    return withPartitionStore(path, (store) => {
      const layout = readCheckedLayout(store, { stream, partition });
      const last = new BatchLog(store).last();
      // No layout: created by a first start that was cut short, which the next start initialises (not damage).
      return {
        partition, path, bytes, problem: undefined, layout, initialised: layout !== undefined,
        lastBatch: last?.batchTime, keyCount: last?.keyCount ?? 0, deadLetters: store.deadLetters.getKeysCount(),
        cluster: isClusterStore(store),
      };
    });
  } catch (error) {
    if (error instanceof StatestreamError) throw error;
    if (isStoreDamage(error)) return { partition, path, bytes, problem: `the store fails to open: ${(error as Error).message}` };
    const code = (error as { code?: unknown }).code;
    const race = code === EINVAL || code === MDB_BAD_TXN;
    throw new StoreOpenError(
      `partition ${partition} of mapWithState stream ${stream} at ${path} could not be opened: ${(error as Error).message} (code ${String(code)}). ` +
        'Its data.mdb is whole, so this is not damage and nothing is restored over it' +
        (race
          ? '. lmdb-js fails so at times while another process opens the same store at the same moment, and then keeps failing in this process: try again in a new process'
          : ''),
      { partition, stream, path, code },
      error,
      race,
    );
  }
}

const EINVAL = 22;
const MDB_BAD_TXN = -30782;

/**
 * LMDB's codes for pages whose contents are wrong (lmdb.h). MDB_INVALID and
 * MDB_VERSION_MISMATCH are not among them: past the file check (which read data.mdb's meta
 * pages), LMDB gives them for a lock file another process holds in another format, or for
 * data of another LMDB version, and neither is damage to restore over.
 */
const DAMAGE_CODES = new Set([
  -30797, // MDB_PAGE_NOTFOUND
  -30796, // MDB_CORRUPTED
]);

/**
 * Whether a failure to open a store whose file passed checkStoreFile shows damage: LMDB's
 * codes for wrong pages, or a record that does not decode (an error with no code). An
 * LMDB or system error with another code (EINVAL, EACCES, ENOSPC…) says nothing about the
 * data: moving such a store aside and restoring an older copy over it would lose batches.
 */
export function isStoreDamage(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === undefined || (typeof code === 'number' && DAMAGE_CODES.has(code));
}
