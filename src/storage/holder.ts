import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * A process as a data folder's lock file and a ZooKeeper owner node record it, so that one
 * refused can name the other, and a process on the same machine can tell whether it still runs.
 */
export interface ProcessIdentity {
  pid: number;
  host: string;
  /**
   * The pid namespace (`/proc/self/ns/pid`), when readable: containers on one machine may share
   * a host name and even pids, and a pid means something only within its namespace.
   */
  pidNamespace?: string;
  /**
   * The kernel's boot id (`/proc/sys/kernel/random/boot_id`), when readable: machines cloned
   * from one image share a host name and the initial pid namespace's id, never a boot id.
   */
  boot?: string;
  /** When it took the folder or the root (ISO 8601). */
  since: string;
}

/** What a /proc entry says, or undefined where there is no /proc (or no such entry). */
function fromProc(read: () => string): string | undefined {
  try {
    return read().trim() || undefined;
  } catch {
    return undefined;
  }
}

const namespace = fromProc(() => readlinkSync('/proc/self/ns/pid'));
const boot = fromProc(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'));

/** Equal, or not known on one side: only a known difference tells two places apart. */
const agree = (a: string | undefined, b: string | undefined) => a === undefined || b === undefined || a === b;

export function thisProcess(): ProcessIdentity {
  return { pid: process.pid, host: hostname(), ...(namespace ? { pidNamespace: namespace } : {}), ...(boot ? { boot } : {}), since: new Date().toISOString() };
}

/**
 * Whether `pid` means the same thing here as where `who` ran: the same host and, when both
 * know them, the same pid namespace and the same boot of the same kernel. Another boot may
 * be this machine's earlier one, or another machine's: neither can be told from here.
 */
export function sameProcessSpace(who: ProcessIdentity): boolean {
  return who.host === hostname() && agree(who.pidNamespace, namespace) && agree(who.boot, boot);
}

export function isThisProcess(who: ProcessIdentity): boolean {
  return sameProcessSpace(who) && who.pid === process.pid;
}

/**
 * True only when `who` certainly no longer runs: it ran where its pid means what it means
 * here, and no process has that pid. A reused pid makes a dead process look alive, never
 * the other way round.
 */
export function isGone(who: ProcessIdentity): boolean {
  if (!sameProcessSpace(who) || who.pid === process.pid) return false;
  try {
    process.kill(who.pid, 0);
    return false;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** "process 4711 on host db-2 (job "x", since …)", or "this process (pid 4711, job "x", since …)". */
export function describeProcess(who: ProcessIdentity, role?: string): string {
  const details = [...(role ? [role] : []), `since ${who.since}`].join(', ');
  return isThisProcess(who) ? `this process (pid ${who.pid}, ${details})` : `process ${who.pid} on host ${who.host} (${details})`;
}

/** Reads a record one of these processes wrote; undefined for what is not one (empty, cut short, foreign). */
export function parseIdentity<T extends ProcessIdentity>(text: string): T | undefined {
  try {
    const value = JSON.parse(text) as Partial<T>;
    return typeof value?.pid === 'number' && typeof value.host === 'string' && typeof value.since === 'string' ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}
