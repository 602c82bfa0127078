import { existsSync } from 'node:fs';
import { StatestreamError } from '../errors.js';
import { BatchLog } from '../storage/partition/batch-log.js';
import { interruptedSwap, recoverInterruptedSwaps } from '../storage/stream-swap.js';
import { reshardStores } from '../storage/reshard/reshard.js';
import { stateDir } from '../storage/partition/store.js';
import { CliFailure, checkDataFolder, common, formatBatch, integer, parseCommand, print, toJson, UsageError } from './args.js';
import { MAX_PARTITIONS } from '../engine/state-spec.js';
import { Progress } from './progress.js';
import { assertJobStopped, lockFolder, openStream, settledJson, settledNotes } from './stores.js';

export const reshardUsage = `Usage: statestream reshard --partitions <n> [--data-dir <path>] [--stream <n>] [--json] [--quiet]

Re-distributes a STOPPED job's state over n partitions, exactly as a job started with
StateSpec.numPartitions(n) would at start: every key routed with murmur2, the time index
rebuilt, dead letters moved with their key, crash-safe (a kill leaves the old stores or
the new ones). Run it ahead of a restart to re-shard a large state with progress shown,
instead of inside the job's start().

Options:
  --partitions <n>   the new partition count
  --quiet            no progress (it goes to stderr: a bar on a terminal, a line every 2 s otherwise)

Exit codes: 0 success (or already n partitions), 1 no state, refused (a job has the stores open, a half-committed batch), 2 usage error.`;

export async function reshard(args: string[]): Promise<number> {
  const { values } = parseCommand('reshard', args, { partitions: { type: 'string' } }, { min: 0, max: 0, names: '' });
  if (values.help) return print(reshardUsage), 0;
  const { dataDir, stream, json, quiet } = common('reshard', values);
  // No more than a job may be started with (StateSpec.numPartitions).
  const to = integer('reshard', values, 'partitions', 1, MAX_PARTITIONS);
  if (to === undefined) throw new UsageError('reshard: missing --partitions <n>', 'reshard');
  checkDataFolder(dataDir);
  const noState = () => new CliFailure(`stream ${stream} has no state under ${dataDir} (no ${stateDir(dataDir, stream)})`);
  // Before the lock, which would make the folder: a mistyped --data-dir is named, not created.
  if (!existsSync(stateDir(dataDir, stream)) && !interruptedSwap(dataDir, stream)) throw noState();
  const lock = await lockFolder(dataDir, 'reshard');
  try {
    // Settled first: an import or a restore cut short between its renames leaves no state folder until it is finished.
    const settled = recoverInterruptedSwaps(dataDir, stream);
    const notes = settledNotes(settled).map((note) => `${note}\n`).join('');
    if (!existsSync(stateDir(dataDir, stream))) throw noState();
    assertJobStopped(dataDir, stream, 'reshard');

    const opened = openStream(dataDir, stream);
    const from = opened.layout.numPartitions;
    const total = opened.stores.reduce((n, store) => n + (new BatchLog(store).last()?.keyCount ?? 0), 0);
    opened.close();
    if (from === to) {
      const result = { stream, from, to, keyCount: total, changed: false, settledFirst: settledJson(settled, stream) };
      print(json ? toJson(result, 2) : `${notes}Stream ${stream} already has ${to} partitions; nothing to do.`);
      return 0;
    }
    const progress = new Progress('reshard', 'keys', total, { quiet });
    let report;
    try {
      report = reshardStores(dataDir, stream, to, { onProgress: (keys) => progress.update(keys) });
    } catch (error) {
      progress.abandon();
      if (error instanceof StatestreamError) throw new CliFailure(error.message);
      throw error;
    }
    progress.finish(report.keys);
    const result = { stream, from, to, keyCount: report.keys, deadLetters: report.deadLetters, batchTime: report.batchTime, changed: true, settledFirst: settledJson(settled, stream) };
    print(
      json
        ? toJson(result, 2)
        : `${notes}Resharded stream ${stream} from ${from} to ${to} partitions: ${report.keys} keys, ${report.deadLetters} dead letters, last batch ${formatBatch(report.batchTime)}.\n` +
            `Start the job with StateSpec.numPartitions(${to}); another count re-shards it again at start.`,
    );
    return 0;
  } finally {
    lock.release();
  }
}
