import { unlessAborted } from '../abort.js';
import { ConfigError, describeValue, StopTimeoutError, unknownOption } from '../errors.js';

/** The longest delay a Node timer keeps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface StopOptions {
  /**
   * How long stop() lets the batches already generated run before it terminates the worker
   * threads still applying one (Spark's spark.streaming.gracefulStopTimeout, Kafka Streams'
   * close(timeout)). Without it, stop() waits for them however long they take. A batch cut
   * short does not commit and its outputs do not run; it fails with a StopTimeoutError, and
   * a source that can replay (Kafka) runs it again on the next start. An output operation
   * whose promise has not settled by then is left behind the same way, its batch's state
   * committed: a single-process job does not record the batch's source positions and runs
   * its outputs again on the next start; a cluster instance's are lost, as at a crash.
   */
  timeoutMs?: number;
}

/** The stop timeout in ms, or undefined for none; a bad option is named before anything stops. */
export function stopTimeout(options: StopOptions | undefined): number | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw new ConfigError(`stop() expects an options object, got ${describeValue(options)}`);
  const unknown = unknownOption(options, ['timeoutMs']);
  if (unknown !== undefined) throw new ConfigError(`stop(): unknown option "${unknown}" (known: timeoutMs)`, { option: unknown });
  const { timeoutMs } = options;
  if (timeoutMs === undefined || timeoutMs === Infinity) return undefined;
  // Node's timers hold at most 2^31 − 1 ms (24.8 days); a longer one would fire at once and cut every batch.
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_TIMER_MS) {
    throw new ConfigError(`stop(): timeoutMs must be a number of milliseconds from 0 to ${MAX_TIMER_MS} (about 24.8 days), or Infinity for no limit, got ${describeValue(timeoutMs)}`, { option: 'timeoutMs' });
  }
  return timeoutMs;
}

/** What a batch that the stop cut short fails with. */
export function stopTimedOut(batchTime: number, timeoutMs: number, cause: unknown): StopTimeoutError {
  return new StopTimeoutError(
    `stop() waited ${timeoutMs} ms and batch ${batchTime} was still applying: the worker threads were terminated, the batch did not commit and its outputs did not run`,
    { batchTime, timeoutMs },
    cause,
  );
}

/** What a start that a stop's deadline cut short fails with (its threads terminated under it). */
export function startCutShort(timeoutMs: number, cause: unknown): StopTimeoutError {
  return new StopTimeoutError(
    `stop() waited ${timeoutMs} ms while the job was still starting: the worker threads were terminated and start() did not finish (${(cause as Error)?.message ?? String(cause)})`,
    { timeoutMs },
    cause,
  );
}

/**
 * An output operation's result, awaited until the stop's deadline (`cut` aborted with the
 * timeout as its reason) if that comes first. An output still pending then is left behind,
 * and may yet finish on its own; one that never returns at all holds the main thread, and
 * no stop can cut it.
 */
export async function outputUntilCut(result: unknown, cut: AbortSignal, batchTime: number, cluster: boolean): Promise<void> {
  if (typeof (result as PromiseLike<unknown> | undefined)?.then !== 'function') return;
  await unlessAborted(
    result as PromiseLike<unknown>,
    cut,
    () =>
      new StopTimeoutError(
        `stop() waited ${String(cut.reason)} ms and an output operation of batch ${batchTime} was still running: it was left behind, and the batch failed with its state committed ` +
          (cluster ? '(a cluster instance does not run its outputs again)' : 'but its source positions not recorded (a replayable source runs its outputs again on the next start)'),
        { batchTime, timeoutMs: cut.reason },
      ),
  );
}
