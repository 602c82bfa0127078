import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultRetryPolicy, withRetry, type RetryPolicy } from '../src/retry.js';
import { within } from './wait.js';

class Attempt extends Error {
  constructor(readonly attempt: number) {
    super(`attempt ${attempt} failed`);
  }
}

/** An operation that fails `failures` times, then answers; it records when each attempt ran. */
function flaky(failures: number) {
  const startedAt: number[] = [];
  return {
    startedAt,
    run: async () => {
      startedAt.push(performance.now());
      if (startedAt.length <= failures) throw new Attempt(startedAt.length);
      return 'answer';
    },
  };
}

describe('withRetry, the backoff policy shared by the ZooKeeper and Kafka paths', () => {
  it('is the documented policy by default: 100 ms doubling to 5 s, for up to 10 minutes', () => {
    assert.deepEqual(defaultRetryPolicy, { initialDelayMs: 100, maxDelayMs: 5_000, maxElapsedMs: 600_000 });
  });

  it('waits between half and all of a delay that doubles up to maxDelayMs, then returns the answer', async () => {
    const policy: RetryPolicy = { initialDelayMs: 8, maxDelayMs: 32, maxElapsedMs: 60_000 };
    const op = flaky(6);
    const waits: Array<{ attempt: number; delayMs: number }> = [];
    const answer = await within(withRetry(op.run, { retriable: () => true, onRetry: (_e, attempt, delayMs) => void waits.push({ attempt, delayMs }) }, policy), 'the seventh attempt');
    assert.equal(answer, 'answer');
    assert.deepEqual(waits.map((w) => w.attempt), [1, 2, 3, 4, 5, 6]);
    const nominal = [8, 16, 32, 32, 32, 32];
    waits.forEach(({ delayMs }, i) => assert.ok(delayMs >= nominal[i] / 2 && delayMs <= nominal[i], `wait ${i + 1}: ${delayMs} ms within [${nominal[i] / 2}, ${nominal[i]}]`));
    // It really waited: each attempt starts at least its wait after the one before.
    for (let i = 1; i < op.startedAt.length; i++) assert.ok(op.startedAt[i] - op.startedAt[i - 1] >= waits[i - 1].delayMs - 1, `attempt ${i + 1} came after its wait`);
  });

  it('spreads each wait over the upper half of its delay (jitter), so that clients failing together do not retry in step', async (t) => {
    const policy: RetryPolicy = { initialDelayMs: 8, maxDelayMs: 32, maxElapsedMs: 60_000 };
    const waitsWith = async (random: number) => {
      t.mock.method(Math, 'random', () => random);
      const waits: number[] = [];
      await within(withRetry(flaky(4).run, { retriable: () => true, onRetry: (_e, _attempt, delayMs) => void waits.push(delayMs) }, policy), 'the fifth attempt');
      t.mock.restoreAll();
      return waits;
    };
    assert.deepEqual(await waitsWith(0), [4, 8, 16, 16]);
    assert.deepEqual(await waitsWith(0.5), [6, 12, 24, 24]);
    assert.deepEqual(await waitsWith(0.999), [8, 16, 32, 32]);
  });

  it('gives up with the last error once the next wait would pass maxElapsedMs, and not before', async () => {
    const policy: RetryPolicy = { initialDelayMs: 20, maxDelayMs: 40, maxElapsedMs: 200 };
    const op = flaky(Infinity);
    const waits: number[] = [];
    const began = Date.now();
    let failure: unknown;
    await within(
      withRetry(op.run, { retriable: () => true, onRetry: (_e, _a, delayMs) => void waits.push(delayMs) }, policy).catch((e: unknown) => void (failure = e)),
      'withRetry to give up',
    );
    const elapsed = Date.now() - began;
    assert.ok(failure instanceof Attempt, String(failure));
    assert.equal((failure as Attempt).attempt, op.startedAt.length, 'the error of the last attempt');
    assert.ok(waits.reduce((a, b) => a + b, 0) <= policy.maxElapsedMs, `it never planned to wait past maxElapsedMs: ${waits.join(' + ')}`);
    // It stops only when elapsed time plus the next delay (at most maxDelayMs) passes the limit.
    assert.ok(elapsed > policy.maxElapsedMs - policy.maxDelayMs, `it kept trying until close to the limit: gave up after ${elapsed} ms`);
  });

  it('throws an error that is not retriable at once', async () => {
    const op = flaky(1);
    let retried = 0;
    await assert.rejects(withRetry(op.run, { retriable: () => false, onRetry: () => void retried++ }), Attempt);
    assert.deepEqual([op.startedAt.length, retried], [1, 0]);
  });

  it('stops waiting when its signal aborts, with the last error', async () => {
    const op = flaky(Infinity);
    const abort = new AbortController();
    const policy: RetryPolicy = { initialDelayMs: 60_000, maxDelayMs: 60_000, maxElapsedMs: 600_000 };
    const retrying = withRetry(op.run, { retriable: () => true, signal: abort.signal, onRetry: () => abort.abort() }, policy);
    await within(assert.rejects(retrying, (e: unknown) => e instanceof Attempt && e.attempt === 1), 'the aborted wait to end (it would otherwise last a minute)', { timeoutMs: 10_000 });
    assert.equal(op.startedAt.length, 1, 'no attempt after the abort');
  });

  it('with its signal aborted already, ends at the first failure with its error, and announces no retry', async () => {
    const op = flaky(Infinity);
    const abort = new AbortController();
    abort.abort();
    const retries: number[] = [];
    const retrying = withRetry(op.run, { retriable: () => true, signal: abort.signal, onRetry: (_e, attempt) => void retries.push(attempt) }, { initialDelayMs: 10, maxDelayMs: 10, maxElapsedMs: 60_000 });
    await within(assert.rejects(retrying, (e: unknown) => e instanceof Attempt && e.attempt === 1), 'the first failure');
    assert.equal(op.startedAt.length, 1);
    assert.deepEqual(retries, [], 'no "retrying" reported for a call that will not retry');
  });
});
