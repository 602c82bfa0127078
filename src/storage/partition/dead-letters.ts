import type { SerializedError } from '../../errors.js';
import type { PartitionStore } from './store.js';

/** A record the mapping function kept failing on, kept instead of dropped. */
export interface DeadLetter {
  batchTime: number;
  partition: number;
  /** Position of the record within the partition's shard; timeouts follow the records. */
  index: number;
  key: unknown;
  value: unknown;
  timingOut: boolean;
  /** For a timeout call: the state the key held, which left the store with it. */
  state?: unknown;
  attempts: number;
  error: SerializedError;
}

export class DeadLetterStore {
  constructor(private readonly store: PartitionStore) {}

  add(letter: DeadLetter): void {
    this.store.deadLetters.putSync([letter.batchTime, letter.index], letter);
  }

  /**
   * A letter moved by a reshard. Letters of one batch from different old partitions can
   * share a record index and may land in the same new partition, so the old partition is
   * part of the key. A batch runs under one layout only, so (batch, partition, index) is
   * unique for good, and later batches are always newer than any moved letter.
   */
  addMoved(letter: DeadLetter): void {
    this.store.deadLetters.putSync([letter.batchTime, letter.partition, letter.index], letter);
  }

  *list(): Generator<DeadLetter> {
    for (const { value } of this.store.deadLetters.getRange({})) yield value as DeadLetter;
  }
}
