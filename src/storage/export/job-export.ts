import { existsSync } from 'node:fs';
import { ConfigError, StoreMismatchError } from '../../errors.js';
import { BatchLog, readLayout } from '../partition/batch-log.js';
import { openPartitionStore, partitionPath, type PartitionStore } from '../partition/store.js';
import { exportStores, type StateExportOrigin } from './state-export.js';

export interface ExportJobStateOptions {
  /** Which mapWithState stream of the job, by the order the streams were created (default 0). */
  stream?: number;
}

/**
 * Exports the state of one mapWithState stream of a job, read from its stores under
 * `dataDir`. The export is of one batch: stores whose partitions stopped at different
 * batches, or at different state versions, are refused rather than mixed.
 */
export async function exportJobState(dataDir: string, target: string | NodeJS.WritableStream, options: ExportJobStateOptions = {}): Promise<number> {
  const stream = options.stream ?? 0;
  if (!Number.isInteger(stream) || stream < 0) throw new ConfigError(`exportJobState: stream must be a non-negative integer, got ${String(stream)}`, { option: 'stream', value: stream });
  const first = partitionPath(dataDir, stream, 0);
  // openPartitionStore creates missing folders: look before opening.
  if (!existsSync(first)) throw new ConfigError(`exportJobState: no state stores of mapWithState stream ${stream} under ${dataDir} (no ${first})`, { dataDir, stream });

  const stores: PartitionStore[] = [openPartitionStore(first)];
  try {
    const layout = readLayout(stores[0]);
    if (!layout) throw new ConfigError(`exportJobState: ${first} is not a statestream partition store (it has no layout)`, { dataDir, stream });
    for (let p = 1; p < layout.numPartitions; p++) stores.push(openPartitionStore(partitionPath(dataDir, stream, p)));

    return await exportStores(stores, storesOrigin(stores, dataDir, stream), target);
  } finally {
    for (const store of stores) store.env.close();
  }
}

/**
 * The header of an export of these stores. An export is of one batch: stores whose
 * partitions stopped at different batches, or at different state versions, are refused.
 */
export function storesOrigin(stores: readonly PartitionStore[], dataDir: string, stream: number): StateExportOrigin {
  const versions = new Set(stores.map((s) => readLayout(s)?.stateVersion ?? 1));
  if (versions.size > 1) {
    throw new StoreMismatchError(
      `the partitions of stream ${stream} under ${dataDir} are at state versions ${[...versions].join(' and ')}, because a migration did not finish; ` +
        'start the job once with the newest version to finish it, then export',
      { dataDir, stream, versions: [...versions] },
    );
  }
  const last = stores.map((s) => new BatchLog(s).last()?.batchTime);
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
