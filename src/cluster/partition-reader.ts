import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, Kafka, KafkaMessage } from 'kafkajs';
import { OffsetStoreError } from '../errors.js';

interface Opened {
  topic: string;
  partition: number;
  /** The next offset wanted: what is fetched below it is dropped (a fetch from before a seek). */
  next: number;
  messages: Array<{ offset: number; message: KafkaMessage }>;
  paused: boolean;
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
  private readonly consumer: Consumer;
  private readonly opened = new Map<string, Opened>();
  private assigned = new Set<string>();
  private joined = false;
  private failure: Error | undefined;

  constructor(
    kafka: Kafka,
    private readonly topics: string[],
    private readonly groupPrefix: string,
    private readonly bufferLimit = 200_000,
  ) {
    this.consumer = kafka.consumer({ groupId: `${groupPrefix}-${randomUUID()}`, maxWaitTimeInMs: 100, retry: { initialRetryTime: 200, maxRetryTime: 5_000, retries: 30 } });
  }

  async start(): Promise<void> {
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: this.topics, fromBeginning: true });
    const { GROUP_JOIN, CRASH } = this.consumer.events;
    this.consumer.on(CRASH, ({ payload }) => {
      if (!payload.restart) this.failure ??= new OffsetStoreError(`reading ${this.topics.join(', ')} stopped and will not restart: ${payload.error.message}`, { topics: this.topics });
    });
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      this.assigned = new Set(Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) => partitions.map((p) => id(topic, p))));
      this.joined = true;
      // Only the opened partitions are read, each from where its reader wants it.
      const closed = [...this.assigned].filter((tp) => !this.opened.has(tp));
      this.pauseAll(closed);
      for (const o of this.opened.values()) this.seek(o);
    });
    await this.consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        const o = this.opened.get(id(batch.topic, batch.partition));
        if (!o) return;
        for (const message of batch.messages) {
          const offset = Number(message.offset);
          if (offset < o.next) continue;
          o.messages.push({ offset, message });
          o.next = offset + 1;
        }
        if (o.messages.length >= this.bufferLimit && !o.paused) {
          o.paused = true;
          this.call('pause', o);
        }
        await heartbeat();
      },
    });
  }

  private pauseAll(tps: string[]): void {
    const byTopic = new Map<string, number[]>();
    for (const tp of tps) {
      const at = tp.lastIndexOf(':');
      const topic = tp.slice(0, at);
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), Number(tp.slice(at + 1))]);
    }
    if (byTopic.size === 0) return;
    try {
      this.consumer.pause([...byTopic].map(([topic, partitions]) => ({ topic, partitions })));
    } catch {
      // A consumer restarting after a crash: its next join pauses them again.
    }
  }

  private call(what: 'pause' | 'resume', o: Opened): void {
    try {
      this.consumer[what]([{ topic: o.topic, partitions: [o.partition] }]);
    } catch {
      // As above: the next join sets it again.
    }
  }

  private seek(o: Opened): void {
    if (!this.joined || !this.assigned.has(id(o.topic, o.partition))) return;
    this.consumer.seek({ topic: o.topic, partition: o.partition, offset: String(o.next) });
    if (!o.paused) this.call('resume', o);
  }

  /** Starts reading a partition from `offset` (forgetting what was buffered for it). */
  open(topic: string, partition: number, offset: number): void {
    const o: Opened = { topic, partition, next: offset, messages: [], paused: false };
    this.opened.set(id(topic, partition), o);
    this.seek(o);
  }

  close(topic: string, partition: number): void {
    const o = this.opened.get(id(topic, partition));
    if (!o) return;
    this.opened.delete(id(topic, partition));
    this.pauseAll([id(topic, partition)]);
  }

  /** Up to `max` buffered messages of an opened partition, in offset order. */
  take(topic: string, partition: number, max: number): Array<{ offset: number; message: KafkaMessage }> {
    if (this.failure) throw this.failure;
    const o = this.opened.get(id(topic, partition));
    if (!o) return [];
    const taken = o.messages.length <= max ? o.messages : o.messages.slice(0, max);
    o.messages = o.messages.length <= max ? [] : o.messages.slice(max);
    if (o.paused && o.messages.length < this.bufferLimit / 2) {
      o.paused = false;
      this.call('resume', o);
    }
    return taken;
  }

  /** The offset after the last message fetched of an opened partition. */
  fetchedUntil(topic: string, partition: number): number | undefined {
    return this.opened.get(id(topic, partition))?.next;
  }

  /** Waits until an opened partition is fetched up to `offset` (exclusive), or fails after `timeoutMs`. */
  async reach(topic: string, partition: number, offset: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.fetchedUntil(topic, partition) ?? 0) < offset) {
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) {
        throw new OffsetStoreError(`could not read ${topic}[${partition}] up to offset ${offset} within ${timeoutMs / 1000} s (read up to ${(this.fetchedUntil(topic, partition) ?? 1) - 1})`, { topic, partition, offset });
      }
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    await this.consumer.disconnect().catch(() => undefined);
  }
}
