import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { BatchEvents, StateSpec, StreamingContext, murmur2Partitioner, type BatchCompletedEvent, type SnapshotCompletedEvent } from '../../src/index.js';
import { fixture, tempDir } from '../helpers.js';
import { eventually } from '../wait.js';
import { highWatermarks } from '../integration/job-process.js';
import { useServices } from '../integration/services/suite.js';
import { openBrowser } from './browser.js';

/** Where the screenshot goes: STATESTREAM_SCREENSHOT=docs/status-page.png refreshes the README's. */
const SCREENSHOT = process.env.STATESTREAM_SCREENSHOT
  ? fileURLToPath(new URL(`../../../${process.env.STATESTREAM_SCREENSHOT}`, import.meta.url))
  : join(tempDir('statestream-screenshot-'), 'status-page.png');

// The page's own global, inside page.evaluate (the project compiles without the DOM library).
declare const document: any;
type Node = { textContent: string | null; getAttribute(name: string): string | null; querySelector(selector: string): Node | null; id: string; dataset: Record<string, string | undefined> };

const PARTITIONS = 4;
const TOPIC_PARTITIONS = 3;
const INTERVAL = 250;

/** "12 ms", "0.52 ms", "1.20 s" → milliseconds, as the page printed them. */
function parseMs(text: string): number {
  const m = /^([\d.]+) (ms|s|min)$/.exec(text);
  if (!m) throw new Error(`not a duration: ${JSON.stringify(text)}`);
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000);
}

/** Equal as far as the page's rounding shows. */
function shown(text: string, actual: number, what: string): void {
  const value = parseMs(text);
  const tolerance = actual < 1 ? 0.006 : actual < 1000 ? 0.5 : actual < 10_000 ? 5 : 50;
  assert.ok(Math.abs(value - actual) <= tolerance, `${what}: the page shows ${text}, the event says ${actual} ms`);
}

interface PageFigures {
  completedBatches: number;
  avgInputRate: string;
  drawn: Record<string, string | undefined>;
  batches: Array<{ batchTime: number; records: string; scheduling: string; processing: string; total: string; status: string }>;
  keys: Record<string, string>;
  kafka: Record<string, { next: string; high: string; lag: string }>;
  snapshot: string;
  problems: string[];
}

/** Everything the test checks, read in one turn of the page's event loop (a render is synchronous, so it is one render's). */
function readPage(page: Page): Promise<PageFigures> {
  return page.evaluate(() => {
    const all = (selector: string) => [...document.querySelectorAll(selector)] as Node[];
    const text = (root: Node, selector: string) => root.querySelector(selector)?.textContent ?? '';
    return {
      completedBatches: Number(document.body.dataset.completedBatches ?? 0),
      avgInputRate: document.getElementById('avg-input-rate').textContent as string,
      drawn: Object.fromEntries(all('canvas').map((c) => [c.id, c.dataset.drawnPoints])),
      batches: all('#batches tr.batch').map((row) => ({
        batchTime: Number(row.getAttribute('data-batch-time')), records: text(row, '[data-field=records]'), scheduling: text(row, '[data-field=scheduling-delay]'),
        processing: text(row, '[data-field=processing-time]'), total: text(row, '[data-field=total-delay]'), status: text(row, '[data-field=status]'),
      })),
      keys: Object.fromEntries(all('#state tr[data-partition]').map((row) => [row.getAttribute('data-partition')!, text(row, '[data-field=keys]')])),
      kafka: Object.fromEntries(
        all('#kafka tr[data-topic-partition]').map((row) => [
          row.getAttribute('data-topic-partition')!, { next: text(row, '[data-field=next]'), high: text(row, '[data-field=high-watermark]'), lag: text(row, '[data-field=lag]') },
        ]),
      ),
      snapshot: document.getElementById('snapshot-summary').textContent as string,
      problems: all('#problem-list li').map((li) => li.textContent as string),
    };
  }) as Promise<PageFigures>;
}

const count = (text: string) => Number(text.replace(/,/g, ''));

describe('the status page in a real browser (Debian chromium, real ZooKeeper, mock Kafka broker)', { timeout: 300_000 }, () => {
  const services = useServices();

  it('draws the batch charts, shows figures that match the batch events, state, Kafka lag and snapshots, and says in words when ZooKeeper is away', async () => {
    const topic = 'page-words';
    await services.kafka.createTopic(topic, TOPIC_PARTITIONS);
    const dataDir = tempDir();
    const job = (snapshotEvery: number | undefined) => {
      const ssc = new StreamingContext({ batchIntervalMs: INTERVAL, dataDir, threads: 2, appName: 'word-count', snapshotEvery, ui: { port: 0 } });
      const counts = ssc
        .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: 'page-group', zookeeper: { connect: services.zk.connectString, root: '/statestream/page', sessionTimeoutMs: 4000 }, maxRecordsPerBatch: 40, groupSessionTimeoutMs: 6000 })
        .flatMap((r) => (r.value ?? '').split(' '))
        .map((w): [string, number] => [w, 1])
        .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(PARTITIONS));
      return { ssc, counts };
    };
    const { ssc, counts } = job(8);
    const completed: BatchCompletedEvent[] = [];
    const snapshots: SnapshotCompletedEvent[] = [];
    ssc.on(BatchEvents.COMPLETED, (e) => void completed.push(e));
    ssc.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => void snapshots.push(e));
    await ssc.start();
    const url = ssc.endpoints().ui!;
    const browser = await openBrowser();
    try {
      const page = await browser.newPage();
      const elsewhere: string[] = [];
      page.on('request', (request) => void (request.url().startsWith(url) || elsewhere.push(request.url())));
      const pageErrors: string[] = [];
      page.on('pageerror', (error) => void pageErrors.push(error.message));
      await page.goto(url);

      // A backlog the job takes 40 records per topic-partition at a time: lag shows while it catches up.
      const lines = Array.from({ length: 1200 }, (_, i) => `w${i % 50} w${(i * 7) % 50}`);
      for (let p = 0; p < TOPIC_PARTITIONS; p++) {
        await services.producer.send({ topic, messages: lines.filter((_, i) => i % TOPIC_PARTITIONS === p).map((value) => ({ value, partition: p })) });
      }
      const high = await highWatermarks(services.kafka.brokers, topic);
      const seenLag = await eventually('the page to show Kafka lag while the job catches up', async () => {
        const lags = Object.values((await readPage(page)).kafka).map((k) => count(k.lag));
        return lags.some((n) => n > 0) ? lags : undefined;
      }, { timeoutMs: 60_000 });
      assert.ok(seenLag.length === TOPIC_PARTITIONS);

      // Caught up: every record in an ended batch, a snapshot after, and the charts drawn with every completed batch.
      const figures = await eventually('the page to show the job caught up, a snapshot, and every chart drawn', async () => {
        const f = await readPage(page);
        const caughtUp = Object.values(f.kafka).every((k) => k.lag === '0') && completed.reduce((n, e) => n + e.records, 0) === 1200;
        const drawn = Object.values(f.drawn).every((n) => n !== undefined && Number(n) > 0) && Object.entries(f.drawn).filter(([id]) => id.startsWith('timeline')).every(([, n]) => Number(n) === f.completedBatches);
        return caughtUp && drawn && f.completedBatches >= 10 && f.snapshot.startsWith('Last snapshot') && snapshots.length > 0 ? f : undefined;
      }, { timeoutMs: 120_000 });
      assert.deepEqual(pageErrors, [], 'no script error on the page');
      assert.deepEqual(elsewhere, [], 'the page loads nothing from anywhere else (Chart.js comes from the package)');
      assert.equal(Object.keys(figures.drawn).length, 8, 'four timelines and four histograms');

      // The batches the page lists are the events' batches, with the same figures.
      const byTime = new Map(completed.map((e) => [e.batchTime, e]));
      const rows = figures.batches.filter((b) => b.status === 'completed');
      assert.ok(rows.length >= 10);
      for (const row of rows) {
        const event = byTime.get(row.batchTime);
        assert.ok(event, `batch ${row.batchTime} on the page is a completed batch`);
        assert.equal(count(row.records), event.records, `records of batch ${row.batchTime}`);
        shown(row.processing, event.processingTimeMs, `processing time of ${row.batchTime}`);
        shown(row.scheduling, event.schedulingDelayMs, `scheduling delay of ${row.batchTime}`);
        shown(row.total, event.schedulingDelayMs + event.processingTimeMs, `total delay of ${row.batchTime}`);
      }
      // The average input rate over the batches the charts hold (the first completedBatches events).
      const charted = completed.slice(0, figures.completedBatches);
      assert.equal(figures.avgInputRate, (charted.reduce((n, e) => n + e.records, 0) / charted.length / (INTERVAL / 1000)).toFixed(2));

      // A batch opens to its partitions' times.
      const busiest = rows.map((r) => byTime.get(r.batchTime)!).sort((a, b) => b.records - a.records)[0];
      await page.click(`tr.batch[data-batch-time="${busiest.batchTime}"]`);
      const parts = await page.locator(`tr[data-details-of="${busiest.batchTime}"] .part`).allTextContents();
      assert.equal(parts.length, PARTITIONS);
      parts.forEach((text, p) => {
        const m = /^stream 0 partition (\d+): (.+)$/.exec(text);
        assert.ok(m, text);
        assert.equal(Number(m[1]), p);
        shown(m[2], busiest.partitionTimesMs[0][p], `batch ${busiest.batchTime} partition ${p}`);
      });

      // State per partition: the keys the store holds, where the router puts them.
      const expected = new Array<number>(PARTITIONS).fill(0);
      for (const [word] of counts.store().entries()) expected[murmur2Partitioner.partition(word, PARTITIONS)]++;
      assert.equal(expected.reduce((a, b) => a + b), 50);
      const after = await eventually('the page to show the committed key counts', async () => {
        const f = await readPage(page);
        return [...Array(PARTITIONS).keys()].every((p) => count(f.keys[`0/${p}`]) === expected[p]) ? f : undefined;
      });
      // Kafka positions: the next batch starts at the log end in every partition.
      for (let p = 0; p < TOPIC_PARTITIONS; p++) {
        assert.deepEqual(after.kafka[`${topic}:${p}`], { next: high[p].toLocaleString('en-US'), high: high[p].toLocaleString('en-US'), lag: '0' });
      }
      assert.match(after.snapshot, /^Last snapshot: batch \d\d:\d\d:\d\d(\.\d{3})?, finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d, took .+, [\d.]+ KiB, 50 keys/);
      assert.deepEqual(after.problems, []);
      await page.screenshot({ path: SCREENSHOT, fullPage: true });

      // ZooKeeper away: the page says so in words, and stops saying it once it is back.
      await services.zk.stop();
      const away = await eventually('the page to say ZooKeeper is unreachable', async () => {
        const problems = (await readPage(page)).problems;
        return problems.some((p) => /^ZooKeeper at 127\.0\.0\.1:\d+ has not been reachable since \d{4}-\d\d-\d\dT.*: batches wait for it/.test(p)) ? problems : undefined;
      });
      assert.ok(!away.some((p) => /\n\s+at /.test(p)), 'no stack trace');
      assert.ok(await page.isVisible('#problems'));
      await services.zk.start();
      await eventually('the page to stop reporting ZooKeeper', async () => ((await readPage(page)).problems.length === 0 ? true : undefined), { timeoutMs: 60_000 });

      // The job stopped: the page says it cannot reach it.
      await ssc.stop();
      await eventually('the page to say the job is unreachable', async () => {
        const problems = (await readPage(page)).problems;
        return problems.some((p) => p.startsWith('the page cannot reach the job')) ? true : undefined;
      });

      // Started again (without snapshotEvery): the page shows the snapshot the folder holds, not "no snapshot".
      const again = job(undefined);
      await again.ssc.start();
      try {
        await page.goto(again.ssc.endpoints().ui!);
        const newest = snapshots.at(-1)!;
        const summary = await eventually('the restarted page to show the newest snapshot in the folder', async () => {
          const text = (await readPage(page)).snapshot;
          return text.startsWith('Newest snapshot') ? text : undefined;
        });
        const label = new Date(newest.batchTime).toISOString().slice(11).replace(/\.000Z$|Z$/, '');
        assert.equal(
          summary.replace(/finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d/, 'finished <time>').replace(/[\d.]+ KiB/, '<size>'),
          `Newest snapshot in the folder, from before this start: batch ${label}, finished <time>, <size>, 50 keys (${newest.path}).`,
        );
      } finally {
        await again.ssc.stop();
      }
    } finally {
      await browser.close();
      await ssc.stop();
    }
  });
});
