/** A deadline armed: when it passes, the worker threads are terminated (cutting). */
interface Armed {
  deadline: number;
  timeoutMs: number;
  timer: NodeJS.Timeout;
  cutting?: Promise<void>;
}

/**
 * A stop's deadline (stop({ timeoutMs })). Each call to stop() may give one, and the
 * earliest wins. When it passes, the output operations still pending are left behind
 * (`outputs` aborts with the timeout as its reason) and `cutThreads` terminates the worker
 * threads. Once the stop is over (`close`), nothing more is armed: a timer then would only
 * keep the process up.
 */
export class StopDeadline {
  private closed = false;
  private armed: Armed | undefined;
  private readonly outputsCut = new AbortController();

  constructor(private readonly cutThreads: (timeoutMs: number) => Promise<void>) {}

  /** Aborted, with the timeout as its reason, once the deadline has passed. */
  get outputs(): AbortSignal {
    return this.outputsCut.signal;
  }

  /** The timeout of a deadline that has passed and cut the threads, else undefined. */
  get passedMs(): number | undefined {
    return this.armed?.cutting ? this.armed.timeoutMs : undefined;
  }

  /** Arms the deadline `timeoutMs` from now, unless one armed already comes first. */
  arm(timeoutMs: number): void {
    if (this.closed) return;
    const deadline = Date.now() + timeoutMs;
    if (this.armed && this.armed.deadline <= deadline) return;
    clearTimeout(this.armed?.timer);
    const armed: Armed = {
      deadline,
      timeoutMs,
      timer: setTimeout(() => {
        this.outputsCut.abort(timeoutMs);
        armed.cutting = this.cutThreads(timeoutMs);
      }, timeoutMs),
    };
    this.armed = armed;
  }

  /** The stop is over: the deadline is disarmed, and no later call arms another. */
  close(): void {
    this.closed = true;
    clearTimeout(this.armed?.timer);
  }

  /** Closes, then waits for the threads a passed deadline began to terminate. */
  async done(): Promise<void> {
    this.close();
    await this.armed?.cutting;
  }
}
