import { ZooKeeperOffsetStore, type RecordedBatch } from '../storage/zookeeper/offsets.js';
import { readOwners, type Owner } from '../storage/zookeeper/ownership.js';
import { isTransient, ZooKeeperSession } from '../storage/zookeeper/session.js';
import { OffsetStoreError } from '../errors.js';
import { CliFailure, DEFAULT_ZK_TIMEOUT_MS, type ZooKeeperTarget } from './args.js';

export interface ZooKeeperOffsets {
  root: string;
  /** Where the next batch starts, per topic-partition. */
  positions: Array<{ topic: string; partition: number; offset: number }>;
  /** The batch in flight when the job stopped, if any. */
  inFlight: RecordedBatch | undefined;
  /** The newest batch every state partition committed, as ZooKeeper records it. */
  lastBatch: number | undefined;
  /** Batch times whose ranges ZooKeeper keeps for replays after a restore. */
  history: number[];
  /** The copy of the job that owns the root (`<root>/owners`), if one runs; copies waiting to own it. */
  owner: Owner | undefined;
  waiting: Owner[];
}

/**
 * A short-lived session for one command: a tool should say ZooKeeper is unreachable within
 * seconds (--zk-timeout, 10 s by default), not wait ten minutes as a running job does. The
 * wait is a deadline on the first answer: a retry begun inside the budget would otherwise
 * run its whole connection attempt past it.
 */
export async function withZooKeeper<T>(target: ZooKeeperTarget, use: (offsets: ZooKeeperOffsetStore, session: ZooKeeperSession) => Promise<T>): Promise<T> {
  const timeoutMs = target.timeoutMs ?? DEFAULT_ZK_TIMEOUT_MS;
  const session = new ZooKeeperSession({
    connect: target.connect, digest: target.digest, sessionTimeoutMs: Math.min(5_000, timeoutMs),
    retry: { initialDelayMs: 100, maxDelayMs: 1_000, maxElapsedMs: timeoutMs },
  });
  let unanswered = false;
  const deadline = setTimeout(() => {
    unanswered = true;
    session.interrupt();
  }, timeoutMs);
  try {
    const found = await session.exists(target.root);
    clearTimeout(deadline);
    // A misspelt root reads as a job that recorded nothing: "no offsets", "nothing to replay".
    if (!found) throw await missingRoot(session, target);
    return await use(new ZooKeeperOffsetStore(session, target.root), session);
  } catch (error) {
    throw zooKeeperTrouble(error, target, timeoutMs, unanswered);
  } finally {
    clearTimeout(deadline);
    session.close();
  }
}

/** --zk-root names no node (inspect reports it apart from a ZooKeeper it cannot reach). */
export class MissingRootFailure extends CliFailure {}

/** The root names no node: says so, with the roots that its parent does hold (when it may list them). */
async function missingRoot(session: ZooKeeperSession, target: ZooKeeperTarget): Promise<CliFailure> {
  const parent = target.root.slice(0, target.root.lastIndexOf('/')) || '/';
  const siblings = await session.children(parent).then((names) => names.sort(), () => undefined);
  const under = siblings === undefined ? '' : siblings.length === 0 ? `; ${parent} holds none` : `; ${parent} holds ${siblings.slice(0, 10).map((name) => `${parent === '/' ? '' : parent}/${name}`).join(', ')}${siblings.length > 10 ? ', …' : ''}`;
  return new MissingRootFailure(`ZooKeeper at ${target.connect} has no node ${target.root}: no job keeps its offsets there (give --zk-root the job's ZooKeeper root${under})`);
}

/** ZooKeeper's failures in words an operator can act on (the session's own say which request failed, not why). */
function zooKeeperTrouble(error: unknown, target: ZooKeeperTarget, timeoutMs: number, unanswered: boolean): unknown {
  const unreachable = () =>
    new CliFailure(
      `cannot reach ZooKeeper at ${target.connect}: it did not answer for ${seconds(timeoutMs)} (is it running, and is --zookeeper host:port right?). ` +
        `The state stores can be read without it: leave out --zookeeper (${(error as Error).message})`,
    );
  if (unanswered) return unreachable();
  if (!(error instanceof OffsetStoreError)) return error;
  const cause = (error.cause as { name?: string } | undefined)?.name;
  if (cause === 'NO_AUTH') {
    return new CliFailure(`ZooKeeper at ${target.connect} refused to let this tool read ${target.root} (NO_AUTH): the job's nodes have an ACL; give its credentials with --zk-digest user:password`);
  }
  if (isTransient(error.cause) || /did not answer|no answer in time/.test(error.message)) return unreachable();
  return new CliFailure(`ZooKeeper at ${target.connect}: ${error.message}`);
}

/** A wait in words: whole seconds as "10 s", anything else in ms. */
function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Reads `<root>/offsets/<topic>/<partition>`, `<root>/batch`, `<root>/last-batch`, the history's batch times and the owner. */
export function readZooKeeperOffsets(target: ZooKeeperTarget): Promise<ZooKeeperOffsets> {
  return withZooKeeper(target, async (offsets, session) => {
    const partitions: Array<{ topic: string; partition: number }> = [];
    // Topic names are stored URI-encoded (ZooKeeperOffsetStore.path).
    for (const topic of await session.children(`${target.root}/offsets`)) {
      for (const p of await session.children(`${target.root}/offsets/${topic}`)) partitions.push({ topic: decodeURIComponent(topic), partition: Number(p) });
    }
    partitions.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
    const found = await offsets.positions(partitions);
    const positions = partitions.flatMap(({ topic, partition }) => {
      const offset = found.get(`${topic}:${partition}`);
      return offset === undefined ? [] : [{ topic, partition, offset }];
    });
    const history = (await session.children(`${target.root}/history`)).map(Number).sort((a, b) => a - b);
    return { root: target.root, positions, inFlight: await offsets.pendingBatch(), lastBatch: await offsets.lastEnded(), history, ...(await readOwners(session, target.root)) };
  });
}
