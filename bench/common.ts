import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { summarize, type Summary } from './stats.js';

const processStart = Date.now();
let budgetSeconds = Infinity;

/** Sets the run's time budget (quick mode), counted from the start of the process. */
export function setBudget(seconds: number): void {
  budgetSeconds = seconds;
}

/**
 * True once the run has used its time budget: scenarios then stop adding runs (after the
 * first) and say so in their notes, so quick mode stays under its limit on a busy machine.
 */
export function overBudget(): boolean {
  return (Date.now() - processStart) / 1000 > budgetSeconds;
}

/** Progress lines go to stderr, so stdout holds the tables. */
export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** The raw lmdb-js rates, and what they imply for one read-modify-write (a get and a put) per record. */
export interface RawBaseline {
  keys: number;
  put: Summary;
  get: Summary;
  /** Records per second if each costs one raw get and one raw put. */
  getPut: Summary;
}

/** The raw baseline as a rate figure (records/s). */
export function rawRate(raw: RawBaseline): Summary {
  return raw.getPut;
}

/** The raw baseline as a time figure: `records` raw gets and puts, in ms. */
export function rawTime(raw: RawBaseline, records: number): Summary | undefined {
  if (records === 0) return undefined;
  return summarize(raw.getPut.runs.map((rate) => (records / rate) * 1000));
}

/** Runs a synchronous baseline over batches at the runtime's batch times; returns per-batch ms. */
/** Each batch's time; `between` runs after each batch, outside its time (a memory sample of a loop that never yields). */
export function timeBatches(batches: readonly string[][], startTime: number, intervalMs: number, run: (time: number, batch: readonly string[]) => unknown, between?: () => void): number[] {
  const times: number[] = [];
  let time = startTime;
  for (const batch of batches) {
    time += intervalMs;
    const started = performance.now();
    run(time, batch);
    times.push(performance.now() - started);
    between?.();
  }
  return times;
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

export function pow10(n: number): string {
  const e = Math.log10(n);
  return Number.isInteger(e) ? `10^${e}` : n >= 1e6 && Number.isInteger(n / 1e6) ? `${n / 1e6}·10^6` : n >= 1e3 && Number.isInteger(n / 1e3) ? `${n / 1e3}·10^3` : String(n);
}

// A full collection between timed runs, so that one run's garbage is not collected in the
// next one's time (nor counted in its memory): node runs the bench without --expose-gc, so
// the flag is set here and gc() taken from a fresh context, where V8 then defines it.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/** Lets the event loop and the GC settle between timed runs. */
export async function settle(): Promise<void> {
  collect();
  await new Promise((resolve) => setTimeout(resolve, 50));
}

/** The keys a grown state holds: k0, k1, … (the first ones are the hot keys of the scaling scenario). */
export function keyName(i: number): string {
  return `k${i}`;
}

/**
 * Fresh keys `from`..`to`-1, in batches of `batchRecords`: how the scaling and snapshot
 * scenarios grow a state through the runtime (each key once, so the state gains a key per record).
 */
export function* freshKeyBatches(from: number, to: number, batchRecords: number): Generator<string[]> {
  for (let size = from; size < to; size += batchRecords) {
    const n = Math.min(batchRecords, to - size);
    yield Array.from({ length: n }, (_, i) => keyName(size + i));
  }
}
