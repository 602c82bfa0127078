import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SnapshotError } from '../../errors.js';
import { openPartitionStore } from '../partition/store.js';
import { removedAtExit } from '../removed-at-exit.js';
import { newerStoreFormat, readManifest, verifySnapshotSync, type SnapshotStream } from './manifest.js';
import { pathArgument, streamOption, type StateSource } from '../export/state-source.js';
import { storeEntries, type ExportEntry } from '../export/state-export.js';

/**
 * Every [key, state, lastUpdated] of one stream's partition copies, each opened from a
 * scratch copy (opening LMDB writes a lock file, and a snapshot folder is never modified).
 * The caller has verified the copies.
 */
export function* snapshotEntries(path: string, stream: SnapshotStream): Generator<ExportEntry> {
  for (const part of [...stream.partitions].sort((a, b) => a.partition - b.partition)) {
    const scratch = mkdtempSync(join(tmpdir(), 'statestream-snapshot-'));
    const forget = removedAtExit(scratch);
    // The scratch copy goes whatever fails: the copy, the open, a read or the close.
    try {
      try {
        copyFileSync(join(path, part.file), join(scratch, 'data.mdb'));
      } catch (error) {
        throw gone(error, path, part.file);
      }
      const store = openPartitionStore(scratch);
      try {
        yield* storeEntries(store);
      } finally {
        store.env.close();
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
      forget();
    }
  }
}

/** A copy missing when its turn came was there when the snapshot was checked: the running job pruned the snapshot meanwhile. */
function gone(error: unknown, path: string, file: string): unknown {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || existsSync(join(path, file))) return error;
  return new SnapshotError(
    `the snapshot at ${path} was removed while it was read (${file} is gone): a running job prunes its oldest snapshots. Read a newer one, or raise snapshotsKept`,
    { snapshot: path, file },
    error,
  );
}

/**
 * One stream of a snapshot as a StateSource, for StateSpec.initialState: the copies are
 * checked against their checksums before the first entry is read.
 */
export function readSnapshotState<K = unknown, S = unknown>(path: string, options?: { stream?: number }): StateSource<K, S> & { batchTime: number } {
  pathArgument('readSnapshotState', 'path', path);
  const streamIndex = streamOption('readSnapshotState', options);
  const manifest = readManifest(path);
  const stream: SnapshotStream | undefined = manifest.streams.find((s) => s.stream === streamIndex);
  if (!stream) throw new SnapshotError(`the snapshot at ${path} has no stream ${streamIndex} (it has ${manifest.streams.map((s) => s.stream).join(', ')})`, { snapshot: path, stream: streamIndex });
  const newer = newerStoreFormat(stream);
  if (newer) throw new SnapshotError(`the snapshot at ${path} cannot be read: ${newer}`, { snapshot: path, stream: streamIndex });
  return {
    description: `snapshot ${path}`,
    stateVersion: stream.stateVersion,
    batchTime: manifest.batchTime,
    *entries(): Generator<[K, S, number]> {
      const problems = verifySnapshotSync({ batchTime: manifest.batchTime, path, manifest }, { stream: streamIndex, partitions: stream.partitions.map((p) => p.partition) });
      if (problems.length > 0) throw new SnapshotError(`the snapshot at ${path} is damaged: ${problems.join('; ')}`, { snapshot: path, problems });
      yield* snapshotEntries(path, stream) as Generator<[K, S, number]>;
    },
  };
}
