import { unknownOption } from '../../errors.js';

/** Where and how to reach ZooKeeper, as an option of a Kafka source or of a cluster. */
export interface ZooKeeperConnectOptions {
  /** `host:port[,host:port…]`, optionally with a chroot path. */
  connect: string;
  root?: string;
  /** Default 10000. */
  sessionTimeoutMs?: number;
  /** `user:password`: nodes are created with a digest ACL for that user only. */
  digest?: string;
}

export interface ValidZooKeeperOptions {
  connect: string;
  root: string;
  sessionTimeoutMs: number;
  digest?: string;
}

const known = ['connect', 'root', 'sessionTimeoutMs', 'digest'];

/** A TCP port a client can connect to: 1 to 65535 (a socket refuses more, and kafkajs and node-zookeeper-client then retry for minutes). */
export function isPort(text: string): boolean {
  return /^\d{1,5}$/.test(text) && Number(text) >= 1 && Number(text) <= 65535;
}

/** Checks a `zookeeper` option; `fail(message, option)` throws the caller's ConfigError. */
export function validateZooKeeperOptions(zookeeper: ZooKeeperConnectOptions | undefined, defaultRoot: string, fail: (message: string, option: string) => never): ValidZooKeeperOptions {
  if (zookeeper === null || typeof zookeeper !== 'object') fail('zookeeper must be an object with at least connect: "host:port"', 'zookeeper');
  const unknown = unknownOption(zookeeper, known);
  // A misspelt root would put the offsets under another root than the one meant, without a word.
  if (unknown !== undefined) fail(`unknown option "zookeeper.${unknown}" (known: ${known.join(', ')})`, `zookeeper.${unknown}`);
  const hosts = typeof zookeeper.connect === 'string' ? zookeeper.connect.split(',').map((h) => /^[^\s:,]+:(\d{1,5})(\/.*)?$/.exec(h)) : [];
  if (typeof zookeeper.connect !== 'string' || zookeeper.connect.trim() === '' || !hosts.every((h) => h !== null && isPort(h[1]))) {
    fail(`zookeeper.connect must be "host:port[,host:port…]", each port from 1 to 65535, got ${JSON.stringify(zookeeper.connect)}`, 'zookeeper.connect');
  }
  const root = zookeeper.root ?? defaultRoot;
  if (!/^(\/[^/\s]+)+$/.test(root)) fail(`zookeeper.root must be an absolute ZooKeeper path like /statestream/app, got ${JSON.stringify(root)}`, 'zookeeper.root');
  const sessionTimeoutMs = zookeeper.sessionTimeoutMs ?? 10_000;
  if (!Number.isInteger(sessionTimeoutMs) || sessionTimeoutMs < 1000 || sessionTimeoutMs > 120_000) {
    fail(`zookeeper.sessionTimeoutMs must be an integer from 1000 to 120000, got ${JSON.stringify(zookeeper.sessionTimeoutMs)}`, 'zookeeper.sessionTimeoutMs');
  }
  if (zookeeper.digest !== undefined && (typeof zookeeper.digest !== 'string' || !/^[^:]+:.+$/.test(zookeeper.digest))) {
    fail('zookeeper.digest must be "user:password"', 'zookeeper.digest');
  }
  return { connect: zookeeper.connect, root, sessionTimeoutMs, digest: zookeeper.digest };
}
