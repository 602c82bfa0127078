#!/usr/bin/env node
/**
 * `statestream`: look at and manage a job's state folder from the shell — inspect the
 * stores, list, create and restore snapshots, read a key's state. One file per command group.
 */
import { readFileSync } from 'node:fs';
import { UsageError, VersionAsked } from './args.js';

const usage = `Usage: statestream <command> [options]

Commands:
  inspect                      streams, partition stores and their health, snapshots, offsets
  snapshot list [--verify]     the snapshots, newest first
  snapshot create              snapshot a stopped job's stores
  snapshot restore <batchTime> put a snapshot in place of a stopped job's state
  state get <key>              one key's state (the key is JSON when it parses, else a string)
  state count                  how many keys a stream holds
  export --out <file|->        the state as a portable export file (--snapshot <batchTime> for a snapshot's)
  import <file>                an export file into a stream with no state (--partitions n, --replace)
  reshard --partitions <n>     re-distribute a stopped job's state over n partitions

Options every command takes:
  --data-dir <path>   the job's data folder (default ./statestream-data)
  --stream <n>        the mapWithState stream, by creation order (default 0; inspect and snapshot list|create: every stream)
  --json              one JSON document instead of text
  -q, --quiet         no progress output (long work shows it on stderr)
  -h, --help          this help, or a command's own (statestream <command> --help)
  -V, --version       the version

Exit codes: 0 success, 1 operational failure, 2 usage error, 130 or 143 export interrupted (Ctrl-C or
SIGTERM), 141 stdout's reader closed the pipe (export --out - | head).
Set STATESTREAM_DEBUG=1 to see stack traces.`;

/**
 * Each command's module is loaded when it runs: a command is a process of its own, and
 * loading every command's modules (kafkajs, ZooKeeper's client, lmdb-js) cost each run about
 * 150 ms that most commands never use.
 */
const commands: Record<string, (args: string[]) => Promise<number>> = {
  inspect: async (args) => (await import('./inspect.js')).inspect(args),
  snapshot: async (args) => (await import('./snapshot.js')).snapshot(args),
  state: async (args) => (await import('./state.js')).state(args),
  export: async (args) => (await import('./transfer.js')).exportCommand(args),
  import: async (args) => (await import('./transfer.js')).importCommand(args),
  reshard: async (args) => (await import('./reshard.js')).reshard(args),
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError('missing command', undefined);
  // -V is among the options every command takes: a command's parser finds it among its options
  // (never as an option's value); here it is found first, or after a command group's name.
  if (isVersion(command) || (rest.length > 0 && isVersion(rest[0]))) return printVersion();
  if (command === 'help' && rest.length > 0 && !['--help', '-h'].includes(rest[0])) {
    // `help snapshot` is `snapshot --help`.
    const [topic, ...sub] = rest;
    if (!Object.hasOwn(commands, topic)) throw new UsageError(`help: unknown command ${JSON.stringify(topic)}`, undefined);
    return commands[topic](sub.some((a) => a === '--help' || a === '-h') ? sub : [...sub, '--help']);
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  // Own commands only: `constructor` or `toString` are no commands.
  const run = Object.hasOwn(commands, command) ? commands[command] : undefined;
  if (!run) {
    throw new UsageError(command.startsWith('-') ? `put the command first (statestream <command> ${command} …), got option ${command}` : `unknown command ${JSON.stringify(command)}`, undefined);
  }
  // An export's Ctrl-C or kill exits through process.exit, which removes its scratch copies and
  // temporary file (storage/removed-at-exit.ts); it writes in awaited steps, so the handler runs
  // at once. The commands that change state work synchronously: a handler would run only once
  // they were done, so they die at the signal, and the next command or start settles a swap cut short.
  if (command === 'export') for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(signal, () => process.exit(code));
  return run(rest);
}

/** What a shell reports for a writer whose pipe closed (128 + SIGPIPE). */
const CLOSED_PIPE_EXIT = 141;

function isVersion(arg: string): boolean {
  return arg === '--version' || arg === '-V';
}

function printVersion(): number {
  // dist/src/cli/main.js → the package's own package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  process.stdout.write(`statestream ${pkg.version}\n`);
  return 0;
}

function report(error: unknown): number {
  if (error instanceof VersionAsked) return printVersion();
  const debug = process.env.STATESTREAM_DEBUG === '1';
  // `export --out - | head`: the reader had enough. Nothing to report, as for any Unix filter.
  // Only stdout's own: a socket's EPIPE (ZooKeeper's, a broker's) is a failure to report.
  if ((error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' && process.stdout.errored) return CLOSED_PIPE_EXIT;
  if (error instanceof UsageError) {
    // `snapshot list|create|restore` each have a page of their own options; `state get|count` share theirs.
    const own = error.command?.startsWith('snapshot ') ? error.command : error.command?.split(' ')[0];
    const help = own ? `statestream ${own} --help` : 'statestream --help';
    process.stderr.write(`statestream: ${error.message}\nRun '${help}' for usage.\n`);
    return 2;
  }
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`statestream: ${message}\n`);
  if (debug && error instanceof Error) process.stderr.write(`${error.stack}\n`);
  return 1;
}

// A reader that closed the pipe ends the command at once, quietly: what is left has nowhere to go.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(CLOSED_PIPE_EXIT);
  throw error;
});

// The exit code is set, not forced: process.exit could cut short an export still flushing to stdout.
main(process.argv.slice(2)).then(
  (code) => void (process.exitCode = code),
  (error: unknown) => void (process.exitCode = report(error)),
);
