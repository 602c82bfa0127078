import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { BatchEvents, ConfigError, StateSpec, StreamingContext } from '../../src/index.js';
import { partitionPath } from '../../src/storage/partition/store.js';
import { fixture, keyedJob, runThenStop, tempDir } from '../helpers.js';
import { nextEvent } from '../wait.js';
import { curl } from '../metrics/scrape.js';

const execFileP = promisify(execFile);

/** Status code, headers and body of one request, with curl. */
async function request(url: string, ...args: string[]): Promise<{ status: number; headers: string; body: string }> {
  const { stdout } = await execFileP('curl', ['--silent', '--max-time', '20', '--include', ...args, url]);
  const [head, ...body] = stdout.split('\r\n\r\n');
  return { status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(head)?.[1]), headers: head, body: body.join('\r\n\r\n') };
}

// Each test fails rather than hangs when a batch or a service never answers.
describe('status page server', { timeout: 180_000 }, () => {
  it('off loopback it needs a token; with one, every request carries it (bearer, or a cookie set from ?token=)', async () => {
    const make = (ui: unknown) => () => new StreamingContext({ batchIntervalMs: 1000, ui: ui as never });
    assert.throws(make({ port: 4040, host: '0.0.0.0' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.token' && /ui\.host 0\.0\.0\.0 is reachable from other machines: give ui\.token/.test(e.message));
    assert.throws(make({ port: 4040, token: 'short' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.token');
    assert.throws(make({ port: 4040, token: 'a token with spaces in it' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.token');
    assert.throws(make({ port: 70000 }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.port');
    // The bounds themselves: 16 characters is a token, 15 is not; port 65535 is one, 65536 is not.
    assert.throws(make({ port: 4040, token: 'x'.repeat(15) }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.token');
    assert.throws(make({ port: 65536 }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.port' && /ui\.port must be an integer from 0 to 65535/.test(e.message));
    make({ port: 65535, host: '0.0.0.0', token: 'x'.repeat(16) })();
    assert.throws(make({}), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.port');
    assert.throws(make({ port: 1, colour: 'red' }), (e: unknown) => e instanceof ConfigError && e.context.option === 'ui.colour');

    // A `+`, as base64 tokens have: sent in ?token= as it is, it must not be read as a space.
    const token = 'a-long+enough/secret-token';
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir(), ui: { port: 0, token } });
    try {
      await job.batch([['k', 1]]);
      const url = job.ssc.endpoints().ui!;
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

      const refused = await request(`${url}api/status`);
      assert.equal(refused.status, 401);
      assert.match(refused.body, /this status page needs its token/);
      // The scheme a client is to answer with (RFC 9110, 11.6.1): Bearer, as the page reads it, not Basic (a browser would prompt for a password).
      assert.match(refused.headers, /^www-authenticate: Bearer realm="statestream"\r?$/im);
      assert.equal((await request(`${url}api/status`, '-H', 'Authorization: Bearer wrong-token-of-some-length')).status, 401);

      const status = JSON.parse(await curl(`${url}api/status`, [`Authorization: Bearer ${token}`]));
      assert.equal(status.totals.batches, 1);
      assert.equal((await request(`${url}api/status`, '-H', `Authorization: bearer ${token}`)).status, 200, 'the scheme name in any case');
      // RFC 9110 (11.4) puts one or more spaces between the scheme and the token.
      assert.equal((await request(`${url}api/status`, '-H', `Authorization: Bearer  ${token}`)).status, 200, 'two spaces after the scheme');
      assert.equal(status.streams[0].partitions.reduce((n: number, p: { keyCount: number }) => n + p.keyCount, 0), 1);
      assert.deepEqual(status.streams[0].partitions.map((p: { lastBatch?: number }) => p.lastBatch), [1000, 1000], 'each partition committed batch 1000');

      // A wrong token in the address, or in a cookie, opens nothing and sets no cookie.
      const guessed = await request(`${url}?token=wrong-token-of-some-length`);
      assert.equal(guessed.status, 401);
      assert.doesNotMatch(guessed.headers, /set-cookie/i);
      const port = new URL(url).port;
      assert.equal((await request(url, '-H', `Cookie: statestream_token_${port}=wrong-token-of-some-length`)).status, 401);
      // Only the cookie named for this port: one whose name merely begins with it belongs to another page (port 40401 beside 4040).
      assert.equal((await request(url, '-H', `Cookie: statestream_token_${port}1=${token}`)).status, 401);
      // A cookie that does not decode (another app's on this host, say) is no token: 401, not 500.
      assert.equal((await request(url, '-H', `Cookie: statestream_token_${port}=%E0%A4%A`)).status, 401);

      // A person opens the page once with ?token=: a cookie, and the address without the token.
      const opened = await request(`${url}?token=${token}`);
      assert.equal(opened.status, 303);
      assert.match(opened.headers, /\r\nlocation: \/\r\n/i);
      // Percent-encoded, as a link built with encodeURIComponent sends it: the token once decoded.
      assert.equal((await request(`${url}?token=${encodeURIComponent(token)}`)).status, 303);
      // Only the token leaves the address: the page's other parameters stay.
      const withOthers = await request(`${url}?token=${token}&x=1`);
      assert.equal(withOthers.status, 303);
      assert.match(withOthers.headers, /\r\nlocation: \/\?x=1\r\n/i);
      // A path that resolves to `//host/…` must not send the browser to that host.
      const elsewhere = await request(`${url}.//elsewhere.example/x?token=${token}`, '--path-as-is');
      assert.equal(elsewhere.status, 303);
      assert.match(elsewhere.headers, /\r\nlocation: \/elsewhere\.example\/x\r\n/i);
      // Named for its port: a browser sends a host's cookies to every port of it, and two jobs' pages on one host keep their own.
      const cookie = new RegExp(`\\r\\nset-cookie: (statestream_token_${port}=[^;]+); HttpOnly; SameSite=Strict`, 'i').exec(opened.headers)?.[1];
      assert.ok(cookie, opened.headers);
      // The value percent-encoded (a cookie's value may not hold every character a token may), and for every path of the page,
      // not only the one opened with ?token= (a browser would otherwise keep it from /api/status and /static/).
      assert.match(opened.headers, new RegExp(`^set-cookie: statestream_token_${port}=a-long%2Benough%2Fsecret-token; HttpOnly; SameSite=Strict; Path=/\\r?$`, 'im'));
      const page = await request(url, '-H', `Cookie: ${cookie}`);
      assert.equal(page.status, 200);
      assert.match(page.body, /<script src="\/static\/chart\.umd\.min\.js"><\/script>/);
      const chartJs = await request(`${url}static/chart.umd.min.js`, '-H', `Cookie: ${cookie}`);
      assert.equal(chartJs.status, 200);
      assert.match(chartJs.body, /Chart\.js v4/, 'Chart.js from the package\'s node_modules');
      assert.equal((await request(`${url}nothing-here`, '-H', `Cookie: ${cookie}`)).status, 404);
      // A browser asks for a favicon of every page: no content, not a 404 in its console.
      assert.equal((await request(`${url}favicon.ico`, '-H', `Cookie: ${cookie}`)).status, 204);
      // The page's own files with their types: a browser that is sent nosniff applies no stylesheet or script of another type.
      const css = await request(`${url}static/status.css`, '-H', `Cookie: ${cookie}`);
      assert.equal(css.status, 200);
      assert.match(css.headers, /^content-type: text\/css; charset=utf-8\r?$/im);
      const js = await request(`${url}static/status.js`, '-H', `Cookie: ${cookie}`);
      assert.equal(js.status, 200);
      assert.match(js.headers, /^content-type: text\/javascript; charset=utf-8\r?$/im);
    } finally {
      await job.ssc.stop();
    }
  });

  it('without a token, it answers only to a loopback host name: a web page that points a name of its own at 127.0.0.1 reads nothing', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir(), ui: { port: 0 } });
    try {
      const url = job.ssc.endpoints().ui!;
      const port = new URL(url).port;
      // Host names are case-insensitive (RFC 9110): a client that writes LOCALHOST means the loopback name.
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LocalHost:${port}`, `[::1]:${port}`]) assert.equal((await request(`${url}api/status`, '-H', `Host: ${host}`)).status, 200, host);
      const rebound = await request(`${url}api/status`, '-H', `Host: attacker.example:${port}`);
      assert.equal(rebound.status, 403);
      assert.match(rebound.body, /answers only to a loopback name .* not "attacker\.example:\d+"/);
      assert.doesNotMatch(rebound.body, /totals/);
      // A name that only begins like a loopback one is another host's.
      for (const host of [`localhost.attacker.example:${port}`, `127.0.0.1.attacker.example:${port}`]) assert.equal((await request(`${url}api/status`, '-H', `Host: ${host}`)).status, 403, host);
      // Reading only: HEAD gives a document's headers without it, another method 405, a target that is no path 400.
      const head = await request(`${url}api/status`, '--head');
      assert.equal(head.status, 200);
      assert.match(head.headers, /content-type: application\/json/i);
      assert.equal(head.body, '');
      const posted = await request(`${url}api/status`, '-X', 'POST', '-d', 'x');
      assert.equal(posted.status, 405);
      assert.match(posted.headers, /^allow: GET, HEAD\r?$/im);
      assert.equal((await request(url, '--request-target', '//')).status, 400);
    } finally {
      await job.ssc.stop();
    }
  });

  it('says in words which store was damaged and what restored it, and why a failed batch stopped the job', async () => {
    const dataDir = tempDir();
    const spec = () => StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(2);
    // A snapshot of batch 1000, then batch 2000 without one.
    const first = await keyedJob(spec(), { dataDir, snapshotEvery: 1 });
    try {
      const copied = nextEvent(first.ssc, BatchEvents.SNAPSHOT_COMPLETED, 'the snapshot');
      await first.batch([['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
      await copied;
    } finally {
      await first.ssc.stop();
    }
    await runThenStop(spec(), { dataDir, startMs: 1000 }, [['a', 1], ['b', 1], ['c', 1], ['d', 1]]);
    const file = join(partitionPath(dataDir, 0, 1), 'data.mdb');
    truncateSync(file, Math.floor(statSync(file).size / 2));

    const job = await keyedJob(spec(), { dataDir, startMs: 10_000, ui: { port: 0 } });
    try {
      const status = JSON.parse(await curl(`${job.ssc.endpoints().ui}api/status`));
      assert.ok(
        status.problems.some((p: string) => /^stream 0 partition 1 was damaged \(data\.mdb is truncated.*\) and was restored from the snapshot of batch 1000; a queue source cannot replay the batches since \(the damaged store is kept in .+\)$/.test(p)),
        status.problems.join('\n'),
      );
      assert.ok(status.problems.some((p: string) => /partition 1 holds batch 1000.* cannot be replayed by a queue source/.test(p)), status.problems.join('\n'));
      // No snapshot in this process (nor snapshotEvery): the page shows the one it was restored from.
      assert.deepEqual(status.snapshots, []);
      const { at, bytes, ...onDisk } = status.snapshotOnDisk;
      assert.deepEqual(onDisk, { batchTime: 1000, path: join(dataDir, 'snapshots', '1000'), keyCount: 4 });
      assert.ok(bytes > 0 && at <= Date.now() && at > Date.now() - 120_000, JSON.stringify(status.snapshotOnDisk));
      // A record whose key cannot be a key fails the batch: the page says why the job stopped.
      await assert.rejects(job.batch([[{ not: 'a key' } as unknown as string, 1]]));
      const failed = JSON.parse(await curl(`${job.ssc.endpoints().ui}api/status`));
      assert.equal(failed.phase, 'failed');
      assert.ok(failed.problems.some((p: string) => /^the job stopped processing: InvalidRecordError \(ERR_INVALID_RECORD\): /.test(p)), failed.problems.join('\n'));
      assert.equal(failed.batches.at(-1).status, 'failed');
    } finally {
      await job.ssc.stop();
    }
  });

  it('counts the page up from start(), not from when the context was made', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), threads: 1, ui: { port: 0 } });
    ssc.queueStream<string>().foreachBatch(() => undefined);
    await sleep(300);
    const before = Date.now();
    await ssc.start();
    try {
      const { startedAt } = JSON.parse(await curl(`${ssc.endpoints().ui!}api/status`)) as { startedAt: number };
      assert.ok(startedAt >= before, `up since ${startedAt}, started at ${before}`);
    } finally {
      await ssc.stop();
    }
  });
});
