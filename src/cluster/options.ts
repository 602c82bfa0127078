import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { ConfigError, describeValue, given, isIntegerIn, unknownOption } from '../errors.js';
import { isPathName, validateZooKeeperOptions, type ValidZooKeeperOptions, type ZooKeeperConnectOptions } from '../storage/zookeeper/connect-options.js';

/** `cluster` of StreamingContextOptions: this process is one instance of a job that runs on several. */
export interface ClusterOptions {
  /** Membership, the assignment of state partitions and stage 1's source positions; root defaults to `/statestream-cluster/<appName>`. */
  zookeeper: ZooKeeperConnectOptions;
  /**
   * Names this instance among the job's: letters, digits, '.', '_', '-'. Default: the host
   * name and a hash of the data folder, stable across restarts, so that a restarted instance
   * is given back its partitions and reuses its stores.
   */
  instanceId?: string;
  /** Most pairs one state partition applies per batch (in whole repartition messages of up to 500). Default 100000. */
  maxPairsPerBatch?: number;
  /** How long a restore may wait for a changelog to be read, in ms. Default 300000. */
  restoreTimeoutMs?: number;
}

export interface ValidClusterOptions {
  zookeeper: ValidZooKeeperOptions;
  instanceId: string;
  maxPairsPerBatch: number;
  restoreTimeoutMs: number;
}

const known = new Set(['zookeeper', 'instanceId', 'maxPairsPerBatch', 'restoreTimeoutMs']);

function fail(message: string, option: string): never {
  throw new ConfigError(`StreamingContext: cluster.${message}`, { option: `cluster.${option}` });
}

export function defaultInstanceId(dataDir: string): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60) || 'host';
  return `${host}-${createHash('sha256').update(dataDir).digest('hex').slice(0, 8)}`;
}

/** Checks `cluster` when the context is made (appName and dataDir are already checked). */
export function validateClusterOptions(options: ClusterOptions, appName: string, dataDir: string): ValidClusterOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError(`StreamingContext: cluster must be an object like { zookeeper: { connect } }, got ${describeValue(options)}`, { option: 'cluster' });
  }
  const unknown = unknownOption(options, known);
  if (unknown !== undefined) fail(`${unknown} is not a cluster option (known: ${[...known].join(', ')})`, unknown);
  const zookeeper = validateZooKeeperOptions(options.zookeeper, `/statestream-cluster/${appName}`, fail);
  const instanceId = given(options.instanceId, defaultInstanceId(dataDir));
  // A ZooKeeper path element (members/<id>), where '.' and '..' are not allowed.
  if (!isPathName(instanceId)) {
    fail(`instanceId must be 1–100 characters of letters, digits, '.', '_' or '-' (not '.' or '..'), got ${describeValue(options.instanceId)}`, 'instanceId');
  }
  const maxPairsPerBatch = given(options.maxPairsPerBatch, 100_000);
  if (!isIntegerIn(maxPairsPerBatch, 1, 10_000_000)) {
    fail(`maxPairsPerBatch must be an integer from 1 to 10000000, got ${describeValue(options.maxPairsPerBatch)}`, 'maxPairsPerBatch');
  }
  const restoreTimeoutMs = given(options.restoreTimeoutMs, 300_000);
  if (!isIntegerIn(restoreTimeoutMs, 1000, Infinity)) {
    fail(`restoreTimeoutMs must be an integer of at least 1000, got ${describeValue(options.restoreTimeoutMs)}`, 'restoreTimeoutMs');
  }
  return { zookeeper, instanceId, maxPairsPerBatch, restoreTimeoutMs };
}
