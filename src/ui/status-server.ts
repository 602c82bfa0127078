import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listen, OWN_HEADERS, type Listening } from '../metrics/http.js';
import { isLoopback, type ValidUi } from '../metrics/options.js';
import type { StatusModel } from './status-model.js';

const ASSETS = fileURLToPath(new URL('./assets/', import.meta.url));
// Chart.js comes from the package's own node_modules: the page works with no network.
const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: join(ASSETS, 'index.html'), type: 'text/html; charset=utf-8' },
  '/static/status.js': { file: join(ASSETS, 'status.js'), type: 'text/javascript; charset=utf-8' },
  '/static/status.css': { file: join(ASSETS, 'status.css'), type: 'text/css; charset=utf-8' },
  '/static/chart.umd.min.js': { file: CHART_JS, type: 'text/javascript; charset=utf-8' },
};

/** A cookie goes to every port of its host: each page's name carries its port, so that two jobs' pages on one host keep their own. */
const cookieName = (port: number) => `statestream_token_${port}`;

/** The host a request names, without its port or an IPv6 address's brackets. */
function hostName(header: string | undefined): string {
  const host = (header ?? '').toLowerCase();
  return host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
}

/** Compared as digests of equal length, so the time taken tells nothing of the token, not even its length. */
function same(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** A value as sent, percent-decoded; undefined when it does not decode (a malformed value is no token). */
function decoded(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function cookie(request: IncomingMessage, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decoded(v.join('='));
  }
  return undefined;
}

/** `?token=` as sent: URLSearchParams reads a `+` as a space, and `+` is common in tokens (base64). */
function queryToken(search: string): string | undefined {
  const raw = /[?&]token=([^&]*)/.exec(search)?.[1];
  return raw === undefined ? undefined : decoded(raw);
}

/**
 * The status page's server. With a token, every request carries it: as
 * `Authorization: Bearer <token>` (scripts, curl), or once as `?token=` when a person opens
 * the page, which sets an HttpOnly cookie and redirects to the address without it. Without
 * one (loopback only), a request must name a loopback host: a web page the operator visits
 * could otherwise point a name of its own at 127.0.0.1 and read the job's status from the
 * browser (DNS rebinding).
 */
export function serveStatus(options: ValidUi, model: StatusModel): Promise<Listening> {
  const files = new Map<string, Buffer>();
  const read = (file: string) => {
    if (!files.has(file)) files.set(file, readFileSync(file));
    return files.get(file)!;
  };
  return listen('ui', options.port, options.host, async (request: IncomingMessage, response: ServerResponse, url: URL) => {
    const headers = OWN_HEADERS;
    const port = request.socket.localPort ?? options.port;
    if (options.token === undefined) {
      if (!isLoopback(hostName(request.headers.host))) {
        response.writeHead(403, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
        return void response.end(`statestream: without ui.token this status page answers only to a loopback name (127.0.0.1, localhost, [::1]), not ${JSON.stringify(request.headers.host ?? '')}\n`);
      }
    } else {
      // The scheme's name is case-insensitive (RFC 9110, 11.1).
      const bearer = /^Bearer +(.+)$/i.exec(request.headers.authorization ?? '')?.[1];
      const query = queryToken(url.search);
      if (query !== undefined && same(query, options.token)) {
        url.searchParams.delete('token');
        // One leading slash: `//host/…` (from a path such as `/.//host/…`) would send the browser to another site.
        response.writeHead(303, { ...headers, location: `/${url.pathname.replace(/^\/+/, '')}${url.search}`, 'set-cookie': `${cookieName(port)}=${encodeURIComponent(options.token)}; HttpOnly; SameSite=Strict; Path=/` });
        return void response.end();
      }
      const given = bearer ?? cookie(request, cookieName(port));
      if (given === undefined || !same(given, options.token)) {
        response.writeHead(401, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="statestream"' });
        return void response.end('statestream: this status page needs its token (Authorization: Bearer <token>, or open it once with ?token=<token>)\n');
      }
    }
    if (url.pathname === '/api/status') {
      const body = JSON.stringify(await model.document());
      response.writeHead(200, { ...headers, 'content-type': 'application/json; charset=utf-8' });
      return void response.end(request.method === 'HEAD' ? undefined : body);
    }
    if (url.pathname === '/favicon.ico') {
      response.writeHead(204, headers);
      return void response.end();
    }
    const asset = STATIC[url.pathname];
    if (!asset) {
      response.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' });
      return void response.end(`statestream: no page at ${url.pathname}; the status page is at /\n`);
    }
    const body = read(asset.file);
    response.writeHead(200, { ...headers, 'content-type': asset.type, 'content-length': body.length });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
}
