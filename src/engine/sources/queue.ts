import { ConfigError, describeValue, unknownOption } from '../../errors.js';
import { joinPieces, type BatchRun, type RecordPieces } from '../batch.js';
import { DStream, type StreamGraph } from '../dstream.js';

export interface QueueStreamOptions {
  /** Each batch takes exactly one pushed batch (Spark's `oneAtATime`); otherwise it takes all that is queued. */
  oneAtATime?: boolean;
}

/**
 * Records per piece of a pushed batch's copy: an array of this many is an ordinary young
 * object (V8 makes one over 128 KB, 16 Ki elements, a large object on fresh pages).
 */
export const PIECE_RECORDS = 8192;

/** An input stream fed in-process: Spark's queueStream. Records pushed before a batch's time go into that batch. */
export class QueueInputDStream<T> extends DStream<T> {
  /** Each pushed batch, copied in pieces (see RecordPieces). */
  private readonly queue: T[][][] = [];
  readonly oneAtATime: boolean;

  constructor(graph: StreamGraph, options: QueueStreamOptions = {}) {
    super(graph);
    if (options === null || typeof options !== 'object') throw new ConfigError(`queueStream options must be an object, got ${describeValue(options)}`);
    const unknown = unknownOption(options, ['oneAtATime']);
    if (unknown !== undefined) throw new ConfigError(`queueStream: unknown option "${unknown}" (known: oneAtATime)`, { option: unknown });
    if (options.oneAtATime !== undefined && typeof options.oneAtATime !== 'boolean') {
      throw new ConfigError(`queueStream: oneAtATime must be a boolean, got ${describeValue(options.oneAtATime)}`, { option: 'oneAtATime' });
    }
    this.oneAtATime = options.oneAtATime ?? false;
  }

  push(...records: T[]): void {
    this.pushBatch(records);
  }

  pushBatch(records: Iterable<T>): void {
    this.graph.assertAccepting('queueStream.pushBatch');
    // A string is iterable as characters: push('a b a') is what was meant.
    if (records === null || typeof records === 'string' || typeof (records as Iterable<T>)?.[Symbol.iterator] !== 'function') {
      throw new ConfigError(`queueStream.pushBatch expects an iterable of records (push(record) for one), got ${describeValue(records)}`);
    }
    // Copied, so that the caller may reuse its array once this returns. Without oneAtATime
    // a batch takes everything queued, so small pushes (push(record) per record) fill the
    // last piece rather than each making one.
    const tail = this.oneAtATime ? undefined : this.queue.at(-1);
    const pieces: T[][] = tail ?? [];
    let piece: T[] | undefined = pieces.at(-1);
    const room = () => {
      if (piece === undefined || piece.length === PIECE_RECORDS) pieces.push((piece = []));
      return piece;
    };
    if (Array.isArray(records)) {
      let at = 0;
      if (piece !== undefined && piece.length < PIECE_RECORDS) {
        for (; at < records.length && piece.length < PIECE_RECORDS; at++) piece.push(records[at]);
      }
      for (; at < records.length; at += PIECE_RECORDS) pieces.push((piece = records.slice(at, at + PIECE_RECORDS)));
    } else {
      // An iterable that throws part way pushes nothing: the tail goes back to what it held.
      const held = pieces.length;
      const heldInLast = piece?.length ?? 0;
      try {
        for (const record of records) room().push(record);
      } catch (error) {
        pieces.length = held;
        if (held > 0) pieces[held - 1].length = heldInLast;
        throw error;
      }
    }
    if (tail === undefined) this.queue.push(pieces);
  }

  /** Records waiting for a batch. */
  get pending(): number {
    let n = 0;
    for (const pieces of this.queue) for (const piece of pieces) n += piece.length;
    return n;
  }

  /** Called by the scheduler at a batch's time: what this batch gets. */
  take(): RecordPieces<T> {
    if (this.oneAtATime) return this.queue.shift() ?? [];
    const all = this.queue.length === 1 ? this.queue[0] : this.queue.flat();
    this.queue.length = 0;
    return all;
  }

  override description(): string {
    return `queueStream ${this.id}`;
  }

  protected compute(batch: BatchRun): T[] {
    return joinPieces(this.piecesOf(batch));
  }

  /** The pushed pieces as they are, unless the batch's records were already joined for a reader that needs one array. */
  override async piecesFor(batch: BatchRun): Promise<RecordPieces<T>> {
    return batch.has(this.id) ? [await this.recordsFor(batch)] : this.piecesOf(batch);
  }

  private piecesOf(batch: BatchRun): RecordPieces<T> {
    return (batch.inputs.get(this.id) ?? []) as RecordPieces<T>;
  }
}
