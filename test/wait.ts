/**
 * Every wait in the suite goes through these: each has a deadline and, when it passes,
 * fails naming what it waited for (node's test runner has no default timeout, so a wait
 * without one could hang the whole run). Deadlines are generous: the machine is shared,
 * and a slow run must not pass for a broken one, nor a broken one hang.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BatchEventMap } from '../src/index.js';

export const DEFAULT_WAIT_MS = 60_000;

export interface WaitOptions {
  /** How long before the wait fails. Default 60 s. */
  timeoutMs?: number;
  /** What else to say when it fails: recent output, the values seen so far. */
  detail?: () => string;
}

function timedOut(what: string, ms: number, detail?: () => string): Error {
  let more = '';
  try {
    more = detail ? `; ${detail()}` : '';
  } catch (error) {
    more = `; (detail failed: ${(error as Error).message})`;
  }
  return new Error(`timed out after ${ms} ms waiting for ${what}${more}`);
}

/** Races `promise` against a deadline. The timer keeps the event loop alive meanwhile, so an unref'd wait cannot end the process early. */
export async function within<T>(promise: Promise<T>, what: string, options: WaitOptions = {}): Promise<T> {
  const ms = options.timeoutMs ?? DEFAULT_WAIT_MS;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut(what, ms, options.detail)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

/**
 * Polls `condition` until it returns something truthy, and resolves with that. A condition
 * that throws fails the wait at once (an assertion inside it is an answer, not a retry).
 */
export async function waitUntil<T>(what: string, condition: () => T | Promise<T>, options: WaitOptions & { intervalMs?: number } = {}): Promise<Truthy<T>> {
  const ms = options.timeoutMs ?? DEFAULT_WAIT_MS;
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value as Truthy<T>;
    if (Date.now() > deadline) throw timedOut(what, ms, options.detail);
    await sleep(options.intervalMs ?? 20);
  }
}

/**
 * Polls `check` until it returns something other than undefined, and resolves with that.
 * Unlike waitUntil, a check that throws counts as "not yet" (a page or a server that is
 * still coming up); the last error is named if the deadline passes.
 */
export async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, options: WaitOptions & { intervalMs?: number } = {}): Promise<T> {
  const ms = options.timeoutMs ?? DEFAULT_WAIT_MS;
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw timedOut(what, ms, () => [last ? `last error: ${(last as Error).message}` : '', options.detail?.() ?? ''].filter(Boolean).join('; '));
    await sleep(options.intervalMs ?? 100);
  }
}

type ContextEvents = {
  on<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): unknown;
  off<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): unknown;
};

/**
 * The next `event` a StreamingContext emits after this call (that `filter` accepts, when
 * given). Call it before the action that should cause the event; the listener is removed
 * whether the event comes or the deadline passes.
 */
export function nextEvent<E extends keyof BatchEventMap>(
  emitter: ContextEvents,
  event: E,
  what: string,
  options: WaitOptions & { filter?: (payload: BatchEventMap[E]) => boolean } = {},
): Promise<BatchEventMap[E]> {
  let listener!: (payload: BatchEventMap[E]) => void;
  const seen = new Promise<BatchEventMap[E]>((resolve) => {
    listener = (payload) => {
      if (!options.filter || options.filter(payload)) resolve(payload);
    };
    emitter.on(event, listener);
  });
  return within(seen, what, options).finally(() => emitter.off(event, listener));
}
