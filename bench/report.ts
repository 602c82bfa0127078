import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, totalmem } from 'node:os';
import type { Summary } from './stats.js';

/** 'none': the same job without the feature a scenario measures (the snapshot scenario's runs without snapshots). */
export type BaselineName = 'map' | 'lmdb' | 'raw' | 'none' | 'kafkajs' | 'kcat';

export const BASELINE_LABELS: Record<BaselineName, string> = {
  map: 'Map loop',
  lmdb: 'LMDB loop',
  raw: 'raw lmdb-js',
  none: 'no snapshots',
  kafkajs: 'kafkajs + Map',
  kcat: 'kcat',
};

/**
 * One figure of a scenario: the runtime's measurement and the same figure for each baseline
 * on the same input. Ratios are runtime ÷ baseline (medians): for a rate below 1 is slower
 * than the baseline, for a time above 1 is slower.
 */
export interface Row {
  case: string;
  figure: string;
  unit: 'records/s' | 'ms' | 'ops/s' | 'MB' | 'count';
  runtime: Summary;
  baselines: Partial<Record<BaselineName, Summary>>;
  /** Anything else worth keeping (records, batches, per-run details). */
  details?: Record<string, unknown>;
}

export interface ScenarioResult {
  name: string;
  title: string;
  /** What was run, with its parameters. */
  setup: Record<string, unknown>;
  /** What differs from the issue's figures in this mode, said plainly. */
  notes: string[];
  rows: Row[];
  seconds: number;
  /** Whose figure the third column is; default statestream. */
  subject?: string;
}

export interface Environment {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
  gitCommit: string;
  gitDirty: boolean;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export function environment(): Environment {
  const cpu = cpus()[0];
  return {
    cpuModel: cpu ? `${cpu.model}${cpu.speed ? ` @ ${cpu.speed} MHz` : ''}` : 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    gitCommit: git(['rev-parse', 'HEAD']) || 'unknown',
    gitDirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
  };
}

// ── formatting ────────────────────────────────────────────────────────────────
export function fmt(value: number, unit: Row['unit'] | ''): string {
  if (!Number.isFinite(value)) return '–';
  if (unit === 'ms' || unit === 'MB') return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toFixed(2)} M`;
  if (Math.abs(value) >= 1e3) return `${(value / 1e3).toFixed(1)} k`;
  return value.toFixed(0);
}

function cell(s: Summary | undefined, unit: Row['unit']): string {
  if (!s || !Number.isFinite(s.median)) return '–';
  return s.runs.length > 1 ? `${fmt(s.median, unit)} (${fmt(s.min, unit)}–${fmt(s.max, unit)})` : fmt(s.median, unit);
}

export function ratio(runtime: Summary, baseline: Summary | undefined): number {
  if (!baseline || !(baseline.median > 0)) return NaN;
  return runtime.median / baseline.median;
}

function ratioCell(value: number): string {
  if (!Number.isFinite(value)) return '–';
  return value >= 10 ? `${value.toFixed(0)}×` : value >= 0.1 ? `${value.toFixed(2)}×` : `${value.toPrecision(2)}×`;
}

/** A Markdown table: each figure, the runtime's median (min–max), and each baseline with runtime ÷ baseline. */
export function markdownTable(result: ScenarioResult): string {
  const used = (Object.keys(BASELINE_LABELS) as BaselineName[]).filter((b) => result.rows.some((r) => r.baselines[b]));
  const header = ['case', 'figure', `${result.subject ?? 'statestream'} median (min–max)`, ...used.flatMap((b) => [BASELINE_LABELS[b], `÷ ${BASELINE_LABELS[b]}`])];
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map((_, i) => (i < 2 ? '---' : '---:')).join(' | ')} |`];
  for (const row of result.rows) {
    const cells = [row.case, `${row.figure} (${row.unit})`, cell(row.runtime, row.unit)];
    for (const b of used) cells.push(cell(row.baselines[b], row.unit), ratioCell(ratio(row.runtime, row.baselines[b])));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export function scenarioReport(result: ScenarioResult): string {
  const parts = [`### ${result.title}`, '', markdownTable(result)];
  if (result.notes.length) parts.push('', ...result.notes.map((n) => `- ${n}`));
  if (result.seconds > 0) parts.push('', `(${result.seconds.toFixed(0)} s)`);
  return parts.join('\n');
}
