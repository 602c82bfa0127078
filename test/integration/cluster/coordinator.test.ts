import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { ClusterError, OwnershipLostError } from '../../../src/index.js';
import { ClusterCoordinator, type OwnedPartition } from '../../../src/cluster/coordinator.js';
import { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';
import { thisProcess } from '../../../src/storage/holder.js';
import { startZooKeeper, type ZooKeeperServer } from '../services/zookeeper.js';
import { startZooKeeperProxy, type ZooKeeperProxy } from '../services/zookeeper-proxy.js';
import { tempDir } from '../../helpers.js';
import { within } from '../../wait.js';

const SESSION_MS = 2000;

/**
 * A ZooKeeper and a proxy before it, for one describe block, and the sessions and
 * coordinators its tests make, closed after it. `zk` and `proxy` are read once the block's
 * before hook ran.
 */
function useZooKeeper(options?: Parameters<typeof startZooKeeper>[0]) {
  let server: ZooKeeperServer | undefined;
  let between: ZooKeeperProxy | undefined;
  const sessions: ZooKeeperSession[] = [];
  const coordinators: ClusterCoordinator[] = [];
  before(async () => {
    server = await startZooKeeper(options);
    between = await startZooKeeperProxy(server.port);
  });
  after(async () => {
    await Promise.all(coordinators.map((c) => c.leave().catch(() => undefined)));
    sessions.forEach((s) => s.close());
    await between?.close();
    await server?.stop();
  });
  const zk = { get connectString() { return server!.connectString; } };
  const proxy = {
    get connectString() { return between!.connectString; },
    cut: () => between!.cut(),
    restore: () => between!.restore(),
  };
  return { zk, proxy, sessions, coordinators };
}

/**
 * The coordinator of one instance on a real ZooKeeper, reached through a proxy that can cut
 * it off long enough for the server to expire the session.
 */
describe('cluster coordinator on a real ZooKeeper: partitions are taken again after what made them lost', { timeout: 120_000 }, () => {
  const { zk, proxy, sessions, coordinators } = useZooKeeper();

  /** A coordinator alone under `root`, and every assignment it announces. */
  async function alone(root: string): Promise<{ coordinator: ClusterCoordinator; announced: OwnedPartition[][]; lost: number[] }> {
    const session = new ZooKeeperSession({ connect: proxy.connectString, sessionTimeoutMs: SESSION_MS, retry: { initialDelayMs: 50, maxDelayMs: 200, maxElapsedMs: 60_000 } });
    sessions.push(session);
    const coordinator = new ClusterCoordinator(session, root, { id: 'a', dataDir: tempDir() }, { '0': 3 }, { words: 2 }, true);
    coordinators.push(coordinator);
    const announced: OwnedPartition[][] = [];
    const lost: number[] = [];
    coordinator.on('assignment', (owned) => void announced.push(owned));
    coordinator.on('lost', () => void lost.push(announced.length));
    await coordinator.join();
    await within(waitFor(() => announced.length === 1), 'the first assignment');
    for (const p of announced[0]) await coordinator.claim(p.stream, p.partition, p.epoch);
    return { coordinator, announced, lost };
  }

  async function waitFor(condition: () => boolean): Promise<void> {
    while (!condition()) await sleep(20);
  }

  it('an instance alone whose session expired is given its partitions again under new epochs, and takes them back', async () => {
    const { coordinator, announced, lost } = await alone('/expiry');
    assert.deepEqual(announced[0].map((p) => p.partition), [0, 1, 2]);
    await coordinator.checkOwned(announced[0]);

    proxy.cut();
    await sleep(SESSION_MS * 2);
    proxy.restore();
    await within(waitFor(() => lost.length === 1), 'the coordinator to notice the expiry');
    // The leader (itself) finds the same member registered again: the same partitions, each under
    // its next epoch, so what the lost session left unfinished is not taken for this owner's own.
    await within(waitFor(() => announced.length === 2), 'the assignment announced again after the rejoin');
    assert.deepEqual(announced[1], announced[0].map((p) => ({ ...p, epoch: p.epoch + 1 })), 'the same partitions, their next epochs');
    for (const p of announced[1]) await within(coordinator.claim(p.stream, p.partition, p.epoch), `partition ${p.partition} taken again`);
    await coordinator.checkOwned(announced[1]);
  });

  it('a claim that finds its own session\'s node for the same epoch takes it (a create sent again after its answer was lost)', async () => {
    const { coordinator, announced } = await alone('/own-node');
    const p = announced[0][0];
    // The node exists, made by this session for this epoch: the claim is done, not waited on.
    await within(coordinator.claim(p.stream, p.partition, p.epoch), 'a second claim of a node this session holds', { timeoutMs: 5_000 });
    await coordinator.checkOwned([p]);
    // A claim under an epoch the assignment does not give (a stale one, or one from later) is refused, and the node stays.
    await assert.rejects(within(coordinator.claim(p.stream, p.partition, p.epoch + 1), 'a claim under another epoch', { timeoutMs: 5_000 }), (e: unknown) => e instanceof OwnershipLostError && /was assigned elsewhere while this instance waited to take it/.test((e as Error).message));
    await coordinator.checkOwned([p]);
  });

  it('an instance id held by a live process on another machine with the same data folder path is refused, not taken over', async () => {
    // Two machines started with the same instanceId and the same --data-dir path (copied
    // flags, a StatefulSet): holding the folder's lock here proves nothing about that one.
    const dataDir = tempDir();
    const other = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: SESSION_MS });
    sessions.push(other);
    await other.mkdirp('/same-id/members', '/same-id');
    const elsewhere = { pid: 4242, host: 'another-machine', since: new Date().toISOString(), id: 'a', dataDir };
    await other.create('/same-id/members/a', Buffer.from(JSON.stringify(elsewhere)), zookeeper.CreateMode.EPHEMERAL);
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: SESSION_MS });
    sessions.push(session);
    const coordinator = new ClusterCoordinator(session, '/same-id', { id: 'a', dataDir }, { '0': 1 }, { words: 1 }, true);
    await assert.rejects(within(coordinator.join(), 'the join to give up', { timeoutMs: 30_000 }), (e: unknown) => e instanceof ClusterError && /instance id a is taken under \/same-id by process 4242 on host another-machine/.test((e as Error).message));
    assert.equal(JSON.parse((await other.read('/same-id/members/a'))!.toString('utf8')).host, 'another-machine', 'the other machine keeps its membership');
    // The failed start's cleanup leaves the job: it must not take the live holder's membership with it.
    await coordinator.leave();
    assert.equal(JSON.parse((await other.read('/same-id/members/a'))!.toString('utf8')).host, 'another-machine', 'the other machine is still a member after the refused one left');
  });

  it('an instance restarted under the same id takes its partitions at once under new epochs, fencing its predecessor', async () => {
    const { coordinator, announced } = await alone('/restart');
    await coordinator.checkOwned(announced[0]);
    // A crash: the process is gone, its session (and so its nodes) lives on for a while.
    // The next start on the same folder proves it gone (it holds the folder's lock) and registers anew.
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 30_000 });
    sessions.push(session);
    const dataDir = (coordinator as unknown as { me: { dataDir: string } }).me.dataDir;
    const next = new ClusterCoordinator(session, '/restart', { id: 'a', dataDir }, { '0': 3 }, { words: 2 }, true);
    coordinators.push(next);
    const owned: OwnedPartition[][] = [];
    next.on('assignment', (o) => void owned.push(o));
    // The old registration lives on (its session has not expired): only the leader's next round names the new one.
    await within(next.join(), 'the restarted instance to join', { timeoutMs: 10_000 });
    await within(waitFor(() => owned.length === 1), 'an assignment made for the new registration', { timeoutMs: 10_000 });
    // The same partitions under later epochs: one round later, or two when the leader also made
    // a round for the membership left while the registration was made again.
    assert.deepEqual(owned[0].map((p) => [p.stream, p.partition]), announced[0].map((p) => [p.stream, p.partition]));
    for (const [i, p] of owned[0].entries()) assert.ok(p.epoch > announced[0][i].epoch, `partition ${p.partition}: epoch ${p.epoch} after ${announced[0][i].epoch}`);
    // Its predecessor's owner nodes (lower epochs, same id) are removed rather than waited out.
    for (const p of owned[0]) await within(next.claim(p.stream, p.partition, p.epoch), `partition ${p.partition} taken at once`, { timeoutMs: 5_000 });
    await next.checkOwned(owned[0]);
    for (const p of owned[0]) {
      const holder = JSON.parse((await session.read(`/restart/owners/${p.stream}/${p.partition}`))!.toString('utf8')) as { instance: string; epoch: number };
      assert.deepEqual([holder.instance, holder.epoch], ['a', p.epoch], `partition ${p.partition}'s owner node is the new registration's`);
    }
  });

  it('an instance that does not lead, restarted under the same id, follows no assignment made for its predecessor: its partitions come under new epochs', async () => {
    const member = (id: string, dataDir: string) => {
      const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 30_000 });
      sessions.push(session);
      const coordinator = new ClusterCoordinator(session, '/restart-follower', { id, dataDir }, { '0': 4 }, { words: 2 }, true);
      coordinators.push(coordinator);
      const announced: OwnedPartition[][] = [];
      coordinator.on('assignment', (owned) => void announced.push(owned));
      return { coordinator, announced };
    };
    const leader = member('b', tempDir());
    await leader.coordinator.join();
    await within(waitFor(() => leader.announced.length > 0), 'the leader\'s first assignment', { timeoutMs: 10_000 });
    const dataDir = tempDir();
    const first = member('a', dataDir);
    await first.coordinator.join();
    await within(waitFor(() => (first.announced.at(-1)?.length ?? 0) > 0), 'a to be given partitions', { timeoutMs: 10_000 });
    const before = first.announced.at(-1)!;
    // Restarted on the same folder while its predecessor's session lives on: it is not the leader.
    const next = member('a', dataDir);
    await within(next.coordinator.join(), 'the restarted instance to join', { timeoutMs: 10_000 });
    await within(waitFor(() => next.announced.length > 0), 'an assignment for the new registration', { timeoutMs: 10_000 });
    for (const p of next.announced[0]) {
      const was = before.find((q) => q.partition === p.partition);
      if (was) assert.ok(p.epoch > was.epoch, `partition ${p.partition}: epoch ${p.epoch}, its predecessor's ${was.epoch}`);
    }
    assert.ok(next.announced[0].some((p) => before.some((q) => q.partition === p.partition)), 'it keeps some of its predecessor\'s partitions');
  });

  it('an assignment written by a leader of an earlier statestream (no registrations in it) is followed as it is', async () => {
    // The older leader: the lowest candidate, alive, writing assignments without incarnations.
    const older = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 30_000 });
    sessions.push(older);
    await older.mkdirp('/rolling/leader', '/rolling');
    await older.create('/rolling/leader/candidate-', Buffer.from('z'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL);
    const legacy = { generation: 4, streams: { '0': [{ owner: 'a', epoch: 3 }, { owner: 'z', epoch: 2 }] }, sources: { words: [{ owner: 'a', epoch: 1 }] } };
    await older.create('/rolling/assignment', Buffer.from(JSON.stringify(legacy)), zookeeper.CreateMode.PERSISTENT);
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: SESSION_MS });
    sessions.push(session);
    const coordinator = new ClusterCoordinator(session, '/rolling', { id: 'a', dataDir: tempDir() }, { '0': 2 }, { words: 1 }, true);
    coordinators.push(coordinator);
    const announced: OwnedPartition[][] = [];
    coordinator.on('assignment', (owned) => void announced.push(owned));
    await coordinator.join();
    await within(waitFor(() => announced.length === 1), 'the older leader\'s assignment announced', { timeoutMs: 10_000 });
    assert.deepEqual(announced[0], [{ stream: 0, partition: 0, epoch: 3 }]);
  });

  it("an instance restarted after its predecessor crashed while leading becomes leader at once: the gone predecessor's candidacy goes with its membership", async () => {
    // What a crashed leader leaves: its member node and its candidacy, alive with its session
    // for 30 s more. It named the data folder the restarted instance now holds.
    const dataDir = tempDir();
    const crashed = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 30_000 });
    sessions.push(crashed);
    await crashed.mkdirp('/crashed-leader/members', '/crashed-leader');
    await crashed.mkdirp('/crashed-leader/leader', '/crashed-leader');
    await crashed.create('/crashed-leader/members/a', Buffer.from(JSON.stringify({ ...thisProcess(), pid: 4242, id: 'a', dataDir })), zookeeper.CreateMode.EPHEMERAL);
    await crashed.create('/crashed-leader/leader/candidate-', Buffer.from('a'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL);
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: SESSION_MS });
    sessions.push(session);
    const coordinator = new ClusterCoordinator(session, '/crashed-leader', { id: 'a', dataDir }, { '0': 2 }, { words: 1 }, true);
    coordinators.push(coordinator);
    const announced: OwnedPartition[][] = [];
    coordinator.on('assignment', (owned) => void announced.push(owned));
    await coordinator.join();
    await within(waitFor(() => announced.length === 1), 'an assignment from the restarted instance, leading', { timeoutMs: 5_000 });
    assert.deepEqual(announced[0].map((p) => p.partition), [0, 1]);
    assert.equal((await session.children('/crashed-leader/leader')).length, 1, 'only its own candidacy is left');
  });

  it("a claim waiting out another owner's node gives up once the instance stops taking, rather than hold its stop", async () => {
    const { coordinator, announced } = await alone('/stop-taking');
    const p = announced[0][0];
    await coordinator.release(p.stream, p.partition);
    // Another instance's node of an earlier epoch, as a previous owner's whose session lives on for its timeout.
    const other = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 30_000 });
    sessions.push(other);
    const holder = { pid: 4242, host: 'another-machine', since: new Date().toISOString(), instance: 'b', epoch: p.epoch - 1 };
    const node = `/stop-taking/owners/${p.stream}/${p.partition}`;
    await other.create(node, Buffer.from(JSON.stringify(holder)), zookeeper.CreateMode.EPHEMERAL);
    const claim = coordinator.claim(p.stream, p.partition, p.epoch);
    await sleep(500);
    // Only this instance's own older node is taken at once: another's may belong to an owner still applying.
    assert.equal(JSON.parse((await other.read(node))!.toString('utf8')).instance, 'b', "the other instance's node is waited out, not deleted");
    coordinator.stopTaking();
    await assert.rejects(within(claim, 'the claim to give up', { timeoutMs: 3_000 }), (e: unknown) => e instanceof OwnershipLostError && /stopped while taking partition 0 of stream 0/.test((e as Error).message));
  });
});

describe('cluster coordinator on a ZooKeeper whose minimum session is longer than asked', { timeout: 120_000 }, () => {
  const { zk, proxy, sessions, coordinators } = useZooKeeper({ minSessionTimeout: 5_000 });

  it("a join waits for a gone holder of its id for the session ZooKeeper granted (5 s), not the 2 s it asked for", async () => {
    // The holder, cut off: its session ends when ZooKeeper expires it, 5 s after it last heard from it.
    const holder = new ZooKeeperSession({ connect: proxy.connectString, sessionTimeoutMs: SESSION_MS });
    sessions.push(holder);
    await holder.mkdirp('/granted/members', '/granted');
    const elsewhere = { pid: 4242, host: 'another-machine', since: new Date().toISOString(), id: 'a', dataDir: tempDir() };
    await holder.create('/granted/members/a', Buffer.from(JSON.stringify(elsewhere)), zookeeper.CreateMode.EPHEMERAL);
    proxy.cut();
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: SESSION_MS });
    sessions.push(session);
    const coordinator = new ClusterCoordinator(session, '/granted', { id: 'a', dataDir: tempDir() }, { '0': 1 }, { words: 1 }, true);
    coordinators.push(coordinator);
    const started = Date.now();
    await within(coordinator.join(), 'the join once the holder\'s session expired', { timeoutMs: 30_000 });
    assert.ok(Date.now() - started >= 3_000, `it joined once the holder's session was gone (${Date.now() - started} ms)`);
    assert.equal(JSON.parse((await session.read('/granted/members/a'))!.toString('utf8')).host, thisProcess().host, 'the member node is its own');
  });
});
