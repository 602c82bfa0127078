import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { connectProblem, isDigest, isZooKeeperPath } from '../storage/zookeeper/connect-options.js';

/** A command line that cannot be run as typed: exit code 2, with a hint. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command: string | undefined,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Something the tool was asked to do that cannot be done (missing key, damaged store, refusal): exit code 1. */
export class CliFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliFailure';
  }
}

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; default?: string | boolean }>;

/** What every command takes. */
export const commonOptions: OptionSpec = {
  'data-dir': { type: 'string' },
  stream: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
};

/** -V among a command's options: main prints the version instead of running the command. */
export class VersionAsked extends Error {
  constructor() {
    super('the version was asked for');
    this.name = 'VersionAsked';
  }
}

export const zookeeperOptions: OptionSpec = {
  zookeeper: { type: 'string' },
  'zk-root': { type: 'string' },
  'zk-digest': { type: 'string' },
  'zk-timeout': { type: 'string' },
};

/** How long a command waits for ZooKeeper to answer before it says it cannot reach it. */
export const DEFAULT_ZK_TIMEOUT_MS = 10_000;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * Parses one command's arguments strictly: an unknown option or a missing value is a
 * usage error naming the command, so the hint can point at its --help.
 */
export function parseCommand(command: string, args: string[], options: OptionSpec, positionals: { min: number; max: number; names: string }): Parsed {
  let parsed: Parsed;
  let tokens: Array<{ kind: string; name?: string }>;
  try {
    ({ tokens, ...parsed } = parseArgs({ args, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true, tokens: true }) as Parsed & { tokens: typeof tokens });
  } catch (error) {
    const message = (error as Error).message;
    // A value that starts with '-' (a negative number) reads as another option: say so in one line.
    const ambiguous = /^Option '(--[\w-]+)[^']*' argument is ambiguous/.exec(message);
    if (ambiguous) throw new UsageError(`${ambiguous[1]} is missing its value, or its value starts with '-' (write ${ambiguous[1]}=<value> for such a value)`, command);
    // An argument that starts with one '-' (state get -7) reads as short options, and parseArgs
    // names the first letter it does not know (-1.5 as '-1'): where the command takes arguments
    // and this one looks like a value (a number, or more than one letter), the hint shows it
    // as given. A single unknown letter (-j) is a mistyped option, named as such below.
    const short = /^Unknown option '(-[^-'][^']*)'/.exec(message);
    const arg = short && (args.find((a) => a.startsWith(short[1]) && !a.startsWith('--')) ?? short[1]);
    if (arg && positionals.max > 0 && (/^-[\d.]/.test(arg) || arg.length > 2)) {
      throw new UsageError(`unknown option '${arg}': an argument that starts with '-' goes after --, which ends the options, as in statestream ${command} [options] -- ${arg}`, command);
    }
    // parseArgs' messages already name the flag ("Unknown option '--bogus'"); drop its own hint.
    throw new UsageError(message.split('\n')[0].split('. To specify')[0].replace(/\.$/, ''), command);
  }
  // parseArgs keeps the last of a repeated option: --out a --out b would write only b, without a word.
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option' || token.name === undefined) continue;
    if (seen.has(token.name)) throw new UsageError(`${command}: --${token.name} is given more than once`, command);
    seen.add(token.name);
  }
  if (parsed.values.version) throw new VersionAsked();
  if (parsed.values.help) return parsed;
  const n = parsed.positionals.length;
  if (n < positionals.min) throw new UsageError(`${command}: missing ${positionals.names}`, command);
  if (n > positionals.max) {
    const extra = parsed.positionals[positionals.max];
    // `state get -- -5 --data-dir x`: after --, an option is an argument too.
    const afterDashes = extra.startsWith('-') && args.includes('--') ? ' (everything after -- is an argument: put the options before --)' : '';
    throw new UsageError(`${command}: unexpected argument ${JSON.stringify(extra)}${afterDashes}`, command);
  }
  return parsed;
}

export interface Common {
  dataDir: string;
  stream: number;
  /** Whether --stream was given (inspect shows every stream otherwise). */
  streamGiven: boolean;
  json: boolean;
  /** No progress output (--quiet). */
  quiet: boolean;
}

export function common(command: string, values: Parsed['values']): Common {
  const raw = values.stream as string | undefined;
  const stream = raw === undefined ? 0 : Number(raw);
  if (raw !== undefined && (!/^\d+$/.test(raw) || !Number.isSafeInteger(stream))) throw new UsageError(`--stream must be a stream index (0, 1, …), got ${JSON.stringify(raw)}`, command);
  const given = (values['data-dir'] as string | undefined) ?? './statestream-data';
  if (given.trim() === '') throw new UsageError('--data-dir must be a folder path, got ""', command);
  // Absolute, as a job's: paths a swap records for whoever finishes it (another command, the
  // job, run from another folder) must name the same place there.
  const dataDir = resolve(given);
  return { dataDir, stream, streamGiven: raw !== undefined, json: values.json === true, quiet: values.quiet === true };
}

/**
 * Refuses a --data-dir that is a file, and with `existing`, one that is not there (for the
 * commands that only read it). Called once every argument is checked: a bad argument is a
 * usage error (exit 2) that names it, whatever the folder is.
 */
export function checkDataFolder(dataDir: string, options: { existing?: boolean } = {}): void {
  // A file given as the folder would read as a folder with nothing in it ("No snapshots"), or fail with a bare ENOTDIR.
  const kind = pathKind(dataDir);
  if (kind === 'file' || kind === 'below-a-file') throw new CliFailure(`${dataDir} is not a folder (give the job's data folder with --data-dir)`);
  if (options.existing && kind === 'nothing') throw new CliFailure(`there is no data folder at ${dataDir} (give the job's folder with --data-dir)`);
}

/**
 * What a path names: a folder, a file (anything else that is not a folder), nothing yet, or
 * a path through a file (stat's ENOTDIR), which no folder can be made at.
 */
export function pathKind(path: string): 'folder' | 'file' | 'nothing' | 'below-a-file' {
  try {
    const stat = statSync(path, { throwIfNoEntry: false });
    return stat === undefined ? 'nothing' : stat.isDirectory() ? 'folder' : 'file';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return 'below-a-file';
    throw error;
  }
}

export function integer(command: string, values: Parsed['values'], name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const raw = values[name] as string | undefined;
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(raw)}`, command);
  }
  return n;
}

/**
 * A snapshot's batch time as `snapshot list` prints it (milliseconds; a ManualClock's may be
 * negative or fractional, and a snapshot's folder is named by String(batchTime)).
 */
export function batchTimeArg(command: string, raw: string, what: string): number {
  const n = Number(raw);
  if (raw === '' || !Number.isFinite(n) || String(n) !== raw) {
    throw new UsageError(`${command}: ${what} must be a batch time in milliseconds as 'statestream snapshot list' prints it, got ${JSON.stringify(raw)}`, command);
  }
  return n;
}

export interface ZooKeeperTarget {
  connect: string;
  root: string;
  digest?: string;
  /** How long to wait for an answer, in ms (--zk-timeout; default DEFAULT_ZK_TIMEOUT_MS). */
  timeoutMs?: number;
}

/** --zookeeper and --zk-root go together: offsets are only found under the job's root. */
export function zookeeperTarget(command: string, values: Parsed['values']): ZooKeeperTarget | undefined {
  const connect = values.zookeeper as string | undefined;
  const root = values['zk-root'] as string | undefined;
  const timeoutMs = integer(command, values, 'zk-timeout', 100, 3_600_000);
  const digest = values['zk-digest'] as string | undefined;
  if (connect === undefined && root === undefined) {
    // Said, not ignored: a flag that does nothing would let a typo in --zookeeper pass unseen.
    if (timeoutMs !== undefined) throw new UsageError('--zk-timeout needs --zookeeper host:port and --zk-root', command);
    if (digest !== undefined) throw new UsageError('--zk-digest needs --zookeeper host:port and --zk-root', command);
    return undefined;
  }
  if (connect === undefined) throw new UsageError('--zk-root needs --zookeeper host:port', command);
  if (root === undefined) throw new UsageError('--zookeeper needs --zk-root /statestream/<app> (the job\'s ZooKeeper root)', command);
  const problem = connectProblem(connect);
  if (problem !== undefined) throw new UsageError(`--zookeeper must be host:port[,host:port…][/chroot], each port from 1 to 65535: ${problem}`, command);
  if (!isZooKeeperPath(root)) throw new UsageError(`--zk-root must be an absolute ZooKeeper path like /statestream/app (no '.' or '..' element), got ${JSON.stringify(root)}`, command);
  if (digest !== undefined && !isDigest(digest)) throw new UsageError('--zk-digest must be user:password', command);
  return { connect, root, digest, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

/** JSON for what MessagePack states can hold: Maps, Sets, bigints, binary and dates have no JSON form of their own. */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(
    value,
    function (_key, v: unknown) {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Map) return [...v.keys()].every((k) => typeof k === 'string') ? Object.fromEntries(v) : [...v.entries()];
      if (v instanceof Set) return [...v];
      if (v instanceof Uint8Array) return { base64: Buffer.from(v).toString('base64') };
      return v;
    },
    indent,
  ) ?? 'null';
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = -1;
  do {
    value /= 1024;
    unit++;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A batch time, with its wall-clock reading when it looks like one (tests use small manual clocks). */
export function formatBatch(time: number | undefined): string {
  if (time === undefined) return '-';
  return time >= 946_684_800_000 ? `${time} (${new Date(time).toISOString()})` : String(time);
}

/** Left-aligned columns, the header row first. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  ')).join('\n');
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
