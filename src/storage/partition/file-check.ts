import { closeSync, existsSync, fstatSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { findUnreachablePage, readMeta, type PageProblem } from './lmdb-file.js';

/** What is wrong with a partition store on disk, or undefined when it looks whole. */
export type StoreProblem = string | undefined;

/** The size of a partition folder's data.mdb, or undefined when there is none. */
export function dataFileBytes(dir: string): number | undefined {
  const file = join(dir, 'data.mdb');
  return existsSync(file) ? statSync(file).size : undefined;
}

/** A job writing the store while it is checked can free and reuse pages under the walk: that many fresh looks before a problem counts. */
const CONCURRENT_COMMIT_RETRIES = 3;

/**
 * Checks, before LMDB maps the file, that data.mdb holds every page its newest commit can
 * reach: LMDB reads pages through a memory map, and touching one past the end of a
 * truncated file kills the process with SIGBUS. The file's length alone says nothing: LMDB
 * does not write pages freed in the commit that allocated them, so a healthy file can end
 * before the last page its meta page counts (mdb.c: "the file may be shorter if the freeDB
 * lists the final pages"). The walk reads branch pages, and leaves only where they can
 * refer to more pages, so it costs a small part of the file (see docs/snapshots.md).
 */
export function checkStoreFile(dir: string): StoreProblem {
  const file = join(dir, 'data.mdb');
  if (!existsSync(file)) return existsSync(dir) ? 'data.mdb is missing' : 'the partition folder is missing';
  const fd = openSync(file, 'r');
  try {
    for (let attempt = 0; ; attempt++) {
      const size = fstatSync(fd).size;
      const read = readMeta(fd, size);
      if ('problem' in read) return read.problem;
      const found = findUnreachablePage(fd, size, read.meta);
      if (!found) return undefined;
      const again = readMeta(fd, fstatSync(fd).size);
      if (attempt < CONCURRENT_COMMIT_RETRIES && 'meta' in again && again.meta.txnId !== read.meta.txnId) continue;
      return describeProblem(found, size);
    }
  } finally {
    closeSync(fd);
  }
}

function describeProblem(found: PageProblem, size: number): string {
  const where = found.database === 'free' ? 'its free-page list' : found.database === 'main' ? 'its list of databases' : `its ${JSON.stringify(found.database)} database`;
  return found.kind === 'beyond-end'
    ? `data.mdb is truncated: ${size} bytes, but page ${found.page} of ${where}, which its newest commit refers to, ends at byte ${found.endsAt}`
    : `data.mdb is damaged: page ${found.page} of ${where}, which its newest commit refers to, is not a B-tree page`;
}
