import { setTimeout as sleep } from 'node:timers/promises';

/** One backoff policy for every network call that can fail for a while (ZooKeeper, Kafka). */
export interface RetryPolicy {
  /** First delay, doubled after each failure up to `maxDelayMs`. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** Give up once this much time has passed since the first attempt. */
  maxElapsedMs: number;
}

export const defaultRetryPolicy: RetryPolicy = { initialDelayMs: 100, maxDelayMs: 5_000, maxElapsedMs: 10 * 60_000 };

export interface RetryHooks {
  /** Whether this error is worth another attempt; others are thrown at once. */
  retriable(error: unknown): boolean;
  /** Called before each wait, for logs and events. */
  onRetry?(error: unknown, attempt: number, delayMs: number): void;
  /** Stops the waiting when the caller is shutting down. */
  signal?: AbortSignal;
}

export async function withRetry<T>(what: () => Promise<T>, hooks: RetryHooks, policy: RetryPolicy = defaultRetryPolicy): Promise<T> {
  const started = Date.now();
  let delay = policy.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await what();
    } catch (error) {
      if (!hooks.retriable(error) || Date.now() - started + delay > policy.maxElapsedMs || hooks.signal?.aborted) throw error;
      // Full jitter keeps several clients from retrying in step.
      const wait = Math.round(delay / 2 + Math.random() * (delay / 2));
      hooks.onRetry?.(error, attempt, wait);
      await sleep(wait, undefined, { signal: hooks.signal }).catch(() => undefined);
      if (hooks.signal?.aborted) throw error;
      delay = Math.min(policy.maxDelayMs, delay * 2);
    }
  }
}
