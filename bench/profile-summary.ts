/**
 * Summarises V8 .cpuprofile files (from `node --cpu-prof`): self time per function, top N.
 *   node dist/bench/profile-summary.js [--top 15] file-or-dir...
 * Each file is one thread (the main thread and each worker write their own); they are
 * listed one by one, then merged.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName || '(anonymous)';
  if (!url) return name;
  const short = url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/').replace(/^.*\/dist\//, 'dist/');
  return `${name} ${short}:${lineNumber + 1}`;
}

/** Self time (µs) per function label. */
function selfTimes(profile: Profile): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const times = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    if (!node) continue;
    // timeDeltas[i] is the time before sample i; the time after it (next delta) is what it stands for.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const key = label(node);
    times.set(key, (times.get(key) ?? 0) + Math.max(0, dt));
  }
  return times;
}

function print(title: string, times: Map<string, number>, top: number): void {
  const total = [...times.values()].reduce((a, b) => a + b, 0);
  const idle = times.get('(idle)') ?? 0;
  const busy = total - idle;
  console.log(`\n## ${title}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (not idle)`);
  console.log('| self % of busy | self ms | function |\n| ---: | ---: | --- |');
  const rows = [...times.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [key, us] of rows) console.log(`| ${((us / busy) * 100).toFixed(1)} | ${(us / 1000).toFixed(0)} | \`${key}\` |`);
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
const top = Number(values.top);
const files = positionals.flatMap((p) => (statSync(p).isDirectory() ? readdirSync(p).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(p, f)) : [p]));
if (files.length === 0) {
  console.error('usage: node dist/bench/profile-summary.js [--top n] <file.cpuprofile | dir>...');
  process.exit(2);
}
const merged = new Map<string, number>();
for (const file of files.sort()) {
  const times = selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  print(basename(file), times, top);
  for (const [k, v] of times) merged.set(k, (merged.get(k) ?? 0) + v);
}
if (files.length > 1) print(`all ${files.length} threads`, merged, top);
