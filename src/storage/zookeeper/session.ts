import { createHash } from 'node:crypto';
import zookeeper from 'node-zookeeper-client';
import { OffsetStoreError } from '../../errors.js';
import { withRetry, type RetryPolicy, defaultRetryPolicy } from '../../retry.js';

export interface ZooKeeperOptions {
  /** `host:port[,host:port…]` */
  connect: string;
  sessionTimeoutMs?: number;
  /** Digest credentials (`user:password`): nodes under the job's root may be changed with them alone. */
  digest?: string;
  retry?: RetryPolicy;
}

type ZkClient = zookeeper.Client;

// Errors that mean "ZooKeeper is away for now": worth waiting for. (node-zookeeper-client
// knows no SESSION_MOVED: its exceptions are named only from its own list of codes.)
const TRANSIENT = new Set(['CONNECTION_LOSS', 'OPERATION_TIMEOUT', 'SESSION_EXPIRED']);

function exceptionName(error: unknown): string | undefined {
  return (error as { name?: string })?.name;
}

/** What ZooKeeper answered ('NO_NODE', 'NODE_EXISTS', …), also through the OffsetStoreError a session wraps it in. */
export function zooKeeperAnswer(error: unknown): string | undefined {
  return ((error as { cause?: unknown })?.cause as { name?: string } | undefined)?.name ?? exceptionName(error);
}

export function isTransient(error: unknown): boolean {
  const name = exceptionName(error);
  return (name !== undefined && TRANSIENT.has(name)) || (error as { transient?: boolean })?.transient === true;
}

function transientError(message: string): Error {
  return Object.assign(new Error(message), { transient: true });
}

/** A client's session id, as hex (the form ZooKeeper's own tools print). */
export function sessionIdOf(client: ZkClient): string {
  return client.getSessionId().toString('hex');
}

/** The id of the session that made an ephemeral node, in sessionIdOf's form; undefined for a persistent node (or no stat). */
export function ephemeralOwnerIdOf(stat: zookeeper.Stat | undefined): string | undefined {
  const owner = (stat?.ephemeralOwner as Buffer | undefined)?.toString('hex');
  return owner === undefined || /^0+$/.test(owner) ? undefined : owner;
}

/**
 * A ZooKeeper session that survives the server going away: requests wait and retry with
 * backoff, and an expired session is replaced by a new one (node-zookeeper-client does
 * not do that by itself).
 */
export class ZooKeeperSession {
  private client: ZkClient | undefined;
  private connecting: Promise<ZkClient> | undefined;
  private closed = false;
  private readonly abort = new AbortController();
  readonly acls: zookeeper.ACL[] | undefined;
  /** When the session last became connected or lost its connection (for the status page). */
  private changedAt = Date.now();
  /** Told the id of each session ZooKeeper expired: its ephemeral nodes are gone with it. */
  private readonly expiryListeners = new Set<(sessionId: string) => void>();

  constructor(private readonly options: ZooKeeperOptions) {
    if (options.digest) {
      const [user] = options.digest.split(':');
      const hashed = createHash('sha1').update(options.digest).digest('base64');
      // Everything for the job's credentials; reading for anyone, so lag tools and `statestream
      // inspect` can read positions without them (as Kafka's own ZooKeeper ACLs allow).
      this.acls = [
        new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('digest', `${user}:${hashed}`)),
        new zookeeper.ACL(zookeeper.Permission.READ, new zookeeper.Id('world', 'anyone')),
      ];
    }
  }

  private connectOnce(): Promise<ZkClient> {
    const interrupted = () => new OffsetStoreError(`ZooKeeper at ${this.options.connect}: interrupted while connecting`, { connect: this.options.connect });
    if (this.abort.signal.aborted) return Promise.reject(interrupted());
    return new Promise((resolve, reject) => {
      const client = zookeeper.createClient(this.options.connect, { sessionTimeout: this.sessionTimeoutMs, spinDelay: 200, retries: 1 });
      // An interrupt (stop) does not wait out the connection timeout either.
      const onAbort = () => {
        clearTimeout(timer);
        reject(interrupted());
        // node-zookeeper-client's close() may throw on a socket not yet open: nothing to close then.
        try {
          client.close();
        } catch {}
      };
      const timer = setTimeout(() => {
        this.abort.signal.removeEventListener('abort', onAbort);
        client.close();
        reject(transientError(`ZooKeeper at ${this.options.connect} did not answer within ${this.sessionTimeoutMs} ms`));
      }, this.sessionTimeoutMs);
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
      client.once('connected', () => {
        this.abort.signal.removeEventListener('abort', onAbort);
        clearTimeout(timer);
        if (this.options.digest) client.addAuthInfo('digest', Buffer.from(this.options.digest));
        resolve(client);
      });
      client.on('state', (state) => {
        if (this.client === client || this.client === undefined) this.changedAt = Date.now();
        if (state === zookeeper.State.EXPIRED && this.client === client) {
          // The next request opens a new session.
          this.client = undefined;
          client.close();
          for (const listener of this.expiryListeners) listener(sessionIdOf(client));
        }
      });
      client.connect();
    });
  }

  private async session(): Promise<ZkClient> {
    if (this.closed) throw new OffsetStoreError('the ZooKeeper session is closed', { connect: this.options.connect });
    if (this.client) return this.client;
    this.connecting ??= this.connectOnce()
      .then((client) => {
        if (this.closed) {
          client.close();
          throw new OffsetStoreError('the ZooKeeper session is closed', { connect: this.options.connect });
        }
        return (this.client = client);
      })
      .finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Runs one request, waiting and retrying while ZooKeeper is unreachable. */
  async run<T>(what: string, request: (client: ZkClient, done: (error: unknown, value?: T) => void) => void): Promise<T> {
    const attempt = async () => {
      const client = await this.session();
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          // Each attempt adds a listener: one that timed out takes its own away.
          this.abort.signal.removeEventListener('abort', onAbort);
          reject(transientError(`ZooKeeper ${what}: no answer in time`));
        }, this.sessionTimeoutMs * 2);
        // An interrupt (stop) does not wait out a request that an unreachable ZooKeeper may
        // never answer; on a live connection the answer is on its way, so it is awaited.
        const onAbort = (): boolean => {
          if (client.getState() === zookeeper.State.SYNC_CONNECTED) return false;
          clearTimeout(timer);
          reject(new OffsetStoreError(`ZooKeeper ${what}: interrupted while ZooKeeper was not answering`, { connect: this.options.connect, operation: what }));
          return true;
        };
        // A request begun after the interrupt (a batch's last write during a stop) would never hear it.
        if (this.abort.signal.aborted) {
          if (onAbort()) return;
        } else this.abort.signal.addEventListener('abort', onAbort, { once: true });
        request(client, (error, value) => {
          this.abort.signal.removeEventListener('abort', onAbort);
          clearTimeout(timer);
          if (error) reject(error);
          else resolve(value as T);
        });
      });
    };
    try {
      return await withRetry(attempt, { retriable: isTransient, signal: this.abort.signal }, this.options.retry ?? defaultRetryPolicy);
    } catch (error) {
      if (error instanceof OffsetStoreError) throw error;
      throw new OffsetStoreError(`ZooKeeper ${what} failed: ${(error as Error).message}`, { connect: this.options.connect, operation: what }, error);
    }
  }

  /**
   * Creates `path` and its missing parents. With credentials the new nodes carry the job's ACL,
   * except those above `root` (give it for a path under the job's root): other jobs keep their
   * roots beside it, so those stay open.
   */
  async mkdirp(path: string, root?: string): Promise<void> {
    try {
      const parent = root?.slice(0, root.lastIndexOf('/')) ?? '';
      if (this.acls && parent !== '') await this.run(`mkdirp ${parent}`, (client, done) => client.mkdirp(parent, (error) => done(error)));
      await this.run(`mkdirp ${path}`, (client, done) => {
        if (this.acls) client.mkdirp(path, this.acls, (error) => done(error));
        else client.mkdirp(path, (error) => done(error));
      });
    } catch (error) {
      throw this.missingChroot(error) ?? error;
    }
  }

  /** A create under a chroot that does not exist fails with NO_NODE: said as such, since ZooKeeper never creates a chroot. */
  private missingChroot(error: unknown): OffsetStoreError | undefined {
    const { connect } = this.options;
    const slash = connect.indexOf('/');
    if (slash < 0 || zooKeeperAnswer(error) !== 'NO_NODE') return undefined;
    const chroot = connect.slice(slash);
    return new OffsetStoreError(
      `ZooKeeper at ${connect}: the chroot ${chroot} does not exist, and ZooKeeper does not create one (create it first, e.g. \`create ${chroot}\` in zkCli.sh, or leave it out of the connect string)`,
      { connect, chroot },
      error,
    );
  }

  /** The node's data (an empty buffer for a node without any); undefined when there is no node at `path`. */
  read(path: string): Promise<Buffer | undefined> {
    return this.run(`read ${path}`, (client, done) =>
      client.getData(path, (error, data) => (zooKeeperAnswer(error) === 'NO_NODE' ? done(null, undefined) : done(error, data ?? Buffer.alloc(0)))),
    );
  }

  /** The names of the node's children; none when there is no node at `path`. */
  async children(path: string): Promise<string[]> {
    return (await this.listing(path)).names;
  }

  /**
   * The node's children and its cversion, which every create and delete of a child moves:
   * an unchanged cversion means the same children (none, and -1, when there is no node).
   */
  listing(path: string): Promise<{ names: string[]; cversion: number }> {
    return this.run(`list ${path}`, (client, done) =>
      client.getChildren(path, (error, names, stat) => (zooKeeperAnswer(error) === 'NO_NODE' ? done(null, { names: [], cversion: -1 }) : done(error, { names: names ?? [], cversion: stat?.cversion ?? -1 }))),
    );
  }

  /** Deletes the node (only at `version`, when given); a node already gone is no error. */
  remove(path: string, version = -1): Promise<void> {
    return this.run(`delete ${path}`, (client, done) => client.remove(path, version, (error) => done(zooKeeperAnswer(error) === 'NO_NODE' ? null : error)));
  }

  /**
   * Deletes the ephemeral node at `path` only if the session `sessionId` made it (by its
   * version, so a node made there meanwhile stays too); a node already gone is no error.
   */
  removeIfMadeBy(path: string, sessionId: string): Promise<void> {
    return this.run(`delete ${path}`, (client, done) =>
      client.exists(path, (error, stat) => {
        if (error || !stat) return done(error);
        if (ephemeralOwnerIdOf(stat) !== sessionId) return done(null);
        client.remove(path, stat.version, (removed) => done(zooKeeperAnswer(removed) === 'NO_NODE' || zooKeeperAnswer(removed) === 'BAD_VERSION' ? null : removed));
      }),
    );
  }

  /** The id of the session whose ephemeral node is at `path`; undefined for no node, or a persistent one. */
  ephemeralOwnerOf(path: string): Promise<string | undefined> {
    return this.run(`look for ${path}`, (client, done) =>
      client.exists(path, (error, stat) => done(error, ephemeralOwnerIdOf(stat))),
    );
  }

  /** Whether there is a node at `path`; a watcher is told of its next change (its deletion, say). */
  exists(path: string, watcher?: (event: zookeeper.Event) => void): Promise<boolean> {
    return this.run(`look for ${path}`, (client, done) => {
      const answer = (error: unknown, stat: unknown) => done(error, Boolean(stat));
      if (watcher) client.exists(path, watcher, answer);
      else client.exists(path, answer);
    });
  }

  /**
   * Creates a node, with the job's ACL when the session has credentials. Resolves with the
   * node's path (a sequential node's carries its number) and the id of the session that
   * made it: an ephemeral node lives as long as that session.
   */
  create(path: string, data: Buffer, mode: number): Promise<{ path: string; sessionId: string }> {
    return this.run(`create ${path}`, (client, done) => this.createWith(client, path, data, mode, (error, made) => done(error, { path: made, sessionId: sessionIdOf(client) })));
  }

  /** client.create with the job's ACL when the session has credentials, for requests that build their data on the connected client (inside run()). */
  createWith(client: ZkClient, path: string, data: Buffer, mode: number, answer: (error: unknown, path: string) => void): void {
    if (this.acls) client.create(path, data, this.acls, mode, answer);
    else client.create(path, data, mode, answer);
  }

  /** The session timeout asked for (ZooKeeper may grant another, within its bounds). */
  get sessionTimeoutMs(): number {
    return this.options.sessionTimeoutMs ?? 10_000;
  }

  /** The session timeout ZooKeeper granted the current session (the one asked for until connected), whichever is shorter. */
  get grantedTimeoutMs(): number {
    return Math.min(this.negotiatedTimeoutMs ?? this.sessionTimeoutMs, this.sessionTimeoutMs);
  }

  /** The session timeout ZooKeeper granted the current session, longer than asked when its minimum is; undefined until connected. */
  get negotiatedTimeoutMs(): number | undefined {
    const granted = this.client?.getSessionTimeout();
    return granted !== undefined && granted > 0 ? granted : undefined;
  }

  /** Calls `listener` with the id of every session of this wrapper that ZooKeeper expires; returns the unsubscribe. */
  onExpired(listener: (sessionId: string) => void): () => void {
    this.expiryListeners.add(listener);
    return () => this.expiryListeners.delete(listener);
  }

  /** Whether requests reach ZooKeeper now, and since when that holds (read-only, for metrics and the status page). */
  status(): { connect: string; connected: boolean; sinceMs: number } {
    const state = this.client?.getState();
    const connected = state === zookeeper.State.SYNC_CONNECTED || state === zookeeper.State.CONNECTED_READ_ONLY;
    return { connect: this.options.connect, connected, sinceMs: this.changedAt };
  }

  /** Aborted once interrupt() or close() was called: waits of the caller's own (another owner letting go) end then too. */
  get interrupted(): AbortSignal {
    return this.abort.signal;
  }

  /** Stops waiting for an unreachable ZooKeeper: requests that fail from now on fail at once. */
  interrupt(): void {
    this.abort.abort();
  }

  close(): void {
    this.closed = true;
    this.abort.abort();
    this.client?.close();
    this.client = undefined;
  }
}
