import { messageCodec } from '../storage/codec.js';
import type { PairOrigin } from './high-water-marks.js';

/**
 * [key, value] pairs on their way from stage 1 to the owner of their state partition,
 * through the repartition topic, each tagged with where it came from so the owner applies
 * it once. Pairs travel in bundles, one Kafka message for up to PAIRS_PER_MESSAGE pairs (and
 * MESSAGE_BYTES) of one state partition: a message per pair made kafkajs's per-message work (framing, CRC,
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

/**
 * Repartition messages a batch takes from a partition: each holds up to PAIRS_PER_MESSAGE
 * pairs, so this many keep it within maxPairsPerBatch; at least one, or a bound under one
 * message's pairs would apply nothing, ever.
 */
export const pairMessagesPerBatch = (maxPairsPerBatch: number): number => Math.max(1, Math.floor(maxPairsPerBatch / PAIRS_PER_MESSAGE));

/**
 * The most bytes of one repartition message: a broker refuses a message past its
 * max.message.bytes (1 MiB by default), and 500 pairs of 2 KB values pass that. A bundle
 * packed larger is cut in halves until each fits, or holds one pair. Near the limit, not
 * at the produce requests' 512 KiB: a batch takes its pairs in messages counted as of 500
 * pairs (maxPairsPerBatch), and bundles cut smaller would take fewer.
 */
export const MESSAGE_BYTES = 900 * 1024;

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
    this.pack(this.pending);
    this.pending = [];
  }

  private pack(pairs: Packed[]): void {
    const value = Buffer.from(messageCodec.pack(pairs));
    if (value.length <= MESSAGE_BYTES || pairs.length === 1) {
      this.values.push(value);
      return;
    }
    const half = Math.ceil(pairs.length / 2);
    this.pack(pairs.slice(0, half));
    this.pack(pairs.slice(half));
  }
}

/** The pairs of one repartition message, in the order stage 1 made them. */
export function readPairs(value: Buffer): TaggedPair[] {
  return (messageCodec.unpack(value) as Packed[]).map(([key, v, topic, partition, offset, n]) => ({ key, value: v, origin: { topic, partition, offset, n } }));
}
