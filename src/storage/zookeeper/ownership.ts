import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper, { type Transaction } from 'node-zookeeper-client';
import { ConfigError, JobOwnedError, LifecycleError, OffsetStoreError, OwnershipLostError } from '../../errors.js';
import { describeProcess, isGone, isThisProcess, parseIdentity, sameProcessSpace, thisProcess, type ProcessIdentity } from '../holder.js';
import { sessionIdOf, zooKeeperAnswer, type ZooKeeperSession } from './session.js';

/** What an owner node holds: who runs the job, so that a refused copy can name it. */
export interface OwnerRecord extends ProcessIdentity {
  dataDir: string;
  appName: string;
  /** The session timeout ZooKeeper granted: the longest the node outlives its process. */
  sessionTimeoutMs: number;
  /** Names one instance of a job that runs several (reserved for the scale-out). */
  instanceId?: string;
}

export interface Owner {
  /** The owner node's full path. */
  node: string;
  record: OwnerRecord;
}

export interface OwnershipTaken extends Owner {
  /** How long the start waited for an earlier owner's node to go. */
  waitedMs: number;
  /** The earlier owner whose node this start removed, and why it could. */
  tookOverFrom?: Owner & { reason: string };
}

/** A multi-operation that ZooKeeper applies only while the job owns its root. */
export interface WriteFence {
  write(what: string, build: (tx: Transaction) => void): Promise<void>;
}

const PREFIX = 'owner-';
// ZooKeeper expires sessions in ticks: a dead owner's node goes within its timeout and a tick or so.
const EXPIRY_MARGIN_MS = 2_000;
// Longest single wait on a watch, so a watch lost with a replaced session is set again.
const WATCH_SLICE_MS = 1_000;

const sequence = (name: string) => Number(name.slice(name.lastIndexOf('-') + 1));

/**
 * Watches on the owner nodes a copy waits behind: one per node, set again only once it fired
 * or the session it was set on expired (a replaced session loses its watches). ZooKeeper has
 * no way to take a watch back, so one set per slice of the wait piled up on the node (and
 * node-zookeeper-client warned of a listener leak past ten).
 */
class DeletionWatches {
  private readonly watches = new Map<string, { changed: Promise<void>; off: () => void }>();

  constructor(private readonly zk: ZooKeeperSession) {}

  /** Resolves when `node` is gone or at `until`, whichever comes first. */
  async gone(node: string, until: number): Promise<void> {
    const abort = new AbortController();
    // A stop ends the wait too (the slept promise rejects, caught: the caller looks at the signal).
    const stop = () => abort.abort();
    const interrupted = this.zk.interrupted;
    if (interrupted.aborted) stop();
    else interrupted.addEventListener('abort', stop, { once: true });
    await Promise.race([this.changed(node), sleep(Math.max(0, until - Date.now()), undefined, { signal: abort.signal }).catch(() => undefined)]);
    interrupted.removeEventListener('abort', stop);
    abort.abort();
  }

  /** Settles when the node changes, goes or is absent, or its watch is lost with the session; rejects when ZooKeeper cannot be asked. */
  private changed(node: string): Promise<void> {
    const current = this.watches.get(node);
    if (current) return current.changed;
    let settle!: (error?: unknown) => void;
    const changed = new Promise<void>((resolve, reject) => {
      settle = (error?: unknown) => {
        // The first of its events ends a watch; a later one must not drop the watch set after it.
        if (this.watches.get(node) !== watch) return;
        off();
        this.watches.delete(node);
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    const off = this.zk.onExpired(() => settle());
    const watch = { changed, off };
    this.watches.set(node, watch);
    this.zk.exists(node, () => settle()).then((present) => present || settle(), (error: unknown) => settle(error));
    return changed;
  }

  close(): void {
    for (const { off } of this.watches.values()) off();
    this.watches.clear();
  }
}

/**
 * The sessions through which this process owns a root now. Two sources of one job on one
 * root are refused when defined, by their connect strings; through two names of the same
 * servers (localhost and 127.0.0.1) they would meet here, where the second would take the
 * first's node for a dead copy's (it names the data folder this process holds).
 */
const ownedHere = new Set<string>();

/**
 * Who runs a job, in ZooKeeper's lock recipe, under `<root>/owners`: each copy creates an
 * EPHEMERAL_SEQUENTIAL node holding who it is, and the lowest node owns the root. The node is
 * also the fence: every write of positions checks it in the same multi-operation, so once
 * ZooKeeper expires the owner's session (it was paused, or cut off) nothing it sends can move
 * a position, whatever its session wrapper retries on a new session.
 */
export class ZooKeeperOwnership implements WriteFence {
  private node: string | undefined;
  private sessionId: string | undefined;
  /** The session timeout ZooKeeper granted the session that made the owner node. */
  private granted: number | undefined;
  private lost: OwnershipLostError | undefined;
  private released = false;
  private readonly listeners = new Set<(error: OwnershipLostError) => void>();
  private stopWatching: (() => void) | undefined;

  constructor(
    private readonly zk: ZooKeeperSession,
    readonly root: string,
    private readonly me: { dataDir: string; appName: string; instanceId?: string },
    /** Whether the caller holds `me.dataDir`'s folder lock: an owner that named that folder on this machine then runs no more. */
    private readonly holdsDataDir: boolean,
  ) {}

  private get owners(): string {
    return `${this.root}/owners`;
  }

  /**
   * Takes the root, or fails with JobOwnedError naming the owner. An owner that certainly no
   * longer runs (its process is gone from this machine, or it named the data folder whose
   * lock this process holds) has its node removed at once; the fence makes that safe, since
   * nothing sent on its session can write after the node is gone. Any other owner may be
   * alive: the start waits up to its session timeout for its node to go, then fails.
   */
  async acquire(): Promise<OwnershipTaken> {
    const started = Date.now();
    await this.zk.mkdirp(this.owners, this.root);
    const created = await this.create();
    const watches = new DeletionWatches(this.zk);
    const tookOverFrom = await this.waitFirst(created, started, watches).finally(() => watches.close());
    this.node = created.node;
    this.sessionId = created.sessionId;
    this.granted = created.record.sessionTimeoutMs || undefined;
    ownedHere.add(created.sessionId);
    this.watch();
    return { node: created.node, record: created.record, waitedMs: Date.now() - started, tookOverFrom };
  }

  /** Waits until `created` is the first owner node: what acquire() does once its node is made. */
  private async waitFirst(created: Owner & { sessionId: string }, started: number, watches: DeletionWatches): Promise<OwnershipTaken['tookOverFrom']> {
    const deadlines = new Map<string, number>();
    let tookOverFrom: OwnershipTaken['tookOverFrom'];
    for (;;) {
      if (this.zk.interrupted.aborted) {
        await this.zk.remove(created.node).catch(() => undefined);
        throw new OffsetStoreError(`the start was stopped while it waited for another copy of the job to let go of ${this.root}`, { root: this.root });
      }
      const names = await this.contenders();
      const mine = names.indexOf(created.node.slice(this.owners.length + 1));
      if (mine < 0) throw this.loss(`its owner node ${created.node} went while it waited to own ${this.root} (its ZooKeeper session expired)`);
      if (mine === 0) break;
      const holder = await this.read(`${this.owners}/${names[0]}`);
      if (!holder) continue;
      // Another owner of this process on this data folder is a source of the same job (a copy
      // of it would have been refused the folder's lock), which goneBecause would take for gone.
      if (isThisProcess(holder.record) && holder.record.dataDir === this.me.dataDir) {
        const session = await this.zk.ephemeralOwnerOf(holder.node);
        if (session !== undefined && ownedHere.has(session)) {
          await this.zk.remove(created.node);
          throw new ConfigError(
            `kafkaStream: the ZooKeeper root ${this.root} is owned by another Kafka source of this process (owner node ${holder.node}): ` +
              'two sources must not share a root, whatever names they reach ZooKeeper by; give each its own zookeeper.root',
            { option: 'zookeeper.root', root: this.root, node: holder.node },
          );
        }
      }
      const reason = this.goneBecause(holder.record);
      if (reason) {
        await this.zk.remove(holder.node);
        tookOverFrom = { ...holder, reason };
        continue;
      }
      if (!deadlines.has(holder.node)) deadlines.set(holder.node, Date.now() + holder.record.sessionTimeoutMs + EXPIRY_MARGIN_MS);
      const deadline = deadlines.get(holder.node)!;
      if (Date.now() >= deadline) {
        await this.zk.remove(created.node);
        throw this.refusal(holder, deadline - started);
      }
      await watches.gone(holder.node, Math.min(deadline, Date.now() + WATCH_SLICE_MS));
    }
    return tookOverFrom;
  }

  /** Creates this copy's node; a create retried on the same session may have made two, so the extra is removed. */
  private async create(): Promise<Owner & { sessionId: string }> {
    const token = randomUUID();
    const made = await this.zk.run<Owner & { sessionId: string }>(`create an owner node under ${this.owners}`, (client, done) => {
      const record: OwnerRecord = { ...thisProcess(), ...this.me, sessionTimeoutMs: client.getSessionTimeout() };
      const data = Buffer.from(JSON.stringify(record));
      const answer = (error: unknown, node: string) => done(error, { node, record, sessionId: sessionIdOf(client) });
      this.zk.createWith(client, `${this.owners}/${PREFIX}${token}-`, data, zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, answer);
    });
    for (const name of await this.contenders()) {
      if (name.includes(token) && `${this.owners}/${name}` !== made.node) await this.zk.remove(`${this.owners}/${name}`);
    }
    return made;
  }

  /** The owner nodes' names, lowest (the owner) first; none when the root was never owned. */
  private async contenders(): Promise<string[]> {
    const names = await this.zk.children(this.owners);
    return names.filter((n) => n.startsWith(PREFIX)).sort((a, b) => sequence(a) - sequence(b));
  }

  /** Every owner node with what it holds, the owner first. */
  async list(): Promise<Owner[]> {
    const owners: Owner[] = [];
    for (const name of await this.contenders()) {
      const owner = await this.read(`${this.owners}/${name}`);
      if (owner) owners.push(owner);
    }
    return owners;
  }

  private async read(node: string): Promise<Owner | undefined> {
    const data = await this.zk.read(node);
    if (data === undefined) return undefined;
    // A node someone wrote by hand names no process: treat it as a live owner with this job's timeout.
    const record = parseIdentity<OwnerRecord>(data.toString('utf8')) ?? { pid: 0, host: 'unknown', since: 'unknown', dataDir: 'unknown', appName: 'unknown', sessionTimeoutMs: 0 };
    return { node, record: { ...record, sessionTimeoutMs: record.sessionTimeoutMs || this.zk.sessionTimeoutMs } };
  }

  /** Why `owner` certainly runs no more, or undefined when it may. */
  private goneBecause(owner: OwnerRecord): string | undefined {
    if (isGone(owner)) return `process ${owner.pid} no longer runs on ${owner.host}`;
    if (this.holdsDataDir && owner.dataDir === this.me.dataDir && sameProcessSpace(owner)) {
      return `it named the data folder ${owner.dataDir}, whose lock this process now holds, so it no longer runs there`;
    }
    return undefined;
  }

  private refusal(owner: Owner, waitedMs: number): JobOwnedError {
    const { record } = owner;
    return new JobOwnedError(
      `kafkaStream: the ZooKeeper root ${this.root} is owned by ${describeProcess(record, `job "${record.appName}" on data folder ${record.dataDir}`)}: ` +
        `its owner node ${owner.node} was still there after ${Math.round(waitedMs / 1000)} s (its session timeout, ${record.sessionTimeoutMs} ms, and a margin). ` +
        'Two copies of a job must not run at once: stop that one first (a copy that died releases the root within its session timeout)',
      { root: this.root, owner: record, node: owner.node },
    );
  }

  /** Notices at once when the node goes: ZooKeeper expired the session, or someone deleted it. */
  private watch(): void {
    const unsubscribe = this.zk.onExpired((id) => {
      if (id === this.sessionId) this.lose(`${this.expired()}, which removed its owner node ${this.node}`);
    });
    let watching = true;
    this.stopWatching = () => {
      watching = false;
      unsubscribe();
    };
    const arm = (): void => {
      if (!watching) return;
      this.zk.exists(this.node!, (event) => {
        if (event.getType() === zookeeper.Event.NODE_DELETED) this.lose(`its owner node ${this.node} was removed: ${this.expired()}, or someone deleted the node`);
        else arm();
      }).then(
        (present) => present || this.lose(`its owner node ${this.node} is gone: ${this.expired()}, or someone deleted the node`),
        () => undefined, // ZooKeeper away: the writes' own check still guards
      );
    };
    arm();
  }

  private expired(): string {
    // The timeout ZooKeeper granted, which its maxSessionTimeout may have cut below the one asked for.
    const asked = this.zk.sessionTimeoutMs;
    const granted = this.granted ?? asked;
    const timeout = granted === asked ? `${granted} ms` : `${granted} ms as ZooKeeper granted it, ${asked} ms asked for: the server's maxSessionTimeout caps it`;
    return `ZooKeeper expired its session (as it does when the process is paused or cut off for longer than the session timeout, ${timeout})`;
  }

  private loss(reason: string): OwnershipLostError {
    return new OwnershipLostError(
      `the job no longer owns its ZooKeeper root ${this.root}: ${reason}. Another copy may own it now; this one stops without writing positions (start it again to take the root back once no other copy runs)`,
      { root: this.root, node: this.node, reason },
    );
  }

  private lose(reason: string): void {
    if (this.lost || this.released) return;
    if (this.sessionId !== undefined) ownedHere.delete(this.sessionId);
    this.lost = this.loss(reason);
    this.stopWatching?.();
    for (const listener of this.listeners) listener(this.lost);
  }

  /** Called once, when ownership is lost (never after release); at once if it already is. */
  onLost(listener: (error: OwnershipLostError) => void): void {
    if (this.lost) listener(this.lost);
    else this.listeners.add(listener);
  }

  /**
   * Runs `build`'s operations in one multi-operation after `check(<owner node>)`: ZooKeeper
   * applies all of them only while the node exists. A refused check means ownership is lost.
   */
  async write(what: string, build: (tx: Transaction) => void): Promise<void> {
    if (this.lost) throw this.lost;
    const node = this.node;
    if (node === undefined || this.released) throw new LifecycleError(`ZooKeeper ${what}: the job does not own ${this.root} (acquire() first)`, { root: this.root });
    try {
      await this.zk.run<void>(what, (client, done) => {
        const tx = client.transaction();
        tx.check(node, -1);
        build(tx);
        tx.commit((error) => done(error));
      });
    } catch (error) {
      // NO_NODE may be the check or another operation: the node itself says which.
      if (zooKeeperAnswer(error) === 'NO_NODE' && !(await this.zk.exists(node))) {
        this.lose(`ZooKeeper refused to ${what}: the owner node ${node} is gone: ${this.expired()}, or someone deleted the node`);
        throw this.lost!;
      }
      // ZooKeeper's answer to a multi-operation names no node: the job's root at least says where.
      if (error instanceof OffsetStoreError && zooKeeperAnswer(error) !== undefined) {
        throw new OffsetStoreError(`${error.message} (a node under the job's root ${this.root}; 'statestream inspect --zk-root ${this.root}' shows what it holds)`, { ...error.context, root: this.root }, error.cause);
      }
      throw error;
    }
  }

  /** Gives the root up: the node is deleted while ZooKeeper answers (closing the session removes it too; a copy that died leaves it to expire). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.sessionId !== undefined) ownedHere.delete(this.sessionId);
    this.stopWatching?.();
    if (this.node === undefined || this.lost || !this.zk.status().connected) return;
    const removal = this.zk.remove(this.node).catch(() => undefined);
    await Promise.race([removal, sleep(2_000)]);
  }
}

/** The current owner and the copies waiting, as ZooKeeper holds them (for `statestream inspect`). */
export async function readOwners(zk: ZooKeeperSession, root: string): Promise<{ owner: Owner | undefined; waiting: Owner[] }> {
  const reader = new ZooKeeperOwnership(zk, root, { dataDir: '', appName: '' }, false);
  const owners = await reader.list();
  return { owner: owners[0], waiting: owners.slice(1) };
}
