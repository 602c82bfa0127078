import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import zookeeper from 'node-zookeeper-client';
import { ClusterError, OwnershipLostError } from '../errors.js';
import { describeProcess, isGone, parseIdentity, sameProcessSpace, thisProcess, type ProcessIdentity } from '../storage/holder.js';
import { ephemeralOwnerIdOf, sessionIdOf, zooKeeperAnswer, type ZooKeeperSession } from '../storage/zookeeper/session.js';
import { nextClusterAssignment, ownedBy, sameAssignment, type Assignment, type PartitionRef } from './assignment.js';

/** An instance of the job, as its membership node records it. */
export interface ClusterMember extends ProcessIdentity {
  id: string;
  dataDir: string;
  /** New at each registration (a start, or a rejoin after the session expired): the assignment names it. */
  incarnation?: string;
}

/** A partition this instance owns, with the epoch it owns it under and its owner node (the fence of its writes). */
export interface OwnedPartition extends PartitionRef {
  epoch: number;
}

export interface CoordinatorEvents {
  /** The assignment changed: the partitions this instance should own now. */
  assignment: [owned: OwnedPartition[], assignment: Assignment];
  /** ZooKeeper expired this instance's session: every partition it owned is lost, at once. */
  lost: [error: OwnershipLostError];
}

/** What an owner node holds: who owns the partition, under which epoch, and how far it got. */
export interface OwnerNodeRecord extends ProcessIdentity {
  instance: string;
  epoch: number;
  /** As of the last batch committed: the next repartition offset, the changelog offset of its batch end, and when. */
  progress?: PartitionProgress;
}

export interface PartitionProgress {
  position: number;
  changelogOffset: number;
  at: number;
}

/** The ZooKeeper session that made this instance's owner nodes is gone (replaced by a new one). */
class SessionReplaced extends Error {
  constructor() {
    super('the session that made the owner nodes expired');
  }
}

/** How often membership, the leader and the assignment are read. */
const POLL_MS = 200;

/**
 * Membership, leadership and the assignment of state partitions, in ZooKeeper under the
 * job's cluster root:
 *
 *   members/<id>              ephemeral: who each live instance is
 *   leader/candidate-<seq>    ephemeral sequential: the lowest leads
 *   assignment                the owner and epoch of every partition, written by the leader
 *   owners/<stream>/<part>    ephemeral: created by an owner once it took the partition
 *
 * The leader writes a new assignment whenever the members change (sticky and balanced, see
 * assignment.ts), with a versioned write so that two leaders of a moment cannot both win.
 * An owner's node is its fence: every batch checks it (checkOwned), so an instance whose
 * session expired commits nothing more to any partition.
 */
export class ClusterCoordinator extends EventEmitter<CoordinatorEvents> {
  private current: Assignment | undefined;
  private version = -1;
  private membersNow: ClusterMember[] = [];
  /** The members node's cversion when membersNow was read: members' records never change, so the same children need no second read. */
  private membersVersion: number | undefined;
  private candidate: string | undefined;
  private polling: Promise<void> | undefined;
  private closed = false;
  /** The instance stops: a claim waiting for a previous owner's node gives up rather than hold the stop. */
  private stopping = false;
  /** Per partition this instance owns: its owner node and what the node says. */
  private readonly ownerNodes = new Map<string, { node: string; record: OwnerNodeRecord; session: string }>();
  private failure: Error | undefined;
  /** The session expired: membership and candidacy went with it and are made again on the new one. */
  private rejoin = false;
  /** This registration's: the assignment must name it before this instance takes partitions from it. */
  private incarnation: string | undefined;
  /** Registered on the current session (false from an expiry until the rejoin's registration is made). */
  private registered = false;
  /** The session that made members/<id>: only that node is this instance's to remove. */
  private memberSession: string | undefined;

  constructor(
    private readonly zk: ZooKeeperSession,
    readonly root: string,
    readonly me: Omit<ClusterMember, keyof ProcessIdentity>,
    /** Partitions per state stream. */
    private readonly layout: Record<string, number>,
    /** Partitions per source topic, shared out to the instances' stage 1. */
    private readonly sourceLayout: Record<string, number>,
    /** Whether this process holds the data folder `me.dataDir` names: a member that named it on this machine runs no more. */
    private readonly holdsDataDir: boolean,
  ) {
    super();
    zk.onExpired(() => this.expired());
  }

  private path(...parts: Array<string | number>): string {
    return [this.root, ...parts.map(String)].join('/');
  }

  /** Joins the job: registers, stands for leader, and starts following the assignment. */
  async join(): Promise<void> {
    await this.zk.mkdirp(this.path('members'), this.root);
    await this.zk.mkdirp(this.path('leader'), this.root);
    await this.zk.mkdirp(this.path('owners'), this.root);
    await this.register();
    this.polling = this.poll();
  }

  private record(): ClusterMember {
    return { ...thisProcess(), ...this.me, incarnation: this.incarnation };
  }

  /**
   * Creates members/<id>. An instance of that id may still be registered: one that certainly
   * no longer runs (gone from this machine, or it named the data folder this process holds)
   * is removed; any other is waited for up to a session timeout, then the join fails naming it.
   */
  private async register(): Promise<void> {
    const node = this.path('members', this.me.id);
    // The server may grant a longer session than asked (its minimum): a holder gone with its session is gone within the granted time.
    const deadline = Date.now() + Math.max(this.zk.sessionTimeoutMs, this.zk.negotiatedTimeoutMs ?? 0) + 2_000;
    this.incarnation = randomUUID();
    this.memberSession = undefined;
    this.registered = false;
    for (;;) {
      const made = await this.create(node, this.record(), zookeeper.CreateMode.EPHEMERAL);
      if (made) {
        this.memberSession = made;
        break;
      }
      const holder = await this.read<ClusterMember>(node);
      if (!holder) continue;
      // The same folder path on another machine (copied flags, a StatefulSet) is another folder: only on this one does holding its lock prove the holder gone.
      if (isGone(holder) || (this.holdsDataDir && holder.dataDir === this.me.dataDir && sameProcessSpace(holder))) {
        const session = await this.zk.ephemeralOwnerOf(node);
        await this.zk.remove(node);
        // Its candidacy too: a gone leader's would keep every instance leaderless until its session expired.
        if (session) for (const name of await this.zk.children(this.path('leader'))) await this.zk.removeIfMadeBy(this.path('leader', name), session);
        continue;
      }
      if (Date.now() > deadline) {
        throw new ClusterError(`cluster: instance id ${this.me.id} is taken under ${this.root} by ${describeProcess(holder, `data folder ${holder.dataDir}`)}; give each instance an instanceId of its own`, {
          root: this.root, instanceId: this.me.id,
        });
      }
      await sleep(POLL_MS);
    }
    this.candidate = (await this.zk.create(this.path('leader', 'candidate-'), Buffer.from(this.me.id), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL)).path;
    this.registered = true;
  }

  /** Creates a node; resolves with the id of the session that made it (an ephemeral node lives as long as that session), or false if it exists. */
  private async create(path: string, record: unknown, mode: number): Promise<string | false> {
    try {
      return (await this.zk.create(path, Buffer.from(JSON.stringify(record)), mode)).sessionId;
    } catch (error) {
      if (zooKeeperAnswer(error) === 'NODE_EXISTS') return false;
      throw error;
    }
  }

  private async read<T extends ProcessIdentity>(path: string): Promise<(T & { raw: string }) | undefined> {
    const data = await this.zk.read(path);
    if (!data) return undefined;
    const raw = data.toString('utf8');
    const parsed = parseIdentity<T>(raw);
    return parsed ? { ...parsed, raw } : undefined;
  }

  private async poll(): Promise<void> {
    while (!this.closed) {
      try {
        await this.step();
      } catch (error) {
        if (this.closed) return;
        this.failure = error as Error;
      }
      await sleep(POLL_MS);
    }
  }

  /** One round: read the members; lead if this instance is the lowest candidate; follow the assignment. */
  private async step(): Promise<void> {
    if (this.rejoin) {
      this.rejoin = false;
      await this.register();
    }
    const listing = await this.zk.listing(this.path('members'));
    if (listing.cversion !== this.membersVersion || listing.cversion < 0) {
      const members: ClusterMember[] = [];
      for (const id of listing.names.sort()) {
        const m = await this.read<ClusterMember>(this.path('members', id));
        if (m) members.push({ ...m, id });
      }
      this.membersNow = members;
      this.membersVersion = listing.cversion;
    }
    const members = this.membersNow;
    const candidates = (await this.zk.children(this.path('leader'))).sort((a, b) => Number(a.slice(a.lastIndexOf('-') + 1)) - Number(b.slice(b.lastIndexOf('-') + 1)));
    const incarnations = Object.fromEntries(members.flatMap((m) => (m.incarnation === undefined ? [] : [[m.id, m.incarnation]])));
    const leading = this.candidate !== undefined && candidates[0] === this.candidate.slice(this.candidate.lastIndexOf('/') + 1);
    const stat = await this.zk.run<{ data: Buffer | undefined; version: number }>(`read ${this.path('assignment')}`, (client, done) =>
      client.getData(this.path('assignment'), (error, data, s) => (zooKeeperAnswer(error) === 'NO_NODE' ? done(null, { data: undefined, version: -1 }) : done(error, { data, version: s?.version ?? -1 }))),
    );
    let assignment = stat.data ? (JSON.parse(stat.data.toString('utf8')) as Assignment) : undefined;
    let version = stat.version;
    if (leading) {
      const next = nextClusterAssignment(assignment, members.map((m) => m.id), this.layout, this.sourceLayout, incarnations);
      if (!sameAssignment(assignment, next)) {
        const data = Buffer.from(JSON.stringify(next));
        try {
          if (version < 0) {
            // Another leader of a moment created it first: the next round reads its assignment.
            if ((await this.create(this.path('assignment'), next, zookeeper.CreateMode.PERSISTENT)) === false) return;
          } else await this.zk.run(`write ${this.path('assignment')}`, (client, done) => client.setData(this.path('assignment'), data, version, (error, s) => done(error, s)));
          assignment = next;
          version = version + 1;
        } catch (error) {
          // Another leader of a moment wrote first: the next round reads its assignment.
          if (zooKeeperAnswer(error) !== 'BAD_VERSION') throw error;
        }
      }
    }
    // An assignment made before this registration may give this instance its predecessor's epochs: wait for the leader's next.
    // One with no registrations at all comes from a leader of an earlier statestream (a rolling upgrade): taken as it is.
    const forMe = this.registered && (assignment?.incarnations === undefined || assignment.incarnations[this.me.id] === this.incarnation);
    if (assignment && forMe && (version !== this.version || !sameAssignment(this.current, assignment))) {
      this.current = assignment;
      this.version = version;
      this.emit('assignment', ownedBy(assignment, this.me.id), assignment);
    }
  }

  /** The live instances, as last read. */
  members(): ClusterMember[] {
    return [...this.membersNow];
  }

  assignment(): Assignment | undefined {
    return this.current;
  }

  /** The instance that owns a state partition, per the assignment (undefined while none does). */
  ownerOf(stream: number, partition: number): string | undefined {
    return this.current?.streams[stream]?.[partition]?.owner;
  }

  /**
   * Takes a partition the assignment gave this instance: waits for the previous owner's node
   * to go (a clean handoff removes it at once; a dead owner's goes with its session), then
   * creates it with this instance's id and epoch. Fails if the assignment moves the partition
   * elsewhere meanwhile.
   */
  async claim(stream: number, partition: number, epoch: number): Promise<void> {
    await this.zk.mkdirp(this.path('owners', stream), this.root);
    const node = this.path('owners', stream, partition);
    const record: OwnerNodeRecord = { ...thisProcess(), instance: this.me.id, epoch };
    let session: string | false = false;
    for (;;) {
      if (this.closed || this.stopping) throw new OwnershipLostError(`cluster: stopped while taking partition ${partition} of stream ${stream}`, { stream, partition });
      const mine = this.current?.streams[stream]?.[partition];
      if (mine?.owner !== this.me.id || mine.epoch !== epoch) {
        throw new OwnershipLostError(`cluster: partition ${partition} of stream ${stream} was assigned elsewhere while this instance waited to take it`, { stream, partition, epoch });
      }
      session = await this.create(node, record, zookeeper.CreateMode.EPHEMERAL);
      if (session) break;
      // This session's own node for this epoch is this claim's: a create whose answer was lost
      // and that was sent again, or a node a lost ownership left (it is dropped without a release).
      session = await this.heldBySession(node, epoch);
      if (session) break;
      const holder = await this.read<OwnerNodeRecord>(node);
      if (holder && holder.instance === this.me.id && holder.epoch < epoch) await this.zk.remove(node);
      else await sleep(POLL_MS);
    }
    this.ownerNodes.set(`${stream}:${partition}`, { node, record, session });
  }

  /** The current session's id if the owner node at `node` is this instance's for `epoch` and was made by the current session; false otherwise. */
  private heldBySession(node: string, epoch: number): Promise<string | false> {
    return this.zk.run<string | false>(`read ${node}`, (client, done) =>
      client.getData(node, (error, data, stat) => {
        if (error) return done(zooKeeperAnswer(error) === 'NO_NODE' ? null : error, false);
        const holder = parseIdentity<OwnerNodeRecord>(data?.toString('utf8') ?? '');
        const session = sessionIdOf(client);
        const ours = holder?.instance === this.me.id && holder.epoch === epoch && ephemeralOwnerIdOf(stat) === session;
        done(null, ours ? session : false);
      }),
    );
  }

  /**
   * Gives a partition up: its owner node goes at once, so the next owner need not wait for a
   * session to expire. Only the node this instance's session made is removed (by its version): after an
   * expired session the node at that path may be another owner's.
   */
  async release(stream: number, partition: number): Promise<void> {
    const owned = this.ownerNodes.get(`${stream}:${partition}`);
    if (!owned) return;
    this.ownerNodes.delete(`${stream}:${partition}`);
    await this.zk.removeIfMadeBy(owned.node, owned.session).catch(() => undefined);
  }

  /** The partitions the current assignment gives this instance. */
  assignedToMe(): OwnedPartition[] {
    return this.current ? ownedBy(this.current, this.me.id) : [];
  }

  /**
   * Checks, in one multi-operation, that this instance still holds the owner nodes of the
   * partitions given: a session that expired took them with it. Throws OwnershipLostError.
   * Resolves with a lease: the performance.now() until which no other instance can have
   * taken them. ZooKeeper expires a session no sooner than its timeout after it last heard
   * from it, and it heard this check; two thirds of the timeout leave room for clock drift.
   * A partition given with its progress has it written into its owner node by the same
   * operation (a write to a node that is gone fails as a check does), for `inspect`.
   */
  async checkOwned(partitions: Array<PartitionRef & { progress?: Omit<PartitionProgress, 'at'> }>): Promise<number> {
    const leaseUntil = performance.now() + (this.zk.grantedTimeoutMs * 2) / 3;
    const nodes = partitions.map((p) => {
      const owned = this.ownerNodes.get(`${p.stream}:${p.partition}`);
      if (!owned) throw new OwnershipLostError(`cluster: this instance does not own partition ${p.partition} of stream ${p.stream}`, { stream: p.stream, partition: p.partition });
      return { ...owned, progress: p.progress };
    });
    if (nodes.length === 0) return leaseUntil;
    try {
      await this.zk.run('check the owner nodes', (client, done) => {
        // A node at the path is this instance's only while the session that made it lives: after
        // an expiry (noticed or not), the path may hold another owner's node, which a check passes.
        if (nodes.some((n) => n.session !== sessionIdOf(client))) return done(new SessionReplaced());
        const tx = client.transaction();
        for (const { node, record, progress } of nodes) {
          if (progress) tx.setData(node, Buffer.from(JSON.stringify({ ...record, progress: { ...progress, at: Date.now() } })), -1);
          else tx.check(node, -1);
        }
        tx.commit((error) => done(error));
      });
    } catch (error) {
      const lost = new OwnershipLostError(
        `cluster: instance ${this.me.id} no longer owns partitions it applied (${zooKeeperAnswer(error) ?? (error as Error).message}: its ZooKeeper session expired, or they moved); it commits nothing more to them`,
        { instance: this.me.id, partitions },
      );
      // Its membership went with the session too: lose everything and join again.
      if (error instanceof SessionReplaced) this.expired();
      else {
        // Whatever the assignment still gives this instance is taken again once the next round announces it.
        this.version = -1;
        this.emit('lost', lost);
      }
      throw lost;
    }
    return leaseUntil;
  }

  private expired(): void {
    if (this.closed) return;
    const lost = new OwnershipLostError(`cluster: ZooKeeper expired the session of instance ${this.me.id}: its partitions and membership are gone`, { instance: this.me.id });
    this.ownerNodes.clear();
    this.rejoin = true;
    // A round under way must not announce the assignment of the lost registration, and a claim
    // under way must not finish under its epochs: the next assignment names the new registration.
    this.registered = false;
    this.current = undefined;
    // The round after the rejoin announces the assignment again, even unchanged (one
    // instance alone, or an expiry the leader never saw as a member leaving): only an
    // announcement takes the lost partitions again.
    this.version = -1;
    this.emit('lost', lost);
  }

  /** A failure of the background rounds (ZooKeeper refused something), if any. */
  get problem(): Error | undefined {
    return this.failure;
  }

  /** The instance is stopping: takes under way give up (their partitions go to the others), and none begins. */
  stopTaking(): void {
    this.stopping = true;
  }

  /** Leaves the job: owner nodes, candidacy and membership go at once. */
  async leave(): Promise<void> {
    this.closed = true;
    await this.polling;
    // Only nodes this instance's sessions made: after an expiry, or a start refused because
    // the id is taken, the node at the path is another instance's, which must stay.
    for (const { node, session } of this.ownerNodes.values()) await this.zk.removeIfMadeBy(node, session).catch(() => undefined);
    this.ownerNodes.clear();
    if (this.candidate) await this.zk.remove(this.candidate).catch(() => undefined);
    if (this.memberSession) await this.zk.removeIfMadeBy(this.path('members', this.me.id), this.memberSession).catch(() => undefined);
  }
}
