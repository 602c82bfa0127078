import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { OffsetStoreError } from '../errors.js';
import { GroupConsumer } from './group-consumer.js';

interface Opened {
  topic: string;
  partition: number;
  /** The next offset wanted: what is fetched below it is dropped (a fetch from before a seek). */
  next: number;
  messages: Array<{ offset: number; message: KafkaMessage }>;
  /** Messages buffered before fetching it pauses (resumed below half). */
  limit: number;
  paused: boolean;
  /**
   * Set from a seek until a fetch made after it arrives: until then a fetch that asked for
   * more than `next` is from before the seek. `ahead` counts such fetches at one offset.
   */
  seeking?: { ahead: number; at: number };
  /**
   * Opened with `onSkip`: fetches that began past `next` (see Skip), oldest first, until
   * checked. What was fetched from an unchecked skip's `until` on waits in the buffer.
   */
  skips?: PendingSkip[];
  onSkip?: (skip: Skip) => void;
}

/**
 * Offsets a fetch passed over: it wanted `from` and its first record was `until`. Compaction
 * and transaction markers leave such holes, and so does retention deleting records before
 * they were read (kafkajs then moves to the earliest offset held, without a word): only the
 * broker's earliest offset tells which.
 */
export interface Skip {
  readonly from: number;
  readonly until: number;
}

interface PendingSkip extends Skip {
  checked: boolean;
}

const id = (topic: string, partition: number) => `${topic}:${partition}`;

/**
 * Reads chosen partitions of some topics from chosen offsets, with kafkajs: a consumer in a
 * group of its own (a fresh one each time, so a restart never waits for its dead former
 * self to leave), which is therefore assigned every partition and pauses all but the ones
 * opened. Where each partition is read from is the caller's (its LMDB store, a changelog
 * record): no offset is ever committed to Kafka. Each opened partition's messages wait in
 * a buffer (paused beyond `bufferLimit`) until taken.
 */
export class PartitionReader {
  private readonly consumer: GroupConsumer;
  private readonly opened = new Map<string, Opened>();
  /** Set when the instance stops: what a read under way ends with. */
  private cancelled: Error | undefined;
  private assigned = new Set<string>();
  private joined = false;

  constructor(
    kafka: Kafka,
    topics: string[],
    groupPrefix: string,
    private readonly bufferLimit = 200_000,
  ) {
    this.consumer = new GroupConsumer(kafka, () => ({ groupId: `${groupPrefix}-${randomUUID()}` }), topics, {
      joined: (partitions) => {
        this.assigned = new Set(partitions.map((p) => id(p.topic, p.partition)));
        this.joined = true;
        // Only the opened partitions are read, each from where its reader wants it.
        for (const o of this.opened.values()) this.seek(o);
      },
      passedOver: (topic, partition, firstOffset, lastOffset) => {
        const o = this.opened.get(id(topic, partition));
        // Only control records and aborted messages up to lastOffset: nothing to wait for there.
        if (o && firstOffset <= o.next && lastOffset + 1 > o.next) o.next = lastOffset + 1;
      },
      fetched: (topic, partition, messages, fetchedOffset, firstOffset, lastOffset) => {
        const o = this.opened.get(id(topic, partition));
        if (!o) return;
        // After a seek back (a partition reopened at an earlier position) kafkajs can still hand
        // over a fetch made before it, from further on: taking it would skip what lies
        // between. Drop it and seek again. The same offset again and again is no such fetch
        // but kafkajs having moved past records it does not hand over (a transaction's
        // control records only): then it is taken.
        if (o.seeking && fetchedOffset > o.next) {
          o.seeking = { ahead: o.seeking.at === fetchedOffset ? o.seeking.ahead + 1 : 1, at: fetchedOffset };
          if (o.seeking.ahead < 3) {
            this.seek(o);
            return;
          }
        }
        o.seeking = undefined;
        if (o.skips && firstOffset !== undefined && firstOffset > o.next) {
          const skip: PendingSkip = { from: o.next, until: firstOffset, checked: false };
          o.skips.push(skip);
          o.onSkip?.(skip);
        }
        for (const message of messages) {
          const offset = Number(message.offset);
          if (offset < o.next) continue;
          o.messages.push({ offset, message });
          o.next = offset + 1;
        }
        if (lastOffset !== undefined && lastOffset + 1 > o.next) o.next = lastOffset + 1;
        if (o.messages.length >= o.limit && !o.paused) {
          o.paused = true;
          this.consumer.pause([o]);
        }
      },
    }, topics.join(', '));
  }

  start(): Promise<void> {
    return this.consumer.start();
  }

  private seek(o: Opened): void {
    o.seeking ??= { ahead: 0, at: -1 };
    if (!this.joined || !this.assigned.has(id(o.topic, o.partition))) return;
    this.consumer.seek(o.topic, o.partition, o.next);
    if (!o.paused) this.consumer.resume([o]);
  }

  /**
   * Starts reading a partition from `offset` (forgetting what was buffered for it). With
   * `onSkip`, each skip is told to it as it is fetched, and records past it are handed over
   * only once the caller has checked it (`skipChecked`).
   */
  open(topic: string, partition: number, offset: number, options: { onSkip?: (skip: Skip) => void; bufferLimit?: number } = {}): void {
    const limit = options.bufferLimit ?? this.bufferLimit;
    const o: Opened = { topic, partition, next: offset, messages: [], limit, paused: false, ...(options.onSkip ? { skips: [], onSkip: options.onSkip } : {}) };
    this.opened.set(id(topic, partition), o);
    this.seek(o);
  }

  close(topic: string, partition: number): void {
    const o = this.opened.get(id(topic, partition));
    if (!o) return;
    this.opened.delete(id(topic, partition));
    this.consumer.pause([o]);
  }

  /** How many messages of an opened partition are buffered, fetched and not yet taken. */
  buffered(topic: string, partition: number): number {
    return this.opened.get(id(topic, partition))?.messages.length ?? 0;
  }

  /** Up to `max` buffered messages of an opened partition, in offset order. */
  take(topic: string, partition: number, max: number): Array<{ offset: number; message: KafkaMessage }> {
    if (this.consumer.problem) throw this.consumer.problem;
    const o = this.opened.get(id(topic, partition));
    if (!o) return [];
    // Nothing from an unchecked skip on.
    const skip = o.skips?.find((s) => !s.checked);
    if (skip) {
      const before = o.messages.findIndex((m) => m.offset >= skip.until);
      if (before !== -1) max = Math.min(max, before);
    }
    const taken = o.messages.length <= max ? o.messages : o.messages.slice(0, max);
    o.messages = o.messages.length <= max ? [] : o.messages.slice(max);
    if (o.paused && o.messages.length < o.limit / 2) {
      o.paused = false;
      this.consumer.resume([o]);
    }
    return taken;
  }

  /** The skips of an opened partition its caller has not checked yet, oldest first. */
  uncheckedSkips(topic: string, partition: number): Skip[] {
    return this.opened.get(id(topic, partition))?.skips?.filter((s) => !s.checked) ?? [];
  }

  /** Whether `skip` is one of the partition's as it is open now, and unchecked (not if it was closed or opened again since). */
  awaitsCheck(topic: string, partition: number, skip: Skip): boolean {
    return this.uncheckedSkips(topic, partition).includes(skip);
  }

  /** The caller checked `skip`: the records after it may be taken (once those before are checked too). */
  skipChecked(topic: string, partition: number, skip: Skip): void {
    const o = this.opened.get(id(topic, partition));
    const pending = o?.skips?.find((s) => s === skip);
    if (!o?.skips || !pending) return;
    pending.checked = true;
    while (o.skips[0]?.checked) o.skips.shift();
  }

  /** The offset after the last message fetched of an opened partition. */
  fetchedUntil(topic: string, partition: number): number | undefined {
    return this.opened.get(id(topic, partition))?.next;
  }

  /**
   * Hands each message of an opened partition below `offset` to `each` as it is fetched, until
   * the partition is read up to `offset` (exclusive); fails after `timeoutMs`. Taking them as
   * they come matters: a partition whose buffer is full stays paused until something is
   * taken, so waiting for a range longer than the buffer before taking any would wait forever.
   */
  async readUntil(topic: string, partition: number, offset: number, timeoutMs: number, each: (taken: { offset: number; message: KafkaMessage }) => void): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.cancelled) throw this.cancelled;
      for (const taken of this.take(topic, partition, Number.MAX_SAFE_INTEGER)) if (taken.offset < offset) each(taken);
      if ((this.fetchedUntil(topic, partition) ?? 0) >= offset) return;
      if (this.consumer.problem) throw this.consumer.problem;
      if (Date.now() > deadline) {
        throw new OffsetStoreError(`could not read ${topic}[${partition}] up to offset ${offset} within ${timeoutMs / 1000} s (read up to ${(this.fetchedUntil(topic, partition) ?? 1) - 1})`, { topic, partition, offset });
      }
      await sleep(20);
    }
  }

  /** Reads under way (readUntil) end with `reason` rather than wait for their records: the instance stops. */
  cancelReads(reason: Error): void {
    this.cancelled = reason;
  }

  stop(): Promise<void> {
    return this.consumer.stop();
  }
}
