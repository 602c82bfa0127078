import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fsyncPath, fsyncTree } from '../durable.js';
import { stateDir } from '../partition/store.js';

/**
 * How a reshard replaces a stream's stores so that a crash at any moment leaves either the
 * old stores or the new ones, whole:
 *
 *   1. the new stores are written to `state-<i>.reshard/`, closed and fsynced;
 *   2. a `complete` marker is written there (and fsynced): from here on the new stores win;
 *   3. `state-<i>` is renamed to `state-<i>.old`, `state-<i>.reshard` to `state-<i>`;
 *   4. `state-<i>.old` is deleted.
 *
 * recoverInterruptedReshard() reads which step a crash stopped at from what is on disk.
 */
export interface ReshardPaths {
  /** The live stores. */
  current: string;
  /** Where the new stores are built. */
  building: string;
  /** The old stores between the two renames and until deleted. */
  old: string;
  /** Present only once every new store is durable. */
  marker: string;
}

export function reshardPaths(dataDir: string, streamIndex: number): ReshardPaths {
  const current = stateDir(dataDir, streamIndex);
  const building = `${current}.reshard`;
  return { current, building, old: `${current}.old`, marker: join(building, 'complete') };
}

/** Where a crash can stop a reshard; the tests kill the process at each of them. */
export type ReshardStep = 'copied' | 'marked' | 'old-moved' | 'new-moved' | 'done';

/** Steps 2–4, once the stores in `paths.building` are closed. */
export function commitReshard(paths: ReshardPaths, onStep: (step: ReshardStep) => void = () => undefined): void {
  fsyncTree(paths.building);
  onStep('copied');
  writeFileSync(paths.marker, `${new Date().toISOString()}\n`);
  fsyncPath(paths.marker);
  fsyncPath(paths.building);
  onStep('marked');
  swapIn(paths, onStep);
}

function swapIn(paths: ReshardPaths, onStep: (step: ReshardStep) => void = () => undefined): void {
  if (existsSync(paths.current)) {
    renameSync(paths.current, paths.old);
    fsyncPath(dirname(paths.current));
    onStep('old-moved');
  }
  renameSync(paths.building, paths.current);
  fsyncPath(dirname(paths.current));
  onStep('new-moved');
  rmSync(paths.old, { recursive: true, force: true });
  rmSync(join(paths.current, 'complete'), { force: true });
  onStep('done');
}

/**
 * Finishes or rolls back a reshard a crash interrupted. Must run before anything opens
 * the stream's stores. Returns what it did, for the log and the tests.
 */
export function recoverInterruptedReshard(dataDir: string, streamIndex: number): 'none' | 'rolled-back' | 'finished' {
  const paths = reshardPaths(dataDir, streamIndex);
  if (existsSync(paths.building)) {
    if (existsSync(paths.marker)) {
      // The new stores are durable and complete: finish the swap, wherever it stopped.
      swapIn(paths);
      return 'finished';
    }
    // Not all new stores were written: the old ones (never touched) stay.
    rmSync(paths.building, { recursive: true, force: true });
    if (!existsSync(paths.current) && existsSync(paths.old)) renameSync(paths.old, paths.current);
    return 'rolled-back';
  }
  if (existsSync(paths.old)) {
    // The new stores are in place (the marker moved with them); only the delete was left.
    if (existsSync(paths.current)) {
      rmSync(paths.old, { recursive: true, force: true });
      return 'finished';
    }
    // Not a state the protocol leaves, but the old stores are whole: keep them.
    renameSync(paths.old, paths.current);
    return 'rolled-back';
  }
  return 'none';
}
