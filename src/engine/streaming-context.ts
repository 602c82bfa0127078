import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { createActor, fromPromise, waitFor, type ActorRefFrom } from 'xstate';
import { ConfigError, LifecycleError, asError, MappingModuleError, StopTimeoutError, deserializeError, describeValue, type SerializedError } from '../errors.js';
import { supervisorMachine, type PartitionCrashed } from '../actors/supervisor.machine.js';
import { FirstFailure } from '../first-failure.js';
import { WorkerSet } from '../actors/worker-set.js';
import { readReply, type ResolvedMappingRef, type WorkerReply } from '../actors/messages.js';
import { BatchRun, type RecordPieces } from './batch.js';
import { BatchLine } from './batch-line.js';
import { BatchEvents, type BatchEventMap } from './batch-events.js';
import type { Clock } from './clock.js';
import type { DStream, StreamGraph } from './dstream.js';
import { MapWithStateDStream } from './map-with-state-stream.js';
import type { InputStream } from './sources/input.js';
import { mayShareRoot } from '../storage/zookeeper/connect-options.js';
import { KafkaInputDStream } from './sources/kafka.js';
import { validateKafkaOptions, type KafkaStreamOptions } from './sources/kafka-options.js';
import { QueueInputDStream, type QueueStreamOptions } from './sources/queue.js';
import { specAsDefined, type StateSpec } from './state-spec.js';
import { SnapshotScheduler, type SnapshotPolicy } from './snapshot-scheduler.js';
import { newestSnapshot, snapshotFigures } from '../storage/snapshots/manifest.js';
import { recoverLocalJob } from './local-recovery.js';
import { StopDeadline } from './stop-deadline.js';
import { outputUntilCut, startCutShort, stopTimedOut, stopTimeout, type StopOptions } from './stop-options.js';
import { DataDirLock } from '../storage/data-lock.js';
import type { Registry } from 'prom-client';
import { Observability, type Endpoints } from './observability.js';
import type { ValidClusterOptions } from '../cluster/options.js';
import { validContextOptions, type StreamingContextOptions } from './context-options.js';
import { ClusterRuntime, type ClusterView } from '../cluster/runtime.js';
import { ClusterMapWithStateDStream } from '../cluster/state-stream.js';

/** Every event a context emits: `on` refuses another name. */
const EVENT_NAMES: ReadonlySet<string> = new Set(Object.values(BatchEvents));

export type { StreamingContextOptions };

interface OutputOp {
  stream: DStream<unknown>;
  fn: (records: unknown[], time: number) => unknown;
}

type Phase = 'created' | 'starting' | 'running' | 'failed' | 'stopping' | 'stopped';

/** Events whose listener, when it throws, fails what emitted them (see emit). */
const THROWING_FAILS = new Set<string>([BatchEvents.STARTED, BatchEvents.COMPLETED, BatchEvents.STATE_RESTORED, BatchEvents.RECOVERY_INCOMPLETE]);

/**
 * The entry point: define streams, then start(). Batches run one after another at
 * `start + k * batchIntervalMs`; within a batch, partitions run in parallel on workers.
 */
export class StreamingContext implements StreamGraph {
  readonly batchIntervalMs: number;
  readonly dataDir: string;
  readonly threads: number;
  readonly clock: Clock;
  readonly appName: string;
  readonly maxWorkerRestarts: number;
  readonly stateCacheEntries: number;
  readonly snapshotPolicy: SnapshotPolicy | undefined;

  private readonly events = new EventEmitter();
  private readonly inputs: InputStream[] = [];
  private readonly stateStreams: MapWithStateDStream<unknown, unknown, unknown, unknown>[] = [];
  private readonly clusterOptions: ValidClusterOptions | undefined;
  /** A cluster job's state streams (it has no others). */
  private readonly clusterStreams: ClusterMapWithStateDStream<unknown, unknown, unknown, unknown>[] = [];
  private clusterRuntime: ClusterRuntime | undefined;
  private readonly outputs: OutputOp[] = [];
  private streamIds = 0;
  private phase: Phase = 'created';
  private workers: WorkerSet | undefined;
  /** The batches generated and not finished, run in order; the next one prepared ahead. */
  private readonly line = new BatchLine(
    (batch, takeError) => this.runBatch(batch, takeError),
    // Mapped, routed and encoded while the batch before it applies on the workers; not once the job failed, as no batch runs then.
    (batch) => {
      if (this.failure === undefined) for (const stream of this.stateStreams) stream.shardAhead(batch);
    },
  );
  /** stop() began: waits for an unreachable ZooKeeper fail at once (see interruptWaits). */
  private waitsInterrupted = false;
  private supervisor: ActorRefFrom<typeof supervisorMachine> | undefined;
  private cancelTimer: (() => void) | undefined;
  private starting: Promise<void> | undefined;
  private failure: Error | undefined;
  private snapshots: SnapshotScheduler | undefined;
  private readonly observability: Observability;
  /** The stop under way: later calls wait for it too. */
  private stopping: Promise<void> | undefined;
  /** The stop has run its last step (the folder given back): its phase says stopped before that. */
  private stopOver = false;
  /** The stop's deadline, when one is given: it terminates the threads still applying a batch. */
  private readonly deadline = new StopDeadline((timeoutMs) => this.cutWorkers(timeoutMs));
  /** The data folder's lock, from start() to the end of stop(). */
  private folderLock: DataDirLock | undefined;

  constructor(options: StreamingContextOptions) {
    const valid = validContextOptions(options);
    this.batchIntervalMs = valid.batchIntervalMs;
    this.dataDir = valid.dataDir;
    this.threads = valid.threads;
    this.clock = valid.clock;
    this.appName = valid.appName;
    this.maxWorkerRestarts = valid.maxWorkerRestarts;
    this.stateCacheEntries = valid.stateCacheEntries;
    this.snapshotPolicy = valid.snapshotPolicy;
    this.clusterOptions = valid.cluster;
    this.observability = new Observability(options, {
      appName: this.appName, batchIntervalMs: this.batchIntervalMs, phase: () => this.phase, failure: () => this.failure,
      // A cluster's source is read by its runtime, from positions of its own: the source never opens.
      inputs: () => (this.clusterOptions ? [] : this.inputs), stateStreams: () => [...this.stateStreams, ...this.clusterStreams],
      snapshotsOn: this.snapshotPolicy !== undefined,
      newestSnapshot: () => newestSnapshot(this.dataDir),
    }, this);
  }

  /** In a cluster, once started: who owns which key, and who is in the job. Undefined otherwise. */
  get cluster(): ClusterView | undefined {
    return this.clusterRuntime;
  }

  /** The prom-client registry the job's metrics are on (`metrics.registry` when given), for a service that serves its own. */
  get metricsRegistry(): Registry {
    return this.observability.registry;
  }

  /** Where `/metrics` and the status page listen, once started (port 0 picks a free one). */
  endpoints(): Endpoints {
    return this.observability.endpoints();
  }

  // ── events ────────────────────────────────────────────────────────────────
  on<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): this {
    // A misspelt name would make a listener that never hears anything.
    if (!EVENT_NAMES.has(event)) throw new ConfigError(`StreamingContext.on: no event ${describeValue(event)} (events: ${[...EVENT_NAMES].join(', ')})`, { option: 'event' });
    if (typeof listener !== 'function') throw new ConfigError(`StreamingContext.on(${JSON.stringify(event)}): the listener must be a function, got ${describeValue(listener)}`, { option: 'listener' });
    this.events.on(event, listener);
    return this;
  }

  off<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): this {
    this.events.off(event, listener);
    return this;
  }

  /**
   * A listener that throws on batch.started or batch.completed fails its batch, loudly, as an
   * output would; on state.restored or recovery.incomplete it fails start() (a job may refuse
   * to run on a gap). Every other event is emitted from somewhere a throw must not reach (a
   * supervisor's transition, a warm-up's promise, a snapshot done after its batch, a ZooKeeper
   * watcher, a batch already failing): a listener that throws there becomes a process
   * warning, and the listeners after it still hear the event.
   */
  private emit<E extends keyof BatchEventMap>(event: E, payload: BatchEventMap[E]): void {
    if (THROWING_FAILS.has(event)) {
      this.events.emit(event, payload);
      return;
    }
    for (const listener of this.events.listeners(event)) {
      try {
        listener(payload);
      } catch (error) {
        process.emitWarning(`a ${event} event listener threw: ${(error as Error)?.message ?? String(error)}`, { code: 'STATESTREAM_LISTENER', detail: (error as Error)?.stack });
      }
    }
  }

  // ── the stream graph ──────────────────────────────────────────────────────
  nextStreamId(): number {
    return this.streamIds++;
  }

  assertBuilding(what: string): void {
    if (this.phase !== 'created') throw new LifecycleError(`${what}: streams and outputs must be defined before start()`, { phase: this.phase });
  }

  assertAccepting(what: string): void {
    // While stopping, the batches already generated still run, and their listeners may push (the examples do): those records go with the context.
    if (this.phase === 'stopped' || this.phase === 'failed') {
      throw new LifecycleError(`${what}: the StreamingContext is ${this.phase}; records given now would never be processed`, { phase: this.phase });
    }
  }

  notRunning(what: string): LifecycleError {
    const hint =
      this.phase === 'created' ? 'not started (call start() first)'
      : this.phase === 'starting' ? 'still starting (await start() first)'
      : `${this.phase} (a context starts once; a new StreamingContext on the same dataDir reads the stores)`;
    return new LifecycleError(`${what}: the StreamingContext is ${hint}`, { phase: this.phase });
  }

  queueStream<T>(options: QueueStreamOptions = {}): QueueInputDStream<T> {
    this.assertBuilding('queueStream');
    // Known now, not only at start(): the instances of a cluster share a Kafka source's partitions.
    if (this.clusterOptions) throw new ConfigError('queueStream: a job that runs as a cluster reads exactly one kafkaStream (its partitions are what the instances share); a queueStream has none', { option: 'cluster' });
    const stream = new QueueInputDStream<T>(this, options);
    this.inputs.push(stream);
    return stream;
  }

  /** Kafka, read with kafkajs, offsets in ZooKeeper; options are checked here. */
  kafkaStream<V = string>(options: KafkaStreamOptions<V>): KafkaInputDStream<V> {
    this.assertBuilding('kafkaStream');
    const valid = validateKafkaOptions(options, this.appName);
    for (const input of this.inputs) {
      if (!(input instanceof KafkaInputDStream)) continue;
      // The same node through another connect string (a chroot, other hosts of the ensemble) too: each would take the other's ownership for a dead process's.
      if (mayShareRoot(input.options.zookeeper, valid.zookeeper)) {
        const where = input.options.zookeeper.connect === valid.zookeeper.connect ? valid.zookeeper.root : `${valid.zookeeper.root} (on ${valid.zookeeper.connect}, the node ${input.options.zookeeper.root} on ${input.options.zookeeper.connect} names)`;
        throw new ConfigError(`kafkaStream: another Kafka stream of this context already keeps its offsets under ${where}; give each a zookeeper.root of its own`, { option: 'zookeeper.root' });
      }
      // kafkajs' group leader assigns only the topics it subscribes to: two streams in one group would each be left without the other's partitions, and read nothing of them without a word.
      // Brokers are not compared: one cluster goes by several addresses (localhost, 127.0.0.1, another broker of it).
      if (input.options.groupId === valid.groupId) {
        throw new ConfigError(`kafkaStream: another Kafka stream of this context already reads with groupId ${JSON.stringify(valid.groupId)}; give each a groupId of its own (a group splits its partitions between its members)`, { option: 'groupId' });
      }
    }
    const stream = new KafkaInputDStream<V>(this, valid);
    this.inputs.push(stream);
    return stream;
  }

  addOutput<T>(stream: DStream<T>, fn: (records: T[], time: number) => unknown): void {
    this.assertBuilding('addOutput');
    this.outputs.push({ stream: stream as DStream<unknown>, fn: fn as OutputOp['fn'] });
  }

  mapWithState<K, V, S, M>(parent: DStream<[K, V]>, spec: StateSpec<K, V, S, M>): MapWithStateDStream<K, V, S, M> | ClusterMapWithStateDStream<K, V, S, M> {
    this.assertBuilding('mapWithState');
    if (!spec || typeof (spec as { getNumPartitions?: unknown }).getNumPartitions !== 'function') {
      throw new ConfigError('mapWithState expects a StateSpec (StateSpec.function(ref))');
    }
    spec = specAsDefined(spec);
    if (this.clusterOptions) {
      const clustered = new ClusterMapWithStateDStream(this, parent, spec, this.clusterStreams.length, this.dataDir);
      this.clusterStreams.push(clustered as ClusterMapWithStateDStream<unknown, unknown, unknown, unknown>);
      return clustered;
    }
    const stream = new MapWithStateDStream(this, parent, spec, this.stateStreams.length, this.dataDir);
    this.stateStreams.push(stream as MapWithStateDStream<unknown, unknown, unknown, unknown>);
    return stream;
  }

  // ── lifecycle ─────────────────────────────────────────────────────────────
  get state(): Phase {
    return this.phase;
  }

  /**
   * Opens the stores, checks them against the specs, loads each mapping module on a worker
   * (so a missing export fails here, not in the first batch), then schedules batches.
   */
  start(): Promise<void> {
    // A context stopped before it started is stopped too: Spark's contexts start once.
    if (this.starting || this.phase !== 'created') return Promise.reject(new LifecycleError(`start(): the context is ${this.phase}; a context starts once`, { phase: this.phase }));
    // Refused before anything starts: the context is still being built, and may start once an input is defined.
    if (this.inputs.length === 0) return Promise.reject(new LifecycleError('start(): no input stream is defined (queueStream or kafkaStream)'));
    this.starting = this.startOnce();
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    this.phase = 'starting';
    const stopped = (error: unknown): never => {
      this.phase = 'stopped';
      this.folderLock?.release();
      // Its metrics leave a shared registry too (the servers, if up, close in the background).
      void this.observability.stop().catch(() => undefined);
      throw error;
    };
    // Before anything reads or changes the folder: a second copy of the job stops here, naming the first.
    this.folderLock = await DataDirLock.acquire(this.dataDir, { appName: this.appName }).catch(stopped);
    // Up before the stores open, so the page can say what a slow or failing start waits for.
    await this.observability.start().catch(stopped);
    const machine = supervisorMachine.provide({
      actors: {
        startup: fromPromise(() => this.startup()),
        shutdown: fromPromise(() => this.shutdown()),
      },
    });
    this.supervisor = createActor(machine, {
      input: { maxRestarts: this.maxWorkerRestarts, onRestart: (crash) => this.announceRestart(crash) },
    }).start();
    this.supervisor.send({ type: 'START' });
    const snapshot = await waitFor(this.supervisor, (s) => s.matches('running') || s.matches('failed'));
    // Besides a failed start: a batch rebuilt at start that failed before the start was over (its
    // batch.started listener threw), which the supervisor, still starting, did not take.
    let error = snapshot.matches('failed') ? (snapshot.context.error ?? new Error('start failed')) : this.failure;
    // A stop's deadline that terminated the threads under the start: said so, not as the pool's bare "Terminating worker thread".
    const cutMs = this.deadline.passedMs;
    if (error && cutMs !== undefined && !(error instanceof StopTimeoutError)) error = startCutShort(cutMs, error);
    if (error) {
      this.supervisor.send({ type: 'STOP' });
      await waitFor(this.supervisor, (s) => s.status === 'done');
      await this.observability.stop();
      return stopped(error);
    }
    this.phase = 'running';
    this.scheduleBatch(this.clock.now() + this.batchIntervalMs);
  }

  private async startup(): Promise<void> {
    try {
      await this.startupSteps();
    } catch (error) {
      // What it opened closes now: metrics stop reading it first.
      this.observability.stopReading();
      throw error;
    }
  }

  private async startupSteps(): Promise<void> {
    this.workers = new WorkerSet(this.threads, this.stateCacheEntries, (worker, partitions, error) => this.announceWorkerReplaced(worker, partitions, error));
    if (this.clusterOptions) return this.startCluster(this.clusterOptions);
    const replays = await recoverLocalJob({
      dataDir: this.dataDir, appName: this.appName, firstBatch: this.clock.now() + this.batchIntervalMs,
      stateStreams: this.stateStreams, inputs: this.inputs, keepHistory: this.snapshotPolicy !== undefined,
      workers: this.workers, supervisor: this.supervisor!,
      readersOf: (stream) => this.readersOf(stream), checkModule: (fn) => this.checkModule(fn), emit: (event, payload) => this.emit(event, payload),
    });
    for (const batch of replays) this.line.queue(batch);
    if (this.snapshotPolicy) this.snapshots = this.snapshotScheduler(this.snapshotPolicy);
    for (const stream of this.stateStreams) stream.warmMemory(this.workers, (event) => this.emit(BatchEvents.MEMORY_WARMED, event));
  }

  /** A cluster instance starts with no state of its own: the leader assigns it partitions, restored from their changelogs. */
  private async startCluster(options: ValidClusterOptions): Promise<void> {
    ClusterRuntime.check(this.inputs, this.clusterStreams, (input) => input instanceof KafkaInputDStream);
    for (const stream of this.clusterStreams) await this.checkModule(stream.spec.fn);
    const runtime = new ClusterRuntime(options, {
      appName: this.appName, dataDir: this.dataDir, source: this.inputs[0] as KafkaInputDStream<unknown>, streams: this.clusterStreams,
      announce: (event, payload) => this.emit(event, payload),
    });
    this.clusterRuntime = runtime;
    // A stop that came earlier in the start (the module check, say) reaches the runtime too.
    if (this.waitsInterrupted) runtime.interrupt();
    try {
      await runtime.start(this.workers!, this.supervisor!, (index) => this.readersOf(this.clusterStreams[index]).emitOutputs);
    } catch (error) {
      // The start's failure is the one to report, not a close that also failed on the way out.
      await runtime.stop().catch(() => undefined);
      throw error;
    }
  }

  /** Who reads a state stream's mapped records, and whether anything besides it reads its parent's. */
  private readersOf(stream: DStream<unknown> & { parentStream: DStream<unknown> }): { emitOutputs: boolean; parentRead: boolean } {
    const reads = (target: DStream<unknown>) =>
      this.outputs.some((output) => output.stream.readsRecordsOf(target)) || this.stateStreams.some((s) => s !== stream && s.parentStream.readsRecordsOf(target));
    return { emitOutputs: reads(stream), parentRead: reads(stream.parentStream) };
  }

  private snapshotScheduler(policy: SnapshotPolicy): SnapshotScheduler {
    return SnapshotScheduler.resuming(policy, {
      dataDir: this.dataDir,
      appName: this.appName,
      streams: () => this.stateStreams.map((s) => ({ stream: s.stateIndex, stores: s.partitionStores() })),
      sources: () => this.inputs.flatMap((input) => (input.positions ? [input.positions()] : [])),
      retainFrom: async (batchTime) => {
        for (const input of this.inputs) await input.retainHistoryFrom?.(batchTime);
      },
      completed: (info, { gateMs, durationMs }) => {
        this.emit(BatchEvents.SNAPSHOT_COMPLETED, { batchTime: info.batchTime, path: info.path, gateMs, durationMs, ...snapshotFigures(info.manifest) });
      },
      failed: (batchTime, error) => this.emit(BatchEvents.SNAPSHOT_FAILED, { batchTime, error }),
    }, this.batchIntervalMs);
  }

  /** Loads the mapping module on every worker thread: one that does not load fails start(), named. */
  private async checkModule(fn: ResolvedMappingRef): Promise<void> {
    const replies = await this.workers!.runOnEveryThread<WorkerReply>({ op: 'check-module', fn });
    for (const reply of replies) {
      const result = readReply<{ status: string; error?: SerializedError }>(reply);
      if (result.status === 'ok') continue;
      const error = deserializeError(result.error!);
      throw error instanceof MappingModuleError ? error : new MappingModuleError(error.message, { module: fn.url }, error);
    }
  }

  /** Every step runs even when one before it fails (the threads must end, or the process stays up); the first failure is stop()'s. */
  private async shutdown(): Promise<void> {
    const failures = new FirstFailure();
    this.cancelTimer?.();
    await failures.run(() => this.snapshots?.settle());
    await failures.run(() => this.clusterRuntime?.stop());
    await Promise.all(this.inputs.map((input) => failures.run(() => input.close?.())));
    const workers = this.workers;
    if (workers) {
      for (const stream of this.stateStreams) await failures.run(() => stream.saveWarmKeys(workers));
      // A thread terminated inside a write transaction would keep the store's write lock: every thread ends its work between batches first.
      await workers.runOnEveryThread({ op: 'stop-partitions' }).catch(() => undefined);
      for (const stream of this.stateStreams) await failures.run(() => stream.warmedUp());
    }
    await failures.run(() => workers?.destroy());
    this.workers = undefined;
    for (const stream of this.stateStreams) await failures.run(() => stream.close());
    failures.rethrow();
  }

  /**
   * A start or a batch waiting for an unreachable ZooKeeper would hold stop() for as long as
   * its retries last (10 minutes): from now on such waits fail at once. Requests on a live
   * connection are still answered.
   */
  private interruptWaits(): void {
    this.waitsInterrupted = true;
    for (const input of this.inputs) input.interrupt?.();
    this.clusterRuntime?.interrupt();
  }

  /** A thread died between batches and a fresh one took its partitions: said as a warning, and as worker.replaced. */
  private announceWorkerReplaced(worker: number, partitions: readonly string[], error: unknown): void {
    process.emitWarning(
      `worker thread ${worker} (partitions ${partitions.join(', ') || 'none'}, as stream:partition) died between batches: ${(error as Error)?.message ?? String(error)}; ` +
        'a fresh thread took its place and reads their state from LMDB (a mapping function left work behind that failed after its batch)',
      { code: 'STATESTREAM_WORKER', detail: (error as Error)?.stack },
    );
    // A cluster instance pins every partition of a stream and serves the ones it owns: only those are its to report.
    const owned = this.clusterRuntime?.owned();
    this.emit(BatchEvents.WORKER_REPLACED, {
      worker,
      partitions: partitions
        .map((p) => p.split(':').map(Number))
        .filter(([stream, partition]) => owned === undefined || owned.some((o) => o.stream === stream && o.partition === partition))
        .map(([stream, partition]) => ({ stream, partition })),
      cause: asError(error, `worker ${worker}`),
    });
  }

  private announceRestart(crash: PartitionCrashed): void {
    this.emit(BatchEvents.PARTITION_RESTARTED, {
      stream: crash.stream, partition: crash.partition, batchTime: crash.batchTime, restart: crash.crashes,
      cause: asError(crash.error, `partition ${crash.partition} of stream ${crash.stream} in batch ${crash.batchTime}`),
    });
  }

  /**
   * Stops scheduling, lets the batches already generated finish (for at most
   * `options.timeoutMs`, then the threads still applying one are terminated), then closes
   * workers and stores. An output operation (or a listener) may call it, but not wait for
   * it: the stop waits for that output's batch, which waits for the output (Spark's
   * `ssc.stop()` inside `foreachRDD` hangs the same way).
   */
  async stop(options?: StopOptions): Promise<void> {
    const timeoutMs = stopTimeout(options);
    // A stop that ran to its end, cleanly or not, left nothing to do.
    if (this.stopOver) return;
    // One under way, up to its last steps (the servers, the folder), which come after its
    // phase says stopped: a call waits for it, and its timeout bounds it (a second SIGTERM).
    if (this.stopping !== undefined) {
      if (timeoutMs !== undefined) this.deadline.arm(timeoutMs);
      return this.stopping;
    }
    if (this.phase === 'stopped') return;
    if (this.phase === 'created') {
      this.phase = 'stopped';
      // Nothing runs to cut: a deadline a second call gives would only keep the process up.
      this.deadline.close();
      this.stopping = this.observability.stop();
    } else {
      if (timeoutMs !== undefined) this.deadline.arm(timeoutMs);
      this.stopping = this.stopInOrder();
    }
    this.stopping = this.stopping.finally(() => (this.stopOver = true));
    return this.stopping;
  }

  private async stopInOrder(): Promise<void> {
    // Let a start in progress finish (or fail) first: its workers and stores must be closed too.
    if (this.phase === 'starting') {
      this.interruptWaits();
      await this.starting?.catch(() => undefined);
    }
    if (this.phase !== 'running' && this.phase !== 'failed') {
      await this.deadline.done();
      return;
    }
    this.phase = 'stopping';
    this.cancelTimer?.();
    this.interruptWaits();
    try {
      await this.line.idle;
      this.observability.stopReading();
      this.supervisor!.send({ type: 'STOP' });
      const stopped = await waitFor(this.supervisor!, (s) => s.status === 'done');
      this.phase = 'stopped';
      // Everything that could be closed is; what could not is stop()'s error.
      if (stopped.context.shutdownError) throw stopped.context.shutdownError;
    } finally {
      await this.deadline.done();
      // Even a shutdown that threw gives back the metrics' app name and the folder.
      await this.observability.stop();
      this.folderLock?.release();
    }
  }

  /**
   * The stop ran out of time: the batches still applying fail (their partitions are not
   * restarted) and every worker thread is terminated between its write transactions. The
   * shutdown that follows finds no thread to wait for.
   */
  private async cutWorkers(timeoutMs: number): Promise<void> {
    this.supervisor?.send({ type: 'CUT' });
    await this.workers?.cut(new LifecycleError(`stop() ran out of time (${timeoutMs} ms): the worker threads were terminated`, { timeoutMs }));
  }

  /** Resolves once every batch that is due has run with its outputs; rejects with the error of a failed batch. */
  async awaitIdle(): Promise<void> {
    await this.line.idle;
    if (this.failure) throw this.failure;
  }

  // ── scheduling ────────────────────────────────────────────────────────────
  private scheduleBatch(time: number): void {
    this.cancelTimer = this.clock.schedule(time, () => this.generateBatch(time));
  }

  /** At a batch's time: take the sources' records now, queue the batch behind earlier ones. */
  private generateBatch(time: number): Promise<void> {
    if (this.phase !== 'running') return Promise.resolve();
    this.scheduleBatch(time + this.batchIntervalMs);
    // While earlier batches still wait, sources with a backlog keep it (backpressure).
    const behind = this.line.behind;
    let inputs: Map<number, RecordPieces>;
    try {
      const cluster = this.clusterRuntime;
      inputs = cluster ? new Map([[this.inputs[0].id, [cluster.take(time, behind)]]]) : new Map(this.inputs.map((input) => [input.id, input.take(time, behind)]));
    } catch (error) {
      // A source that cannot hand over its records fails this batch, loudly.
      const batch = new BatchRun(time, new Map());
      return this.line.queue(batch, error);
    }
    return this.line.queue(new BatchRun(time, inputs));
  }

  private async runBatch(batch: BatchRun, takeError?: unknown): Promise<void> {
    if (this.failure) {
      this.line.leave(batch);
      batch.release();
      throw this.failure;
    }
    const started = performance.now();
    const schedulingDelayMs = Math.max(0, this.clock.now() - batch.time);
    try {
      if (takeError !== undefined) throw takeError;
      // A listener that throws fails the batch loudly rather than losing it quietly.
      this.emit(BatchEvents.STARTED, { batchTime: batch.time, schedulingDelayMs });
      // A batch rebuilt at start takes its records from its sources now, not all at once at start.
      await batch.load();
      // A cluster's source positions are its own (stage 1, recorded by shard()).
      const sources = this.clusterRuntime ? [] : this.inputs;
      for (const input of sources) await input.beforeBatch?.(batch.time);
      await this.clusterRuntime?.shard(batch);
      this.line.leave(batch);
      // State streams run every batch, whether or not an output reads them.
      for (const [i, stream] of this.stateStreams.entries()) {
        const applying = stream.apply(batch);
        // The next batch in line is mapped and routed ahead, after this batch's own routing
        // (which apply has just begun), not before it.
        if (i === 0) this.line.prepareNext();
        await applying;
      }
      for (const stream of this.clusterStreams) await stream.apply(batch);
      // A re-run after a restore: the outputs ran, whole, when the batch first ran; now only
      // restored partitions produce records, and a sink keyed by batch time would be overwritten.
      // Each output gets an array of its own, as each of Spark's collect() does: a stream's
      // records are computed once a batch, and an output that sorts or empties what it is
      // given must not change what the next output, or a stream derived later, reads.
      if (batch.origin !== 'replay') for (const output of this.outputs) await outputUntilCut(output.fn((await output.stream.recordsFor(batch)).slice(), batch.time), this.deadline.outputs, batch.time, this.clusterRuntime !== undefined);
      for (const input of sources) await input.afterBatch?.(batch.time);
      const streams = [...this.stateStreams, ...this.clusterStreams].map((s) => s.stateIndex);
      this.emit(BatchEvents.COMPLETED, batch.completedEvent(streams, schedulingDelayMs, performance.now() - started));
      // Between this batch and the next: the only moment every partition holds the same batch
      // (not while rebuilt batches catch restored partitions up).
      if (batch.origin === 'live') await this.snapshots?.afterBatch(batch.time);
    } catch (error) {
      this.line.leave(batch);
      // Once the stop's deadline cut the threads, a batch fails because it did.
      const cutMs = this.deadline.passedMs;
      const failure = error instanceof StopTimeoutError ? error : cutMs !== undefined ? stopTimedOut(batch.time, cutMs, error) : asError(error, `batch ${batch.time}`);
      this.failure = failure;
      this.phase = this.phase === 'running' ? 'failed' : this.phase;
      this.cancelTimer?.();
      this.supervisor?.send({ type: 'FAIL', error: failure });
      this.emit(BatchEvents.FAILED, { batchTime: batch.time, error: failure });
      throw failure;
    } finally {
      batch.release();
    }
  }
}
