import type zookeeper from 'node-zookeeper-client';
import type { Transaction } from 'node-zookeeper-client';
import { LifecycleError, OffsetStoreError, OwnershipLostError } from '../../errors.js';
import type { WriteFence } from './ownership.js';
import { zooKeeperAnswer, type ZooKeeperSession } from './session.js';

/** An ACL compared by what it grants (the client's runtime field is `permission`, its types say `perms`). */
function aclKey(acl: zookeeper.ACL): string {
  const a = acl as unknown as { permission?: number; perms?: number; id: { scheme: string; id: string } };
  return `${a.id.scheme}:${a.id.id}:${a.permission ?? a.perms}`;
}

/** The records of one topic-partition a batch takes: offsets `from` (inclusive) to `until` (exclusive). */
export interface OffsetRange {
  topic: string;
  partition: number;
  from: number;
  until: number;
}

/** The batch in flight, as recorded before it runs. */
export interface RecordedBatch {
  batchTime: number;
  ranges: OffsetRange[];
}

/** The nodes a job keeps under its root (ownership.ts keeps `owners`): what its digest ACL covers. */
const OWN_NODES = ['owners', 'batch', 'last-batch', 'history', 'offsets'];
/** History entries removed per multi-op: about 60 KB of request, far below ZooKeeper's 1 MB limit. */
const HISTORY_REMOVALS = 1000;

const isOffset = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** A range as statestream writes it: a hand-edited one could otherwise read as an empty replay (NaN offsets). */
function isRange(r: unknown): r is OffsetRange {
  const range = r as Partial<OffsetRange> | null;
  return typeof range === 'object' && range !== null && typeof range.topic === 'string' && isOffset(range.partition) && isOffset(range.from) && isOffset(range.until) && range.from <= range.until;
}

/** A recorded batch as a node holds it; a node that holds anything else is named, not parsed into a TypeError later. */
function recordedBatch(path: string, text: string): RecordedBatch {
  let value: Partial<RecordedBatch> | undefined;
  try {
    value = JSON.parse(text) as Partial<RecordedBatch>;
  } catch {
    value = undefined;
  }
  if (value === null || typeof value !== 'object' || !Number.isFinite(value.batchTime) || !Array.isArray(value.ranges) || !value.ranges.every(isRange)) {
    throw new OffsetStoreError(`the batch record in ZooKeeper at ${path} holds ${JSON.stringify(text.slice(0, 60))}, not a recorded batch ({"batchTime":…,"ranges":[…]}); it was not written by statestream`, {
      path, value: text.slice(0, 60),
    });
  }
  return value as RecordedBatch;
}

/**
 * Source positions in ZooKeeper, under `<root>`:
 *
 *   <root>/offsets/<topic>/<partition>   where the next batch starts (decimal offset)
 *   <root>/batch                         the batch in flight: {"batchTime":…, "ranges":[…]}, empty when none
 *   <root>/last-batch                    the newest batch every state partition committed
 *   <root>/history/<batchTime>           that batch's ranges, kept while a snapshot may need them
 *
 * A batch's ranges are written before it runs; when every state partition has committed it,
 * the next start positions, the cleared batch node, the last batch and (while snapshots are
 * kept) its history entry are written in one multi-operation. A store restored from a
 * snapshot replays the history entries after the snapshot's batch.
 *
 * Every write goes through the job's ownership (`<root>/owners`, ownership.ts): it is a
 * multi-operation that checks the owner node first, so a copy that no longer owns the root
 * cannot write. A store made without one only reads (the CLI).
 */
export class ZooKeeperOffsetStore {
  constructor(
    private readonly zk: ZooKeeperSession,
    readonly root: string,
    private readonly fence?: WriteFence,
  ) {}

  private path(...parts: Array<string | number>): string {
    return [this.root, ...parts.map((p) => encodeURIComponent(String(p)))].join('/');
  }

  private write(what: string, build: (tx: Transaction) => void): Promise<void> {
    if (!this.fence) return Promise.reject(new LifecycleError(`ZooKeeper ${what}: this offset store only reads (it was made without the job's ownership)`, { root: this.root }));
    return this.fence.write(what, build);
  }

  private read(path: string): Promise<Buffer | undefined> {
    return this.zk.read(path);
  }

  /**
   * Creates the layout and one offset node per known partition (a multi-op can only set
   * existing nodes). With a digest, the parents above the root are left open (other jobs
   * keep their roots beside this one) and every node from the root down carries the job's
   * ACL, including nodes an earlier run created without one.
   */
  async init(partitions: Array<{ topic: string; partition: number }>): Promise<void> {
    await this.zk.mkdirp(this.path('batch'), this.root);
    await this.zk.mkdirp(this.path('last-batch'));
    await this.zk.mkdirp(this.path('history'));
    for (const { topic, partition } of partitions) await this.zk.mkdirp(this.path('offsets', topic, partition));
    if (this.zk.acls) {
      // The job's own nodes only: a root that other jobs' roots sit under (`/statestream`
      // beside `/statestream/<app>`) must not hand theirs this job's ACL.
      await this.secure(this.root, this.zk.acls, false);
      for (const name of OWN_NODES) await this.secure(`${this.root}/${name}`, this.zk.acls);
    }
  }

  /** Sets `acls` on `path` and (with `below`) every node under it that carries other ACLs (an owner node may go meanwhile). */
  private async secure(path: string, acls: zookeeper.ACL[], below = true): Promise<void> {
    const wanted = JSON.stringify(acls.map(aclKey));
    const gone = (error: unknown) => zooKeeperAnswer(error) === 'NO_NODE';
    const current = await this.zk.run<zookeeper.ACL[] | undefined>(`read the ACL of ${path}`, (client, done) => client.getACL(path, (error, found) => (gone(error) ? done(null) : done(error, found))));
    if (current === undefined) return;
    if (JSON.stringify(current.map(aclKey)) !== wanted) {
      await this.zk.run(`set the ACL of ${path}`, (client, done) => client.setACL(path, acls, -1, (error) => done(gone(error) ? null : error)));
    }
    if (below) for (const child of await this.zk.children(path)) await this.secure(`${path}/${child}`, acls);
  }

  /** Where the next batch starts, for every partition with a recorded position. */
  async positions(partitions: Array<{ topic: string; partition: number }>): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for (const { topic, partition } of partitions) {
      const path = this.path('offsets', topic, partition);
      const text = (await this.read(path))?.toString('utf8').trim() ?? '';
      if (text === '') continue;
      // Written by us, or by another client in the same layout (Kafka 0.8's /consumers/<group>/offsets): a decimal offset.
      if (!/^\d{1,19}$/.test(text) || !Number.isSafeInteger(Number(text))) {
        throw new OffsetStoreError(`the position in ZooKeeper at ${path} holds ${JSON.stringify(text.slice(0, 40))}, not an offset (a decimal number); correct it or delete the node`, { path, value: text.slice(0, 40) });
      }
      found.set(`${topic}:${partition}`, Number(text));
    }
    return found;
  }

  /** Records start positions for partitions that had none, so a restart starts from the same place. */
  async recordPositions(positions: Array<{ topic: string; partition: number; offset: number }>): Promise<void> {
    if (positions.length === 0) return;
    await this.write('record start positions', (tx) => {
      for (const p of positions) tx.setData(this.path('offsets', p.topic, p.partition), Buffer.from(String(p.offset)));
    });
  }

  async pendingBatch(): Promise<RecordedBatch | undefined> {
    const path = this.path('batch');
    const text = (await this.read(path))?.toString('utf8') ?? '';
    return text === '' ? undefined : recordedBatch(path, text);
  }

  /** Before a batch runs: its ranges. */
  async recordBatchStart(batch: RecordedBatch): Promise<void> {
    await this.write(`record batch ${batch.batchTime}`, (tx) => tx.setData(this.path('batch'), Buffer.from(JSON.stringify(batch))));
  }

  /**
   * A write whose first attempt was applied but whose answer was lost (a connection lost,
   * a session expired) is retried by the session and then meets its own work: its create
   * finds the node there, its delete finds none. That is success when what ZooKeeper holds
   * is what the write meant to leave; anything else is a conflict and stays an error. A
   * write refused because the job lost its ownership stays refused, whatever it finds.
   */
  private async unlessDone(write: Promise<void>, conflict: 'NODE_EXISTS' | 'NO_NODE', done: () => Promise<boolean>): Promise<void> {
    try {
      await write;
    } catch (error) {
      if (error instanceof OwnershipLostError || zooKeeperAnswer(error) !== conflict || !(await done())) throw error;
    }
  }

  private async holds(path: string, data: string): Promise<boolean> {
    return (await this.read(path))?.toString('utf8') === data;
  }

  /** After every state partition committed the batch: the next start positions, and no batch in flight. */
  async recordBatchEnd(batch: RecordedBatch, keepHistory: boolean): Promise<void> {
    const entry = JSON.stringify(batch);
    const write = this.write(`record end of batch ${batch.batchTime}`, (tx) => {
      for (const r of batch.ranges) tx.setData(this.path('offsets', r.topic, r.partition), Buffer.from(String(r.until)));
      tx.setData(this.path('batch'), Buffer.alloc(0));
      tx.setData(this.path('last-batch'), Buffer.from(String(batch.batchTime)));
      if (keepHistory) this.createIn(tx, this.path('history', batch.batchTime), Buffer.from(entry));
    });
    // Only the history entry's create can meet its own earlier success; the multi-op is atomic, so the rest is checked with it.
    await this.unlessDone(write, 'NODE_EXISTS', async () => {
      const applied = [
        this.holds(this.path('history', batch.batchTime), entry),
        this.holds(this.path('batch'), ''),
        this.holds(this.path('last-batch'), String(batch.batchTime)),
        ...batch.ranges.map((r) => this.holds(this.path('offsets', r.topic, r.partition), String(r.until))),
      ];
      return (await Promise.all(applied)).every(Boolean);
    });
  }

  private createIn(tx: Transaction, path: string, data: Buffer): void {
    if (this.zk.acls) tx.create(path, data, this.zk.acls);
    else tx.create(path, data);
  }

  /** The newest batch recorded as ended, if any. */
  async lastEnded(): Promise<number | undefined> {
    const path = this.path('last-batch');
    const text = (await this.read(path))?.toString('utf8') ?? '';
    if (text === '') return undefined;
    // A garbled record would read as NaN, and every comparison with it false: replays skipped without a word.
    if (!Number.isFinite(Number(text)) || text.trim() !== text) {
      throw new OffsetStoreError(`the last ended batch in ZooKeeper at ${path} holds ${JSON.stringify(text.slice(0, 60))}, not a batch time; it was not written by statestream`, { path, value: text.slice(0, 60) });
    }
    return Number(text);
  }

  private async historyTimes(): Promise<number[]> {
    return (await this.zk.children(this.path('history'))).map(Number).sort((a, b) => a - b);
  }

  /**
   * The recorded batches after `after`, oldest first; undefined when the history does not
   * reach back to `after`. The history is complete from its oldest entry on (it is only
   * ever trimmed at the old end, and dropped whole when a run does not keep it).
   */
  async historyAfter(after: number): Promise<RecordedBatch[] | undefined> {
    const times = await this.historyTimes();
    if (!times.some((t) => t <= after)) return undefined;
    const batches: RecordedBatch[] = [];
    for (const time of times.filter((t) => t > after)) {
      const path = this.path('history', time);
      const data = await this.read(path);
      // Only a snapshot's trim removes entries, and only older ones than a start reads: one gone between the listing and the read was removed by hand.
      if (data === undefined) throw new OffsetStoreError(`the batch history in ZooKeeper lost ${path} while it was read; the batches after ${after} cannot be replayed from it`, { path });
      batches.push(recordedBatch(path, data.toString('utf8')));
    }
    return batches;
  }

  /**
   * Starts the history at a batch that ended before it was kept: an entry with no ranges,
   * marking that everything after it is recorded.
   */
  async anchorHistory(batchTime: number): Promise<void> {
    if ((await this.historyTimes()).includes(batchTime)) return;
    const path = this.path('history', batchTime);
    const anchor = JSON.stringify({ batchTime, ranges: [] });
    const write = this.write(`create ${path}`, (tx) => this.createIn(tx, path, Buffer.from(anchor)));
    await this.unlessDone(write, 'NODE_EXISTS', () => this.holds(path, anchor));
  }

  /**
   * Trims the history to what a restore from a snapshot of `batchTime` (or later) needs: the
   * newest entry at or before it stays, as proof the record is complete from there.
   */
  async pruneHistory(batchTime: number): Promise<void> {
    const times = await this.historyTimes();
    const floor = times.filter((t) => t <= batchTime).at(-1);
    await this.removeHistory(floor === undefined ? [] : times.filter((t) => t < floor));
  }

  /** A run that keeps no history leaves a gap in it: what is there could not be trusted later. */
  async dropHistory(): Promise<void> {
    await this.removeHistory(await this.historyTimes());
  }

  /**
   * Oldest first, in multi-ops of HISTORY_REMOVALS each: one for a day of one-second batches
   * would pass ZooKeeper's request limit (jute.maxbuffer, 1 MB), and the server drops the
   * connection on it, again at every retry. Cut short, what stays is the newer end, complete.
   */
  private async removeHistory(old: number[]): Promise<void> {
    for (let i = 0; i < old.length; i += HISTORY_REMOVALS) {
      const chunk = old.slice(i, i + HISTORY_REMOVALS);
      const write = this.write('prune batch history', (tx) => {
        for (const t of chunk) tx.remove(this.path('history', t));
      });
      await this.unlessDone(write, 'NO_NODE', async () => (await Promise.all(chunk.map((t) => this.read(this.path('history', t))))).every((data) => data === undefined));
    }
  }
}
