/**
 * Runs the steps of a cleanup each one even when one before it fails, and keeps the first
 * failure to throw once all have run: a stop that gave up at its first failed close left the
 * workers alive (the process would not exit) and the other stores open.
 */
export class FirstFailure {
  private failed = false;
  private first: unknown;

  /** Runs `step`; a failure is kept, not thrown. */
  async run(step: () => unknown): Promise<void> {
    try {
      await step();
    } catch (error) {
      this.keep(error);
    }
  }

  runSync(step: () => unknown): void {
    try {
      step();
    } catch (error) {
      this.keep(error);
    }
  }

  private keep(error: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.first = error;
  }

  /** Throws the first failure kept, if any. */
  rethrow(): void {
    if (this.failed) throw this.first;
  }
}
