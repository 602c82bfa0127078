import { closeSync, openSync, readSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { open as openFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { ConfigError, describeValue, isIntegerIn, StateExportError } from '../../errors.js';
import { assertEncodable, decodeEntry, encodeExportEntry, entryCodec, unpackExportValues } from '../codec.js';
import { keyProblem, normalizeKey } from '../keys.js';
import { removedAtExit } from '../removed-at-exit.js';
import { landingPath } from './export-place.js';
import type { Transaction } from 'lmdb';
import { readEntries } from '../partition/change-log.js';
import type { PartitionStore } from '../partition/store.js';
import type { StateSource } from './state-source.js';

/**
 * The export format is a MessagePack sequence that does not depend on how the stores lay
 * state out (partitions, LMDB key encoding, the time index): a header, one
 * [key, state, lastUpdated] array per key, and a trailer with the count, so that a file cut
 * short is told apart from a small one. Any MessagePack reader can consume it.
 */
export const EXPORT_FORMAT = 'statestream-state';
export const EXPORT_FORMAT_VERSION = 1;

/** What the writer says about where the state came from; stored in the header as given. */
export interface StateExportOrigin {
  /** StateSpec.stateVersion of the code that wrote the states. */
  stateVersion: number;
  /** The batch the state is as of, when it comes from a job's stores. */
  batchTime?: number;
  [field: string]: unknown;
}

export interface StateExportHeader extends StateExportOrigin {
  format: typeof EXPORT_FORMAT;
  formatVersion: number;
  /** ISO 8601 time the export was written. */
  createdAt: string;
}

export type ExportEntry<K = unknown, S = unknown> = [key: K, state: S, lastUpdated: number];

/** An export file opened for reading: its header is read, its entries are read on each entries() call. */
export interface StateExport<K = unknown, S = unknown> extends StateSource<K, S> {
  readonly path: string;
  readonly header: StateExportHeader;
}

// Large enough that a syscall per chunk is cheap next to decoding it; small enough to stream.
const CHUNK_BYTES = 64 * 1024;
// A header is a few fields: a first value this big means the file is something else.
const MAX_HEADER_BYTES = 1024 * 1024;

function isPositiveInteger(value: unknown): value is number {
  return isIntegerIn(value, 1, Infinity);
}

/** Where an export is written: a file path or a writable stream, named when it is neither. */
export function assertExportTarget(where: string, target: unknown): void {
  if ((typeof target !== 'string' || target.trim() === '') && typeof (target as NodeJS.WritableStream | null)?.write !== 'function') {
    throw new ConfigError(`${where}: target must be a file path or a writable stream, got ${describeValue(target)}`, { option: 'target' });
  }
}

function exportHeader(origin: StateExportOrigin): StateExportHeader {
  if (origin === null || typeof origin !== 'object') throw new ConfigError(`writeStateExport: the header must be an object with a stateVersion, got ${describeValue(origin)}`, { option: 'header' });
  if (!isPositiveInteger(origin.stateVersion)) {
    throw new ConfigError(`writeStateExport: header.stateVersion must be a positive integer, got ${describeValue(origin.stateVersion)}`, { option: 'stateVersion', value: origin.stateVersion });
  }
  if (origin.batchTime !== undefined && !Number.isFinite(origin.batchTime)) {
    throw new ConfigError(`writeStateExport: header.batchTime must be a finite number when given, got ${describeValue(origin.batchTime)}`, { option: 'batchTime', value: origin.batchTime });
  }
  return { ...origin, format: EXPORT_FORMAT, formatVersion: EXPORT_FORMAT_VERSION, createdAt: new Date().toISOString() };
}

/** Where `where` is "entry 3 of export /x" or "entry 3 given to writeStateExport". */
export function checkEntry(value: unknown, where: string, context: Record<string, unknown>): ExportEntry {
  if (!Array.isArray(value) || value.length !== 3) {
    throw new StateExportError(`${where} is not a [key, state, lastUpdated] array`, context);
  }
  const problem = keyProblem(value[0]);
  if (problem) throw new StateExportError(`${where}: ${problem}`, context);
  if (typeof value[2] !== 'number' || !Number.isFinite(value[2])) {
    throw new StateExportError(`${where}: lastUpdated must be a batch time (a finite number), got ${String(value[2])}`, context);
  }
  if (value[1] === undefined) throw new StateExportError(`${where} (key ${describeValue(value[0])}) has no state (undefined): leave the key out instead`, context);
  return [normalizeKey(value[0]), value[1], value[2]];
}

interface Sink {
  write(chunk: Buffer): Promise<void>;
  finish(): Promise<void>;
  abandon(): Promise<void>;
}

/**
 * A regular file (or a new one) is written beside the target under a name of its own and
 * renamed over it once synced, so a reader never sees half a file under the real name and two
 * exports to one path never write into one temporary file. A symbolic link's target is
 * replaced, not the link. Anything else (a FIFO, a device, or a name of another open file
 * such as /dev/stdout, /dev/fd/N or /proc/self/fd/N, whatever the shell redirected it to)
 * is written through, appending: the shell's own `>` or `>>` already said where.
 */
async function fileSink(path: string): Promise<Sink> {
  const info = await stat(path).catch(() => undefined);
  // What names another open file (/dev/stdout, /dev/fd/N, /proc/…/fd/N): renaming over it
  // would replace the name, not what the shell's `>` made. A file under /dev/shm is a file.
  const special = /^\/(proc\/|dev\/fd\/|dev\/std(in|out|err)$)/.test(resolve(path));
  if (info && (special || !info.isFile())) {
    const handle = await openFile(path, 'a').catch((error: NodeJS.ErrnoException) => {
      // What /dev/stdout leads to when a parent process gave its child a socket for stdout (Node's own pipes are sockets).
      const why = error.code === 'ENXIO' ? ': it leads to a socket, which cannot be opened by a path; give the export the stream itself (the CLI: --out -)' : ` (${error.code ?? error.message})`;
      throw new StateExportError(`cannot write the export ${path}${why}`, { path, code: error.code }, error);
    });
    return handleSink(handle);
  }
  const real = landingPath(path);
  if (real === undefined) throw new StateExportError(`cannot write the export ${path}: it is a loop of symbolic links`, { path });
  const tmp = `${real}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`;
  // Named by the path asked for: the temporary file's name is ours, not the user's.
  const handle = await openFile(tmp, 'wx').catch((error: NodeJS.ErrnoException) => {
    throw new StateExportError(`cannot write the export ${path}: no new file can be made in ${dirname(real)} (${error.code ?? error.message})`, { path, code: error.code }, error);
  });
  const forget = removedAtExit(tmp);
  const sink = handleSink(handle);
  return {
    write: sink.write,
    async finish() {
      await handle.sync();
      await handle.close();
      await rename(tmp, real);
      forget();
    },
    async abandon() {
      await handle.close().catch(() => undefined);
      await rm(tmp, { force: true });
      forget();
    },
  };
}

function handleSink(handle: FileHandle): Sink {
  return {
    async write(chunk) {
      for (let offset = 0; offset < chunk.length; ) offset += (await handle.write(chunk, offset)).bytesWritten;
    },
    async finish() {
      await handle.close();
    },
    async abandon() {
      await handle.close().catch(() => undefined);
    },
  };
}

/**
 * The caller owns the stream: it is not ended, so an export can go into a larger stream.
 * A stream destroyed without an error (an HTTP response whose client went away) emits
 * neither 'drain' nor 'error': its 'close' ends the export, or it would wait for good
 * while holding a running job's read transactions.
 */
function streamSink(stream: NodeJS.WritableStream): Sink {
  const target = stream as NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean };
  const closed = () => new StateExportError('the stream the export was written to was closed before the export ended', {});
  return {
    async write(chunk) {
      if (target.destroyed || target.writableEnded) throw closed();
      if (stream.write(chunk)) return;
      await new Promise<void>((resolve, reject) => {
        const settle = (error?: Error) => {
          stream.off('drain', onDrain);
          stream.off('close', onClose);
          stream.off('error', onError);
          if (error) reject(error);
          else resolve();
        };
        const onDrain = () => settle();
        const onClose = () => settle(closed());
        const onError = (error: Error) => settle(error);
        stream.on('drain', onDrain);
        stream.on('close', onClose);
        stream.on('error', onError);
      });
    },
    async finish() {
      if (target.destroyed) throw closed();
    },
    async abandon() {},
  };
}

/**
 * Writes entries as an export, streaming: at most about one chunk of encoded entries is held
 * at a time. Returns how many entries were written.
 */
export async function writeStateExport(target: string | NodeJS.WritableStream, origin: StateExportOrigin, entries: Iterable<ExportEntry>): Promise<number> {
  const header = exportHeader(origin);
  if (entries === null || typeof (entries as Iterable<unknown>)?.[Symbol.iterator] !== 'function') {
    throw new ConfigError(`writeStateExport: entries must be an iterable of [key, state, lastUpdated], got ${describeValue(entries)}`, { option: 'entries' });
  }
  assertExportTarget('writeStateExport', target);
  const sink = typeof target === 'string' ? await fileSink(target) : streamSink(target);
  try {
    let pending: Buffer[] = [entryCodec.pack(header)];
    let size = pending[0].length;
    let count = 0;
    for (const value of entries) {
      const where = `entry ${count} given to writeStateExport`;
      const entry = checkEntry(value, where, { entry: count });
      assertEncodable(entry[1], () => `the state of ${where} (key ${JSON.stringify(entry[0])})`, () => ({ entry: count, key: entry[0] }));
      const bytes = encodeExportEntry(entry);
      pending.push(bytes);
      size += bytes.length;
      count++;
      if (size >= CHUNK_BYTES) {
        await sink.write(Buffer.concat(pending, size));
        pending = [];
        size = 0;
      }
    }
    pending.push(entryCodec.pack({ end: true, keyCount: count }));
    await sink.write(Buffer.concat(pending));
    await sink.finish();
    return count;
  } catch (error) {
    await sink.abandon();
    throw error;
  }
}

function openForReading(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (error) {
    throw new StateExportError(`cannot read state export ${path}: ${(error as Error).message}`, { path }, error);
  }
}

/**
 * MessagePack values from `start` on, read one chunk at a time. A chunk that ends inside a
 * value makes msgpackr throw with `incomplete` set: that value is carried into the next read.
 * Each chunk is a new buffer because decoded binary values are views into it.
 */
function* fileValues(fd: number, start: number, cut: () => Error, damaged: (error: unknown) => Error): Generator<unknown> {
  let position = start;
  let carry: Buffer | undefined;
  for (;;) {
    // A value longer than a chunk is decoded again from its start at each read: reading at
    // least as much as is carried doubles what is tried each time, or one large state
    // would take time growing with the square of its size.
    const size = Math.max(CHUNK_BYTES, carry?.length ?? 0);
    const chunk = Buffer.allocUnsafe(size);
    const read = readSync(fd, chunk, 0, size, position);
    if (read === 0) {
      if (carry?.length) throw cut();
      return;
    }
    position += read;
    const data = carry?.length ? Buffer.concat([carry, chunk.subarray(0, read)]) : chunk.subarray(0, read);
    const values: unknown[] = [];
    let consumed = 0;
    try {
      consumed = unpackExportValues(data, (value) => values.push(value));
    } catch (error) {
      throw damaged(error);
    }
    carry = data.subarray(consumed);
    yield* values;
  }
}

/** The header of the file open at `fd` (the caller's, left open) or at `path`. */
function readHeader(path: string, open?: number): { header: StateExportHeader; end: number } {
  const fd = open ?? openForReading(path);
  const notAnExport = (why: string, cause?: unknown) =>
    new StateExportError(`${path} is not a statestream state export: ${why}`, { path }, cause);
  try {
    let data = Buffer.alloc(0);
    for (;;) {
      const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      const read = readSync(fd, chunk, 0, CHUNK_BYTES, data.length);
      data = Buffer.concat([data, chunk.subarray(0, read)]);
      let first: { value: unknown; end: number } | undefined;
      try {
        entryCodec.unpackMultiple(data, (value: unknown, _start?: number, end?: number) => {
          first = { value, end: end! };
          return false;
        });
      } catch (error) {
        if (!(error as { incomplete?: boolean })?.incomplete) throw notAnExport('it does not start with a MessagePack value', error);
      }
      if (first) return { header: checkHeader(path, first.value, notAnExport), end: first.end };
      if (read === 0) throw notAnExport(data.length === 0 ? 'the file is empty' : 'it ends inside its first value');
      if (data.length > MAX_HEADER_BYTES) throw notAnExport(`its first value is larger than ${MAX_HEADER_BYTES} bytes`);
    }
  } finally {
    if (open === undefined) closeSync(fd);
  }
}

function checkHeader(path: string, value: unknown, notAnExport: (why: string) => Error): StateExportHeader {
  const header = value as Partial<StateExportHeader> | null;
  if (header === null || typeof header !== 'object' || Array.isArray(header) || header.format !== EXPORT_FORMAT) {
    throw notAnExport(`its first value is not a header with format '${EXPORT_FORMAT}'`);
  }
  if (!isPositiveInteger(header.formatVersion)) throw notAnExport(`its header has no valid formatVersion (${String(header.formatVersion)})`);
  if (header.formatVersion > EXPORT_FORMAT_VERSION) {
    throw new StateExportError(
      `state export ${path} has format version ${header.formatVersion}, but this statestream reads versions up to ${EXPORT_FORMAT_VERSION}; read it with a newer statestream`,
      { path, formatVersion: header.formatVersion, supported: EXPORT_FORMAT_VERSION },
    );
  }
  if (!isPositiveInteger(header.stateVersion)) throw notAnExport(`its header has no valid stateVersion (${String(header.stateVersion)})`);
  // Recorded as the stream's last batch on import: NaN would pass every batch-time check, Infinity fail every start.
  if (header.batchTime !== undefined && (typeof header.batchTime !== 'number' || !Number.isFinite(header.batchTime))) {
    throw notAnExport(`its header's batchTime is not a batch time (${String(header.batchTime)})`);
  }
  return header as StateExportHeader;
}

function isTrailer(value: unknown): value is { end: true; keyCount: number } {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && (value as { end?: unknown }).end === true;
}

/**
 * Opens an export for reading. The header is read now, so a wrong file fails here; entries
 * are read lazily, chunk by chunk, each time entries() is iterated.
 */
export function readStateExport<K = unknown, S = unknown>(path: string): StateExport<K, S> {
  if (typeof path !== 'string' || path.trim() === '') throw new ConfigError(`readStateExport expects a file path, got ${describeValue(path)}`, { option: 'path' });
  const { header, end } = readHeader(path);
  return {
    path,
    header,
    description: `export ${path}`,
    stateVersion: header.stateVersion,
    *entries(): Generator<ExportEntry<K, S>> {
      const fd = openForReading(path);
      // Read again from the file this pass reads: one replaced since it was opened (an export
      // written by rename) would be read, and migrated, as of the header read then.
      try {
        const again = readHeader(path, fd);
        if (again.end !== end || !entryCodec.pack(again.header).equals(entryCodec.pack(header))) {
          throw new StateExportError(`state export ${path} was replaced after it was opened (its header changed); open it again with readStateExport`, { path });
        }
      } catch (error) {
        closeSync(fd);
        throw error;
      }
      let index = 0;
      const truncated = () =>
        new StateExportError(
          `state export ${path} is truncated: it ends after ${index} entries without its end marker (cut short, or still being written)`,
          { path, entriesRead: index },
        );
      const damaged = (cause: unknown) =>
        new StateExportError(`state export ${path} is damaged after entry ${index}: ${(cause as Error)?.message ?? String(cause)}`, { path, entriesRead: index }, cause);
      try {
        let trailer: { keyCount: unknown } | undefined;
        for (const value of fileValues(fd, end, truncated, damaged)) {
          if (trailer) throw new StateExportError(`state export ${path} has data after its end marker (after ${index} entries)`, { path, entriesRead: index });
          if (isTrailer(value)) {
            trailer = value;
            continue;
          }
          yield checkEntry(value, `entry ${index} of state export ${path}`, { path, entry: index }) as ExportEntry<K, S>;
          index++;
        }
        if (!trailer) throw truncated();
        if (trailer.keyCount !== index) {
          throw new StateExportError(`state export ${path} says it holds ${String(trailer.keyCount)} entries, but ${index} were read; the file is damaged`, {
            path, entriesRead: index, keyCount: trailer.keyCount,
          });
        }
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** The entries of any StateSource, checked as an export's are: a source written by hand can hold anything. */
export function* sourceEntries(source: StateSource): Generator<ExportEntry> {
  let index = 0;
  for (const value of source.entries()) {
    yield checkEntry(value, `entry ${index} of ${source.description}`, { source: source.description, entry: index });
    index++;
  }
}

/**
 * A source's entries stored as they are, with no migration to check them: a state refused
 * where a batch's would be (a function, a lone surrogate) would otherwise be stored changed.
 */
export function* storableStates(entries: Iterable<ExportEntry>, description: string): Generator<ExportEntry> {
  let index = 0;
  for (const entry of entries) {
    assertEncodable(entry[1], () => `the state of entry ${index} of ${description} (key ${describeValue(entry[0])})`, () => ({ source: description, entry: index }));
    yield entry;
    index++;
  }
}

/** Every entry of one partition store, read in one read transaction so they are of one batch (the given one, which stays open, or one of its own). */
export function* storeEntries(store: PartitionStore, pinned?: Transaction): Generator<ExportEntry> {
  const transaction = pinned ?? store.env.useReadTransaction();
  try {
    for (const [key, value] of readEntries(store, transaction)) {
      const [state, lastUpdated] = decodeEntry(value);
      yield [key, state, lastUpdated];
    }
  } finally {
    if (!pinned) transaction.done();
  }
}

/** The entries of several partition stores, one store after another (each in its pinned transaction, when given). */
export function* storesEntries(stores: readonly PartitionStore[], pinned?: readonly Transaction[]): Generator<ExportEntry> {
  for (const [p, store] of stores.entries()) yield* storeEntries(store, pinned?.[p]);
}
