import type { JobProbe, KafkaProbe } from '../../src/metrics/job-probe.js';

/** What the metrics and the status page ask a running single-process job with no state streams, no Kafka source and no snapshots, with `parts` changed. */
export function runningProbe(parts: Partial<JobProbe> = {}): JobProbe {
  return {
    appName: 'status', batchIntervalMs: 1000, phase: () => 'running', failure: () => undefined, stateStreams: () => [], kafkaSources: () => [],
    snapshotsOn: false, newestSnapshot: () => undefined, ...parts,
  };
}

/** A Kafka source reading t:0 with its next batch at offset 10, its log-end offsets from `highWatermarks`. */
export function kafkaProbe(highWatermarks: KafkaProbe['highWatermarks'], { id = 0, deadLetterCount = 0 } = {}): KafkaProbe {
  return {
    id,
    status: () => ({ source: id, topics: ['t'], zookeeper: { connect: 'zk', root: '/r', opened: true, connected: true, sinceMs: 0 }, partitions: [{ topic: 't', partition: 0, next: 10, fetched: 10, buffered: 0 }] }),
    highWatermarks,
    deadLetterCount: () => deadLetterCount,
  };
}
