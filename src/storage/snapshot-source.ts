import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SnapshotError } from '../errors.js';
import { openPartitionStore } from './partition-store.js';
import { readManifest, type SnapshotStream } from './snapshot-manifest.js';
import type { StateSource } from './state-source.js';
import { storeEntries, type ExportEntry } from './state-export.js';

function sha256Sync(file: string): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 20);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * One stream of a snapshot as a StateSource, for StateSpec.initialState or an export:
 * each partition's copy is checked against its checksum and opened from a scratch copy
 * (opening LMDB writes a lock file, and a snapshot folder is never modified).
 */
export function readSnapshotState<K = unknown, S = unknown>(path: string, options: { stream?: number } = {}): StateSource<K, S> & { batchTime: number } {
  const manifest = readManifest(path);
  const streamIndex = options.stream ?? 0;
  const stream: SnapshotStream | undefined = manifest.streams.find((s) => s.stream === streamIndex);
  if (!stream) throw new SnapshotError(`the snapshot at ${path} has no stream ${streamIndex} (it has ${manifest.streams.map((s) => s.stream).join(', ')})`, { snapshot: path, stream: streamIndex });
  return {
    description: `snapshot ${path}`,
    stateVersion: stream.stateVersion,
    batchTime: manifest.batchTime,
    *entries(): Generator<[K, S, number]> {
      for (const part of stream.partitions) {
        const file = join(path, part.file);
        if (sha256Sync(file) !== part.sha256) throw new SnapshotError(`${file} does not match the checksum in its snapshot's manifest`, { snapshot: path, partition: part.partition });
        const scratch = mkdtempSync(join(tmpdir(), 'statestream-snapshot-'));
        copyFileSync(file, join(scratch, 'data.mdb'));
        const store = openPartitionStore(scratch);
        try {
          yield* storeEntries(store) as Generator<ExportEntry> as Generator<[K, S, number]>;
        } finally {
          store.env.close();
          rmSync(scratch, { recursive: true, force: true });
        }
      }
    },
  };
}
