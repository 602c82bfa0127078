import { ConfigError, describeValue, isIntegerIn, unknownOption } from '../errors.js';
import type { Registry } from 'prom-client';

/** `StreamingContext({ metrics })`: Prometheus metrics on a registry, served on `/metrics` when a port is given. */
export interface MetricsOptions {
  /** Serve `/metrics` on this port (0: any free port; `endpoints()` tells which). Omit to serve nothing. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1 (loopback); give 0.0.0.0 for a Prometheus on another machine. */
  host?: string;
  /** Register on this prom-client registry (your service's own) instead of a new one. */
  registry?: Registry;
}

/** `StreamingContext({ ui })`: the status page. Off unless given. */
export interface UiOptions {
  /** 0: any free port (`endpoints()` tells which). */
  port: number;
  /** Default 127.0.0.1. Any other address needs `token`. */
  host?: string;
  /** A bearer token (16 characters or more) every request must carry; required off loopback. */
  token?: string;
}

export interface ValidMetrics {
  port: number | undefined;
  host: string;
  registry: Registry | undefined;
}

export interface ValidUi {
  port: number;
  host: string;
  token: string | undefined;
}

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|localhost)$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

function fail(message: string, option: string): never {
  throw new ConfigError(`StreamingContext: ${message}`, { option });
}

function checkKeys(value: object, option: string, known: string[]): void {
  const unknown = unknownOption(value, known);
  if (unknown !== undefined) fail(`unknown option "${option}.${unknown}" (known: ${known.join(', ')})`, `${option}.${unknown}`);
}

function port(raw: unknown, option: string): number {
  if (!isIntegerIn(raw, 0, 65535)) fail(`${option} must be an integer from 0 to 65535 (0: any free port), got ${describeValue(raw)}`, option);
  return raw;
}

function host(raw: unknown, option: string): string {
  if (raw === undefined) return '127.0.0.1';
  if (typeof raw !== 'string' || !/^[A-Za-z0-9.:_-]{1,255}$/.test(raw)) fail(`${option} must be a host name or IP address, got ${describeValue(raw)}`, option);
  return raw;
}

function object(raw: unknown, option: string, shape: string): asserts raw is Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail(`${option} must be an object like ${shape}, got ${describeValue(raw)}`, option);
}

/** Checks `metrics` when the context is made, so a bad port fails there and not at start(). */
export function validateMetricsOptions(raw: unknown): ValidMetrics | undefined {
  if (raw === undefined) return undefined;
  object(raw, 'metrics', '{ port: 9464, host: "0.0.0.0" } or { registry }');
  checkKeys(raw, 'metrics', ['port', 'host', 'registry']);
  const registry = raw.registry as Registry | undefined;
  // Duck-typed: the service may load its own copy of prom-client.
  if (registry !== undefined && (registry === null || typeof registry.registerMetric !== 'function' || typeof registry.getSingleMetric !== 'function' || typeof registry.metrics !== 'function')) {
    fail('metrics.registry must be a prom-client Registry', 'metrics.registry');
  }
  const where = host(raw.host, 'metrics.host');
  // A host says where to serve: without a port nothing would listen, and the operator would scrape nothing without a word.
  if (raw.host !== undefined && raw.port === undefined) fail(`metrics.host is ${describeValue(raw.host)} but metrics.port is not given: nothing serves /metrics without a port (0: any free one)`, 'metrics.port');
  return { port: raw.port === undefined ? undefined : port(raw.port, 'metrics.port'), host: where, registry };
}

/** Checks `ui`: a port, a host, and a token whenever the page is reachable from other machines. */
export function validateUiOptions(raw: unknown): ValidUi | undefined {
  if (raw === undefined) return undefined;
  object(raw, 'ui', '{ port: 4040 }');
  checkKeys(raw, 'ui', ['port', 'host', 'token']);
  const valid = { port: port(raw.port, 'ui.port'), host: host(raw.host, 'ui.host'), token: raw.token as string | undefined };
  if (valid.token !== undefined && (typeof valid.token !== 'string' || valid.token.length < 16 || /\s/.test(valid.token))) {
    fail('ui.token must be a string of at least 16 characters without spaces', 'ui.token');
  }
  if (!isLoopback(valid.host) && valid.token === undefined) {
    fail(`ui.host ${valid.host} is reachable from other machines: give ui.token, a bearer token every request must carry (or bind 127.0.0.1)`, 'ui.token');
  }
  return valid;
}

/** Metrics and the page are two servers: one port for both would fail only at start(), as a port in use. */
export function checkPortsApart(metrics: ValidMetrics | undefined, ui: ValidUi | undefined): void {
  const shared = metrics?.port;
  // Two addresses may each have the port (127.0.0.1 and 127.0.0.2); one that binds every address takes it from any other.
  const anywhere = (host: string) => host === '0.0.0.0' || host === '::';
  const clash = (a: string, b: string) => a === b || anywhere(a) || anywhere(b) || (isLoopback(a) && isLoopback(b) && (a === 'localhost' || b === 'localhost'));
  if (shared !== undefined && shared !== 0 && shared === ui?.port && clash(metrics!.host, ui.host)) {
    fail(`metrics.port and ui.port are both ${shared}; the two servers need ports of their own (or 0 for any free one)`, 'ui.port');
  }
}
