import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SnapshotError } from '../../errors.js';
import { fsyncTree, moveDurably } from '../durable.js';
import { partitionPath, partitionsOnDisk } from '../partition/store.js';
import { listSnapshots, newerStoreFormat, verifySnapshot, type SnapshotInfo } from './manifest.js';
import { examinePartition } from '../partition/store-check.js';

export interface RestoredPartition {
  partition: number;
  /** What was wrong with the store. */
  problem: string;
  /** The batch the restored copy holds; the source replays what came after it. */
  lastBatch: number | undefined;
}

export interface RestoreReport {
  stream: number;
  snapshot: SnapshotInfo;
  partitions: RestoredPartition[];
  /** Where the damaged stores were moved, so nothing is thrown away. */
  damagedDir: string | undefined;
}

/**
 * At start, before any store is opened for work: checks every partition store of one
 * stream (missing, truncated, failing to open) and puts the newest good snapshot's copy
 * in place of each damaged one. Healthy partitions are left as they are — they skip the
 * batches the source replays, by the batch log, exactly as after a crash.
 * Returns undefined when nothing needed restoring (including a stream that has no state yet).
 */
export async function restoreDamagedStores(dataDir: string, stream: number): Promise<RestoreReport | undefined> {
  const present = partitionsOnDisk(dataDir, stream).map((p) => examinePartition(dataDir, stream, p));
  const healthy = present.filter((h) => h.problem === undefined);
  const snapshots = listSnapshots(dataDir).filter((s) => s.manifest.streams.some((m) => m.stream === stream));
  const numPartitions = healthy.find((h) => h.layout)?.layout!.numPartitions ?? snapshots[0]?.manifest.streams.find((m) => m.stream === stream)!.numPartitions;
  if (numPartitions === undefined) {
    if (present.every((h) => h.problem === undefined)) return undefined;
    const bad = present.filter((h) => h.problem !== undefined);
    // The others are stores a first start created and never initialised: they say nothing of the partition count.
    const others = healthy.length === 0 ? '' : `; ${healthy.map((h) => `partition ${h.partition}`).join(', ')} ${healthy.length === 1 ? 'was' : 'were'} never initialised, so no store says how many partitions the stream has`;
    const subject = bad.length === present.length ? 'every partition store' : bad.length === 1 ? 'a partition store' : 'partition stores';
    throw new SnapshotError(
      `${subject} of stream ${stream} under ${dataDir} ${subject === 'partition stores' ? 'are' : 'is'} damaged (${bad.map((h) => `partition ${h.partition}: ${h.problem}`).join('; ')})${others}, and there is no snapshot to restore from`,
      { stream, dataDir, damaged: bad.map((h) => h.partition) },
    );
  }
  // No healthy store said the count, so it came from the newest snapshot: partition folders
  // past it mean the stream was resharded since, and a restore would leave those damaged.
  const beyond = healthy.some((h) => h.layout) ? [] : present.filter((h) => h.partition >= numPartitions);
  if (beyond.length > 0) {
    throw new SnapshotError(
      `every partition store of stream ${stream} under ${dataDir} is damaged, and the stores hold partitions up to ${Math.max(...present.map((h) => h.partition))} ` +
        `while the newest snapshot has ${numPartitions} (the stream was resharded since): no snapshot can restore partitions ${beyond.map((h) => h.partition).join(', ')} ` +
        `(${present.filter((h) => h.problem !== undefined).map((h) => `partition ${h.partition}: ${h.problem}`).join('; ')})`,
      { stream, dataDir, damaged: present.map((h) => h.partition) },
    );
  }
  const damaged: Array<{ partition: number; problem: string | undefined }> = [];
  for (let p = 0; p < numPartitions; p++) {
    const health = present.find((h) => h.partition === p) ?? { partition: p, problem: 'the partition folder is missing' };
    if (health.problem !== undefined) damaged.push(health);
  }
  if (damaged.length === 0) return undefined;

  // A restored partition replays forward from its copy: the copy must not be ahead of the
  // partitions that survived, and must be cut the same way.
  const oldestHealthy = healthy.reduce<number | undefined>((m, h) => (h.lastBatch !== undefined && (m === undefined || h.lastBatch < m) ? h.lastBatch : m), undefined);
  const rejected: string[] = [];
  for (const snapshot of snapshots) {
    const manifest = snapshot.manifest.streams.find((m) => m.stream === stream)!;
    if (manifest.numPartitions !== numPartitions) {
      rejected.push(`${snapshot.batchTime}: has ${manifest.numPartitions} partitions, the stores have ${numPartitions}`);
      continue;
    }
    const newer = newerStoreFormat(manifest);
    if (newer) {
      rejected.push(`${snapshot.batchTime}: ${newer}`);
      continue;
    }
    if (oldestHealthy !== undefined && snapshot.batchTime > oldestHealthy) {
      rejected.push(`${snapshot.batchTime}: newer than batch ${oldestHealthy} the surviving partitions hold`);
      continue;
    }
    const problems = await verifySnapshot(snapshot, { stream, partitions: damaged.map((d) => d.partition) });
    if (problems.length > 0) {
      rejected.push(`${snapshot.batchTime}: ${problems.join('; ')}`);
      continue;
    }
    return { stream, snapshot, partitions: damaged.map((d) => ({ partition: d.partition, problem: d.problem!, lastBatch: manifest.partitions[d.partition].lastBatch })), damagedDir: putInPlace(dataDir, stream, snapshot, manifest.partitions.filter((p) => damaged.some((d) => d.partition === p.partition))) };
  }
  throw new SnapshotError(
    `partition stores of stream ${stream} under ${dataDir} are damaged (${damaged.map((d) => `partition ${d.partition}: ${d.problem}`).join('; ')}) ` +
      (snapshots.length === 0 ? 'and there is no snapshot to restore from' : `and no snapshot can restore them (${rejected.join('; ')})`),
    { stream, dataDir, damaged: damaged.map((d) => d.partition) },
  );
}

/** Moves each damaged store aside and copies the snapshot's file in its place (copy, then rename). */
function putInPlace(dataDir: string, stream: number, snapshot: SnapshotInfo, parts: Array<{ partition: number; file: string }>): string | undefined {
  const aside = join(dataDir, 'damaged', `${Date.now()}`);
  let moved = false;
  for (const part of parts) {
    const target = partitionPath(dataDir, stream, part.partition);
    if (existsSync(target)) {
      const keep = partitionPath(aside, stream, part.partition);
      // Durably, or a power loss could leave the damaged store neither here nor in place.
      moveDurably(target, keep);
      moved = true;
    }
    const incoming = `${target}.restoring`;
    rmSync(incoming, { recursive: true, force: true });
    mkdirSync(incoming, { recursive: true });
    copyFileSync(join(snapshot.path, part.file), join(incoming, 'data.mdb'));
    fsyncTree(incoming);
    renameSync(incoming, target);
    fsyncTree(dirname(target));
  }
  return moved ? aside : undefined;
}
