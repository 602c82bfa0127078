/**
 * A TCP proxy between a ZooKeeper client and the test's ZooKeeper server, for faults a
 * server restart cannot make: cut() keeps the client away while the server runs on, so the
 * server expires the client's session, as a network partition longer than the session
 * timeout would. It reads each connection's handshake (ZooKeeper's ConnectRequest and
 * ConnectResponse), so a test can prove which session the client asked for and what the
 * server answered: an expired session is answered with timeout 0 and session id 0.
 */
import { createServer, createConnection, type Socket } from 'node:net';
import { within } from '../../wait.js';

export interface Handshake {
  /** The session the client asked to resume, in hex; '0' asks for a new one. */
  requested: string;
  /** What the server granted: the session id in hex ('0' when it refused an expired session), and the timeout. */
  granted: string;
  timeoutMs: number;
  /** Date.now() when the answer passed the proxy. */
  at: number;
}

export interface ZooKeeperProxy {
  /** Where the client connects: '127.0.0.1:PORT'. */
  readonly connectString: string;
  /** Every handshake the server answered, in order. */
  readonly handshakes: Handshake[];
  /** Drops every connection and refuses new ones (they are closed on arrival) until restore(). */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

// Both sides frame packets with a 4-byte length. ConnectRequest: protocolVersion (4),
// lastZxidSeen (8), timeOut (4), sessionId (8), … ConnectResponse: protocolVersion (4),
// timeOut (4), sessionId (8), …
const REQUEST_SESSION_AT = 4 + 4 + 8 + 4;
const RESPONSE_TIMEOUT_AT = 4 + 4;
const RESPONSE_SESSION_AT = 4 + 4 + 4;

/** Calls `onFirst` with the first `bytes` bytes that pass through `socket` (which are forwarded as they come). */
function firstBytes(socket: Socket, bytes: number, onFirst: (head: Buffer) => void): void {
  let head = Buffer.alloc(0);
  const listener = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    if (head.length < bytes) return;
    socket.off('data', listener);
    onFirst(head);
  };
  socket.on('data', listener);
}

export async function startZooKeeperProxy(serverPort: number): Promise<ZooKeeperProxy> {
  const handshakes: Handshake[] = [];
  const open = new Set<Socket>();
  let cut = false;
  const server = createServer((client) => {
    if (cut) return void client.destroy();
    const upstream = createConnection({ host: '127.0.0.1', port: serverPort });
    open.add(client);
    open.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    let requested: string | undefined;
    firstBytes(client, REQUEST_SESSION_AT + 8, (head) => void (requested = head.readBigUInt64BE(REQUEST_SESSION_AT).toString(16)));
    firstBytes(upstream, RESPONSE_SESSION_AT + 8, (head) => {
      handshakes.push({
        requested: requested ?? '?',
        granted: head.readBigUInt64BE(RESPONSE_SESSION_AT).toString(16),
        timeoutMs: head.readInt32BE(RESPONSE_TIMEOUT_AT),
        at: Date.now(),
      });
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('zookeeper-proxy: no address');
  return {
    connectString: `127.0.0.1:${address.port}`,
    handshakes,
    cut() {
      cut = true;
      for (const socket of open) socket.destroy();
      open.clear();
    },
    restore() {
      cut = false;
    },
    async close() {
      for (const socket of open) socket.destroy();
      await within(new Promise<void>((resolve) => server.close(() => resolve())), 'the ZooKeeper proxy to close', { timeoutMs: 10_000 });
    },
  };
}
