import type { StoredEntry } from '../codec.js';
import { encodeEntry } from '../codec.js';
import type { StateMap } from './state-map.js';
import type { TimeIndex } from './time-index.js';
import { KeyedMap } from './keyed-map.js';

/**
 * One key of the batch's working set. The mapping loop holds on to it for every record of
 * its key, so a key touched many times costs one lookup; its fields change in place, so a
 * record allocates nothing here.
 */
export class Slot<S = unknown> {
  /** What the map held when the batch began (its lastUpdated is what the time index holds). */
  readonly original: StoredEntry<S> | undefined;
  readonly existed: boolean;
  readonly originalTime: number;
  state: S | undefined;
  time: number;
  exists: boolean;
  dirty = false;
  encoded: Uint8Array | undefined = undefined;

  constructor(
    readonly key: unknown,
    original: StoredEntry<S> | undefined,
  ) {
    this.original = original;
    this.existed = original !== undefined;
    this.originalTime = original?.[1] ?? 0;
    this.state = original?.[0];
    this.time = this.originalTime;
    this.exists = this.existed;
  }
}

/**
 * The batch's working set: a key touched many times in one batch is read once (from the
 * memory layer, or LMDB) and written once. Nothing reaches LMDB until flush(), which runs
 * inside the batch's single commit transaction, together with the matching time-index
 * changes.
 */
export class BatchCache<S> {
  /** Every slot of the batch, in the order first asked for. */
  private readonly list: Slot<S>[] = [];
  private readonly byKey = new KeyedMap<Slot<S>>();
  /** Slots of list[indexed…] were made by fresh() and are not in byKey yet. */
  private indexed = 0;
  private keyDelta = 0;

  constructor(
    private readonly map: StateMap<S>,
    /** Absent when the spec has no timeout: no sweep reads it, so it is not kept. */
    private readonly index: TimeIndex | undefined,
  ) {}

  private register(slot: Slot<S>): void {
    this.byKey.set(slot.key, slot);
  }

  private lookup(key: unknown): Slot<S> | undefined {
    while (this.indexed < this.list.length) this.register(this.list[this.indexed++]);
    return this.byKey.get(key);
  }

  /** The key's slot, read from the map the first time the batch asks for it. */
  slot(key: unknown): Slot<S> {
    let slot = this.lookup(key);
    if (!slot) {
      slot = new Slot<S>(key, this.map.get(key));
      this.list.push(slot);
      this.indexed++;
      this.register(slot);
    }
    return slot;
  }

  /**
   * A slot for a key the batch has not asked for yet (the caller knows: a shard names each
   * distinct key once), without a lookup. Lookups index it later, if any comes.
   */
  fresh(key: unknown): Slot<S> {
    const slot = new Slot<S>(key, this.map.get(key));
    this.list.push(slot);
    return slot;
  }

  private slots(): Slot<S>[] {
    return this.list;
  }

  get(key: unknown): StoredEntry<S> | undefined {
    const slot = this.slot(key);
    return slot.exists ? [slot.state as S, slot.time] : undefined;
  }

  has(key: unknown): boolean {
    return this.lookup(key) !== undefined;
  }

  put(key: unknown, state: S, time: number): void {
    this.putSlot(this.slot(key), state, time);
  }

  putSlot(slot: Slot<S>, state: S, time: number): void {
    if (!slot.exists) this.keyDelta++;
    slot.state = state;
    slot.time = time;
    slot.exists = true;
    slot.dirty = true;
  }

  remove(key: unknown): void {
    this.removeSlot(this.slot(key));
  }

  removeSlot(slot: Slot<S>): void {
    if (slot.exists) this.keyDelta--;
    slot.state = undefined;
    slot.exists = false;
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
      if (!slot.dirty || !slot.exists) continue;
      onEncode(slot.key, slot.state as S);
      slot.encoded = encodeEntry(slot.state, slot.time);
    }
  }

  /** What flush() will write: each changed key, with its encoded entry (after prepare()), or null when it goes. */
  changes(): { keys: unknown[]; entries: Array<Uint8Array | null> } {
    const keys: unknown[] = [];
    const entries: Array<Uint8Array | null> = [];
    for (const slot of this.slots()) {
      if (!slot.dirty || (!slot.exists && !slot.existed)) continue;
      keys.push(slot.key);
      entries.push(slot.exists ? (slot.encoded ?? encodeEntry(slot.state, slot.time)) : null);
    }
    return { keys, entries };
  }

  /** Writes the working set and its time-index changes. Must run inside the commit transaction. */
  flush(): void {
    const index = this.index;
    for (const slot of this.slots()) {
      if (!slot.dirty) continue;
      const { key } = slot;
      const moved = !slot.existed || !slot.exists || slot.time !== slot.originalTime;
      if (index && slot.existed && moved) index.remove(slot.originalTime, key);
      if (!slot.exists) {
        if (slot.existed) this.map.remove(key);
        continue;
      }
      this.map.put(key, slot.encoded ?? encodeEntry(slot.state, slot.time), slot);
      if (index && moved) index.add(slot.time, key);
    }
  }
}
