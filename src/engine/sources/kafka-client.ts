import { Kafka, logLevel, type KafkaConfig } from 'kafkajs';
import { OffsetStoreError } from '../../errors.js';

/** kafkajs's retries: a connection or request retried 30 times, up to 5 s apart (about two minutes). */
const RETRY = { initialRetryTime: 200, maxRetryTime: 5_000, retries: 30 };

/**
 * A kafkajs client whose waits for brokers a stop can end. kafkajs retries a refused
 * connection for about two minutes and has no way to cancel that, so a start waiting for
 * brokers it cannot reach held `stop()` (and the process) as long. Here the brokers are
 * given as a function that lists none once interrupted: kafkajs treats an empty list as a
 * non-retriable error, so its retrying ends at its next attempt (at most 5 s later), and
 * each wait of a start (`step`) gives up at once.
 */
export class InterruptibleKafka {
  readonly kafka: Kafka;
  private readonly abort = new AbortController();
  private readonly brokers: string;

  constructor(options: Pick<KafkaConfig, 'clientId' | 'ssl' | 'sasl'> & { brokers: string[] }) {
    this.brokers = options.brokers.join(',');
    this.kafka = new Kafka({
      ...options,
      brokers: () => (this.abort.signal.aborted ? [] : options.brokers),
      logLevel: process.env.STATESTREAM_KAFKA_LOG ? logLevel.DEBUG : logLevel.NOTHING,
      retry: RETRY,
    });
  }

  get interrupted(): boolean {
    return this.abort.signal.aborted;
  }

  interrupt(): void {
    this.abort.abort();
  }

  /**
   * `work` (a connection, a metadata request) unless an interrupt comes first: then an
   * OffsetStoreError naming the brokers, and `work`'s own outcome is dropped. A connection
   * kafkajs gave up on is named the same way, with kafkajs's error as its cause.
   */
  step<T>(work: Promise<T>, what: string): Promise<T> {
    const signal = this.abort.signal;
    const context = { brokers: this.brokers, step: what };
    const interrupted = () => new OffsetStoreError(`Kafka brokers ${this.brokers}: interrupted while ${what}`, context);
    if (signal.aborted) {
      work.catch(() => undefined);
      return Promise.reject(interrupted());
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(interrupted());
      signal.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onAbort);
          if (signal.aborted) reject(interrupted());
          else if (error instanceof Error && error.name === 'KafkaJSNumberOfRetriesExceeded') {
            reject(new OffsetStoreError(`Kafka brokers ${this.brokers}: gave up ${what} after ${RETRY.retries} retries: ${error.message}`, context, error));
          } else reject(error);
        },
      );
    });
  }
}
