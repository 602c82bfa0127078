/**
 * What Piscina loads in each worker thread: a CommonJS shim that imports the partition worker
 * on the thread's first task. Piscina starts every worker when the pool is made and terminates
 * them in destroy(); a worker terminated while Node 20 loads an ES module through require()
 * (which Piscina tries first) or while lmdb registers its native addon takes the whole process
 * down with a fatal error. Here nothing heavy loads before a task, the context destroys the
 * pool when no task is running (a failed start, stop()), and a stop that runs out of time
 * terminates a thread only outside the import below (thread-cut.cts).
 */
import type { WorkerTask } from './messages.js';
import { threadStarted, uncutAsync } from './thread-cut.cjs';

threadStarted();

let worker: Promise<{ default: (task: WorkerTask) => Promise<unknown> }> | undefined;

module.exports = async function run(task: WorkerTask): Promise<unknown> {
  worker ??= uncutAsync('loading the partition worker', () => import('./partition.worker.js'));
  return (await worker).default(task);
};
