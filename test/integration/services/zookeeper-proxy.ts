/**
 * A TCP relay between a ZooKeeper client and the test's real ZooKeeper server, for faults a
 * server restart cannot make:
 *
 * - cut() keeps the client away while the server runs on, so the server expires the
 *   client's session, as a network partition longer than the session timeout would;
 * - loseNextReply(opcode) lets a request reach the server and be applied, and drops the
 *   connection just before the client would read the reply, as a network cut or a server
 *   failover does;
 * - holdNotifications() keeps the server's watch notifications from the client until
 *   released, as one still on its way when the client sends its next request.
 *
 * It reads ZooKeeper's framing (a 4-byte length before every packet; the first packet each
 * way is the session handshake, ConnectRequest and ConnectResponse; after it, requests
 * start with xid and opcode, replies with xid) and forwards the frames as they are. From
 * the handshakes a test can prove which session the client asked for and what the server
 * answered: an expired session is answered with timeout 0 and session id 0.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
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
  /** host:port to give clients instead of the server's. */
  readonly connectString: string;
  /** Every handshake the server answered, in order. */
  readonly handshakes: Handshake[];
  /** Drops every connection and refuses new ones (they are closed on arrival) until restore(). */
  cut(): void;
  restore(): void;
  /**
   * The next request with this opcode (14: multi, 1: create, 2: delete, 5: setData) has its
   * reply dropped, with the connection; with `pathIncludes`, the next whose path holds it
   * (not for multi, whose path is inside its operations).
   */
  loseNextReply(opcode: number, pathIncludes?: string): Promise<void>;
  /**
   * The next request with this opcode (4: getData, …) whose path holds `pathIncludes` waits in
   * the proxy, with every request after it on its connection; resolves, once it arrived, with
   * the release that sends them on.
   */
  holdNextRequest(opcode: number, pathIncludes: string): Promise<() => void>;
  /** Watch notifications wait in the proxy (replies pass) until the returned release(). */
  holdNotifications(): () => void;
  close(): Promise<void>;
}

// ConnectRequest: protocolVersion (4), lastZxidSeen (8), timeOut (4), sessionId (8), …
// ConnectResponse: protocolVersion (4), timeOut (4), sessionId (8), … (after the length).
const REQUEST_SESSION_AT = 4 + 4 + 8 + 4;
const RESPONSE_TIMEOUT_AT = 4 + 4;
const RESPONSE_SESSION_AT = 4 + 4 + 4;

/** Splits a byte stream into length-prefixed frames, calling `onFrame` with each whole frame. */
function framer(onFrame: (frame: Buffer) => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
      const length = pending.readInt32BE(0);
      onFrame(pending.subarray(0, 4 + length));
      pending = pending.subarray(4 + length);
    }
  };
}

/** The path a request names: a length-prefixed string after the frame's length, xid and opcode. */
function requestPath(frame: Buffer): string {
  if (frame.length < 16) return '';
  const length = frame.readInt32BE(12);
  return length > 0 && 16 + length <= frame.length ? frame.toString('utf8', 16, 16 + length) : '';
}

/** `target`: the server's port on 127.0.0.1, or its 'host:port'. */
export async function startZooKeeperProxy(target: number | string): Promise<ZooKeeperProxy> {
  const [host, port] = typeof target === 'number' ? ['127.0.0.1', target] : [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const handshakes: Handshake[] = [];
  let armed: { opcode: number; pathIncludes?: string; dropped: () => void } | undefined;
  let refusing = false;
  let holding: { opcode: number; pathIncludes: string; arrived: (release: () => void) => void } | undefined;
  // A notification's header has xid -1; held ones wait with the client they are for.
  let held: Array<{ client: Socket; frame: Buffer }> | undefined;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (refusing) return void client.destroy();
    const upstream = connect(port, host);
    open.add(client).add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    let requested: string | undefined;
    let clientFrames = 0;
    let serverFrames = 0;
    let watchedXid: number | undefined;
    let waiting: Buffer[] | undefined;
    client.on(
      'data',
      framer((frame) => {
        if (waiting) return void waiting.push(frame);
        if (clientFrames > 0 && holding && frame.length >= 12 && frame.readInt32BE(8) === holding.opcode && requestPath(frame).includes(holding.pathIncludes)) {
          const { arrived } = holding;
          holding = undefined;
          waiting = [frame];
          arrived(() => {
            const frames = waiting ?? [];
            waiting = undefined;
            for (const held of frames) upstream.write(held);
          });
          return;
        }
        if (clientFrames++ === 0) {
          if (frame.length >= REQUEST_SESSION_AT + 8) requested = frame.readBigUInt64BE(REQUEST_SESSION_AT).toString(16);
        } else if (armed && frame.length >= 12 && frame.readInt32BE(8) === armed.opcode && (armed.pathIncludes === undefined || requestPath(frame).includes(armed.pathIncludes))) {
          watchedXid = frame.readInt32BE(4);
        }
        upstream.write(frame);
      }),
    );
    upstream.on(
      'data',
      framer((frame) => {
        if (serverFrames++ === 0) {
          if (frame.length >= RESPONSE_SESSION_AT + 8) {
            handshakes.push({ requested: requested ?? '?', granted: frame.readBigUInt64BE(RESPONSE_SESSION_AT).toString(16), timeoutMs: frame.readInt32BE(RESPONSE_TIMEOUT_AT), at: Date.now() });
          }
        } else if (watchedXid !== undefined && frame.length >= 8 && frame.readInt32BE(4) === watchedXid) {
          const done = armed!.dropped;
          armed = undefined;
          watchedXid = undefined;
          close();
          done();
          return;
        } else if (held && frame.length >= 8 && frame.readInt32BE(4) === -1) {
          held.push({ client, frame });
          return;
        }
        client.write(frame);
      }),
    );
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
      refusing = true;
      for (const socket of open) socket.destroy();
      open.clear();
    },
    restore() {
      refusing = false;
    },
    loseNextReply(opcode, pathIncludes) {
      return new Promise((resolve) => {
        armed = { opcode, pathIncludes, dropped: resolve };
      });
    },
    holdNextRequest(opcode, pathIncludes) {
      return new Promise((arrived) => {
        holding = { opcode, pathIncludes, arrived };
      });
    },
    holdNotifications() {
      held ??= [];
      return () => {
        const frames = held ?? [];
        held = undefined;
        for (const { client, frame } of frames) if (!client.destroyed) client.write(frame);
      };
    },
    async close() {
      for (const socket of open) socket.destroy();
      await within(new Promise<void>((resolve) => server.close(() => resolve())), 'the ZooKeeper proxy to close', { timeoutMs: 10_000 });
    },
  };
}
