import type { Transaction } from 'lmdb';
import { entriesInKeyOrder, readEntries, readEntry, readOverlay, type Overlay } from './change-log.js';
import { normalizeKey } from '../keys.js';
import { decodeEntry } from '../codec.js';
import { BatchLog } from './batch-log.js';
import type { PartitionStore } from './store.js';
import type { Partitioner } from '../../engine/partitioner.js';

/**
 * Queries on the live state, read on the main thread straight from LMDB. Each query
 * reads every partition through read transactions pinned when the last batch completed,
 * so it sees one consistent batch across partitions while the next batch commits.
 */
/** Read transactions for every partition, released once no query and no newer view needs them. */
class Pin {
  private users = 1;
  /** Each partition's change log as its transaction sees it, read at the first query that needs it. */
  private readonly overlays: Array<Overlay | undefined> = [];
  constructor(
    readonly txns: Array<Transaction | undefined>,
    private readonly stores: Array<PartitionStore | undefined>,
  ) {}
  overlay(partition: number): Overlay {
    return (this.overlays[partition] ??= readOverlay(this.stores[partition]!, this.txns[partition]));
  }
  retain(): this {
    this.users++;
    return this;
  }
  release(): void {
    if (--this.users === 0) this.txns.forEach((txn) => txn?.done());
  }
}

export class StateView<K, S> {
  private pin: Pin | undefined;

  constructor(
    /** One per partition; a cluster instance holds only the partitions it owns (the others undefined). */
    private readonly stores: Array<PartitionStore | undefined>,
    private readonly partitioner: Partitioner,
    /** Says what to do about a key of a partition this view does not hold (a cluster names its owner). */
    private readonly elsewhere: (partition: number, key: unknown) => Error = (partition) => new Error(`partition ${partition} is not held here`),
  ) {}

  /** Moves the view to what the stores hold now (called after each completed batch). */
  refresh(): void {
    const previous = this.pin;
    this.pin = new Pin(
      this.stores.map((store) => {
        if (!store) return undefined;
        store.env.resetReadTxn();
        return store.env.useReadTransaction();
      }),
      this.stores,
    );
    previous?.release();
  }

  release(): void {
    this.pin?.release();
    this.pin = undefined;
  }

  private current(): Pin {
    if (!this.pin) this.refresh();
    return this.pin!.retain();
  }

  get(key: K): S | undefined {
    key = normalizeKey(key);
    const partition = this.partitioner.partition(key, this.stores.length);
    const store = this.stores[partition];
    if (!store) throw this.elsewhere(partition, key);
    const pin = this.current();
    try {
      const bytes = readEntry(store, key, pin.txns[partition], pin.overlay(partition));
      return bytes === undefined ? undefined : decodeEntry<S>(bytes)[0];
    } finally {
      pin.release();
    }
  }

  /** Every [key, state], in key order (LMDB's order: numbers before strings, strings by bytes). */
  *entries(): Generator<[K, S]> {
    const pin = this.current();
    try {
      const sources = this.stores.flatMap((store, p) => (store ? [readEntries(store, pin.txns[p], pin.overlay(p))] : []));
      for (const [key, value] of entriesInKeyOrder(sources)) yield [key as K, decodeEntry<S>(value)[0]];
    } finally {
      pin.release();
    }
  }

  count(): number {
    const pin = this.current();
    try {
      return this.stores.reduce((total, store, p) => total + (store ? (new BatchLog(store).last(pin.txns[p])?.keyCount ?? 0) : 0), 0);
    } finally {
      pin.release();
    }
  }
}
