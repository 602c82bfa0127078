import type { Registry } from 'prom-client';
import { OWN_HEADERS, listen, type Listening } from './http.js';

/** Serves the registry on `/metrics` in Prometheus' text format, and nothing else. */
export function serveMetrics(port: number, host: string, registry: Registry): Promise<Listening> {
  return listen('metrics', port, host, async (request, response, url) => {
    if (url.pathname !== '/metrics') {
      response.writeHead(404, { ...OWN_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      return void response.end('statestream: metrics are at /metrics\n');
    }
    const body = await registry.metrics();
    response.writeHead(200, { ...OWN_HEADERS, 'content-type': registry.contentType });
    response.end(request.method === 'HEAD' ? undefined : body);
  });
}
