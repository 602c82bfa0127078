import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { StateSpec, murmur2Partitioner } from '../../../src/index.js';
import { FORMAT_VERSION, readLayout, writeLayout, type StoreLayout } from '../../../src/storage/partition/batch-log.js';
import { completeLayouts } from '../../../src/storage/partition/complete-layouts.js';
import { openPartitionStore, partitionPath, partitionsOnDisk, stateDir } from '../../../src/storage/partition/store.js';
import { fixture, keyedJob, runThenStop, tempDir } from '../../helpers.js';
import { fromCount, type Tally } from '../../fixtures/idle-tally.js';

type Value = number | 'touch';
const v1 = (n = 3) => StateSpec.function<string, Value, number, unknown>(fixture('idle-count')).numPartitions(n).timeout(60_000);
const v2 = (n = 3) => StateSpec.function<string, Value, Tally, unknown>(fixture('idle-tally')).numPartitions(n).timeout(60_000).stateVersion(2, fromCount);
const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);

/** What a first start killed while writing layouts leaves: every store created, a layout in `withLayout` only. */
function firstStartCutShort(dataDir: string, withLayout: number[], numPartitions = 3): void {
  const layout: StoreLayout = { numPartitions, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed: true, stateVersion: 1 };
  for (let p = 0; p < numPartitions; p++) {
    const store = openPartitionStore(partitionPath(dataDir, 0, p));
    if (withLayout.includes(p)) writeLayout(store, layout);
    store.env.close();
  }
}

function layouts(dataDir: string): Array<StoreLayout | undefined> {
  return partitionsOnDisk(dataDir, 0).map((p) => {
    const store = openPartitionStore(partitionPath(dataDir, 0, p));
    try {
      return readLayout(store);
    } finally {
      store.env.close();
    }
  });
}

describe('partition stores left without a layout by a first start cut short', () => {
  for (const withLayout of [[0], [1, 2]]) {
    it(`are completed at the next start, so a stateVersion migration reaches every partition (layout in partition${withLayout.length > 1 ? 's' : ''} ${withLayout.join(', ')} only)`, async () => {
      const dataDir = tempDir();
      firstStartCutShort(dataDir, withLayout);
      assert.ok(new Set(keys.map((k) => murmur2Partitioner.partition(k, 3))).size === 3, 'the keys reach every partition');

      await runThenStop(v1(), { dataDir }, keys.map((k) => [k, 1]));

      const second = await keyedJob(v2(), { dataDir, startMs: 1000 });
      try {
        const states = [...second.stream.store().entries()];
        assert.equal(states.length, keys.length);
        for (const [key, state] of states) assert.deepEqual(state, { count: 1, firstSeen: null }, `${key} was migrated`);
        assert.deepEqual(await second.batch([['k1', 2]]), [['k1', 3]]);
      } finally {
        await second.ssc.stop();
      }
      assert.deepEqual(layouts(dataDir).map((l) => l?.stateVersion), [2, 2, 2], 'every partition has its layout, at the new version');
    });
  }

  it('are completed before a rescale reads the layout', async () => {
    const dataDir = tempDir();
    firstStartCutShort(dataDir, [1, 2]);
    const job = await keyedJob(v1(5), { dataDir });
    try {
      await job.batch(keys.map((k) => [k, 1]));
      assert.equal(job.stream.store().count(), keys.length);
    } finally {
      await job.ssc.stop();
    }
    assert.deepEqual(layouts(dataDir).map((l) => l?.numPartitions), [5, 5, 5, 5, 5], 'the stores were re-sharded to 5 partitions, each with its layout');
  });

  it('are given the layout at the lowest state version the others hold, so that a migration still due reaches them', () => {
    const dataDir = tempDir();
    firstStartCutShort(dataDir, []);
    const layout: StoreLayout = { numPartitions: 3, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed: true };
    for (const [p, stateVersion] of [[0, 2], [1, 1]]) {
      const store = openPartitionStore(partitionPath(dataDir, 0, p));
      writeLayout(store, { ...layout, stateVersion });
      store.env.close();
    }
    assert.deepEqual(completeLayouts(dataDir, 0), [2]);
    assert.deepEqual(layouts(dataDir).map((l) => l?.stateVersion), [2, 1, 1]);
  });

  it('a folder a restore cut short left beside them (partition-0001.restoring) is no partition: none is read or created for it', () => {
    const dataDir = tempDir();
    firstStartCutShort(dataDir, [1, 2]);
    mkdirSync(`${partitionPath(dataDir, 0, 1)}.restoring`);
    assert.deepEqual(partitionsOnDisk(dataDir, 0), [0, 1, 2]);
    assert.deepEqual(completeLayouts(dataDir, 0), [0]);
    assert.deepEqual(readdirSync(stateDir(dataDir, 0)).sort(), ['partition-0000', 'partition-0001', 'partition-0001.restoring', 'partition-0002']);
  });
});
