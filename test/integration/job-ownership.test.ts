import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type zookeeper from 'node-zookeeper-client';
import { tempDir } from '../helpers.js';
import { eventually, within } from '../wait.js';
import { JobProcess, jobConfigs, PARTITIONS, readCounts, runUntilCaughtUp, tally, waitUntilCaughtUp, type JobConfig } from './job-process.js';
import { produceWithKcat } from './services/kafka.js';
import { useServices } from './services/suite.js';
import { connectClient, zkAnswer } from './services/zookeeper.js';

// Short, so a pause outlives it quickly; the server's small tick expires sessions close to it.
const SESSION_MS = 3000;
const TICK_MS = 250;
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const example = fileURLToPath(new URL('../../examples/kafka-word-count/main.js', import.meta.url));
const wordsFor = (n: number, seed: number) => Array.from({ length: n }, (_, i) => `w${(i * 11 + seed) % 29}`);

interface OwnerLine {
  node: string;
  pid: number;
  waitedMs: number;
  tookOverFrom?: { node: string; owner: { pid: number }; reason: string };
}

interface Refusal {
  code: string;
  message: string;
  context: Record<string, unknown>;
}

/** The first line the job printed that starts with `prefix`; fails naming it, with the job's output. */
async function lineFrom(job: JobProcess, prefix: string, timeoutMs = 60_000): Promise<string> {
  return eventually(`a line starting "${prefix}"`, () => job.lines.find((l) => l.startsWith(prefix)), { timeoutMs, detail: () => `the job's output:\n${job.lines.slice(-30).join('\n')}` });
}

const json = async <T>(job: JobProcess, prefix: string, timeoutMs?: number): Promise<T> => JSON.parse((await lineFrom(job, `${prefix} `, timeoutMs)).slice(prefix.length + 1)) as T;

/** A copy that must not start: it exits 1 and says why. */
async function refusedStart(job: JobProcess): Promise<Refusal> {
  const exit = await within(job.exited, 'the refused copy to exit', { timeoutMs: 60_000 }).catch((error: unknown) => {
    job.kill('SIGKILL');
    throw new Error(`${(error as Error).message}; its output:\n${job.lines.join('\n')}`);
  });
  assert.equal(exit.code, 1, `the refused copy exits 1: ${JSON.stringify(exit)}\n${job.lines.join('\n')}`);
  assert.ok(!job.lines.includes('STARTED'), job.lines.join('\n'));
  return json<Refusal>(job, 'START_FAILED');
}

const exists = (client: zookeeper.Client, path: string) => zkAnswer<boolean>((done) => client.exists(path, (error, stat) => done(error, Boolean(stat))));

/** Everything a job writes to ZooKeeper, as it stands: positions, the batch in flight, the last batch. */
async function written(client: zookeeper.Client, config: JobConfig): Promise<Record<string, string>> {
  const paths = [...Array.from({ length: PARTITIONS }, (_, p) => `offsets/${config.topic}/${p}`), 'batch', 'last-batch'];
  const values = await Promise.all(paths.map((p) => zkAnswer<Buffer>((done) => client.getData(`${config.zkRoot}/${p}`, (error, data) => done(error, data)))));
  return Object.fromEntries(paths.map((p, i) => [p, values[i]?.toString('utf8') ?? '']));
}

describe('one copy of a job at a time: the data-folder lock and ZooKeeper ownership (real ZooKeeper, mock broker, jobs as processes)', { timeout: 600_000 }, () => {
  // Sessions up to a minute, for the copy whose owner node must outlive a slow start of the next (below).
  const services = useServices({ zookeeper: { tickTime: TICK_MS, maxSessionTimeout: 60_000 } });
  const configs = jobConfigs(services, 'owned');
  const freshJob = () => configs({ zkSessionTimeoutMs: SESSION_MS });

  /** A run of the job under a consumer group of its own (the mock coordinator keeps dead members). */
  const copy = (config: JobConfig, name: string, overrides: Partial<JobConfig> = {}) => new JobProcess({ ...config, groupId: `${config.groupId}-${name}`, ...overrides });
  const produce = (config: JobConfig, words: string[]) => produceWithKcat(services.kafka.brokers, config.topic, words.map((w) => ({ key: w, value: w })));

  it('a second copy fails at start naming the running one, on the same folder or on another with the same ZooKeeper root; the first goes on and every count is exact', async () => {
    const config = await freshJob();
    const words = wordsFor(400, 1);
    const first = copy(config, 'first');
    try {
      const owner = await json<OwnerLine>(first, 'OWNER');
      await lineFrom(first, 'STARTED');
      await produce(config, words.slice(0, 200));

      const sameFolder = await refusedStart(copy(config, 'same-folder'));
      assert.equal(sameFolder.code, 'ERR_DATA_DIR_LOCKED');
      const inUse = `the data folder ${config.dataDir} is in use by process ${owner.pid} on host \\S+ \\(job "kafka-count-job", since \\d{4}-[\\d-]+T[\\d:.]+Z\\)`;
      assert.match(sameFolder.message, new RegExp(`^start\\(\\): ${inUse}`));
      // The README's example, pointed at the same folder, says so and exits 1.
      const exampleRun = spawnSync(process.execPath, [example, '--brokers', config.brokers.join(','), '--topic', config.topic, '--zookeeper', config.zookeeper, '--zk-root', config.zkRoot, '--data-dir', config.dataDir], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(exampleRun.status, 1, exampleRun.stderr);
      assert.match(exampleRun.stderr, new RegExp(`^kafka-word-count: cannot start: start\\(\\): ${inUse}`));

      const otherDir = join(tempDir(), 'other');
      const otherFolder = await refusedStart(copy(config, 'other-folder', { dataDir: otherDir }));
      assert.equal(otherFolder.code, 'ERR_JOB_OWNED');
      assert.match(otherFolder.message, new RegExp(`the ZooKeeper root ${config.zkRoot} is owned by process ${owner.pid} on host \\S+ \\(job "kafka-count-job" on data folder ${config.dataDir}, since `));
      assert.equal(otherFolder.context.node, owner.node);

      // inspect names the folder's holder and the root's owner; the refused copy left no node behind.
      const inspected = spawnSync(process.execPath, [cli, 'inspect', '--json', '--data-dir', config.dataDir, '--zookeeper', config.zookeeper, '--zk-root', config.zkRoot], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(inspected.status, 0, inspected.stderr);
      const report = JSON.parse(inspected.stdout) as { lock: { held: boolean; holder: { pid: number } }; offsets: { owner: { node: string; record: { pid: number; dataDir: string } }; waiting: unknown[] } };
      assert.deepEqual([report.lock.held, report.lock.holder.pid], [true, owner.pid]);
      assert.deepEqual([report.offsets.owner.node, report.offsets.owner.record.pid, report.offsets.owner.record.dataDir], [owner.node, owner.pid, config.dataDir]);
      assert.deepEqual(report.offsets.waiting, []);

      await produce(config, words.slice(200));
      await waitUntilCaughtUp(first, config, PARTITIONS, 90_000);
      assert.ok(!first.lines.some((l) => l.startsWith('FAILED') || l.startsWith('OWNERSHIP_LOST')), first.lines.join('\n'));
    } finally {
      first.kill('SIGTERM');
      await within(first.exited, 'the first copy to stop', { timeoutMs: 60_000 });
    }
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(words));
  });

  it('a job paused (SIGSTOP) past its ZooKeeper session stops with OwnershipLostError when resumed and writes nothing; a new copy then counts every word exactly', async (t) => {
    const config = await freshJob();
    const words = wordsFor(300, 2);
    const client = await connectClient(services.zk.connectString);
    try {
      const paused = copy(config, 'paused');
      let before: Record<string, string> | undefined;
      try {
        const owner = await json<OwnerLine>(paused, 'OWNER');
        await produce(config, words.slice(0, 150));
        await waitUntilCaughtUp(paused, config, PARTITIONS, 90_000);
        paused.kill('SIGSTOP');
        before = await written(client, config);
        // Records it would take at once if it could run.
        await produce(config, words.slice(150));
        const pausedAt = Date.now();
        await eventually("ZooKeeper to expire the paused job's session, removing its owner node", async () => ((await exists(client, owner.node)) ? undefined : true), { timeoutMs: 30_000 });
        t.diagnostic(`the paused job's owner node went ${Date.now() - pausedAt} ms after the pause (session timeout ${SESSION_MS} ms, tick ${TICK_MS} ms)`);

        paused.kill('SIGCONT');
        const failed = await json<Refusal>(paused, 'FAILED');
        assert.equal(failed.code, 'ERR_OWNERSHIP_LOST');
        assert.match(failed.message, new RegExp(`^the job no longer owns its ZooKeeper root ${config.zkRoot}: .*ZooKeeper expired its session \\(as it does when the process is paused or cut off for longer than the session timeout, ${SESSION_MS} ms\\)`));
        assert.match(await lineFrom(paused, 'OWNERSHIP_LOST '), /no longer owns its ZooKeeper root/);
        assert.deepEqual(await written(client, config), before, 'the resumed job wrote no position, batch or last batch');
      } finally {
        paused.kill('SIGCONT');
        paused.kill('SIGTERM');
        await within(paused.exited, 'the paused job to stop', { timeoutMs: 60_000 });
      }
      assert.deepEqual(await written(client, config), before, 'nor on its way out');
      await runUntilCaughtUp({ ...config, groupId: `${config.groupId}-after` }, PARTITIONS);
    } finally {
      client.close();
    }
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(words));
  });

  it("a SIGKILLed job's folder lock blocks nothing, its owner node goes within the session timeout, and a restart on this host takes over at once", async (t) => {
    const config = await freshJob();
    const words = wordsFor(300, 3);
    const client = await connectClient(services.zk.connectString);
    try {
      const killed = copy(config, 'killed');
      const killedOwner = await json<OwnerLine>(killed, 'OWNER');
      await produce(config, words.slice(0, 150));
      await lineFrom(killed, 'BATCH ');
      killed.kill('SIGKILL');
      const killedAt = Date.now();
      await within(killed.exited, 'the killed job to exit', { timeoutMs: 30_000 });
      await eventually("the killed job's owner node to go", async () => ((await exists(client, killedOwner.node)) ? undefined : true), { timeoutMs: 30_000 });
      const lingered = Date.now() - killedAt;
      t.diagnostic(`a SIGKILLed job's owner node lingered ${lingered} ms (session timeout ${SESSION_MS} ms, tick ${TICK_MS} ms)`);
      // ZooKeeper removes it when the session expires: within the job's timeout, a few ticks, and
      // the disk writes of a loaded machine; below the 10 s default a job that ignored its option would get.
      assert.ok(lingered <= 2 * SESSION_MS + 8 * TICK_MS, `the owner node lingered ${lingered} ms`);

      // Killed right after it started: its node is still there when the next copy starts on the same folder.
      // A session of 30 s, so that it still is when a loaded machine starts the next process slowly
      // (with 3 s, and then 5 s, the node had expired before it looked, now and then).
      const second = copy(config, 'second', { zkSessionTimeoutMs: 30_000 });
      const secondOwner = await json<OwnerLine>(second, 'OWNER');
      assert.equal(secondOwner.tookOverFrom, undefined, 'the first owner node was gone already');
      await lineFrom(second, 'STARTED');
      second.kill('SIGKILL');
      await within(second.exited, 'the second job to exit', { timeoutMs: 30_000 });
      const third = copy(config, 'third');
      try {
        const thirdOwner = await json<OwnerLine>(third, 'OWNER');
        await lineFrom(third, 'STARTED');
        assert.equal(thirdOwner.tookOverFrom?.node, secondOwner.node);
        assert.equal(thirdOwner.tookOverFrom?.owner.pid, secondOwner.pid);
        assert.match(thirdOwner.tookOverFrom?.reason ?? '', new RegExp(`^process ${secondOwner.pid} no longer runs on `));
        t.diagnostic(`the restart waited ${thirdOwner.waitedMs} ms for the killed job's owner node`);
        assert.equal(await exists(client, secondOwner.node), false);
        await produce(config, words.slice(150));
        await waitUntilCaughtUp(third, config, PARTITIONS, 90_000);
      } finally {
        third.kill('SIGTERM');
        await within(third.exited, 'the third job to stop', { timeoutMs: 60_000 });
      }
    } finally {
      client.close();
    }
    assert.deepEqual(await readCounts(config.dataDir, config.partitions), tally(words));
  });
});
