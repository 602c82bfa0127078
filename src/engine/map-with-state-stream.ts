import { randomUUID } from 'node:crypto';
import { createActor, type ActorRefFrom, type AnyActorRef } from 'xstate';
import { InvalidRecordError } from '../errors.js';
import { keyProblem } from '../storage/keys.js';
import { partitionMachine } from '../actors/partition.machine.js';
import { routerMachine, type RoutedBatch, type RouterInput, type Shards } from '../actors/router.machine.js';
import { decodeBatchOutputs } from '../storage/partition/batch-outputs.js';
import { KeyTable } from '../actors/key-table.js';
import { ShardBuilder } from '../actors/shard-encoder.js';
import { ChunkedShard } from '../actors/chunked-shard.js';
import type { WorkerSet } from '../actors/worker-set.js';
import { shardInitialState, shardSourceEntries } from '../actors/shard-encoder.js';
import { readReply, type InitialEntry, type SaveWarmKeysTask, type WarmMemoryDone, type WarmMemoryTask, type WorkerReply } from '../actors/messages.js';
import type { MemoryWarmedEvent } from './batch-events.js';
import { BatchLog, FORMAT_VERSION, lastCommittedBatch, readLayout, writeLayout } from '../storage/partition/batch-log.js';
import { closePartitionStores, openPartitionStores, partitionPath, type PartitionStore } from '../storage/partition/store.js';
import { partitionFigures, type PartitionFigures } from '../storage/partition/figures.js';
import { StateView } from '../storage/partition/state-view.js';
import { foldChangeLog } from '../storage/partition/change-log.js';
import { reconcileTimeIndex } from '../storage/partition/time-index.js';
import { rescaleStores } from '../storage/reshard/reshard.js';
import { completeLayouts } from '../storage/partition/complete-layouts.js';
import { checkStateVersion, migrateEntries, upgradeStores } from '../storage/partition/migrate.js';
import { sourceEntries, storableStates } from '../storage/export/state-export.js';
import { isStateSource } from '../storage/export/state-source.js';
import { DeadLetterStore, type DeadLetter } from '../storage/partition/dead-letters.js';
import type { BatchRun } from './batch.js';
import { DStream, type MapWithStateStream, type StateQueries, type StreamGraph } from './dstream.js';
import { murmur2Partitioner } from './partitioner.js';
import { readInitialIterable, type StateSpec } from './state-spec.js';

/** What a stream's stores said at start-up. */
export interface StoreRecovery {
  /** Newest batch committed by any partition, if any. */
  lastBatch: number | undefined;
  /** Partitions that are behind the newest batch (their part of it was not committed). */
  behind: Array<{ partition: number; lastBatch: number | undefined }>;
  /** Newest lastUpdated among initial state from a StateSource that partitions will load. */
  initialNewest?: number;
}

/** A batch being sharded: the shards as they fill, and when the routing is done (or failed). */
interface Sharding {
  shards: Shards;
  done: Promise<void>;
}

interface Running {
  stores: PartitionStore[];
  view: StateView<unknown, unknown>;
  partitions: ActorRefFrom<typeof partitionMachine>[];
  router: ActorRefFrom<typeof routerMachine>;
  routing: RouterInput;
  /** Whether anything but this stream reads its parent's records (an output, another state stream). */
  parentRead: boolean;
  /** Initial state per partition, until that partition has committed a batch. */
  pendingInitial: InitialEntry[][] | undefined;
  /** The distinct keys of the batch being routed, kept from batch to batch (see KeyTable). */
  keyTable: KeyTable;
  /** Each partition's worker thread, and the id its workers know this opening of the stores by. */
  placement: number[];
  incarnation: string;
  /** The partitions' warm-ups still running: a stop waits for them before the workers go. */
  warming: Array<Promise<unknown>>;
}

/**
 * mapWithState: the stream of mapped records, backed by one partition actor per key-hash
 * partition and a router actor that shards each batch between them.
 */
export class MapWithStateDStream<K, V, S, M> extends DStream<M> implements MapWithStateStream<K, S, M> {
  private running: Running | undefined;

  constructor(
    graph: StreamGraph,
    private readonly parent: DStream<[K, V]>,
    readonly spec: StateSpec<K, V, S, M>,
    /** Position among the context's mapWithState streams: names its stores. */
    readonly stateIndex: number,
    private readonly dataDir: string,
  ) {
    super(graph);
  }

  /** Its records are computed from its shards, which it makes itself: reading them needs no one's records kept. */
  protected override dependencies(): DStream<unknown>[] {
    return [];
  }

  /** Its records come from committed state: they can never be computed ahead of the batch before. */
  override readsSourcesOnly(): boolean {
    return false;
  }

  /** The stream whose records this state stream shards. */
  get parentStream(): DStream<unknown> {
    return this.parent as DStream<unknown>;
  }

  override description(): string {
    return `mapWithState stream ${this.stateIndex}`;
  }

  get numPartitions(): number {
    return this.spec.getNumPartitions();
  }

  /**
   * Opens the stores, checks they fit this spec, and spawns the actors. Returns what the
   * stores held, so the context can check batch times and report gaps. The context has
   * settled an interrupted reshard and restored damaged stores before.
   */
  open(workers: WorkerSet, supervisor: AnyActorRef, readers: { emitOutputs: boolean; parentRead: boolean }): StoreRecovery {
    const n = this.numPartitions;
    // Layouts a first start left unwritten are completed before the reshard and the migration read them.
    completeLayouts(this.dataDir, this.stateIndex);
    rescaleStores(this.dataDir, this.stateIndex, n);
    const stores = openPartitionStores(Array.from({ length: n }, (_, p) => partitionPath(this.dataDir, this.stateIndex, p)));
    try {
      const layout = readLayout(stores[0]);
      // What a run left in the change logs goes in place before anything at start reads or writes entries.
      for (const store of stores) foldChangeLog(store);
      return this.prepare(workers, supervisor, stores, layout !== undefined, readers);
    } catch (error) {
      closePartitionStores(stores, { afterFailure: true });
      throw error;
    }
  }

  /** Everything open() does once the stores are known to have the right partition count. */
  private prepare(workers: WorkerSet, supervisor: AnyActorRef, stores: PartitionStore[], existing: boolean, { emitOutputs, parentRead }: { emitOutputs: boolean; parentRead: boolean }): StoreRecovery {
    const n = this.numPartitions;
    const version = this.spec.getStateVersion();
    const migrate = this.spec.getMigrate() as ((state: unknown, fromVersion: number) => unknown) | undefined;
    const timeIndexed = this.spec.getTimeout() !== null;
    if (existing) upgradeStores(stores, version, migrate, { stream: this.stateIndex, dataDir: this.dataDir });
    else for (const s of stores) writeLayout(s, { numPartitions: n, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed, stateVersion: version });
    for (const s of stores) reconcileTimeIndex(s, timeIndexed);

    const last = stores.map((s) => new BatchLog(s).last()?.batchTime);
    const newest = last.reduce<number | undefined>((m, t) => (t !== undefined && (m === undefined || t > m) ? t : m), undefined);
    const behind = last.flatMap((t, partition) => (newest !== undefined && t !== newest ? [{ partition, lastBatch: t }] : []));

    const initial = this.spec.getInitialState();
    let pendingInitial: InitialEntry[][] | undefined;
    let initialNewest: number | undefined;
    if (initial && last.some((t) => t === undefined)) {
      if (isStateSource(initial)) {
        checkStateVersion(initial.stateVersion, version, migrate !== undefined, initial.description, { stream: this.stateIndex });
        const checked = sourceEntries(initial);
        const entries = initial.stateVersion < version ? migrateEntries(initial, checked, version, migrate!) : storableStates(checked, initial.description);
        ({ shards: pendingInitial, newest: initialNewest } = shardSourceEntries(entries, n, murmur2Partitioner));
      } else {
        pendingInitial = shardInitialState(readInitialIterable(initial as Iterable<[unknown, unknown]>, this.stateIndex, this.graph), n, murmur2Partitioner, this.stateIndex);
      }
      last.forEach((t, p) => {
        if (t !== undefined) pendingInitial![p] = [];
      });
    }

    const { policy, maxAttempts } = this.spec.getRecordFailure();
    const placement = workers.place(this.stateIndex, n);
    const incarnation = randomUUID();
    const partitions = stores.map((store, partition) =>
      createActor(partitionMachine, {
        input: {
          stream: this.stateIndex, partition, storePath: store.path, fn: this.spec.fn, timeoutMs: this.spec.getTimeout(),
          policy, maxAttempts, workers, worker: placement[partition], incarnation, emitOutputs, supervisor,
          lastCommitted: () => lastCommittedBatch(store),
        },
      }).start(),
    );
    const routing: RouterInput = { stream: this.stateIndex, partitions, partitioner: murmur2Partitioner };
    const router = createActor(routerMachine, { input: routing }).start();
    const view = new StateView<unknown, unknown>(stores, murmur2Partitioner);
    this.running = { stores, view, partitions, router, routing, parentRead, pendingInitial, keyTable: new KeyTable(), placement, incarnation, warming: [] };
    return { lastBatch: newest, behind, initialNewest };
  }

  /**
   * After start: each partition's worker reads back into memory the keys it worked on at the
   * last clean stop (actors/memory-warm-up.ts), between batches. Memory is only a cache: a
   * warm-up that fails leaves the batches reading LMDB, as they would anyway.
   */
  warmMemory(workers: WorkerSet, warmed: (event: MemoryWarmedEvent) => void): void {
    const running = this.active('warm memory');
    const { placement, incarnation } = running;
    running.warming = running.stores.map((store, partition) => {
      const task: WarmMemoryTask = { op: 'warm-memory', storePath: store.path, incarnation, cacheEntries: workers.cacheEntriesOf(placement[partition]) };
      return workers.run<WorkerReply>(placement[partition], task).then(
        (reply) => {
          const done = readReply<WarmMemoryDone | { status: 'batch-failed' }>(reply);
          if (done.status === 'ok') warmed({ stream: this.stateIndex, partition, hinted: done.hinted, loaded: done.loaded, durationMs: done.durationMs });
        },
        () => undefined,
      );
    });
  }

  /** Before a stop lets the workers go: each partition's worker records the keys its memory works on, for the next start. */
  async saveWarmKeys(workers: WorkerSet): Promise<void> {
    const running = this.running;
    if (!running) return;
    const { stores, placement, incarnation } = running;
    await Promise.all(
      stores.map((store, partition) => {
        const task: SaveWarmKeysTask = { op: 'save-warm-keys', storePath: store.path, incarnation };
        // Only a hint: a stop goes on without it.
        return workers.run<WorkerReply>(placement[partition], task).catch(() => undefined);
      }),
    );
  }

  /** Once the workers were told to stop: the warm-ups end after their slice (a pool destroyed under a running task throws). */
  async warmedUp(): Promise<void> {
    await Promise.allSettled(this.running?.warming ?? []);
  }

  /** The open partition stores, for snapshots (between batches only). */
  partitionStores(): PartitionStore[] {
    return this.active('snapshot').stores;
  }

  /**
   * Each partition's committed figures, read from its LMDB environment (never from a
   * worker): keys as its batch log recorded with the last commit, the bytes of its state
   * database, its dead letters. Empty when the stream is not running.
   */
  partitionFigures(): PartitionFigures[] {
    return (this.running?.stores ?? []).map((store, partition) => partitionFigures(store, partition));
  }

  close(): void {
    const running = this.running;
    if (!running) return;
    this.running = undefined;
    running.router.stop();
    running.partitions.forEach((p) => p.stop());
    running.view.release();
    // A stopped job's stores hold their state in place (as a tool of any version reads it).
    // A fold that fails leaves the log as a crash would, to the next start: stop() goes on.
    for (const store of running.stores) {
      try {
        foldChangeLog(store);
      } catch {
        // The log is intact and committed; nothing is lost.
      }
    }
    closePartitionStores(running.stores);
  }

  private active(what: string): Running {
    if (!this.running) throw this.graph.notRunning(what);
    return this.running;
  }

  /**
   * Maps, routes and encodes the batch's records ahead of the batch, while the workers may
   * still be applying the one before: main-thread work that needs no state. Only for a
   * stream whose records come from sources alone (not from another state stream's outputs).
   */
  shardAhead(batch: BatchRun): void {
    if (!this.parent.readsSourcesOnly()) return;
    batch.prepared.set(this.id, this.startSharding(batch));
  }

  /**
   * Maps, routes and encodes the batch's records, handing each partition its chunks as they
   * fill. When nothing else reads the parent's records, they stream from the pipeline into
   * the shards and are never kept as an array.
   */
  private startSharding(batch: BatchRun): Sharding {
    const running = this.active('mapWithState');
    const chunked = running.partitions.map(() => new ChunkedShard());
    const { partitioner } = running.routing;
    const builder = new ShardBuilder(chunked.length, partitioner, { batchTime: batch.time, stream: this.stateIndex }, (p, chunk, last) => chunked[p].push(chunk, last), {
      initialState: running.pendingInitial,
      keyTable: running.keyTable,
    });
    // The builder finishes in the turn that adds its last record, so that it gives the key
    // table back before the next batch's routing (begun in the same turn) adds its first.
    const done = (async () => {
      if (running.parentRead) {
        const records = await this.parent.recordsFor(batch);
        for (let i = 0; i < records.length; i++) builder.add(records[i]);
        builder.finish();
      } else {
        await this.parent.eachRecord(batch, builder.add, () => builder.finish());
      }
    })();
    // Partitions following the chunks stop with the error; apply() reports it, in batch order.
    done.catch((error: unknown) => {
      builder.release();
      chunked.forEach((c) => c.fail(error));
    });
    return { shards: { chunked, keys: builder.keys }, done };
  }

  /** Runs the batch on every partition (once per batch, whether or not anything reads the outputs). */
  apply(batch: BatchRun): Promise<RoutedBatch> {
    return batch.once(`apply:${this.id}`, async () => {
      const running = this.active('mapWithState');
      const sharding = (batch.prepared.get(this.id) as Sharding | undefined) ?? this.startSharding(batch);
      const routed = await new Promise<RoutedBatch>((resolve, reject) => {
        running.router.send({ type: 'ROUTE', job: { batchTime: batch.time, shards: sharding.shards, resolve, reject } });
      }).catch(async (error: unknown) => {
        // A batch that could not be sharded fails with the sharding's own error.
        await sharding.done;
        throw error;
      });
      // Every partition committed: initial state is in the stores from now on.
      running.pendingInitial = undefined;
      batch.partitionResults.set(this.stateIndex, routed.partitions);
      running.view.refresh();
      return routed;
    });
  }

  /** The mapped records, decoded only when an output operation asks for them, all partitions at once. */
  protected async compute(batch: BatchRun): Promise<M[]> {
    const { outputs } = await this.apply(batch);
    return decodeBatchOutputs(outputs) as M[];
  }

  /** A stream of every [key, state] after each batch, in key order. */
  stateSnapshots(): DStream<[K, S]> {
    this.graph.assertBuilding('stateSnapshots');
    return new StateSnapshotDStream<K, S>(this.graph, this as MapWithStateDStream<K, V, S, unknown>);
  }

  /** Queries on the live state: as of the last batch whose state every partition committed (before its outputs run). */
  store(): StateQueries<K, S> {
    const self = this;
    return {
      get: (key: K) => {
        const view = self.active('store().get').view;
        // A key no record could have (an object, a string with a lone surrogate) is refused, not looked up as some other key.
        const problem = keyProblem(key);
        if (problem) throw new InvalidRecordError(`store().get: ${problem}`, { stream: self.stateIndex });
        return view.get(key) as S | undefined;
      },
      entries: () => self.active('store().entries').view.entries() as Iterable<[K, S]>,
      count: () => self.active('store().count').view.count(),
    };
  }

  /** Records the failure policy moved aside, across partitions, oldest batch first. */
  deadLetters(): DeadLetter[] {
    const letters = this.active('deadLetters').stores.flatMap((store) => [...new DeadLetterStore(store).list()]);
    return letters.sort((a, b) => a.batchTime - b.batchTime || a.partition - b.partition || a.index - b.index);
  }

  snapshotEntries(): Array<[K, S]> {
    return [...this.active('stateSnapshots').view.entries()] as Array<[K, S]>;
  }
}

/** What stateSnapshots() reads from: a state stream that applies a batch, then lists its entries. */
export interface SnapshotSource<K, S> {
  apply(batch: BatchRun): Promise<unknown>;
  snapshotEntries(): Array<[K, S]>;
  description(): string;
}

/** The state after each batch, as a stream (single-process and cluster state streams alike). */
export class StateSnapshotDStream<K, S> extends DStream<[K, S]> {
  constructor(graph: StreamGraph, private readonly state: SnapshotSource<K, S>) {
    super(graph);
  }

  /** It reads the state after the batch, not the state stream's mapped records. */
  override readsSourcesOnly(): boolean {
    return false;
  }

  override description(): string {
    return `stateSnapshots of ${this.state.description()}`;
  }

  protected async compute(batch: BatchRun): Promise<Array<[K, S]>> {
    await this.state.apply(batch);
    return this.state.snapshotEntries();
  }
}
