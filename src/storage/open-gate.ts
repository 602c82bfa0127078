import { closeSync, constants, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { open, type RootDatabase, type RootDatabaseOptions } from 'lmdb';
import { ConfigError, StoreOpenError } from '../errors.js';

// fs-native-extensions ships no types; these are the calls used. On Linux they take OFD locks
// (F_OFD_SETLK): held by the open file description, so two descriptors of the file conflict
// even in one process, and closing another descriptor of the file leaves a lock alone.
const require = createRequire(import.meta.url);
const { tryLock, waitForLockSync, unlock } = require('fs-native-extensions') as {
  tryLock(fd: number, offset: number, length: number, options?: { shared?: boolean }): boolean;
  waitForLockSync(fd: number, offset: number, length: number, options?: { shared?: boolean }): void;
  unlock(fd: number, offset?: number, length?: number): void;
};

// Two one-byte locks in the gate file. GATE is the gate itself. TURN is an opener's place in
// line: a commit waits while an open holds it, and only then takes the gate, so an open waits
// for the commits under way and not for every commit after them (commits of two workers, or
// of two processes, overlap and would otherwise keep the gate shared for as long as they run).
// fs-native-extensions locks byte ranges with fcntl, but on macOS only whole files (flock):
// there the gate is the whole file and an open goes without a turn.
const RANGES = process.platform !== 'darwin';
const GATE: [number, number] = RANGES ? [0, 1] : [0, 0];
const TURN: [number, number] | undefined = RANGES ? [1, 1] : undefined;

/** The gate's file, beside LMDB's data.mdb and lock.mdb. */
export const GATE_FILE = 'open-gate.lock';

/** How long an open (or a close) waits for the write transactions under way to end, unless STATESTREAM_STORE_OPEN_WAIT_MS says. */
const OPEN_WAIT_MS = 30_000;
const OPEN_WAIT_VARIABLE = 'STATESTREAM_STORE_OPEN_WAIT_MS';

/**
 * The wait of an open or a close for the commits under way: 30 s, or the environment's
 * STATESTREAM_STORE_OPEN_WAIT_MS (a slow disk may want longer; a test of a gate that is
 * never let go, shorter). Read at each open, so a worker thread reads the copy of the
 * environment it started with.
 */
export function openWaitMs(): number {
  const raw = process.env[OPEN_WAIT_VARIABLE];
  if (raw === undefined || raw === '') return OPEN_WAIT_MS;
  const ms = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || ms < 1 || ms > 2 ** 31 - 1) {
    throw new ConfigError(`${OPEN_WAIT_VARIABLE} must be a whole number of milliseconds from 1 to 2147483647, got ${JSON.stringify(raw)}`, { variable: OPEN_WAIT_VARIABLE, value: raw });
  }
  return ms;
}
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * Opens the LMDB environment at `path` (a folder that exists) so that opening it cannot hide
 * another process's commit, and runs `databases` (its openDB calls) inside the same gate.
 *
 * lmdb 3.5's liblmdb, in every process that opens an environment, writes the lock file's id
 * of the last committed transaction from the meta page it read a moment before, without the
 * writer's mutex (mdb_env_open2: `env->me_txns->mti_txnid = meta.mm_txnid`). A commit by
 * another process in between is then hidden: that process's next read transactions begin at
 * the snapshot before it, and its next write transaction begins there too and overwrites
 * it. `statestream export` on a running job met this as a partition that lost one batch
 * (test/storage/open-gate.test.ts, docs/decisions.md "Opening a store waits for its commits").
 *
 * So opening and committing exclude each other across processes through a lock file of our
 * own beside LMDB's: an open (and a close) holds it exclusively, for the open only; every
 * write transaction on an environment opened here holds it shared, from before it begins to
 * after it commits. An open therefore waits for the commits under way, and a commit waits
 * for an open under way (a few milliseconds). An open first takes its turn (TURN below), so
 * commits that begin after it wait for it, and a stream of overlapping commits cannot keep
 * it out.
 */
export function openGated<T>(path: string, options: RootDatabaseOptions, databases: (env: RootDatabase) => T): { env: RootDatabase } & T {
  const gatePath = join(path, GATE_FILE);
  const fd = openGate(gatePath);
  let opened: { env: RootDatabase } & T;
  try {
    holdExclusively(fd, path, 'open');
    try {
      const env = open({ ...options, path });
      try {
        opened = { ...databases(env), env };
      } catch (error) {
        void env.close();
        throw error;
      }
    } finally {
      unlock(fd, ...GATE);
    }
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  gateWrites(opened.env, fd, path);
  return opened;
}

function openGate(gatePath: string): number {
  try {
    return openSync(gatePath, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (error) {
    throw new StoreOpenError(`cannot open ${gatePath}, the lock file that keeps opens of the store apart from its commits: ${(error as Error).message}`, { path: gatePath }, error);
  }
}

/** Takes the gate alone: first the turn, so that no commit begins meanwhile, then the gate once the commits under way end. */
function holdExclusively(fd: number, path: string, what: 'open' | 'close'): void {
  const waitMs = openWaitMs();
  const deadline = Date.now() + waitMs;
  const waited = `cannot ${what} the store at ${path}:`;
  if (TURN) waitAlone(fd, TURN, deadline, path, `${waited} another open or close of it has waited its turn in ${GATE_FILE} for ${waitMs / 1000} s`);
  try {
    waitAlone(
      fd, GATE, deadline, path,
      `${waited} a write transaction on it has kept ${GATE_FILE} for ${waitMs / 1000} s ` +
        `(a commit that does not end, or this thread trying to ${what} the store from inside a transaction of its own)`,
    );
  } finally {
    if (TURN) unlock(fd, ...TURN);
  }
}

function waitAlone(fd: number, lock: [number, number], deadline: number, path: string, timedOut: string): void {
  while (!tryLock(fd, ...lock)) {
    if (Date.now() > deadline) throw new StoreOpenError(timedOut, { path }, undefined, true);
    Atomics.wait(sleepCell, 0, 0, 2);
  }
}

/**
 * Every write transaction of this environment handle holds the gate shared: lmdb makes one
 * class per open(), shared by the root and its named databases, whose every write (a put
 * outside a transaction too) goes through transactionSync. A nested call runs inside the
 * outer transaction, which holds the gate already.
 *
 * The close holds it alone, as the open does: lmdb-js 3.5 also fails an open in one process
 * that meets a close in another ("No transaction to renew", its issue 201), and then keeps
 * failing in that process (test/storage/partition/store-open-race.test.ts). The gate's
 * descriptor lives as long as the handle.
 */
function gateWrites(env: RootDatabase, fd: number, path: string): void {
  const shared = Object.getPrototypeOf(env) as { transactionSync<R>(action: () => R, flags?: number): R };
  const transactionSync = shared.transactionSync;
  let depth = 0;
  let closed = false;
  shared.transactionSync = function <R>(this: unknown, action: () => R, flags?: number): R {
    // Once closed, lmdb refuses the write itself; the descriptor's number may be another file's by then.
    if (depth > 0 || closed) return transactionSync.call(this, action, flags) as R;
    // Behind an open waiting its turn, then in through the gate beside the other commits.
    if (TURN) {
      waitForLockSync(fd, ...TURN, { shared: true });
      unlock(fd, ...TURN);
    }
    waitForLockSync(fd, ...GATE, { shared: true });
    depth++;
    try {
      return transactionSync.call(this, action, flags) as R;
    } finally {
      depth--;
      unlock(fd, ...GATE);
    }
  };
  const close = env.close;
  env.close = function (this: RootDatabase, ...args: Parameters<RootDatabase['close']>) {
    if (closed) return close.apply(this, args);
    // A close that cannot take the gate throws with the store still open, as it was.
    holdExclusively(fd, path, 'close');
    closed = true;
    try {
      return close.apply(this, args);
    } finally {
      // Closing the descriptor lets the gate go.
      closeSync(fd);
    }
  };
}
