import type { Key } from 'lmdb';
import { decodeEntry } from '../codec.js';
import { DeadLetterStore, type DeadLetter } from '../partition/dead-letters.js';
import type { PartitionStore } from '../partition/store.js';
import { TimeIndex } from '../partition/time-index.js';

/** Puts per LMDB transaction: one commit (and its page writes) per 10^4 entries, not per entry. */
const PUTS_PER_TRANSACTION = 10_000;

/** Buffers puts per new partition and writes each partition's share in one transaction. */
export class BatchedWriter {
  readonly keyCounts: number[];
  letters = 0;
  private entries: Array<Array<[Key, Buffer, number | undefined]>>;
  private moved: DeadLetter[][];
  private buffered = 0;
  private readonly indexes: TimeIndex[];

  /**
   * `keysMayRepeat`: an import may hold a key twice (files joined by hand, a tool's export);
   * the last one wins, its old time-index entry goes and it is counted once. A reshard's
   * keys are unique, and spares the read per key.
   */
  constructor(
    private readonly stores: PartitionStore[],
    private readonly timeIndexed: boolean,
    private readonly options: { keysMayRepeat?: boolean } = {},
  ) {
    this.keyCounts = stores.map(() => 0);
    this.entries = stores.map(() => []);
    this.moved = stores.map(() => []);
    this.indexes = stores.map((s) => new TimeIndex(s));
  }

  /** `value` is an encoded entry; give its lastUpdated when it is at hand, to spare decoding it for the time index. */
  putEntry(partition: number, key: Key, value: Buffer, lastUpdated?: number): void {
    this.entries[partition].push([key, value, lastUpdated]);
    this.keyCounts[partition]++;
    if (++this.buffered >= PUTS_PER_TRANSACTION) this.flush();
  }

  putLetter(partition: number, letter: DeadLetter): void {
    this.moved[partition].push(letter);
    this.letters++;
    if (++this.buffered >= PUTS_PER_TRANSACTION) this.flush();
  }

  flush(): void {
    this.stores.forEach((store, q) => {
      const entries = this.entries[q];
      const letters = this.moved[q];
      if (entries.length === 0 && letters.length === 0) return;
      const index = this.indexes[q];
      const deadLetters = new DeadLetterStore(store);
      store.env.transactionSync(() => {
        for (const [key, value, lastUpdated] of entries) {
          // Read inside the write transaction, so a repeat within this flush is seen too.
          const previous = this.options.keysMayRepeat ? store.state.getBinary(key) : undefined;
          if (previous !== undefined) {
            this.keyCounts[q]--;
            if (this.timeIndexed) index.remove(decodeEntry(previous)[1], key);
          }
          store.state.putSync(key, value);
          if (this.timeIndexed) index.add(lastUpdated ?? decodeEntry(value)[1], key);
        }
        for (const letter of letters) deadLetters.addMoved(letter);
      });
    });
    this.entries = this.stores.map(() => []);
    this.moved = this.stores.map(() => []);
    this.buffered = 0;
  }
}
