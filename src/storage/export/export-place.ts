import { lstatSync, readdirSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';

function realOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * The file a write to `path` replaces or makes: a file that is there, through its links; a
 * new name in its folder as the system reaches it; a link to nothing followed to the name it
 * gives, from the folder the link is in ('..' from there, not from the name's text).
 * Undefined for a loop of links; a path the system cannot follow (through a file) is given
 * back as it is, for the write to fail on with its own error.
 */
export function landingPath(path: string): string | undefined {
  let at = resolve(path);
  for (let hops = 0; hops < 40; hops++) {
    let info: Stats | undefined;
    try {
      info = lstatSync(at, { throwIfNoEntry: false });
      if (info && !info.isSymbolicLink()) return realpathSync(at);
    } catch {
      return at;
    }
    const folder = realOr(dirname(at));
    if (!info) return join(folder, basename(at));
    at = resolve(folder, readlinkSync(at));
  }
  return undefined;
}

/**
 * Where a write to `path` would land inside `dataDir` (its stores, snapshots, lock file and
 * swap records are the job's), or undefined when it lands outside. An export renamed over
 * one of them would destroy a store, or free the folder's lock while its holder runs. Inside
 * means where it lands: under the folder, or under one of its entries, which may be a link
 * to another disk (a `state-0` or `snapshots` moved there).
 */
export function landingInDataDir(path: string, dataDir: string): string | undefined {
  const landing = landingPath(path);
  const roots = [resolve(dataDir), realOr(dataDir), ...entriesOf(dataDir).map((name) => realOr(join(dataDir, name)))];
  const within = (at: string) => roots.some((root) => at === root || at.startsWith(root.endsWith(sep) ? root : `${root}${sep}`));
  return landing !== undefined && within(landing) ? landing : undefined;
}

function entriesOf(folder: string): string[] {
  try {
    return readdirSync(folder);
  } catch {
    return [];
  }
}
