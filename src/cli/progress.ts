import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/**
 * Progress of long CLI work on stderr (stdout carries results, and `export --out -` the
 * export itself): a bar redrawn in place on a terminal, plain lines at most every
 * STATESTREAM_PROGRESS_INTERVAL_MS (default 2000) otherwise, and a last line when done
 * (unless the work was over before the first line was due).
 * `--quiet` turns it off.
 */
export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  sink?: ProgressSink;
  quiet?: boolean;
  /** Least time between two plain lines. */
  intervalMs?: number;
}

const BAR_REDRAW_MS = 100;

function intervalFromEnv(): number {
  const raw = process.env.STATESTREAM_PROGRESS_INTERVAL_MS;
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : 2000;
}

const fmt = (n: number) => n.toLocaleString('en-US');

export class Progress {
  private readonly sink: ProgressSink;
  private readonly tty: boolean;
  private readonly quiet: boolean;
  private readonly intervalMs: number;
  private readonly started = Date.now();
  /** When a line or the bar was last drawn; plain lines wait one interval from the start. */
  private lastAt: number;
  private printed = false;
  private done = 0;
  private drawn = false;

  constructor(
    private readonly label: string,
    private readonly unit: string,
    private readonly total: number | undefined,
    options: ProgressOptions = {},
  ) {
    this.sink = options.sink ?? process.stderr;
    this.tty = this.sink.isTTY === true;
    this.quiet = options.quiet === true;
    this.intervalMs = options.intervalMs ?? intervalFromEnv();
    this.lastAt = this.tty ? 0 : this.started;
  }

  /** `done` so far (of `total`, when known); drawn when enough time has passed. */
  update(done: number): void {
    this.done = done;
    if (this.quiet) return;
    const now = Date.now();
    if (now - this.lastAt < (this.tty ? BAR_REDRAW_MS : this.intervalMs)) return;
    this.lastAt = now;
    this.draw(false);
  }

  /** Adds to the count (for callers that see items one chunk at a time). */
  advance(by: number): void {
    this.update(this.done + by);
  }

  finish(done = this.done): void {
    this.done = done;
    if (this.quiet) return;
    // Work that ended before its first plain line needs no closing line either (scripts stay quiet).
    if (!this.tty && !this.printed && Date.now() - this.started < this.intervalMs) return;
    this.draw(true);
  }

  private draw(last: boolean): void {
    this.printed = true;
    const { total, done } = this;
    const pct = total ? Math.min(100, Math.floor((done / total) * 100)) : undefined;
    const count = total === undefined ? `${fmt(done)} ${this.unit}` : `${fmt(done)} of ${fmt(total)} ${this.unit}`;
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    if (this.tty) {
      const width = Math.max(10, Math.min(40, (this.sink.columns ?? 80) - 60));
      const filled = pct === undefined ? 0 : Math.round((pct / 100) * width);
      const bar = pct === undefined ? '' : ` [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}%`;
      this.sink.write(`\r\x1b[K${this.label}${bar} ${count}${last ? ` in ${seconds} s\n` : ''}`);
      this.drawn = !last;
      return;
    }
    this.sink.write(last ? `${this.label}: done, ${count} in ${seconds} s\n` : `${this.label}: ${count}${pct === undefined ? '' : ` (${pct}%)`}\n`);
  }

  /** Leaves the terminal's line clean when the work fails half-way (the error goes on its own line). */
  abandon(): void {
    if (this.tty && this.drawn) this.sink.write('\n');
    this.drawn = false;
  }
}

/** Counts items as they pass, reporting every `every` of them. */
export function* counted<T>(items: Iterable<T>, progress: Progress, every = 10_000): Generator<T> {
  let n = 0;
  for (const item of items) {
    yield item;
    if (++n % every === 0) progress.update(n);
  }
  progress.update(n);
}

/**
 * Copies a file a chunk at a time, counting each chunk: a restore of a few large partition
 * files (copyFileSync copies each whole) showed nothing for minutes.
 */
export function copyFileCounted(from: string, to: string, progress: Progress, chunkBytes = 8 << 20): void {
  const source = openSync(from, 'r');
  try {
    const target = openSync(to, 'w');
    try {
      const buffer = Buffer.allocUnsafe(chunkBytes);
      for (let read; (read = readSync(source, buffer, 0, chunkBytes, null)) > 0; ) {
        for (let written = 0; written < read; ) written += writeSync(target, buffer, written, read - written);
        progress.advance(read);
      }
    } finally {
      closeSync(target);
    }
  } finally {
    closeSync(source);
  }
}
