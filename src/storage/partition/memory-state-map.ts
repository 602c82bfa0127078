import { copyBytes, decodeEntry, type StoredEntry } from '../codec.js';
import type { StateMap, WrittenEntry } from './state-map.js';
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
  /** Between batches: whether work the next commit would do can be done now instead, and one step of it (its own transaction). */
  hasIdleWork?(): boolean;
  idleWork?(): void;
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

/** A removal, or an object state's write, waiting for the commit: what memory holds after it. */
class StagedChange<S> {
  constructor(
    readonly key: unknown,
    /** Undefined: the key was removed. */
    readonly next: Held<S> | undefined,
    /** The pair `get` handed out for this key in this batch. */
    readonly original: StoredEntry<S> | undefined,
  ) {}
}

/**
 * A batch's writes until its commit. A primitive state's write is staged as the caller's own
 * record of it (the batch's working-set slot), so a changed key allocates nothing here:
 * a batch at vocabulary 10^6 changes tens of thousands of keys, and every object staged
 * for them lives until the commit, through young collections (docs/decisions.md).
 */
type Staged<S> = WrittenEntry<S> | StagedChange<S>;

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
 * A key the store did not hold enters memory on its write only until memory first turns
 * its generations (`admit`); after that, on its first read, like any key read from LMDB.
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
  /** Whether memory has turned its generations since it began (or was cleared): new keys then wait for a read. */
  private turned = false;
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
    const fresh = isImmutable(entry[0]) ? entry : new EncodedEntry(copyBytes(bytes), entry[1]);
    this.keep(key, fresh);
    // Memory keeps a copy of the bytes, not `entry`: the caller may change it freely.
    return entry;
  }

  put(key: unknown, encoded: Uint8Array, written: WrittenEntry<S>): void {
    this.durable.put(key, encoded, written);
    if (this.capacity === 0) return;
    if (isImmutable(written.state)) this.staged.push(written);
    else this.staged.push(new StagedChange(key, new EncodedEntry(copyBytes(encoded), written.time), written.original));
  }

  remove(key: unknown): void {
    this.durable.remove(key);
    if (this.capacity > 0) this.staged.push(new StagedChange<S>(key, undefined, undefined));
  }

  /** Inside the batch's commit transaction, after its writes; `keyCount`: the keys the store holds after it. */
  endBatch(batchTime: number, keyCount: number): void {
    this.durable.endBatch?.(batchTime, keyCount);
  }

  /** The transaction holding the staged writes committed: memory follows. */
  committed(): void {
    this.durable.committed?.();
    for (const staged of this.staged) {
      const { key, original } = staged;
      if (staged instanceof StagedChange) {
        if (staged.next === undefined) {
          if (!this.young.delete(key)) this.old.delete(key);
        } else this.replace(key, staged.next, original);
      } else if (original !== undefined && isImmutable(original[0])) {
        // A primitive before and after: `original` is the pair memory holds (or held, if
        // evicted since, when changing it is harmless). Change it in place, no map write.
        original[0] = staged.state as S;
        original[1] = staged.time;
      } else {
        this.replace(key, [staged.state as S, staged.time], original);
      }
    }
    this.staged = [];
  }

  /** Keys memory holds whose last update is at `since` or later, at most `limit`, the young generation's first. */
  keysUpdatedSince(since: number, limit: number): unknown[] {
    const keys: unknown[] = [];
    for (const generation of [this.young, this.old]) {
      for (const [key, held] of generation.entries()) {
        if (keys.length >= limit) return keys;
        if ((held instanceof EncodedEntry ? held.time : held[1]) >= since) keys.push(key);
      }
    }
    return keys;
  }

  /** Between batches: what the durable map would rather do now than in the next commit (memory is unchanged by it). */
  hasIdleWork(): boolean {
    return this.durable.hasIdleWork?.() ?? false;
  }

  idleWork(): void {
    this.durable.idleWork?.();
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
    this.turned = false;
  }

  /** Memory holds `held` for the key from now on (`original`: what it held when the batch began, if anything). */
  private replace(key: unknown, held: Held<S>, original: StoredEntry<S> | undefined): void {
    // Absent when the batch began, so absent from memory too.
    if (original === undefined) return this.admit(key, held);
    this.old.delete(key);
    if (this.young.get(key) !== undefined) this.young.set(key, held);
    else this.keep(key, held);
  }

  /**
   * A key new to the store enters memory until memory first turns its generations (it then
   * holds half its bound). From then on a new key stays in LMDB until it is read (a read
   * keeps it): new keys written once (a backfill, a burst of new ids) would fill the young
   * generation, and the next turn would drop the keys in use with the old one. So a run of
   * them leaves the keys in use where they are, as Caffeine's admission and RocksDB's
   * midpoint insertion keep a scan from flushing a cache. Memory then no longer holds every
   * stored key, so it is no longer complete.
   */
  private admit(key: unknown, held: Held<S>): void {
    if (this.turned) {
      this.complete = false;
      return;
    }
    this.keep(key, held);
  }

  private keep(key: unknown, held: Held<S>): void {
    if (this.young.size >= this.half) {
      // The old generation's keys were not read since the last turn: they leave memory.
      // A bound of 1 has no room for two generations of one: the young one leaves instead.
      const leaving = this.capacity > 1 ? this.old : this.young;
      if (leaving.size > 0) this.complete = false;
      if (this.capacity > 1) this.old = this.young;
      this.young = new KeyedMap();
      this.turned = true;
    }
    this.young.set(key, held);
  }
}
