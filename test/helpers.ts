import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { BatchEvents, ManualClock, StateSpec, StreamingContext, type SnapshotCompletedEvent, type StreamingContextOptions } from '../src/index.js';
import { nextEvent, within } from './wait.js';
import { BatchCache } from '../src/storage/partition/batch-cache.js';
import { BatchLog, readLayout, writeLayout, type StoreLayout } from '../src/storage/partition/batch-log.js';
import { foldChangeLog } from '../src/storage/partition/change-log.js';
import { LmdbStateMap } from '../src/storage/partition/state-map.js';
import { openPartitionStore, partitionPath } from '../src/storage/partition/store.js';

/** A fresh data folder under the OS temp dir, removed when the test process ends. */
const made: string[] = [];
process.once('exit', () => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

export function tempDir(prefix = 'statestream-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/**
 * The file locks a store's open gate takes (fs-native-extensions, which ships no types), for
 * tests that hold the gate as a commit or an open in another process would: a byte range, or
 * the whole file when offset and length are left out.
 */
export const fileLocks = createRequire(import.meta.url)('fs-native-extensions') as {
  tryLock(fd: number, offset?: number, length?: number, options?: { shared?: boolean }): boolean;
  tryLock(fd: number, options?: { shared?: boolean }): boolean;
  unlock(fd: number, offset?: number, length?: number): void;
};

/** How many descriptors this process holds open: a test's check that what failed closed what it opened. */
export function openDescriptorCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** The LMDB data files under `folder` this process holds open (an open environment holds its data.mdb, twice: mapped, and for its meta pages). */
export function openDataFiles(folder: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(folder) && target.endsWith('data.mdb') ? [target] : [];
    } catch {
      return []; // the descriptor readdir itself used, closed by now
    }
  });
}

/** A state source's states by key (an export, a snapshot): what a job would start from, without the lastUpdated. */
export function statesOf<K, S>(source: { entries(): Iterable<[K, S, number]> }): Map<K, S> {
  return new Map([...source.entries()].map(([key, state]) => [key, state]));
}

/** The compiled fixture module (tests run from dist/, next to it). */
export function fixture(name: string): URL {
  return new URL(`./fixtures/${name}.js`, import.meta.url);
}

export interface KeyedJob<K, V, M, S> {
  ssc: StreamingContext;
  clock: ManualClock;
  input: ReturnType<StreamingContext['queueStream']>;
  outputs: Array<{ time: number; records: M[] }>;
  snapshots: Array<{ time: number; pairs: Array<[K, S]> }>;
  stream: ReturnType<StreamingContext['mapWithState']>;
  /** Pushes one batch of [key, value] records and runs it. */
  batch(records: Array<[K, V]>): Promise<M[]>;
  /** Runs one batch that takes a snapshot (snapshotEvery must make it due), and waits until the snapshot is in place. */
  batchWithSnapshot(records: Array<[K, V]>): Promise<SnapshotCompletedEvent>;
}

/** A started job: queue of [key, value] pairs → mapWithState(spec) with outputs and snapshots collected. */
export async function keyedJob<K, V, S, M>(
  spec: StateSpec<K, V, S, M>,
  options: Partial<StreamingContextOptions> & { dataDir: string; startMs?: number },
): Promise<KeyedJob<K, V, M, S>> {
  const { startMs, ...rest } = options;
  const clock = new ManualClock(startMs ?? 0);
  const ssc = new StreamingContext({ batchIntervalMs: 1000, threads: 2, clock, ...rest });
  const input = ssc.queueStream<[K, V]>();
  const stream = input.mapWithState(spec);
  const outputs: Array<{ time: number; records: M[] }> = [];
  const snapshots: Array<{ time: number; pairs: Array<[K, S]> }> = [];
  stream.foreachBatch((records, time) => void outputs.push({ time, records: records as M[] }));
  stream.stateSnapshots().foreachBatch((pairs, time) => void snapshots.push({ time, pairs: pairs as Array<[K, S]> }));
  await ssc.start();
  const batch = async (records: Array<[K, V]>) => {
    input.pushBatch(records);
    await clock.advance(1000);
    const last = outputs.at(-1);
    if (last?.time !== clock.now()) throw new Error(`keyedJob: batch ${clock.now()} ran no output (the last output is of batch ${String(last?.time)})`);
    return last.records;
  };
  return {
    ssc, clock, input: input as never, outputs, snapshots, stream: stream as never,
    batch,
    async batchWithSnapshot(records) {
      const batchTime = clock.now() + 1000;
      const copied = nextEvent(ssc, BatchEvents.SNAPSHOT_COMPLETED, `the snapshot of batch ${batchTime}`, { filter: (e) => e.batchTime === batchTime });
      await batch(records);
      return copied;
    },
  };
}

/** A keyedJob that runs `batches` in turn and stops cleanly: a first run whose stores a test then reads, edits or starts again. */
export async function runThenStop<K, V, S, M>(spec: StateSpec<K, V, S, M>, options: Parameters<typeof keyedJob>[1], ...batches: Array<Array<[K, V]>>): Promise<void> {
  const job = await keyedJob(spec, options);
  try {
    for (const records of batches) await job.batch(records);
  } finally {
    await job.ssc.stop();
  }
}

/** Sorts mapped records so tests compare content, not the partition order they arrived in. */
export function sorted<T>(records: T[]): T[] {
  return [...records].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : JSON.stringify(a) > JSON.stringify(b) ? 1 : 0));
}

/** Another writer commits a batch to the store behind the worker's back (a restore, an import, a second process). */
export function writeBehind(path: string, batchTime: number, entries: Array<[string, number]>): void {
  const store = openPartitionStore(path);
  try {
    // As every writer besides the partition's own worker does: the change log goes in place first, so no logged change overlays what it writes.
    foldChangeLog(store);
    const cache = new BatchCache<number>(new LmdbStateMap<number>(store), undefined);
    for (const [key, value] of entries) cache.put(key, value, batchTime);
    cache.prepare(() => undefined);
    store.env.transactionSync(() => {
      cache.flush();
      new BatchLog(store).record({ batchTime, outputs: new Uint8Array(0), keyCount: entries.length });
    });
  } finally {
    store.env.close();
  }
}

/** Rewrites the layout a partition of stream 0 records, as stores written by other code would hold it. */
export function editLayout(dataDir: string, partition: number, change: Partial<StoreLayout>): void {
  const store = openPartitionStore(partitionPath(dataDir, 0, partition));
  try {
    writeLayout(store, { ...readLayout(store)!, ...change });
  } finally {
    store.env.close();
  }
}

/**
 * Runs test/fixtures/start-stop (a job on the system clock started and stopped, with the
 * stop's timeoutMs when given) in a process of its own, and waits for that process to exit
 * by itself: a timer the stop left armed would keep it alive. Returns its exit and output.
 */
export async function startStopExit(timeoutMs?: number): Promise<{ exit: [number | null, string | null]; output: string }> {
  const args = [new URL('./fixtures/start-stop.js', import.meta.url).pathname, tempDir(), ...(timeoutMs === undefined ? [] : [String(timeoutMs)])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  try {
    const exit = await within(new Promise<[number | null, string | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal]))), "the stopped job's process to exit by itself", { timeoutMs: 30_000 });
    return { exit, output };
  } finally {
    child.kill('SIGKILL');
  }
}
