import { ConfigError, describeValue, StreamOperationError } from '../errors.js';
import type { BatchRun, RecordPieces } from './batch.js';
import type { StateSpec } from './state-spec.js';
import type { DeadLetter } from '../storage/partition/dead-letters.js';

/** What a stream needs of its context; the StreamingContext implements it. */
export interface StreamGraph {
  nextStreamId(): number;
  assertBuilding(what: string): void;
  /** Throws when records given now could never be processed (the context stopped or failed). */
  assertAccepting(what: string): void;
  /** The error for a query made while the context does not run, saying what to do. */
  notRunning(what: string): Error;
  addOutput<T>(stream: DStream<T>, fn: (records: T[], time: number) => unknown): void;
  mapWithState<K, V, S, M>(parent: DStream<[K, V]>, spec: StateSpec<K, V, S, M>): MapWithStateStream<K, S, M>;
}

/** The parts of a mapWithState stream a DStream user sees; implemented in map-with-state-stream.ts. */
export interface MapWithStateStream<K, S, M> extends DStream<M> {
  stateSnapshots(): DStream<[K, S]>;
  store(): StateQueries<K, S>;
  /** Records the dead-letter policy moved aside, oldest batch first. */
  deadLetters(): DeadLetter[];
}

export interface StateQueries<K, S> {
  get(key: K): S | undefined;
  entries(): Iterable<[K, S]>;
  count(): number;
}

type Op = {
  kind: 'map' | 'filter' | 'flatMap';
  fn: (value: unknown) => unknown;
  /** Where the program called map/flatMap/filter, for errors. */
  definedAt: string;
};

/** How a stream names one of its records in an error: words, and context fields. */
export interface RecordDescription {
  text: string;
  context: Record<string, unknown>;
}

/** The first stack frame outside this module: the program's call of map/flatMap/filter. */
function callSite(): string {
  const frames = (new Error().stack ?? '').split('\n').slice(1);
  const frame = frames.find((line) => !line.includes(import.meta.url));
  if (!frame) return 'an unknown place';
  const at = frame.trim().replace(/^at\s+/, '');
  return /\((.*)\)$/.exec(at)?.[1] ?? at;
}

/** An operation of a fused chain threw: which one (its index in the chain), and what. */
class OperationFailure {
  constructor(
    readonly position: number,
    readonly cause: unknown,
  ) {}
}

function assertFunction(fn: unknown, method: string): void {
  if (typeof fn !== 'function') throw new ConfigError(`${method} expects a function, got ${fn === null ? 'null' : typeof fn}`, { method });
}

/**
 * A discretized stream: a sequence of batches of records of type T. map/flatMap/filter
 * run on the main thread (the router's side); chains of them are fused into one pass.
 */
export abstract class DStream<T> {
  readonly id: number;

  constructor(protected readonly graph: StreamGraph) {
    this.id = graph.nextStreamId();
  }

  protected abstract compute(batch: BatchRun): Promise<T[]> | T[];

  /** How errors name this stream. */
  description(): string {
    return `stream ${this.id}`;
  }

  /** How errors name one of this stream's records: by its position unless the source knows better (Kafka: topic, partition, offset). */
  describeRecord(record: unknown, index: number, batchTime: number): RecordDescription {
    return { text: `record ${index} of batch ${batchTime} (${describeValue(record)})`, context: { batchTime, index } };
  }

  /** This stream's records for the batch, computed once per batch. */
  recordsFor(batch: BatchRun): Promise<T[]> {
    return batch.memo(this.id, () => this.compute(batch));
  }

  /** The same records, in order, as one or more arrays: what a map/flatMap/filter chain reads (a source may keep its records in pieces). */
  async piecesFor(batch: BatchRun): Promise<RecordPieces<T>> {
    return [await this.recordsFor(batch)];
  }

  /** The streams whose records this one is computed from (none for a source). */
  protected dependencies(): DStream<unknown>[] {
    return [];
  }

  /** Whether a batch's records can be computed from what the sources took, without any state stream. */
  readsSourcesOnly(): boolean {
    return this.dependencies().every((d) => d.readsSourcesOnly());
  }

  /** Whether computing this stream's records needs `stream`'s records. */
  readsRecordsOf(stream: DStream<unknown>): boolean {
    return this === (stream as DStream<unknown>) || this.dependencies().some((d) => d.readsRecordsOf(stream));
  }

  /**
   * Hands each of the batch's records to `sink`, then calls `end` in the same turn (before
   * anything else may run: another batch's routing waits for no promise). A stream whose
   * records nothing else reads streams them into the sink without keeping them (see
   * PipelineDStream).
   */
  async eachRecord(batch: BatchRun, sink: (record: T) => void, end?: () => void): Promise<void> {
    const records = await this.recordsFor(batch);
    for (let i = 0; i < records.length; i++) sink(records[i]);
    end?.();
  }

  /**
   * Hands each record to `sink` with the index of the record of `root()` it was made from:
   * what a cluster's stage 1 tags each pair with (its source position).
   */
  async eachRecordFrom(batch: BatchRun, sink: (record: T, from: number) => void): Promise<void> {
    const records = await this.recordsFor(batch);
    for (let i = 0; i < records.length; i++) sink(records[i], i);
  }

  /** The stream whose records this one's are made from by map/flatMap/filter alone (itself, for any other stream). */
  root(): DStream<unknown> {
    return this.source().base;
  }

  protected source(): { base: DStream<unknown>; ops: Op[] } {
    return { base: this as DStream<unknown>, ops: [] };
  }

  private derive<U>(op: Omit<Op, 'definedAt'>, method: string): DStream<U> {
    assertFunction(op.fn, method);
    this.graph.assertBuilding(method);
    const { base, ops } = this.source();
    return new PipelineDStream<U>(this.graph, base, [...ops, { ...op, definedAt: callSite() }]);
  }

  map<U>(fn: (record: T) => U): DStream<U> {
    return this.derive({ kind: 'map', fn: fn as Op['fn'] }, 'map');
  }

  flatMap<U>(fn: (record: T) => Iterable<U>): DStream<U> {
    return this.derive({ kind: 'flatMap', fn: fn as Op['fn'] }, 'flatMap');
  }

  filter(fn: (record: T) => unknown): DStream<T> {
    return this.derive({ kind: 'filter', fn: fn as Op['fn'] }, 'filter');
  }

  /** Runs `fn` with every batch's records, in batch order, empty batches included. */
  foreachBatch(fn: (records: T[], time: number) => void | Promise<void>): void {
    assertFunction(fn, 'foreachBatch');
    this.graph.assertBuilding('foreachBatch');
    this.graph.addOutput(this, fn);
  }

  mapWithState<K, V, S, M>(this: DStream<[K, V]>, spec: StateSpec<K, V, S, M>): MapWithStateStream<K, S, M> {
    this.graph.assertBuilding('mapWithState');
    return this.graph.mapWithState(this, spec);
  }
}

/**
 * Builds one function that pushes a record through every op into `sink`. Only the user's
 * own call is guarded, so a failure is pinned on the operation that threw and not on
 * those after it.
 */
function compile(ops: Op[], sink: (value: unknown) => void): (value: unknown) => void {
  let next = sink;
  for (let i = ops.length - 1; i >= 0; i--) {
    const { kind, fn } = ops[i];
    const downstream = next;
    const call = (v: unknown): unknown => {
      try {
        return fn(v);
      } catch (error) {
        throw new OperationFailure(i, error);
      }
    };
    if (kind === 'map') next = (v) => downstream(call(v));
    else if (kind === 'filter') next = (v) => void (call(v) && downstream(v));
    else {
      next = (v) => {
        const out = call(v) as Iterable<unknown>;
        if (out === null || typeof (out as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] !== 'function') {
          throw new OperationFailure(i, new TypeError(`flatMap function returned ${out === null ? 'null' : typeof out}, not an iterable`));
        }
        const items = out[Symbol.iterator]();
        for (;;) {
          let step: IteratorResult<unknown>;
          try {
            step = items.next();
          } catch (error) {
            throw new OperationFailure(i, error);
          }
          if (step.done) break;
          downstream(step.value);
        }
      };
    }
  }
  return next;
}

/**
 * A pipeline's sink between batches. Module-level on purpose: an arrow function made inside
 * pipe() shares pipe()'s context, which holds the batch's sink, and through it the shard
 * builder, the batch and its records, until the next batch replaces it.
 */
const noSink = (): void => undefined;

class PipelineDStream<T> extends DStream<T> {
  private readonly run: (value: unknown) => void;
  private sink: (value: unknown) => void = noSink;

  constructor(
    graph: StreamGraph,
    private readonly base: DStream<unknown>,
    private readonly ops: Op[],
  ) {
    super(graph);
    this.run = compile(ops, (v) => this.sink(v));
  }

  /** Streams the base's records through the ops straight into `sink`, keeping nothing (nothing else reads them). */
  override async eachRecord(batch: BatchRun, sink: (record: T) => void, end?: () => void): Promise<void> {
    if (batch.has(this.id)) return super.eachRecord(batch, sink, end);
    const input = await this.base.piecesFor(batch);
    this.pipe(input, sink as (value: unknown) => void, batch.time);
    end?.();
  }

  override async eachRecordFrom(batch: BatchRun, sink: (record: T, from: number) => void): Promise<void> {
    const input = await this.base.piecesFor(batch);
    this.pipe(input, sink as (value: unknown, from: number) => void, batch.time);
  }

  protected override source(): { base: DStream<unknown>; ops: Op[] } {
    return { base: this.base, ops: this.ops };
  }

  protected override dependencies(): DStream<unknown>[] {
    return [this.base];
  }

  protected async compute(batch: BatchRun): Promise<T[]> {
    const input = await this.base.piecesFor(batch);
    const out: unknown[] = [];
    this.pipe(input, (v) => out.push(v), batch.time);
    return out as T[];
  }

  /** Runs every input record through the ops into `sink` (with the record's index in the batch's input); a throwing op fails the batch, named. */
  private pipe(input: RecordPieces, sink: (value: unknown, from: number) => void, batchTime: number): void {
    // The index of the piece's first record, and the record's within the piece.
    let start = 0;
    let i = 0;
    this.sink = sink.length < 2 ? (sink as (value: unknown) => void) : (v) => sink(v, start + i);
    let piece: readonly unknown[] = [];
    try {
      for (piece of input) {
        for (i = 0; i < piece.length; i++) this.run(piece[i]);
        start += piece.length;
      }
    } catch (error) {
      throw error instanceof OperationFailure ? this.failure(error, piece[i], start + i, batchTime) : error;
    } finally {
      this.sink = noSink;
    }
  }

  /** Names the operation, where the program defined it, the batch and the source record it was working on. */
  private failure(failed: OperationFailure, record: unknown, index: number, batchTime: number): StreamOperationError {
    const op = this.ops[failed.position];
    const stream = this.base.description();
    const about = this.base.describeRecord(record, index, batchTime);
    const cause = failed.cause instanceof Error ? failed.cause.message : String(failed.cause);
    return new StreamOperationError(
      `${op.kind} (operation ${failed.position + 1} of the chain on ${stream}, defined at ${op.definedAt}) threw on ${about.text}: ${cause}`,
      { operation: op.kind, position: failed.position + 1, stream, definedAt: op.definedAt, ...about.context },
      failed.cause,
    );
  }
}
