import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, type BatchCompletedEvent, type MapWithStateStream, type QueueInputDStream } from '../src/index.js';

/** The mapping module the runtime loads on its workers (compiled next to this file). */
export const WORD_COUNT_FN = new URL('./word-count-fn.js', import.meta.url);
export const BATCH_INTERVAL_MS = 100;

export interface JobOptions {
  dataDir: string;
  partitions: number;
  threads: number;
  /** StateSpec.timeout(idleMs); none when absent. */
  timeoutMs?: number;
  /** ManualClock start: a restarted job starts at (or after) the last batch it committed. */
  startMs?: number;
  /** StreamingContext's snapshotEvery (batches); no snapshots when absent. */
  snapshotEvery?: number;
}

export interface BatchTiming {
  /** performance.now() around pushBatch + clock.advance (the batch, its commit and its outputs). */
  wallMs: number;
  /** The batch.completed event's processingTimeMs. */
  processingMs: number;
  keysTimedOut: number;
  records: number;
  /** Mapped records the batch emitted (counted by a foreachBatch sink). */
  outputs: number;
  /** Entries of state the worker threads hold in memory after the batch (all partitions). */
  memoryEntries: number;
}

/**
 * The word count through the public API: queueStream<string> → map(w → [w, 1]) →
 * mapWithState(word-count-fn) → foreachBatch sink, driven by a ManualClock with 100 ms
 * batches: push one batch, `await clock.advance(100)`.
 */
export class RuntimeJob {
  private lastEvent: BatchCompletedEvent | undefined;
  private outputs = 0;

  private constructor(
    readonly ssc: StreamingContext,
    readonly clock: ManualClock,
    private readonly input: QueueInputDStream<string>,
    readonly stream: MapWithStateStream<string, number, [string, number]>,
  ) {
    ssc.on(BatchEvents.COMPLETED, (e) => void (this.lastEvent = e));
    stream.foreachBatch((records) => void (this.outputs += records.length));
  }

  /** Builds the context only; `start()` is separate so a restart can be timed from `new StreamingContext`. */
  static create(options: JobOptions): RuntimeJob {
    const clock = new ManualClock(options.startMs ?? 0);
    const ssc = new StreamingContext({
      batchIntervalMs: BATCH_INTERVAL_MS, dataDir: options.dataDir, threads: options.threads, clock,
      ...(options.snapshotEvery !== undefined ? { snapshotEvery: options.snapshotEvery } : {}),
    });
    const input = ssc.queueStream<string>();
    let spec = StateSpec.function<string, number, number, [string, number]>(WORD_COUNT_FN).numPartitions(options.partitions);
    if (options.timeoutMs !== undefined) spec = spec.timeout(options.timeoutMs);
    const stream = input.map((w) => [w, 1] as [string, number]).mapWithState(spec);
    return new RuntimeJob(ssc, clock, input, stream as MapWithStateStream<string, number, [string, number]>);
  }

  static async start(options: JobOptions): Promise<RuntimeJob> {
    const job = RuntimeJob.create(options);
    await job.ssc.start();
    return job;
  }

  /** Time of the last batch run (the clock stands on it after advance). */
  get time(): number {
    return this.clock.now();
  }

  async batch(words: string[]): Promise<BatchTiming> {
    const outputsBefore = this.outputs;
    this.lastEvent = undefined;
    const started = performance.now();
    this.input.pushBatch(words);
    await this.clock.advance(BATCH_INTERVAL_MS);
    const wallMs = performance.now() - started;
    const event = this.lastEvent as BatchCompletedEvent | undefined;
    if (!event) throw new Error(`bench: no batch.completed event after advancing to ${this.clock.now()}`);
    const memoryEntries = event.partitionStats.flat().reduce((n, p) => n + p.memoryEntries, 0);
    return { wallMs, processingMs: event.processingTimeMs, keysTimedOut: event.keysTimedOut, records: event.records, outputs: this.outputs - outputsBefore, memoryEntries };
  }

  /**
   * The batches with a backlog: each one is pushed and its advance begun while the one
   * before still runs, so that the runtime maps and routes it ahead (as it does on a system
   * clock when batches queue up). Returns the wall time (ms) from the first push to the
   * last batch done.
   */
  async backlog(batches: readonly string[][]): Promise<number> {
    const started = performance.now();
    let running: Promise<void> | undefined;
    for (const words of batches) {
      this.input.pushBatch(words);
      const next = this.clock.advance(BATCH_INTERVAL_MS);
      if (running) await running;
      running = next;
    }
    await running;
    return performance.now() - started;
  }

  count(): number {
    return this.stream.store().count();
  }

  stop(): Promise<void> {
    return this.ssc.stop();
  }
}

/** Bench data folders still on disk; removed if the process ends before their scenario does. */
const live = new Set<string>();
process.once('exit', () => live.forEach((path) => rmSync(path, { recursive: true, force: true })));

/** A fresh data folder under the OS temp dir; `remove()` deletes it. */
export function tempDataDir(label: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `statestream-bench-${label}-`));
  live.add(path);
  return {
    path,
    remove: () => {
      rmSync(path, { recursive: true, force: true });
      live.delete(path);
    },
  };
}
