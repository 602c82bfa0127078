import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { checkStoreFile } from '../partition/file-check.js';

export function sha256FileSync(file: string): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 20);
  const fd = openSync(file, 'r');
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * SHA-256 of each file on a thread of its own (this module, started as a worker). Hashing
 * a 10^6-key state (~120 MB) costs about 160 ms of CPU; on the main thread it would sit
 * between the batches a snapshot is meant not to disturb.
 */
export function sha256Files(files: string[]): Promise<string[]> {
  return onChecksumThread<string[]>({ checksumFiles: files });
}

/**
 * For a snapshot's fresh copies (each `data.mdb` in a partition folder): the file check a
 * store passes at start (checkStoreFile), then the SHA-256, on the same thread as
 * sha256Files, so that neither reads on the main thread beside the batches.
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
  parentPort!.postMessage(checkStores ? checksumFiles.map((file) => ({ problem: checkStoreFile(dirname(file)), sha256: sha256FileSync(file) })) : checksumFiles.map(sha256FileSync));
}
