import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** One sample line of Prometheus' text format: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Fetches a URL with curl (a client we did not write), failing on any HTTP error, with a deadline. */
export async function curl(url: string, headers: string[] = []): Promise<string> {
  const { stdout } = await execFileP('curl', ['--silent', '--show-error', '--fail', '--max-time', '20', ...headers.flatMap((h) => ['-H', h]), url], { maxBuffer: 16 << 20 });
  return stdout;
}

/** Parses the text exposition format (what Prometheus reads). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

export async function scrape(url: string): Promise<Sample[]> {
  return parseSamples(await curl(url));
}

/** The one sample of `name` whose labels include `labels`; fails naming what is missing. */
export function sample(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}: ${JSON.stringify(found)}`);
  return found[0].value;
}

/** Every sample of `name`, as `label value → sample value` for one label. */
export function byLabel(samples: Sample[], name: string, label: string): Map<string, number> {
  return new Map(samples.filter((s) => s.name === name).map((s) => [s.labels[label], s.value]));
}
