import { ConfigError, InvalidRecordError } from '../errors.js';
import type { BatchRun } from './batch.js';
import type { StateSpec } from './state-spec.js';
import type { DeadLetter } from '../storage/partition/dead-letters.js';

/** What a stream needs of its context; the StreamingContext implements it. */
export interface StreamGraph {
  nextStreamId(): number;
  assertBuilding(what: string): void;
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

type Op = { kind: 'map' | 'filter' | 'flatMap'; fn: (value: unknown) => unknown };

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

  /** This stream's records for the batch, computed once per batch. */
  recordsFor(batch: BatchRun): Promise<T[]> {
    return batch.memo(this.id, () => this.compute(batch));
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
   * Hands each of the batch's records to `sink`. A stream whose records nothing else reads
   * streams them into the sink without keeping them (see PipelineDStream).
   */
  async eachRecord(batch: BatchRun, sink: (record: T) => void): Promise<void> {
    const records = await this.recordsFor(batch);
    for (let i = 0; i < records.length; i++) sink(records[i]);
  }

  protected source(): { base: DStream<unknown>; ops: Op[] } {
    return { base: this as DStream<unknown>, ops: [] };
  }

  private derive<U>(op: Op, method: string): DStream<U> {
    assertFunction(op.fn, method);
    this.graph.assertBuilding(method);
    const { base, ops } = this.source();
    return new PipelineDStream<U>(this.graph, base, [...ops, op]);
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

/** Builds one function that pushes a record through every op into `sink`. */
function compile(ops: Op[], sink: (value: unknown) => void, time: () => number): (value: unknown) => void {
  let next = sink;
  for (let i = ops.length - 1; i >= 0; i--) {
    const { kind, fn } = ops[i];
    const downstream = next;
    if (kind === 'map') next = (v) => downstream(fn(v));
    else if (kind === 'filter') next = (v) => void (fn(v) && downstream(v));
    else {
      next = (v) => {
        const out = fn(v) as Iterable<unknown>;
        if (out === null || typeof (out as { [Symbol.iterator]?: unknown })?.[Symbol.iterator] !== 'function') {
          throw new InvalidRecordError(`flatMap function returned ${out === null ? 'null' : typeof out}, not an iterable, in batch ${time()}`, { batchTime: time() });
        }
        for (const item of out) downstream(item);
      };
    }
  }
  return next;
}

class PipelineDStream<T> extends DStream<T> {
  private batchTime = 0;
  private readonly run: (value: unknown) => void;
  private sink: (value: unknown) => void = () => undefined;

  constructor(
    graph: StreamGraph,
    private readonly base: DStream<unknown>,
    private readonly ops: Op[],
  ) {
    super(graph);
    this.run = compile(ops, (v) => this.sink(v), () => this.batchTime);
  }

  /** Streams the base's records through the ops straight into `sink`, keeping nothing (nothing else reads them). */
  override async eachRecord(batch: BatchRun, sink: (record: T) => void): Promise<void> {
    if (batch.has(this.id)) return super.eachRecord(batch, sink);
    const input = await this.base.recordsFor(batch);
    this.batchTime = batch.time;
    this.sink = sink as (value: unknown) => void;
    try {
      for (let i = 0; i < input.length; i++) this.run(input[i]);
    } finally {
      this.sink = () => undefined;
    }
  }

  protected override source(): { base: DStream<unknown>; ops: Op[] } {
    return { base: this.base, ops: this.ops };
  }

  protected override dependencies(): DStream<unknown>[] {
    return [this.base];
  }

  protected async compute(batch: BatchRun): Promise<T[]> {
    const input = await this.base.recordsFor(batch);
    this.batchTime = batch.time;
    const out: unknown[] = [];
    this.sink = (v) => out.push(v);
    try {
      for (let i = 0; i < input.length; i++) this.run(input[i]);
    } finally {
      this.sink = () => undefined;
    }
    return out as T[];
  }
}
