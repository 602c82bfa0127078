import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FirstFailure } from '../src/first-failure.js';

describe('FirstFailure, the cleanup that runs every step and throws the first failure', () => {
  it('runs every step, awaiting each, and rethrows the first failure, not a later one', async () => {
    const ran: string[] = [];
    const first = new Error('first');
    const steps = new FirstFailure();
    await steps.run(async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      ran.push('slow');
      throw first;
    });
    steps.runSync(() => {
      ran.push('sync');
      throw new Error('second');
    });
    await steps.run(() => void ran.push('last'));
    assert.deepEqual(ran, ['slow', 'sync', 'last'], 'each step ran, the slow one to its end before the next');
    assert.throws(() => steps.rethrow(), (e: unknown) => e === first);
  });

  it('keeps a failure whatever was thrown, undefined included, and throws nothing when every step passed', async () => {
    const clean = new FirstFailure();
    await clean.run(() => undefined);
    clean.runSync(() => undefined);
    assert.doesNotThrow(() => clean.rethrow());
    const failed = new FirstFailure();
    failed.runSync(() => {
      throw undefined;
    });
    await failed.run(() => {
      throw 'later';
    });
    assert.throws(() => failed.rethrow(), (e: unknown) => e === undefined);
  });
});
