import type { BatchRun } from './batch.js';

/**
 * The batches generated and not finished, run one at a time in batch order. While one runs,
 * the batch queued behind it may do its main-thread work ahead (mapped, routed, encoded),
 * but nothing of it reaches a worker before it runs itself, so each partition still gets its
 * batches in order.
 */
export class BatchLine {
  /**
   * Queued batches whose shards have not gone to the partitions yet, oldest first: the head
   * may be prepared ahead, once the batch before it has handed out its own.
   */
  private readonly waiting: BatchRun[] = [];
  private readonly prepared = new WeakSet<BatchRun>();
  private queued = 0;
  private jobs: Promise<void> = Promise.resolve();

  /** `run` runs a batch (its failure is the job's); `prepare` does a batch's main-thread work ahead, once at most. */
  constructor(
    private readonly run: (batch: BatchRun, takeError: unknown) => Promise<void>,
    private readonly prepare: (batch: BatchRun) => void,
  ) {}

  /** Earlier batches are still waiting behind the one running: sources with a backlog keep it. */
  get behind(): boolean {
    return this.queued > 1;
  }

  /** Settles once every batch queued so far has run, whether or not it failed. */
  get idle(): Promise<void> {
    return this.jobs;
  }

  /** Queues a batch behind the others; a batch whose records could not be taken fails with `takeError` when its turn comes. */
  queue(batch: BatchRun, takeError?: unknown): Promise<void> {
    this.queued++;
    if (takeError === undefined) this.waiting.push(batch);
    // Next in line behind the running batch: its main-thread work may start now.
    if (this.waiting.length === 1 && this.queued > 1) this.prepareAhead(batch);
    const job = this.jobs.then(() => this.run(batch, takeError)).finally(() => this.queued--);
    this.jobs = job.catch(() => undefined);
    return job;
  }

  /** Starts the main-thread work of the batch queued behind the running one, if any. */
  prepareNext(): void {
    if (this.waiting.length > 0) this.prepareAhead(this.waiting[0]);
  }

  /**
   * The batch's shards are about to go to the partitions (or it failed): it leaves the line.
   * Until then it stays first, so that a batch queued meanwhile is not routed ahead (a
   * synchronous loop of tens of milliseconds) while this one's shards, often routed
   * already, wait to reach the idle workers.
   */
  leave(batch: BatchRun): void {
    if (this.waiting[0] === batch) this.waiting.shift();
  }

  private prepareAhead(batch: BatchRun): void {
    // A rebuilt batch whose records are not taken yet is routed when it runs.
    if (this.prepared.has(batch) || !batch.loaded) return;
    this.prepared.add(batch);
    this.prepare(batch);
  }
}
