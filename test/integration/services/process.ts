/**
 * Child processes for the integration tests' real services (ZooKeeper, the
 * mock Kafka broker, kcat): none outlives the test process.
 *
 * - Each is started under `setpriv --pdeathsig SIGKILL` where that exists, so
 *   the kernel kills it if the test process dies, even by SIGKILL.
 * - Those still running when the test process exits normally are SIGKILLed.
 * - Handles are unref'd: a service a test forgot to stop never keeps the test
 *   process alive (every wait below holds its own timer instead).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { within } from '../../wait.js';

const SETPRIV = '/usr/bin/setpriv';
const TAIL_CHARS = 16_000;

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServiceProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<Exit>;
  running(): boolean;
  /** The last few KB the process wrote to stderr. */
  stderrTail(): string;
  /** Sends `signal`, waits up to `graceMs` for the exit, then SIGKILLs and waits. */
  terminate(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

export interface SpawnOptions {
  /** 'pipe' keeps stdin open for commands; its EOF is a stop signal for some services. */
  stdin?: 'pipe' | 'ignore';
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Starts `command args` as a service that dies with the test process. */
export function spawnService(
  name: string,
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ServiceProcess {
  installExitHook();
  const [file, argv] = existsSync(SETPRIV)
    ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', command, ...args]]
    : [command, [...args]];
  const child = spawn(file, argv, {
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    cwd: options.cwd,
    env: options.env ?? process.env,
  });
  live.add(child);

  let tail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-TAIL_CHARS);
  });
  // Always drained, so a chatty service never blocks on a full pipe (callers may listen too).
  child.stdout?.on('data', () => undefined);

  let spawnError: Error | undefined;
  const exited = new Promise<Exit>((resolve) => {
    child.once('error', (err) => {
      // spawn failed (ENOENT…): no 'exit' follows
      spawnError = err;
      if (child.pid === undefined) {
        live.delete(child);
        resolve({ code: null, signal: null });
      }
    });
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });

  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) {
    (stream as Socket | null)?.unref?.();
  }

  const running = () => live.has(child);

  return {
    name,
    child,
    get pid() {
      if (child.pid === undefined) throw new Error(`${name}: not started: ${spawnError?.message ?? 'unknown error'}`);
      return child.pid;
    },
    exited,
    running,
    stderrTail: () => (spawnError ? `${spawnError.message}\n${tail}` : tail),
    async terminate(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) {
      if (!running()) return exited;
      child.kill(signal);
      // This timer also keeps the event loop alive until the exit (the child is unref'd).
      const timer = setTimeout(() => child.kill('SIGKILL'), signal === 'SIGKILL' ? 1000 : graceMs);
      try {
        return await within(exited, `${name} (pid ${child.pid}) to exit after SIGKILL`, { timeoutMs: graceMs + 10_000 });
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export function describeExit(exit: Exit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
}
