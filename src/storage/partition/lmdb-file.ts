import { readSync } from 'node:fs';

/**
 * LMDB's file format as lmdb-js's LMDB writes it, read with plain reads and never through a
 * memory map: a page LMDB would touch past the end of a truncated file kills the process
 * with SIGBUS, while a read here just comes back short.
 *
 * Layout (lmdb-js's fork of mdb.c): a page starts with a 24-byte header
 * (pgno u64, txnid u64, pad u16, flags u16, lower u16, upper u16 — or the overflow page
 * count u32 in place of lower/upper); pages 0 and 1 hold a meta record after it.
 */
export const PAGE_HEADER = 24;
const META_MAGIC = 0xbeefc0de;
/** MDB_meta: magic u32, version u32, address u64, mapsize u64, then the free and main MDB_db records. */
const META_DBS_AT = PAGE_HEADER + 24;
const META_LAST_PAGE_AT = PAGE_HEADER + 120;
const META_TXN_ID_AT = PAGE_HEADER + 128;
/** MDB_db is 48 bytes: pad u32 (the page size, in the free DB's record), flags u16, depth u16, branch/leaf/overflow page counts and entries u64, root u64. */
const DB_RECORD_BYTES = 48;
const NO_PAGE = 0xffffffffffffffffn;

const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_LEAF2 = 0x20;
const P_META = 0x08;
/** The page header's flags: after pgno u64, txnid u64 and pad u16. */
const PAGE_FLAGS_AT = 18;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const MDB_DUPSORT = 0x04;

export interface DbRecord {
  flags: number;
  depth: number;
  overflowPages: number;
  /** undefined for an empty database. */
  root: number | undefined;
}

export interface LmdbMeta {
  pageSize: number;
  /** The last page the commit allocated; the file may end before it when the pages at its end are free. */
  lastPage: number;
  txnId: bigint;
  free: DbRecord;
  main: DbRecord;
}

/** What an LMDB file looks like, or why it is not one. */
export type MetaRead = { meta: LmdbMeta } | { problem: string };

function dbRecord(buffer: Buffer, at: number): DbRecord {
  const root = buffer.readBigUInt64LE(at + 40);
  return {
    flags: buffer.readUInt16LE(at + 4),
    depth: buffer.readUInt16LE(at + 6),
    overflowPages: Number(buffer.readBigUInt64LE(at + 24)),
    root: root === NO_PAGE ? undefined : Number(root),
  };
}

function readAt(fd: number, buffer: Buffer, length: number, position: number): number {
  let read = 0;
  while (read < length) {
    const n = readSync(fd, buffer, read, length - read, position + read);
    if (n === 0) break;
    read += n;
  }
  return read;
}

/** Reads both meta pages and returns the one LMDB opens with: the valid one with the higher transaction id. */
export function readMeta(fd: number, size: number): MetaRead {
  const first = Buffer.alloc(256);
  if (readAt(fd, first, 256, 0) < 256) return { problem: `data.mdb is ${size} bytes, too short to be an LMDB file` };
  if (first.readUInt32LE(PAGE_HEADER) !== META_MAGIC) return { problem: 'data.mdb does not start with an LMDB meta page' };
  // LMDB refuses a first page without the meta flag as MDB_INVALID, which past this check no longer counts as damage.
  if ((first.readUInt16LE(PAGE_FLAGS_AT) & P_META) === 0) return { problem: 'data.mdb starts with the meta page\'s magic number, but its first page is not flagged as a meta page' };
  const pageSize = first.readUInt32LE(META_DBS_AT);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return { problem: `data.mdb declares an impossible page size (${pageSize})` };
  const second = Buffer.alloc(256);
  if (readAt(fd, second, 256, pageSize) < 256) return { problem: `data.mdb is ${size} bytes, shorter than its two meta pages` };
  const metas = [first, second].filter((m) => m.readUInt32LE(PAGE_HEADER) === META_MAGIC);
  const newest = metas.reduce((a, b) => (b.readBigUInt64LE(META_TXN_ID_AT) > a.readBigUInt64LE(META_TXN_ID_AT) ? b : a));
  return {
    meta: {
      pageSize,
      lastPage: Number(newest.readBigUInt64LE(META_LAST_PAGE_AT)),
      txnId: newest.readBigUInt64LE(META_TXN_ID_AT),
      free: dbRecord(newest, META_DBS_AT),
      main: dbRecord(newest, META_DBS_AT + DB_RECORD_BYTES),
    },
  };
}

/** Where the walk found a page the newest commit refers to that the file does not hold whole, or a page that is not what its parent says. */
export interface PageProblem {
  kind: 'beyond-end' | 'not-a-page';
  /** Which database refers to it: 'free', 'main', or a named database. */
  database: string;
  page: number;
  /** For 'beyond-end': the byte the page (or its run of overflow pages) ends at. */
  endsAt?: number;
}

/**
 * Visits every page the commit `meta` describes can reach — each database's branch pages,
 * leaves and overflow runs, the named databases listed in the main database, and the free
 * list LMDB reads when it allocates — and returns the first one that lies past the end of
 * the file or is not a B-tree page. Leaves are only read where they can refer to further
 * pages (the main database, databases with overflow pages or duplicates): in a large state
 * database that is nearly every page, so the walk reads its branch pages only.
 */
export function findUnreachablePage(fd: number, size: number, meta: LmdbMeta, counter: { pagesRead: number } = { pagesRead: 0 }): PageProblem | undefined {
  const { pageSize } = meta;
  const pagesInFile = Math.floor(size / pageSize);

  const walk = (database: string, db: DbRecord, readLeaves: boolean, onLeafNode?: (name: Buffer, flags: number, data: Buffer) => PageProblem | undefined): PageProblem | undefined => {
    if (db.root === undefined) return undefined;
    // One buffer per walk: a leaf node's callback walks a sub-database while this page is still being read.
    const page = Buffer.alloc(pageSize);
    // Depth first, with an explicit stack: [page, level], the root at level 1 and leaves at db.depth.
    const stack: Array<[number, number]> = [[db.root, 1]];
    while (stack.length > 0) {
      const [pgno, level] = stack.pop()!;
      if (pgno >= pagesInFile) return { kind: 'beyond-end', database, page: pgno, endsAt: (pgno + 1) * pageSize };
      if (level >= db.depth && !readLeaves) continue;
      counter.pagesRead++;
      if (readAt(fd, page, pageSize, pgno * pageSize) < pageSize) return { kind: 'beyond-end', database, page: pgno, endsAt: (pgno + 1) * pageSize };
      const flags = page.readUInt16LE(18);
      if (page.readBigUInt64LE(0) !== BigInt(pgno) || (flags & (P_BRANCH | P_LEAF)) === 0) return { kind: 'not-a-page', database, page: pgno };
      if (flags & P_LEAF2) continue;
      const count = page.readUInt16LE(20) >> 1;
      if (PAGE_HEADER + 2 * count > pageSize) return { kind: 'not-a-page', database, page: pgno };
      for (let i = 0; i < count; i++) {
        const node = PAGE_HEADER + page.readUInt16LE(PAGE_HEADER + 2 * i);
        if (node + 8 > pageSize) return { kind: 'not-a-page', database, page: pgno };
        const lo = page.readUInt16LE(node);
        const hi = page.readUInt16LE(node + 2);
        const nodeFlags = page.readUInt16LE(node + 4);
        const keySize = page.readUInt16LE(node + 6);
        if (flags & P_BRANCH) {
          stack.push([lo + hi * 0x10000 + nodeFlags * 0x100000000, level + 1]);
          continue;
        }
        const dataAt = node + 8 + keySize;
        const dataSize = lo + hi * 0x10000;
        if (nodeFlags & F_BIGDATA) {
          if (dataAt + 8 > pageSize) return { kind: 'not-a-page', database, page: pgno };
          const first = Number(page.readBigUInt64LE(dataAt));
          const pages = Math.floor((PAGE_HEADER - 1 + dataSize) / pageSize) + 1;
          if (first + pages > pagesInFile) return { kind: 'beyond-end', database, page: first + pages - 1, endsAt: (first + pages) * pageSize };
          continue;
        }
        if (dataAt + dataSize > pageSize) return { kind: 'not-a-page', database, page: pgno };
        const found = onLeafNode?.(page.subarray(node + 8, dataAt), nodeFlags, Buffer.from(page.subarray(dataAt, dataAt + dataSize)));
        if (found) return found;
      }
    }
    return undefined;
  };

  // A database of duplicates keeps a key's values in a sub-database of their own.
  const walkDb = (name: string, db: DbRecord): PageProblem | undefined => {
    const dupsort = (db.flags & MDB_DUPSORT) !== 0;
    return walk(name, db, dupsort || db.overflowPages > 0, dupsort ? (_key, flags, data) => (flags & F_SUBDATA && data.length >= DB_RECORD_BYTES ? walk(name, dbRecord(data, 0), false) : undefined) : undefined);
  };

  // The free database's record shares its flags field with the environment's flags: it is never one of duplicates.
  return (
    walk('free', meta.free, meta.free.overflowPages > 0) ??
    walk('main', meta.main, true, (key, flags, data) => (flags & F_SUBDATA && data.length >= DB_RECORD_BYTES ? walkDb(key.toString('utf8').replace(/\0$/, ''), dbRecord(data, 0)) : undefined))
  );
}
