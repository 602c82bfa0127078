import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BatchLog, readLayout, type StoreLayout } from './batch-log.js';
import { openPartitionStore, partitionPath } from './store.js';

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

export interface PartitionReport {
  partition: number;
  path: string;
  /** data.mdb's size in bytes, when it exists. */
  bytes: number | undefined;
  /** What is wrong with the store; undefined when it is healthy. */
  problem: string | undefined;
  layout?: StoreLayout;
  /** False for a store a first start created and never initialised. */
  initialised?: boolean;
  lastBatch?: number;
  keyCount?: number;
  deadLetters?: number;
}

/**
 * Looks at one partition store: the file check first (LMDB maps the file, and a truncated
 * one would kill this process with SIGBUS), then its layout and last batch.
 */
export function examinePartition(dataDir: string, stream: number, partition: number): PartitionReport {
  const path = partitionPath(dataDir, stream, partition);
  const file = join(path, 'data.mdb');
  const bytes = existsSync(file) ? statSync(file).size : undefined;
  const problem = checkStoreFile(path);
  if (problem) return { partition, path, bytes, problem };
  try {
    const store = openPartitionStore(path);
    try {
      const layout = readLayout(store);
      const last = new BatchLog(store).last();
      // No layout: created by a first start that was cut short, which the next start initialises (not damage).
      return {
        partition, path, bytes, problem: undefined, layout, initialised: layout !== undefined,
        lastBatch: last?.batchTime, keyCount: last?.keyCount ?? 0, deadLetters: store.deadLetters.getKeysCount(),
      };
    } finally {
      store.env.close();
    }
  } catch (error) {
    return { partition, path, bytes, problem: `the store fails to open: ${(error as Error).message}` };
  }
}
