import { messageCodec } from '../storage/codec.js';
import type { PairOrigin } from './high-water-marks.js';

/**
 * [key, value] pairs on their way from stage 1 to the owner of their state partition,
 * through the repartition topic, each tagged with where it came from so the owner applies
 * it once. Pairs travel in bundles, one Kafka message for up to PAIRS_PER_MESSAGE pairs of
 * one state partition: a message per pair made kafkajs's per-message work (framing, CRC,
 * fetch parsing) the cost of the whole shuffle. A bundle is written and read whole, and
 * keeps the order in which stage 1 made its pairs.
 */
export interface TaggedPair {
  key: unknown;
  value: unknown;
  origin: PairOrigin;
}

/** The most pairs in one repartition message. */
export const PAIRS_PER_MESSAGE = 500;

type Packed = [key: unknown, value: unknown, topic: string, partition: number, offset: number, n: number];

/** Collects the pairs of one state partition and packs them into messages of PAIRS_PER_MESSAGE. */
export class PairBundler {
  private pending: Packed[] = [];
  readonly values: Buffer[] = [];

  add(pair: TaggedPair): void {
    const { topic, partition, offset, n } = pair.origin;
    this.pending.push([pair.key, pair.value, topic, partition, offset, n]);
    if (this.pending.length === PAIRS_PER_MESSAGE) this.flush();
  }

  /** Packs what is pending; returns every message value made. */
  finish(): Buffer[] {
    this.flush();
    return this.values;
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    this.values.push(Buffer.from(messageCodec.pack(this.pending)));
    this.pending = [];
  }
}

/** The pairs of one repartition message, in the order stage 1 made them. */
export function readPairs(value: Buffer): TaggedPair[] {
  return (messageCodec.unpack(value) as Packed[]).map(([key, v, topic, partition, offset, n]) => ({ key, value: v, origin: { topic, partition, offset, n } }));
}
