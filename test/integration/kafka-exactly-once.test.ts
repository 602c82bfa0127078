import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { testRandom } from '../random.js';
import { waitUntil, within } from '../wait.js';
import { useServices } from './services/suite.js';
import { highWatermarks, JobProcess, jobConfigs, PARTITIONS, readCounts, runUntilCaughtUp, tally, words, zkOffsets, type JobConfig } from './job-process.js';
import { produceWithKcat } from './services/kafka.js';
import { startZooKeeperProxy } from './services/zookeeper-proxy.js';

/** Batches with records the job completed whose batch time is after `time` (batch times are the clock's). */
const batchesAfter = (job: JobProcess, time: number) => job.lines.filter((l) => l.startsWith('BATCH ') && Number(l.split(' ')[1]) > time);

describe('Kafka source with ZooKeeper offsets (real ZooKeeper, librdkafka mock broker)', { timeout: 600_000 }, () => {
  const services = useServices();
  const freshJob = jobConfigs(services, 'words');

  const send = (topic: string, batch: string[]) => services.producer.send({ topic, messages: batch.map((w) => ({ key: w, value: w })) });

  it('counts words produced by kcat across partitions exactly, and leaves the offsets at the end of the topic', async () => {
    const config = await freshJob();
    const input = words(400, 1);
    await produceWithKcat(services.kafka.brokers, config.topic, input.map((w) => ({ key: w, value: w })));
    const end = await highWatermarks(services.kafka.brokers, config.topic);
    assert.equal(end.reduce((a, b) => a + b, 0), 400);
    assert.ok(end.filter((n) => n > 0).length > 1, 'the words spread over several partitions');

    const job = await runUntilCaughtUp(config, PARTITIONS);
    const sizes = job.lines.filter((l) => l.startsWith('BATCH')).map((l) => Number(l.split(' ')[2]));
    assert.ok(sizes.length >= 3, 'maxRecordsPerBatch split the backlog into several batches');
    assert.ok(Math.max(...sizes) <= PARTITIONS * config.maxRecordsPerBatch, `no batch takes more than maxRecordsPerBatch per partition: ${sizes.join(',')}`);
    assert.equal(sizes.reduce((a, b) => a + b, 0), 400);
    assert.deepEqual(await zkOffsets(services.zk.connectString, config.zkRoot, config.topic, PARTITIONS), end);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(input));

    const admin = new Kafka({ brokers: services.kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const [group] = await admin.fetchOffsets({ groupId: config.groupId, topics: [config.topic] });
    await admin.disconnect();
    assert.deepEqual(group.partitions.sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset)), end, 'the consumer group shows the same progress');
  });

  it('survives SIGKILL at random moments, mid-batch, after commit and during start-up: every count exact', async (t) => {
    const random = testRandom(t);
    const config = await freshJob();
    const produced: string[] = [];
    let producing = true;
    let round = 0;
    const production = (async () => {
      while (producing) {
        const batch = words(15, round++);
        await send(config.topic, batch);
        produced.push(...batch);
        await sleep(40);
      }
    })();

    const plans: Array<{ name: string; env?: Record<string, string>; config?: Partial<JobConfig>; killAfterMs?: number; killAtLine?: RegExp }> = [
      { name: 'random moment', killAfterMs: 900 },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '40' } },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 2 } },
      // Once it owns the ZooKeeper root, with the positions, the stores and the consumer still to open.
      { name: 'during start-up', killAtLine: /^OWNER / },
      { name: 'random moment', killAfterMs: 1400 },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '7' } },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 1 } },
      { name: 'during start-up', killAfterMs: 400 },
      { name: 'random moment', killAfterMs: random.between(600, 2100) },
      { name: 'after every partition committed, before the offsets were recorded', config: { dieAfterCommitOfBatch: 3 } },
      { name: 'inside the mapping function', env: { STATESTREAM_TEST_DIE_AT_CALL: '120' } },
      { name: 'random moment', killAfterMs: random.between(300, 1800) },
    ];
    let kills = 0;
    try {
      for (const plan of plans) {
        const what = `${plan.name}${plan.killAfterMs === undefined ? '' : ` (${plan.killAfterMs} ms)`}; ${random.replay}`;
        // librdkafka's mock coordinator never evicts a member killed while its JoinGroup was
        // pending (a real broker does, after the session timeout), so each run joins a group
        // of its own; positions come from ZooKeeper either way.
        const job = new JobProcess({ ...config, ...plan.config, groupId: `${config.groupId}-run-${kills}` }, plan.env);
        if (plan.killAfterMs !== undefined) setTimeout(() => job.kill('SIGKILL'), plan.killAfterMs);
        if (plan.killAtLine) void job.waitForLine(plan.killAtLine, { from: 0, timeoutMs: 60_000 }).then(() => job.kill('SIGKILL'), () => job.kill('SIGKILL'));
        const exit = await job.exit(`the job to die: ${what}`);
        assert.equal(exit.signal, 'SIGKILL', `${what}: ${JSON.stringify(exit)}\n${job.lines.join('\n')}`);
        if (plan.name === 'during start-up') assert.ok(!job.lines.includes('STARTED'), `${what}: killed before start() returned`);
        if (plan.killAtLine) assert.ok(job.lines.some((l) => plan.killAtLine!.test(l)), `${what}: killed after it took the root`);
        assert.ok(!job.lines.some((l) => l.startsWith('FAILED')), job.lines.join('\n'));
        kills++;
      }
    } finally {
      producing = false;
      await within(production, 'the producer loop to stop');
    }
    assert.equal(kills, plans.length);

    await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-final` }, PARTITIONS);
    const counts = await readCounts(config.dataDir, config.partitions);
    assert.deepEqual(counts, tally(produced), `after ${kills} kills, ${produced.length} messages; ${random.replay}`);
  });

  it('ZooKeeper going away (down, then its session expired) stops the job without writing; a new copy resumes, rides out a broker going down, and nothing is lost or counted twice', async () => {
    const config = await freshJob();
    // The job reaches ZooKeeper through a proxy, which can keep it away while the server runs.
    const proxy = await startZooKeeperProxy(services.zk.port);
    const produced: string[] = [];
    const produce = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const batch = words(10, produced.length + i);
        await send(config.topic, batch);
        produced.push(...batch);
        await sleep(30);
      }
    };
    const job = new JobProcess({ ...config, zookeeper: proxy.connectString });
    let next: JobProcess | undefined;
    try {
      await job.waitForLine(/^STARTED$/);
      await produce(10);
      await job.waitForLine(/^BATCH/, { from: 0 });
      const [first] = proxy.handshakes;
      assert.equal(first?.requested, '0', 'the job opened a session');

      await services.zk.stop();
      const down = Date.now();
      await produce(10); // the job's batches wait for ZooKeeper now
      // The server comes back, but the job cannot reach it for longer than its 4 s session:
      // the server expires the session, and with it the job's owner node.
      proxy.cut();
      await services.zk.start();
      await sleep(6000);
      // Batch times are the clock's: a batch that began after ZooKeeper stopped cannot end
      // before its ranges are recorded there.
      assert.deepEqual(batchesAfter(job, down), [], 'no batch with records ended while ZooKeeper was away');
      proxy.restore();
      // Back in touch, it learns its session expired: it lost the root, and stops loudly
      // rather than write positions another copy may own now.
      await job.waitForLine(/^FAILED .*ERR_OWNERSHIP_LOST/, { from: 0, timeoutMs: 60_000 });
      assert.ok(job.lines.some((l) => l.startsWith('OWNERSHIP_LOST ')), job.tail());
      // What it learnt, as the server said it: the session it asked to resume is refused (expired).
      assert.notEqual(first.granted, '0');
      await waitUntil('the server to refuse the expired session', () => proxy.handshakes.some((h) => h.requested === first.granted && h.timeoutMs === 0), { detail: () => JSON.stringify(proxy.handshakes) });
      await job.stop();
      assert.deepEqual(batchesAfter(job, down), [], 'it ended no batch after losing the root');

      next = new JobProcess(config);
      await next.waitForLine(/^STARTED$/);
      const back = Date.now();
      await produce(10);
      await waitUntil('a batch with records to end on the new copy', () => batchesAfter(next!, back).length > 0, { detail: () => next!.tail() });

      await services.kafka.brokerDown(1);
      await sleep(1500);
      await services.kafka.brokerUp(1);
      const up = Date.now();
      await produce(10);
      await waitUntil('a batch with records to end after the broker came back', () => batchesAfter(next!, up).length > 0, { detail: () => next!.tail() });
      await next.stop();
      assert.ok(!next.lines.some((l) => l.startsWith('FAILED')), next.lines.join('\n'));
    } finally {
      job.kill('SIGKILL');
      next?.kill('SIGKILL');
      await proxy.close();
    }

    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });

  it('stop() while ZooKeeper is away returns promptly, though a batch waits for it, and that batch is rebuilt at the next start', async () => {
    const config = await freshJob();
    const produced = words(60, 3);
    const job = new JobProcess(config);
    let zkDown = false;
    try {
      await job.waitForLine(/^STARTED$/);
      const sent = job.lines.length;
      await send(config.topic, produced.slice(0, 30));
      // All 30 counted, however many batches took them: the batch that waits below took its
      // records after ZooKeeper stopped (under load the 30 can span two batches, and the second
      // would still be open when ZooKeeper goes).
      const counted = () => job.lines.slice(sent).filter((l) => l.startsWith('BATCH ')).reduce((n, l) => n + Number(l.split(' ')[2]), 0);
      await waitUntil('the first 30 words counted', () => counted() >= 30, { detail: () => job.tail() });
      await services.zk.stop();
      zkDown = true;
      const down = job.lines.length;
      await send(config.topic, produced.slice(30));
      // A batch that took records begins, and cannot end: it waits to record its ranges.
      let waiting: { batchTime: string; since: number } | undefined;
      await waitUntil('a batch that began after ZooKeeper stopped to wait for it for a second', () => {
        const begun = job.lines.slice(down).filter((l) => l.startsWith('BEGIN ')).map((l) => l.split(' ')[1]);
        const open = begun.find((t) => !job.lines.some((l) => l.startsWith(`END ${t} `)));
        if (open !== waiting?.batchTime) waiting = open === undefined ? undefined : { batchTime: open, since: Date.now() };
        return waiting !== undefined && Date.now() - waiting.since > 1000;
      }, { detail: () => job.tail() });
      const stopping = Date.now();
      const exit = await job.stop('SIGTERM', 20_000);
      assert.equal(exit.code, 0, 'stop() did not wait for ZooKeeper');
      assert.ok(Date.now() - stopping < 20_000);
      assert.ok(!job.lines.some((l) => l.startsWith(`END ${waiting!.batchTime} `)), `batch ${waiting!.batchTime} never ended`);
    } finally {
      // The later tests need ZooKeeper whatever happened here.
      if (job.running) job.kill('SIGKILL');
      if (zkDown) await services.zk.start();
    }
    await runUntilCaughtUp(config, PARTITIONS);
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(produced));
  });
});
