import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';
import { ZooKeeperOwnership } from '../../../src/storage/zookeeper/ownership.js';
import { ownedOffsetStore } from './owned-store.js';
import { startZooKeeper, type ZooKeeperServer } from '../../integration/services/zookeeper.js';
import { startZooKeeperProxy } from '../../integration/services/zookeeper-proxy.js';
import { within } from '../../wait.js';

type Client = zookeeper.Client;

/** A plain node-zookeeper-client connection, optionally with digest credentials; fails after 20 s. */
function connect(server: ZooKeeperServer, digest?: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = zookeeper.createClient(server.connectString, { sessionTimeout: 5000 });
    const timer = setTimeout(() => reject(new Error(`no ZooKeeper session at ${server.connectString} within 20 s`)), 20_000);
    client.once('connected', () => {
      clearTimeout(timer);
      if (digest) client.addAuthInfo('digest', Buffer.from(digest));
      resolve(client);
    });
    client.connect();
  });
}

/** The error name ZooKeeper answers a call with ('OK' when it succeeds). */
function outcome(call: (done: (error: unknown) => void) => void): Promise<string> {
  return new Promise((resolve) => call((error) => resolve(error ? ((error as { name?: string }).name ?? String(error)) : 'OK')));
}

function aclOf(client: Client, path: string): Promise<Array<{ scheme: string; id: string; perms: number }>> {
  return new Promise((resolve, reject) =>
    client.getACL(path, (error, acls) => (error ? reject(error) : resolve(acls.map((a) => ({ scheme: a.id.scheme, id: a.id.id, perms: (a as unknown as { permission: number }).permission }))))),
  );
}

function tree(client: Client, path: string): Promise<string[]> {
  return new Promise((resolve, reject) =>
    client.getChildren(path, async (error, children) => {
      if (error) return reject(error);
      const below = await Promise.all(children.map((c) => tree(client, `${path}/${c}`)));
      resolve([path, ...below.flat()]);
    }),
  );
}

// Each test fails rather than hangs when a batch or a service never answers.
describe('ZooKeeper ACLs (real ZooKeeper)', { timeout: 180_000 }, () => {
  let server: ZooKeeperServer;
  before(async () => void (server = await startZooKeeper()));
  after(async () => server?.stop());

  const words = [{ topic: 'words', partition: 0 }, { topic: 'words', partition: 1 }];

  async function runJob(root: string, digest: string | undefined, batchTime = 1000): Promise<void> {
    const session = new ZooKeeperSession({ connect: server.connectString, digest });
    try {
      const offsets = await ownedOffsetStore(session, root);
      await offsets.init(words);
      await offsets.anchorHistory(0);
      await offsets.recordBatchStart({ batchTime, ranges: [{ topic: 'words', partition: 0, from: 0, until: 5 }] });
      await offsets.recordBatchEnd({ batchTime, ranges: [{ topic: 'words', partition: 0, from: 0, until: 5 }] }, true);
      await offsets.release();
    } finally {
      session.close();
    }
  }

  it('with digest, every node under the root carries the job\'s ACL: others can read the offsets, not change them', async () => {
    const root = '/statestream/acl-app';
    await runJob(root, 'app:secret');
    const stranger = await connect(server);
    const impostor = await connect(server, 'app:wrong');
    const owner = await connect(server, 'app:secret');
    try {
      const nodes = await tree(stranger, root);
      assert.ok(nodes.includes(`${root}/offsets/words/1`) && nodes.includes(`${root}/history/1000`) && nodes.includes(`${root}/history/0`), nodes.join(' '));
      const hashed = `app:${(await import('node:crypto')).createHash('sha1').update('app:secret').digest('base64')}`;
      for (const node of nodes) {
        // ZooKeeper shows the digest's hash only to a client that may administer the node.
        assert.deepEqual((await aclOf(stranger, node)).map((a) => a.scheme), ['digest', 'world'], node);
        assert.deepEqual(await aclOf(owner, node), [
          { scheme: 'digest', id: hashed, perms: zookeeper.Permission.ALL },
          { scheme: 'world', id: 'anyone', perms: zookeeper.Permission.READ },
        ], node);
      }
      const offset = `${root}/offsets/words/0`;
      const data = await new Promise<string>((resolve, reject) => stranger.getData(offset, (e, d) => (e ? reject(e) : resolve(d.toString()))));
      assert.equal(data, '5', 'monitoring without the digest reads the offsets');
      for (const client of [stranger, impostor]) {
        assert.equal(await outcome((done) => client.setData(offset, Buffer.from('0'), done)), 'NO_AUTH');
        assert.equal(await outcome((done) => client.remove(`${root}/history/1000`, done)), 'NO_AUTH');
        assert.equal(await outcome((done) => client.create(`${root}/history/2000`, done)), 'NO_AUTH');
        assert.equal(await outcome((done) => client.setACL(offset, [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))], -1, done)), 'NO_AUTH');
      }
      assert.equal(await outcome((done) => owner.setData(offset, Buffer.from('5'), done)), 'OK', 'the job\'s own credentials may');

      // The parent above the root is shared by other jobs: it stays open to them.
      assert.deepEqual(await aclOf(stranger, '/statestream'), [{ scheme: 'world', id: 'anyone', perms: zookeeper.Permission.ALL }]);
      await runJob('/statestream/other-app', 'other:password');
    } finally {
      [stranger, impostor, owner].forEach((c) => c.close());
    }
  });

  it('with digest, the root an ownership alone creates (a cluster\'s, which has no offsets to secure later) carries the job\'s ACL', async () => {
    const root = '/clusters/acl-owned';
    const session = new ZooKeeperSession({ connect: server.connectString, digest: 'app:secret' });
    const stranger = await connect(server);
    try {
      const ownership = new ZooKeeperOwnership(session, root, { dataDir: '/data/acl-owned', appName: 'acl-owned' }, true);
      await ownership.acquire();
      for (const node of [root, `${root}/owners`]) {
        assert.deepEqual((await aclOf(stranger, node)).map((a) => [a.scheme, a.perms]), [['digest', zookeeper.Permission.ALL], ['world', zookeeper.Permission.READ]], node);
      }
      assert.equal(await outcome((done) => stranger.remove(`${root}/owners`, -1, done)), 'NO_AUTH');
      await ownership.release();
    } finally {
      stranger.close();
      session.close();
    }
  });

  it('with digest, a root that another job\'s root sits under leaves that job\'s nodes as they were', async () => {
    await runJob('/nested/inner-app', undefined);
    await runJob('/nested', 'outer:secret', 3000);
    const stranger = await connect(server);
    try {
      assert.equal((await aclOf(stranger, '/nested'))[0].scheme, 'digest', 'the job\'s own root is secured');
      assert.equal((await aclOf(stranger, '/nested/offsets/words/0'))[0].scheme, 'digest');
      for (const node of await tree(stranger, '/nested/inner-app')) {
        assert.deepEqual(await aclOf(stranger, node), [{ scheme: 'world', id: 'anyone', perms: zookeeper.Permission.ALL }], node);
      }
      assert.equal(await outcome((done) => stranger.setData('/nested/inner-app/offsets/words/0', Buffer.from('5'), done)), 'OK', 'the inner job still writes its offsets');
    } finally {
      stranger.close();
    }
  });

  it('a job that starts using a digest secures the nodes an earlier run created without one', async () => {
    const root = '/statestream/late-acl';
    await runJob(root, undefined);
    const stranger = await connect(server);
    try {
      assert.equal(await outcome((done) => stranger.setData(`${root}/offsets/words/0`, Buffer.from('5'), done)), 'OK', 'open before');
      await runJob(root, 'late:secret', 2000);
      for (const node of await tree(stranger, root)) {
        assert.equal((await aclOf(stranger, node))[0].scheme, 'digest', node);
        assert.equal(await outcome((done) => stranger.setData(node, Buffer.from(''), done)), 'NO_AUTH', node);
      }
    } finally {
      stranger.close();
    }
  });

  it('with digest, a write made while the connection is cut goes through once it is back: the credentials are sent again before it counts', async () => {
    const proxy = await startZooKeeperProxy(server.connectString);
    const session = new ZooKeeperSession({ connect: proxy.connectString, digest: 'job:secret', sessionTimeoutMs: 8000, retry: { initialDelayMs: 50, maxDelayMs: 200, maxElapsedMs: 30_000 } });
    try {
      const offsets = await ownedOffsetStore(session, '/acl-outage');
      await offsets.init(words);
      await offsets.anchorHistory(0);
      const batch = { batchTime: 1000, ranges: [{ topic: 'words', partition: 0, from: 0, until: 5 }] };
      proxy.cut();
      // Made on the disconnected client: node-zookeeper-client queues it and, on reconnecting,
      // queues the credentials it re-adds after it. ZooKeeper must still check it with them.
      const started = offsets.recordBatchStart(batch);
      await sleep(1000);
      proxy.restore();
      await within(started, 'the batch start to be recorded after the cut', { timeoutMs: 30_000 });
      assert.deepEqual(await offsets.pendingBatch(), batch);
      await offsets.recordBatchEnd(batch, true);
      assert.equal(await offsets.lastEnded(), 1000);
    } finally {
      session.close();
      await proxy.close();
    }
  });
});
