import type { StoredEntry } from '../codec.js';
import { encodeEntry } from '../codec.js';
import type { StateMap } from './state-map.js';
import type { TimeIndex } from './time-index.js';

interface CachedKey<S> {
  key: unknown;
  /** What the store held when the batch began (its lastUpdated is what the index holds). */
  original: StoredEntry<S> | undefined;
  current: StoredEntry<S> | undefined;
  dirty: boolean;
  encoded: Buffer | undefined;
}

/**
 * The batch's working set: a key touched many times in one batch is read from LMDB once
 * and written once. Nothing reaches LMDB until flush(), which runs inside the batch's
 * single commit transaction, together with the matching time-index changes.
 */
export class BatchCache<S> {
  /** Scalar keys are Map keys as they are; array keys by their JSON text, in a map of their own so they never meet a string key. */
  private readonly scalars = new Map<unknown, CachedKey<S>>();
  private readonly arrays = new Map<string, CachedKey<S>>();
  private keyDelta = 0;

  constructor(
    private readonly map: StateMap<S>,
    /** Absent when the spec has no timeout: no sweep reads it, so it is not kept. */
    private readonly index: TimeIndex | undefined,
  ) {}

  private lookup(key: unknown): CachedKey<S> | undefined {
    return Array.isArray(key) ? this.arrays.get(JSON.stringify(key)) : this.scalars.get(key);
  }

  private slot(key: unknown): CachedKey<S> {
    let slot = this.lookup(key);
    if (!slot) {
      const original = this.map.get(key);
      slot = { key, original, current: original, dirty: false, encoded: undefined };
      if (Array.isArray(key)) this.arrays.set(JSON.stringify(key), slot);
      else this.scalars.set(key, slot);
    }
    return slot;
  }

  private *slots(): Generator<CachedKey<S>> {
    yield* this.scalars.values();
    yield* this.arrays.values();
  }

  get(key: unknown): StoredEntry<S> | undefined {
    return this.slot(key).current;
  }

  has(key: unknown): boolean {
    return this.lookup(key) !== undefined;
  }

  put(key: unknown, state: S, time: number): void {
    const slot = this.slot(key);
    if (slot.current === undefined) this.keyDelta++;
    slot.current = [state, time];
    slot.dirty = true;
  }

  remove(key: unknown): void {
    const slot = this.slot(key);
    if (slot.current !== undefined) this.keyDelta--;
    slot.current = undefined;
    slot.dirty = true;
  }

  /** Net change in the number of keys once flushed. */
  get keyCountDelta(): number {
    return this.keyDelta;
  }

  /**
   * Encodes every changed entry before the commit transaction opens, so a state that
   * cannot be stored fails the batch with the key named and the store untouched.
   */
  prepare(onEncode: (key: unknown, state: S) => void): void {
    for (const slot of this.slots()) {
      if (!slot.dirty || slot.current === undefined) continue;
      onEncode(slot.key, slot.current[0]);
      slot.encoded = encodeEntry(slot.current[0], slot.current[1]);
    }
  }

  /** Writes the working set and its time-index changes. Must run inside the commit transaction. */
  flush(): void {
    for (const slot of this.slots()) {
      if (!slot.dirty) continue;
      const { key, original: before, current: after } = slot;
      if (this.index && before !== undefined && (after === undefined || after[1] !== before[1])) this.index.remove(before[1], key);
      if (after === undefined) {
        if (before !== undefined) this.map.remove(key);
        continue;
      }
      this.map.put(key, slot.encoded ?? encodeEntry(after[0], after[1]));
      if (this.index && (before === undefined || after[1] !== before[1])) this.index.add(after[1], key);
    }
  }
}

