import { murmur2Ascii } from '../engine/partitioner.js';

const INITIAL_BITS = 12;
/**
 * The longest run of slots a lookup walks. At the table's load of at most a half, honest
 * keys walk a few slots, and 10^6 of them about 60 at most; only keys chosen to share their
 * hash's low bits walk more (the hash has a fixed seed, as Kafka's partitioner must, so such
 * keys are easy to make). Past this, the batch leaves the table for a Map, whose hash V8
 * seeds at random: bad keys cost a batch at most this many steps a record, never a walk
 * that grows with the batch.
 */
export const MAX_PROBE = 256;

/**
 * The distinct ASCII string keys of the batch being routed, with the code the shard builder
 * gave each: an open-addressing table on typed arrays, probed by murmur2 of the key, that a
 * stream keeps from batch to batch. A new batch only moves the stamp that marks a slot as
 * this batch's, so the table is not built again: a JavaScript Map made for each batch grew
 * through a dozen tables to the batch's size, each on fresh memory (at vocabulary 10^6,
 * about 2 MB of large-object pages a batch on the main thread, where a page costs about 10 µs
 * to fault in on the development machine), and hashed each key with V8's hash when murmur2
 * reads the same chars (docs/decisions.md, "Routing a batch: ASCII string keys in a table
 * the stream keeps").
 *
 * One batch at a time: a builder takes the table for its batch and gives it back at the
 * end; a builder that finds it taken (another batch being routed) keeps its keys in a Map.
 */
export class KeyTable {
  /** What `find` returns when a lookup walked past MAX_PROBE slots. */
  static readonly OVERLONG = -2;
  /** Batches that left the table for a Map because a lookup walked past MAX_PROBE slots. */
  overlong = 0;
  private mask = 0;
  private stamps = new Uint32Array(0);
  private hashes = new Int32Array(0);
  private codes = new Float64Array(0);
  private keys: Array<string | undefined> = [];
  /** The slots this batch filled, in order: what `release` empties (no batch keeps another's key strings alive). */
  private used = new Int32Array(0);
  private size = 0;
  private stamp = 0;
  private owner: object | undefined;

  constructor() {
    this.allocate(INITIAL_BITS);
  }

  /** Empty arrays of 2^bits slots (every stamp 0: no batch's). */
  private allocate(bits: number): void {
    const slots = 1 << bits;
    this.mask = slots - 1;
    this.stamps = new Uint32Array(slots);
    this.hashes = new Int32Array(slots);
    this.codes = new Float64Array(slots);
    this.keys = new Array<string | undefined>(slots).fill(undefined);
    this.used = new Int32Array(slots / 2);
  }

  /** Takes the table for one batch; false when another batch holds it. */
  acquire(owner: object): boolean {
    if (this.owner !== undefined) return false;
    this.owner = owner;
    this.size = 0;
    if (++this.stamp > 0xffffffff) {
      this.stamps.fill(0);
      this.stamp = 1;
    }
    return true;
  }

  /**
   * Gives the table back, forgetting the batch's keys. A table that a batch filled to less
   * than a sixteenth is made smaller again, so that one large batch does not leave its
   * table (about 50 bytes a slot) on the main thread for good.
   */
  release(owner: object): void {
    if (this.owner !== owner) return;
    const slots = this.mask + 1;
    if (slots > 1 << INITIAL_BITS && this.size * 16 < slots) {
      let bits = INITIAL_BITS;
      while (1 << bits < this.size * 4) bits++;
      this.allocate(bits);
    } else {
      for (let i = 0; i < this.size; i++) this.keys[this.used[i]] = undefined;
    }
    this.size = 0;
    this.owner = undefined;
  }

  /** Back to its first size, unless a batch holds it (what a batch with no records does: a stream gone idle keeps no large table). */
  compact(): void {
    if (this.owner === undefined && this.mask + 1 > 1 << INITIAL_BITS) this.allocate(INITIAL_BITS);
  }

  /** Slots in the table now. */
  get capacity(): number {
    return this.mask + 1;
  }

  /** murmur2 of an ASCII key; undefined for a key the table does not take (another type, or not ASCII). */
  static hash(key: unknown): number | undefined {
    return typeof key === 'string' ? murmur2Ascii(key) : undefined;
  }

  /** The key's code in this batch; -1 for a key it does not hold; OVERLONG when the walk passed MAX_PROBE slots (the caller leaves the table). */
  find(key: string, hash: number): number {
    const { stamps, keys, mask, stamp } = this;
    for (let j = hash & mask, steps = 0; ; j = (j + 1) & mask) {
      if (stamps[j] !== stamp) return -1;
      if (keys[j] === key) return this.codes[j];
      if (++steps > MAX_PROBE) return KeyTable.OVERLONG;
    }
  }

  /** This batch's keys and their codes, in the order they came: what a builder leaving the table carries over to its Map. */
  *entries(): Generator<[string, number]> {
    for (let i = 0; i < this.size; i++) {
      const j = this.used[i];
      yield [this.keys[j]!, this.codes[j]];
    }
  }

  /** Records a key `find` did not know. */
  insert(key: string, hash: number, code: number): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.grow();
    this.place(key, hash, code);
  }

  private place(key: string, hash: number, code: number): void {
    const { stamps, mask, stamp } = this;
    let j = hash & mask;
    while (stamps[j] === stamp) j = (j + 1) & mask;
    stamps[j] = stamp;
    this.hashes[j] = hash;
    this.codes[j] = code;
    this.keys[j] = key;
    this.used[this.size++] = j;
  }

  /** Twice the slots, this batch's keys placed again (the table keeps its size for the batches after). */
  private grow(): void {
    const { stamps, hashes, codes, keys, used, size, stamp } = this;
    this.allocate(Math.log2(this.mask + 1) + 1);
    this.size = 0;
    for (let i = 0; i < size; i++) {
      const j = used[i];
      if (stamps[j] === stamp) this.place(keys[j]!, hashes[j], codes[j]);
    }
  }
}
