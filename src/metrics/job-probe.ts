import type { PartitionFigures } from '../storage/partition/figures.js';
import type { KafkaSourceStatus } from '../engine/sources/kafka.js';
import type { SnapshotOnDisk } from '../storage/snapshots/manifest.js';

/** A Kafka source as metrics and the status page see it: read-only. */
export interface KafkaProbe {
  readonly id: number;
  status(): KafkaSourceStatus;
  highWatermarks(): Promise<Map<string, number>>;
  /** How many messages its decoder could not read are kept in the source's dead-letter store. */
  deadLetterCount(): number;
}

/**
 * What metrics and the status page may read of a job: figures the stores and sources
 * hold, never the workers' internals. The context builds it from its own parts; batch
 * figures come from its events.
 */
export interface JobProbe {
  readonly appName: string;
  readonly batchIntervalMs: number;
  phase(): string;
  /** The error that failed the job, if one did. */
  failure(): Error | undefined;
  stateStreams(): Array<{ stream: number; partitions: PartitionFigures[] }>;
  /** Whether the job takes snapshots. */
  readonly snapshotsOn: boolean;
  /** The newest snapshot in the job's folder, taken by this process or before it started (a restarted job's has not completed in this process). */
  newestSnapshot(): SnapshotOnDisk | undefined;
  kafkaSources(): KafkaProbe[];
}
