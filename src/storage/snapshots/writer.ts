import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open as openFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SnapshotError } from '../../errors.js';
import { BatchLog, readLayout } from '../partition/batch-log.js';
import { checkAndHashCopies } from './checksum.js';
import type { PartitionStore } from '../partition/store.js';
import { partitionPath } from '../partition/store.js';
import {
  INCOMPLETE_PREFIX, SNAPSHOT_FORMAT_VERSION, snapshotsDir,
  type SnapshotInfo, type SnapshotManifest, type SnapshotPartition, type SnapshotStream, type SourcePositions,
} from './manifest.js';

export interface SnapshotRequest {
  dataDir: string;
  /** The batch every partition has committed, and none has gone past. */
  batchTime: number;
  appName: string;
  streams: Array<{ stream: number; stores: PartitionStore[] }>;
  sources: SourcePositions[];
}

export interface SnapshotInProgress {
  /**
   * Resolves once every copy holds its read transaction: from then on partitions may commit
   * the next batch without it reaching the snapshot. Takes milliseconds, not the copy's time.
   */
  started: Promise<void>;
  /** Resolves when the snapshot is whole and in place under its batch time. */
  done: Promise<SnapshotInfo>;
}

/**
 * Copies every partition environment with LMDB's backup (mdb_env_copy2 on a libuv thread,
 * reading one MVCC snapshot while batches keep committing), into a folder that is renamed
 * into place only when the copies, their checksums and the manifest are on disk. The copy
 * is compacting (MDB_CP_COMPACT): it writes the live pages only, not the free pages a store
 * accumulates, so at 10^6 keys a snapshot is 42 MB instead of 122, and the batches that run
 * beside it compete with a third of the disk writes and hashing (docs/snapshots.md).
 *
 * The caller must start it between batches: each partition's last committed batch is read
 * here, and `started` must resolve before any partition commits the next one.
 */
export function beginSnapshot(request: SnapshotRequest): SnapshotInProgress {
  const { dataDir, batchTime } = request;
  const finalPath = join(snapshotsDir(dataDir), String(batchTime));
  if (existsSync(finalPath)) {
    const error = new SnapshotError(`a snapshot of batch ${batchTime} already exists at ${finalPath}`, { snapshot: batchTime });
    return { started: Promise.resolve(), done: Promise.reject(error) };
  }
  const temp = join(snapshotsDir(dataDir), `${INCOMPLETE_PREFIX}${batchTime}-${process.pid}`);
  rmSync(temp, { recursive: true, force: true });

  // Every check before the first copy starts, so a refusal leaves nothing running.
  const streams: Array<Omit<SnapshotStream, 'partitions' | 'keyCount'>> = [];
  const planned: Array<{ stream: number; partition: number; store: PartitionStore; lastBatch: number | undefined; keyCount: number }> = [];
  for (const { stream, stores } of request.streams) {
    const layout = readLayout(stores[0]);
    if (!layout) throw new SnapshotError(`stream ${stream} has no layout in ${stores[0].path}: nothing to snapshot`, { stream });
    streams.push({
      stream, numPartitions: layout.numPartitions, partitioner: layout.partitioner, storeFormatVersion: layout.formatVersion,
      timeIndexed: layout.timeIndexed ?? true, stateVersion: layout.stateVersion ?? 1,
    });
    stores.forEach((store, partition) => {
      store.env.resetReadTxn();
      // The manifest says one state version for the stream: a migration a crash cut short
      // between partitions (some switched over, some not) would be recorded as done.
      const version = readLayout(store)?.stateVersion ?? 1;
      if (version !== (layout.stateVersion ?? 1)) {
        throw new SnapshotError(
          `partition ${partition} of stream ${stream} holds states of version ${version}, partition 0 of version ${layout.stateVersion ?? 1}: a state migration was interrupted; start the job once to finish it, then snapshot`,
          { stream, partition, snapshot: batchTime, stateVersion: version },
        );
      }
      const last = new BatchLog(store).last();
      if (last?.batchTime !== undefined && last.batchTime !== batchTime) {
        throw new SnapshotError(
          `partition ${partition} of stream ${stream} holds batch ${last.batchTime}, not ${batchTime}: a snapshot is taken only when every partition holds the same batch`,
          { stream, partition, snapshot: batchTime, lastBatch: last.batchTime },
        );
      }
      planned.push({ stream, partition, store, lastBatch: last?.batchTime, keyCount: last?.keyCount ?? 0 });
    });
  }

  const copies: Array<{ stream: number; dir: string; settled: boolean; copy: Promise<void>; info: Omit<SnapshotPartition, 'bytes' | 'sha256'> }> = [];
  let beginFailure: { error: unknown } | undefined;
  try {
    for (const { stream, partition, store, lastBatch, keyCount } of planned) {
      const dir = partitionPath(temp, stream, partition);
      mkdirSync(dir, { recursive: true });
      const entry = {
        stream, dir, settled: false, copy: store.env.backup(dir, true),
        info: { partition, file: relative(temp, join(dir, 'data.mdb')), lastBatch, keyCount },
      };
      entry.copy.then(() => (entry.settled = true), () => (entry.settled = true));
      copies.push(entry);
    }
  } catch (error) {
    // The copies begun already run on: `done` reports the failure once they end, as a copy's.
    beginFailure = { error };
  }

  // mdb_env_copy2 creates the file and begins the copy's read transaction before it writes
  // a byte (the compacting copy writes its first buffer, up to 1 MiB of pages, after
  // walking that far): a non-empty file means its view is fixed.
  const started = (async () => {
    if (beginFailure) return;
    for (const c of copies) {
      while (!c.settled && !(existsSync(join(c.dir, 'data.mdb')) && statSync(join(c.dir, 'data.mdb')).size > 0)) await sleep(1);
    }
  })();

  const done = (async (): Promise<SnapshotInfo> => {
    const startedAt = Date.now();
    let renamed = false;
    try {
      // Every copy settles before a failure is reported: the folder is removed and the stores may close only once none runs.
      const settled = await Promise.allSettled(copies.map((c) => c.copy));
      if (beginFailure) throw beginFailure.error;
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const manifest: SnapshotManifest = {
        format: 'statestream-snapshot', formatVersion: SNAPSHOT_FORMAT_VERSION, batchTime, createdAt: new Date(startedAt).toISOString(),
        appName: request.appName, sources: request.sources, streams: [],
      };
      const files = copies.map((c) => join(c.dir, 'data.mdb'));
      for (const file of files) await syncFile(file);
      // The compacting copy rebuilds the trees page by page (lmdb-js has an open report of a
      // compacted backup that did not open, its issue 198): each copy passes the same file
      // check as a store at start before the snapshot counts, on the checksum thread.
      const checked = await checkAndHashCopies(files);
      checked.forEach(({ problem }, i) => {
        if (problem) throw new SnapshotError(`the copy of partition ${copies[i].info.partition} of stream ${copies[i].stream} is not whole: ${problem}`, { snapshot: batchTime, stream: copies[i].stream, partition: copies[i].info.partition });
      });
      const sums = checked.map((c) => c.sha256);
      for (const stream of streams) {
        const partitions: SnapshotPartition[] = [];
        copies.forEach((c, i) => {
          if (c.stream === stream.stream) partitions.push({ ...c.info, bytes: statSync(files[i]).size, sha256: sums[i] });
        });
        manifest.streams.push({ ...stream, keyCount: partitions.reduce((n, p) => n + p.keyCount, 0), partitions });
      }
      writeFileSync(join(temp, 'manifest.json'), JSON.stringify(manifest, null, 2));
      await syncFile(join(temp, 'manifest.json'));
      // The folders' entries too, deepest first: after a power loss a renamed snapshot could
      // otherwise lack its manifest or a copy (as a restore's folders are synced, fsyncTree).
      const folders = [...new Set(copies.map((c) => c.dir)), ...new Set(copies.map((c) => dirname(c.dir))), temp];
      for (const folder of folders) await syncFile(folder);
      renameSync(temp, finalPath);
      renamed = true;
      await syncFile(snapshotsDir(dataDir));
      // The first snapshot made the snapshots folder itself: its entry in the data folder too,
      // since the Kafka batch history is trimmed to this snapshot once it is whole.
      await syncFile(dataDir);
      return { batchTime, path: finalPath, manifest };
    } catch (error) {
      // A snapshot reported failed must not be listed (a restore would take it, and nothing
      // prunes or trims the history for it): its rename was not known to be durable.
      rmSync(renamed ? finalPath : temp, { recursive: true, force: true });
      throw error instanceof SnapshotError ? error : new SnapshotError(`the snapshot of batch ${batchTime} failed: ${(error as Error).message}`, { snapshot: batchTime }, error);
    }
  })();
  return { started, done };
}

/** fsync on the libuv pool, so the main thread keeps routing batches. */
async function syncFile(path: string): Promise<void> {
  const handle = await openFile(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
