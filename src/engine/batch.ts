import type { ApplyDone } from '../actors/messages.js';
import type { BatchCompletedEvent } from './batch-events.js';

/**
 * A source's records for one batch, in order, as one or more arrays. A queue source keeps
 * what it was pushed as pieces of a few thousand records: one array of a whole batch is a
 * V8 large object, and each is made on fresh pages, which cost more than the copy itself
 * (docs/decisions.md, "A pushed batch is copied in pieces").
 */
export type RecordPieces<T = unknown> = ReadonlyArray<readonly T[]>;

/** The pieces as one array (the piece itself when there is one). */
export function joinPieces<T>(pieces: RecordPieces<T>): T[] {
  if (pieces.length === 1) return pieces[0] as T[];
  let n = 0;
  for (const piece of pieces) n += piece.length;
  // A loop, not concat(...pieces): a spread of a hundred thousand pieces overflows the stack.
  const all = new Array<T>(n);
  let at = 0;
  for (const piece of pieces) for (let i = 0; i < piece.length; i++) all[at++] = piece[i];
  return all;
}

/**
 * One micro-batch as it runs: its time, what each source gave it, and each stream's
 * records, computed at most once per batch however many outputs read them.
 */
export class BatchRun {
  private readonly results = new Map<number, Promise<unknown[]>>();
  private readonly steps = new Map<string, Promise<unknown>>();
  /** Per mapWithState stream (by creation order), what each partition reported. */
  readonly partitionResults = new Map<number, ApplyDone[]>();
  /** Per mapWithState stream (by stream id), its sharding when it began ahead of the batch. */
  readonly prepared = new Map<number, unknown>();

  private loading: Promise<void> | undefined;
  private done = false;

  constructor(
    readonly time: number,
    /** Records each input stream took for this batch, by stream id. */
    readonly inputs: ReadonlyMap<number, RecordPieces>,
    /**
     * How the batch came about: taken now, rebuilt because it was in flight when the last
     * run stopped, or re-run after a restore (its outputs were delivered when it first ran).
     */
    readonly origin: 'live' | 'in-flight' | 'replay' = 'live',
    /** For a rebuilt batch: takes its records from the sources into `inputs`, when it is about to run. */
    private readonly loader?: () => Promise<void>,
  ) {}

  /** Whether its records are in `inputs` (a rebuilt batch's come only once load() has run). */
  get loaded(): boolean {
    return this.loader === undefined || this.done;
  }

  /** Takes a rebuilt batch's records from its sources, once; nothing for a batch taken live. */
  load(): Promise<void> {
    if (this.loader === undefined) return Promise.resolve();
    this.loading ??= this.loader().then(() => {
      this.done = true;
    });
    return this.loading;
  }

  /** What batch.completed says of it, its state streams given by index in the order the event lists them. */
  completedEvent(streams: number[], schedulingDelayMs: number, processingTimeMs: number): BatchCompletedEvent {
    const partitions = streams.map((stream) => this.partitionResults.get(stream) ?? []);
    return {
      batchTime: this.time,
      records: this.inputRecords,
      schedulingDelayMs,
      processingTimeMs,
      partitionTimesMs: partitions.map((ps) => ps.map((p) => p.applyMs + p.commitMs)),
      partitionStats: partitions.map((ps) =>
        ps.map((p) => ({ partition: p.partition, thread: p.thread, keyCount: p.keyCount, memoryEntries: p.memoryEntries, memoryHits: p.memoryHits, storeReads: p.storeReads, replayed: p.replayed })),
      ),
      keysTimedOut: partitions.flat().reduce((n, p) => n + p.keysTimedOut, 0),
      origin: this.origin,
    };
  }

  get inputRecords(): number {
    let n = 0;
    for (const pieces of this.inputs.values()) for (const piece of pieces) n += piece.length;
    return n;
  }

  /** Runs a step of this batch once, however many callers ask for it. */
  once<T>(step: string, run: () => Promise<T>): Promise<T> {
    let result = this.steps.get(step);
    if (!result) {
      result = run();
      this.steps.set(step, result);
    }
    return result as Promise<T>;
  }

  /** Whether a stream's records for this batch were computed (or are being). */
  has(streamId: number): boolean {
    return this.results.has(streamId);
  }

  memo<T>(streamId: number, compute: () => Promise<T[]> | T[]): Promise<T[]> {
    let result = this.results.get(streamId);
    if (!result) {
      result = Promise.resolve().then(compute);
      this.results.set(streamId, result);
    }
    return result as Promise<T[]>;
  }

  /**
   * Once the batch has run: forgets what it computed. A batch queued behind another is in
   * V8's old generation by the time it decodes its outputs, its maps with it, while the
   * records it memoizes are young; a young collection keeps alive whatever an old object
   * points at, dead or not, until a full collection. So each batch's 5·10^4 pairs were
   * copied, then promoted, in 13–23 ms collections (docs/decisions.md, "Decoded pairs kept
   * alive by the batch that ran"). Entry by entry: `Map.prototype.clear` gives the map a new
   * table and leaves the old one, entries and all, to any iterator still walking it.
   */
  release(): void {
    forget(this.results);
    forget(this.steps);
    forget(this.prepared);
    forget(this.partitionResults);
  }
}

function forget<K, V>(map: Map<K, V>): void {
  for (const key of map.keys()) map.delete(key);
}
