import { randomUUID } from 'node:crypto';
import { messageCodec } from '../storage/codec.js';
import type { DeadLetter } from '../storage/partition/dead-letters.js';
import type { HighWaterMarks } from './high-water-marks.js';

/**
 * The changelog of a state partition (partition p of `<app>-<stream>-changelog`): what a
 * new owner restores from. Each record carries the epoch of the owner that wrote it.
 *
 *   entry      key = the state key (MessagePack), value { e, t, v }: the stored entry after
 *              batch t; a removed key's is a Kafka tombstone, e and t in its headers
 *              (changelogs written before have value { e, t, v: null })
 *   batch end  key = CONTROL 'end:<epoch>', value { e, t, position, marks, keyCount }: batch t
 *              is whole; the repartition partition is read from `position` on, and the pairs
 *              at or before `marks` were applied
 *   marker     key = CONTROL 'epoch:<epoch>:<take>', value { e, owner }: an owner is taking the
 *              partition; what older epochs write after it is never believed
 *   takeover   key = CONTROL 'takeover:<epoch>:<take>', value { e, accepts }: written once the new
 *              owner restored up to its marker: the last whole batch it found there
 *              (`accepts`, with its positions) is what the partition holds as its epoch begins
 *   letter     key = CONTROL 'dead:<batch>:<index>', value { e, t, letter }: a record the
 *              mapping function kept failing on, dead-lettered in batch t (its index is the
 *              record's place in the partition's batch); it belongs to the batch as its
 *              entries do, so it moves with the partition
 *
 * The keys suit a compacted topic: the newest entry of each state key stays, the newest
 * batch end of each epoch, and every marker, takeover and dead letter (as the store keeps
 * every letter). A takeover settles what came before its marker whatever compaction
 * removed: the entries of the accepted epoch up to the accepted batch count, the rest (a
 * batch an owner died in) does not.
 */
const CONTROL = 0xc1; // never the first byte of a MessagePack value

export interface BatchEnd {
  epoch: number;
  batchTime: number;
  /** Next offset of the repartition partition after this batch. */
  position: number;
  marks: HighWaterMarks;
  keyCount: number;
}

export type ChangelogRecord =
  | { kind: 'entry'; epoch: number; batchTime: number; key: unknown; keyBytes: Uint8Array; value: Uint8Array | null }
  | ({ kind: 'end' } & BatchEnd)
  | { kind: 'epoch'; epoch: number; owner: string }
  | { kind: 'takeover'; epoch: number; accepts: BatchEnd | null }
  | { kind: 'letter'; epoch: number; batchTime: number; keyBytes: Uint8Array; letter: DeadLetter };

export interface KafkaMessage {
  key: Buffer;
  value: Buffer | null;
  headers?: Record<string, Buffer>;
}

function control(name: string): Buffer {
  return Buffer.concat([Buffer.from([CONTROL]), Buffer.from(name)]);
}

/**
 * A changed key's record. A removed key's is a Kafka tombstone (a null value), so that
 * compaction sheds the key once `delete.retention.ms` has passed, as Kafka Streams' changelogs
 * do; its epoch and batch, which restores need to fence it, travel as headers.
 */
export function entryMessage(epoch: number, batchTime: number, key: unknown, value: Uint8Array | null): KafkaMessage {
  const keyBytes = Buffer.from(messageCodec.pack(key));
  if (value === null) return { key: keyBytes, value: null, headers: { e: Buffer.from(String(epoch)), t: Buffer.from(String(batchTime)) } };
  return { key: keyBytes, value: Buffer.from(messageCodec.pack({ e: epoch, t: batchTime, v: value })) };
}

/** A header as a number; kafkajs hands a header over as a Buffer (or a list of them, when repeated). */
function numberHeader(headers: Record<string, unknown> | undefined, name: string): number {
  const raw = headers?.[name];
  const one = Array.isArray(raw) ? raw[raw.length - 1] : raw;
  const n = one === undefined || one === null ? Number.NaN : Number(String(one));
  if (!Number.isFinite(n)) throw new Error(`changelog: a tombstone without a number in its ${name} header (${JSON.stringify(String(one))})`);
  return n;
}

function endValue(end: BatchEnd): Record<string, unknown> {
  return { e: end.epoch, t: end.batchTime, position: end.position, marks: end.marks, keyCount: end.keyCount };
}

function readEnd(v: Record<string, unknown>): BatchEnd {
  return { epoch: v.e as number, batchTime: v.t as number, position: v.position as number, marks: v.marks as HighWaterMarks, keyCount: v.keyCount as number };
}

export function endMessage(end: BatchEnd): KafkaMessage {
  return { key: control(`end:${end.epoch}`), value: Buffer.from(messageCodec.pack(endValue(end))) };
}

/**
 * A marker and a takeover are keyed by the take, not only by the epoch: a partition taken
 * again under the same epoch (its lease ran out, a take that failed for a moment) writes
 * another pair, and compaction must not remove the first, which a fenced owner's late batch
 * may follow.
 */
export function epochMessage(epoch: number, owner: string): KafkaMessage {
  return { key: control(`epoch:${epoch}:${randomUUID()}`), value: Buffer.from(messageCodec.pack({ e: epoch, owner })) };
}

export function takeoverMessage(epoch: number, accepts: BatchEnd | undefined): KafkaMessage {
  return { key: control(`takeover:${epoch}:${randomUUID()}`), value: Buffer.from(messageCodec.pack({ e: epoch, accepts: accepts ? endValue(accepts) : null })) };
}

export function letterMessage(epoch: number, letter: DeadLetter): KafkaMessage {
  return { key: control(`dead:${letter.batchTime}:${letter.index}`), value: Buffer.from(messageCodec.pack({ e: epoch, t: letter.batchTime, letter })) };
}

export function readChangelogRecord(key: Buffer, value: Buffer | null, headers?: Record<string, unknown>): ChangelogRecord {
  if (key[0] === CONTROL) {
    const name = key.subarray(1).toString();
    const v = messageCodec.unpack(value!) as Record<string, unknown>;
    if (name.startsWith('end:')) return { kind: 'end', ...readEnd(v) };
    if (name.startsWith('epoch:')) return { kind: 'epoch', epoch: v.e as number, owner: v.owner as string };
    if (name.startsWith('takeover:')) return { kind: 'takeover', epoch: v.e as number, accepts: v.accepts ? readEnd(v.accepts as Record<string, unknown>) : null };
    if (name.startsWith('dead:')) return { kind: 'letter', epoch: v.e as number, batchTime: v.t as number, keyBytes: key, letter: v.letter as DeadLetter };
    throw new Error(`changelog: unknown control record ${name}`);
  }
  if (value === null) return { kind: 'entry', epoch: numberHeader(headers, 'e'), batchTime: numberHeader(headers, 't'), key: messageCodec.unpack(key), keyBytes: key, value: null };
  // Written before removed keys were tombstones: a value that says the key is gone.
  const v = messageCodec.unpack(value) as { e: number; t: number; v: Uint8Array | null };
  return { kind: 'entry', epoch: v.e, batchTime: v.t, key: messageCodec.unpack(key), keyBytes: key, value: v.v };
}

/** Anything that takes changelog records in order. */
export interface RecordSink {
  read(record: ChangelogRecord): void;
}

/** What waits for its batch's end: an entry or a dead letter. */
type Pending = Extract<ChangelogRecord, { kind: 'entry' | 'letter' }>;

/**
 * Replays a changelog in offset order into writes on a store. An entry waits for a batch
 * end of its epoch at or after its batch, or for the next takeover to accept it; what an
 * epoch older than the newest marker writes after that marker is ignored (an owner that
 * went on after it was fenced); a batch that never ended (its owner died in it) is dropped
 * at the takeover, and its pairs are applied again from the repartition topic.
 */
export class ChangelogRestore implements RecordSink {
  private floor: number;
  /** By their record's key: a state key's bytes, or a letter's control key (whose first byte no state key's has). */
  private readonly pending = new Map<string, Pending>();
  /**
   * Keys whose newest entry was dropped at a takeover (its batch never ended). On a compacted
   * topic that entry may already have displaced the key's whole one, so the owner that
   * restores writes the key again, under its own epoch (see restore-store.ts). A whole batch
   * that writes the key later (that rewrite, or any batch after) takes it off.
   */
  readonly dropped = new Map<string, unknown>();
  /** The newest whole batch, once one was read (or accepted by a marker). */
  last: BatchEnd | undefined;

  constructor(
    /** Called for each entry of a whole batch, in the order the batches ended. */
    private readonly write: (key: unknown, value: Uint8Array | null, batchTime: number) => void,
    /** The epoch already known to own the partition (a store reused from where it stood). */
    floor = 0,
    /** Called for each dead letter of a whole batch, in the same order. */
    private readonly keepLetter: (letter: DeadLetter) => void = () => undefined,
  ) {
    this.floor = floor;
  }

  read(record: ChangelogRecord): void {
    if (record.kind === 'epoch') {
      this.floor = Math.max(this.floor, record.epoch);
      return;
    }
    if (record.epoch < this.floor) return;
    if (record.kind === 'entry' || record.kind === 'letter') {
      this.pending.set(Buffer.from(record.keyBytes).toString('latin1'), record);
      return;
    }
    if (record.kind === 'takeover') {
      const accepts = record.accepts;
      this.settle((entry) => accepts !== null && entry.epoch === accepts.epoch && entry.batchTime <= accepts.batchTime, record.epoch);
      this.last = accepts ?? undefined;
      return;
    }
    for (const [id, entry] of this.pending) {
      if (entry.epoch !== record.epoch || entry.batchTime > record.batchTime) continue;
      this.apply(id, entry);
    }
    this.last = { epoch: record.epoch, batchTime: record.batchTime, position: record.position, marks: record.marks, keyCount: record.keyCount };
  }

  /**
   * Applies the pending entries of `epoch` and the epochs before it that `whole` says belong
   * to a whole batch, and drops their others. `epoch` itself too: a retake under the same
   * epoch (its lease ran out mid-batch) follows what its own earlier tenure half-wrote, and a
   * later batch end of that epoch must not apply it. A dropped letter is not written again:
   * its batch runs again from the repartition topic, and dead-letters its record anew if it
   * fails again.
   */
  private settle(whole: (entry: Pending) => boolean, epoch: number): void {
    for (const [id, entry] of this.pending) {
      if (entry.epoch > epoch) continue;
      if (whole(entry)) this.apply(id, entry);
      else {
        if (entry.kind === 'entry') this.dropped.set(id, entry.key);
        this.pending.delete(id);
      }
    }
  }

  /** Writes an entry of a whole batch (its key's newest entry is whole again, so a later restore need not write it again), or keeps a letter. */
  private apply(id: string, entry: Pending): void {
    if (entry.kind === 'letter') this.keepLetter(entry.letter);
    else this.write(entry.key, entry.value, entry.batchTime);
    this.pending.delete(id);
    this.dropped.delete(id);
  }

  /** Keys (and letters) whose last records wait for a batch end (a batch that has not ended, or never will). */
  get waiting(): number {
    return this.pending.size;
  }

  /** The keys waiting now, as a takeover by `epoch` would drop them (the restore of a new owner ends here). */
  dropWaiting(epoch: number): unknown[] {
    this.settle(() => false, epoch);
    return [...this.dropped.values()];
  }

  /** The epoch of the newest marker read. */
  get epoch(): number {
    return this.floor;
  }
}
