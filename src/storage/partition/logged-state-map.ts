import { decodeEntry, type StoredEntry } from '../codec.js';
import { appendChanges, foldInto, foldOldest, readLog, writeInPlace, type Change, type LogRecord, type LoggedChange, type Overlay } from './change-log.js';
import { KeyedMap } from './keyed-map.js';
import type { EncodedStateMap } from './memory-state-map.js';
import { LmdbStateMap } from './state-map.js';
import type { PartitionStore } from './store.js';

/** The log holds at most this many batches' records: past it, each commit folds the oldest… */
export const FOLD_EVERY_RECORDS = 16;
/**
 * …and records go until it holds at most this many distinct keys: the bound on the worker's
 * overlay of the log (beside it, each record's list of keys, up to 16 batches' changes).
 */
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
 * log as one record (change-log.ts); once the log is full, each commit folds its oldest
 * record, writing in place only the keys no later record changed. Reads see the state
 * database through the log, which this layer keeps in memory as it writes it (read from
 * LMDB when it begins, or after someone else wrote the store).
 *
 * Folding one record a batch, not the whole log every 16 batches, keeps any one batch's
 * share bounded: the whole log at once (up to 200 000 keys) made one batch in 16 several
 * times slower than the others at 10^7 keys (docs/decisions.md).
 */
export class LoggedStateMap<S = unknown> implements EncodedStateMap<S> {
  private readonly base: LmdbStateMap<S>;
  /** The log's newest change of each key, as committed; undefined until read. */
  private overlay: Overlay | undefined;
  /** The log's records, oldest first, as committed. */
  private records: LogRecord[] = [];
  /** The batch's changes, until its commit: keys and their entries (null: removed), side by side rather than a tuple each. */
  private stagedKeys: unknown[] = [];
  private stagedEntries: Array<Uint8Array | null> = [];
  /** What the batch's transaction did beside its writes: wrote everything in place (then the log is empty once it commits), or appended a record and folded the oldest ones. */
  private inPlace = false;
  private appended: number | undefined;
  private folded: unknown[][] = [];
  /** Keys the last batch brought into the log (changed, and not logged already): the room its successor will likely want. */
  private lastAdded = 0;

  constructor(
    private readonly store: PartitionStore,
    private readonly foldEvery = FOLD_EVERY_RECORDS,
    private readonly foldEntries = FOLD_ENTRIES,
  ) {
    this.base = new LmdbStateMap<S>(store);
  }

  /** Keys of the log this map holds in memory now (0 until it reads the log): what a reader of the store's log finds. */
  get loggedKeys(): number {
    return this.overlay?.size ?? 0;
  }

  private log(): Overlay {
    if (!this.overlay) ({ overlay: this.overlay, records: this.records } = readLog(this.store));
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
   * batch's changes become its log record, and the oldest records fold while the log holds
   * more than it may; or, in a state too small for the log to pay, they and the whole log
   * are written in place.
   */
  endBatch(batchTime: number, keyCount: number): void {
    const changed = this.stagedKeys.length;
    if (changed === 0) return;
    const overlay = this.log();
    if (keyCount >= LOG_WHEN_KEYS_PER_CHANGE * changed) {
      appendChanges(this.store, batchTime, this.staged());
      this.appended = batchTime;
      // The overlay after the commit holds at most this many keys: what it holds and the batch's.
      let entries = overlay.size + changed;
      let again: KeyedMap<true> | undefined;
      if (entries > this.foldEntries) {
        // Near the bound, counted exactly: a hot key, logged already, counted twice would fold
        // every record each batch and write it in place every time. A key this batch changes
        // again is left to its new record, neither written nor counted as leaving.
        again = new KeyedMap();
        entries = overlay.size;
        for (const key of this.stagedKeys) {
          again.set(key, true);
          if (overlay.get(key) === undefined) entries++;
        }
      }
      for (let i = 0; i < this.records.length && (this.records.length + 1 - i > this.foldEvery || entries > this.foldEntries); i++) {
        const written = foldOldest(this.store, overlay, this.records[i], again);
        this.folded.push(written);
        entries -= written.length;
      }
      return;
    }
    this.inPlace = true;
    if (this.records.length === 0) {
      writeInPlace(this.store, this.stagedKeys, this.stagedEntries);
      return;
    }
    const folded = new KeyedMap<Change | LoggedChange>();
    for (const change of overlay.values()) folded.set(change[0], change);
    for (const change of this.staged()) folded.set(change[0], change);
    foldInto(this.store, folded.values(), true);
  }

  /** The batch's transaction committed. */
  committed(): void {
    const overlay = this.overlay;
    if (this.inPlace) {
      if (this.records.length > 0) this.overlay = new KeyedMap();
      this.records = [];
    } else if (this.appended !== undefined && overlay) {
      const batchTime = this.appended;
      const before = overlay.size;
      let left = 0;
      for (let i = 0; i < this.stagedKeys.length; i++) {
        const key = this.stagedKeys[i];
        overlay.set(key, [key, this.stagedEntries[i], batchTime]);
      }
      this.folded.forEach((written, r) => (left += dropFolded(overlay, written, this.records[r].batchTime)));
      this.lastAdded = overlay.size - before + left;
      this.records.splice(0, this.folded.length);
      this.records.push({ batchTime, keys: this.stagedKeys });
    }
    this.aborted();
  }

  /**
   * Between batches: the next commit would fold (the log holds all the records it may, or
   * too little room for another batch's keys), so an idle turn may fold the oldest record
   * now, in a transaction of its own. The fold a commit does is the same one, only paid by
   * the batch: at 10^7 keys with batches over 10^6 of them, most of each batch's time
   * (docs/decisions.md, "The change log's fold runs between batches").
   */
  hasIdleWork(): boolean {
    if (!this.overlay || this.records.length === 0 || this.stagedKeys.length > 0) return false;
    if (this.records.length >= this.foldEvery) return true;
    // For room, never the newest record: its keys are the ones in use.
    return this.records.length > 1 && this.overlay.size + this.lastAdded > this.foldEntries;
  }

  idleWork(): void {
    if (!this.hasIdleWork()) return;
    const overlay = this.overlay!;
    const record = this.records[0];
    let written: unknown[] | undefined;
    this.store.env.transactionSync(() => {
      // The record is gone when someone else emptied the log (a restore, another owner): what this map knows is stale.
      if (this.store.changeLog.getBinary(record.batchTime) !== undefined) written = foldOldest(this.store, overlay, record);
    });
    if (!written) return this.reset();
    dropFolded(overlay, written, record.batchTime);
    this.records.shift();
  }

  /** The batch's transaction did not commit: the log is as it was. */
  aborted(): void {
    this.stagedKeys = [];
    this.stagedEntries = [];
    this.inPlace = false;
    this.appended = undefined;
    this.folded = [];
  }

  /** Someone else wrote the store (a restore, another owner): the log is read again. */
  reset(): void {
    this.overlay = undefined;
    this.records = [];
    this.aborted();
  }
}

/**
 * After a fold of the record of `batchTime` committed: the keys it wrote in place leave the
 * overlay, unless a later record (a batch's own included) changed them since. Returns how
 * many left.
 */
function dropFolded(overlay: Overlay, written: readonly unknown[], batchTime: number): number {
  let left = 0;
  for (const key of written) if (overlay.get(key)?.[2] === batchTime && overlay.delete(key)) left++;
  return left;
}
