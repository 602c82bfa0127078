/**
 * The Piscina worker entry point: it only adapts task messages to the partition logic.
 * The partitions pinned to this thread (their stores and their state in memory) and the
 * mapping modules are opened once per worker thread and kept.
 */
import { MappingModuleError, serializeError } from '../errors.js';
import { messageCodec } from '../storage/codec.js';
import { applyChunk, storeFailure, type MappingFunction } from './apply-shard.js';
import type { ApplyTask, CommitTask, ResolvedMappingRef, WorkerReply, WorkerTask } from './messages.js';
import { releasePartition, stopAllPartitions, workerPartition, type WorkerPartition } from './worker-partitions.js';
import { saveWarmKeys, warmMemory } from './memory-warm-up.js';

const functions = new Map<string, Promise<MappingFunction>>();

async function load(ref: ResolvedMappingRef): Promise<MappingFunction> {
  let module: Record<string, unknown>;
  try {
    module = await import(ref.url);
  } catch (error) {
    throw new MappingModuleError(`the mapping module ${ref.url} could not be loaded: ${(error as Error).message}`, { module: ref.url }, error);
  }
  const fn = module[ref.exportName];
  if (fn === undefined) {
    const names = Object.keys(module).join(', ') || 'none';
    throw new MappingModuleError(`the mapping module ${ref.url} has no export named "${ref.exportName}" (its exports: ${names})`, { module: ref.url, export: ref.exportName });
  }
  if (typeof fn !== 'function') {
    throw new MappingModuleError(`the export "${ref.exportName}" of ${ref.url} is a ${typeof fn}, not a function`, { module: ref.url, export: ref.exportName });
  }
  return fn as MappingFunction;
}

function mappingFunction(ref: ResolvedMappingRef): Promise<MappingFunction> {
  const id = `${ref.url}#${ref.exportName}`;
  let fn = functions.get(id);
  if (!fn) {
    functions.set(id, (fn = load(ref)));
    // A module that failed to load is tried afresh next time (the user may have fixed the file).
    fn.catch(() => functions.delete(id));
  }
  return fn;
}

/** The partition a batch's task works on, its store opened on first use; a store that will not open is named with the batch. */
function openedFor(task: ApplyTask | CommitTask): WorkerPartition {
  try {
    return workerPartition(task);
  } catch (error) {
    throw storeFailure(error, 'could not open its store for batch', task.storePath, task);
  }
}

export default async function run(task: WorkerTask): Promise<WorkerReply> {
  let result;
  try {
    if (task.op === 'check-module') {
      await mappingFunction(task.fn);
      result = { status: 'ok' };
    } else if (task.op === 'warm-memory') {
      result = await warmMemory(task);
    } else if (task.op === 'save-warm-keys') {
      result = saveWarmKeys(task);
    } else if (task.op === 'stop-partitions') {
      stopAllPartitions();
      result = { status: 'ok' };
    } else if (task.op === 'release-partition') {
      result = { status: 'ok', released: await releasePartition(task.storePath, task.incarnation) };
    } else {
      result = await applyChunk(openedFor(task), await mappingFunction(task.fn), task);
    }
  } catch (error) {
    result = { status: 'batch-failed', error: serializeError(error) };
  }
  let outputs: SharedArrayBuffer | undefined;
  if (result.status === 'ok' && 'outputs' in result && result.outputs.buffer instanceof SharedArrayBuffer && result.outputs.byteOffset === 0) {
    outputs = result.outputs.buffer;
    result = { ...result, outputs: undefined };
  }
  const bytes = messageCodec.pack(result);
  // A buffer of its own, of the reply's size (the codec's is larger and reused).
  return { packed: new Uint8Array(bytes).buffer, outputs };
}
