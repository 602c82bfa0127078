import type { Consumer, ConsumerConfig, Kafka, KafkaMessage } from 'kafkajs';
import { OffsetStoreError } from '../errors.js';
import { KAFKA_RETRY } from '../engine/sources/kafka-client.js';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface GroupConsumerHandlers {
  /**
   * The group gave this consumer these partitions. Called synchronously on the join: every
   * one of them is paused before this runs, so nothing is delivered for it until resumed.
   */
  joined(partitions: TopicPartition[]): void;
  /**
   * Messages fetched for a partition, in offset order, from a fetch that asked for
   * `fetchedOffset`; `firstOffset` and `lastOffset` are the first and last offsets the batch
   * covered at or after it, control records and aborted messages included (they are not
   * among `messages`).
   */
  fetched(topic: string, partition: number, messages: KafkaMessage[], fetchedOffset: number, firstOffset: number | undefined, lastOffset: number | undefined): void;
  /**
   * A fetch that held only control records or aborted messages, `firstOffset` to `lastOffset`:
   * kafkajs moves past it without handing it over.
   */
  passedOver(topic: string, partition: number, firstOffset: number, lastOffset: number): void;
}

/** Crashes within this window that make the consumer give up. */
const CRASH_WINDOW_MS = 60_000;
const MAX_CRASHES = 5;

/**
 * A kafkajs consumer in a group whose positions are the caller's: it never commits, every
 * partition it is given is paused at the join (kafkajs drops what it fetched for a paused
 * partition or one with a seek pending, so nothing read from the group's own offsets slips
 * through) until the caller seeks and resumes it. kafkajs restarts the consumer itself
 * after retriable failures; after a non-retriable one (the mock broker answers some
 * rebalances with one) this starts a new consumer, up to five times a minute.
 */
export class GroupConsumer {
  private consumer: Consumer | undefined;
  private crashes: number[] = [];
  private stopped = false;
  private failure: Error | undefined;

  constructor(
    private readonly kafka: Kafka,
    /** The consumer's settings; a function, so that each new consumer may take a fresh group. */
    private readonly config: () => ConsumerConfig,
    private readonly topics: string[],
    private readonly handlers: GroupConsumerHandlers,
    /** What the consumer reads, for errors. */
    private readonly what: string,
  ) {}

  async start(): Promise<void> {
    const consumer = this.kafka.consumer({ maxWaitTimeInMs: 100, retry: KAFKA_RETRY, ...this.config() });
    this.consumer = consumer;
    await consumer.connect();
    await consumer.subscribe({ topics: this.topics, fromBeginning: true });
    const { GROUP_JOIN, CRASH, START_BATCH_PROCESS } = consumer.events;
    consumer.on(START_BATCH_PROCESS, ({ payload }) => {
      if (this.consumer !== consumer || payload.batchSize !== 0 || payload.firstOffset === null) return;
      this.handlers.passedOver(payload.topic, payload.partition, Number(payload.firstOffset), Number(payload.lastOffset));
    });
    consumer.on(CRASH, ({ payload }) => {
      if (payload.restart || this.stopped) return;
      const now = Date.now();
      this.crashes = [...this.crashes.filter((t) => now - t < CRASH_WINDOW_MS), now];
      if (this.crashes.length > MAX_CRASHES) {
        this.failure ??= new OffsetStoreError(`reading ${this.what} failed ${this.crashes.length} times within a minute; the last: ${payload.error.message}`, { topics: this.topics }, payload.error);
        return;
      }
      setTimeout(() => {
        if (this.stopped || this.consumer !== consumer) return;
        this.start().catch((error: unknown) => {
          this.failure ??= new OffsetStoreError(`reading ${this.what}: the consumer could not start again: ${(error as Error).message}`, { topics: this.topics }, error);
        });
      }, 1_000);
    });
    consumer.on(GROUP_JOIN, ({ payload }) => {
      if (this.consumer !== consumer) return;
      const partitions = Object.entries(payload.memberAssignment).flatMap(([topic, ps]) => ps.map((partition) => ({ topic, partition })));
      this.pause(partitions);
      this.handlers.joined(partitions);
    });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        if (this.consumer !== consumer) return;
        // kafkajs's Batch keeps the offset its fetch asked for (not in its typings).
        const fetchedOffset = Number((batch as unknown as { fetchedOffset: string }).fetchedOffset);
        const lastOffset = batch.isEmpty() ? undefined : Number(batch.lastOffset());
        const first = batch.firstOffset();
        const firstOffset = first === null ? undefined : Number(first);
        this.handlers.fetched(batch.topic, batch.partition, batch.messages, fetchedOffset, firstOffset, lastOffset);
        await heartbeat();
      },
    });
  }

  /** A failure the consumer will not recover from, if any. */
  get problem(): Error | undefined {
    return this.failure;
  }

  seek(topic: string, partition: number, offset: number): void {
    try {
      this.consumer?.seek({ topic, partition, offset: String(offset) });
    } catch {
      // Not running (between a crash and its restart): the next join seeks again.
    }
  }

  pause(partitions: TopicPartition[]): void {
    this.call('pause', partitions);
  }

  resume(partitions: TopicPartition[]): void {
    this.call('resume', partitions);
  }

  private call(what: 'pause' | 'resume', partitions: TopicPartition[]): void {
    const byTopic = new Map<string, number[]>();
    for (const { topic, partition } of partitions) byTopic.set(topic, [...(byTopic.get(topic) ?? []), partition]);
    if (byTopic.size === 0) return;
    try {
      this.consumer?.[what]([...byTopic].map(([topic, ps]) => ({ topic, partitions: ps })));
    } catch {
      // kafkajs throws while a crashed consumer restarts; its next join pauses (and the caller resumes) again.
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.consumer?.disconnect().catch(() => undefined);
  }
}
