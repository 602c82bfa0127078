import { Kafka, logLevel, type KafkaConfig } from 'kafkajs';
import { unlessAborted } from '../../abort.js';
import { OffsetStoreError } from '../../errors.js';

/** kafkajs's retries: a connection or request retried 30 times, up to 5 s apart (about two minutes). */
export const KAFKA_RETRY = { initialRetryTime: 200, maxRetryTime: 5_000, retries: 30 };

/** A kafkajs admin, producer or consumer: what is disconnected at the end. */
interface Disconnectable {
  disconnect(): Promise<void>;
}

/**
 * A kafkajs client whose start a stop can end. kafkajs retries a refused connection for
 * about two minutes and has no way to cancel that, so a start waiting for brokers it
 * cannot reach held `stop()` (and the process) as long. While the start is under way, an
 * interrupt empties the list of brokers kafkajs is given (it treats an empty list as a
 * non-retriable error, so its retrying ends at its next attempt) and each of the start's
 * waits (`step`) gives up at once. Once started, an interrupt changes nothing: a stop that
 * drains its last batches may still need another broker while one is down.
 */
export class InterruptibleKafka {
  readonly kafka: Kafka;
  private readonly abort = new AbortController();
  private readonly brokers: string;
  private started = false;
  /** Steps a stop left behind, still under way in kafkajs. */
  private readonly abandoned: Array<Promise<unknown>> = [];

  constructor(options: Pick<KafkaConfig, 'clientId' | 'ssl' | 'sasl'> & { brokers: string[] }) {
    this.brokers = options.brokers.join(',');
    this.kafka = new Kafka({
      ...options,
      brokers: () => (this.abort.signal.aborted ? [] : options.brokers),
      logLevel: process.env.STATESTREAM_KAFKA_LOG ? logLevel.DEBUG : logLevel.NOTHING,
      retry: KAFKA_RETRY,
    });
  }

  /** Ends the start's waits; nothing once the start is over. */
  interrupt(): void {
    if (!this.started) this.abort.abort();
  }

  /** The start is over: from now on the client is left to kafkajs's own retrying. */
  startDone(): void {
    this.started = true;
  }

  /**
   * `work()` (a connection, a metadata request) unless an interrupt comes first: then an
   * OffsetStoreError naming the brokers, and `work`'s own outcome is dropped (an interrupt
   * that came before the step begins no work). A connection kafkajs gave up on is named
   * the same way, with kafkajs's error as its cause. Not for `consumer.run()`: kafkajs
   * cannot stop a consumer whose group join was left behind (it fetches on, unseen).
   */
  async step<T>(work: () => Promise<T>, what: string): Promise<T> {
    const signal = this.abort.signal;
    const context = { brokers: this.brokers, step: what };
    const interrupted = () => new OffsetStoreError(`Kafka brokers ${this.brokers}: interrupted while ${what}`, context);
    if (signal.aborted) throw interrupted();
    const running = work();
    let cut: OffsetStoreError | undefined;
    try {
      return await unlessAborted(running, signal, () => {
        this.abandoned.push(running.catch(() => undefined));
        return (cut = interrupted());
      });
    } catch (error) {
      // Failed as the stop came: the stop is what the start reports.
      if (signal.aborted) throw cut ?? interrupted();
      if (error instanceof Error && error.name === 'KafkaJSNumberOfRetriesExceeded') {
        throw new OffsetStoreError(`Kafka brokers ${this.brokers}: gave up ${what} after ${KAFKA_RETRY.retries} retries: ${error.message}`, context, error);
      }
      throw error;
    }
  }

  /**
   * Disconnects `clients` in order. After an interrupt, only once the steps it left behind
   * have settled, and without the caller waiting: kafkajs's disconnect waits for the
   * requests in flight, so a stop would otherwise wait for the slow broker it had cut
   * short (a retry interval and a connection timeout for one that refuses, a whole answer
   * for one that is slow).
   */
  async disconnect(...clients: Array<Disconnectable | undefined>): Promise<void> {
    const each = async () => {
      for (const client of clients) await client?.disconnect().catch(() => undefined);
    };
    if (this.abandoned.length === 0) return each();
    void Promise.all(this.abandoned).then(each);
  }
}
