import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { pow10 } from './common.js';
import type { Environment, Row, ScenarioResult } from './report.js';
import { BASELINE_LABELS, type BaselineName } from './report.js';

interface Point {
  x: string | number;
  series: string;
  median: number;
  min: number;
  max: number;
}

const SERIES_ORDER = ['statestream', BASELINE_LABELS.lmdb, BASELINE_LABELS.map];
const COLORS = ['#d62728', '#1f77b4', '#7f7f7f'];
const LANES = ['statestream, 1 thread', 'statestream, 2 threads', BASELINE_LABELS.lmdb, BASELINE_LABELS.map];

function points(rows: Row[], x: (row: Row) => string | number, baselines: BaselineName[] = ['map', 'lmdb']): Point[] {
  return rows.flatMap((row) => [
    { x: x(row), series: 'statestream', ...pick(row.runtime) },
    ...baselines.filter((b) => row.baselines[b]).map((b) => ({ x: x(row), series: BASELINE_LABELS[b], ...pick(row.baselines[b]!) })),
  ]);
}

function pick(s: { median: number; min: number; max: number }): { median: number; min: number; max: number } {
  return { median: s.median, min: s.min, max: s.max };
}

const color = { field: 'series', type: 'nominal', title: null, scale: { domain: SERIES_ORDER, range: COLORS } } as const;

/** A log scale's domain: the decades around the data (bars on a log scale need an explicit floor). */
function decades(data: Array<Pick<Point, 'min' | 'max' | 'median'>>): [number, number] {
  const values = data.flatMap((d) => [d.min, d.max, d.median]).filter((v) => Number.isFinite(v) && v > 0);
  return [10 ** Math.floor(Math.log10(Math.min(...values))), 10 ** Math.ceil(Math.log10(Math.max(...values)))];
}

/** Ticks at 1, 2 and 5 times each power of ten inside the domain, labelled 10k, 2M, … */
function logAxis(domain: [number, number]): object {
  const values: number[] = [];
  for (let d = domain[0]; d <= domain[1]; d *= 10) for (const m of [1, 2, 5]) if (d * m <= domain[1]) values.push(d * m);
  return { values, format: '~s' };
}

/** Grouped bars with min–max whiskers, log y. */
function bars(title: string, data: Point[], xTitle: string, yTitle: string): object {
  const x = { field: 'x', type: 'nominal', title: xTitle, sort: null, axis: { labelAngle: 0 } };
  const domain = decades(data);
  const y = { field: 'median', type: 'quantitative', title: yTitle, scale: { type: 'log', domain }, axis: logAxis(domain) };
  return {
    title, width: 300, height: 220, data: { values: data.filter((d) => d.median > 0) },
    encoding: { x, xOffset: { field: 'series', type: 'nominal', sort: SERIES_ORDER }, color },
    layer: [
      { mark: 'bar', encoding: { y, y2: { datum: domain[0] } } },
      { mark: { type: 'rule' }, encoding: { y: { field: 'min', type: 'quantitative', scale: { type: 'log', domain } }, y2: { field: 'max' }, color: { value: 'black' } } },
    ],
  };
}

/** Lines over a numeric x with min–max whiskers. */
function lines(title: string, data: Point[], xTitle: string, yTitle: string, options: { logX?: boolean; logY?: boolean; xOrdinal?: boolean } = {}): object {
  const x = options.xOrdinal
    ? { field: 'x', type: 'ordinal', title: xTitle, sort: null, axis: { labelAngle: 0 } }
    : { field: 'x', type: 'quantitative', title: xTitle, scale: { type: options.logX ? 'log' : 'linear' }, axis: { format: '~s' } };
  const domain = decades(data);
  const y = options.logY
    ? { field: 'median', type: 'quantitative', title: yTitle, scale: { type: 'log', domain }, axis: logAxis(domain) }
    : { field: 'median', type: 'quantitative', title: yTitle };
  return {
    title, width: 300, height: 220, data: { values: data },
    encoding: { x, color },
    layer: [
      { mark: { type: 'line', point: true }, encoding: { y } },
      { mark: { type: 'rule' }, encoding: { y: { field: 'min', type: 'quantitative', ...(options.logY ? { scale: { type: 'log', domain } } : {}) }, y2: { field: 'max' } } },
    ],
  };
}

/** The throughput, threads/partitions, scaling, timeout, restart and snapshot figures as one SVG (Vega-Lite, rendered headless). */
export async function renderChart(results: ScenarioResult[], env: Environment, mode: string): Promise<string> {
  const get = (name: string) => results.find((r) => r.name === name);
  const panels: object[] = [];
  const throughput = get('throughput');
  if (throughput) {
    const rows = throughput.rows.filter((r) => r.figure === 'throughput');
    panels.push(bars('1. Throughput, word count (records/s)', points(rows, (r) => r.case), 'Zipf(1.0) vocabulary', 'records/s (log)'));
  }
  const tp = get('threadsPartitions');
  if (tp) {
    // statestream per thread count (dashes), the single-threaded baselines as flat lines (same colours as elsewhere).
    const data = tp.rows.filter((r) => r.figure === 'throughput').flatMap((r) => [
      { x: String(r.details!.partitions), series: 'statestream', lane: `statestream, ${r.details!.threads} thread${r.details!.threads === 1 ? '' : 's'}`, ...pick(r.runtime) },
      ...(['lmdb', 'map'] as const).filter((b) => r.details!.threads === 1 && r.baselines[b]).map((b) => ({ x: String(r.details!.partitions), series: BASELINE_LABELS[b], lane: BASELINE_LABELS[b], ...pick(r.baselines[b]!) })),
    ]);
    const domain = decades(data);
    const y = { field: 'median', type: 'quantitative', title: 'records/s (log)', scale: { type: 'log', domain }, axis: logAxis(domain) };
    panels.push({
      title: { text: '4. Threads and partitions (records/s)', subtitle: 'statestream: solid 1 thread, dashed 2 threads' }, width: 300, height: 220, data: { values: data },
      encoding: { x: { field: 'x', type: 'ordinal', title: 'partitions', sort: null, axis: { labelAngle: 0 } }, color, detail: { field: 'lane' } },
      layer: [
        { mark: { type: 'line', point: true }, encoding: { y, strokeDash: { field: 'lane', type: 'nominal', title: null, scale: { domain: LANES, range: [[1, 0], [6, 3], [1, 0], [1, 0]] }, legend: null } } },
        { mark: { type: 'rule' }, encoding: { y: { field: 'min', type: 'quantitative', scale: { type: 'log', domain } }, y2: { field: 'max' } } },
      ],
    });
  }
  const scaling = get('scaling');
  if (scaling) {
    const rows = scaling.rows.filter((r) => r.unit === 'ms');
    panels.push(lines('2. Batch of 10^5 hot records vs state size (ms)', points(rows, (r) => r.details!.stateKeys as number), 'keys in the state', 'batch time, ms (log)', { logX: true, logY: true }));
  }
  const timeout = get('timeout');
  if (timeout) {
    panels.push(bars('3. Sweep batch vs keys expiring (ms)', points(timeout.rows, (r) => (r.details!.expired === 0 ? '0' : pow10(r.details!.expired as number))), 'keys expiring in the batch', 'batch time, ms (log)'));
  }
  const restart = get('restart');
  if (restart) {
    const rows = restart.rows.filter((r) => r.baselines.lmdb);
    panels.push(bars('5. Restart → first batch done (ms)', points(rows, (r) => r.case.replace('state ', '')), 'state', 'ms (log)'));
  }
  const snapshots = get('snapshots');
  if (snapshots) {
    // Its own two series: the same job with and without snapshots (no Map or LMDB loop here).
    const series = ['no snapshots', snapshots.subject ?? 'snapshots'];
    const short: Record<string, string> = {
      'batch processing p50': 'p50', 'batch processing p99': 'p99', 'batch processing p99, all reps pooled': 'p99 pooled',
      'batch wall p99 (gate included)': 'wall p99', 'batches during a copy: processing p99': 'p99 in copy',
    };
    const rows = snapshots.rows.filter((r) => r.baselines.none && short[r.figure]);
    const data = rows.flatMap((r) => [
      { x: short[r.figure], series: series[0], ...pick(r.baselines.none!) },
      { x: short[r.figure], series: series[1], ...pick(r.runtime) },
    ]);
    const y = { field: 'median', type: 'quantitative', title: 'batch time, ms' };
    panels.push({
      title: { text: `6. ${snapshots.title.replace(/^6\. /, '')} (ms)`, subtitle: 'batch processing time; wall includes the gate' }, width: 300, height: 220, data: { values: data },
      encoding: {
        x: { field: 'x', type: 'nominal', title: null, sort: null, axis: { labelAngle: 0 } }, xOffset: { field: 'series', type: 'nominal', sort: series },
        color: { field: 'series', type: 'nominal', title: null, scale: { domain: series, range: [COLORS[1], COLORS[0]] } },
      },
      layer: [
        { mark: 'bar', encoding: { y } },
        { mark: { type: 'rule' }, encoding: { y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' }, color: { value: 'black' } } },
      ],
    });
  }
  const rowsOfTwo: object[] = [];
  for (let i = 0; i < panels.length; i += 2) {
    rowsOfTwo.push({ hconcat: panels.slice(i, i + 2), resolve: { scale: { x: 'independent', xOffset: 'independent', y: 'independent' } } });
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `statestream bench (${mode} mode)`, subtitle: `${env.cpuModel}, ${env.cores} cores, Node ${env.node}, commit ${env.gitCommit.slice(0, 10)}${env.gitDirty ? ' (dirty)' : ''}; medians, whiskers min–max` },
    vconcat: rowsOfTwo,
    resolve: { scale: { x: 'independent', xOffset: 'independent', y: 'independent' } },
    config: { font: 'sans-serif', legend: { orient: 'bottom' }, view: { stroke: '#ddd' } },
    background: 'white',
  } as unknown as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}
