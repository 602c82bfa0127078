import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { StateSpec, murmur2Partitioner } from '../../../src/index.js';
import { BatchLog } from '../../../src/storage/partition/batch-log.js';
import { StateView } from '../../../src/storage/partition/state-view.js';
import { openPartitionStore, type PartitionStore } from '../../../src/storage/partition/store.js';
import { encodeEntry } from '../../../src/storage/codec.js';
import type { GateValue } from '../../fixtures/gate.js';
import { fixture, keyedJob, tempDir } from '../../helpers.js';
import { waitUntil, within } from '../../wait.js';

/** The first key `<prefix>-<i>` that murmur2 routes to `partition` of `n`. */
function keyIn(partition: number, n: number, prefix = 'word'): string {
  for (let i = 0; ; i++) if (murmur2Partitioner.partition(`${prefix}-${i}`, n) === partition) return `${prefix}-${i}`;
}

describe('store() queries', () => {
  // With 800 more keys, batch 2000's few changes go to each partition's change log instead of in place.
  for (const fillers of [0, 800]) it(`answer as of the last completed batch while the next one commits partition by partition (${fillers} other keys)`, async () => {
    const gate = tempDir();
    const spec = StateSpec.function<string, GateValue, number, [string, number]>(fixture('gate')).numPartitions(2);
    const job = await keyedJob(spec, { dataDir: tempDir(), threads: 2 });
    // The new key goes to the partition that commits first: its count moves before the batch completes.
    const [fast, held, fresh] = [keyIn(0, 2), keyIn(1, 2), keyIn(0, 2, 'new')];
    // The job's own open stores, to see what each partition has committed.
    const stores = (job.stream as unknown as { partitionStores(): PartitionStore[] }).partitionStores();
    const committed = (partition: number) => {
      stores[partition].env.resetReadTxn();
      return new BatchLog(stores[partition]).last()?.batchTime;
    };
    let running: Promise<void> | undefined;
    try {
      await job.batch([[fast, 1], [held, 1], ...Array.from({ length: fillers }, (_, i): [string, number] => [`filler-${i}`, 1])]);
      job.input.pushBatch([[fast, 1], [held, { gate }], [fresh, 1]]);
      running = job.clock.advance(1000);
      await waitUntil(`partition 1 to hold batch 2000 at the gate`, () => existsSync(join(gate, 'entered')));
      await waitUntil('partition 0 to commit batch 2000', () => committed(0) === 2000);
      assert.equal(committed(1), 1000, 'partition 1 has not committed batch 2000');

      const store = job.stream.store();
      assert.equal(store.get(fast), 1, `${fast}: as of batch 1000, though its partition committed 2000`);
      assert.equal(store.get(held), 1);
      assert.equal(store.get(fresh), undefined);
      assert.deepEqual([...store.entries()].filter(([k]) => !String(k).startsWith('filler-')).sort(), [[fast, 1], [held, 1]].sort());
      assert.equal(store.count(), 2 + fillers);

      writeFileSync(join(gate, 'open'), '');
      await within(running, 'batch 2000 to complete once the gate opens');
      assert.deepEqual([store.get(fast), store.get(held), store.get(fresh)], [2, 2, 1], 'batch 2000 completed: the queries move to it');
      assert.equal(store.count(), 3 + fillers);
    } finally {
      writeFileSync(join(gate, 'open'), '');
      await running?.catch(() => undefined);
      await job.ssc.stop();
    }
  });
  it('over the partitions a cluster instance holds: a key of one it does not hold is refused by its partition, the others answer', () => {
    const store = openPartitionStore(tempDir());
    const [here, elsewhere] = [keyIn(0, 2), keyIn(1, 2)];
    try {
      store.env.transactionSync(() => {
        store.state.putSync(here, encodeEntry(5, 1000));
        new BatchLog(store).record({ batchTime: 1000, outputs: new Uint8Array(0), keyCount: 1 });
      });
      const view = new StateView<string, number>([store, undefined], murmur2Partitioner);
      try {
        assert.equal(view.get(here), 5);
        assert.throws(() => view.get(elsewhere), /^Error: partition 1 is not held here$/);
        assert.deepEqual([...view.entries()], [[here, 5]]);
        assert.equal(view.count(), 1);
      } finally {
        view.release();
      }
    } finally {
      store.env.close();
    }
  });
  it('gives back the read transactions it pinned: queries keep answering batch after batch, past the readers LMDB has room for', () => {
    const store = openPartitionStore(tempDir());
    const view = new StateView<string, number>([store], murmur2Partitioner);
    try {
      // LMDB's reader table has 126 slots: a pin kept for each batch would fill it.
      for (let batch = 1; batch <= 300; batch++) {
        store.env.transactionSync(() => {
          store.state.putSync('a', encodeEntry(batch, batch * 1000));
          new BatchLog(store).record({ batchTime: batch * 1000, outputs: new Uint8Array(0), keyCount: 1 });
        });
        view.refresh();
        assert.equal(view.get('a'), batch);
        assert.equal(view.count(), 1);
        assert.deepEqual([...view.entries()], [['a', batch]]);
      }
    } finally {
      view.release();
      store.env.close();
    }
  });
});
