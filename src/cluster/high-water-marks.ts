/**
 * Per source partition, the position of the last pair a state partition applied: a pair
 * (offset, n) is new when it comes after it. Stage 1 only ever re-sends pairs (a restart
 * reads again from the last position it recorded; a second reader of a source partition
 * sends the same pairs in the same order), so dropping what is not after the mark applies
 * each pair once. Kept in the partition's LMDB store, in the transaction of the state it
 * produced, and in each changelog batch-end record.
 */

/** Where a pair came from: the source record's topic, partition and offset, and which of its pairs it is. */
export interface PairOrigin {
  topic: string;
  partition: number;
  offset: number;
  /** The n-th pair the pipeline made of that record (a flatMap makes several). */
  n: number;
}

/** `topic:partition` → [offset, n] of the last pair applied. */
export type HighWaterMarks = Record<string, [offset: number, n: number]>;

export function sourceId(topic: string, partition: number): string {
  return `${topic}:${partition}`;
}

export class PairFilter {
  private readonly marks: Map<string, [number, number]>;

  constructor(marks: HighWaterMarks = {}) {
    this.marks = new Map(Object.entries(marks).map(([id, mark]) => [id, [mark[0], mark[1]]]));
  }

  /** Whether the pair is new; if so it becomes the mark. */
  admit(origin: PairOrigin): boolean {
    const id = sourceId(origin.topic, origin.partition);
    const mark = this.marks.get(id);
    if (mark !== undefined && (origin.offset < mark[0] || (origin.offset === mark[0] && origin.n <= mark[1]))) return false;
    this.marks.set(id, [origin.offset, origin.n]);
    return true;
  }

  snapshot(): HighWaterMarks {
    return Object.fromEntries([...this.marks].map(([id, mark]) => [id, [mark[0], mark[1]]]));
  }
}
