import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** fsync a file or folder (a folder's fsync makes the renames and creations in it durable). */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync every file and folder under `dir`: stores written without per-commit syncs, or copied in, become durable here. */
export function fsyncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) fsyncTree(path);
    else if (entry.isFile()) fsyncPath(path);
  }
  fsyncPath(dir);
}

/**
 * `mkdir -p` whose new folders survive a power loss as the renames into them do: the folder
 * holding each one it made is fsynced, deepest first (an fsync of the folder a file is
 * renamed into does not make that folder's own entry durable).
 */
function makeFoldersDurably(path: string): void {
  const first = mkdirSync(path, { recursive: true });
  if (first === undefined) return;
  const top = resolve(first);
  for (let dir = resolve(path); dirname(dir) !== dir; dir = dirname(dir)) {
    fsyncPath(dirname(dir));
    if (dir === top) break;
  }
}

/** Renames `from` to `to`, making the folders `to` goes in as needed, all of it durable: the folders' entries and `to`'s own. */
export function moveDurably(from: string, to: string): void {
  makeFoldersDurably(dirname(to));
  renameSync(from, to);
  fsyncPath(dirname(to));
}
