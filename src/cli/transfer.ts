import { existsSync, fstatSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Key } from 'lmdb';
import { murmur2Partitioner } from '../engine/partitioner.js';
import { BatchLog, FORMAT_VERSION, writeLayout } from '../storage/partition/batch-log.js';
import { encodeEntry, messageCodec } from '../storage/codec.js';
import { closePartitionStores, openPartitionStores, partitionFolder, stateDir } from '../storage/partition/store.js';
import { findSnapshot, listSnapshots, newerStoreFormat, verifySnapshot } from '../storage/snapshots/manifest.js';
import { readStateExport, writeStateExport, type ExportEntry, type StateExport, type StateExportOrigin } from '../storage/export/state-export.js';
import { snapshotEntries } from '../storage/snapshots/source.js';
import { pinOneBatch } from '../storage/export/job-export.js';
import { landingInDataDir } from '../storage/export/export-place.js';
import { BatchedWriter } from '../storage/reshard/batched-writer.js';
import { normalizeKey } from '../storage/keys.js';
import { batchTimeArg, CliFailure, checkDataFolder, common, formatBatch, integer, parseCommand, pathKind, print, toJson, UsageError } from './args.js';
import { MAX_PARTITIONS } from '../engine/state-spec.js';
import { isIntegerIn } from '../errors.js';
import { asideFolder, commitSwap, recoverInterruptedSwaps, swapPaths } from '../storage/stream-swap.js';
import { assertJobStopped, lockFolder, openStream, settledJson, settledNotes } from './stores.js';
import { counted, Progress } from './progress.js';

export const exportUsage = `Usage: statestream export --out <file|-> [--snapshot <batchTime>] [--data-dir <path>] [--stream <n>] [--json]

Writes one stream's state as a portable state export (a MessagePack sequence: header,
[key, state, lastUpdated] per key, trailer), independent of the partition count. Without
--snapshot it reads the job's stores, stopped or running: every partition is read as of
the same batch (on a running job, the read waits for a moment between two batches and
then holds that view while batches go on; opening a running job's stores may harm its
commits with lmdb-js 3.5.6, see docs/operations.md, and --snapshot avoids it).
Stores left at different batches by a failed batch are refused. With --snapshot it reads
that snapshot's copies, checked against their checksums; the snapshot folder is not touched.

Options:
  --out <file|->            the file to write (written beside it, then renamed), or - for stdout;
                            a FIFO or a device (/dev/stdout) is written through. When it goes to
                            stdout, the summary goes to stderr. Not inside the data folder: the
                            job's files there would be replaced.
  --snapshot <batchTime>    export a snapshot instead of the live stores

Progress goes to stderr: a bar on a terminal, a line every 2 s otherwise (--quiet: none).

Exit codes: 0 success, 1 stores not of one batch, damaged, snapshot not found, 2 usage error.`;

export const importUsage = `Usage: statestream import <file> [--partitions <n>] [--replace] [--data-dir <path>] [--stream <n>] [--json]

Writes a state export into a stream that has no state yet, as a job's stores: keys routed
to partitions with murmur2 as the engine does, the time index built, the export's batch
time (or 0) recorded as the last batch. A job started on it continues from that state (its
first batch must come after that batch time); a job at a newer StateSpec.stateVersion
migrates it at start.

Options:
  --partitions <n>   partition count (default: the export's numPartitions, else 4);
                     a job started with another StateSpec.numPartitions re-shards
                     the imported stores at its start
  --replace          replace a stream that has state; the old state is moved to
                     <data-dir>/replaced/<timestamp>/

Progress goes to stderr: a bar on a terminal, a line every 2 s otherwise (--quiet: none).

Exit codes: 0 success, 1 not an export / damaged export / the stream has state (without --replace), 2 usage error.`;

/**
 * Refuses an --out the export could not be written to, naming it: the export is written to
 * a temporary file beside it and renamed, so otherwise the error would name that file. Nor
 * may it land in the data folder: renamed over a store's file it destroys the store, over
 * the lock file it frees the folder while a job holds it.
 */
function checkOutFile(out: string, dataDir: string): void {
  if (pathKind(out) === 'folder') throw new CliFailure(`--out ${out} is a folder; give the export file's path`);
  const folder = dirname(resolve(out));
  const kind = pathKind(folder);
  if (kind === 'nothing') throw new CliFailure(`--out ${out}: there is no folder ${folder} to write it in`);
  if (kind !== 'folder') throw new CliFailure(`--out ${out}: ${folder} is not a folder`);
  const inside = landingInDataDir(out, dataDir);
  if (inside !== undefined) throw new CliFailure(`--out ${out} would write ${inside}, inside the data folder ${dataDir}, whose files are the job's; write the export outside it`);
}

/** Where the export goes: a file path, or stdout (then the summary goes to stderr). */
function target(out: string): string | NodeJS.WritableStream {
  return out === '-' ? process.stdout : out;
}

/** Whether the export goes to stdout: `-`, or a path to what stdout is (`/dev/stdout`, `/proc/self/fd/1`, whatever the shell redirected it to). */
function toStdout(out: string): boolean {
  if (out === '-') return true;
  try {
    const file = statSync(out);
    const stdout = fstatSync(1);
    return file.dev === stdout.dev && file.ino === stdout.ino;
  } catch {
    return false;
  }
}

function say(toStdout: boolean, json: boolean, result: object, text: string): void {
  // Then stdout carries the export itself.
  if (toStdout) process.stderr.write(`${json ? toJson(result) : text}\n`);
  else print(json ? toJson(result, 2) : text);
}

export async function exportCommand(args: string[]): Promise<number> {
  const { values } = parseCommand('export', args, { out: { type: 'string' }, snapshot: { type: 'string' } }, { min: 0, max: 0, names: '' });
  if (values.help) return print(exportUsage), 0;
  const { dataDir, stream, json, quiet } = common('export', values);
  const out = values.out as string | undefined;
  if (out === undefined) throw new UsageError('export: missing --out <file|-> (- writes to stdout)', 'export');
  if (out.trim() === '') throw new UsageError('export: --out must be a file path, or - for stdout; got ""', 'export');
  const snapshotTime = values.snapshot === undefined ? undefined : batchTimeArg('export', values.snapshot as string, '--snapshot');
  checkDataFolder(dataDir);
  if (out !== '-') checkOutFile(out, dataDir);
  // Known before the export is written: a regular file at the path is then replaced.
  const stdout = toStdout(out);

  let entries: Iterable<ExportEntry>;
  let origin: StateExportOrigin;
  let total: number;
  let cleanup = () => {};
  if (snapshotTime === undefined) {
    const opened = openStream(dataDir, stream);
    let pinned;
    try {
      // A running job commits each batch partition by partition: the read is pinned where every partition holds the same one.
      pinned = await pinOneBatch(opened.stores, dataDir, stream);
    } catch (error) {
      closePartitionStores(opened.stores, { afterFailure: true });
      throw new CliFailure(`${(error as Error).message}, or export a snapshot (--snapshot)`);
    }
    cleanup = () => {
      pinned.release();
      // The export is whole or has failed by now, which a close that gives up does not change
      // (this process ends, which lets the store go).
      closePartitionStores(opened.stores, { afterFailure: true });
    };
    origin = pinned.origin;
    entries = pinned.entries();
    // The key count of the pinned batch, for the progress line (each partition's batch log, as pinned).
    total = pinned.keyCount;
  } else {
    ({ entries, origin, total } = await snapshotExport(dataDir, stream, snapshotTime));
  }
  const progress = new Progress('export', 'keys', total, { quiet });
  try {
    const count = await writeStateExport(target(out), origin, counted(entries, progress));
    progress.finish(count);
    const result = { keyCount: count, stream, batchTime: origin.batchTime, stateVersion: origin.stateVersion, out, ...(snapshotTime === undefined ? {} : { snapshot: snapshotTime }) };
    say(stdout, json, result, `Exported ${count} keys of stream ${stream} (batch ${formatBatch(origin.batchTime)}, state version ${origin.stateVersion}${snapshotTime === undefined ? '' : `, from snapshot ${snapshotTime}`}) to ${out === '-' ? 'stdout' : out}.`);
    return 0;
  } catch (error) {
    progress.abandon();
    throw error;
  } finally {
    cleanup();
  }
}

/** A snapshot's copies of one stream, checked first: a damaged snapshot writes nothing. */
async function snapshotExport(dataDir: string, stream: number, batchTime: number): Promise<{ entries: Iterable<ExportEntry>; origin: StateExportOrigin; total: number }> {
  let info;
  try {
    info = findSnapshot(dataDir, batchTime);
  } catch (error) {
    throw new CliFailure(`${(error as Error).message}; 'statestream snapshot list' shows the snapshots`);
  }
  const manifest = info.manifest.streams.find((m) => m.stream === stream);
  if (!manifest) throw new CliFailure(`snapshot ${batchTime} holds no state of stream ${stream}`);
  const newer = newerStoreFormat(manifest);
  if (newer) throw new CliFailure(`snapshot ${batchTime} cannot be read by this statestream: ${newer}`);
  const problems = await verifySnapshot(info, { stream, partitions: manifest.partitions.map((p) => p.partition) });
  if (problems.length > 0) throw new CliFailure(`snapshot ${batchTime} is damaged: ${problems.join('; ')}`);
  return {
    entries: snapshotEntries(info.path, manifest), total: manifest.keyCount,
    origin: { stateVersion: manifest.stateVersion, batchTime, numPartitions: manifest.numPartitions, stream, snapshot: batchTime },
  };
}

export async function importCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand('import', args, { partitions: { type: 'string' }, replace: { type: 'boolean' } }, { min: 1, max: 1, names: '<file> (a state export)' });
  if (values.help) return print(importUsage), 0;
  const { dataDir, stream, json, quiet } = common('import', values);
  const given = integer('import', values, 'partitions', 1, MAX_PARTITIONS);
  checkDataFolder(dataDir);
  const file = positionals[0];
  if (!existsSync(file)) throw new CliFailure(`there is no file ${file}`);
  if (!statSync(file).isFile()) throw new CliFailure(`${file} is not a file (give a state export, as 'statestream export' writes)`);
  let source: StateExport;
  try {
    source = readStateExport(file);
  } catch (error) {
    throw new CliFailure((error as Error).message);
  }
  const header = source.header;
  const fromHeader = header.numPartitions;
  if (given === undefined && fromHeader !== undefined && !isIntegerIn(fromHeader, 1, MAX_PARTITIONS)) {
    throw new CliFailure(`the header of ${file} gives numPartitions ${JSON.stringify(fromHeader)}, which is not a partition count from 1 to ${MAX_PARTITIONS}; give --partitions <n>`);
  }
  const numPartitions = given ?? (fromHeader as number | undefined) ?? 4;

  const lock = await lockFolder(dataDir, 'import');
  try {
    // Settled first, so a half-done reshard, import or restore is neither mistaken for no state nor finished over this import later.
    const settled = recoverInterruptedSwaps(dataDir, stream);
    const target = stateDir(dataDir, stream);
    const hasState = existsSync(target) && readdirSync(target).length > 0;
    if (hasState) assertJobStopped(dataDir, stream, 'import');
    if (hasState && !values.replace) {
      throw new CliFailure(`stream ${stream} already has state under ${target}; import writes into an empty stream (use --replace to move the current state aside and replace it)`);
    }

    // Written beside the stream's folder and swapped in whole (stream-swap.ts): a failed or killed import leaves the old state.
    const paths = swapPaths(dataDir, stream, 'importing');
    const staging = paths.building;
    const stores = openPartitionStores(Array.from({ length: numPartitions }, (_, p) => join(staging, partitionFolder(p))));
    let batchTime = typeof header.batchTime === 'number' ? header.batchTime : 0;
    let count = 0;
    let keyCount = 0;
    // The export says how many keys it holds only in its trailer: the count runs without a total.
    const progress = new Progress('import', 'keys', undefined, { quiet });
    try {
      // The time index is kept because the next job may have a timeout; a job without one clears it at start.
      const writer = new BatchedWriter(stores, true, { keysMayRepeat: true });
      for (const [raw, state, lastUpdated] of source.entries()) {
        // Routed exactly as the router routes a record with this key.
        const key = normalizeKey(raw);
        // The stores' last batch is at least every key's lastUpdated: a job's first batch must
        // come after both, or its idle timeouts would run backwards.
        if (lastUpdated > batchTime) batchTime = lastUpdated;
        writer.putEntry(murmur2Partitioner.partition(key, numPartitions), key as Key, encodeEntry(state, lastUpdated), lastUpdated);
        if (++count % 10_000 === 0) progress.update(count);
      }
      writer.flush();
      progress.finish(count);
      // Fewer than the entries read when the export gives a key more than once (its last entry is kept).
      keyCount = writer.keyCounts.reduce((sum, n) => sum + n, 0);
      for (const store of stores) {
        store.env.transactionSync(() => {
          new BatchLog(store).record({ batchTime, outputs: messageCodec.pack([]), keyCount: store.state.getKeysCount() });
          writeLayout(store, { numPartitions, partitioner: murmur2Partitioner.name, formatVersion: FORMAT_VERSION, timeIndexed: true, stateVersion: header.stateVersion });
        });
      }
    } catch (error) {
      progress.abandon();
      closePartitionStores(stores, { afterFailure: true });
      rmSync(staging, { recursive: true, force: true });
      throw error;
    }
    closePartitionStores(stores);
    const replacedDir = commitSwap(paths, asideFolder(dataDir, stream));

    // What a start that finds a damaged store would restore from is then another state's.
    const snapshotsOfReplacedState = replacedDir !== undefined && listSnapshots(dataDir).length > 0;
    const result = { keyCount, entries: count, stream, numPartitions, batchTime, stateVersion: header.stateVersion, path: target, replacedDir, snapshotsOfReplacedState, settledFirst: settledJson(settled, stream) };
    if (json) print(toJson(result, 2));
    else {
      print(
        [
          ...settledNotes(settled),
          `Imported ${keyCount} keys into stream ${stream} under ${target} (${numPartitions} partitions, state version ${header.stateVersion}, last batch ${formatBatch(batchTime)}).`,
          ...(keyCount < count ? [`The export holds ${count} entries: a key given more than once keeps its last entry.`] : []),
          ...(replacedDir ? [`The state it replaced is kept in ${replacedDir}.`] : []),
          ...(snapshotsOfReplacedState
            ? [`The snapshots under ${join(dataDir, 'snapshots')} are of the replaced state: a start that finds a damaged store may restore from them. Move them away unless the import is of the same job.`]
            : []),
          `A job started on it needs a first batch after ${batchTime} (another numPartitions than ${numPartitions} re-shards it). A Kafka job should use a ZooKeeper root of its own: positions recorded by another job do not belong to this state.`,
        ].join('\n'),
      );
    }
    return 0;
  } finally {
    lock.release();
  }
}
