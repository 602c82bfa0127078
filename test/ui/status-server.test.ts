import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError, StateSpec, StreamingContext } from '../../src/index.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { curl } from '../metrics/scrape.js';

const execFileP = promisify(execFile);

/** Status code, headers and body of one request, with curl. */
async function request(url: string, ...args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const { stdout } = await execFileP('curl', ['--silent', '--max-time', '20', '--include', ...args, url]);
  const [head, ...body] = stdout.split('\r\n\r\n');
  return { status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(head)?.[1]), headers: head, body: body.join('\r\n\r\n') };
}

describe('status page server', () => {
  it('off loopback it needs a token; with one, every request carries it (bearer, or a cookie set from ?token=)', async () => {
    const make = (ui: unknown) => () => new StreamingContext({ batchIntervalMs: 1000, ui: ui as never });
    assert.throws(make({ port: 4040, host: '0.0.0.0' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.token' && /ui\.host 0\.0\.0\.0 is reachable from other machines: give ui\.token/.test(e.message));
    assert.throws(make({ port: 4040, token: 'short' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.token');
    assert.throws(make({ port: 70000 }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.port');
    assert.throws(make({}), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.port');
    assert.throws(make({ port: 1, colour: 'red' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.colour');

    const token = 'a-long-enough-secret-token';
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir(), ui: { port: 0, token } });
    try {
      await job.batch([['k', 1]]);
      const url = job.ssc.endpoints().ui!;
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

      const refused = await request(`${url}api/status`);
      assert.equal(refused.status, 401);
      assert.match(refused.body, /this status page needs its token/);
      assert.equal((await request(`${url}api/status`, '-H', 'Authorization: Bearer wrong-token-of-some-length')).status, 401);

      const status = JSON.parse(await curl(`${url}api/status`, [`Authorization: Bearer ${token}`]));
      assert.equal(status.totals.batches, 1);
      assert.equal(status.streams[0].partitions.reduce((n: number, p: { keyCount: number }) => n + p.keyCount, 0), 1);

      // A person opens the page once with ?token=: a cookie, and the address without the token.
      const opened = await request(`${url}?token=${token}`);
      assert.equal(opened.status, 303);
      assert.match(opened.headers, /\r\nlocation: \/\r\n/i);
      const cookie = /\r\nset-cookie: (statestream_token=[^;]+); HttpOnly; SameSite=Strict/i.exec(opened.headers)?.[1];
      assert.ok(cookie, opened.headers);
      const page = await request(url, '-H', `Cookie: ${cookie}`);
      assert.equal(page.status, 200);
      assert.match(page.body, /<script src="\/static\/chart\.umd\.min\.js"><\/script>/);
      const chartJs = await request(`${url}static/chart.umd.min.js`, '-H', `Cookie: ${cookie}`);
      assert.equal(chartJs.status, 200);
      assert.match(chartJs.body, /Chart\.js v4/, 'Chart.js from the package\'s node_modules');
      assert.equal((await request(`${url}nothing-here`, '-H', `Cookie: ${cookie}`)).status, 404);
    } finally {
      await job.ssc.stop();
    }
  });
});
