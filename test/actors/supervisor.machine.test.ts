import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createActor, fromCallback, fromPromise, type AnyActorRef } from 'xstate';
import { supervisorMachine, type PartitionCrashed } from '../../src/actors/supervisor.machine.js';

/** A partition stand-in that records what the supervisor tells it. */
function listener(received: string[]): AnyActorRef {
  return createActor(fromCallback(({ receive }) => receive((e) => void received.push(e.type)))).start();
}

describe('supervisor machine', () => {
  function started(maxRestarts: number, restarts: PartitionCrashed[]) {
    const machine = supervisorMachine.provide({ actors: { startup: fromPromise(async () => {}), shutdown: fromPromise(async () => {}) } });
    const actor = createActor(machine, { input: { maxRestarts, onRestart: (c) => void restarts.push(c) } }).start();
    actor.send({ type: 'START' });
    return actor;
  }

  it('restores a crashed partition while withinRestartBudget holds, then tells it to give up', async () => {
    const restarts: PartitionCrashed[] = [];
    const actor = started(2, restarts);
    await new Promise((r) => setImmediate(r));
    assert.ok(actor.getSnapshot().matches('running'));
    const received: string[] = [];
    const ref = listener(received);
    for (const crashes of [1, 2, 3]) actor.send({ type: 'PARTITION_CRASHED', stream: 0, partition: 1, batchTime: 1000, crashes, error: new Error('died'), ref });
    assert.deepEqual(received, ['RESTORE', 'RESTORE', 'GIVE_UP']);
    assert.equal(restarts.length, 2);
    assert.equal(actor.getSnapshot().context.restarts, 2);
  });

  it('gives up with an Error naming the partition when what crashed it was no Error', async () => {
    const actor = started(0, []);
    await new Promise((r) => setImmediate(r));
    const told: Array<{ type: string; error?: Error }> = [];
    const ref = createActor(fromCallback(({ receive }) => receive((e) => void told.push(e as { type: string; error?: Error })))).start();
    actor.send({ type: 'PARTITION_CRASHED', stream: 0, partition: 3, batchTime: 1000, crashes: 1, error: 'boom', ref });
    assert.deepEqual(told.map((e) => e.type), ['GIVE_UP']);
    assert.ok(told[0].error instanceof Error);
    assert.equal(told[0].error.message, 'partition 3: "boom" was thrown, which is not an Error (it is this error\'s cause)');
    assert.equal(told[0].error.cause, 'boom');
  });

  it('once CUT (a stop ran out of time), a crashed partition gives up at once, however many restarts are left', async () => {
    const restarts: PartitionCrashed[] = [];
    const actor = started(3, restarts);
    await new Promise((r) => setImmediate(r));
    actor.send({ type: 'CUT' });
    assert.ok(actor.getSnapshot().matches('cut'));
    const received: string[] = [];
    const ref = listener(received);
    actor.send({ type: 'PARTITION_CRASHED', stream: 0, partition: 0, batchTime: 1000, crashes: 1, error: new Error('Terminating worker thread'), ref });
    actor.send({ type: 'FAIL', error: new Error('the batch failed') });
    assert.deepEqual(received, ['GIVE_UP']);
    assert.equal(restarts.length, 0);
    assert.ok(actor.getSnapshot().matches('cut'), 'the failed batch does not move it: the stop goes on');
    actor.send({ type: 'STOP' });
    await new Promise((r) => setImmediate(r));
    assert.equal(actor.getSnapshot().status, 'done');
  });

  it('a crash reported once the context failed, or while it stops, releases its partition with GIVE_UP rather than leaving its batch waiting', async () => {
    const crash = (ref: AnyActorRef) => ({ type: 'PARTITION_CRASHED' as const, stream: 0, partition: 0, batchTime: 1000, crashes: 1, error: new Error('died'), ref });
    const failed = started(3, []);
    await new Promise((r) => setImmediate(r));
    failed.send({ type: 'FAIL', error: new Error('the batch failed') });
    const toldWhenFailed: string[] = [];
    failed.send(crash(listener(toldWhenFailed)));
    assert.deepEqual(toldWhenFailed, ['GIVE_UP']);

    // A shutdown that does not end: the supervisor stays stopping.
    const machine = supervisorMachine.provide({ actors: { startup: fromPromise(async () => {}), shutdown: fromPromise(() => new Promise<void>(() => undefined)) } });
    const stopping = createActor(machine, { input: { maxRestarts: 3, onRestart: () => {} } }).start();
    stopping.send({ type: 'START' });
    await new Promise((r) => setImmediate(r));
    stopping.send({ type: 'STOP' });
    assert.ok(stopping.getSnapshot().matches('stopping'));
    const toldWhenStopping: string[] = [];
    stopping.send(crash(listener(toldWhenStopping)));
    assert.deepEqual(toldWhenStopping, ['GIVE_UP']);
  });

  it('goes to failed on FAIL and on a failed startup, and stops from there', async () => {
    const actor = started(1, []);
    await new Promise((r) => setImmediate(r));
    actor.send({ type: 'FAIL', error: new Error('batch failed') });
    assert.ok(actor.getSnapshot().matches('failed'));
    assert.equal(actor.getSnapshot().context.error?.message, 'batch failed');
    actor.send({ type: 'STOP' });
    await new Promise((r) => setImmediate(r));
    assert.equal(actor.getSnapshot().status, 'done');

    const broken = supervisorMachine.provide({ actors: { startup: fromPromise<void>(async () => { throw new Error('no store'); }) } });
    const b = createActor(broken, { input: { maxRestarts: 1, onRestart: () => {} } }).start();
    b.send({ type: 'START' });
    await new Promise((r) => setImmediate(r));
    assert.ok(b.getSnapshot().matches('failed'));
    assert.equal(b.getSnapshot().context.error?.message, 'no store');
  });
});
