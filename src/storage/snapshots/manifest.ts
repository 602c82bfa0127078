import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { SnapshotError } from '../../errors.js';
import { storeFormatProblem } from '../partition/batch-log.js';
import { digestFileSync, digestFiles, type FileDigest } from './checksum.js';

export const SNAPSHOT_FORMAT_VERSION = 1;

/** Where a source stood after the snapshot's batch: enough to replay everything after it. */
export interface SourcePositions {
  kind: string;
  /** Kafka: the ZooKeeper root holding the offsets and the batch history. */
  zookeeperRoot?: string;
  positions: Array<{ topic: string; partition: number; offset: number }>;
}

export interface SnapshotPartition {
  partition: number;
  /** Relative to the snapshot folder. */
  file: string;
  bytes: number;
  sha256: string;
  /** The batch this partition's copy holds (the snapshot's batch). */
  lastBatch: number | undefined;
  keyCount: number;
}

export interface SnapshotStream {
  stream: number;
  numPartitions: number;
  partitioner: string;
  storeFormatVersion: number;
  timeIndexed: boolean;
  stateVersion: number;
  keyCount: number;
  partitions: SnapshotPartition[];
}

export interface SnapshotManifest {
  format: 'statestream-snapshot';
  formatVersion: number;
  /** Every partition of every stream holds exactly this batch. */
  batchTime: number;
  createdAt: string;
  appName: string;
  streams: SnapshotStream[];
  sources: SourcePositions[];
}

export interface SnapshotInfo {
  batchTime: number;
  path: string;
  manifest: SnapshotManifest;
}

export function snapshotsDir(dataDir: string): string {
  return join(dataDir, 'snapshots');
}

/** A snapshot is written under a name starting with this, and renamed when whole. */
export const INCOMPLETE_PREFIX = '.incomplete-';

export function readManifest(path: string): SnapshotManifest {
  const file = join(path, 'manifest.json');
  let manifest: SnapshotManifest;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as SnapshotManifest;
  } catch (error) {
    throw new SnapshotError(`the snapshot at ${path} has no readable manifest.json: ${(error as Error).message}`, { snapshot: path }, error);
  }
  if (manifest.format !== 'statestream-snapshot') throw new SnapshotError(`${file} is not a statestream snapshot manifest`, { snapshot: path });
  if (manifest.formatVersion > SNAPSHOT_FORMAT_VERSION) {
    throw new SnapshotError(`the snapshot at ${path} has format version ${manifest.formatVersion}; this statestream reads up to ${SNAPSHOT_FORMAT_VERSION}`, { snapshot: path });
  }
  return manifest;
}

/** Why this version cannot use a snapshot stream's copies (stores in a newer store format), or undefined. */
export function newerStoreFormat(stream: SnapshotStream): string | undefined {
  const problem = storeFormatProblem(stream.storeFormatVersion);
  return problem === undefined ? undefined : `each of its stores ${problem}`;
}

/** Whole snapshots, newest first. Half-written ones are not listed (their names say so). */
export function listSnapshots(dataDir: string): SnapshotInfo[] {
  return scanSnapshots(dataDir).readable;
}

/** A snapshot's partition copies: their bytes and the keys they hold, over every stream. */
export function snapshotFigures(manifest: SnapshotManifest): { bytes: number; keyCount: number } {
  const parts = manifest.streams.flatMap((s) => s.partitions);
  return { bytes: parts.reduce((n, p) => n + p.bytes, 0), keyCount: parts.reduce((n, p) => n + p.keyCount, 0) };
}

/** The newest readable snapshot in a folder, as a status page shows one it did not see taken. */
export interface SnapshotOnDisk {
  batchTime: number;
  path: string;
  /** When it was completed (its manifest, written last), in ms since the epoch. */
  at: number;
  bytes: number;
  keyCount: number;
}

export function newestSnapshot(dataDir: string): SnapshotOnDisk | undefined {
  const newest = listSnapshots(dataDir)[0];
  if (!newest) return undefined;
  try {
    const at = statSync(join(newest.path, 'manifest.json')).mtimeMs;
    return { batchTime: newest.batchTime, path: newest.path, at, ...snapshotFigures(newest.manifest) };
  } catch {
    return undefined; // pruned meanwhile
  }
}

/** A snapshot folder whose manifest cannot be read (damaged by hand, or a newer format): never a candidate for restore. */
export interface UnreadableSnapshot {
  batchTime: number;
  path: string;
  problem: string;
}

/** Every snapshot folder, newest first: those whose manifest reads, and those whose does not, with why. */
export function scanSnapshots(dataDir: string): { readable: SnapshotInfo[]; unreadable: UnreadableSnapshot[] } {
  const dir = snapshotsDir(dataDir);
  const readable: SnapshotInfo[] = [];
  const unreadable: UnreadableSnapshot[] = [];
  if (!existsSync(dir)) return { readable, unreadable };
  for (const name of readdirSync(dir)) {
    // Named String(batchTime): a ManualClock's batch times may be negative or fractional.
    if (name === '' || String(Number(name)) !== name || !Number.isFinite(Number(name))) continue;
    const path = join(dir, name);
    try {
      readable.push({ batchTime: Number(name), path, manifest: readManifest(path) });
    } catch (error) {
      unreadable.push({ batchTime: Number(name), path, problem: (error as Error).message });
    }
  }
  const newestFirst = (a: { batchTime: number }, b: { batchTime: number }) => b.batchTime - a.batchTime;
  return { readable: readable.sort(newestFirst), unreadable: unreadable.sort(newestFirst) };
}

export function findSnapshot(dataDir: string, batchTime: number): SnapshotInfo {
  const path = join(snapshotsDir(dataDir), String(batchTime));
  if (!existsSync(path)) throw new SnapshotError(`there is no snapshot ${batchTime} under ${snapshotsDir(dataDir)}`, { snapshot: batchTime });
  return { batchTime, path, manifest: readManifest(path) };
}

/** The copies to check (of one stream's partitions, or of all): missing ones are problems already. */
function copiesToVerify(snapshot: SnapshotInfo, only?: { stream: number; partitions: number[] }): { missing: string[]; present: Array<{ file: string; part: SnapshotPartition }> } {
  const missing: string[] = [];
  const present: Array<{ file: string; part: SnapshotPartition }> = [];
  for (const stream of snapshot.manifest.streams) {
    if (only && stream.stream !== only.stream) continue;
    for (const part of stream.partitions) {
      if (only && !only.partitions.includes(part.partition)) continue;
      const file = join(snapshot.path, part.file);
      if (existsSync(file)) present.push({ file, part });
      else missing.push(`${part.file} is missing`);
    }
  }
  return { missing, present };
}

function mismatches(present: Array<{ part: SnapshotPartition }>, digests: FileDigest[]): string[] {
  return present.flatMap(({ part }, i) => {
    const digest = digests[i];
    if ('unreadable' in digest) return [`${part.file} cannot be read (${digest.unreadable})`];
    return digest.sha256 === part.sha256 ? [] : [`${part.file} does not match its checksum`];
  });
}

/** Problems with the files of some partition copies (or of all), or [] when the checksums match; hashed off the main thread. */
export async function verifySnapshot(snapshot: SnapshotInfo, only?: { stream: number; partitions: number[] }): Promise<string[]> {
  const { missing, present } = copiesToVerify(snapshot, only);
  return [...missing, ...mismatches(present, await digestFiles(present.map((c) => c.file)))];
}

/** The same check, synchronously, for callers that must answer at once (a StateSource is read synchronously). */
export function verifySnapshotSync(snapshot: SnapshotInfo, only?: { stream: number; partitions: number[] }): string[] {
  const { missing, present } = copiesToVerify(snapshot, only);
  return [...missing, ...mismatches(present, present.map((c) => digestFileSync(c.file)))];
}

/** Keeps the newest `keep` snapshots; returns those kept, newest first. */
export function pruneSnapshots(dataDir: string, keep: number): SnapshotInfo[] {
  const all = listSnapshots(dataDir);
  for (const old of all.slice(keep)) {
    // Renamed first, so a crash halfway through the delete leaves no folder that looks whole.
    const doomed = join(snapshotsDir(dataDir), `${INCOMPLETE_PREFIX}removed-${old.batchTime}`);
    renameSync(old.path, doomed);
    rmSync(doomed, { recursive: true, force: true });
  }
  return all.slice(0, keep);
}

/** A crash while a snapshot was written (or removed) leaves its temporary folder: it never counted. */
export function removeIncompleteSnapshots(dataDir: string): void {
  const dir = snapshotsDir(dataDir);
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) if (name.startsWith(INCOMPLETE_PREFIX)) rmSync(join(dir, name), { recursive: true, force: true });
}
