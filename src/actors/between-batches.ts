import { setTimeout as sleep } from 'node:timers/promises';
import { heldPartition, syncWithStore, type WorkerPartition } from './worker-partitions.js';

/**
 * Work a worker does for a partition between its batches: each step waits its turn behind
 * the chunks already queued and is put off while a batch is being applied, so a batch never
 * sees its store or memory change under it, and a chunk that arrives waits for one step at
 * most. A step begins as a batch does, with memory checked against the store's batch log. Returns undefined when the step was put off (a batch was being applied, or the job
 * is stopping); `putOff` says how many times in a row it was, to wait longer each time.
 */
export async function betweenBatches<T>(partition: WorkerPartition, step: () => T, putOff = 0): Promise<T | undefined> {
  let ran = false;
  const turn = partition.queue.then(() => {
    if (partition.application || partition.stopping) return undefined;
    ran = true;
    // Someone else wrote the store since (a restore, another owner): memory, and the log it knows, go before the step reads them.
    syncWithStore(partition);
    return step();
  });
  partition.queue = turn.then(
    () => undefined,
    () => undefined,
  );
  const result = await turn;
  // A batch in progress holds the partition until its commit: look again later, the longer
  // the more often it was put off (a two-phase batch may wait on its caller for long).
  if (ran) await new Promise((resolve) => setImmediate(resolve));
  else await sleep(Math.min(100, 2 ** putOff));
  return ran ? result : undefined;
}

/** Whether the thread still holds this partition as it was opened, and the job goes on. */
export function stillServing(partition: WorkerPartition): boolean {
  return heldPartition(partition.store.path, partition.incarnation) === partition && !partition.stopping;
}

/**
 * After a batch's commit: the work its durable map would otherwise leave to the next commit
 * (the change log's fold, storage/partition/logged-state-map.ts), done between batches. It
 * starts on a later turn of the event loop, after the batch's reply has gone.
 */
export function scheduleIdleWork(partition: WorkerPartition): void {
  if (partition.idleScheduled || !partition.memory.hasIdleWork()) return;
  partition.idleScheduled = true;
  void (async () => {
    try {
      await new Promise((resolve) => setImmediate(resolve));
      for (let putOff = 0; stillServing(partition) && partition.memory.hasIdleWork(); ) {
        const done = await betweenBatches(
          partition,
          () => {
            partition.memory.idleWork();
            return true;
          },
          putOff,
        );
        putOff = done ? 0 : putOff + 1;
      }
    } catch {
      // A fold that failed left the log as it was: the next commit folds instead.
    } finally {
      partition.idleScheduled = false;
    }
  })();
}
