import { existsSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fsyncPath, fsyncTree, moveDurably } from './durable.js';
import { stateDir } from './partition/store.js';

/**
 * How a stream's stores are replaced whole, by a reshard, an import or a snapshot restore,
 * so that a crash at any moment leaves either the old stores or the new ones, whole, and
 * never neither:
 *
 *   1. the new stores are written to `state-<i>.<kind>/`, closed and fsynced;
 *   2. a `complete` marker is written there (and fsynced), naming where the old stores go:
 *      from here on the new stores win;
 *   3. the old stores move away (a reshard's to `state-<i>.old`, deleted after; an import's
 *      or a restore's to `replaced/<time>/state-<i>`, kept), and `state-<i>.<kind>` becomes
 *      `state-<i>`.
 *
 * A swap may move other folders with it (a restore retires the snapshots it undoes): they are
 * listed in the new stores' folder before they move (`moveWithSwap`), so that a swap rolled
 * back moves them back.
 *
 * recoverInterruptedSwaps() reads from what is on disk which step a crash stopped at: before
 * the marker it removes the new stores (and moves back what moved with them), after it it
 * finishes the swap. It runs before anything opens a stream's stores (a start, and every
 * command that replaces them).
 */
export type SwapKind = 'reshard' | 'importing' | 'restoring';
const KINDS: readonly SwapKind[] = ['reshard', 'importing', 'restoring'];

export interface SwapPaths {
  /** The live stores. */
  current: string;
  /** Where the new stores are built. */
  building: string;
  /** A reshard's old stores between the two renames and until deleted. */
  old: string;
  /** Present only once every new store is durable. */
  marker: string;
}

/** Where a swap that keeps the stores it replaces puts them: `<dataDir>/replaced/<name>/state-<n>` (named by the time, unless given). */
export function asideFolder(dataDir: string, streamIndex: number, name = new Date().toISOString().replace(/[:.]/g, '-')): string {
  // The marker records it, but whoever finishes the swap reads only its last two names, under
  // the data folder as it reaches it (the folder may have moved, or be reached by another path).
  return resolve(dataDir, 'replaced', name, basename(stateDir(dataDir, streamIndex)));
}

/** The streams a swap was under way for when a crash stopped it (their folders mid-rename), in no order. */
export function streamsMidSwap(dataDir: string): number[] {
  const pattern = new RegExp(`^state-(\\d+)\\.(${[...KINDS, 'old'].join('|')})$`);
  return readdirSync(dataDir).flatMap((name) => {
    const m = pattern.exec(name);
    return m ? [Number(m[1])] : [];
  });
}

const MARKER = 'complete';

export function swapPaths(dataDir: string, streamIndex: number, kind: SwapKind): SwapPaths {
  const current = stateDir(dataDir, streamIndex);
  const building = `${current}.${kind}`;
  return { current, building, old: `${current}.old`, marker: join(building, MARKER) };
}

/** Where a crash can stop a swap; the tests kill the process at each of them. */
export type SwapStep = 'copied' | 'marked' | 'old-moved' | 'new-moved' | 'done';

/**
 * Steps 2 and 3, once the stores in `paths.building` are closed. `keepOldIn`: the folder the
 * old stores are kept in (absent: they are deleted, as a reshard's are). Returns where the
 * old stores went, when there were any (an empty folder is not kept).
 */
export function commitSwap(paths: SwapPaths, keepOldIn: string | undefined, onStep: (step: SwapStep) => void = () => undefined): string | undefined {
  fsyncTree(paths.building);
  onStep('copied');
  // Written whole beside and renamed into place: a marker that exists is never torn (a torn
  // one would read as naming no folder, and the old stores would go instead of being kept).
  // Older markers (a reshard's, before imports and restores used this) hold only a time.
  const written = `${paths.marker}.writing`;
  writeFileSync(written, `${JSON.stringify({ at: new Date().toISOString(), keepOldIn: keepOldIn ?? null })}\n`);
  fsyncPath(written);
  renameSync(written, paths.marker);
  fsyncPath(paths.building);
  onStep('marked');
  return swapIn(paths, keepOldIn, onStep);
}

const MOVED = 'moved';

/**
 * Before the marker: moves folders that belong with the new stores (each [from, to]),
 * recording them first in the new stores' folder, so that a rollback puts them back.
 */
export function moveWithSwap(paths: SwapPaths, moves: ReadonlyArray<readonly [from: string, to: string]>): void {
  if (moves.length === 0) return;
  const record = join(paths.building, MOVED);
  // Relative to the data folder, which whoever rolls the swap back may reach by another path.
  const dataDir = dirname(paths.current);
  writeFileSync(record, JSON.stringify(moves.map(([from, to]) => [relative(dataDir, from), relative(dataDir, to)])));
  fsyncPath(record);
  fsyncPath(paths.building);
  // The building folder's own entry: without it a power loss could take the record, and leave the moves.
  fsyncPath(dataDir);
  for (const [from, to] of moves) {
    moveDurably(from, to);
    fsyncPath(dirname(from));
  }
}

/** A rolled-back swap's moves, undone (those a crash left undone are skipped). */
function moveBack(paths: SwapPaths): void {
  const record = join(paths.building, MOVED);
  if (!existsSync(record)) return;
  let recorded: Array<[string, string]>;
  try {
    recorded = JSON.parse(readFileSync(record, 'utf8')) as Array<[string, string]>;
  } catch {
    return; // cut short while written: nothing had moved yet
  }
  // An earlier version recorded absolute paths.
  const dataDir = dirname(paths.current);
  const moves = recorded.map((pair) => pair.map((p) => resolve(dataDir, p)) as [string, string]);
  for (const [from, to] of moves) {
    if (existsSync(to) && !existsSync(from)) {
      renameSync(to, from);
      fsyncPath(dirname(from));
    }
    // The folders made to receive it go too, once empty (rmdir refuses a folder that is not).
    for (let dir = dirname(to), up = 0; up < 2; dir = dirname(dir), up++) {
      try {
        rmdirSync(dir);
      } catch {
        break;
      }
    }
  }
}

function markedKeepFolder(marker: string, dataDir: string): string | undefined {
  try {
    const written = JSON.parse(readFileSync(marker, 'utf8')) as { keepOldIn?: unknown };
    if (typeof written.keepOldIn !== 'string') return undefined;
    // Always <dataDir>/replaced/<name>/state-<n>, under the data folder as this process
    // reaches it: the command that wrote the marker may have reached it by another path
    // (a host path and a container's mount), or the folder has moved since.
    return join(dataDir, 'replaced', basename(dirname(written.keepOldIn)), basename(written.keepOldIn));
  } catch {
    return undefined;
  }
}

/** Step 3, wherever a crash stopped it (a step already done is skipped). */
function swapIn(paths: SwapPaths, keepOldIn: string | undefined, onStep: (step: SwapStep) => void = () => undefined): string | undefined {
  let kept: string | undefined;
  if (existsSync(paths.current)) {
    if (keepOldIn === undefined) renameSync(paths.current, paths.old);
    else if (readdirSync(paths.current).length === 0) rmSync(paths.current, { recursive: true });
    else {
      moveDurably(paths.current, keepOldIn);
      kept = keepOldIn;
    }
    fsyncPath(dirname(paths.current));
    onStep('old-moved');
  } else if (keepOldIn !== undefined && existsSync(keepOldIn)) kept = keepOldIn;
  renameSync(paths.building, paths.current);
  fsyncPath(dirname(paths.current));
  onStep('new-moved');
  if (keepOldIn === undefined) rmSync(paths.old, { recursive: true, force: true });
  clearSwapRecords(paths.current);
  onStep('done');
  return kept;
}

/**
 * The marker and the record of moves that came in with the new stores: they mean something
 * only while those stores are being built, and a swap stopped after its last rename leaves them.
 */
function clearSwapRecords(current: string): void {
  rmSync(join(current, MARKER), { force: true });
  rmSync(join(current, MOVED), { force: true });
}

export type SwapOutcome = 'none' | 'rolled-back' | 'finished';

/** Finishes or rolls back one kind of swap a crash interrupted. */
export function recoverInterruptedSwap(dataDir: string, streamIndex: number, kind: SwapKind): SwapOutcome {
  const paths = swapPaths(dataDir, streamIndex, kind);
  if (existsSync(paths.building)) {
    if (existsSync(paths.marker)) {
      // The new stores are durable and complete: finish the swap, wherever it stopped. An
      // import's or a restore's old stores are kept whatever the marker says.
      const keep = markedKeepFolder(paths.marker, dataDir) ?? (kind === 'reshard' ? undefined : asideFolder(dataDir, streamIndex, `recovered-${Date.now()}`));
      swapIn(paths, keep);
      return 'finished';
    }
    // Not all new stores were written: the old ones (never touched) stay, and what moved for the swap goes back.
    moveBack(paths);
    rmSync(paths.building, { recursive: true, force: true });
    if (kind === 'reshard' && !existsSync(paths.current) && existsSync(paths.old)) renameSync(paths.old, paths.current);
    return 'rolled-back';
  }
  if (kind === 'reshard' && existsSync(paths.old)) {
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

/** Every swap of the stream a crash interrupted, finished or rolled back (at most one is under way at a time: each holds the data folder's lock). */
export function recoverInterruptedSwaps(dataDir: string, streamIndex: number): Array<{ kind: SwapKind; outcome: Exclude<SwapOutcome, 'none'> }> {
  const done: Array<{ kind: SwapKind; outcome: Exclude<SwapOutcome, 'none'> }> = [];
  for (const kind of KINDS) {
    const outcome = recoverInterruptedSwap(dataDir, streamIndex, kind);
    if (outcome !== 'none') done.push({ kind, outcome });
  }
  // A swap a crash stopped after its last rename left its records in the stores' folder, and
  // nothing else the loop above sees once a reshard's old stores are deleted (an import's or a
  // restore's were already moved aside).
  if (existsSync(stateDir(dataDir, streamIndex))) clearSwapRecords(stateDir(dataDir, streamIndex));
  return done;
}

/** What a crash left of a swap of the stream, in words, or nothing: a reader must not judge the stores until a start or a command settles it. */
export function interruptedSwap(dataDir: string, streamIndex: number): string | undefined {
  for (const kind of KINDS) {
    const paths = swapPaths(dataDir, streamIndex, kind);
    const left = [paths.building, ...(kind === 'reshard' ? [paths.old] : [])].filter((p) => existsSync(p));
    if (left.length > 0) return `${SWAP_NAMES[kind]} of stream ${streamIndex} was interrupted (${left.join(', ')} ${left.length === 1 ? 'is' : 'are'} still there)`;
  }
  return undefined;
}

/** How a command's output names each kind. */
export const SWAP_NAMES: Record<SwapKind, string> = { reshard: 'a reshard', importing: 'an import', restoring: 'a snapshot restore' };
