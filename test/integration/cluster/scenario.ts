/**
 * What the cluster tests share: the services each file starts once, the jobs it stops after
 * its tests, the words they type, and the wait for a job's stores to hold exactly those.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before } from 'node:test';
import { waitUntil } from '../../wait.js';
import { murmur2Partitioner } from '../../../src/engine/partitioner.js';
import { ClusterJobUnderTest, startClusterServices, type ClusterServices, type ClusterState } from './harness.js';

const WORDS = ['apple', 'banana', 'cherry', 'damson', 'elder', 'fig', 'grape', 'hazel', 'iris', 'juniper', 'kiwi', 'lime', 'mango', 'nectar', 'olive', 'pear', 'quince', 'rowan', 'sloe', 'tansy'];

/** `n` lines of 1–4 words each, picked by `next`. */
export function lines(n: number, next: () => number): string[] {
  return Array.from({ length: n }, () => Array.from({ length: 1 + Math.floor(next() * 4) }, () => WORDS[Math.floor(next() * WORDS.length)]).join(' '));
}

/** Every partition has one owner: the assignment, its owner node and the one store at its epoch agree. */
export function assertOneOwnerEach(state: ClusterState, live: string[]): void {
  for (const p of state.partitions) {
    assert.ok(p.assigned !== undefined && live.includes(p.assigned), `partition ${p.partition} is assigned to ${p.assigned}, not a live instance (${live.join(', ')})`);
    assert.deepEqual(p.ownerNode, { ...p.ownerNode, instance: p.assigned, epoch: p.epoch }, `partition ${p.partition}: its owner node agrees with the assignment`);
    assert.deepEqual(p.storesAtEpoch, [p.assigned], `partition ${p.partition}: exactly one store, its owner's, holds epoch ${p.epoch}`);
  }
}

/** Waits until the owners' stores hold exactly what was typed, and every partition has its one owner. */
export async function settle(job: ClusterJobUnderTest, live: string[], timeoutMs = 120_000): Promise<ClusterState> {
  const expected = job.expected();
  let last: ClusterState | undefined;
  const waiting = waitUntil(
    `the owners' stores to hold the ${job.sent.length} words typed`,
    async () => {
      for (const [id, child] of job.instances) {
        const failed = child.lines.find((l) => l.startsWith('FAILED') || l.startsWith('START_FAILED'));
        if (failed) throw new Error(`instance ${id}: ${failed}\n${child.tail()}`);
      }
      last = await job.read();
      // An assignment a leader made while a live instance was not a member yet (a killed
      // instance's old session expired before its restart joined) is consistent, but the next
      // round moves partitions to that instance: shares even over every live instance show
      // the last round (nextAssignment evens them out to within one).
      const shares = live.map((id) => last!.partitions.filter((p) => p.assigned === id).length);
      const fair = shares.every((n) => n >= Math.floor(job.options.partitions / live.length) && n <= Math.ceil(job.options.partitions / live.length));
      return fair && ClusterJobUnderTest.diff(expected, last.counts) === 'equal' && last.partitions.every((p) => p.storesAtEpoch.length === 1 && p.ownerNode?.instance === p.assigned);
    },
    {
      timeoutMs, intervalMs: 500,
      detail: () => `${last ? ClusterJobUnderTest.diff(expected, last.counts) : 'nothing read'}; partitions: ${JSON.stringify(last?.partitions)}; every line of every instance in ${job.keepLogs()}; ` +
        [...job.instances].map(([id, c]) => `\n--- ${id}:\n${c.tail(12)}`).join(''),
    },
  );
  try {
    await waiting;
  } catch (error) {
    // Which partitions lost words, and where their pairs went.
    const partitions = new Set([...expected].filter(([w, n]) => last?.counts.get(w) !== n).map(([w]) => murmur2Partitioner.partition(w, job.options.partitions)));
    const explained: string[] = [];
    for (const p of partitions) explained.push(await job.explain(p).catch((e: unknown) => `partition ${p}: ${String(e)}`));
    throw new Error(`${(error as Error).message}\n${explained.join('\n')}`);
  }
  assertOneOwnerEach(last!, live);
  return last!;
}

/** Types a few lines every `everyMs` until stopped; what was typed is in job.sent. */
export function keepTyping(job: ClusterJobUnderTest, next: () => number, everyMs = 300): { stop: () => Promise<void> } {
  let running = true;
  const loop = (async () => {
    while (running) {
      await job.type(lines(20, next));
      await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/**
 * Starts ZooKeeper and a mock cluster of 3 brokers before the tests of the describe it is
 * called in, and stops them (and every job made with `newJob`) after.
 */
export function useClusterJobs(): { readonly services: ClusterServices; newJob(appName: string, options: ConstructorParameters<typeof ClusterJobUnderTest>[2]): Promise<ClusterJobUnderTest> } {
  let services: ClusterServices | undefined;
  const jobs: ClusterJobUnderTest[] = [];
  before(async () => {
    services = await startClusterServices();
  });
  after(async () => {
    for (const job of jobs) await job.stopAll();
    await Promise.all([services?.kafka.stop(), services?.zk.stop()]);
  });
  const started = () => {
    if (services === undefined) throw new Error('the cluster services start in the suite\'s before hook');
    return services;
  };
  return {
    get services() {
      return started();
    },
    async newJob(appName, options) {
      const job = new ClusterJobUnderTest(started(), appName, options);
      jobs.push(job);
      await job.createTopics();
      return job;
    },
  };
}
