/** A batch a replayable source recorded before a crash and must run again first. */
export interface RecoveredBatch {
  batchTime: number;
  /** Exactly the records of that batch, rebuilt from the recorded positions. */
  records: unknown[];
}

/** What the scheduler needs of an input stream. Replayable sources implement the optional hooks. */
export interface InputStream {
  readonly id: number;
  /**
   * At a batch's time: the records this batch gets. `behind` is true while earlier batches
   * are still queued, so a source with a backlog can leave it where it is (backpressure).
   */
  take(batchTime: number, behind: boolean): unknown[];
  /** At start: connect, find positions, and rebuild the batch that was in flight, if any. */
  open?(context: { dataDir: string }): Promise<RecoveredBatch | undefined>;
  /** Before the batch runs: record where it comes from. */
  beforeBatch?(batchTime: number): Promise<void>;
  /** After every output of the batch ran and every state partition committed it. */
  afterBatch?(batchTime: number): Promise<void>;
  /** The context is stopping: stop waiting for unreachable services (the batch in flight is replayed next start). */
  interrupt?(): void;
  close?(): Promise<void>;
}
