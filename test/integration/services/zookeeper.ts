/**
 * A private ZooKeeper server for integration tests: Debian's `zookeeper`
 * package (3.8) run standalone with ZooKeeperServerMain on a free loopback
 * port, a generated config and a temporary data folder.
 *
 * Needs the packages from scripts/install-services.sh (zookeeper, a JRE).
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zookeeper from 'node-zookeeper-client';
import { describeExit, spawnService, type ServiceProcess } from './process.js';
import { within } from '../../wait.js';

const INSTALL_HINT = 'run `bash scripts/install-services.sh` (as root) first';
const JAVA_DIR = '/usr/share/java';
const START_TIMEOUT_MS = 20_000;
const JVM_OPTS = [
  '-Xmx256m',
  '-Xss512k',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-Djava.net.preferIPv4Stack=true',
  '-Dzookeeper.admin.enableServer=false',
  // Netty, not the default NIO factory: ZooKeeper 3.8's NIO factory accepts connections while
  // still loading its database, and one that arrives then hits a NullPointerException on close
  // and is left open with no answer; node-zookeeper-client then waits on it forever. After
  // restart() clients reconnect right in that window (about 1 restart in 10 hung).
  '-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory',
  '-Dzookeeper.jmx.log4j.disable=true',
  // slf4j-simple (if present) writes to stderr; warnings and errors unless asked
  `-Dorg.slf4j.simpleLogger.defaultLogLevel=${process.env.STATESTREAM_ZK_LOG_LEVEL ?? 'warn'}`,
  '-Dorg.slf4j.simpleLogger.showDateTime=true',
];

export interface ZooKeeperOptions {
  /** Milliseconds; the session timeouts default to 2 and 20 ticks. Default 500. */
  tickTime?: number;
  /** Default 2 × tickTime (1 s). */
  minSessionTimeout?: number;
  /** Default 20 × tickTime (10 s). */
  maxSessionTimeout?: number;
}

export interface ZooKeeperServer {
  /** '127.0.0.1:PORT', for node-zookeeper-client's createClient(). */
  readonly connectString: string;
  readonly port: number;
  readonly dataDir: string;
  /** The server process's id while it runs (a new one after each start). */
  readonly pid: number | undefined;
  running(): boolean;
  /** The last few KB the current (or last) server process logged (STATESTREAM_ZK_LOG_LEVEL=info for more). */
  log(): string;
  /** Stops the server gracefully (SIGTERM); the data stays for start()/restart(). */
  stop(): Promise<void>;
  /** SIGKILL, as in a crash; the data stays for start()/restart(). */
  kill(): Promise<void>;
  /** Starts it again after stop()/kill(), on the same port and data folder. */
  start(): Promise<void>;
  /** stop() (if running) then start(): clients see the server go down and come back. */
  restart(): Promise<void>;
}

/**
 * The Debian package's jar (its manifest's Class-Path brings jute, slf4j-api, metrics and part
 * of Netty), the rest of Netty that the Netty connection factory needs, and a logger.
 */
function classpath(): string {
  const main = join(JAVA_DIR, 'zookeeper.jar');
  if (!existsSync(main)) throw new Error(`ZooKeeper not installed: ${main} is missing (${INSTALL_HINT})`);
  const netty = ['netty-codec', 'netty-resolver', 'netty-transport-native-unix-common'].map((name) => join(JAVA_DIR, `${name}.jar`));
  const missing = netty.slice(0, 2).filter((jar) => !existsSync(jar));
  if (missing.length > 0) throw new Error(`ZooKeeper's Netty jars are missing: ${missing.join(', ')} (${INSTALL_HINT})`);
  const logger = join(JAVA_DIR, 'slf4j-simple.jar');
  return [main, ...netty, logger].filter((jar) => existsSync(jar)).join(':');
}

/** A port the kernel just handed out on 127.0.0.1, or `port` when it could be listened on (free at that moment; EADDRINUSE otherwise). */
export function freePort(port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('freePort: no address'));
      });
    });
  });
}

/** Sends a four-letter command, resolving with the whole answer ('' on any error). */
export function fourLetterWord(port: number, word: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = createConnection({ host: '127.0.0.1', port });
    // a plain timer, not socket.setTimeout(): that one is unref'd and would not keep the process waiting
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.end(word));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

const tempDirs = new Set<string>();
process.once('exit', () => tempDirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** Starts a standalone ZooKeeper on a free loopback port; resolves when it serves requests. */
export async function startZooKeeper(options: ZooKeeperOptions = {}): Promise<ZooKeeperServer> {
  const tickTime = options.tickTime ?? 500;
  const cp = classpath();
  const root = mkdtempSync(join(tmpdir(), 'statestream-zk-'));
  tempDirs.add(root);
  const dataDir = join(root, 'data');
  const config = join(root, 'zoo.cfg');

  let port = 0;
  let proc: ServiceProcess | undefined;

  const writeConfig = () =>
    writeFileSync(
      config,
      [
        `tickTime=${tickTime}`,
        `dataDir=${dataDir}`,
        `clientPort=${port}`,
        'clientPortAddress=127.0.0.1',
        `minSessionTimeout=${options.minSessionTimeout ?? 2 * tickTime}`,
        `maxSessionTimeout=${options.maxSessionTimeout ?? 20 * tickTime}`,
        'maxClientCnxns=0',
        'admin.enableServer=false',
        '4lw.commands.whitelist=ruok,srvr,stat,mntr,cons',
        // tests write little: no need to preallocate 64 MB logs, snapshot often
        'preAllocSize=1024',
        'snapCount=1000',
        '',
      ].join('\n'),
    );

  const launch = async (): Promise<void> => {
    const started = Date.now();
    const p = spawnService(
      'zookeeper',
      'java',
      [...JVM_OPTS, '-cp', cp, 'org.apache.zookeeper.server.ZooKeeperServerMain', config],
      { cwd: root },
    );
    proc = p;
    const fail = (why: string) => {
      const stderr = p.stderrTail().trim();
      const hint = /ENOENT|No such file|not found/.test(stderr) ? ` (${INSTALL_HINT})` : '';
      return new Error(`ZooKeeper on 127.0.0.1:${port} ${why}${hint}${stderr ? `; its stderr:\n${stderr}` : ''}`);
    };
    for (;;) {
      if (!p.running()) throw fail(`exited before serving (${describeExit(await p.exited)})`);
      // 'srvr' answers "Zookeeper version: …" only once the server serves requests
      // ('ruok' says imok as soon as the port listens).
      if ((await fourLetterWord(port, 'srvr')).startsWith('Zookeeper version:')) return;
      if (Date.now() - started > START_TIMEOUT_MS) {
        await p.terminate('SIGKILL');
        throw fail(`did not serve requests within ${START_TIMEOUT_MS} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  // The port is free when asked, but may be taken before java binds it: try a few.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    writeConfig();
    try {
      await launch();
      break;
    } catch (err) {
      const busy = /Address already in use|BindException/.test((err as Error).message);
      if (!busy || attempt >= 3) {
        rmSync(root, { recursive: true, force: true });
        tempDirs.delete(root);
        throw err;
      }
    }
  }

  const running = () => proc?.running() ?? false;
  const stop = async () => {
    await proc?.terminate('SIGTERM', 5000);
  };
  const start = async () => {
    if (!running()) await launch();
  };

  return {
    connectString: `127.0.0.1:${port}`,
    port,
    dataDir,
    get pid() {
      return running() ? proc?.pid : undefined;
    },
    running,
    log: () => proc?.stderrTail() ?? '',
    stop,
    async kill() {
      await proc?.terminate('SIGKILL');
    },
    start,
    async restart() {
      await stop();
      await start();
    },
  };
}

/** A plain node-zookeeper-client session of a test's own ("another client"); close it when done. */
export async function connectClient(connect: string, timeoutMs = 10_000): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connect, { sessionTimeout: 5000 });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.close();
      reject(new Error(`no ZooKeeper session at ${connect} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    client.once('connected', () => {
      clearTimeout(timer);
      resolve();
    });
    client.connect();
  });
  return client;
}

/** One node-zookeeper-client request as a promise: its answer, or its error; fails naming itself when no answer comes within 10 s. */
export function zkAnswer<T>(request: (done: (error: unknown, value?: T) => void) => void): Promise<T> {
  return within(new Promise<T>((resolve, reject) => request((error, value) => (error ? reject(error) : resolve(value as T)))), 'a ZooKeeper answer', { timeoutMs: 10_000 });
}
