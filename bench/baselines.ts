import { performance } from 'node:perf_hooks';
import { open, type Database, type RootDatabase } from 'lmdb';
import type { State } from '../src/index.js';
import wordCount from './word-count-fn.js';

/**
 * The baselines, measured in the same run on the same input as the runtime:
 * - MapLoop: one thread, a JS Map, no durability;
 * - LmdbLoop: one thread, the same mapping function, each batch committed to one LMDB
 *   database (lmdb-js, one transaction per batch, opened as the runtime opens its stores);
 * - rawLmdbRates: lmdb-js put and get rates in one transaction.
 * Both loops call the same word-count function the runtime loads on its workers.
 */

/** The State handle the baselines give the mapping function (Spark's contract, minus its error messages). */
class LoopState<S> implements State<S> {
  private value: S | undefined;
  private defined = false;
  private timingOut = false;
  updated = false;
  removed = false;

  wrap(value: S | undefined, timingOut = false): void {
    this.value = value;
    this.defined = value !== undefined;
    this.timingOut = timingOut;
    this.updated = false;
    this.removed = false;
  }

  exists(): boolean {
    return this.defined;
  }

  get(): S {
    if (!this.defined) throw new Error('State.get(): no state');
    return this.value as S;
  }

  getOption(): S | undefined {
    return this.value;
  }

  update(value: S): void {
    if (this.timingOut || this.removed) throw new Error('State.update(): not allowed');
    this.value = value;
    this.defined = true;
    this.updated = true;
  }

  remove(): void {
    if (this.timingOut || this.removed) throw new Error('State.remove(): not allowed');
    this.value = undefined;
    this.defined = false;
    this.removed = true;
  }

  isTimingOut(): boolean {
    return this.timingOut;
  }

  /** The state after the call. */
  get current(): S | undefined {
    return this.value;
  }
}

/** Word count over a JS Map, one thread, nothing written anywhere. */
export class MapLoop {
  readonly state = new Map<string, number>();
  /** Batch time of each key's last record, kept only when timeouts are measured. */
  private readonly times: Map<string, number> | undefined;
  private readonly handle = new LoopState<number>();

  constructor(options: { trackTimes?: boolean } = {}) {
    this.times = options.trackTimes ? new Map() : undefined;
  }

  batch(time: number, words: readonly string[]): Array<[string, number]> {
    const { state, times, handle } = this;
    const out: Array<[string, number]> = [];
    for (let i = 0; i < words.length; i++) {
      const word = words[i];
      handle.wrap(state.get(word));
      const mapped = wordCount(time, word, 1, handle);
      if (handle.removed) state.delete(word);
      else if (handle.updated) state.set(word, handle.current!);
      if (times) {
        if (handle.removed) times.delete(word);
        else times.set(word, time);
      }
      if (mapped !== undefined) out.push(mapped);
    }
    return out;
  }

  /** The obvious sweep without a time index: scan every key. Returns the outputs of the expired keys. */
  sweep(time: number, idleMs: number): Array<[string, number]> {
    if (!this.times) throw new Error('MapLoop.sweep needs trackTimes');
    const threshold = time - idleMs;
    const out: Array<[string, number]> = [];
    for (const [word, last] of this.times) {
      if (last >= threshold) continue;
      this.handle.wrap(this.state.get(word), true);
      const mapped = wordCount(time, word, undefined, this.handle);
      if (mapped !== undefined) out.push(mapped);
      this.state.delete(word);
      this.times.delete(word);
    }
    return out;
  }

  /** Replaces the state with every entry of an LMDB loop's database (a durable Map's restart). */
  loadFrom(loop: LmdbLoop): void {
    this.state.clear();
    for (const { key, value } of loop.db.getRange()) this.state.set(key, (Array.isArray(value) ? value[0] : value) as number);
  }
}

interface Slot {
  value: number | undefined;
  dirty: boolean;
}

/**
 * Word count over one LMDB database: a batch reads each distinct key once, applies the
 * mapping function record by record in a Map, then writes the changed keys in one
 * synchronous transaction. With trackTimes a value is [count, lastBatchTime].
 */
export class LmdbLoop {
  readonly env: RootDatabase;
  readonly db: Database<number | [number, number], string>;
  private readonly trackTimes: boolean;
  private readonly handle = new LoopState<number>();

  constructor(path: string, options: { trackTimes?: boolean } = {}) {
    this.env = open({ path, maxDbs: 8, noSubdir: false }); // as src/storage/partition-store.ts opens a partition
    this.db = this.env.openDB<number | [number, number], string>({ name: 'state' });
    this.trackTimes = options.trackTimes ?? false;
  }

  private read(word: string): number | undefined {
    const stored = this.db.get(word);
    return stored === undefined ? undefined : Array.isArray(stored) ? stored[0] : stored;
  }

  batch(time: number, words: readonly string[]): Array<[string, number]> {
    const { handle, trackTimes, db } = this;
    const cache = new Map<string, Slot>();
    const out: Array<[string, number]> = [];
    for (let i = 0; i < words.length; i++) {
      const word = words[i];
      let slot = cache.get(word);
      if (!slot) cache.set(word, (slot = { value: this.read(word), dirty: trackTimes }));
      handle.wrap(slot.value);
      const mapped = wordCount(time, word, 1, handle);
      if (handle.removed || handle.updated) {
        slot.value = handle.current;
        slot.dirty = true;
      }
      if (mapped !== undefined) out.push(mapped);
    }
    db.transactionSync(() => {
      for (const [word, slot] of cache) {
        if (!slot.dirty) continue;
        if (slot.value === undefined) db.removeSync(word);
        else db.putSync(word, trackTimes ? [slot.value, time] : slot.value);
      }
    });
    return out;
  }

  /** The obvious sweep without a time index: scan the whole database, remove the expired keys in one transaction. */
  sweep(time: number, idleMs: number): Array<[string, number]> {
    const threshold = time - idleMs;
    const expired: Array<[string, number]> = [];
    for (const { key, value } of this.db.getRange()) {
      if (Array.isArray(value) && value[1] < threshold) expired.push([key, value[0]]);
    }
    const out: Array<[string, number]> = [];
    for (const [word, count] of expired) {
      this.handle.wrap(count, true);
      const mapped = wordCount(time, word, undefined, this.handle);
      if (mapped !== undefined) out.push(mapped);
    }
    this.db.transactionSync(() => {
      for (const [word] of expired) this.db.removeSync(word);
    });
    return out;
  }

  count(): number {
    return this.db.getCount();
  }

  close(): Promise<void> {
    return this.env.close();
  }
}

export interface RawRates {
  putPerS: number;
  getPerS: number;
}

/** lmdb-js put rate (one synchronous transaction of `keys.length` puts) and get rate (the same keys, one read transaction). */
export function rawLmdbRates(path: string, keys: readonly string[]): RawRates {
  const env = open({ path, maxDbs: 8, noSubdir: false });
  const db = env.openDB<number, string>({ name: 'raw' });
  try {
    let started = performance.now();
    db.transactionSync(() => {
      for (let i = 0; i < keys.length; i++) db.putSync(keys[i], i);
    });
    const putMs = performance.now() - started;
    started = performance.now();
    let sum = 0;
    for (let i = 0; i < keys.length; i++) sum += db.get(keys[i]) ?? 0;
    const getMs = performance.now() - started;
    if (sum !== (keys.length * (keys.length - 1)) / 2) throw new Error('rawLmdbRates: read back the wrong values');
    return { putPerS: (keys.length / putMs) * 1000, getPerS: (keys.length / getMs) * 1000 };
  } finally {
    void env.close();
  }
}
