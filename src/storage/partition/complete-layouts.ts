import { readCheckedLayout, writeLayout, type StoreLayout } from './batch-log.js';
import { partitionPath, partitionsOnDisk, withPartitionStore } from './store.js';

/**
 * A stream's stores get their layouts when they are first created, each in a transaction
 * of its own: a first start killed part-way leaves some stores with a layout and some
 * without. Nothing reads a store without one (migration, the time index, a reshard skip
 * it), so before anything does, those are given the layout the others hold. Of several,
 * the one at the lowest state version: a store no batch has written has nothing to
 * migrate, and one written under that version needs the migration.
 * A store in a format newer than this version reads stops the start here, before anything
 * reads or writes an entry (checkStoreFormat).
 * Returns the partitions it completed.
 */
export function completeLayouts(dataDir: string, stream: number): number[] {
  const partitions = partitionsOnDisk(dataDir, stream);
  const layouts = new Map<number, StoreLayout | undefined>();
  for (const p of partitions) layouts.set(p, withPartitionStore(partitionPath(dataDir, stream, p), (store) => readCheckedLayout(store, { stream, partition: p })));
  const known = [...layouts.values()].filter((l): l is StoreLayout => l !== undefined);
  if (known.length === 0) return [];
  const source = known.reduce((a, b) => ((b.stateVersion ?? 1) < (a.stateVersion ?? 1) ? b : a));
  const missing = [...layouts].filter(([, layout]) => layout === undefined).map(([p]) => p);
  for (const p of missing) withPartitionStore(partitionPath(dataDir, stream, p), (store) => writeLayout(store, source));
  return missing;
}
