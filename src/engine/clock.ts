import { describeValue } from '../errors.js';

/**
 * Where batch times come from. The scheduler asks to be called at a time; a system clock
 * uses timers, a manual clock fires when a test moves it, which makes batch times and
 * timeouts deterministic.
 */
export interface Clock {
  now(): number;
  /** Calls `callback` once the clock reaches `time`. The returned function cancels it. */
  schedule(time: number, callback: () => Promise<void> | void): () => void;
}

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  schedule(time: number, callback: () => Promise<void> | void): () => void {
    // A failed batch is reported by the context (events, awaitIdle); here it must not
    // become an unhandled rejection that takes the process down.
    const timer = setTimeout(() => Promise.resolve().then(callback).catch(() => undefined), Math.max(0, time - Date.now()));
    return () => clearTimeout(timer);
  }
}

interface Timer {
  time: number;
  seq: number;
  callback: () => Promise<void> | void;
}

/** Spark's ManualClock: time moves only when `advance` is called, and the batches that fall due run before it resolves. */
export class ManualClock implements Clock {
  private time: number;
  private timers: Timer[] = [];
  private seq = 0;

  constructor(startMs = 0) {
    if (!Number.isFinite(startMs)) throw new RangeError(`ManualClock: startMs must be a finite number, got ${describeValue(startMs)}`);
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  schedule(time: number, callback: () => Promise<void> | void): () => void {
    const timer = { time, seq: this.seq++, callback };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward by `ms` and resolves once every batch that fell due, and its outputs, has run. */
  async advance(ms: number): Promise<void> {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`ManualClock.advance: ms must be a finite number >= 0, got ${describeValue(ms)}`);
    const target = this.time + ms;
    try {
      for (;;) {
        const due = this.timers.filter((t) => t.time <= target).sort((a, b) => a.time - b.time || a.seq - b.seq)[0];
        if (!due) break;
        this.timers = this.timers.filter((t) => t !== due);
        this.time = Math.max(this.time, due.time);
        await due.callback();
      }
    } finally {
      // Another advance may have run on meanwhile (called before this one resolved): never back.
      this.time = Math.max(this.time, target);
    }
  }

  /** Moves time to `timeMs` (never backwards). */
  async setTime(timeMs: number): Promise<void> {
    if (!Number.isFinite(timeMs)) throw new RangeError(`ManualClock.setTime: timeMs must be a finite number, got ${describeValue(timeMs)}`);
    await this.advance(Math.max(0, timeMs - this.time));
  }
}
