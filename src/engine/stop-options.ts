import { ConfigError, StopTimeoutError, unknownOption } from '../errors.js';

export interface StopOptions {
  /**
   * How long stop() lets the batches already generated run before it terminates the worker
   * threads still applying one (Spark's spark.streaming.gracefulStopTimeout, Kafka Streams'
   * close(timeout)). Without it, stop() waits for them however long they take. A batch cut
   * short does not commit and its outputs do not run; it fails with a StopTimeoutError, and
   * a source that can replay (Kafka) runs it again on the next start.
   */
  timeoutMs?: number;
}

/** The stop timeout in ms, or undefined for none; a bad option is named before anything stops. */
export function stopTimeout(options: StopOptions | undefined): number | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw new ConfigError(`stop() expects an options object, got ${String(options)}`);
  const unknown = unknownOption(options, ['timeoutMs']);
  if (unknown !== undefined) throw new ConfigError(`stop(): unknown option "${unknown}" (known: timeoutMs)`, { option: unknown });
  const { timeoutMs } = options;
  if (timeoutMs === undefined || timeoutMs === Infinity) return undefined;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0) {
    throw new ConfigError(`stop(): timeoutMs must be a number of milliseconds ≥ 0 (or Infinity), got ${typeof timeoutMs === 'number' ? String(timeoutMs) : (JSON.stringify(timeoutMs) ?? String(timeoutMs))}`, { option: 'timeoutMs' });
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
