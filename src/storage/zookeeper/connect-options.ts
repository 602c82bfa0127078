import { describeValue, given, isIntegerIn, unknownOption } from '../../errors.js';

/** Where and how to reach ZooKeeper, as an option of a Kafka source or of a cluster. */
export interface ZooKeeperConnectOptions {
  /** `host:port[,host:port…]`, optionally with a chroot path. */
  connect: string;
  root?: string;
  /** Default 10000. */
  sessionTimeoutMs?: number;
  /** `user:password`: nodes are created with an ACL giving that user every right and everyone else read only. */
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

/** A Kafka broker's address as kafkajs takes it: host:port, the port one a client can connect to. */
export function isBrokerAddress(address: unknown): address is string {
  return typeof address === 'string' && /^[^\s:]+:\d{1,5}$/.test(address) && isPort(address.slice(address.lastIndexOf(':') + 1));
}

/** A name that becomes one ZooKeeper path element (an appName, an instanceId): 1–100 of [A-Za-z0-9._-], and not '.' or '..', which ZooKeeper refuses. */
export function isPathName(name: unknown): name is string {
  return typeof name === 'string' && /^[A-Za-z0-9._-]{1,100}$/.test(name) && name !== '.' && name !== '..';
}

/** An absolute ZooKeeper path ZooKeeper accepts: no empty, '.' or '..' element, no trailing '/'. */
export function isZooKeeperPath(path: unknown): path is string {
  return typeof path === 'string' && /^(\/[^/\s]+)+$/.test(path) && !path.split('/').some((part) => part === '.' || part === '..');
}

/**
 * `host:port[,host:port…][/chroot]` as node-zookeeper-client reads it (one chroot, after
 * the last host): undefined when it is one, or what is wrong with it.
 */
export function connectProblem(connect: unknown): string | undefined {
  if (typeof connect !== 'string' || connect.trim() === '') return 'it must be "host:port[,host:port…][/chroot]"';
  const slash = connect.indexOf('/');
  const hosts = slash < 0 ? connect : connect.slice(0, slash);
  for (const host of hosts.split(',')) {
    const match = /^[^\s:,/]+:(\d+)$/.exec(host);
    if (!match) return `${JSON.stringify(host)} is not host:port (a chroot path goes once, after the last host)`;
    if (!isPort(match[1])) return `port ${match[1]} of ${JSON.stringify(host)} is not from 1 to 65535`;
  }
  // A ',' after the first '/' is a host written after a chroot, read by the client as part of the path.
  if (slash >= 0 && connect.slice(slash).includes(',')) return `${JSON.stringify(connect.slice(slash))} holds another host: a chroot path goes once, after the last host`;
  if (slash >= 0 && !isZooKeeperPath(connect.slice(slash))) return `the chroot ${JSON.stringify(connect.slice(slash))} is not an absolute ZooKeeper path like /chroot`;
  return undefined;
}

/**
 * Whether two valid `{ connect, root }` may name the same node: hosts in common (an ensemble is
 * reached through any of its servers, in any order) and the same path once each connect
 * string's chroot is put before its root. Strings that differ can still name one node.
 */
export function mayShareRoot(a: { connect: string; root: string }, b: { connect: string; root: string }): boolean {
  const place = ({ connect, root }: { connect: string; root: string }) => {
    const slash = connect.indexOf('/');
    const hosts = (slash < 0 ? connect : connect.slice(0, slash)).split(',').map((h) => h.toLowerCase());
    return { hosts, path: `${slash < 0 ? '' : connect.slice(slash)}${root}` };
  };
  const [x, y] = [place(a), place(b)];
  return x.path === y.path && x.hosts.some((h) => y.hosts.includes(h));
}

/** Checks a `zookeeper` option; `fail(message, option)` throws the caller's ConfigError. */
export function validateZooKeeperOptions(zookeeper: ZooKeeperConnectOptions | undefined, defaultRoot: string, fail: (message: string, option: string) => never): ValidZooKeeperOptions {
  if (zookeeper === null || typeof zookeeper !== 'object' || Array.isArray(zookeeper)) fail('zookeeper must be an object with at least connect: "host:port"', 'zookeeper');
  const unknown = unknownOption(zookeeper, known);
  // A misspelt root would put the offsets under another root than the one meant, without a word.
  if (unknown !== undefined) fail(`unknown option "zookeeper.${unknown}" (known: ${known.join(', ')})`, `zookeeper.${unknown}`);
  const problem = connectProblem(zookeeper.connect);
  if (problem !== undefined) fail(`zookeeper.connect must be "host:port[,host:port…][/chroot]", each port from 1 to 65535, got ${describeValue(zookeeper.connect)}: ${problem}`, 'zookeeper.connect');
  const root = given(zookeeper.root, defaultRoot);
  if (!isZooKeeperPath(root)) fail(`zookeeper.root must be an absolute ZooKeeper path like /statestream/app (no '.' or '..' element), got ${describeValue(root)}`, 'zookeeper.root');
  const sessionTimeoutMs = given(zookeeper.sessionTimeoutMs, 10_000);
  if (!isIntegerIn(sessionTimeoutMs, 1000, 120_000)) {
    fail(`zookeeper.sessionTimeoutMs must be an integer from 1000 to 120000, got ${describeValue(sessionTimeoutMs)}`, 'zookeeper.sessionTimeoutMs');
  }
  if (zookeeper.digest !== undefined && !isDigest(zookeeper.digest)) fail('zookeeper.digest must be "user:password"', 'zookeeper.digest');
  return { connect: zookeeper.connect, root, sessionTimeoutMs, digest: zookeeper.digest };
}

/** `user:password` for a digest ACL. */
export function isDigest(digest: unknown): digest is string {
  return typeof digest === 'string' && /^[^:]+:.+$/.test(digest);
}
