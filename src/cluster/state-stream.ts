import { randomUUID } from 'node:crypto';
import { createActor, type ActorRefFrom, type AnyActorRef } from 'xstate';
import { ClusterError, ConfigError, LifecycleError, NotOwnerError, OwnershipLostError } from '../errors.js';
import { partitionMachine } from '../actors/partition.machine.js';
import type { RoutedBatch } from '../actors/router.machine.js';
import { ShardBuilder } from '../actors/shard-encoder.js';
import { ChunkedShard } from '../actors/chunked-shard.js';
import type { ApplyDone, ApplyPrepared } from '../actors/messages.js';
import type { WorkerSet } from '../actors/worker-set.js';
import { deserializeError } from '../errors.js';
import { FirstFailure } from '../first-failure.js';
import { decodeBatchOutputs, type EncodedOutputs } from '../storage/partition/batch-outputs.js';
import { BatchLog, FORMAT_VERSION, lastCommittedBatch, readCheckedLayout, writeLayout } from '../storage/partition/batch-log.js';
import { DeadLetterStore, type DeadLetter } from '../storage/partition/dead-letters.js';
import { StateView } from '../storage/partition/state-view.js';
import { foldChangeLog } from '../storage/partition/change-log.js';
import { closePartitionStores, openPartitionStore, partitionPath, type PartitionStore } from '../storage/partition/store.js';
import { reconcileTimeIndex } from '../storage/partition/time-index.js';
import { partitionFigures, type PartitionFigures } from '../storage/partition/figures.js';
import type { BatchRun } from '../engine/batch.js';
import { BatchEvents, type BatchEventMap } from '../engine/batch-events.js';
import { DStream, type MapWithStateStream, type StateQueries, type StreamGraph } from '../engine/dstream.js';
import { StateSnapshotDStream } from '../engine/map-with-state-stream.js';
import { murmur2Partitioner } from '../engine/partitioner.js';
import { normalizeKey } from '../storage/keys.js';
import type { StateSpec } from '../engine/state-spec.js';
import type { ChangelogWriter } from './changelog-io.js';
import type { ClusterCoordinator } from './coordinator.js';
import { PairFilter } from './high-water-marks.js';
import { withinLease } from './lease.js';
import type { PartitionReader } from './partition-reader.js';
import { pairMessagesPerBatch, readPairs } from './pairs.js';
import { readClusterMeta, restorePartition, type ClusterMeta } from './restore-store.js';

/** What a cluster's state stream needs from its runtime once the job starts. */
export interface ClusterStreamRuntime {
  workers: WorkerSet;
  supervisor: AnyActorRef;
  emitOutputs: boolean;
  coordinator: ClusterCoordinator;
  instanceId: string;
  /** Reads the repartition topic's partitions this instance owns, and the changelogs it restores from. */
  reader: PartitionReader;
  changelog: ChangelogWriter;
  repartitionTopic: string;
  /** Pairs a partition takes per batch at most. */
  maxPairsPerBatch: number;
  /** The earliest offset each changelog partition still holds. */
  changelogStart: (partition: number) => Promise<number>;
  restoreTimeoutMs: number;
  /** Emits the context's events (partitions taken and released). */
  announce: ClusterJobAnnounce;
  /** A retake this stream began by itself failed: the runtime retries it or fails the job, as for a take the assignment began. */
  takeFailed: (error: unknown) => void;
}

type ClusterJobAnnounce = <E extends keyof BatchEventMap>(event: E, payload: BatchEventMap[E]) => void;

/** A partition this instance owns. */
interface Owned {
  partition: number;
  epoch: number;
  store: PartitionStore;
  actor: ActorRefFrom<typeof partitionMachine>;
  /** Where the repartition partition is read next, and the marks of what was applied, as committed. */
  meta: ClusterMeta;
  filter: PairFilter;
  /** The newest batch its store holds: a batch of this instance's clock at or before it would be taken for one already applied. */
  lastBatch: number;
  /** What its worker thread knows this ownership's store and memory by. */
  incarnation: string;
}

/**
 * mapWithState in a cluster (stage 2, see docs/scale-out.md): the same partition actors,
 * worker threads, memory and LMDB stores as a single process, for the partitions this
 * instance owns only. Their records come from the repartition topic, already partitioned;
 * each batch is applied in two phases, the changelog written between them, so a new owner
 * can always restore what an owner committed.
 */
export class ClusterMapWithStateDStream<K, V, S, M> extends DStream<M> implements MapWithStateStream<K, S, M> {
  private runtime: ClusterStreamRuntime | undefined;
  private readonly owned = new Map<number, Owned>();
  private stores: Array<PartitionStore | undefined> = [];
  private view: StateView<unknown, unknown> | undefined;
  private placement: number[] = [];
  private incarnation = randomUUID();
  /** Ownership changes wait for the batch that runs, and batches for ownership changes. */
  private turn: Promise<void> = Promise.resolve();

  constructor(
    graph: StreamGraph,
    private readonly parent: DStream<[K, V]>,
    readonly spec: StateSpec<K, V, S, M>,
    readonly stateIndex: number,
    private readonly dataDir: string,
  ) {
    super(graph);
    if (spec.getInitialState() !== undefined) throw new ConfigError('mapWithState in a cluster: initialState is not supported yet (a cluster starts from empty state or from its changelog topics)', { stream: stateIndex });
    if (spec.getStateVersion() !== 1 || spec.getMigrate() !== undefined) throw new ConfigError('mapWithState in a cluster: stateVersion and migrations are not supported yet', { stream: stateIndex });
  }

  /** The stream whose records stage 1 turns into pairs for the repartition topic. */
  get parentStream(): DStream<unknown> {
    return this.parent as DStream<unknown>;
  }

  get numPartitions(): number {
    return this.spec.getNumPartitions();
  }

  protected override dependencies(): DStream<unknown>[] {
    return [];
  }

  override readsSourcesOnly(): boolean {
    return false;
  }

  override description(): string {
    return `mapWithState stream ${this.stateIndex} (cluster)`;
  }

  attach(runtime: ClusterStreamRuntime): void {
    this.runtime = runtime;
    this.placement = runtime.workers.place(this.stateIndex, this.numPartitions);
    this.stores = new Array(this.numPartitions).fill(undefined);
    this.refreshView();
  }

  private refreshView(): void {
    this.view?.release();
    this.view = new StateView<unknown, unknown>(this.stores, murmur2Partitioner, (partition, key) =>
      new NotOwnerError(`key ${JSON.stringify(key)} is in partition ${partition} of stream ${this.stateIndex}, which instance ${this.runtime?.coordinator.ownerOf(this.stateIndex, partition) ?? '(none yet)'} owns, not this one (${this.runtime?.instanceId}); ask that instance`, {
        stream: this.stateIndex, partition, owner: this.runtime?.coordinator.ownerOf(this.stateIndex, partition),
      }),
    );
  }

  private get rt(): ClusterStreamRuntime {
    if (!this.runtime) throw new LifecycleError('mapWithState: the StreamingContext is not running (call start() first)', { stream: this.stateIndex });
    return this.runtime;
  }

  /** The state partition of a key (murmur2, as stage 1 and a single process shard it). */
  partitionOf(key: unknown): number {
    return murmur2Partitioner.partition(normalizeKey(key), this.numPartitions);
  }

  /** The figures of the partitions this instance owns, for metrics and the status page. */
  partitionFigures(): PartitionFigures[] {
    return this.stores.flatMap((store, partition) => (store ? [partitionFigures(store, partition)] : []));
  }

  /** Partitions this instance owns now. */
  ownedPartitions(): Array<{ partition: number; epoch: number }> {
    return [...this.owned.values()].map((o) => ({ partition: o.partition, epoch: o.epoch }));
  }

  /** Follows the assignment: takes the partitions given to this instance and gives up the others, between batches. */
  reassign(wanted: Array<{ partition: number; epoch: number }>): Promise<void> {
    const next = this.turn.then(async () => {
      const keep = new Map(wanted.map((w) => [w.partition, w.epoch]));
      // Every partition that moved is given up even when giving up one fails (its close), then the first failure is thrown.
      const dropping = new FirstFailure();
      for (const o of [...this.owned.values()]) if (keep.get(o.partition) !== o.epoch) await dropping.run(() => this.drop(o.partition, 'moved'));
      dropping.rethrow();
      for (const [partition, epoch] of keep) if (!this.owned.has(partition)) await this.take(partition, epoch);
    });
    this.turn = next.catch(() => undefined);
    return next;
  }

  /** Takes a partition: its owner node, its epoch in the changelog, its store restored, its actor, its repartition reading. */
  private async take(partition: number, epoch: number): Promise<void> {
    const rt = this.rt;
    const started = Date.now();
    await rt.coordinator.claim(this.stateIndex, partition, epoch);
    let opened: PartitionStore | undefined;
    try {
      // Inside the try: an open that fails must give the claim back, as any other failure here.
      const store = (opened = openPartitionStore(partitionPath(this.dataDir, this.stateIndex, partition)));
      const layout = readCheckedLayout(store, { stream: this.stateIndex, partition });
      // A restore writes entries in place: what this store's change log holds goes there first.
      foldChangeLog(store);
      const timeIndexed = this.spec.getTimeout() !== null;
      if (layout && layout.numPartitions !== this.numPartitions) {
        throw new ConfigError(`cluster: the store of partition ${partition} of stream ${this.stateIndex} under ${this.dataDir} was written for ${layout.numPartitions} partitions, not ${this.numPartitions}`, { stream: this.stateIndex, partition });
      }
      if (layout && !readClusterMeta(store) && new BatchLog(store).last() !== undefined) {
        throw new ClusterError(
          `cluster: the store of partition ${partition} of stream ${this.stateIndex} under ${this.dataDir} holds state a single-process job wrote; ` +
            'a cluster instance restores its partitions from the changelog and would replace it: give the instance a data folder of its own',
          { stream: this.stateIndex, partition, dataDir: this.dataDir },
        );
      }
      if (!layout) writeLayout(store, { numPartitions: this.numPartitions, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed, stateVersion: 1 });
      // A timeout added or removed since the store was written: its index follows, as a local job's does (a reused store keeps its entries).
      else reconcileTimeIndex(store, timeIndexed);
      const outcome = await restorePartition(store, {
        timeIndexed, reader: rt.reader, writer: rt.changelog, partition, low: await rt.changelogStart(partition), epoch,
        owner: rt.instanceId, timeoutMs: rt.restoreTimeoutMs,
        stillOwned: () => rt.coordinator.checkOwned([{ stream: this.stateIndex, partition }]),
      });
      const meta = readClusterMeta(store)!;
      const { policy, maxAttempts } = this.spec.getRecordFailure();
      const lastBatch = new BatchLog(store).last()?.batchTime ?? Number.NEGATIVE_INFINITY;
      const owned: Owned = { partition, epoch, store, meta, filter: new PairFilter(meta.marks), lastBatch, incarnation: this.incarnation, actor: undefined as never };
      owned.actor = createActor(partitionMachine, {
        input: {
          stream: this.stateIndex, partition, storePath: store.path, fn: this.spec.fn, timeoutMs: this.spec.getTimeout(),
          policy, maxAttempts, workers: rt.workers, worker: this.placement[partition], incarnation: owned.incarnation, emitOutputs: rt.emitOutputs,
          supervisor: rt.supervisor,
          lastCommitted: () => lastCommittedBatch(store),
          beforeCommit: (prepared, batchTime) => this.beforeCommit(owned, prepared, batchTime),
        },
      }).start();
      this.owned.set(partition, owned);
      this.stores[partition] = store;
      this.refreshView();
      // Two batches' worth of pairs ahead, counted in messages of up to PAIRS_PER_MESSAGE pairs each.
      rt.reader.open(rt.repartitionTopic, partition, meta.position, { bufferLimit: 2 * pairMessagesPerBatch(rt.maxPairsPerBatch) });
      rt.announce(BatchEvents.PARTITION_TAKEN, {
        stream: this.stateIndex, partition, epoch, records: outcome.records, reused: outcome.reused, lastBatch: outcome.last?.batchTime, ms: Date.now() - started,
      });
    } catch (error) {
      if (opened) closePartitionStores([opened], { afterFailure: true });
      await rt.coordinator.release(this.stateIndex, partition);
      if (!(error instanceof OwnershipLostError)) {
        rt.announce(BatchEvents.PARTITION_RELEASED, { stream: this.stateIndex, partition, epoch, reason: 'failed', error: error as Error });
      }
      throw error;
    }
  }

  /**
   * Gives a partition up and removes its owner node if this instance's session still holds it:
   * ownership lost by a failed check (not an expiry) leaves the nodes of the other partitions
   * of that check in place, and the next owner of any of them would wait on it for as long as
   * this instance lives. A node the session no longer holds is left alone (release checks).
   */
  private async drop(partition: number, reason: 'moved' | 'lost'): Promise<void> {
    const o = this.owned.get(partition);
    if (!o) return;
    this.rt.announce(BatchEvents.PARTITION_RELEASED, { stream: this.stateIndex, partition, epoch: o.epoch, reason });
    this.owned.delete(partition);
    this.stores[partition] = undefined;
    this.refreshView();
    this.rt.reader.close(this.rt.repartitionTopic, partition);
    o.actor.stop();
    // Its thread lets the store and memory go (a thread that died holds nothing).
    await this.rt.workers.run(this.placement[partition], { op: 'release-partition', storePath: o.store.path, incarnation: o.incarnation }).catch(() => undefined);
    // A fresh incarnation: a thread that held this partition's memory must not trust it if it comes back.
    this.incarnation = randomUUID();
    try {
      o.store.env.close();
    } finally {
      // Given back even when the close failed: the partition's next owner must not wait on this one.
      await this.rt.coordinator.release(this.stateIndex, partition);
    }
  }

  /** Every partition is lost at once (the session expired): nothing more is committed to any. */
  async loseAll(): Promise<void> {
    const next = this.turn.then(async () => {
      const dropping = new FirstFailure();
      for (const partition of [...this.owned.keys()]) await dropping.run(() => this.drop(partition, 'lost'));
      dropping.rethrow();
    });
    this.turn = next.catch(() => undefined);
    await next;
  }

  /**
   * Between the two phases of a partition's batch: the owner node must still be this
   * instance's; the batch's changes and end go to the changelog; the store then commits
   * its positions and marks beside the state.
   */
  private async beforeCommit(o: Owned, prepared: ApplyPrepared, batchTime: number): Promise<Record<string, unknown>> {
    const rt = this.rt;
    // The owner node is told how far the partition got by its last commit (what inspect shows).
    const progress = { position: o.meta.position, changelogOffset: o.meta.changelogOffset };
    const leaseUntil = await rt.coordinator.checkOwned([{ stream: this.stateIndex, partition: o.partition, progress }]);
    const pending = this.pendingEnds.get(o.partition)!;
    const end = { epoch: o.epoch, batchTime, position: pending.position, marks: pending.marks, keyCount: prepared.keyCount };
    const outlived = () =>
      new OwnershipLostError(`cluster: partition ${o.partition} of stream ${this.stateIndex}: batch ${batchTime} outlived the lease of its ownership check; it is not committed here`, {
        stream: this.stateIndex, partition: o.partition, batchTime,
      });
    // Nothing is sent once the lease ran out, checked before each of the batch's requests.
    // (Between a check and the broker there is still a window of one request; see docs/scale-out.md.)
    const leased = withinLease(leaseUntil, outlived);
    const offset = await rt.changelog.writeBatch(o.partition, prepared.keys, prepared.entries, end, prepared.letters, leased);
    // Paused or slowed past the lease (a SIGSTOP, a long GC, a broker that took its time):
    // another instance may own the partition now, so this one commits nothing. What it wrote
    // to the changelog after the new owner's marker is ignored by every restore.
    leased();
    const meta: ClusterMeta = { position: end.position, marks: end.marks, changelogOffset: offset, epoch: o.epoch, epochAt: o.meta.epochAt };
    o.meta = meta;
    return { cluster: meta };
  }

  /** Per owned partition, where the batch being applied leaves the repartition reading and the marks. */
  private readonly pendingEnds = new Map<number, { position: number; marks: ClusterMeta['marks'] }>();

  /** Runs the batch on every partition this instance owns. */
  apply(batch: BatchRun): Promise<RoutedBatch & { owned: number[] }> {
    return batch.once(`apply:${this.id}`, () => {
      const run = this.turn.then(() => this.applyOwned(batch));
      this.turn = run.then(
        () => undefined,
        () => undefined,
      );
      return run;
    });
  }

  private async applyOwned(batch: BatchRun): Promise<RoutedBatch & { owned: number[] }> {
    const rt = this.rt;
    // Instances keep clocks of their own, and one that runs behind (a backlog of batches) may
    // take a partition whose store holds a later batch of its former owner. A partition
    // treats a batch at or before its last one as a replay and applies nothing, so such a
    // partition sits this batch out, its pairs left for the first batch after it.
    const owned = [...this.owned.values()].filter((o) => batch.time > o.lastBatch).sort((a, b) => a.partition - b.partition);
    const n = this.numPartitions;
    const chunked = Array.from({ length: n }, () => new ChunkedShard());
    const builder = new ShardBuilder(n, murmur2Partitioner, { batchTime: batch.time, stream: this.stateIndex }, (p, chunk, last) => chunked[p].push(chunk, last));
    for (const o of owned) {
      const messages = rt.reader.take(rt.repartitionTopic, o.partition, pairMessagesPerBatch(rt.maxPairsPerBatch));
      let position = o.meta.position;
      for (const { offset, message } of messages) {
        position = offset + 1;
        for (const pair of readPairs(message.value!)) {
          if (o.filter.admit(pair.origin)) builder.add([pair.key, pair.value]);
        }
      }
      this.pendingEnds.set(o.partition, { position, marks: o.filter.snapshot() });
    }
    builder.finish();
    const settled = await Promise.allSettled(
      owned.map(
        (o) =>
          new Promise<ApplyDone>((resolve, reject) => {
            o.actor.send({ type: 'APPLY', batch: { batchTime: batch.time, shard: chunked[o.partition], resolve, reject } });
          }),
      ),
    );
    const partitions: ApplyDone[] = [];
    const outputs: EncodedOutputs[] = [];
    const applied: number[] = [];
    let retake = false;
    for (const [i, s] of settled.entries()) {
      const o = owned[i];
      if (s.status === 'fulfilled') {
        o.lastBatch = batch.time;
        partitions.push(s.value);
        outputs.push({ bytes: s.value.outputs, keys: s.value.replayed ? undefined : builder.keys[o.partition] });
        applied.push(o.partition);
        continue;
      }
      const error = s.reason instanceof Error ? s.reason : deserializeError(s.reason);
      if (error instanceof OwnershipLostError || error.name === 'OwnershipLostError') {
        // Lost (or its lease ran out) while the batch ran: nothing of it was committed here. It is
        // given up; if the assignment still names this instance, it is taken again, restored
        // from the changelog (the owner after it, or this one, applies the batch's pairs).
        await this.drop(o.partition, 'lost');
        retake = true;
        continue;
      }
      throw error;
    }
    // After this batch's turn: reassign waits for it.
    if (retake) void this.reassign(rt.coordinator.assignedToMe().filter((p) => p.stream === this.stateIndex)).catch(rt.takeFailed);
    this.view?.refresh();
    batch.partitionResults.set(this.stateIndex, partitions);
    return { partitions, outputs, owned: applied };
  }

  /** The mapped records of this instance's partitions. */
  protected async compute(batch: BatchRun): Promise<M[]> {
    const { outputs } = await this.apply(batch);
    return decodeBatchOutputs(outputs) as M[];
  }

  stateSnapshots(): DStream<[K, S]> {
    this.graph.assertBuilding('stateSnapshots');
    return new StateSnapshotDStream<K, S>(this.graph, this as ClusterMapWithStateDStream<K, unknown, S, unknown>);
  }

  /** Queries on the partitions this instance owns; a key of another partition is a NotOwnerError naming its owner. */
  store(): StateQueries<K, S> {
    return {
      get: (key: K) => this.liveView('store().get').get(key) as S | undefined,
      entries: () => this.liveView('store().entries').entries() as Iterable<[K, S]>,
      count: () => this.liveView('store().count').count(),
    };
  }

  private liveView(what: string): StateView<unknown, unknown> {
    if (!this.view) throw this.graph.notRunning(what);
    return this.view;
  }

  deadLetters(): DeadLetter[] {
    const letters = [...this.owned.values()].flatMap((o) => [...new DeadLetterStore(o.store).list()]);
    return letters.sort((a, b) => a.batchTime - b.batchTime || a.partition - b.partition || a.index - b.index);
  }

  snapshotEntries(): Array<[K, S]> {
    return [...this.liveView('stateSnapshots').entries()] as Array<[K, S]>;
  }

  /** Stops following the assignment and closes what it holds; its owner nodes go when the coordinator leaves. */
  async close(): Promise<void> {
    await this.turn;
    for (const o of this.owned.values()) o.actor.stop();
    const stores = [...this.owned.values()].map((o) => o.store);
    this.owned.clear();
    // Closed: metrics and the page must not read them while the context finishes stopping.
    this.stores = new Array(this.numPartitions).fill(undefined);
    this.view?.release();
    this.view = undefined;
    this.runtime = undefined;
    // Last, every one even when one fails (the instance goes on to leave the job).
    closePartitionStores(stores);
  }
}
