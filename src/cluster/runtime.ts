import type { Admin, Producer } from 'kafkajs';
import type { AnyActorRef } from 'xstate';
import { ClusterError, OwnershipLostError, asError } from '../errors.js';
import { FirstFailure } from '../first-failure.js';
import type { WorkerSet } from '../actors/worker-set.js';
import type { BatchRun } from '../engine/batch.js';
import { BatchEvents, type BatchEventMap } from '../engine/batch-events.js';
import type { DStream } from '../engine/dstream.js';
import type { KafkaInputDStream, KafkaRecord } from '../engine/sources/kafka.js';
import { InterruptibleKafka } from '../engine/sources/kafka-client.js';
import { watermarksOf } from '../engine/sources/kafka-gaps.js';
import { ZooKeeperSession } from '../storage/zookeeper/session.js';
import { ChangelogWriter } from './changelog-io.js';
import { sourcesReadBy } from './assignment.js';
import { ClusterCoordinator, type ClusterMember } from './coordinator.js';
import type { ValidClusterOptions } from './options.js';
import { PartitionReader } from './partition-reader.js';
import { StageOneWriter } from './stage-one.js';
import { SourceIntake, type IntakeMessage } from './source-intake.js';
import type { ClusterMapWithStateDStream } from './state-stream.js';
import { changelogTopic, ensureTopics, repartitionTopic } from './topics.js';

/** What `ssc.cluster` answers: where a key's state lives, and who is in the job. */
export interface ClusterView {
  /** This instance's id. */
  readonly instanceId: string;
  /** The instance that owns `key`'s partition of state stream `stream` (default 0), per the current assignment. */
  ownerOf(key: unknown, stream?: number): ClusterMember | undefined;
  /** The live instances, as last read from ZooKeeper. */
  members(): ClusterMember[];
  /** Per state stream, the partitions this instance owns now, with their epochs. */
  owned(): Array<{ stream: number; partition: number; epoch: number }>;
}

/** How many times in a row a partition is taken again after Kafka refused it for a moment. */
const TAKE_RETRIES = 30;

export interface ClusterJob {
  appName: string;
  dataDir: string;
  source: KafkaInputDStream<unknown>;
  streams: Array<ClusterMapWithStateDStream<unknown, unknown, unknown, unknown>>;
  announce<E extends keyof BatchEventMap>(event: E, payload: BatchEventMap[E]): void;
}

/**
 * One instance of a job that runs on several (see docs/scale-out.md): stage 1 reads a share
 * of the Kafka source and writes every [key, value] pair to the repartition topic; stage 2
 * applies the state partitions the leader assigned to this instance, as a single-process
 * job does, writing their changelogs. The StreamingContext runs its batches as usual and
 * asks this for the records of each (take) and to run stage 1 before the state streams.
 */
export class ClusterRuntime implements ClusterView {
  private zk: ZooKeeperSession | undefined;
  /** stop() began: waits for an unreachable ZooKeeper fail at once, in a session opened later too. */
  private interrupted = false;
  private client: InterruptibleKafka | undefined;
  private admin: Admin | undefined;
  private producer: Producer | undefined;
  private intake: SourceIntake | undefined;
  private reader: PartitionReader | undefined;
  private coordinator: ClusterCoordinator | undefined;
  private stageOne: StageOneWriter | undefined;
  /** Source positions each batch took, recorded once its pairs are acknowledged. */
  private readonly taken = new Map<number, Array<{ topic: string; partition: number; offset: number }>>();
  /** A failure outside any batch (taking a partition, the coordinator): the next batch fails with it. */
  private failure: Error | undefined;

  constructor(
    readonly options: ValidClusterOptions,
    private readonly job: ClusterJob,
  ) {}

  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Checks the job's shape: one Kafka source, and state streams fed from it by map/flatMap/filter alone. */
  static check(inputs: readonly unknown[], streams: ReadonlyArray<{ stateIndex: number; parentStream: DStream<unknown> }>, isKafka: (input: unknown) => boolean): void {
    if (inputs.length !== 1 || !isKafka(inputs[0])) {
      throw new ClusterError('cluster: a job that runs as a cluster reads exactly one kafkaStream (its partitions are what the instances share)', { inputs: inputs.length });
    }
    if (streams.length === 0) throw new ClusterError('cluster: the job has no mapWithState stream; there is nothing to spread over instances', {});
    for (const s of streams) {
      if (s.parentStream.root() !== inputs[0]) {
        throw new ClusterError(`cluster: mapWithState stream ${s.stateIndex} must be fed from the kafkaStream by map/flatMap/filter alone (its pairs are tagged with their source position)`, { stream: s.stateIndex });
      }
    }
  }

  async start(workers: WorkerSet, supervisor: AnyActorRef, emitOutputs: (stream: number) => boolean): Promise<void> {
    const { job, options } = this;
    const source = job.source.options;
    this.zk = new ZooKeeperSession({ connect: options.zookeeper.connect, sessionTimeoutMs: options.zookeeper.sessionTimeoutMs, digest: options.zookeeper.digest });
    // A stop that came before the session did: it waits for no unreachable ZooKeeper either.
    if (this.interrupted) this.zk.interrupt();
    const client = (this.client = new InterruptibleKafka({ clientId: `${source.clientId}-${options.instanceId}`, brokers: source.brokers, ssl: source.ssl, sasl: source.sasl }));
    if (this.interrupted) client.interrupt();
    this.admin = client.kafka.admin();
    await client.step(() => this.admin!.connect(), 'connecting');
    const layout = Object.fromEntries(job.streams.map((s) => [String(s.stateIndex), s.numPartitions]));
    await client.step(() => ensureTopics(this.admin!, job.streams.flatMap((s) => [
      { name: repartitionTopic(job.appName, s.stateIndex), partitions: s.numPartitions, compacted: false },
      { name: changelogTopic(job.appName, s.stateIndex), partitions: s.numPartitions, compacted: true },
    ])), 'checking the job\'s topics');
    // One request at a time per broker: a retried send cannot overtake the next, so each
    // source partition's pairs reach their repartition partition in order (the marks rely on it).
    this.producer = client.kafka.producer({ maxInFlightRequests: 1, idempotent: false, allowAutoTopicCreation: false });
    await client.step(() => this.producer!.connect(), 'connecting the producer');
    // One consumer reads all it needs: the source partitions this instance shards, the
    // repartition partitions it owns, the changelogs it restores from (each group join costs
    // the broker's initial rebalance delay, 3 s by default).
    this.reader = new PartitionReader(
      client.kafka,
      [...source.topics, ...job.streams.flatMap((s) => [repartitionTopic(job.appName, s.stateIndex), changelogTopic(job.appName, s.stateIndex)])],
      `${job.appName}-${options.instanceId}`,
      Math.max(2 * source.maxRecordsPerBatch, 2 * options.maxPairsPerBatch),
    );
    // Not a step a stop may leave behind: kafkajs cannot stop a consumer whose group join it was still making.
    await this.reader.start();
    job.source.useDeadLetterStore(job.dataDir);
    this.intake = new SourceIntake(this.admin, this.reader, this.zk, options.zookeeper.root, {
      topics: source.topics, startingOffsets: source.startingOffsets, maxRecordsPerBatch: source.maxRecordsPerBatch,
      failOnDataLoss: source.failOnDataLoss, announce: job.announce,
    });
    const intake = this.intake;
    const sourceLayout = await client.step(() => intake.layout(), 'reading the source topics\' partitions');
    client.startDone();
    const coordinator = (this.coordinator = new ClusterCoordinator(this.zk, options.zookeeper.root, { id: options.instanceId, dataDir: job.dataDir }, layout, sourceLayout, true));
    for (const stream of job.streams) {
      stream.attach({
        workers, supervisor, emitOutputs: emitOutputs(stream.stateIndex), coordinator, instanceId: options.instanceId,
        reader: this.reader, changelog: new ChangelogWriter(this.producer, changelogTopic(job.appName, stream.stateIndex)),
        repartitionTopic: repartitionTopic(job.appName, stream.stateIndex), maxPairsPerBatch: options.maxPairsPerBatch,
        changelogStart: (partition) => this.lowOffset(changelogTopic(job.appName, stream.stateIndex), partition),
        restoreTimeoutMs: options.restoreTimeoutMs, announce: job.announce,
        takeFailed: (error) => this.takeFailed(error, stream),
      });
    }
    coordinator.on('assignment', (owned, assignment) => {
      job.announce(BatchEvents.ASSIGNMENT_CHANGED, { instance: options.instanceId, generation: assignment.generation, owned });
      intake.assign(sourcesReadBy(assignment, options.instanceId));
      for (const stream of job.streams) {
        stream.reassign(owned.filter((o) => o.stream === stream.stateIndex)).catch((error: unknown) => this.takeFailed(error, stream));
      }
    });
    coordinator.on('lost', () => {
      for (const stream of job.streams) stream.loseAll().catch((error: unknown) => this.takeFailed(error));
    });
    this.stageOne = new StageOneWriter(this.producer, job.streams.map((s) => ({ stream: s, topic: repartitionTopic(job.appName, s.stateIndex) })));
    await coordinator.join();
  }

  /**
   * Taking a partition failed. One that moved on meanwhile is no failure (the next assignment
   * settles it); one that Kafka refused for a moment (a broker down while the changelog is
   * written or read) is taken again a second later, up to TAKE_RETRIES times in a row; any
   * other failure fails the job.
   */
  private takeFailed(error: unknown, stream?: ClusterMapWithStateDStream<unknown, unknown, unknown, unknown>): void {
    // A take its own lease cut short (a slow broker while the restore wrote its takeover)
    // leaves its partition, and those after it, assigned here and owned by no one: the
    // assignment has not changed, so nothing announces them again. They are taken again.
    const cutShort = error instanceof OwnershipLostError && stream !== undefined && this.untaken(stream);
    if (error instanceof OwnershipLostError && !cutShort) return;
    const transient = cutShort || (error instanceof Error && (/^KafkaJS/.test(error.name) || (error as { retriable?: boolean }).retriable === true));
    if (stream && transient && !this.stopped && this.takeRetries < TAKE_RETRIES) {
      this.takeRetries++;
      setTimeout(() => {
        if (this.stopped || !this.coordinator) return;
        stream.reassign(this.coordinator.assignedToMe().filter((o) => o.stream === stream.stateIndex)).then(
          () => void (this.takeRetries = 0),
          (next: unknown) => this.takeFailed(next, stream),
        );
      }, 1_000);
      return;
    }
    this.failure ??= asError(error, stream ? `taking partitions of stream ${stream.stateIndex}` : 'the cluster');
  }

  /** Whether the assignment gives this instance a partition of `stream` it does not own. */
  private untaken(stream: ClusterMapWithStateDStream<unknown, unknown, unknown, unknown>): boolean {
    if (this.stopped || !this.coordinator) return false;
    const owned = new Map(stream.ownedPartitions().map((o) => [o.partition, o.epoch]));
    return this.coordinator.assignedToMe().some((o) => o.stream === stream.stateIndex && owned.get(o.partition) !== o.epoch);
  }

  /** Takes that failed for a moment, in a row. */
  private takeRetries = 0;
  private stopped = false;

  private async lowOffset(topic: string, partition: number): Promise<number> {
    return (await watermarksOf(this.admin!, topic, partition)).low;
  }

  /** At a batch's time: the source records this instance shards in it (none while earlier batches wait). */
  take(batchTime: number, behind: boolean): IntakeMessage[] {
    if (this.failure) throw this.failure;
    const { messages, positions } = this.intake!.take(behind);
    this.taken.set(batchTime, positions);
    return messages;
  }

  /** Stage 1 of a batch: its pairs to the repartition topics, acknowledged; then the source positions after them. */
  async shard(batch: BatchRun): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.coordinator?.problem) throw this.coordinator.problem;
    const records = (await this.job.source.recordsFor(batch)) as Array<KafkaRecord<unknown>>;
    await this.stageOne!.write(batch, records);
    await this.intake!.record(this.taken.get(batch.time) ?? []);
    this.taken.delete(batch.time);
  }

  ownerOf(key: unknown, stream = 0): ClusterMember | undefined {
    const s = this.job.streams.find((x) => x.stateIndex === stream);
    if (!s) throw new ClusterError(`cluster.ownerOf: there is no mapWithState stream ${stream}`, { stream });
    const id = this.coordinator?.ownerOf(stream, s.partitionOf(key));
    return id === undefined ? undefined : this.members().find((m) => m.id === id);
  }

  members(): ClusterMember[] {
    return this.coordinator?.members() ?? [];
  }

  owned(): Array<{ stream: number; partition: number; epoch: number }> {
    return this.job.streams.flatMap((s) => s.ownedPartitions().map((p) => ({ stream: s.stateIndex, ...p })));
  }

  /** Leaves the job: the last batch is done, so the partitions go to the others at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    // A take under way (waiting out a dead owner's session, reading a long changelog) would hold
    // the stop for minutes, past its timeout: it gives up, and the partition goes to the others.
    this.coordinator?.stopTaking();
    this.reader?.cancelReads(new OwnershipLostError('cluster: the instance stopped while restoring a partition', { instance: this.instanceId }));
    // Every step, even after one that fails: an instance that did not leave keeps its owner nodes, and its partitions, until its session ends.
    const failures = new FirstFailure();
    for (const stream of this.job.streams) await failures.run(() => stream.close());
    await failures.run(() => this.coordinator?.leave());
    await failures.run(() => this.reader?.stop());
    await failures.run(() => this.client?.disconnect(this.producer, this.admin));
    this.zk?.close();
    failures.rethrow();
  }

  interrupt(): void {
    this.interrupted = true;
    this.zk?.interrupt();
    this.client?.interrupt();
  }
}
