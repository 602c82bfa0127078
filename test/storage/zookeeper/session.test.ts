import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import zookeeper from 'node-zookeeper-client';
import { OffsetStoreError } from '../../../src/index.js';
import { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';
import { startZooKeeper, type ZooKeeperServer } from '../../integration/services/zookeeper.js';
import { startZooKeeperProxy, type ZooKeeperProxy } from '../../integration/services/zookeeper-proxy.js';
import { within } from '../../wait.js';

const SESSION_MS = 2000;

/** The session the request ran in, as the proxy writes it (hex, no leading zeros). */
function sessionOf(session: ZooKeeperSession): Promise<string> {
  return session.run('session id', (client, done) => done(null, BigInt(`0x${client.getSessionId().toString('hex')}`).toString(16)));
}

function read(session: ZooKeeperSession, path: string): Promise<string> {
  return session.run(`read ${path}`, (client, done) => client.getData(path, (error, data) => done(error, data?.toString())));
}

/** A read made while ZooKeeper is cut off, checked to be still waiting `ms` later. */
async function waitingRead(session: ZooKeeperSession, ms: number): Promise<{ pending: Promise<string> }> {
  const pending = read(session, '/kept');
  let settled = false;
  void pending.finally(() => (settled = true)).catch(() => undefined);
  await sleep(ms);
  assert.equal(settled, false, `the request is still waiting for ZooKeeper after ${ms} ms`);
  return { pending };
}

describe('ZooKeeperSession against a real ZooKeeper, reached through a proxy that can cut it off', { timeout: 120_000 }, () => {
  let zk: ZooKeeperServer;
  let proxy: ZooKeeperProxy;
  const sessions: ZooKeeperSession[] = [];
  const open = (retry = { initialDelayMs: 50, maxDelayMs: 200, maxElapsedMs: 60_000 }, sessionTimeoutMs = SESSION_MS) => {
    const session = new ZooKeeperSession({ connect: proxy.connectString, sessionTimeoutMs, retry });
    sessions.push(session);
    return session;
  };

  before(async () => {
    zk = await startZooKeeper();
    proxy = await startZooKeeperProxy(zk.port);
    const session = new ZooKeeperSession({ connect: zk.connectString });
    await session.run('create /kept', (client, done) => client.create('/kept', Buffer.from('value'), zookeeper.CreateMode.PERSISTENT, (error) => done(error)));
    session.close();
  });
  after(async () => {
    sessions.forEach((s) => s.close());
    await proxy?.close();
    await zk?.stop();
  });

  it('reads a node without data as empty, removes a node already gone quietly, and leaves another session\'s ephemeral node to it', async () => {
    const [a, b] = [open(), open()];
    await a.mkdirp('/nodes');
    await a.run('create /nodes/empty', (client, done) => client.create('/nodes/empty', (error) => done(error)));
    assert.deepEqual(await a.read('/nodes/empty'), Buffer.alloc(0), 'there, with nothing in it');
    assert.equal(await a.ephemeralOwnerOf('/nodes/empty'), undefined, 'a persistent node has no owner session');
    assert.equal(await a.read('/nodes/never'), undefined);
    // A node that is not there has no children, as a root no copy ever owned has no owner node.
    assert.deepEqual(await a.children('/nodes/never'), []);
    assert.deepEqual(await a.listing('/nodes/never'), { names: [], cversion: -1 });
    await a.remove('/nodes/never');
    await a.create('/nodes/a-made', Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL);
    const { sessionId } = await b.create('/nodes/b-made', Buffer.alloc(0), zookeeper.CreateMode.EPHEMERAL);
    await b.removeIfMadeBy('/nodes/a-made', sessionId);
    assert.equal(await a.exists('/nodes/a-made'), true, 'made by another session: left');
    await b.removeIfMadeBy('/nodes/b-made', sessionId);
    assert.equal(await a.exists('/nodes/b-made'), false);
    // A request after close() says so, rather than opening a connection no one will close.
    b.close();
    await assert.rejects(b.read('/kept'), (error: unknown) => error instanceof OffsetStoreError && error.message === 'the ZooKeeper session is closed');
  });

  it('a request made while ZooKeeper is unreachable waits, and goes through once it is back', async () => {
    // A session well past the 700 ms cut: a stall of the JVM or of this process while the client
    // reconnects must not expire it.
    const session = open(undefined, 3 * SESSION_MS);
    const first = await sessionOf(session);
    proxy.cut();
    const { pending } = await waitingRead(session, 700);
    proxy.restore();
    assert.equal(await within(pending, 'the waiting request to go through'), 'value');
    assert.equal(await sessionOf(session), first, 'back within the session timeout: the same session');
  });

  it('an expired session is replaced by a new one, and requests go on', async () => {
    const session = open();
    const first = await sessionOf(session);
    proxy.cut();
    // Longer than the session timeout: the server expires the session while the client is away.
    await sleep(SESSION_MS * 2);
    const since = proxy.handshakes.length;
    proxy.restore();
    assert.equal(await within(read(session, '/kept'), 'a request after the session expired'), 'value');
    const renewed = await sessionOf(session);
    assert.notEqual(renewed, first);
    const answers = proxy.handshakes.slice(since);
    assert.ok(answers.some((h) => h.requested === first && h.timeoutMs === 0 && h.granted === '0'), `the server refused the expired session: ${JSON.stringify(answers)}`);
    assert.ok(answers.some((h) => h.requested === '0' && h.granted === renewed), `and granted a new one: ${JSON.stringify(answers)}`);
  });

  it('a request answered CONNECTION_LOSS, OPERATION_TIMEOUT or SESSION_EXPIRED, or whose answer never comes, is tried again; one answered NO_NODE fails at once', async () => {
    const session = open();
    const codes = zookeeper.Exception as unknown as { create(code: number): Error } & Record<string, number>;
    for (const name of ['CONNECTION_LOSS', 'OPERATION_TIMEOUT', 'SESSION_EXPIRED']) {
      let attempts = 0;
      const value = await within(session.run<string>(`read after ${name}`, (client, done) => {
        attempts += 1;
        // The client library's own exception, as it reports a request that met this answer.
        if (attempts === 1) done(codes.create(codes[name]));
        else client.getData('/kept', (error, data) => done(error, data?.toString()));
      }), `the read after ${name}`);
      assert.deepEqual([value, attempts], ['value', 2], name);
    }

    // An answer lost on the way: after twice the session timeout the request is sent again.
    let attempts = 0;
    const value = await within(session.run<string>('read whose first answer is lost', (client, done) => {
      attempts += 1;
      if (attempts > 1) client.getData('/kept', (error, data) => done(error, data?.toString()));
    }), 'the read whose first answer was lost');
    assert.deepEqual([value, attempts], ['value', 2]);

    attempts = 0;
    await assert.rejects(session.run('read /missing', (client, done) => {
      attempts += 1;
      client.getData('/missing', (error, data) => done(error, data));
    }), (e: unknown) => e instanceof OffsetStoreError && /ZooKeeper read \/missing failed: .*NO_NODE/.test(e.message));
    assert.equal(attempts, 1, 'NO_NODE is an answer, not an outage: not tried again');
  });

  it('gives up after the policy\'s maxElapsedMs with a retriable OffsetStoreError naming the request', async () => {
    const session = open({ initialDelayMs: 50, maxDelayMs: 200, maxElapsedMs: 1500 });
    await sessionOf(session);
    proxy.cut();
    try {
      await within(
        assert.rejects(read(session, '/kept'), (e: unknown) => e instanceof OffsetStoreError && e.retriable && /ZooKeeper read \/kept/.test(e.message)),
        'the request to give up',
      );
    } finally {
      proxy.restore();
    }
  });

  it('interrupt() ends a request waiting for an unreachable ZooKeeper at once', async () => {
    const session = open();
    await sessionOf(session);
    proxy.cut();
    try {
      const { pending } = await waitingRead(session, 500);
      session.interrupt();
      // Its policy would wait up to a minute.
      await within(assert.rejects(pending, (e: unknown) => e instanceof OffsetStoreError && /ZooKeeper read \/kept/.test(e.message)), 'the interrupted request to end', { timeoutMs: 10_000 });
    } finally {
      proxy.restore();
    }
  });

  it('a request begun after interrupt() fails at once while ZooKeeper is unreachable (a batch\'s last write during a stop)', async () => {
    const session = open(undefined, 4000);
    await sessionOf(session);
    proxy.cut();
    try {
      const { pending } = await waitingRead(session, 500);
      session.interrupt();
      await assert.rejects(pending);
      // Without the interrupt it would wait its attempt's 8 s, then the retry policy's minute.
      await within(assert.rejects(read(session, '/kept'), (e: unknown) => e instanceof OffsetStoreError && /ZooKeeper read \/kept: interrupted while ZooKeeper was not answering/.test(e.message)), 'the request begun after the interrupt to end', { timeoutMs: 3000 });
    } finally {
      proxy.restore();
    }
  });
});
