// The status page: polls /api/status and draws Spark's Streaming-tab charts with Chart.js.
// Plain browser JavaScript, served as is; every text from the job goes in through textContent.
/* global Chart */
'use strict';

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') node.textContent = v;
    else if (k === 'className') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

function ms(value) {
  if (value === undefined || value === null) return '-';
  if (value === 0) return '0 ms';
  if (value < 1) return `${value.toFixed(2)} ms`;
  if (value < 1000) return `${Math.round(value)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  return `${(value / 60_000).toFixed(1)} min`;
}

function bytes(n) {
  if (n === undefined || n === null) return '-';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

const num = (n) => (n === undefined || n === null ? '-' : n.toLocaleString('en-US'));
// Batch times keep their milliseconds when they have any (intervals under a second).
const iso = (t) => new Date(t).toISOString().replace(t % 1000 === 0 ? /\.\d+Z$/ : /Z$/, '');
const clock = (t) => new Date(t).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
const batchLabel = (t) => (t >= 946_684_800_000 ? iso(t).slice(11) : String(t));

function duration(msTotal) {
  const s = Math.floor(msTotal / 1000);
  if (s < 60) return `${s} seconds`;
  if (s < 3600) return `${Math.floor(s / 60)} minutes ${s % 60} seconds`;
  return `${Math.floor(s / 3600)} hours ${Math.floor((s % 3600) / 60)} minutes`;
}

// Marks each canvas with how many points it drew: the browser test waits for it.
const drawnMark = {
  id: 'drawnMark',
  afterRender(chart) {
    chart.canvas.dataset.drawnPoints = String(chart.data.datasets[0]?.data.length ?? 0);
  },
};

const charts = new Map();

function chart(id, type, unit) {
  if (charts.has(id)) return charts.get(id);
  const timeline = type === 'timeline';
  const config = {
    type: timeline ? 'line' : 'bar',
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      plugins: { legend: { display: timeline, labels: { boxWidth: 12, font: { size: 11 } } }, tooltip: { enabled: true } },
      scales: {
        x: { ticks: { maxTicksLimit: timeline ? 8 : 6, font: { size: 10 } }, title: { display: !timeline, text: unit, font: { size: 10 } } },
        y: { beginAtZero: true, ticks: { font: { size: 10 } }, title: { display: true, text: timeline ? unit : 'batches', font: { size: 10 } } },
      },
    },
    plugins: [drawnMark],
  };
  const made = new Chart($(id), config);
  charts.set(id, made);
  return made;
}

function drawTimeline(id, labels, values, unit, interval) {
  const c = chart(id, 'timeline', unit);
  c.data.labels = labels;
  c.data.datasets = [
    { label: unit, data: values, borderColor: '#2b6cb0', backgroundColor: 'rgba(43,108,176,0.15)', fill: true, pointRadius: 2, borderWidth: 1.5, tension: 0 },
    ...(interval === undefined ? [] : [{ label: 'batch interval', data: labels.map(() => interval), borderColor: '#b42318', borderDash: [6, 4], pointRadius: 0, borderWidth: 1.5, fill: false }]),
  ];
  c.update('none');
}

function drawHistogram(id, values, unit) {
  const c = chart(id, 'histogram', unit);
  const bins = 10;
  const finite = values.filter((v) => Number.isFinite(v));
  const lo = finite.length ? Math.min(...finite) : 0;
  const hi = finite.length ? Math.max(...finite) : 0;
  const width = hi > lo ? (hi - lo) / bins : 1;
  const counts = new Array(bins).fill(0);
  for (const v of finite) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  c.data.labels = counts.map((_, i) => `${+(lo + i * width).toPrecision(3)}`);
  c.data.datasets = [{ label: 'batches', data: counts, backgroundColor: 'rgba(43,108,176,0.6)' }];
  c.update('none');
}

const average = (values) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : undefined);

function renderStats(doc, completed) {
  const interval = doc.batchIntervalMs;
  const labels = completed.map((b) => batchLabel(b.batchTime));
  const rows = [
    ['input-rate', completed.map((b) => b.records / (interval / 1000)), 'records/s', undefined, (v) => (v === undefined ? '-' : v.toFixed(2))],
    ['scheduling-delay', completed.map((b) => b.schedulingDelayMs), 'ms', undefined, ms],
    ['processing-time', completed.map((b) => b.processingTimeMs), 'ms', interval, ms],
    ['total-delay', completed.map((b) => b.totalDelayMs), 'ms', interval, ms],
  ];
  for (const [name, values, unit, line, format] of rows) {
    $(`avg-${name}`).textContent = format(average(values));
    drawTimeline(`timeline-${name}`, labels, values, unit, line);
    drawHistogram(`histogram-${name}`, values, unit);
  }
  $('stats-range').textContent = completed.length ? `(last ${completed.length} completed batches, ${labels[0]} to ${labels.at(-1)})` : '(no completed batch yet)';
}

const open = new Set();

function partitionDetails(batch) {
  const parts = [];
  (batch.partitionTimesMs ?? []).forEach((times, stream) => {
    const max = Math.max(1, ...times);
    times.forEach((t, i) => {
      // A cluster instance's times are those of the partitions it owns: each is named by its number.
      const p = batch.partitions?.[stream]?.[i] ?? i;
      parts.push(el('span', { className: 'part', 'data-partition': `${stream}/${p}` }, [el('span', { className: 'bar', style: `width:${Math.max(2, (t / max) * 80)}px` }), `stream ${stream} partition ${p}: ${ms(t)}`]));
    });
  });
  if (batch.error) parts.push(el('div', { className: 'status-failed', text: batch.error }));
  return parts.length ? parts : [el('span', { text: 'no partition times (the batch had no state stream or did not complete)' })];
}

function renderBatches(doc) {
  const body = $('batches').tBodies[0];
  body.replaceChildren();
  // The newest 50, as many as the document details (DETAILED_ROWS in status-model.ts).
  for (const b of [...doc.batches].reverse().slice(0, 50)) {
    const row = el('tr', { className: 'batch', 'data-batch-time': String(b.batchTime) }, [
      el('td', { text: b.batchTime >= 946_684_800_000 ? iso(b.batchTime).replace('T', ' ') : String(b.batchTime) }),
      el('td', { 'data-field': 'records', text: num(b.records) }),
      el('td', { 'data-field': 'scheduling-delay', text: ms(b.schedulingDelayMs) }),
      el('td', { 'data-field': 'processing-time', text: ms(b.processingTimeMs) }),
      el('td', { 'data-field': 'total-delay', text: ms(b.totalDelayMs) }),
      el('td', { 'data-field': 'keys-timed-out', text: num(b.keysTimedOut) }),
      el('td', { 'data-field': 'status', className: `status-${b.status}`, text: b.status }),
    ]);
    row.addEventListener('click', () => {
      if (open.has(b.batchTime)) open.delete(b.batchTime);
      else open.add(b.batchTime);
      renderBatches(doc);
    });
    body.append(row);
    if (open.has(b.batchTime)) body.append(el('tr', { className: 'details', 'data-details-of': String(b.batchTime) }, [el('td', { colSpan: 7 }, partitionDetails(b))]));
  }
}

function renderState(doc) {
  const body = $('state').tBodies[0];
  body.replaceChildren();
  for (const s of doc.streams) {
    for (const p of s.partitions) {
      body.append(
        el('tr', { 'data-partition': `${s.stream}/${p.partition}` }, [
          el('td', { text: String(s.stream) }), el('td', { text: String(p.partition) }), el('td', { 'data-field': 'keys', text: num(p.keyCount) }),
          el('td', { 'data-field': 'bytes', text: bytes(p.stateBytes) }), el('td', { 'data-field': 'dead-letters', text: num(p.deadLetters) }),
          el('td', { text: p.lastBatch === undefined ? '-' : batchLabel(p.lastBatch) }),
        ]),
      );
    }
    const keys = s.partitions.reduce((n, p) => n + p.keyCount, 0);
    const size = s.partitions.reduce((n, p) => n + p.stateBytes, 0);
    body.append(el('tr', { 'data-stream-total': String(s.stream) }, [el('td', { text: `stream ${s.stream} total` }), el('td'), el('td', { 'data-field': 'keys', text: num(keys) }), el('td', { text: bytes(size) }), el('td'), el('td')]));
  }
}

function renderSnapshots(doc) {
  const done = doc.snapshots.filter((s) => s.outcome === 'completed');
  const last = done.at(-1);
  const before = doc.snapshotOnDisk;
  $('snapshot-summary').textContent = last
    ? `Last snapshot: batch ${batchLabel(last.batchTime)}, finished ${clock(last.at)}, took ${ms(last.durationMs)}, ${bytes(last.bytes)}, ${num(last.keyCount)} keys (${last.path}).`
    : before
      ? `${doc.snapshots.length ? 'No snapshot has completed since this start. ' : ''}Newest snapshot in the folder, from before this start: batch ${batchLabel(before.batchTime)}, finished ${clock(before.at)}, ${bytes(before.bytes)}, ${num(before.keyCount)} keys (${before.path}).`
      : doc.snapshots.length ? 'No snapshot has completed.' : 'No snapshot yet (snapshotEvery is off, or none is due).';
  const body = $('snapshots').tBodies[0];
  body.replaceChildren();
  for (const s of [...doc.snapshots].reverse().slice(0, 10)) {
    body.append(
      el('tr', {}, [
        el('td', { text: batchLabel(s.batchTime) }), el('td', { text: clock(s.at) }), el('td', { text: ms(s.durationMs) }), el('td', { text: bytes(s.bytes) }),
        el('td', { text: num(s.keyCount) }), el('td', { className: s.outcome === 'failed' ? 'status-failed cause' : 'status-completed', text: s.outcome === 'failed' ? `failed: ${s.error}` : 'completed' }),
      ]),
    );
  }
}

function renderKafka(doc) {
  const box = $('kafka');
  if (!doc.kafka.length) return void box.replaceChildren(el('p', { text: 'No Kafka source.' }));
  box.replaceChildren(
    ...doc.kafka.flatMap((k) => [
      el('p', {
        className: k.zookeeper.connected || !k.zookeeper.opened ? '' : 'status-failed',
        text: `Source ${k.source}: ZooKeeper ${k.zookeeper.connect} ${!k.zookeeper.opened ? 'not connected yet (the job is starting)' : `${k.zookeeper.connected ? 'connected' : 'NOT REACHABLE'} since ${clock(k.zookeeper.sinceMs)}`}; offsets under ${k.zookeeper.root}.` +
          (k.watermarksAt ? ` Log-end offsets as of ${clock(k.watermarksAt)}.` : ''),
      }),
      el('table', { className: 'grid', 'data-source': String(k.source) }, [
        el('thead', {}, [el('tr', {}, ['Topic', 'Partition', 'Next batch starts at', 'Fetched up to', 'Log end', 'Lag (records)'].map((h) => el('th', { text: h })))]),
        el('tbody', {}, k.partitions.map((p) =>
          el('tr', { 'data-topic-partition': `${p.topic}:${p.partition}` }, [
            el('td', { text: p.topic }), el('td', { text: String(p.partition) }), el('td', { 'data-field': 'next', text: num(p.next) }), el('td', { text: num(p.fetched) }),
            el('td', { 'data-field': 'high-watermark', text: num(p.highWatermark) }),
            el('td', { 'data-field': 'lag', className: p.lag > 10 * 1000 ? 'lag-high' : '', text: num(p.lag) }),
          ]),
        )),
      ]),
    ]),
  );
}

function renderDeadLettersAndRestarts(doc) {
  const mapping = doc.streams.flatMap((s) => s.partitions.filter((p) => p.deadLetters > 0).map((p) => `stream ${s.stream} partition ${p.partition}: ${p.deadLetters}`));
  const decode = doc.sourceDeadLetters.filter((s) => s.count > 0).map((s) => `source ${s.source}: ${s.count} undecodable messages`);
  const total = doc.streams.reduce((n, s) => n + s.partitions.reduce((m, p) => m + p.deadLetters, 0), 0) + doc.sourceDeadLetters.reduce((n, s) => n + s.count, 0);
  $('dead-letter-summary').textContent = total === 0 ? 'No dead letters. No record has been moved aside.' : `Dead letters: ${total} (${[...mapping, ...decode].join('; ')}).`;
  const body = $('restarts').tBodies[0];
  body.replaceChildren();
  if (!doc.restarts.length) body.append(el('tr', {}, [el('td', { colSpan: 6, text: 'No partition has been restarted.' })]));
  for (const r of [...doc.restarts].reverse().slice(0, 20)) {
    body.append(el('tr', {}, [el('td', { text: clock(r.at) }), el('td', { text: String(r.stream) }), el('td', { text: String(r.partition) }), el('td', { text: r.batchTime === null ? 'between batches' : batchLabel(r.batchTime) }), el('td', { text: r.restart === null ? '-' : String(r.restart) }), el('td', { className: 'cause', text: r.cause })]));
  }
}

function renderHeader(doc, charted) {
  document.title = `statestream · ${doc.app}`;
  $('app').textContent = doc.app;
  $('phase').textContent = doc.phase;
  $('phase').className = `badge ${doc.phase}`;
  $('summary').textContent =
    `Batches of ${ms(doc.batchIntervalMs)}, page up for ${duration(doc.now - doc.startedAt)} (since ${clock(doc.startedAt)}): ` +
    `${num(doc.totals.batches)} completed batches, ${num(doc.totals.records)} records, ${num(doc.totals.keysTimedOut)} keys timed out` +
    (doc.totals.replayed ? `, ${num(doc.totals.replayed)} batches re-run after a restore` : '') +
    (doc.totals.failed ? `, ${doc.totals.failed} failed` : '') + (charted.length ? '' : '.') +
    (charted.length ? `; the last batch took ${ms(charted.at(-1).processingTimeMs)}.` : '');
  $('problems').hidden = doc.problems.length === 0;
  $('problem-list').replaceChildren(...doc.problems.map((p) => el('li', { text: p })));
}

function render(doc) {
  const completed = doc.batches.filter((b) => b.status === 'completed');
  // Re-runs after a restore carry their first run's times: their delays are the snapshot's age, and their records were counted then.
  const charted = completed.filter((b) => b.origin !== 'replay');
  renderHeader(doc, charted);
  renderStats(doc, charted);
  renderBatches(doc);
  renderState(doc);
  renderSnapshots(doc);
  renderKafka(doc);
  renderDeadLettersAndRestarts(doc);
  document.body.dataset.completedBatches = String(charted.length);
  document.body.dataset.rerunsLeftOut = String(completed.length - charted.length);
}

function trouble(text, phase) {
  $('problems').hidden = false;
  $('problem-list').replaceChildren(el('li', { text }));
  if (phase) {
    $('phase').textContent = phase;
    $('phase').className = 'badge failed';
  }
}

async function poll() {
  let doc;
  try {
    const response = await fetch('/api/status', { credentials: 'same-origin', cache: 'no-store' });
    if (!response.ok) throw new Error(`${response.status} ${(await response.text()).trim()}`);
    doc = await response.json();
  } catch (error) {
    trouble(`the page cannot reach the job: ${error.message} (it stopped, or the network is down); retrying`, 'unreachable');
  }
  try {
    if (doc) render(doc);
  } catch (error) {
    trouble(`the page could not draw the job's figures: ${error.message}`);
  }
  setTimeout(poll, doc ? Math.min(Math.max(doc.batchIntervalMs, 500), 2000) : 1000);
}

poll();
