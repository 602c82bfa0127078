import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { setTimeout as sleep } from 'node:timers/promises';
import { claimForCut, newCutCell } from './thread-cut.cjs';

// Piscina loads a CommonJS shim that imports the worker lazily (see worker-entry.cts for why).
/**
 * Chunks posted to a thread without waiting for the one before: Piscina hands a task to a
 * busy thread only up to this many, and otherwise waits for a turn of the main thread that
 * may be busy routing the rest of the batch. The worker still applies them one at a time,
 * in order (worker-partitions.ts).
 */
const CHUNKS_IN_FLIGHT = 1024;

const workerFile = fileURLToPath(new URL('./worker-entry.cjs', import.meta.url));

/**
 * The worker threads, one Piscina pool of one thread each, so that a partition is served
 * by the same thread for the life of the job and can keep its state in that thread's
 * memory. Partitions are dealt round-robin over the threads, across every mapWithState
 * stream, in the order they are placed. A thread that dies is replaced by its pool with a
 * fresh one, which inherits its partitions and rebuilds their memory from LMDB.
 */
export class WorkerSet {
  private readonly pools: Piscina[];
  /** Each thread's cut cell (thread-cut.cts). */
  private readonly cells: SharedArrayBuffer[];
  private readonly pinned: string[][];
  private placed = 0;
  /** Set by cut(): the threads are terminated, and no task may start another. */
  private cutWith: Error | undefined;
  private cutting: Promise<void> | undefined;
  private destroying = false;
  /** Batches under way on each thread (from a partition's first chunk to its commit, the gaps between its tasks included). */
  private readonly open: number[];
  /** What a thread that died between tasks failed with, if it failed (its pool's 'error'). */
  private readonly diedWith: unknown[];

  constructor(
    readonly threads: number,
    /** Entries of state each thread keeps in memory, shared between the partitions pinned to it. */
    private readonly cacheEntriesPerWorker: number,
    /**
     * A thread died while it ran no task (work a mapping function left behind failed after its
     * batch, or called process.exit): nothing was lost, and its pool starts a fresh thread,
     * which reads the partitions' state from LMDB.
     */
    private readonly onIdleThreadDied: (worker: number, partitions: readonly string[], error: unknown) => void = () => undefined,
  ) {
    this.cells = Array.from({ length: threads }, () => newCutCell());
    this.pinned = Array.from({ length: threads }, () => []);
    this.open = Array.from({ length: threads }, () => 0);
    this.diedWith = Array.from({ length: threads }, () => undefined);
    this.pools = this.cells.map((cell, worker) => {
      const pool = new Piscina({ filename: workerFile, workerData: cell, minThreads: 1, maxThreads: 1, idleTimeout: Infinity, atomics: 'disabled', concurrentTasksPerWorker: CHUNKS_IN_FLIGHT });
      // An idle thread that throws: Piscina emits its pool's 'error' (which would otherwise end
      // the process) just after 'workerDestroy'. One that exits emits only 'workerDestroy'.
      pool.on('error', (error: unknown) => void (this.diedWith[worker] = error));
      pool.on('workerDestroy', () => {
        // In a batch: its tasks reject, or the next one finds a fresh thread ('stale'), and
        // the partition's actor handles the crash. During a stop, threads end on purpose.
        const ours = this.open[worker] > 0 || this.stopping();
        setImmediate(() => {
          const error = this.diedWith[worker] ?? new Error('the thread exited while it ran no task (process.exit in a mapping module?)');
          this.diedWith[worker] = undefined;
          if (!ours && !this.stopping()) this.onIdleThreadDied(worker, this.pinned[worker], error);
        });
      });
      return pool;
    });
  }

  /** Pins the partitions of one stream and returns each one's thread; call once per stream, before any task runs. */
  place(stream: number, partitions: number): number[] {
    const workers = Array.from({ length: partitions }, () => this.placed++ % this.threads);
    workers.forEach((w, p) => this.pinned[w].push(`${stream}:${p}`));
    return workers;
  }

  /** A thread's memory bound split evenly between the partitions pinned to it. */
  cacheEntriesOf(worker: number): number {
    return Math.floor(this.cacheEntriesPerWorker / Math.max(1, this.pinned[worker].length));
  }

  run<T>(worker: number, task: object): Promise<T> {
    // A destroyed pool would start a fresh thread for the task.
    if (this.cutWith) return Promise.reject(this.cutWith);
    return this.pools[worker].run(task);
  }

  /** A batch of a partition pinned to `worker`, from its first task to its last reply: a death meanwhile is the batch's to handle. */
  async during<T>(worker: number, batch: () => Promise<T>): Promise<T> {
    this.open[worker]++;
    try {
      return await batch();
    } finally {
      this.open[worker]--;
    }
  }

  private stopping(): boolean {
    return this.cutWith !== undefined || this.destroying;
  }

  /**
   * Work that belongs to no partition, on every thread: loading the mapping modules at
   * start checks that they load, and spares the first batch each thread's imports.
   */
  runOnEveryThread<T>(task: object): Promise<T[]> {
    return Promise.all(this.pools.map((_, worker) => this.run<T>(worker, task)));
  }

  /**
   * Terminates every thread, whatever it runs (a mapping function that never returns): the
   * tasks under way and queued reject. Each thread is terminated only between its write
   * transactions (thread-cut.cts), so every store is left at a commit; a thread inside one
   * is waited for, and a transaction is short.
   */
  cut(reason: Error): Promise<void> {
    if (!this.cutWith) {
      this.cutWith = reason;
      this.cutting = Promise.all(
        this.pools.map(async (pool, worker) => {
          while (!claimForCut(this.cells[worker])) await sleep(2);
          await pool.destroy();
        }),
      ).then(() => undefined);
    }
    return this.cutting!;
  }

  /** Ends every thread once its tasks are done (the caller waits for them); after a cut, once the cut threads are gone. */
  async destroy(): Promise<void> {
    this.destroying = true;
    if (this.cutWith) return this.cutting;
    await Promise.all(this.pools.map((pool) => pool.destroy()));
  }
}
