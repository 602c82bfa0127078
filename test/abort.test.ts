import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { describe, it } from 'node:test';
import { unlessAborted } from '../src/abort.js';
import { within } from './wait.js';

describe('unlessAborted, the race of a piece of work against a stop', () => {
  it('with its signal aborted already, rejects at once with the abort error, not waiting for work that never settles', async () => {
    const abort = new AbortController();
    abort.abort();
    const never = new Promise<never>(() => undefined);
    await within(assert.rejects(unlessAborted(never, abort.signal, () => new Error('cut')), /^Error: cut$/), 'the race with an aborted signal', { timeoutMs: 5_000 });
  });

  it('takes its listener off the signal whichever side wins: a long-lived signal gathers none', async () => {
    const abort = new AbortController();
    for (let i = 0; i < 20; i++) assert.equal(await unlessAborted(Promise.resolve(i), abort.signal, () => new Error('cut')), i);
    await assert.rejects(unlessAborted(Promise.reject(new Error('work failed')), abort.signal, () => new Error('cut')), /work failed/);
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
    const cut = unlessAborted(new Promise<never>(() => undefined), abort.signal, () => new Error('cut'));
    abort.abort();
    await assert.rejects(cut, /cut/);
    assert.equal(getEventListeners(abort.signal, 'abort').length, 0);
  });
});
