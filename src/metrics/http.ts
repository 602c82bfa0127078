import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../errors.js';

const HOST_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EADDRNOTAVAIL']);

/** A server the context started: where it listens, and how to close it. */
export interface Listening {
  url: string;
  close(): Promise<void>;
}

/** `url`: the request's target, parsed; a target that does not parse is answered 400 before any handler. */
export type Handler = (request: IncomingMessage, response: ServerResponse, url: URL) => Promise<void> | void;

/** Headers of every answer listen gives itself, and of the status page's: nothing cached, nothing sniffed. */
export const OWN_HEADERS = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

/**
 * Listens on host:port with `handler`, which sees only GET and HEAD (both servers only read;
 * any other method is a 405) with a target that parses. A handler that throws answers 500
 * with the error's message in words (the page and curl show it), never a stack trace.
 */
export function listen(option: string, port: number, host: string, handler: Handler): Promise<Listening> {
  const server = createServer((request, response) => {
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://statestream');
    } catch {
      // `//` and the like: the client's mistake, not a failure of the job.
      response.writeHead(400, { ...OWN_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      return void response.end(`statestream: ${JSON.stringify(request.url)} is not a path this server can read\n`);
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { ...OWN_HEADERS, allow: 'GET, HEAD' });
      return void response.end();
    }
    Promise.resolve()
      .then(() => handler(request, response, url))
      .catch((error: unknown) => {
        if (response.headersSent) return void response.destroy();
        response.writeHead(500, { ...OWN_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
        response.end(`statestream: ${(error as Error)?.message ?? String(error)}\n`);
      });
  });
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      // A host that is no address of this machine (or no name at all) is the host's fault, not the port's.
      const named = HOST_ERRORS.has(error.code ?? '') ? 'host' : 'port';
      const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      reject(new ConfigError(`StreamingContext: ${option}.${named}: ${option} cannot listen on ${where}: ${error.code ?? error.message}`, { option: `${option}.${named}`, host, port }));
    });
    server.listen(port, host, () => {
      // Once listening, a server error (out of file descriptors) must not take the job down with it.
      server.on('error', (error) => process.emitWarning(`the ${option} server: ${error.message}`, { code: 'STATESTREAM_HTTP' }));
      const address = server.address() as AddressInfo;
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve({
        url: `http://${shown}:${address.port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            // Open keep-alive connections (a browser polling the page) would hold close() forever.
            server.closeAllConnections();
          }),
      });
    });
  });
}
