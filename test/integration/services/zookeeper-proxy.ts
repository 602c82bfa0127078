/**
 * A TCP relay in front of a real ZooKeeper that can lose one answer: the request reaches
 * the server and is applied, and the connection drops just before the client would read
 * the reply, which is what a network cut or a server failover does to a client.
 *
 * It reads ZooKeeper's framing (a 4-byte length before every packet; after the connect
 * handshake, requests start with xid and opcode, replies with xid) and forwards bytes as
 * they are.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ZooKeeperProxy {
  /** host:port to give clients instead of the server's. */
  readonly connectString: string;
  /** The next request with this opcode (14: multi, 1: create, 2: delete, 5: setData) has its reply dropped, with the connection. */
  loseNextReply(opcode: number): Promise<void>;
  close(): Promise<void>;
}

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

export async function startZooKeeperProxy(target: string): Promise<ZooKeeperProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  let armed: { opcode: number; dropped: () => void } | undefined;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, host);
    sockets.add(client).add(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', cut).on('close', cut);
    upstream.on('error', cut).on('close', cut);
    // The first frame each way is the session handshake, which has no xid.
    let clientFrames = 0;
    let serverFrames = 0;
    let watchedXid: number | undefined;
    client.on(
      'data',
      framer((frame) => {
        if (clientFrames++ > 0 && armed && frame.length >= 12 && frame.readInt32BE(8) === armed.opcode) watchedXid = frame.readInt32BE(4);
        upstream.write(frame);
      }),
    );
    upstream.on(
      'data',
      framer((frame) => {
        if (serverFrames++ > 0 && watchedXid !== undefined && frame.length >= 8 && frame.readInt32BE(4) === watchedXid) {
          const done = armed!.dropped;
          armed = undefined;
          watchedXid = undefined;
          cut();
          done();
          return;
        }
        client.write(frame);
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    connectString: `127.0.0.1:${address.port}`,
    loseNextReply(opcode) {
      return new Promise((resolve) => {
        armed = { opcode, dropped: resolve };
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
