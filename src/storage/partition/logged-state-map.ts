import { decodeEntry, type StoredEntry } from '../codec.js';
import { appendChanges, changeRecords, foldInto, readOverlay, writeInPlace, type Change, type Overlay } from './change-log.js';
import { KeyedMap } from './keyed-map.js';
import type { EncodedStateMap } from './memory-state-map.js';
import { LmdbStateMap } from './state-map.js';
import type { PartitionStore } from './store.js';

/** A fold writes the log in place once it holds this many batches' records… */
export const FOLD_EVERY_RECORDS = 16;
/** …or this many distinct keys (what the log costs in worker memory, at most, between folds). */
export const FOLD_ENTRIES = 200_000;
/**
 * A batch's changes are logged only in a state this many times larger than they are. In a
 * smaller one they share leaf pages (a leaf holds about a hundred word-sized entries), so
 * writing them in place rewrites no more pages than a fold would, and the log would only
 * add the work of encoding them twice.
 */
export const LOG_WHEN_KEYS_PER_CHANGE = 100;

/**
 * The partition's durable map as the worker writes it: a batch's changes go to the change
 * log as one record (change-log.ts), and are folded into the state database every few
 * batches, inside a batch's commit. Reads see the state database through the log, which
 * this layer keeps in memory as it writes it (read from LMDB when it begins, or after
 * someone else wrote the store).
 */
export class LoggedStateMap<S = unknown> implements EncodedStateMap<S> {
  private readonly base: LmdbStateMap<S>;
  /** The log's newest change of each key, as committed; undefined until read. */
  private overlay: Overlay | undefined;
  private records = 0;
  /** The batch's changes, until its commit: keys and their entries (null: removed), side by side rather than a tuple each. */
  private stagedKeys: unknown[] = [];
  private stagedEntries: Array<Uint8Array | null> = [];
  /** Whether the batch's transaction wrote in place (then the log is empty once it commits). */
  private inPlace = false;

  constructor(
    private readonly store: PartitionStore,
    private readonly foldEvery = FOLD_EVERY_RECORDS,
    private readonly foldEntries = FOLD_ENTRIES,
  ) {
    this.base = new LmdbStateMap<S>(store);
  }

  private log(): Overlay {
    if (!this.overlay) {
      this.overlay = readOverlay(this.store);
      this.records = changeRecords(this.store);
    }
    return this.overlay;
  }

  get(key: unknown): StoredEntry<S> | undefined {
    const bytes = this.getEncoded(key);
    return bytes === undefined ? undefined : decodeEntry<S>(bytes);
  }

  getEncoded(key: unknown): Uint8Array | undefined {
    const change = this.log().get(key);
    if (change) return change[1] ?? undefined;
    return this.base.getEncoded(key);
  }

  put(key: unknown, encoded: Uint8Array): void {
    this.stagedKeys.push(key);
    this.stagedEntries.push(encoded);
  }

  remove(key: unknown): void {
    this.stagedKeys.push(key);
    this.stagedEntries.push(null);
  }

  /** The staged changes as the log's records hold them. */
  private staged(): Change[] {
    return this.stagedKeys.map((key, i): Change => [key, this.stagedEntries[i]]);
  }

  /**
   * Inside the batch's commit transaction, `keyCount` the keys the store holds after it: the
   * batch's changes become its log record; or, in a state too small for the log to pay, or
   * once the log has grown, they and the whole log are written in place.
   */
  endBatch(batchTime: number, keyCount: number): void {
    const changed = this.stagedKeys.length;
    if (changed === 0) return;
    const overlay = this.log();
    const logged = keyCount >= LOG_WHEN_KEYS_PER_CHANGE * changed;
    if (logged && this.records + 1 < this.foldEvery && overlay.size + changed < this.foldEntries) {
      appendChanges(this.store, batchTime, this.staged());
      return;
    }
    this.inPlace = true;
    if (this.records === 0) {
      writeInPlace(this.store, this.stagedKeys, this.stagedEntries);
      return;
    }
    const folded: Overlay = new KeyedMap();
    for (const change of overlay.values()) folded.set(change[0], change);
    for (const change of this.staged()) folded.set(change[0], change);
    foldInto(this.store, folded.values(), true);
  }

  /** The batch's transaction committed. */
  committed(): void {
    if (this.inPlace) {
      if (this.records > 0) this.overlay = new KeyedMap();
      this.records = 0;
    } else if (this.stagedKeys.length > 0 && this.overlay) {
      for (const change of this.staged()) this.overlay.set(change[0], change);
      this.records++;
    }
    this.aborted();
  }

  /** The batch's transaction did not commit: the log is as it was. */
  aborted(): void {
    this.stagedKeys = [];
    this.stagedEntries = [];
    this.inPlace = false;
  }

  /** Someone else wrote the store (a restore, another owner): the log is read again. */
  reset(): void {
    this.overlay = undefined;
    this.aborted();
  }
}
