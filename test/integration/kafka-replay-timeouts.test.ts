import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BatchEvents, StateSpec, StreamingContext, listSnapshots, type MapWithStateStream, type StateRestoredEvent } from '../../src/index.js';
import { partitionPath } from '../../src/storage/partition/store.js';
import { fixture, tempDir } from '../helpers.js';
import { useServices } from './services/suite.js';

const TIMEOUT_MS = 350;

/** Waits for `check` to hold, failing after `ms` with `what`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('replay after a restore (real ZooKeeper, librdkafka mock broker)', { timeout: 240_000 }, () => {
  const services = useServices();

  function job(dataDir: string, topic: string) {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, threads: 1, appName: 'replay-timeouts', snapshotEvery: 1, snapshotsKept: 200 });
    const outputs: Array<{ time: number; records: unknown[] }> = [];
    const stream = ssc
      .kafkaStream({ brokers: services.kafka.brokers, topic, groupId: `${topic}-${Date.now()}`, zookeeper: { connect: services.zk.connectString, root: `/statestream/${topic}` }, groupSessionTimeoutMs: 6000 })
      .map((record) => [record.value as string, 1] as [string, number])
      .mapWithState(StateSpec.function<string, number, number, unknown>(fixture('idle-count')).numPartitions(1).timeout(TIMEOUT_MS));
    stream.foreachBatch((records, time) => void (records.length > 0 && outputs.push({ time, records })));
    return { ssc, stream: stream as MapWithStateStream<string, number, unknown>, outputs };
  }

  it('re-runs the batches that had no records, so a key times out in the restored partition as it did, and then starts afresh', async () => {
    const topic = 'idle-then-back';
    await services.kafka.createTopic(topic, 1);
    const dataDir = join(tempDir(), 'data');

    const first = job(dataDir, topic);
    await first.ssc.start();
    let firstRecord: number;
    let timedOutAt: number;
    try {
      await services.producer.send({ topic, messages: [{ value: 'K' }] });
      await until(() => first.outputs.length >= 1, 60_000, 'K counted');
      firstRecord = first.outputs[0].time;
      assert.deepEqual(first.outputs[0].records, [['K', 1]]);
      // K idles through empty batches and times out in one of them.
      await until(() => first.outputs.length >= 2, 60_000, 'K timed out');
      timedOutAt = first.outputs[1].time;
      assert.deepEqual(first.outputs[1].records, [['timeout', 'K', 1, timedOutAt]]);
      await services.producer.send({ topic, messages: [{ value: 'K' }] });
      await until(() => first.outputs.length >= 3, 60_000, 'K counted again');
      assert.deepEqual(first.outputs[2].records, [['K', 1]], 'a timed-out key starts afresh');
      await first.ssc.awaitIdle();
    } finally {
      await first.ssc.stop();
    }

    // Keep only a snapshot from before the timeout, in which K still holds 1, and lose the store.
    const kept = listSnapshots(dataDir).filter((s) => s.batchTime >= firstRecord && s.batchTime < timedOutAt);
    assert.ok(kept.length > 0, `a snapshot between ${firstRecord} and ${timedOutAt}`);
    for (const s of listSnapshots(dataDir)) if (s.batchTime !== kept[0].batchTime) rmSync(s.path, { recursive: true });
    rmSync(partitionPath(dataDir, 0, 0), { recursive: true });

    const second = job(dataDir, topic);
    const restored: StateRestoredEvent[] = [];
    second.ssc.on(BatchEvents.STATE_RESTORED, (e) => restored.push(e));
    await second.ssc.start();
    try {
      await second.ssc.awaitIdle();
      assert.equal(restored[0]?.snapshot, kept[0].batchTime);
      assert.equal(second.stream.store().get('K'), 1, 'K timed out in a re-run empty batch, then its record started it afresh');
    } finally {
      await second.ssc.stop();
    }
  });
});
