/**
 * What Piscina loads in each worker thread: a CommonJS shim that imports the partition worker
 * on the thread's first task. Piscina starts every worker when the pool is made and terminates
 * them in destroy(); a worker terminated while Node 20 loads an ES module through require()
 * (which Piscina tries first) or while lmdb registers its native addon takes the whole process
 * down with a fatal error. Here nothing heavy loads before a task, and the context destroys the
 * pool only when no task is running (a failed start, stop()), so no load is ever cut short.
 */
import type { WorkerTask } from './messages.js';

let worker: Promise<{ default: (task: WorkerTask) => Promise<unknown> }> | undefined;

module.exports = async function run(task: WorkerTask): Promise<unknown> {
  worker ??= import('./partition.worker.js');
  return (await worker).default(task);
};
