import { setTimeout as sleep } from 'node:timers/promises';
import type { Transaction } from 'lmdb';
import { ConfigError, StoreMismatchError } from '../../errors.js';
import { BatchLog, readLayout } from '../partition/batch-log.js';
import { closePartitionStores, type PartitionStore } from '../partition/store.js';
import { openStreamStores } from '../partition/stream-stores.js';
import { pathArgument, streamOption } from './state-source.js';
import { landingInDataDir } from './export-place.js';
import { assertExportTarget, storesEntries, writeStateExport, type ExportEntry, type StateExportOrigin } from './state-export.js';

/** How long an export of a running job looks for a moment when every partition holds the same batch. */
const PIN_WAIT_MS = 10_000;
/** Partitions that stay at different batches this long are not catching up: a batch failed, or the job stopped. */
const PIN_STALL_MS = 3_000;
const PIN_RETRY_MS = 5;

export interface ExportJobStateOptions {
  /** Which mapWithState stream of the job, by the order the streams were created (default 0). */
  stream?: number;
}

/**
 * Exports the state of one mapWithState stream of a job, read from its stores under
 * `dataDir`. The export is of one batch: stores whose partitions stopped at different
 * batches, or at different state versions, are refused rather than mixed. A target file
 * inside `dataDir` is refused: renamed over the job's files, it would replace them.
 */
export async function exportJobState(dataDir: string, target: string | NodeJS.WritableStream, options?: ExportJobStateOptions): Promise<number> {
  pathArgument('exportJobState', 'dataDir', dataDir);
  const stream = streamOption('exportJobState', options);
  assertExportTarget('exportJobState', target);
  const inside = typeof target === 'string' ? landingInDataDir(target, dataDir) : undefined;
  if (inside !== undefined) {
    throw new ConfigError(`exportJobState: target ${target} would write ${inside}, inside the data folder ${dataDir}, whose files are the job's; write the export outside it`, { option: 'target', value: target });
  }
  const { stores } = openStreamStores(dataDir, stream, (why) => {
    switch (why.kind) {
      case 'swap-pending': return new StoreMismatchError(`exportJobState: ${why.swap}; start the job once so that it finishes it (or rolls it back), then export`, { dataDir, stream });
      case 'no-state': return new ConfigError(`exportJobState: no state stores of mapWithState stream ${stream} under ${dataDir} (${why.empty ? `${why.dir} holds no partition store` : `no ${why.dir}`})`, { dataDir, stream });
      case 'damaged':
        return new StoreMismatchError(`exportJobState: partition ${why.partition} of mapWithState stream ${stream} is damaged: ${why.problem} (${why.path}); a start restores it from the newest snapshot that fits`, {
          dataDir, stream, partition: why.partition, problem: why.problem,
        });
      case 'no-layout': return new ConfigError(`exportJobState: ${why.path} is not a statestream partition store (it has no layout)`, { dataDir, stream });
      case 'cluster':
        return new StoreMismatchError(
          `exportJobState: ${dataDir} is a cluster instance's folder: it holds copies of the partitions of stream ${stream} that instance owned, which may be behind their current owners; ` +
            "export the state from the running instances' store() or from the job's changelog topics",
          { dataDir, stream },
        );
    }
  });
  let written: number;
  try {
    const pinned = await pinOneBatch(stores, dataDir, stream);
    try {
      written = await writeStateExport(target, pinned.origin, pinned.entries());
    } finally {
      pinned.release();
    }
  } catch (error) {
    closePartitionStores(stores, { afterFailure: true });
    throw error;
  }
  closePartitionStores(stores);
  return written;
}

/** Read transactions on every partition of a stream that all see the same batch, and what they hold. */
export interface PinnedStores {
  origin: StateExportOrigin;
  /** Keys the pinned batch holds, as the partitions' batch logs recorded them. */
  keyCount: number;
  /** Every entry, read in the pinned transactions. */
  entries(): Iterable<ExportEntry>;
  release(): void;
}

/**
 * Pins a read transaction on every partition so that an export is of one batch even while
 * the job runs: a running job commits each batch partition by partition, so the pins are
 * taken again until every partition's batch log shows the same batch, then LMDB keeps that
 * view however many batches commit while it is read. Stores that stay at different
 * batches (a failed batch, a stopped job) are refused as storesOrigin refuses them.
 */
export async function pinOneBatch(stores: readonly PartitionStore[], dataDir: string, stream: number): Promise<PinnedStores> {
  const started = Date.now();
  let previous: string | undefined;
  let unchangedSince = started;
  for (;;) {
    const txns = stores.map((store) => {
      store.env.resetReadTxn();
      return store.env.useReadTransaction();
    });
    const release = () => txns.forEach((txn) => txn.done());
    try {
      const origin = storesOrigin(stores, dataDir, stream, txns);
      const keyCount = stores.reduce((n, store, p) => n + (new BatchLog(store).last(txns[p])?.keyCount ?? 0), 0);
      return { origin, keyCount, entries: () => storesEntries(stores, txns), release };
    } catch (error) {
      release();
      const seen = stores.map((store) => new BatchLog(store).last()?.batchTime).join(',');
      if (seen !== previous) [previous, unchangedSince] = [seen, Date.now()];
      const catchingUp = error instanceof StoreMismatchError && error.context.behind !== undefined;
      if (!catchingUp || Date.now() - started > PIN_WAIT_MS || Date.now() - unchangedSince > PIN_STALL_MS) throw error;
      await sleep(PIN_RETRY_MS);
    }
  }
}

/**
 * The header of an export of these stores. An export is of one batch: stores whose
 * partitions stopped at different batches, or at different state versions, are refused.
 */
export function storesOrigin(stores: readonly PartitionStore[], dataDir: string, stream: number, txns?: readonly Transaction[]): StateExportOrigin {
  const versions = new Set(stores.map((s) => readLayout(s)?.stateVersion ?? 1));
  if (versions.size > 1) {
    throw new StoreMismatchError(
      `the partitions of stream ${stream} under ${dataDir} are at state versions ${[...versions].join(' and ')}, because a migration did not finish; ` +
        'start the job once with the newest version to finish it, then export',
      { dataDir, stream, versions: [...versions] },
    );
  }
  const last = stores.map((s, p) => new BatchLog(s).last(txns?.[p])?.batchTime);
  const newest = last.reduce<number | undefined>((m, t) => (t !== undefined && (m === undefined || t > m) ? t : m), undefined);
  const behind = last.flatMap((t, partition) => (t !== newest ? [partition] : []));
  if (behind.length > 0) {
    throw new StoreMismatchError(
      `partitions ${behind.join(', ')} of stream ${stream} under ${dataDir} did not commit batch ${newest}, so the stores are not of one batch; ` +
        'restart the job so it completes the batch, then export',
      { dataDir, stream, batchTime: newest, behind },
    );
  }
  return { stateVersion: [...versions][0], numPartitions: stores.length, stream, ...(newest === undefined ? {} : { batchTime: newest }) };
}
