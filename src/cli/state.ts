import { murmur2Partitioner } from '../engine/partitioner.js';
import { BatchLog } from '../storage/partition/batch-log.js';
import { decodeEntry } from '../storage/codec.js';
import { keyProblem, normalizeKey } from '../storage/keys.js';
import { readEntry } from '../storage/partition/change-log.js';
import { CliFailure, checkDataFolder, common, formatBatch, parseCommand, print, toJson, UsageError } from './args.js';
import { openStream } from './stores.js';

export const stateUsage = `Usage: statestream state <get|count> [options]

  statestream state get <key> [--string]    one key's state and the batch time of its last record
  statestream state count                   how many keys the stream holds

Options:
  --data-dir <path>   the job's data folder (default ./statestream-data)
  --stream <n>        the mapWithState stream (default 0)
  --string            (get) take the key as a string even when it is valid JSON ("42", "true")
  --json              one JSON document

The key is parsed as JSON when it is valid JSON: 42 is a number, '["user",7]' a tuple key;
'"42"' is the string 42 (as is 42 with --string); anything else is a string, and so is text
with spaces around it (' 42'). An integer of 2^53 or more is refused (JSON may round it). A key that
starts with - goes after --, which ends the options: statestream state get --data-dir d -- -5. The key is routed to its
partition as the engine routes it.

Exit codes: 0 found, 1 the key is absent or the stream has no state or a store is damaged, 2 usage error.`;

export async function state(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'get':
      return get(rest);
    case 'count':
      return count(rest);
    case '--help':
    case '-h':
      print(stateUsage);
      return 0;
    case undefined:
      throw new UsageError('state: missing command (get or count)', 'state');
    default:
      throw new UsageError(`state: unknown command ${JSON.stringify(sub)} (get or count)`, 'state');
  }
}

/**
 * JSON when it parses (numbers, booleans, tuple arrays), else the text itself. Text with
 * spaces around it is text: JSON would drop them, and " 42" would look up 42. An integer of
 * 2^53 or more is refused: JSON may round it to another number, and show that key's state.
 */
function parseKey(text: string, forceString: boolean): unknown {
  if (forceString || text.trim() !== text) return text;
  let key: unknown;
  try {
    key = JSON.parse(text);
  } catch {
    return text;
  }
  // The number literals outside strings, in any form (9007199254740993.0 and 9007199254740993E0 round too).
  for (const [, literal] of text.matchAll(/"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g)) {
    const n = Number(literal);
    if (literal !== undefined && Number.isInteger(n) && !Number.isSafeInteger(n)) {
      throw new UsageError(`state get: the key's number ${literal} is an integer of 2^53 or more, where a number read from JSON may be rounded (here to ${JSON.stringify(n)}, perhaps another key); give --string to look up the text`, 'state');
    }
  }
  return key;
}

async function get(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand('state get', args, { string: { type: 'boolean' } }, { min: 1, max: 1, names: '<key>' });
  if (values.help) return print(stateUsage), 0;
  const { dataDir, stream, json } = common('state get', values);
  const key = normalizeKey(parseKey(positionals[0], values.string === true));
  const problem = keyProblem(key);
  if (problem) throw new UsageError(`state get: ${problem} (use --string to look up the text as a string key)`, 'state');
  checkDataFolder(dataDir);
  const opened = openStream(dataDir, stream);
  try {
    if (opened.layout.partitioner !== murmur2Partitioner.name) throw new CliFailure(`the stores use partitioner ${JSON.stringify(opened.layout.partitioner)}; this tool knows only ${murmur2Partitioner.name}`);
    const partition = murmur2Partitioner.partition(key, opened.layout.numPartitions);
    const bytes = readEntry(opened.stores[partition], key);
    if (bytes === undefined) {
      // 42 read as JSON is the number 42: the string key "42" is another key, perhaps the one meant.
      const text = positionals[0];
      const asText = typeof key === 'string' ? undefined : readEntry(opened.stores[murmur2Partitioner.partition(text, opened.layout.numPartitions)], text);
      const hint = asText === undefined ? '' : `; the string key ${toJson(text)} is there: add --string to read it`;
      throw new CliFailure(`key ${toJson(key)} is not in the state of stream ${stream} (it would be in partition ${partition})${hint}`);
    }
    const [value, lastUpdated] = decodeEntry(bytes);
    if (json) print(toJson({ key, partition, state: value, lastUpdated }, 2));
    else print(`${toJson(value)}\nlastUpdated ${formatBatch(lastUpdated)}  (partition ${partition})`);
    return 0;
  } finally {
    opened.close();
  }
}

async function count(args: string[]): Promise<number> {
  const { values } = parseCommand('state count', args, {}, { min: 0, max: 0, names: '' });
  if (values.help) return print(stateUsage), 0;
  const { dataDir, stream, json } = common('state count', values);
  checkDataFolder(dataDir);
  const opened = openStream(dataDir, stream);
  try {
    // The key count each partition committed with its last batch, as StateView.count reads it.
    const partitions = opened.stores.map((store, partition) => {
      const last = new BatchLog(store).last();
      return { partition, keyCount: last?.keyCount ?? 0, lastBatch: last?.batchTime ?? null };
    });
    const total = partitions.reduce((n, p) => n + p.keyCount, 0);
    // A sum over partitions at different batches is a count no batch ever had: said, not hidden.
    const batches = new Set(partitions.map((p) => p.lastBatch));
    const uneven = batches.size > 1;
    if (json) print(toJson({ stream, keyCount: total, unevenBatches: uneven, partitions }, 2));
    else {
      if (uneven) {
        const held = partitions.map((p) => `partition ${p.partition}: ${p.lastBatch ?? 'none'}`).join(', ');
        process.stderr.write(`statestream: the partitions hold different batches (${held}): the count adds each one's own (a job running, or a batch in flight when it stopped)\n`);
      }
      print(String(total));
    }
    return 0;
  } finally {
    opened.close();
  }
}
