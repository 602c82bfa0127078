import { decodeEntry, type StoredEntry } from '../codec.js';
import type { StateMap } from './state-map.js';
import { KeyedMap } from './keyed-map.js';

/**
 * A durable map that can also hand over an entry's stored bytes (valid until its next read),
 * and hears of the batch's transaction: its end (inside it), its commit or abort, and a
 * store someone else wrote.
 */
export interface EncodedStateMap<S = unknown> extends StateMap<S> {
  getEncoded(key: unknown): Uint8Array | undefined;
  endBatch?(batchTime: number, keyCount: number): void;
  committed?(): void;
  aborted?(): void;
  reset?(): void;
}

/**
 * An object state kept as its stored bytes: the mapping function may change an object it
 * was given without calling update(), and that change must not outlive the call any more
 * than it does in LMDB. Each read decodes a fresh copy, as a read from LMDB would.
 */
class EncodedEntry {
  constructor(
    readonly bytes: Uint8Array,
    readonly time: number,
  ) {}
}

/** A primitive state is held as the [state, lastUpdated] pair `get` hands out; only `committed()` changes one. */
type Held<S> = StoredEntry<S> | EncodedEntry;

function isImmutable(state: unknown): boolean {
  return typeof state !== 'object' || state === null;
}

interface Staged<S> {
  key: unknown;
  /** What to hold after the commit; undefined: the key was removed. */
  next: Held<S> | undefined;
  /** The pair `get` handed out for this key, updated in place when it can be. */
  previous: StoredEntry<S> | undefined;
}

/**
 * A partition's working state in worker memory, over its LMDB map. Reads are served from
 * memory and fall through to LMDB on a miss; writes go to LMDB inside the batch's commit
 * transaction and reach memory only once that transaction has committed (`committed()`),
 * so memory never holds what LMDB does not.
 *
 * The bound is a number of entries. Two generations keep it without a per-read cost: new
 * and recently read entries go to the young map; when it is half the bound, it becomes the
 * old map and the previous old map (the keys not read since) is dropped. A key lives in
 * one generation at a time, and no map ever holds more than half the bound, far below
 * V8's 2^24 entries per Map.
 *
 * While memory holds every key the store holds (a new store, or once every key was read),
 * a key missing from memory is missing from the store too, and LMDB is not asked.
 */
export class MemoryStateMap<S = unknown> implements StateMap<S> {
  private young = new KeyedMap<Held<S>>();
  private old = new KeyedMap<Held<S>>();
  private staged: Staged<S>[] = [];
  private readonly half: number;
  private complete = false;
  /** Reads served from memory, and reads that went to LMDB. */
  hits = 0;
  misses = 0;

  constructor(
    private readonly durable: EncodedStateMap<S>,
    /** Entries kept at most; 0 keeps nothing (every read goes to LMDB). */
    readonly capacity: number,
  ) {
    this.half = Math.max(1, Math.floor(capacity / 2));
  }

  /** Entries held now. */
  get size(): number {
    return this.young.size + this.old.size;
  }

  /** Called before each batch with the store's key count (its batch log's): memory that has come to hold every stored key answers misses itself. */
  checkComplete(keyCount: number): void {
    if (!this.complete && this.capacity > 0) this.complete = this.size === keyCount;
  }

  get(key: unknown): StoredEntry<S> | undefined {
    let held = this.young.get(key);
    if (held === undefined) {
      held = this.old.get(key);
      if (held !== undefined) {
        this.old.delete(key);
        this.keep(key, held);
      }
    }
    if (held !== undefined) {
      this.hits++;
      return held instanceof EncodedEntry ? decodeEntry<S>(held.bytes) : held;
    }
    if (this.complete) return undefined;
    this.misses++;
    const bytes = this.durable.getEncoded(key);
    if (bytes === undefined) return undefined;
    const entry = decodeEntry<S>(bytes);
    if (this.capacity === 0) return entry;
    const fresh = isImmutable(entry[0]) ? entry : new EncodedEntry(bytes.slice(), entry[1]);
    this.keep(key, fresh);
    // Memory keeps a copy of the bytes, not `entry`: the caller may change it freely.
    return entry;
  }

  /** `previous` is what `get` returned for the key in this batch, if anything. */
  put(key: unknown, encoded: Uint8Array, entry?: StoredEntry<S>, previous?: StoredEntry<S>): void {
    this.durable.put(key, encoded);
    if (this.capacity === 0) return;
    const next = entry !== undefined && isImmutable(entry[0]) ? entry : new EncodedEntry(encoded.slice(), entry?.[1] ?? decodeEntry(encoded)[1]);
    this.staged.push({ key, next, previous });
  }

  remove(key: unknown): void {
    this.durable.remove(key);
    if (this.capacity > 0) this.staged.push({ key, next: undefined, previous: undefined });
  }

  /** Inside the batch's commit transaction, after its writes; `keyCount`: the keys the store holds after it. */
  endBatch(batchTime: number, keyCount: number): void {
    this.durable.endBatch?.(batchTime, keyCount);
  }

  /** The transaction holding the staged writes committed: memory follows. */
  committed(): void {
    this.durable.committed?.();
    for (const { key, next, previous } of this.staged) {
      if (next === undefined) {
        if (!this.young.delete(key)) this.old.delete(key);
      } else if (previous === undefined) {
        // Absent when the batch began, so absent from memory too.
        this.keep(key, next);
      } else if (Array.isArray(next) && isImmutable(previous[0])) {
        // A primitive before and after: `previous` is the pair memory holds (or held, if
        // evicted since, when changing it is harmless). Change it in place, no map write.
        previous[0] = next[0];
        previous[1] = next[1];
      } else {
        this.old.delete(key);
        if (this.young.get(key) !== undefined) this.young.set(key, next);
        else this.keep(key, next);
      }
    }
    this.staged = [];
  }

  /** The transaction was not committed: what it would have written never reaches memory. */
  aborted(): void {
    this.durable.aborted?.();
    this.staged = [];
  }

  /** Forgets everything: the store changed under this map (another writer, a restore). */
  clear(): void {
    this.durable.reset?.();
    this.young = new KeyedMap();
    this.old = new KeyedMap();
    this.staged = [];
    this.complete = false;
  }

  private keep(key: unknown, held: Held<S>): void {
    if (this.young.size >= this.half) {
      // The old generation's keys were not read since the last turn: they leave memory.
      if (this.old.size > 0) this.complete = false;
      this.old = this.young;
      this.young = new KeyedMap();
    }
    this.young.set(key, held);
  }
}
