import { parseArgs, type ParseArgsConfig } from 'node:util';

type Flags = Record<string, string | boolean | undefined>;

/** The examples' command lines: bad flags print the usage and exit 2, as CLI users expect. */
export class Cli {
  constructor(
    private readonly name: string,
    private readonly usage: string,
  ) {}

  fail(message: string): never {
    console.error(`${this.name}: ${message}\n\n${this.usage}`);
    process.exit(2);
  }

  /** Parses argv; `--help` prints the usage and exits 0. */
  parse(options: NonNullable<ParseArgsConfig['options']>): Flags {
    let values: Flags;
    try {
      values = parseArgs({ options: { ...options, help: { type: 'boolean', short: 'h' } } }).values as Flags;
    } catch (error) {
      // parseArgs' messages already name the flag: "Unknown option '--bogus'".
      this.fail((error as Error).message);
    }
    if (values.help) {
      console.log(this.usage);
      process.exit(0);
    }
    return values;
  }

  /** A reader that closed the pipe (`… | head`): `stop` ends the job quietly, instead of an EPIPE and its stack. */
  onClosedStdout(stop: () => void): void {
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      stop();
    });
  }

  int(values: Flags, name: string, fallback: number, min = 1): number {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (typeof raw !== 'string' || !/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < min) this.fail(`--${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
    return n;
  }
}
