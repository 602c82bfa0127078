import type { Key, Transaction } from 'lmdb';
import { toBufferKey } from 'ordered-binary';
import { messageCodec } from '../codec.js';
import { KeyedMap } from './keyed-map.js';
import { readBinary } from './state-map.js';
import type { PartitionStore } from './store.js';

/**
 * A partition's change log: each batch's changed entries, appended as one record keyed by
 * the batch time, in the same transaction as the rest of the batch. Writing a hot key in
 * place rewrites the leaf page it sits on, and in a large state every hot key sits on a
 * page of its own; a record appends a few pages at the end of one tree instead. Once the
 * log holds enough, each batch's commit also folds its oldest record: the keys no newer
 * record changed are written in place and the record goes, so a key changed batch after
 * batch is written in place only once it cools (docs/decisions.md, "Changed keys go to a
 * change log").
 *
 * The state is the state database overlaid by the log, newest record first: every reader
 * of a store reads through `readEntry`/`readEntries`, or folds first.
 */
export type Change = [key: unknown, entry: Uint8Array | null];

/** A key's newest change in the log, with the batch time of the record that holds it. */
export type LoggedChange = [key: unknown, entry: Uint8Array | null, batchTime: number];

/** The log's newest change of each key: what overlays the state database. */
export type Overlay = KeyedMap<LoggedChange>;

/** One record of the log: its batch time and the keys it changed, in order. */
export interface LogRecord {
  batchTime: number;
  keys: unknown[];
}

function encodeChanges(changes: readonly Change[]): Buffer {
  return messageCodec.pack([changes.map((c) => c[0]), changes.map((c) => c[1])]) as Buffer;
}

function decodeChanges(bytes: Uint8Array): Change[] {
  // Each entry's bytes are a copy of their own (messageCodec copies bins), not a view of the read buffer.
  const [keys, entries] = messageCodec.unpack(bytes) as [unknown[], Array<Uint8Array | null>];
  return keys.map((key, i) => [key, entries[i]]);
}

/** Appends a batch's changes (inside the batch's write transaction). */
export function appendChanges(store: PartitionStore, batchTime: number, changes: readonly Change[]): void {
  store.changeLog.putSync(batchTime, encodeChanges(changes));
}

/** The number of records in the log. */
export function changeRecords(store: PartitionStore): number {
  return store.changeLog.getKeysCount();
}

/** The databases a reader of the state needs (a tool may open them on an environment of its own). */
export type StateDatabases = Pick<PartitionStore, 'state'> & { changeLog: PartitionStore['changeLog'] | undefined };

/** Every key the log changed, with its newest change, as the given read transaction (or the thread's current one) sees it. */
export function readOverlay(store: StateDatabases, transaction?: Transaction): Overlay {
  return readLog(store, transaction).overlay;
}

/** The overlay, and the log's records oldest first (what a writer folds from). */
export function readLog(store: StateDatabases, transaction?: Transaction): { overlay: Overlay; records: LogRecord[] } {
  const overlay: Overlay = new KeyedMap();
  const records: LogRecord[] = [];
  // A read-only environment of a store written before the log existed has no such database.
  if (!store.changeLog) return { overlay, records };
  for (const { key, value } of store.changeLog.getRange(transaction ? { transaction } : {})) {
    const batchTime = key as number;
    const changes = decodeChanges(value);
    for (const [changed, entry] of changes) overlay.set(changed, [changed, entry, batchTime]);
    records.push({ batchTime, keys: changes.map((c) => c[0]) });
  }
  return { overlay, records };
}

/**
 * Folds the log's oldest record (inside a write transaction): each of its keys whose newest
 * change it holds goes in place, the others are newer in a later record (or in `skip`, the
 * batch's own, when the caller says); then the record goes. Returns the keys written, which
 * the overlay drops once the transaction commits.
 */
export function foldOldest(store: PartitionStore, overlay: Overlay, record: LogRecord, skip?: KeyedMap<true>): unknown[] {
  const written: unknown[] = [];
  for (const key of record.keys) {
    const change = overlay.get(key);
    if (change === undefined || change[2] !== record.batchTime || skip?.get(key)) continue;
    writeOne(store, key, change[1]);
    written.push(key);
  }
  store.changeLog.removeSync(record.batchTime);
  return written;
}

/** Writes `changes` in place, in order, and empties the log when it holds records (inside a write transaction). */
export function foldInto(store: PartitionStore, changes: Iterable<Change | LoggedChange>, logged: boolean): void {
  for (const [key, entry] of changes) writeOne(store, key, entry);
  if (logged) emptyChangeLog(store);
}

/** Writes keys[i] ← entries[i] in place, in order (null removes), inside a write transaction; the log is left as it is. */
export function writeInPlace(store: PartitionStore, keys: readonly unknown[], entries: ReadonlyArray<Uint8Array | null>): void {
  for (let i = 0; i < keys.length; i++) writeOne(store, keys[i], entries[i]);
}

function writeOne(store: PartitionStore, key: unknown, entry: Uint8Array | null): void {
  if (entry === null) store.state.removeSync(key as Key);
  else store.state.putSync(key as Key, entry as Buffer);
}

/** Removes every record of the log (inside a write transaction). */
export function emptyChangeLog(store: PartitionStore): void {
  for (const key of [...store.changeLog.getKeys({})]) store.changeLog.removeSync(key);
}

/**
 * Folds the whole log into the state database, in a transaction of its own; nothing to do
 * when the log is empty. Run before anything writes entries in place (a migration, a
 * restore, a job's start), so that no older logged change can overlay what it writes.
 */
export function foldChangeLog(store: PartitionStore): void {
  store.env.resetReadTxn();
  if (changeRecords(store) === 0) return;
  store.env.transactionSync(() => foldInto(store, readOverlay(store).values(), true));
}

/** One key's stored entry, through the log (`overlay`: the log as read in `transaction`, when the caller keeps it). */
export function readEntry(store: PartitionStore, key: unknown, transaction?: Transaction, overlay?: Overlay): Uint8Array | undefined {
  const change = (overlay ?? readOverlay(store, transaction)).get(key);
  if (change) return change[1] ?? undefined;
  return readBinary(store, key as Key, transaction);
}

/**
 * A key as LMDB orders it: its encoded bytes. lmdb-js's compareKeys orders strings by
 * UTF-16 code units, LMDB by UTF-8 bytes, and the two disagree where a string holds a
 * character above U+FFFF ('😀') and another one from U+E000 to U+FFFF ('！').
 */
function keyBytes(key: unknown): Buffer {
  return toBufferKey(key as Key);
}

/** Every [key, stored entry] in LMDB's key order, the log overlaying the state database, in one read transaction. */
export function* readEntries(store: StateDatabases, transaction?: Transaction, overlay?: Overlay): Generator<[unknown, Uint8Array]> {
  const changes = [...(overlay ?? readOverlay(store, transaction)).values()]
    .map((change) => ({ change, bytes: keyBytes(change[0]) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes));
  let next = 0;
  for (const { key, value } of store.state.getRange(transaction ? { transaction } : {})) {
    // Merged in the order the state database yields its keys, or a changed key would come twice, once stale.
    const bytes = next < changes.length ? keyBytes(key) : undefined;
    for (; bytes && next < changes.length && Buffer.compare(changes[next].bytes, bytes) < 0; next++) {
      const [changed, entry] = changes[next].change;
      if (entry !== null) yield [changed, entry];
    }
    if (bytes && next < changes.length && Buffer.compare(changes[next].bytes, bytes) === 0) {
      const entry = changes[next].change[1];
      if (entry !== null) yield [key, entry];
      next++;
      continue;
    }
    yield [key, value as Uint8Array];
  }
  for (; next < changes.length; next++) {
    const [changed, entry] = changes[next].change;
    if (entry !== null) yield [changed, entry];
  }
}

/**
 * Several stores' entries (each in key order, as readEntries gives them) merged into one
 * stream in key order: LMDB's order, numbers before strings, strings by UTF-8 bytes.
 */
export function* entriesInKeyOrder(sources: Array<Iterator<[unknown, Uint8Array]>>): Generator<[unknown, Uint8Array]> {
  const head = (it: Iterator<[unknown, Uint8Array]>) => {
    const next = it.next();
    return next.done ? undefined : { entry: next.value, bytes: keyBytes(next.value[0]) };
  };
  const heads = sources.map(head);
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      if (heads[i] === undefined) continue;
      if (best < 0 || Buffer.compare(heads[i]!.bytes, heads[best]!.bytes) < 0) best = i;
    }
    if (best < 0) return;
    yield heads[best]!.entry;
    heads[best] = head(sources[best]);
  }
}
