import type { KafkaSourceStatus } from '../engine/sources/kafka.js';
import type { KafkaProbe } from './job-probe.js';

export interface PartitionLag {
  topic: string;
  partition: number;
  /** Where the next batch starts (the position ZooKeeper records after the last ended batch). */
  next: number;
  fetched: number;
  /** The broker's log-end offset, when it answered (now or earlier). */
  highWatermark: number | undefined;
  /** highWatermark − next: records written and not yet in an ended batch. */
  lag: number | undefined;
}

export interface SourceLag {
  source: number;
  zookeeper: KafkaSourceStatus['zookeeper'];
  partitions: PartitionLag[];
  /** When the broker last answered for the high watermarks, and the last failure in words. */
  watermarksAt: number | undefined;
  problem: string | undefined;
}

/**
 * Asks a Kafka source's broker for its log-end offsets at most once a second and never
 * makes a scrape wait long for it: a broker that does not answer in `timeoutMs` leaves
 * the last known offsets in place, and the problem is reported in words.
 */
export class LagSampler {
  private marks = new Map<string, number>();
  private at: number | undefined;
  private problem: string | undefined;
  private asking: Promise<void> | undefined;
  private askedAt = 0;

  constructor(
    private readonly source: KafkaProbe,
    private readonly timeoutMs = 2_000,
    private readonly minIntervalMs = 1_000,
  ) {}

  async sample(): Promise<SourceLag> {
    if (!this.asking && Date.now() - this.askedAt >= this.minIntervalMs) {
      this.askedAt = Date.now();
      this.asking = this.source
        .highWatermarks()
        .then((marks) => {
          this.marks = marks;
          this.at = Date.now();
          this.problem = undefined;
        })
        .catch((error: unknown) => void (this.problem = `the Kafka broker did not give its log-end offsets: ${(error as Error)?.message ?? String(error)}`))
        .finally(() => (this.asking = undefined));
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.timeoutMs)));
    const answered = await Promise.race([this.asking?.then(() => true), late.then(() => false)]);
    clearTimeout(timer);
    if (answered === false) this.problem ??= `the Kafka broker has not answered for its log-end offsets within ${this.timeoutMs} ms; lag shown as of ${this.at === undefined ? 'never' : new Date(this.at).toISOString()}`;
    const status = this.source.status();
    return {
      source: status.source,
      zookeeper: status.zookeeper,
      watermarksAt: this.at,
      problem: this.problem,
      partitions: status.partitions.map((p) => {
        const high = this.marks.get(`${p.topic}:${p.partition}`);
        return { topic: p.topic, partition: p.partition, next: p.next, fetched: p.fetched, highWatermark: high, lag: high === undefined ? undefined : Math.max(0, high - p.next) };
      }),
    };
  }
}
