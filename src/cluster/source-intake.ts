import type { Admin, Consumer, Kafka, KafkaMessage } from 'kafkajs';
import { OffsetStoreError } from '../errors.js';
import { zooKeeperAnswer, type ZooKeeperSession } from '../storage/zookeeper/session.js';

/** A source message read by stage 1, with where it came from. */
export interface IntakeMessage {
  topic: string;
  partition: number;
  offset: number;
  message: KafkaMessage;
}

interface Buffered {
  topic: string;
  partition: number;
  /** Where the next batch starts; messages below it were already sharded. */
  next: number;
  /** Offset after the last message fetched. */
  fetchedUntil: number;
  messages: IntakeMessage[];
  paused: boolean;
}

const id = (topic: string, partition: number) => `${topic}:${partition}`;

/**
 * Stage 1's reading of the job's source: one consumer group over every instance (Kafka
 * spreads the source partitions between them), each partition read from the position kept
 * in ZooKeeper under `<root>/sources/<topic>/<partition>`. A position is recorded only once
 * every pair made of the records before it was acknowledged by the repartition topic, so
 * an instance that dies, or a partition that moves, only ever sends pairs again, which the
 * owners of the state partitions drop (their high-water marks).
 */
export class SourceIntake {
  private consumer: Consumer | undefined;
  private admin: Admin | undefined;
  private readonly buffers = new Map<string, Buffered>();
  private failure: Error | undefined;
  /** Position nodes known to exist. */
  private readonly made = new Set<string>();

  constructor(
    private readonly kafka: Kafka,
    private readonly zk: ZooKeeperSession,
    private readonly root: string,
    private readonly options: { topics: string[]; groupId: string; startingOffsets: 'earliest' | 'latest'; maxRecordsPerBatch: number; groupSessionTimeoutMs: number },
  ) {}

  private path(topic: string, partition: number): string {
    return `${this.root}/sources/${encodeURIComponent(topic)}/${partition}`;
  }

  async start(): Promise<void> {
    this.admin = this.kafka.admin();
    await this.admin.connect();
    const o = this.options;
    this.consumer = this.kafka.consumer({
      groupId: o.groupId, maxWaitTimeInMs: 100, retry: { initialRetryTime: 200, maxRetryTime: 5_000, retries: 30 },
      sessionTimeout: o.groupSessionTimeoutMs, rebalanceTimeout: o.groupSessionTimeoutMs, heartbeatInterval: Math.max(100, Math.floor(o.groupSessionTimeoutMs / 10)),
    });
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: o.topics, fromBeginning: o.startingOffsets === 'earliest' });
    const { GROUP_JOIN, CRASH } = this.consumer.events;
    this.consumer.on(CRASH, ({ payload }) => {
      if (!payload.restart) this.failure ??= new OffsetStoreError(`the cluster's source consumer stopped and will not restart: ${payload.error.message}`, { groupId: o.groupId }, payload.error);
    });
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      void this.assigned(Object.entries(payload.memberAssignment).flatMap(([topic, partitions]) => partitions.map((partition) => ({ topic, partition })))).catch((error: unknown) => {
        this.failure ??= error as Error;
      });
    });
    await this.consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        const b = this.buffers.get(id(batch.topic, batch.partition));
        if (!b) return;
        for (const message of batch.messages) {
          const offset = Number(message.offset);
          if (offset < b.fetchedUntil) continue;
          b.messages.push({ topic: batch.topic, partition: batch.partition, offset, message });
          b.fetchedUntil = offset + 1;
        }
        if (b.messages.length >= 2 * o.maxRecordsPerBatch && !b.paused) {
          b.paused = true;
          this.call('pause', b);
        }
        await heartbeat();
      },
    });
  }

  /** The group gave this instance these partitions: each is read from its position in ZooKeeper. */
  private async assigned(partitions: Array<{ topic: string; partition: number }>): Promise<void> {
    const keep = new Set(partitions.map((p) => id(p.topic, p.partition)));
    for (const key of [...this.buffers.keys()]) if (!keep.has(key)) this.buffers.delete(key);
    for (const { topic, partition } of partitions) {
      const stored = await this.position(topic, partition);
      const start = stored ?? (await this.startOf(topic, partition));
      const b: Buffered = { topic, partition, next: start, fetchedUntil: start, messages: [], paused: false };
      this.buffers.set(id(topic, partition), b);
      this.consumer!.seek({ topic, partition, offset: String(start) });
    }
  }

  private async startOf(topic: string, partition: number): Promise<number> {
    const offsets = await this.admin!.fetchTopicOffsets(topic);
    const p = offsets.find((o) => o.partition === partition);
    if (!p) throw new OffsetStoreError(`the source topic ${topic} has no partition ${partition}`, { topic, partition });
    return Number(this.options.startingOffsets === 'earliest' ? p.low : p.high);
  }

  private async position(topic: string, partition: number): Promise<number | undefined> {
    const data = await this.zk.run<Buffer | undefined>(`read ${this.path(topic, partition)}`, (client, done) =>
      client.getData(this.path(topic, partition), (error, bytes) => (zooKeeperAnswer(error) === 'NO_NODE' ? done(null, undefined) : done(error, bytes))),
    );
    const text = data?.toString('utf8') ?? '';
    if (text === '') return undefined;
    if (!/^\d+$/.test(text)) throw new OffsetStoreError(`the position at ${this.path(topic, partition)} is ${JSON.stringify(text)}, not a decimal offset`, { topic, partition });
    return Number(text);
  }

  private call(what: 'pause' | 'resume', b: Buffered): void {
    try {
      this.consumer?.[what]([{ topic: b.topic, partitions: [b.partition] }]);
    } catch {
      // A consumer restarting after a crash: its next join sets it again.
    }
  }

  /** At a batch's time: up to maxRecordsPerBatch messages of each source partition this instance reads, and where each partition then stands. */
  take(): { messages: IntakeMessage[]; positions: Array<{ topic: string; partition: number; offset: number }> } {
    if (this.failure) throw this.failure;
    const messages: IntakeMessage[] = [];
    const positions: Array<{ topic: string; partition: number; offset: number }> = [];
    for (const b of this.buffers.values()) {
      let skip = 0;
      while (skip < b.messages.length && b.messages[skip].offset < b.next) skip++;
      const taken = b.messages.slice(skip, skip + this.options.maxRecordsPerBatch);
      b.messages = b.messages.slice(skip + taken.length);
      if (taken.length > 0) {
        b.next = taken[taken.length - 1].offset + 1;
        for (const m of taken) messages.push(m);
        positions.push({ topic: b.topic, partition: b.partition, offset: b.next });
      }
      if (b.paused && b.messages.length < this.options.maxRecordsPerBatch) {
        b.paused = false;
        this.call('resume', b);
      }
    }
    return { messages, positions };
  }

  /** Every pair made of the records before these positions is acknowledged: record them. */
  async record(positions: Array<{ topic: string; partition: number; offset: number }>): Promise<void> {
    if (positions.length === 0) return;
    for (const p of positions) {
      const path = this.path(p.topic, p.partition);
      if (this.made.has(path)) continue;
      await this.zk.mkdirp(path, this.root);
      this.made.add(path);
    }
    await this.zk.run('record source positions', (client, done) => {
      const tx = client.transaction();
      for (const p of positions) tx.setData(this.path(p.topic, p.partition), Buffer.from(String(p.offset)));
      tx.commit((error) => done(error));
    });
  }

  async stop(): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}
