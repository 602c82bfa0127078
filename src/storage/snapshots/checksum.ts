import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { checkStoreFile } from '../partition/file-check.js';

/** SHA-256 of a file; an error reading it names the file (a read's own error does not). */
export function sha256FileSync(file: string): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 20);
  try {
    const fd = openSync(file, 'r');
    try {
      for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw Object.assign(new Error(`${file} cannot be read: ${e.message}`), { code: e.code });
  }
  return hash.digest('hex');
}

/** A file's SHA-256, or why it cannot be read: one copy that cannot be read is a damaged copy, not a failed check of the others. */
export type FileDigest = { sha256: string } | { unreadable: string };

export function digestFileSync(file: string): FileDigest {
  try {
    return { sha256: sha256FileSync(file) };
  } catch (error) {
    return { unreadable: (error as Error).message };
  }
}

/**
 * SHA-256 of each file (or why it cannot be read) on a thread of its own (this module, started as a worker). Hashing
 * a 10^6-key state (~120 MB) costs about 160 ms of CPU; on the main thread it would sit
 * between the batches a snapshot is meant not to disturb.
 */
export function digestFiles(files: string[]): Promise<FileDigest[]> {
  return onChecksumThread<FileDigest[]>({ checksumFiles: files });
}

/**
 * For a snapshot's fresh copies (each `data.mdb` in a partition folder): the file check a
 * store passes at start (checkStoreFile), then the SHA-256, on the same thread as
 * digestFiles, so that neither reads on the main thread beside the batches.
 */
export function checkAndHashCopies(files: string[]): Promise<Array<{ sha256: string; problem: string | undefined }>> {
  return onChecksumThread({ checksumFiles: files, checkStores: true });
}

function onChecksumThread<T>(data: { checksumFiles: string[]; checkStores?: boolean }): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: data });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => code !== 0 && reject(new Error(`the checksum thread exited with code ${code}`)));
  });
}

if (!isMainThread && Array.isArray((workerData as { checksumFiles?: unknown } | null)?.checksumFiles)) {
  const { checksumFiles, checkStores } = workerData as { checksumFiles: string[]; checkStores?: boolean };
  parentPort!.postMessage(checkStores ? checksumFiles.map((file) => ({ problem: checkStoreFile(dirname(file)), sha256: sha256FileSync(file) })) : checksumFiles.map(digestFileSync));
}
