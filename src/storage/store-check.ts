import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';

/** What is wrong with a partition store on disk, or undefined when it looks whole. */
export type StoreProblem = string | undefined;

const META_MAGIC = 0xbeefc0de;
/** Where lmdb-js's LMDB puts the meta record: after a 24-byte page header. */
const META_OFFSET = 24;
/** Offsets inside the meta record (LMDB's MDB_meta): the free DB's md_pad holds the page size. */
const PAGE_SIZE_AT = META_OFFSET + 24;
const LAST_PAGE_AT = META_OFFSET + 120;
const TXN_ID_AT = META_OFFSET + 128;

/**
 * Reads LMDB's two meta pages and checks that the file holds every page the newest one
 * refers to. LMDB maps the file into memory: reading a page past the end of a truncated
 * file kills the process with SIGBUS, so this check must come before opening it.
 */
export function checkStoreFile(dir: string): StoreProblem {
  const file = join(dir, 'data.mdb');
  if (!existsSync(file)) return existsSync(dir) ? 'data.mdb is missing' : 'the partition folder is missing';
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const first = Buffer.alloc(256);
    if (readSync(fd, first, 0, 256, 0) < 256) return `data.mdb is ${size} bytes, too short to be an LMDB file`;
    if (first.readUInt32LE(META_OFFSET) !== META_MAGIC) return 'data.mdb does not start with an LMDB meta page';
    const pageSize = first.readUInt32LE(PAGE_SIZE_AT);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return `data.mdb declares an impossible page size (${pageSize})`;
    const second = Buffer.alloc(256);
    if (readSync(fd, second, 0, 256, pageSize) < 256) return `data.mdb is ${size} bytes, shorter than its two meta pages`;
    const metas = [first, second].filter((m) => m.readUInt32LE(META_OFFSET) === META_MAGIC);
    // The meta page with the higher transaction id is the one LMDB will use.
    const newest = metas.reduce((a, b) => (b.readBigUInt64LE(TXN_ID_AT) > a.readBigUInt64LE(TXN_ID_AT) ? b : a));
    const lastPage = Number(newest.readBigUInt64LE(LAST_PAGE_AT));
    const needed = (lastPage + 1) * pageSize;
    if (size < needed) return `data.mdb is truncated: ${size} bytes, but its last committed page ends at byte ${needed}`;
    return undefined;
  } finally {
    closeSync(fd);
  }
}
