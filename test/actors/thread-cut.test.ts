import assert from 'node:assert/strict';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { claimForCut, newCutCell } from '../../src/actors/thread-cut.cjs';
import { openPartitionStore } from '../../src/storage/partition/store.js';
import { tempDir } from '../helpers.js';
import { WorkerSet } from '../../src/actors/worker-set.js';

const guard = fileURLToPath(new URL('../../src/actors/thread-cut.cjs', import.meta.url));

// A thread as Piscina starts ours: the cut cell as its workerData, threadStarted() first.
const threadCode = `
const { parentPort } = require('node:worker_threads');
const { threadStarted, uncut } = require(${JSON.stringify(guard)});
threadStarted();
parentPort.on('message', (message) => {
  if (message.op === 'hold') {
    const release = new Int32Array(message.release);
    uncut('a held region', () => {
      parentPort.postMessage('inside');
      Atomics.wait(release, 0, 0);
    });
    parentPort.postMessage('left');
  } else if (message.op === 'enter') {
    try {
      uncut('a write transaction', () => undefined);
      parentPort.postMessage('entered');
    } catch (error) {
      parentPort.postMessage(error.name + ': ' + error.message);
    }
  } else if (message.op === 'die-inside') {
    uncut('a region the thread dies in', () => process.exit(0));
  }
});
`;

function thread(cell: SharedArrayBuffer): Worker {
  return new Worker(threadCode, { eval: true, workerData: cell });
}

async function ask(worker: Worker, message: object): Promise<unknown> {
  const reply = once(worker, 'message');
  worker.postMessage(message);
  return (await reply)[0];
}

describe('thread-cut: a worker thread is claimed for termination only outside its guarded regions', () => {
  it('no claim while the thread is inside a region; once it has left, the claim holds and no region begins', async () => {
    const cell = newCutCell();
    const worker = thread(cell);
    try {
      const release = new SharedArrayBuffer(4);
      const left = new Promise((resolve) => worker.on('message', (m) => m === 'left' && resolve(m)));
      assert.equal(await ask(worker, { op: 'hold', release }), 'inside');
      assert.equal(claimForCut(cell), false, 'a thread inside a write transaction is not claimed');
      Atomics.store(new Int32Array(release), 0, 1);
      Atomics.notify(new Int32Array(release), 0);
      await left;
      assert.equal(claimForCut(cell), true, 'outside every region it is');
      assert.equal(claimForCut(cell), true, 'and stays claimed');
      assert.equal(
        await ask(worker, { op: 'enter' }),
        'ThreadCutError: the job is stopping: a write transaction does not begin on a thread about to be terminated',
      );
    } finally {
      await worker.terminate();
    }
  });

  it('a task asked of a worker set after its cut is refused with the cut\'s reason: no fresh thread starts for it', async () => {
    const workers = new WorkerSet(2, 100);
    const reason = new Error('the stop ran out of time');
    await workers.cut(reason);
    await assert.rejects(workers.run(1, { op: 'stop-partitions' }), (e: unknown) => e === reason);
    await assert.rejects(workers.runOnEveryThread({ op: 'stop-partitions' }), (e: unknown) => e === reason);
    await workers.destroy();
  });

  it("a fresh thread clears the regions its predecessor died inside, and keeps a claim", async () => {
    const cell = newCutCell();
    const dying = thread(cell);
    dying.postMessage({ op: 'die-inside' });
    await once(dying, 'exit');
    assert.equal(claimForCut(cell), false, 'the dead thread left its region counted');
    const fresh = thread(cell);
    try {
      assert.equal(await ask(fresh, { op: 'enter' }), 'entered');
      assert.equal(claimForCut(cell), true, 'the count began again at the fresh thread');
    } finally {
      await fresh.terminate();
    }
    const after = thread(cell);
    try {
      assert.match(String(await ask(after, { op: 'enter' })), /^ThreadCutError: /, 'a thread started after the claim writes nothing');
    } finally {
      await after.terminate();
    }
  });

  for (const through of ['root', 'named'] as const) {
    it(`a partition store's write transaction on a worker, begun through its ${through === 'root' ? 'environment' : 'named databases'}, is a region: the thread is claimed only after it commits`, async () => {
      const storePath = join(tempDir(), 'store');
      const cell = newCutCell();
      const worker = new Worker(new URL('../fixtures/guarded-store-thread.js', import.meta.url), { workerData: cell });
      const release = new SharedArrayBuffer(4);
      // Always let the thread out before it is terminated: terminated inside, it would keep the store's write lock.
      const letOut = () => {
        Atomics.store(new Int32Array(release), 0, 1);
        Atomics.notify(new Int32Array(release), 0);
      };
      try {
        const left = new Promise((resolve) => worker.on('message', (m) => m !== 'inside' && resolve(m)));
        assert.equal(await ask(worker, { through, storePath, release }), 'inside');
        const claimedInside = claimForCut(cell);
        letOut();
        assert.equal(await left, 'left');
        assert.equal(claimedInside, false, 'not claimed inside the transaction');
        assert.equal(claimForCut(cell), true);
        assert.equal(
          await ask(worker, { through, storePath, release }),
          'ThreadCutError: the job is stopping: a write transaction does not begin on a thread about to be terminated',
        );
      } finally {
        letOut();
        await worker.terminate();
      }
      // The transaction committed, and the one refused left no write lock behind.
      const store = openPartitionStore(storePath);
      try {
        assert.equal(store.meta.get('held-by'), through);
        store.env.transactionSync(() => store.meta.putSync('after', 1));
        assert.equal(store.meta.get('after'), 1);
      } finally {
        store.env.close();
      }
    });
  }
});
