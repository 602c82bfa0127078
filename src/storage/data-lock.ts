import { closeSync, constants, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, DataDirLockedError } from '../errors.js';
import { describeProcess, isGone, parseIdentity, thisProcess, type ProcessIdentity } from './holder.js';

// fs-native-extensions ships no types; these are the calls used. On Linux tryLock takes an OFD
// lock (F_OFD_SETLK): held by the open file description, so a second open in this process
// conflicts too, closing any other descriptor of the file leaves it alone, and the kernel drops
// it when the process dies, however it dies.
const require = createRequire(import.meta.url);
const { tryLock } = require('fs-native-extensions') as { tryLock(fd: number, options?: { shared?: boolean }): boolean };

export const LOCK_FILE = 'statestream.lock';

/** Who holds a data folder: a job (its appName) or a CLI command that changes state. */
export interface FolderHolder extends ProcessIdentity {
  appName?: string;
  /** The `statestream` command (`import`, `snapshot restore`, …). */
  command?: string;
}

// `statestream inspect` probes the lock for a moment; a start that meets the probe tries again for this long.
const PROBE_GRACE_MS = 250;
// The holder writes its record just after it locks: a reader that comes in between reads again.
const READ_ATTEMPTS = 25;

function what(holder: FolderHolder): string {
  return holder.command ? `statestream ${holder.command}` : `job "${holder.appName ?? 'statestream'}"`;
}

export function describeHolder(holder: FolderHolder | undefined): string {
  if (!holder) return 'a process that has not yet written its name into the lock file';
  return describeProcess(holder, what(holder));
}

/** The holder's record; undefined when the file says nothing usable (yet). */
async function readHolder(path: string): Promise<FolderHolder | undefined> {
  for (let attempt = 1; ; attempt++) {
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch {
      // Unreadable: nothing to name.
    }
    const holder = parseIdentity<FolderHolder>(text);
    // A record of a process that is gone was left by an earlier holder: the new one is still writing.
    if ((holder && !isGone(holder)) || attempt >= READ_ATTEMPTS) return holder && !isGone(holder) ? holder : undefined;
    await sleep(10);
  }
}

/**
 * The lock on a job's data folder (`<dataDir>/statestream.lock`), held from a context's start()
 * to the end of its stop(), and by CLI commands that change state while they run. The file
 * is never deleted (deleting a lock file lets two processes lock two different files); the
 * lock, not the file, is what counts, and it dies with its process.
 */
export class DataDirLock {
  private constructor(
    readonly dataDir: string,
    readonly path: string,
    private fd: number | undefined,
    readonly holder: FolderHolder,
  ) {}

  /** Takes the folder, or fails with DataDirLockedError naming who has it. Creates the folder if needed. */
  static async acquire(dataDir: string, who: { appName?: string; command?: string }): Promise<DataDirLock> {
    const path = join(dataDir, LOCK_FILE);
    const fd = openLockFile(dataDir, path);
    try {
      const deadline = Date.now() + PROBE_GRACE_MS;
      while (!lock(fd, dataDir, path)) {
        if (Date.now() >= deadline) throw refusal(dataDir, path, who, await readHolder(path));
        await sleep(10);
      }
      const holder: FolderHolder = { ...thisProcess(), ...who };
      const record = Buffer.from(`${JSON.stringify(holder)}\n`);
      ftruncateSync(fd, 0);
      writeSync(fd, record, 0, record.length, 0);
      fsyncSync(fd);
      return new DataDirLock(dataDir, path, fd, holder);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  get held(): boolean {
    return this.fd !== undefined;
  }

  /** Closing the descriptor releases the lock; the record stays in the file, as the last holder. */
  release(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

function unusable(dataDir: string, path: string, error: unknown): ConfigError {
  return new ConfigError(`the data folder ${dataDir} cannot be locked (${(error as Error).message}): it must be a writable folder on a file system with file locks`, { option: 'dataDir', dataDir, lockFile: path });
}

function openLockFile(dataDir: string, path: string): number {
  try {
    mkdirSync(dataDir, { recursive: true });
    return openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (error) {
    throw unusable(dataDir, path, error);
  }
}

/** tryLock, whose only expected refusal is "held elsewhere" (false); anything else means no locks here. */
function lock(fd: number, dataDir: string, path: string): boolean {
  try {
    return tryLock(fd);
  } catch (error) {
    throw unusable(dataDir, path, error);
  }
}

function refusal(dataDir: string, path: string, who: { command?: string }, holder: FolderHolder | undefined): DataDirLockedError {
  const advice = who.command
    ? 'it changes state, so it needs the folder to itself: stop that first'
    : holder?.command
      ? 'that command is changing the stores: start the job once it has finished'
      : 'a second copy of a job must not run on the same folder: stop that one first, or give this one another dataDir';
  return new DataDirLockedError(`${who.command ?? 'start()'}: the data folder ${dataDir} is in use by ${describeHolder(holder)}; ${advice} (lock file ${path})`, {
    dataDir, lockFile: path, holder,
  });
}

/**
 * Whether someone holds the folder now, and who, without taking it: a shared lock conflicts
 * with the holder's exclusive one and is dropped at once. For `statestream inspect`.
 */
export async function folderLockHolder(dataDir: string): Promise<{ held: boolean; holder: FolderHolder | undefined }> {
  const path = join(dataDir, LOCK_FILE);
  if (!existsSync(path)) return { held: false, holder: undefined };
  const fd = openSync(path, 'r');
  try {
    // Free: the record left in the file is a past holder's, which inspect does not show.
    if (tryLock(fd, { shared: true })) return { held: false, holder: undefined };
  } finally {
    closeSync(fd);
  }
  return { held: true, holder: await readHolder(path) };
}
