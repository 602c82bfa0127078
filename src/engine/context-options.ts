import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { ConfigError, describeValue, given, isIntegerIn, unknownOption } from '../errors.js';
import { isPathName } from '../storage/zookeeper/connect-options.js';
import { openWaitMs } from '../storage/open-gate.js';
import type { MetricsOptions, UiOptions } from '../metrics/options.js';
import { validateClusterOptions, type ClusterOptions, type ValidClusterOptions } from '../cluster/options.js';
import { SystemClock, type Clock } from './clock.js';
import { snapshotPolicy, type SnapshotEvery, type SnapshotPolicy } from './snapshot-scheduler.js';

export interface StreamingContextOptions {
  /** Time between batches, in milliseconds. */
  batchIntervalMs: number;
  /** Where the partition stores live (one LMDB environment per partition). Default `./statestream-data`. */
  dataDir?: string;
  /** Worker threads applying partitions. Default: the machine's available parallelism. */
  threads?: number;
  /** Where batch times come from. Default: the system clock; pass a ManualClock in tests. */
  clock?: Clock;
  /** Names the job in errors and (with Kafka) in ZooKeeper paths. */
  appName?: string;
  /** Worker restarts allowed per partition within one batch before the batch fails. Default 3. */
  maxWorkerRestarts?: number;
  /**
   * Entries of state each worker thread keeps in memory, shared by the partitions pinned to
   * it (cold keys are evicted and read from LMDB again when needed). Default 1,000,000; 0
   * reads every key from LMDB each batch.
   */
  stateCacheEntries?: number;
  /** Snapshot the state every n batches (a number or `{ batches: n }`) or `{ ms: n }`, into `<dataDir>/snapshots`. Off by default. */
  snapshotEvery?: SnapshotEvery;
  /** How many snapshots to keep, newest first. Default 3. */
  snapshotsKept?: number;
  /** Prometheus metrics: `{ port, host }` serves `/metrics`; `{ registry }` registers on your own prom-client registry. */
  metrics?: MetricsOptions;
  /** The status page (off by default): `{ port, host, token }`; host 127.0.0.1 by default, and a host that is not loopback needs a token. */
  ui?: UiOptions;
  /**
   * Run as one instance of a job spread over several processes (docs/scale-out.md): they
   * share the Kafka source and the state partitions, through Kafka and ZooKeeper.
   */
  cluster?: ClusterOptions;
}

/** What a context runs with: every option checked, every default filled in (metrics and ui are checked by Observability). */
export interface ValidContextOptions {
  batchIntervalMs: number;
  dataDir: string;
  threads: number;
  clock: Clock;
  appName: string;
  maxWorkerRestarts: number;
  stateCacheEntries: number;
  snapshotPolicy: SnapshotPolicy | undefined;
  cluster: ValidClusterOptions | undefined;
}

const KNOWN = ['batchIntervalMs', 'dataDir', 'threads', 'clock', 'appName', 'maxWorkerRestarts', 'stateCacheEntries', 'snapshotEvery', 'snapshotsKept', 'metrics', 'ui', 'cluster'];

/** The most worker threads a context runs. */
const MAX_THREADS = 256;

/** Two generations of at most half the bound each stay far below V8's 2^24 entries per Map. */
const MAX_STATE_CACHE_ENTRIES = 2 ** 24;

/** Worker threads when the option is not given: one per core, capped like the option, so that a machine with more cores than that still starts. */
export function defaultThreads(cores: number): number {
  return Math.min(cores, MAX_THREADS);
}

function integerOption(options: Record<string, unknown>, name: string, min: number, max: number, fallback?: number): number {
  const value = given(options[name], fallback);
  if (!isIntegerIn(value, min, max)) {
    throw new ConfigError(`StreamingContext: ${name} must be an integer from ${min} to ${max}, got ${value === undefined ? 'nothing' : describeValue(value)}`, { option: name, value });
  }
  return value;
}

/** Checks a context's options when it is made, so that a bad one is named before anything opens. */
export function validContextOptions(options: StreamingContextOptions): ValidContextOptions {
  if (options === null || typeof options !== 'object') throw new ConfigError(`StreamingContext expects an options object, got ${describeValue(options)}`);
  const unknown = unknownOption(options, KNOWN);
  if (unknown !== undefined) throw new ConfigError(`StreamingContext: unknown option "${unknown}" (known: ${KNOWN.join(', ')})`, { option: unknown });
  const raw = options as unknown as Record<string, unknown>;
  const batchIntervalMs = integerOption(raw, 'batchIntervalMs', 1, 24 * 3600_000);
  const threads = integerOption(raw, 'threads', 1, MAX_THREADS, defaultThreads(availableParallelism()));
  const maxWorkerRestarts = integerOption(raw, 'maxWorkerRestarts', 0, 100, 3);
  const stateCacheEntries = integerOption(raw, 'stateCacheEntries', 0, MAX_STATE_CACHE_ENTRIES, 1_000_000);
  const policy = snapshotPolicy(options.snapshotEvery, options.snapshotsKept);
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir.trim() === '')) {
    throw new ConfigError(`StreamingContext: dataDir must be a non-empty path string, got ${describeValue(options.dataDir)}`, { option: 'dataDir' });
  }
  const dataDir = resolve(options.dataDir ?? 'statestream-data');
  // The name is a ZooKeeper path element (the default roots), where '.' and '..' are not allowed.
  if (options.appName !== undefined && !isPathName(options.appName)) {
    throw new ConfigError(`StreamingContext: appName must be 1–100 characters of letters, digits, '.', '_' or '-' (not '.' or '..'), got ${describeValue(options.appName)}`, { option: 'appName' });
  }
  const appName = options.appName ?? 'statestream';
  const clock = options.clock === undefined ? new SystemClock() : options.clock;
  if (typeof clock?.now !== 'function' || typeof clock?.schedule !== 'function') {
    throw new ConfigError('StreamingContext: clock must have now() and schedule(time, callback) (a ManualClock or SystemClock)', { option: 'clock' });
  }
  // Read again at each open, on the workers too: a bad value is refused here, before any of them.
  openWaitMs();
  let cluster: ValidClusterOptions | undefined;
  if (options.cluster !== undefined) {
    cluster = validateClusterOptions(options.cluster, appName, dataDir);
    if (policy) throw new ConfigError('StreamingContext: snapshotEvery is not supported with cluster (the changelog topics are what a partition is restored from)', { option: 'snapshotEvery' });
  }
  return { batchIntervalMs, dataDir, threads, clock, appName, maxWorkerRestarts, stateCacheEntries, snapshotPolicy: policy, cluster };
}
