import type { Admin, KafkaMessage } from 'kafkajs';
import { BatchEvents, type DataLostEvent } from '../engine/batch-events.js';
import { dataLossError, dataLostEvent, failOrAnnounce, unreadGap, watermarksOf } from '../engine/sources/kafka-gaps.js';
import { OffsetStoreError } from '../errors.js';
import zookeeper from 'node-zookeeper-client';
import { zooKeeperAnswer, type ZooKeeperSession } from '../storage/zookeeper/session.js';
import type { PartitionReader, Skip } from './partition-reader.js';

/** A source message read by stage 1, with where it came from. */
export interface IntakeMessage {
  topic: string;
  partition: number;
  offset: number;
  message: KafkaMessage;
}

export interface SourcePosition {
  topic: string;
  partition: number;
  offset: number;
}

const id = (topic: string, partition: number) => `${topic}:${partition}`;

/**
 * Stage 1's reading of the job's source. The leader shares the source partitions out to
 * the instances in the assignment, beside the state partitions (see docs/scale-out.md for
 * why not Kafka's group protocol); each partition is read from the position kept in
 * ZooKeeper under `<root>/sources/<topic>/<partition>`. A position is recorded only once
 * every pair made of the records before it was acknowledged by the repartition topic, so
 * an instance that dies, or a partition that moves, only ever sends pairs again, which the
 * owners of the state partitions drop (their high-water marks).
 */
export class SourceIntake {
  /** The partitions this instance reads, and where its next batch starts in each. */
  private readonly reading = new Map<string, SourcePosition>();
  private failure: Error | undefined;
  /** Position nodes known to exist. */
  private readonly made = new Set<string>();
  /** Counts assignments: positions read for an older one are not used. */
  private generation = 0;
  /** Skips being checked against the broker's earliest offset. */
  private readonly checking = new Set<Skip>();

  constructor(
    /** The runtime's admin client (connected, and closed by the runtime). */
    private readonly admin: Admin,
    /** Reads the source topics (among others): the runtime's one consumer. */
    private readonly reader: PartitionReader,
    private readonly zk: ZooKeeperSession,
    private readonly root: string,
    private readonly options: {
      topics: string[];
      startingOffsets: 'earliest' | 'latest';
      maxRecordsPerBatch: number;
      /** A position the broker no longer holds fails the next batch (true) or is reported and passed (false). */
      failOnDataLoss: boolean;
      announce: (event: typeof BatchEvents.DATA_LOST, payload: DataLostEvent) => void;
    },
  ) {}

  private path(topic: string, partition: number): string {
    return `${this.root}/sources/${encodeURIComponent(topic)}/${partition}`;
  }

  /** The partitions of each source topic, for the leader's assignment. */
  async layout(): Promise<Record<string, number>> {
    const admin = this.admin;
    const layout: Record<string, number> = {};
    for (const topic of this.options.topics) layout[topic] = (await admin.fetchTopicOffsets(topic)).length;
    return layout;
  }

  /**
   * The assignment gives this instance these source partitions: one it kept goes on from
   * where it is; a new one is read from its position in ZooKeeper (or startingOffsets).
   */
  assign(partitions: Array<{ topic: string; partition: number }>): void {
    const generation = ++this.generation;
    const keep = new Set(partitions.map((p) => id(p.topic, p.partition)));
    for (const [key, p] of [...this.reading]) {
      if (keep.has(key)) continue;
      this.reading.delete(key);
      this.reader.close(p.topic, p.partition);
    }
    const added = partitions.filter((p) => !this.reading.has(id(p.topic, p.partition)));
    void (async () => {
      for (const { topic, partition } of added) {
        const stored = await this.position(topic, partition);
        const start = stored === undefined ? await this.firstPosition(topic, partition) : await this.pastLoss(topic, partition, stored);
        // A newer assignment came while ZooKeeper answered: that one decides.
        if (generation !== this.generation) return;
        if (start === undefined) continue;
        this.reading.set(id(topic, partition), { topic, partition, offset: start });
        // Two batches ahead, as a single process's Kafka source buffers.
        this.reader.open(topic, partition, start, { onSkip: (skip) => this.checkSkip(topic, partition, skip), bufferLimit: 2 * this.options.maxRecordsPerBatch });
      }
    })().catch((error: unknown) => {
      this.failure ??= error as Error;
    });
  }

  /**
   * A partition no instance has read yet starts at startingOffsets as of now, and that
   * position is recorded at once, as a single process records it: 'latest' taken again by its
   * next reader (a rebalance, a restart before the partition's first batch) would be later,
   * and the records between the two never read. Another instance that recorded first wins.
   */
  private async firstPosition(topic: string, partition: number): Promise<number> {
    const { low, high } = await watermarksOf(this.admin, topic, partition);
    const start = this.options.startingOffsets === 'earliest' ? low : high;
    const path = this.path(topic, partition);
    await this.zk.mkdirp(path.slice(0, path.lastIndexOf('/')), this.root);
    try {
      await this.zk.create(path, Buffer.from(String(start)), zookeeper.CreateMode.PERSISTENT);
      this.made.add(path);
      return start;
    } catch (error) {
      if (zooKeeperAnswer(error) !== 'NODE_EXISTS') throw error;
    }
    // Empty while another instance records its first batch there, or for good after a crash
    // between that record's two steps: written now unless someone wrote it meanwhile (version 0).
    const recorded = await this.position(topic, partition);
    if (recorded !== undefined) return recorded;
    try {
      await this.zk.run(`record ${path}`, (client, done) => client.setData(path, Buffer.from(String(start)), 0, (error) => done(error)));
      return start;
    } catch (error) {
      if (zooKeeperAnswer(error) !== 'BAD_VERSION') throw error;
    }
    return (await this.position(topic, partition)) ?? start;
  }

  /**
   * Where a partition with a stored position is read from. Records between it and the
   * earliest offset the broker holds were deleted unread (retention, a recreated topic): as
   * in a single process, that fails the job (the position stays where it is) unless
   * failOnDataLoss is false, which reports the gap and goes on from the earliest offset.
   * Undefined: the partition is not read.
   */
  private async pastLoss(topic: string, partition: number, stored: number): Promise<number | undefined> {
    const { low } = await watermarksOf(this.admin, topic, partition);
    const gap = unreadGap(topic, partition, stored, low, 'position');
    const lost = failOrAnnounce(gap, this.options.failOnDataLoss, this.root, this.options.announce);
    if (lost) {
      this.failure ??= lost;
      return undefined;
    }
    return gap ? low : stored;
  }

  /**
   * A fetch passed over offsets while this instance read the partition: a loss if the broker
   * no longer holds them (retention overtook a lagging instance), handled as a stored
   * position's loss is; otherwise compaction or transaction markers, and reading goes on.
   * The records after the skip wait in the reader until this says.
   */
  private checkSkip(topic: string, partition: number, skip: Skip): void {
    if (this.checking.has(skip)) return;
    this.checking.add(skip);
    void (async () => {
      const { low } = await watermarksOf(this.admin, topic, partition);
      // The partition was given up (or opened again) meanwhile: its skip is no longer this reader's.
      if (!this.reader.awaitsCheck(topic, partition, skip)) return;
      // Past the skip's end the records were fetched: not lost, whatever retention did since.
      const gap = unreadGap(topic, partition, skip.from, Math.min(low, skip.until), 'running');
      if (gap && this.options.failOnDataLoss) {
        this.failure ??= dataLossError([gap], this.root);
        return;
      }
      // Checked before the loss is announced: a listener that throws must not leave the partition waiting.
      this.reader.skipChecked(topic, partition, skip);
      if (gap) this.options.announce(BatchEvents.DATA_LOST, dataLostEvent(gap));
    })()
      // The broker did not answer: the next batch asks again.
      .catch(() => undefined)
      .finally(() => this.checking.delete(skip));
  }

  private async position(topic: string, partition: number): Promise<number | undefined> {
    const data = await this.zk.read(this.path(topic, partition));
    const text = data?.toString('utf8') ?? '';
    if (text === '') return undefined;
    if (!/^\d+$/.test(text)) throw new OffsetStoreError(`the position at ${this.path(topic, partition)} is ${JSON.stringify(text)}, not a decimal offset`, { topic, partition });
    return Number(text);
  }

  /** At a batch's time: up to maxRecordsPerBatch messages of each source partition this instance reads (none while `behind`), and where each then stands. */
  take(behind = false): { messages: IntakeMessage[]; positions: SourcePosition[] } {
    if (this.failure) throw this.failure;
    const messages: IntakeMessage[] = [];
    const positions: SourcePosition[] = [];
    if (behind) return { messages, positions };
    for (const p of this.reading.values()) {
      // Checks begin as skips are fetched; one whose broker did not answer is asked again.
      for (const skip of this.reader.uncheckedSkips(p.topic, p.partition)) this.checkSkip(p.topic, p.partition, skip);
      const taken = this.reader.take(p.topic, p.partition, this.options.maxRecordsPerBatch);
      if (taken.length === 0) continue;
      for (const { offset, message } of taken) messages.push({ topic: p.topic, partition: p.partition, offset, message });
      p.offset = taken[taken.length - 1].offset + 1;
      positions.push({ ...p });
    }
    return { messages, positions };
  }

  /** Every pair made of the records before these positions is acknowledged: record them. */
  async record(positions: SourcePosition[]): Promise<void> {
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
}
