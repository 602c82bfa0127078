import { messageCodec } from '../storage/codec.js';
import type { PairOrigin } from './high-water-marks.js';

/**
 * A [key, value] pair on its way from stage 1 to the owner of its state partition, through
 * the repartition topic, tagged with where it came from so the owner applies it once.
 */
export interface TaggedPair {
  key: unknown;
  value: unknown;
  origin: PairOrigin;
}

export interface PairMessage {
  /** The state key (MessagePack), for tools that read the topic; the partition is set, not hashed. */
  key: Buffer;
  value: Buffer;
  partition: number;
}

export function pairMessage(pair: TaggedPair, partition: number): PairMessage {
  const { topic, partition: sourcePartition, offset, n } = pair.origin;
  return {
    key: Buffer.from(messageCodec.pack(pair.key)),
    value: Buffer.from(messageCodec.pack([pair.key, pair.value, topic, sourcePartition, offset, n])),
    partition,
  };
}

export function readPair(value: Buffer): TaggedPair {
  const [key, v, topic, partition, offset, n] = messageCodec.unpack(value) as [unknown, unknown, string, number, number, number];
  return { key, value: v, origin: { topic, partition, offset, n } };
}
