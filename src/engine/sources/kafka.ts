import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer, KafkaMessage, Admin } from 'kafkajs';
import { OffsetStoreError, OwnershipLostError, SourceRecordError, serializeError } from '../../errors.js';
import { ZooKeeperSession } from '../../storage/zookeeper/session.js';
import { ZooKeeperOffsetStore, type OffsetRange, type RecordedBatch } from '../../storage/zookeeper/offsets.js';
import { ZooKeeperOwnership } from '../../storage/zookeeper/ownership.js';
import { BatchEvents } from '../batch-events.js';
import { SourceDeadLetterStore, type SourceDeadLetter } from '../../storage/sources/dead-letters.js';
import { joinPieces, type BatchRun, type RecordPieces } from '../batch.js';
import { DStream, type RecordDescription, type StreamGraph } from '../dstream.js';
import type { InputStream, RecoveredBatch, StartContext } from './input.js';
import type { SourcePositions } from '../../storage/snapshots/manifest.js';
import type { ValidKafkaOptions } from './kafka-options.js';
import { dataLossError, dataLostEvent, failOrAnnounce, gapsAtStart, heldPart, unreadGap, watermarksOf } from './kafka-gaps.js';
import { InterruptibleKafka, KAFKA_RETRY } from './kafka-client.js';

/** A Kafka message as it reaches the stream. */
export interface KafkaRecord<V> {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  /** Null for a message without a value (a tombstone), whatever the decoder: a decoder function is not called for it. */
  value: V | null;
  timestamp: string;
  headers: Record<string, string | undefined>;
}

/** What `status()` reports of a Kafka source. */
export interface KafkaSourceStatus {
  source: number;
  topics: string[];
  /** `opened`: the source has its session (false while the job starts: nothing to report as unreachable yet). */
  zookeeper: { connect: string; root: string; opened: boolean; connected: boolean; sinceMs: number };
  /** `next`: where the next batch starts (as ZooKeeper records after the last ended batch); `fetched`: fetched up to. */
  partitions: Array<{ topic: string; partition: number; next: number; fetched: number; buffered: number }>;
}

/** A fetched message waiting for its batch (decoding happens in the batch, where failures are handled). */
interface Fetched {
  topic: string;
  partition: number;
  offset: number;
  message: KafkaMessage;
}

/** One topic-partition's fetch buffer. */
interface PartitionBuffer {
  topic: string;
  partition: number;
  /** Offset the next regular batch starts at. */
  next: number;
  /** Offset after the last fetched message: a re-delivered message below it is a duplicate. */
  fetchedUntil: number;
  messages: Fetched[];
  paused: boolean;
  /** Where the recorded batches to replay end in this partition: regular batches start past it. */
  replayUntil: number;
  /**
   * The ends of the recorded ranges not yet taken, oldest first: fetching goes on, whatever
   * the buffer holds, until the oldest is reached, and what they hold stays buffered while
   * regular batches take what comes after.
   */
  replayEnds: number[];
  /**
   * Gaps found while running and reported, that no batch has passed yet: a batch's range ends
   * before one and the next begins after it, so a batch rebuilt after a crash never names
   * offsets reported already.
   */
  gaps: { from: number; until: number }[];
}

const REPLAY_WAIT_MS = 5 * 60_000;

/** A batch taken and not yet ended: its ranges, whether it only re-runs one that ended before, whether its start is recorded in ZooKeeper. */
interface InFlightBatch {
  ranges: OffsetRange[];
  replayOnly: boolean;
  recorded?: boolean;
}

/**
 * Kafka, read with kafkajs, with offsets kept in ZooKeeper (the article's pipeline). The
 * consumer fetches into per-partition buffers; each batch takes at most
 * maxRecordsPerBatch per partition, and the ranges it took are recorded in ZooKeeper
 * before it runs, so after a crash it can be rebuilt from exactly those ranges.
 */
export class KafkaInputDStream<V> extends DStream<KafkaRecord<V>> implements InputStream {
  private client: InterruptibleKafka | undefined;
  private consumer: Consumer | undefined;
  private admin: Admin | undefined;
  private zk: ZooKeeperSession | undefined;
  private ownership: ZooKeeperOwnership | undefined;
  private offsets: ZooKeeperOffsetStore | undefined;
  private deadLetterStore: SourceDeadLetterStore | undefined;
  private readonly buffers = new Map<string, PartitionBuffer>();
  /** Ranges of batches taken and not yet finished, by batch time; a replay of an ended batch records nothing when it ends. */
  private readonly inFlight = new Map<number, InFlightBatch>();
  /** The newest batch ZooKeeper recorded as ended when the stream opened. */
  private endedAtOpen: number | undefined;
  /** Where the next batch starts, per partition, as recorded after the last batch that ended. */
  private readonly ended = new Map<string, { topic: string; partition: number; offset: number }>();
  private keepHistory = false;
  /** Batches without records are recorded too, because state streams sweep idle keys in them. */
  private recordEmptyBatches = false;
  /** A job without snapshots drops the batch history, but only once the batches it replays at start have ended. */
  private dropHistoryAfterReplays = false;
  readonly replayable = true;
  private closed = false;
  /** A consumer failure kafkajs will not recover from: the next batch fails with it. */
  private fatal: Error | undefined;
  /** Where losses are reported when failOnDataLoss is false. */
  private announce: StartContext['announce'] | undefined;

  constructor(
    graph: StreamGraph,
    readonly options: ValidKafkaOptions<V>,
  ) {
    super(graph);
  }

  /** Whether the consumer's first group join is done (kafkajs cannot stop one still joining). */
  private consumerRunning = false;

  private leaveGroup(): void {
    void this.consumer?.disconnect().catch(() => undefined);
  }

  /** Messages fetched from Kafka and not yet taken by a batch: what backpressure bounds. */
  get bufferedRecords(): number {
    let n = 0;
    for (const buffer of this.buffers.values()) n += buffer.messages.length;
    return n;
  }

  private buffer(topic: string, partition: number): PartitionBuffer | undefined {
    return this.buffers.get(`${topic}:${partition}`);
  }

  async open(context: StartContext): Promise<RecoveredBatch[]> {
    const o = this.options;
    this.useDeadLetterStore(context.dataDir);
    this.zk = new ZooKeeperSession({ connect: o.zookeeper.connect, sessionTimeoutMs: o.zookeeper.sessionTimeoutMs, digest: o.zookeeper.digest });
    // A stop that came before the session did: it waits for no unreachable ZooKeeper either.
    if (this.closed) this.zk.interrupt();
    this.ownership = await this.own(context);
    this.offsets = new ZooKeeperOffsetStore(this.zk, o.zookeeper.root, this.ownership);
    const client = (this.client = new InterruptibleKafka({ clientId: o.clientId, brokers: o.brokers, ssl: o.ssl, sasl: o.sasl }));
    if (this.closed) client.interrupt();
    this.admin = client.kafka.admin();
    await client.step(() => this.admin!.connect(), 'connecting');

    // Every partition of every topic, with the broker's current low and high offsets.
    const watermarks = new Map<string, { low: number; high: number }>();
    for (const topic of o.topics) {
      for (const p of await client.step(() => this.admin!.fetchTopicOffsets(topic), `reading the offsets of topic ${topic}`)) watermarks.set(`${topic}:${p.partition}`, { low: Number(p.low), high: Number(p.high) });
    }
    const partitions = [...watermarks.keys()].map((id) => {
      const [topic, partition] = [id.slice(0, id.lastIndexOf(':')), Number(id.slice(id.lastIndexOf(':') + 1))];
      return { topic, partition };
    });
    await this.offsets.init(partitions);
    const stored = await this.offsets.positions(partitions);
    let pending = await this.offsets.pendingBatch();
    let replays = await this.batchesToReplay(context, pending);
    this.announce = context.announce;
    // Every such partition named at once: one named per start would take as many restarts.
    const pastEnd = [...stored].filter(([id, position]) => position > watermarks.get(id)!.high);
    if (pastEnd.length > 0) {
      throw new OffsetStoreError(
        `the position in ZooKeeper (${o.zookeeper.root}) for ${pastEnd.map(([id, p]) => `${id.replace(/:(\d+)$/, '[$1]')} is ${p}, past the partition's end (${watermarks.get(id)!.high})`).join('; ')}: the topic was deleted and recreated, or truncated. ` +
          `Delete ${pastEnd.map(([id]) => `${o.zookeeper.root}/offsets/${id.replace(/:(\d+)$/, '/$1')}`).join(', ')} to read ${pastEnd.length === 1 ? 'it' : 'them'} from the beginning` +
          (o.startingOffsets === 'latest' ? " (a topic none of whose partitions has a position left starts at startingOffsets, here 'latest': its records so far would be skipped; start once with startingOffsets 'earliest' to read them)" : ''),
        { root: o.zookeeper.root, partitions: pastEnd.map(([id, position]) => ({ partition: id, position, high: watermarks.get(id)!.high })) },
      );
    }
    // A recorded batch reads its ranges again as they were: past the partition's end, the
    // records there now (a topic made again) are not the batch's, and they may never come.
    const rangesPastEnd = replays.flatMap((b) =>
      b.ranges.flatMap((r) => {
        // A topic the stream no longer reads is refused, as such, where the batch is rebuilt.
        if (!o.topics.includes(r.topic)) return [];
        const high = watermarks.get(`${r.topic}:${r.partition}`)?.high;
        if (high !== undefined && r.until <= high) return [];
        const what = b === pending ? 'in flight when the job stopped' : 'that a store restored from a snapshot must re-run';
        return [`batch ${b.batchTime} ${what} read ${r.topic}[${r.partition}] offsets ${r.from}–${r.until - 1}, ${high === undefined ? 'a partition the topic no longer has' : `past the partition's end (${high})`}`];
      }),
    );
    if (rangesPastEnd.length > 0) {
      throw new OffsetStoreError(
        `the batches recorded in ZooKeeper (${o.zookeeper.root}) cannot be read again: ${rangesPastEnd.join('; ')}. The topic was deleted and recreated, or truncated, ` +
          'and what it holds now is not what those batches read. Nothing was changed; to start over on the topic as it is, give the job a new ZooKeeper root and data folder',
        { root: o.zookeeper.root, batches: rangesPastEnd },
      );
    }
    // Records the job needs that retention deleted are a loss, never a silent jump (startingOffsets is only for partitions without a position).
    const gaps = gapsAtStart(watermarks, stored, replays, pending);
    if (gaps.length > 0 && o.failOnDataLoss) throw dataLossError(gaps, o.zookeeper.root);
    for (const gap of gaps) context.announce(BatchEvents.DATA_LOST, dataLostEvent(gap));
    if (pending && gaps.length > 0) {
      const held = heldPart(pending, watermarks);
      replays = replays.map((b) => (b === pending ? held : b));
      pending = held;
    }

    // A partition seen for the first time starts at 'earliest' or 'latest' as of now, and that
    // position is recorded at once: 'latest' must not move on if the job restarts before
    // the partition's first batch.
    const firstSeen: Array<{ topic: string; partition: number; offset: number }> = [];
    const movedOn: Array<{ topic: string; partition: number; offset: number }> = [];
    for (const { topic, partition } of partitions) {
      const id = `${topic}:${partition}`;
      const mark = watermarks.get(id)!;
      // A partition added to a topic we already read starts at its beginning ('latest' would
      // skip what was written to it before this start); a new topic follows startingOffsets.
      const topicKnown = [...stored.keys()].some((k) => k.startsWith(`${topic}:`));
      if (!stored.has(id)) firstSeen.push({ topic, partition, offset: topicKnown || o.startingOffsets === 'earliest' ? mark.low : mark.high });
      // Past a reported gap (failOnDataLoss: false), from the earliest offset the broker holds.
      const start = Math.max(stored.get(id) ?? firstSeen[firstSeen.length - 1].offset, mark.low);
      if (stored.has(id) && start > stored.get(id)!) movedOn.push({ topic, partition, offset: start });
      this.ended.set(id, { topic, partition, offset: start });
      const ranges = replays.flatMap((b) => b.ranges.filter((r) => r.topic === topic && r.partition === partition));
      // Recorded batches are rebuilt from the first one's start; regular batches continue after the last.
      const fetchFrom = Math.max(ranges.length > 0 ? ranges[0].from : start, mark.low);
      const replayUntil = ranges.reduce((m, r) => Math.max(m, r.until), 0);
      this.buffers.set(id, { topic, partition, next: Math.max(start, replayUntil), fetchedUntil: fetchFrom, messages: [], paused: false, replayUntil, replayEnds: ranges.map((r) => r.until), gaps: [] });
    }

    // A gap reported once is not reported again at the next start. The partitions the batch in
    // flight reads keep the positions its ranges start from: its end moves them.
    const readInFlight = (m: { topic: string; partition: number }) => pending?.ranges.some((r) => r.topic === m.topic && r.partition === m.partition) === true;
    await this.offsets.recordPositions([...firstSeen, ...movedOn.filter((m) => !readInFlight(m))]);

    this.consumer = client.kafka.consumer({
      groupId: o.groupId, retry: KAFKA_RETRY, maxWaitTimeInMs: 100,
      sessionTimeout: o.groupSessionTimeoutMs, rebalanceTimeout: o.groupSessionTimeoutMs, heartbeatInterval: Math.max(100, Math.floor(o.groupSessionTimeoutMs / 10)),
    });
    await client.step(() => this.consumer!.connect(), 'connecting the consumer');
    // Every position is set by a seek below. fromBeginning is only what kafkajs falls back to
    // when a position is out of range: the earliest offset held, so the gap shows in eachBatch.
    await client.step(() => this.consumer!.subscribe({ topics: o.topics, fromBeginning: true }), 'subscribing');
    // Each time the group (re)assigns partitions, fetching resumes where our buffers end:
    // ZooKeeper, not the group's committed offsets, says where that is.
    const { GROUP_JOIN, CRASH } = this.consumer.events;
    this.consumer.on(CRASH, ({ payload }) => {
      if (!payload.restart) this.fatal ??= new OffsetStoreError(`the Kafka consumer stopped and will not restart: ${payload.error.message}`, { groupId: o.groupId }, payload.error);
    });
    this.consumer.on(GROUP_JOIN, ({ payload }) => {
      for (const [topic, partitions] of Object.entries(payload.memberAssignment)) {
        for (const partition of partitions) {
          const buffer = this.buffer(topic, partition);
          if (buffer) this.consumer!.seek({ topic, partition, offset: String(buffer.fetchedUntil) });
        }
      }
    });
    // Not a step a stop may leave behind: kafkajs cannot stop a consumer whose group join it was still making.
    await this.consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        const buffer = this.buffer(batch.topic, batch.partition);
        if (!buffer) {
          // Skipping it would lose its records: fail the job, and the next start reads it from its beginning.
          this.fatal ??= new OffsetStoreError(`partition ${batch.partition} of topic ${batch.topic} appeared while the job was running; restart the job to read it`, { topic: batch.topic, partition: batch.partition });
          return;
        }
        const next = batch.messages.find((m) => Number(m.offset) >= buffer.fetchedUntil);
        if (next && Number(next.offset) > buffer.fetchedUntil && !(await this.gapFetched(buffer, Number(next.offset)))) return;
        for (const message of batch.messages) {
          const offset = Number(message.offset);
          if (offset < buffer.fetchedUntil) continue;
          buffer.messages.push({ topic: batch.topic, partition: batch.partition, offset, message });
          buffer.fetchedUntil = offset + 1;
        }
        // Backpressure: stop fetching a partition that holds two batches' worth (pausing again
        // is harmless, and a restarted consumer forgets earlier pauses). The oldest recorded
        // range not yet taken (a batch rebuilt at start) is fetched whole first.
        if (buffer.messages.length >= 2 * o.maxRecordsPerBatch && buffer.fetchedUntil >= (buffer.replayEnds[0] ?? 0)) {
          this.setPaused(buffer, true);
        }
        await heartbeat();
      },
    });
    this.consumerRunning = true;
    // The root was lost while the consumer joined its group: it leaves now that it can.
    if (this.fatal instanceof OwnershipLostError) this.leaveGroup();
    client.startDone();

    // Each batch's records are taken when it is about to run (in order): fetching pauses past
    // two batches' worth beyond the oldest range not yet taken, as it does for regular batches.
    const recovered: RecoveredBatch[] = [];
    for (const batch of replays) {
      recovered.push({ batchTime: batch.batchTime, take: () => this.takeRecorded(batch), ended: batch !== pending });
      // The one in flight is recorded in ZooKeeper: its end must clear it, records or not.
      this.inFlight.set(batch.batchTime, { ranges: batch.ranges, replayOnly: batch !== pending, recorded: batch === pending });
    }
    return recovered;
  }

  /**
   * Offsets skipped in a fetch are compaction, transaction markers, or a loss: kafkajs moves
   * a position the broker no longer holds to the earliest one held, silently. It is a loss
   * when the earliest offset held is past where the buffer ends. Returns whether to go on.
   */
  private async gapFetched(buffer: PartitionBuffer, fetched: number): Promise<boolean> {
    let low: number;
    try {
      ({ low } = await watermarksOf(this.admin!, buffer.topic, buffer.partition));
    } catch (error) {
      // The partition is gone from the topic (recreated with fewer): fail the job. A broker
      // that did not answer is kafkajs's to retry, as for the fetch itself.
      if (!(error instanceof OffsetStoreError)) throw error;
      this.fatal ??= error;
      return false;
    }
    // Retention may have moved on since the fetch: the records it brought are read, whatever the earliest offset is now.
    const gap = unreadGap(buffer.topic, buffer.partition, buffer.fetchedUntil, Math.min(low, fetched), 'running');
    const lost = failOrAnnounce(gap, this.options.failOnDataLoss, this.options.zookeeper.root, this.announce);
    if (lost) this.fatal ??= lost;
    else if (gap) {
      buffer.gaps.push({ from: gap.from, until: gap.until });
      await this.positionPastReported(buffer);
    }
    return lost === undefined;
  }

  /**
   * A reported gap where the partition's position stands (every batch before it ended there,
   * none after it began): the position moves past it now, so that a stop or a crash before
   * the next batch does not have the next start report it again. A batch in flight that ends
   * at the gap moves it when it ends. At worst (ZooKeeper away) the gap is reported again.
   */
  private async positionPastReported(buffer: PartitionBuffer): Promise<void> {
    const gap = buffer.gaps[0];
    if (!gap || buffer.next !== gap.from) return;
    const reads = (b: InFlightBatch) => !b.replayOnly && b.ranges.some((r) => r.topic === buffer.topic && r.partition === buffer.partition);
    if ([...this.inFlight.values()].some(reads)) return;
    const position = { topic: buffer.topic, partition: buffer.partition, offset: gap.until };
    try {
      await this.offsets!.recordPositions([position]);
      this.ended.set(`${buffer.topic}:${buffer.partition}`, position);
    } catch {
      // The next start reports the gap again, which loses nothing.
    }
  }

  /**
   * Before any position is read or written, this copy must own the job's root: a second copy
   * fails here naming the first. Losing it later (an expired session) fails the next batch.
   */
  private async own(context: StartContext): Promise<ZooKeeperOwnership> {
    const { root } = this.options.zookeeper;
    // The context holds the data folder's lock while its sources open.
    const ownership = new ZooKeeperOwnership(this.zk!, root, { dataDir: context.dataDir, appName: context.appName }, true);
    const taken = await ownership.acquire();
    ownership.onLost((error) => {
      this.fatal ??= error;
      // Out of the consumer group now, not at stop(): a copy that stays up after losing the
      // root would otherwise keep its share of the topic's partitions from the copy that owns it.
      if (this.consumerRunning) this.leaveGroup();
      context.announce(BatchEvents.OWNERSHIP_LOST, { source: this.id, root, node: taken.node, error });
    });
    const before = taken.tookOverFrom;
    context.announce(BatchEvents.OWNERSHIP_TAKEN, {
      source: this.id, root, node: taken.node, owner: taken.record, waitedMs: taken.waitedMs,
      ...(before ? { tookOverFrom: { node: before.node, owner: before.record, reason: before.reason } } : {}),
    });
    return ownership;
  }

  /**
   * The batches the stores miss, oldest first: those after the oldest batch a partition
   * holds (a store restored from a snapshot is behind), then the one in flight. Partitions
   * that hold a batch skip it, so each record reaches each key's state once.
   */
  private async batchesToReplay(context: StartContext, pending: RecordedBatch | undefined): Promise<RecordedBatch[]> {
    const offsets = this.offsets!;
    const lastEnded = await offsets.lastEnded();
    this.endedAtOpen = lastEnded;
    const root = this.options.zookeeper.root;
    if (context.hasStateStreams && !context.storesHoldState && lastEnded !== undefined) {
      throw new OffsetStoreError(
        `the state stores under ${context.dataDir} hold no batch, but ZooKeeper (${root}) records batches up to ${lastEnded} as processed: that state is gone. ` +
          `Restore a snapshot (statestream snapshot restore), or delete ${root} in ZooKeeper to start over from startingOffsets`,
        { root, lastEnded },
      );
    }
    const replays: RecordedBatch[] = [];
    if (context.replayAfter !== undefined && lastEnded !== undefined && context.replayAfter < lastEnded) {
      const history = await offsets.historyAfter(context.replayAfter);
      if (!history) {
        throw new OffsetStoreError(
          `a partition store holds batch ${context.replayAfter}, but ZooKeeper (${root}) records batches up to ${lastEnded} and no longer keeps the ranges after ${context.replayAfter} to replay; ` +
            'restore a newer snapshot (statestream snapshot list)',
          { root, replayAfter: context.replayAfter, lastEnded },
        );
      }
      // Batches without records are re-run too: restored partitions sweep idle keys in them.
      replays.push(...history);
    }
    this.keepHistory = context.keepHistory;
    this.recordEmptyBatches = context.sweepsIdleKeys;
    // An anchor says "complete from here on": at the last ended batch, or at 0 when no
    // batch has ended yet (a snapshot taken before the first records needs it).
    // Not before the replays ran: a start that fails or dies while they run would leave a
    // restored store that no history can ever catch up again.
    if (!this.keepHistory && replays.length === 0) await offsets.dropHistory();
    else if (!this.keepHistory) this.dropHistoryAfterReplays = true;
    else await offsets.anchorHistory(lastEnded ?? 0);
    // A batch in flight without records was recorded because it swept idle keys: some partitions may have committed that sweep.
    if (pending && !replays.some((b) => b.batchTime === pending.batchTime)) replays.push(pending);
    return replays;
  }

  /** Waits until every recorded range is fetched, then takes exactly those messages. */
  private async takeRecorded(batch: RecordedBatch): Promise<Fetched[]> {
    const deadline = Date.now() + REPLAY_WAIT_MS;
    for (const range of batch.ranges) {
      const buffer = this.buffer(range.topic, range.partition);
      if (!buffer) throw new OffsetStoreError(`the batch recorded in ZooKeeper reads ${range.topic}[${range.partition}], which this stream does not subscribe to`, { ...range });
      while (buffer.fetchedUntil < range.until) {
        if (this.closed) throw new OffsetStoreError('the stream closed while rebuilding the recorded batch', { ...range });
        // A gap met by the fetch (retention overtook the range since the start's check), a consumer that crashed for good, ownership lost: no wait brings the range.
        if (this.fatal) throw this.fatal;
        // Paused while an earlier range was the one wanted (the buffer held two batches past it): this one is wanted now.
        if (buffer.paused) this.setPaused(buffer, false);
        if (Date.now() > deadline) {
          throw new OffsetStoreError(
            `could not fetch ${range.topic}[${range.partition}] offsets ${range.from}–${range.until - 1} of recorded batch ${batch.batchTime} within ${REPLAY_WAIT_MS / 1000} s (fetched up to ${buffer.fetchedUntil - 1})`,
            { ...range, batchTime: batch.batchTime },
          );
        }
        await sleep(20);
      }
    }
    const records: Fetched[] = [];
    for (const range of batch.ranges) {
      const buffer = this.buffer(range.topic, range.partition)!;
      const keep: Fetched[] = [];
      for (const m of buffer.messages) (m.offset >= range.from && m.offset < range.until ? records : m.offset >= range.until ? keep : []).push(m);
      buffer.messages = keep;
      while (buffer.replayEnds.length > 0 && buffer.replayEnds[0] <= range.until) buffer.replayEnds.shift();
      this.resumeIfDrained(buffer);
    }
    return records;
  }

  endedThrough(): number | undefined {
    return this.endedAtOpen;
  }

  take(batchTime: number, behind: boolean): RecordPieces<Fetched> {
    const ranges: OffsetRange[] = [];
    const records: Fetched[] = [];
    for (const buffer of this.buffers.values()) {
      // A batch begins past the reported gaps it reaches and ends before the next one.
      let from = buffer.next;
      let passed = 0;
      while (passed < buffer.gaps.length && buffer.gaps[passed].from <= from) from = Math.max(from, buffer.gaps[passed++].until);
      const before = buffer.gaps[passed]?.from ?? Infinity;
      // Anything before `from` belongs to an earlier (recorded) batch.
      let skip = 0;
      while (skip < buffer.messages.length && buffer.messages[skip].offset < from) skip++;
      let count = 0;
      const most = behind ? 0 : this.options.maxRecordsPerBatch;
      while (count < most && skip + count < buffer.messages.length && buffer.messages[skip + count].offset < before) count++;
      const taken = buffer.messages.slice(skip, skip + count);
      // Before `from`: the records of batches still to replay (taken when each runs), or of an
      // earlier batch, gone once none is left to replay.
      if (buffer.replayEnds.length > 0) buffer.messages.splice(skip, count);
      else buffer.messages = buffer.messages.slice(skip + count);
      if (taken.length > 0) {
        const until = taken[taken.length - 1].offset + 1;
        ranges.push({ topic: buffer.topic, partition: buffer.partition, from, until });
        buffer.next = until;
        buffer.gaps.splice(0, passed);
        for (const m of taken) records.push(m);
      }
      this.resumeIfDrained(buffer);
    }
    this.inFlight.set(batchTime, { ranges, replayOnly: false });
    return [records];
  }

  /** Pauses or resumes fetching the buffer's partition; kafkajs throws from pause/resume while a crashed consumer restarts, and the next fetch re-pauses. */
  private setPaused(buffer: PartitionBuffer, paused: boolean): void {
    buffer.paused = paused;
    try {
      this.consumer?.[paused ? 'pause' : 'resume']([{ topic: buffer.topic, partitions: [buffer.partition] }]);
    } catch {
      // The restarted consumer fetches again and eachBatch pauses it when needed.
    }
  }

  /** A paused partition whose buffer a batch took below one batch's worth fetches again. */
  private resumeIfDrained(buffer: PartitionBuffer): void {
    if (buffer.paused && buffer.messages.length < this.options.maxRecordsPerBatch) this.setPaused(buffer, false);
  }

  async beforeBatch(batchTime: number): Promise<void> {
    if (this.fatal) throw this.fatal;
    const batch = this.inFlight.get(batchTime);
    if (batch && !batch.replayOnly && (batch.ranges.length > 0 || this.recordEmptyBatches)) {
      await this.offsets!.recordBatchStart({ batchTime, ranges: batch.ranges });
      batch.recorded = true;
    }
  }

  async afterBatch(batchTime: number): Promise<void> {
    const batch = this.inFlight.get(batchTime);
    this.inFlight.delete(batchTime);
    // A replayed batch ended before: ZooKeeper already records its positions (and newer ones).
    if (!batch || batch.replayOnly) return;
    // The first live batch ended: every replay before it is committed, the history may go.
    if (this.dropHistoryAfterReplays) {
      await this.offsets!.dropHistory();
      this.dropHistoryAfterReplays = false;
    }
    if (batch.ranges.length === 0) {
      // Every partition swept its idle keys in this batch too: a partition restored from a
      // snapshot must run it again for its timeouts to fire as they did, so the history keeps
      // its time. No position moved: without snapshots, only a recorded start is cleared.
      if (this.keepHistory || batch.recorded) await this.offsets!.recordBatchEnd({ batchTime, ranges: [] }, this.keepHistory);
      return;
    }
    const { ranges } = batch;
    await this.offsets!.recordBatchEnd({ batchTime, ranges }, this.keepHistory);
    for (const r of ranges) this.ended.set(`${r.topic}:${r.partition}`, { topic: r.topic, partition: r.partition, offset: r.until });
    for (const r of ranges) {
      const buffer = this.buffer(r.topic, r.partition);
      if (buffer) await this.positionPastReported(buffer);
    }
    // For lag tools only: ZooKeeper is the record, so a failed commit loses nothing, and the
    // next batch must not wait for it while a broker is away.
    void this.consumer?.commitOffsets(ranges.map((r) => ({ topic: r.topic, partition: r.partition, offset: String(r.until) }))).catch(() => undefined);
  }

  private decode(fetched: Fetched): V | null {
    const { decoder } = this.options;
    const value = fetched.message.value;
    if (value === null) return null;
    if (decoder === 'buffer') return value as V;
    if (decoder === 'string') return value.toString('utf8') as V;
    if (decoder === 'json') return JSON.parse(value.toString('utf8')) as V;
    return decoder(value, { topic: fetched.topic, partition: fetched.partition, offset: String(fetched.offset) });
  }

  protected compute(batch: BatchRun): KafkaRecord<V>[] {
    const fetched = joinPieces((batch.inputs.get(this.id) ?? []) as RecordPieces<Fetched>);
    const records: KafkaRecord<V>[] = [];
    const letters: SourceDeadLetter[] = [];
    for (const f of fetched) {
      let value: V | null;
      try {
        value = this.decode(f);
      } catch (error) {
        const where = `${f.topic}[${f.partition}] offset ${f.offset}`;
        if (this.options.onDecodeFailure === 'stop') {
          throw new SourceRecordError(`cannot decode the message at ${where} in batch ${batch.time}: ${(error as Error).message}`, { topic: f.topic, partition: f.partition, offset: f.offset, batchTime: batch.time }, error);
        }
        letters.push({ topic: f.topic, partition: f.partition, offset: f.offset, key: f.message.key?.toString('utf8') ?? null, value: f.message.value, batchTime: batch.time, error: serializeError(error) });
        continue;
      }
      const headers: Record<string, string | undefined> = {};
      for (const [name, h] of Object.entries(f.message.headers ?? {})) headers[name] = h === undefined ? undefined : Array.isArray(h) ? h.map(String).join(',') : h.toString();
      records.push({ topic: f.topic, partition: f.partition, offset: String(f.offset), key: f.message.key?.toString('utf8') ?? null, value, timestamp: f.message.timestamp, headers });
    }
    this.deadLetterStore!.add(letters);
    return records;
  }

  override description(): string {
    return `kafkaStream(${this.options.topics.join(', ')})`;
  }

  override describeRecord(record: unknown, index: number, batchTime: number): RecordDescription {
    const { topic, partition, offset } = record as KafkaRecord<V>;
    return { text: `the message at ${topic}[${partition}] offset ${offset} in batch ${batchTime}`, context: { batchTime, index, topic, partition, offset } };
  }

  /** Where messages the decoder cannot read are kept (opened by open(), or by a cluster's stage 1, which reads the source itself). */
  useDeadLetterStore(dataDir: string): void {
    this.deadLetterStore = new SourceDeadLetterStore(dataDir, this.id);
  }

  /** Messages the decoder could not read (policy 'dead-letter'), by topic, partition and offset. */
  deadLetters(): SourceDeadLetter[] {
    return this.deadLetterStore?.list() ?? [];
  }

  /** How many messages the decoder could not read are kept. */
  deadLetterCount(): number {
    return this.deadLetterStore?.count() ?? 0;
  }

  /** Where each topic-partition stands and whether ZooKeeper answers; read-only, for metrics and the status page. */
  status(): KafkaSourceStatus {
    const { topics, zookeeper } = this.options;
    const partitions = [...this.buffers.values()].map((b) => ({
      topic: b.topic, partition: b.partition, next: this.ended.get(`${b.topic}:${b.partition}`)?.offset ?? b.next, fetched: b.fetchedUntil, buffered: b.messages.length,
    }));
    return { source: this.id, topics, zookeeper: { root: zookeeper.root, opened: this.zk !== undefined, ...(this.zk?.status() ?? { connect: zookeeper.connect, connected: false, sinceMs: Date.now() }) }, partitions };
  }

  /** The broker's log-end offset per topic-partition, for lag (asks the broker: callers bound the wait). */
  async highWatermarks(): Promise<Map<string, number>> {
    const marks = new Map<string, number>();
    for (const topic of this.options.topics) {
      for (const p of (await this.admin?.fetchTopicOffsets(topic)) ?? []) marks.set(`${topic}:${p.partition}`, Number(p.high));
    }
    return marks;
  }

  positions(): SourcePositions {
    return { kind: 'kafka', zookeeperRoot: this.options.zookeeper.root, positions: [...this.ended.values()].map((p) => ({ ...p })) };
  }

  async retainHistoryFrom(batchTime: number): Promise<void> {
    await this.offsets?.pruneHistory(batchTime);
  }

  interrupt(): void {
    this.closed = true;
    this.zk?.interrupt();
    this.client?.interrupt();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.disconnect(this.consumer, this.admin);
    await this.ownership?.release();
    this.zk?.close();
    this.deadLetterStore?.close();
    // Metrics and the page may still ask for its count while the context finishes stopping.
    this.deadLetterStore = undefined;
  }
}
