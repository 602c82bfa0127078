/**
 * What one instance's data folder holds per state partition: the cluster record of each
 * store (its epoch, positions) and the counts it holds. A running instance reads its own
 * folder and answers when asked (see the fixture's `STORES`); only a folder whose instance
 * has exited is read from the test's process. With lmdb-js 3.5.6 a process writing a store
 * failed (MDB_BAD_TXN, "No current read transaction available") in about one run of three
 * while another process opened and closed that store in a loop, as this harness used to
 * every half second; a CI run then saw a new owner miss the state its restore had written,
 * probably from the same cause. A test must not break what it checks.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Key } from 'lmdb';
import type { ClusterMeta } from '../../../src/cluster/restore-store.js';
import { decodeEntry } from '../../../src/storage/codec.js';
import { readEntries } from '../../../src/storage/partition/change-log.js';
import { partitionPath } from '../../../src/storage/partition/store.js';

export interface StoreReport {
  partition: number;
  /** The store's cluster record; absent in a store no restore has finished in. */
  meta: ClusterMeta | undefined;
  /** The counts it holds, read through its change log (an owner has not folded its last batches into place). */
  counts: Array<[string, number]>;
}

/** Every state partition store of stream 0 in `dataDir` that has a data file. */
export async function readStores(dataDir: string, partitions: number): Promise<StoreReport[]> {
  const out: StoreReport[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    const path = partitionPath(dataDir, 0, partition);
    if (!existsSync(join(path, 'data.mdb'))) continue;
    const env = open({ path, maxDbs: 8, readOnly: true });
    try {
      const meta = env.openDB<unknown, string>({ name: 'meta', encoding: 'msgpack' })?.get('cluster') as ClusterMeta | undefined;
      const counts: Array<[string, number]> = [];
      const state = env.openDB<Buffer, Key>({ name: 'state', encoding: 'binary' });
      const changeLog = env.openDB<Buffer, number>({ name: 'change-log', encoding: 'binary' });
      if (state) for (const [key, value] of readEntries({ state, changeLog })) counts.push([key as string, decodeEntry<number>(value)[0]]);
      out.push({ partition, meta, counts });
    } finally {
      await env.close();
    }
  }
  return out;
}
