import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { ConfigError, JobOwnedError, LifecycleError, OwnershipLostError } from '../../../src/index.js';
import { thisProcess } from '../../../src/storage/holder.js';
import { ZooKeeperOffsetStore } from '../../../src/storage/zookeeper/offsets.js';
import { ZooKeeperOwnership, readOwners } from '../../../src/storage/zookeeper/ownership.js';
import { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { within } from '../../wait.js';
import { connectClient, startZooKeeper, zkAnswer, type ZooKeeperServer } from '../../integration/services/zookeeper.js';
import { startZooKeeperProxy } from '../../integration/services/zookeeper-proxy.js';

/** ZooKeeper's opcode of a create request, as the test proxy matches it. */
const OP_CREATE = 1;

describe('ZooKeeper ownership of a job root (real ZooKeeper)', { timeout: 120_000 }, () => {
  let zk: ZooKeeperServer;
  let roots = 0;
  const sessions: ZooKeeperSession[] = [];

  before(async () => void (zk = await startZooKeeper()));
  after(async () => {
    sessions.forEach((s) => s.close());
    await zk?.stop();
  });

  /** The owner nodes under `root` are exactly `nodes`. */
  async function assertOwners(root: string, nodes: string[], message: string): Promise<void> {
    const lister = await connectClient(zk.connectString);
    try {
      const left = await zkAnswer<string[]>((done) => lister.getChildren(`${root}/owners`, (e, names) => done(e, names)));
      assert.deepEqual(left, nodes.map((node) => node.slice(`${root}/owners/`.length)), message);
    } finally {
      lister.close();
    }
  }

  /** A copy of a job: its own session (1 s, the server's least), owning `root` for `dataDir`. */
  function contender(root: string, dataDir: string): ZooKeeperOwnership {
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 1000 });
    sessions.push(session);
    return new ZooKeeperOwnership(session, root, { dataDir, appName: 'owned' }, true);
  }

  it('a clean release is no loss: no listener is told, and a write after it is a lifecycle error', async () => {
    const owner = contender(`/released-${++roots}`, '/data/released');
    await owner.acquire();
    let told = 0;
    owner.onLost(() => void told++);
    await owner.release();
    // The owner node's watch fires as the release removes it: that must not read as a loss.
    await sleep(700);
    assert.equal(told, 0);
    await assert.rejects(owner.write('after release', () => undefined), LifecycleError);
  });

  it('a write that fails on another node than the owner node is that write\'s failure, not a lost root', async () => {
    const root = `/other-node-${++roots}`;
    const owner = contender(root, '/data/other-node');
    await owner.acquire();
    let told = 0;
    owner.onLost(() => void told++);
    await assert.rejects(owner.write('set a node that is not there', (tx) => tx.setData(`${root}/missing`, Buffer.from('1'))), (e: unknown) => !(e instanceof OwnershipLostError));
    assert.equal(told, 0);
    await owner.write('still owned', (tx) => tx.setData(root, Buffer.from('1')));
    await owner.release();
  });

  it('a copy whose own node goes while it waits (its session expired) is told at once, and a child under owners/ that is no owner node is ignored', async () => {
    const root = `/own-node-gone-${++roots}`;
    const lister = await connectClient(zk.connectString);
    try {
      await zkAnswer<void>((done) => lister.mkdirp(`${root}/owners/readme`, (e) => done(e)));
      const holder = contender(root, '/data/holder');
      const { node } = await holder.acquire();
      const owners = await readOwners(sessions.at(-1)!, root);
      assert.deepEqual([owners.owner?.node, owners.waiting], [node, []], 'owners/readme is not counted');
      // The holder's session is 1 s: the waiter would wait about 3 s for it, unless it is told first.
      const waiting = contender(root, '/data/waiter').acquire();
      let mine: string | undefined;
      for (let i = 0; i < 50 && !mine; i++) {
        await sleep(50);
        const names = await zkAnswer<string[]>((done) => lister.getChildren(`${root}/owners`, (e, n) => done(e, n)));
        mine = names.find((n) => n !== 'readme' && `${root}/owners/${n}` !== node);
      }
      assert.ok(mine, 'the waiter made its node');
      await zkAnswer<void>((done) => lister.remove(`${root}/owners/${mine}`, -1, (e) => done(e)));
      await within(assert.rejects(waiting, OwnershipLostError), 'the waiter to be told', { timeoutMs: 2000 });
    } finally {
      lister.close();
    }
  });

  it('two sources of this process on one root through two names of the same server: the second is refused, named, and the first keeps the root', async () => {
    const root = `/owned/aliases-${++roots}`;
    const via = (connect: string) => {
      const session = new ZooKeeperSession({ connect });
      sessions.push(session);
      return new ZooKeeperOwnership(session, root, { dataDir: '/data/aliases', appName: 'owned' }, true);
    };
    const first = via(zk.connectString);
    const { node } = await first.acquire();
    const lost: OwnershipLostError[] = [];
    first.onLost((e) => void lost.push(e));
    const alias = zk.connectString.replace('127.0.0.1', 'localhost');
    assert.notEqual(alias, zk.connectString);
    await assert.rejects(via(alias).acquire(), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match((e as Error).message, /the ZooKeeper root \/owned\/aliases-\d+ is owned by another Kafka source of this process \(owner node .*\): two sources must not share a root/);
      return true;
    });
    await assertOwners(root, [node], 'the first source still owns the root, the refused one left no node');
    assert.deepEqual(lost, []);
    // Once the first lets go, the root is anyone's.
    await first.release();
    await via(alias).acquire();
  });

  it('a copy whose session ZooKeeper expired is told so, as the expiry, without writing', async () => {
    const root = `/owned/expired-${++roots}`;
    const proxy = await startZooKeeperProxy(zk.connectString);
    try {
      const session = new ZooKeeperSession({ connect: proxy.connectString, sessionTimeoutMs: 2000 });
      sessions.push(session);
      const ownership = new ZooKeeperOwnership(session, root, { dataDir: '/data/expired', appName: 'owned' }, true);
      await ownership.acquire();
      const lost = new Promise<OwnershipLostError>((resolve) => ownership.onLost(resolve));
      // Cut off past the session timeout: the server expires the session and removes the owner node.
      proxy.cut();
      await new Promise((resolve) => setTimeout(resolve, 6000));
      proxy.restore();
      const error = await within(lost, 'ownership.onLost after the expiry', { timeoutMs: 30_000 });
      assert.match(error.message, /ZooKeeper expired its session .*, which removed its owner node/);
      const told: OwnershipLostError[] = [];
      ownership.onLost((e) => void told.push(e));
      assert.deepEqual(told, [error], 'a listener added after the loss is told at once, of the same loss');
    } finally {
      await proxy.close();
    }
  });

  it('a create retried after its answer was lost leaves one owner node: the extra one the retry made is removed', async () => {
    const root = `/owned/retried-${++roots}`;
    const proxy = await startZooKeeperProxy(zk.connectString);
    try {
      const session = new ZooKeeperSession({ connect: proxy.connectString, retry: { initialDelayMs: 50, maxDelayMs: 200, maxElapsedMs: 30_000 } });
      sessions.push(session);
      const ownership = new ZooKeeperOwnership(session, root, { dataDir: '/data/retried', appName: 'owned' }, true);
      // The server makes the node, its answer is lost with the connection, and the retry makes a second.
      const lost = proxy.loseNextReply(OP_CREATE, `${root}/owners/`);
      const { node, tookOverFrom } = await within(ownership.acquire(), 'the acquire whose create was answered on the retry');
      await within(lost, 'the create reply was dropped', { timeoutMs: 1000 });
      await assertOwners(root, [node], 'only the node the acquire went on with');
      // Left in place, the extra node would be ahead of it and be taken over as another copy's.
      assert.equal(tookOverFrom, undefined, `its own extra node was not taken for another copy's: ${JSON.stringify(tookOverFrom)}`);
      assert.deepEqual((await ownership.list()).map((o) => o.node), [node]);
      await ownership.release();
    } finally {
      await proxy.close();
    }
  });

  it('a write is refused once the owner node is gone, also sent before the news of it arrived, and nothing of it is applied', async () => {
    const root = `/owned/fenced-${++roots}`;
    // Through a proxy that holds the node's deletion notice: the write is sent as if it were still owned, and ZooKeeper's check refuses it.
    const proxy = await startZooKeeperProxy(zk.connectString);
    const session = new ZooKeeperSession({ connect: proxy.connectString });
    sessions.push(session);
    const ownership = new ZooKeeperOwnership(session, root, { dataDir: '/data/a', appName: 'owned' }, true);
    const { node } = await ownership.acquire();
    const store = new ZooKeeperOffsetStore(session, root, ownership);
    await store.init([{ topic: 'words', partition: 0 }]);
    await store.recordBatchStart({ batchTime: 1000, ranges: [{ topic: 'words', partition: 0, from: 0, until: 5 }] });
    const lost = new Promise<OwnershipLostError>((resolve) => ownership.onLost(resolve));

    const release = proxy.holdNotifications();
    const other = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => other.remove(node, -1, (error) => done(error)));
    } finally {
      other.close();
    }
    try {
      await assert.rejects(store.recordBatchEnd({ batchTime: 1000, ranges: [{ topic: 'words', partition: 0, from: 0, until: 5 }] }, false), OwnershipLostError);
    } finally {
      release();
    }
    const error = await within(lost, 'ownership.onLost', { timeoutMs: 10_000 });
    assert.equal(error.code, 'ERR_OWNERSHIP_LOST');
    assert.equal(error.retriable, false);
    assert.deepEqual(await store.pendingBatch(), { batchTime: 1000, ranges: [{ topic: 'words', partition: 0, from: 0, until: 5 }] }, 'the batch end was not recorded');
    assert.equal(await store.lastEnded(), undefined);
    assert.equal((await store.positions([{ topic: 'words', partition: 0 }])).size, 0, 'no position moved');
    await assert.rejects(store.recordPositions([{ topic: 'words', partition: 0, offset: 9 }]), OwnershipLostError);
    await proxy.close();
  });

  it('a copy that may be alive is waited for: the root passes when it lets go, and a copy that stays is named after its session timeout', async () => {
    const root = `/owned/waiting-${++roots}`;
    const first = contender(root, '/data/first');
    const firstTaken = await first.acquire();

    // The first lets go half a second into the second's wait: the second owns the root then.
    const second = contender(root, '/data/second');
    setTimeout(() => void first.release(), 500);
    const secondTaken = await second.acquire();
    assert.ok(secondTaken.waitedMs >= 400, `waited ${secondTaken.waitedMs} ms`);
    assert.equal(secondTaken.tookOverFrom, undefined, 'nothing was removed: the first gave the root up');
    assert.notEqual(secondTaken.node, firstTaken.node);

    // A third copy on another folder meets a live owner (this very process) that stays. Its
    // wait of more than ten slices sets one watch on that node, not one a slice (which piled up).
    const third = contender(root, '/data/third');
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void (warning.name === 'MaxListenersExceededWarning' && warnings.push(warning));
    process.on('warning', onWarning);
    const error = await third.acquire().then(
      () => assert.fail('the third copy owns the root beside the second'),
      (e: unknown) => e,
    ).finally(() => process.off('warning', onWarning));
    assert.deepEqual(warnings.map((w) => `${w.name}: ${w.message}`), [], 'no listener leak while waiting');
    assert.ok(error instanceof JobOwnedError, String(error));
    assert.equal(error.code, 'ERR_JOB_OWNED');
    assert.match(error.message, new RegExp(`^kafkaStream: the ZooKeeper root ${root} is owned by this process \\(pid ${process.pid}, job "owned" on data folder /data/second, since [^)]+\\): its owner node ${secondTaken.node} was still there after \\d+ s`));
    assert.ok(error.message.includes(`its session timeout, ${secondTaken.record.sessionTimeoutMs} ms`), error.message);
    await assertOwners(root, [secondTaken.node], 'the refused copy removed its own node');
  });

  it('a start waiting for a live owner ends as soon as it is stopped, and removes its own node', async () => {
    const root = `/owned/stopped-${++roots}`;
    // The owner's session lasts the server's longest (10 s): the wait for it would be 12 s.
    const holderSession = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 10_000 });
    sessions.push(holderSession);
    const holder = await new ZooKeeperOwnership(holderSession, root, { dataDir: '/data/holder', appName: 'owned' }, true).acquire();
    const waiterSession = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 1000 });
    sessions.push(waiterSession);
    const started = Date.now();
    const waiting = new ZooKeeperOwnership(waiterSession, root, { dataDir: '/data/waiter', appName: 'owned' }, true).acquire();
    setTimeout(() => waiterSession.interrupt(), 300);
    await assert.rejects(waiting, (e: unknown) => e instanceof Error && /the start was stopped while it waited for another copy of the job to let go of \/owned\/stopped-/.test(e.message));
    assert.ok(Date.now() - started < 3000, `ended ${Date.now() - started} ms after the start, not after the owner's session timeout`);
    await assertOwners(root, [holder.node], 'the stopped copy removed its own node');
  });

  it('a chroot that does not exist is named as such when the start creates its nodes', async () => {
    const chroot = `/missing-chroot-${++roots}`;
    const session = new ZooKeeperSession({ connect: `${zk.connectString}${chroot}`, sessionTimeoutMs: 1000 });
    sessions.push(session);
    await assert.rejects(new ZooKeeperOwnership(session, '/statestream/job', { dataDir: '/data/a', appName: 'owned' }, true).acquire(), (e: unknown) =>
      e instanceof Error && e.message.startsWith(`ZooKeeper at ${zk.connectString}${chroot}: the chroot ${chroot} does not exist, and ZooKeeper does not create one`));
  });

  it('a lost root names the session timeout ZooKeeper granted when its maxSessionTimeout cut the one asked for', async () => {
    const root = `/owned/granted-${++roots}`;
    const session = new ZooKeeperSession({ connect: zk.connectString, sessionTimeoutMs: 30_000 });
    sessions.push(session);
    const ownership = new ZooKeeperOwnership(session, root, { dataDir: '/data/a', appName: 'owned' }, true);
    const { node, record } = await ownership.acquire();
    assert.equal(record.sessionTimeoutMs, 10_000, 'the server grants at most its maxSessionTimeout');
    const lost = new Promise<OwnershipLostError>((resolve) => ownership.onLost(resolve));
    const other = await connectClient(zk.connectString);
    try {
      await zkAnswer((done) => other.remove(node, -1, (error) => done(error)));
    } finally {
      other.close();
    }
    const error = await within(lost, 'ownership.onLost', { timeoutMs: 10_000 });
    assert.match(error.message, /the session timeout, 10000 ms as ZooKeeper granted it, 30000 ms asked for: the server's maxSessionTimeout caps it/);
  });

  it('an owner that certainly no longer runs is taken over at once: its process is gone, or it named the folder this process holds', async () => {
    const root = `/owned/gone-${++roots}`;
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const other = await connectClient(zk.connectString);
    // An owner node as a copy that ran on this machine left it, with a long session still open.
    const plant = async (at: string, record: object) => {
      await zkAnswer((done) => other.mkdirp(`${at}/owners`, (e) => done(e)));
      const data = Buffer.from(JSON.stringify({ ...thisProcess(), appName: 'owned', sessionTimeoutMs: 30_000, ...record }));
      return zkAnswer<string>((done) => other.create(`${at}/owners/owner-planted-`, data, zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, (e, path) => done(e, path)));
    };
    try {
      const gone = await plant(root, { pid: dead, dataDir: '/data/elsewhere' });
      const taken = await contender(root, '/data/mine').acquire();
      assert.equal(taken.tookOverFrom?.node, gone);
      assert.equal(taken.tookOverFrom?.reason, `process ${dead} no longer runs on ${thisProcess().host}`);
      assert.ok(taken.waitedMs < 30_000, 'it did not wait out the dead owner\'s session');

      // This process runs, but not on /data/mine: the contender holds that folder's lock.
      const root2 = `/owned/same-folder-${++roots}`;
      const stale = await plant(root2, { dataDir: '/data/mine' });
      const again = await contender(root2, '/data/mine').acquire();
      assert.equal(again.tookOverFrom?.node, stale);
      assert.match(again.tookOverFrom?.reason ?? '', /^it named the data folder \/data\/mine, whose lock this process now holds/);

      // The same folder path on another machine (or in another container's pid namespace, or on
      // a machine cloned from this one's image: same host name and namespace id, another boot)
      // is another folder: that owner may run, and is waited for and named, never removed.
      const elsewheres = [['host', { host: 'another-host' }], ['pid namespace', { pidNamespace: 'pid:[1]' }], ['boot', { boot: '00000000-0000-4000-8000-000000000000' }]] as const;
      for (const [where, elsewhere] of elsewheres) {
        const root3 = `/owned/other-${where.replace(' ', '-')}-${++roots}`;
        const remote = await plant(root3, { dataDir: '/data/mine', sessionTimeoutMs: 1, ...elsewhere });
        const refused = await contender(root3, '/data/mine').acquire().then(() => assert.fail(`the owner on another ${where} was taken over`), (e: unknown) => e);
        assert.ok(refused instanceof JobOwnedError, String(refused));
        assert.ok(refused.message.includes(`its owner node ${remote} was still there`), refused.message);
      }
    } finally {
      other.close();
    }
  });
});
