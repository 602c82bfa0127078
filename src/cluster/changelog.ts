import { messageCodec } from '../storage/codec.js';
import type { HighWaterMarks } from './high-water-marks.js';

/**
 * The changelog of a state partition (partition p of `<app>-<stream>-changelog`): what a
 * new owner restores from. Each record carries the epoch of the owner that wrote it.
 *
 *   entry      key = the state key (MessagePack), value { e, t, v }: the stored entry after
 *              batch t, or null when the key was removed (a tombstone, for compaction)
 *   batch end  key = CONTROL 'end', value { e, t, position, marks, keyCount }: batch t is
 *              whole; the repartition partition is read from `position` on, and the pairs
 *              at or before `marks` were applied
 *   epoch      key = CONTROL 'epoch', value { e, owner }: an owner took the partition
 *
 * Keys are per state key so that a compacted topic keeps the newest entry of each.
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
  | { kind: 'epoch'; epoch: number; owner: string };

export interface KafkaMessage {
  key: Buffer;
  value: Buffer;
}

function control(name: string): Buffer {
  return Buffer.concat([Buffer.from([CONTROL]), Buffer.from(name)]);
}

export function entryMessage(epoch: number, batchTime: number, key: unknown, value: Uint8Array | null): KafkaMessage {
  return { key: Buffer.from(messageCodec.pack(key)), value: Buffer.from(messageCodec.pack({ e: epoch, t: batchTime, v: value })) };
}

export function endMessage(end: BatchEnd): KafkaMessage {
  return { key: control('end'), value: Buffer.from(messageCodec.pack({ e: end.epoch, t: end.batchTime, position: end.position, marks: end.marks, keyCount: end.keyCount })) };
}

export function epochMessage(epoch: number, owner: string): KafkaMessage {
  return { key: control('epoch'), value: Buffer.from(messageCodec.pack({ e: epoch, owner })) };
}

export function readChangelogRecord(key: Buffer, value: Buffer | null): ChangelogRecord {
  if (key[0] === CONTROL) {
    const name = key.subarray(1).toString();
    const v = messageCodec.unpack(value!) as Record<string, unknown>;
    if (name === 'end') return { kind: 'end', epoch: v.e as number, batchTime: v.t as number, position: v.position as number, marks: v.marks as HighWaterMarks, keyCount: v.keyCount as number };
    if (name === 'epoch') return { kind: 'epoch', epoch: v.e as number, owner: v.owner as string };
    throw new Error(`changelog: unknown control record ${name}`);
  }
  const v = messageCodec.unpack(value!) as { e: number; t: number; v: Uint8Array | null };
  return { kind: 'entry', epoch: v.e, batchTime: v.t, key: messageCodec.unpack(key), keyBytes: key, value: v.v };
}

/**
 * Replays a changelog in offset order into writes on a store. An entry waits for its
 * batch's end; what an epoch older than the newest marker before it wrote is ignored (an
 * owner that went on writing after it was fenced); a batch that never ended (its owner
 * died mid-batch) is dropped and its pairs are applied again from the repartition topic.
 * Works on a compacted topic too: the newest entry of each key and the newest batch end
 * remain, and only entries newer than that end wait.
 */
export class ChangelogRestore {
  private floor = 0;
  private readonly pending = new Map<string, Extract<ChangelogRecord, { kind: 'entry' }>>();
  /** The newest whole batch, once one was read. */
  last: BatchEnd | undefined;

  constructor(
    /** Called for each entry of a whole batch, in the order the batches ended. */
    private readonly write: (key: unknown, value: Uint8Array | null, batchTime: number) => void,
  ) {}

  read(record: ChangelogRecord): void {
    if (record.kind === 'epoch') {
      if (record.epoch <= this.floor) return;
      this.floor = record.epoch;
      for (const [id, entry] of this.pending) if (entry.epoch < this.floor) this.pending.delete(id);
      return;
    }
    if (record.epoch < this.floor) return;
    if (record.kind === 'entry') {
      this.pending.set(Buffer.from(record.keyBytes).toString('latin1'), record);
      return;
    }
    for (const [id, entry] of this.pending) {
      if (entry.epoch !== record.epoch || entry.batchTime > record.batchTime) continue;
      this.write(entry.key, entry.value, entry.batchTime);
      this.pending.delete(id);
    }
    this.last = { epoch: record.epoch, batchTime: record.batchTime, position: record.position, marks: record.marks, keyCount: record.keyCount };
  }

  /** The epoch of the newest marker read. */
  get epoch(): number {
    return this.floor;
  }
}
