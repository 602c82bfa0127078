/**
 * When a worker thread may be terminated. A stop that runs out of time (stop({ timeoutMs }))
 * terminates the threads still applying a batch, as Spark's non-graceful stop interrupts
 * its tasks. Termination stops a thread's JavaScript wherever it is, and two places must
 * not be cut: an LMDB write transaction (lmdb-js's transactionSync would neither commit
 * nor abort, and the store's write lock would stay taken) and the thread's first import
 * of the partition worker (Node 20 ends the whole process when a thread is terminated
 * while lmdb registers its native addon).
 *
 * Each thread shares one Int32 cell with the main thread: the number of such regions the
 * thread is inside, or CUT once the main thread has claimed it for termination. The main
 * thread claims a thread only when the cell is 0 (compare-and-exchange), and a thread
 * enters a region only while the cell is not CUT, so no region is ever cut short.
 *
 * CommonJS, so that the worker's CommonJS entry (worker-entry.cts) and the ES modules of
 * the worker and the main thread share one copy of it.
 */
import { workerData } from 'node:worker_threads';

const CUT = -1;

/** The cell of the thread this code runs on; none on the main thread (its regions need no guard). */
const own: Int32Array | undefined = workerData instanceof SharedArrayBuffer ? new Int32Array(workerData) : undefined;

/** The main thread stopped waiting for this thread: it is about to be terminated, and no write may begin. */
export class ThreadCutError extends Error {
  constructor(what: string) {
    super(`the job is stopping: ${what} does not begin on a thread about to be terminated`);
    this.name = 'ThreadCutError';
  }
}

/** A cell for a new pool's thread (passed to it as the pool's workerData, which Piscina hands to its threads). */
export function newCutCell(): SharedArrayBuffer {
  return new SharedArrayBuffer(4);
}

/**
 * A fresh thread of the pool: its predecessor (one thread per pool) is gone, and regions
 * it died inside no longer exist. A claim stays.
 */
export function threadStarted(): void {
  if (!own) return;
  for (let seen = Atomics.load(own, 0); seen !== CUT; seen = Atomics.load(own, 0)) {
    if (Atomics.compareExchange(own, 0, seen, 0) === seen) return;
  }
}

function enter(what: string): void {
  if (!own) return;
  for (;;) {
    const seen = Atomics.load(own, 0);
    if (seen === CUT) throw new ThreadCutError(what);
    if (Atomics.compareExchange(own, 0, seen, seen + 1) === seen) return;
  }
}

function leave(): void {
  if (own) Atomics.sub(own, 0, 1);
}

/** Runs `region` where the thread cannot be terminated; throws ThreadCutError instead of beginning once it is claimed. */
export function uncut<T>(what: string, region: () => T): T {
  enter(what);
  try {
    return region();
  } finally {
    leave();
  }
}

/** As uncut, for a region that awaits. */
export async function uncutAsync<T>(what: string, region: () => Promise<T>): Promise<T> {
  enter(what);
  try {
    return await region();
  } finally {
    leave();
  }
}

/** Main thread: claims the thread of `cell` for termination if it is inside no region now. */
export function claimForCut(cell: SharedArrayBuffer): boolean {
  const view = new Int32Array(cell);
  const seen = Atomics.compareExchange(view, 0, 0, CUT);
  return seen === 0 || seen === CUT;
}
