import { ConfigError } from '../../errors.js';
import type { BatchRun } from '../batch.js';
import { DStream, type StreamGraph } from '../dstream.js';

export interface QueueStreamOptions {
  /** Each batch takes exactly one pushed batch (Spark's `oneAtATime`); otherwise it takes all that is queued. */
  oneAtATime?: boolean;
}

/** An input stream fed in-process: Spark's queueStream. Records pushed before a batch's time go into that batch. */
export class QueueInputDStream<T> extends DStream<T> {
  private readonly queue: T[][] = [];
  readonly oneAtATime: boolean;

  constructor(graph: StreamGraph, options: QueueStreamOptions = {}) {
    super(graph);
    if (options === null || typeof options !== 'object') throw new ConfigError(`queueStream options must be an object, got ${String(options)}`);
    if (options.oneAtATime !== undefined && typeof options.oneAtATime !== 'boolean') {
      throw new ConfigError(`queueStream: oneAtATime must be a boolean, got ${String(options.oneAtATime)}`, { option: 'oneAtATime' });
    }
    this.oneAtATime = options.oneAtATime ?? false;
  }

  push(...records: T[]): void {
    this.pushBatch(records);
  }

  pushBatch(records: Iterable<T>): void {
    if (records === null || typeof (records as Iterable<T>)?.[Symbol.iterator] !== 'function') {
      throw new ConfigError(`queueStream.pushBatch expects an iterable of records, got ${String(records)}`);
    }
    this.queue.push(Array.isArray(records) ? records.slice() : Array.from(records));
  }

  /** Records waiting for a batch. */
  get pending(): number {
    return this.queue.reduce((n, b) => n + b.length, 0);
  }

  /** Called by the scheduler at a batch's time: what this batch gets. */
  take(): T[] {
    if (this.oneAtATime) return this.queue.shift() ?? [];
    const all = this.queue.length === 1 ? this.queue[0] : this.queue.flat();
    this.queue.length = 0;
    return all;
  }

  override description(): string {
    return `queueStream ${this.id}`;
  }

  protected compute(batch: BatchRun): T[] {
    return (batch.inputs.get(this.id) ?? []) as T[];
  }
}
