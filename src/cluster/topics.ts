import type { Admin } from 'kafkajs';
import { ConfigError } from '../errors.js';

/** The topic stage 1 writes a state stream's [key, value] pairs to, one partition per state partition. */
export function repartitionTopic(appName: string, stream: number): string {
  return `${appName}-${stream}-repartition`;
}

/** The topic a state stream's owners write each batch's changed keys to, one partition per state partition. */
export function changelogTopic(appName: string, stream: number): string {
  return `${appName}-${stream}-changelog`;
}

export interface TopicNeed {
  name: string;
  partitions: number;
  /** Changelogs are compacted in production: the newest entry of each key is what a restore needs. */
  compacted: boolean;
}

/**
 * Makes sure the job's own topics exist with the partitions the state needs. Missing ones
 * are created with the admin client (what a production cluster does); a broker that cannot
 * create topics (librdkafka's mock cluster implements no CreateTopics) leaves the start
 * failing with the topics to create, and how. A topic with another partition count is
 * refused: its partitions would not line up with the state's.
 */
export async function ensureTopics(admin: Admin, needs: TopicNeed[], replicationFactor = -1): Promise<void> {
  const existing = new Set(await admin.listTopics());
  const missing = needs.filter((n) => !existing.has(n.name));
  if (missing.length > 0) {
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((n) => ({
          topic: n.name, numPartitions: n.partitions, replicationFactor,
          configEntries: n.compacted ? [{ name: 'cleanup.policy', value: 'compact' }] : [],
        })),
      });
    } catch (error) {
      throw new ConfigError(
        `cluster: the topics ${missing.map((n) => `${n.name} (${n.partitions} partitions${n.compacted ? ', compacted' : ''})`).join(', ')} do not exist and could not be created: ${(error as Error).message}; ` +
          'create them with your cluster\'s tools (kafka-topics.sh --create …) before starting the job',
        { topics: missing.map((n) => n.name) },
      );
    }
  }
  for (const n of needs) {
    const [metadata] = (await admin.fetchTopicMetadata({ topics: [n.name] })).topics;
    if (metadata.partitions.length !== n.partitions) {
      throw new ConfigError(
        `cluster: topic ${n.name} has ${metadata.partitions.length} partitions, but the state stream has ${n.partitions}; ` +
          'the job\'s own topics must have one partition per state partition',
        { topic: n.name, partitions: metadata.partitions.length, expected: n.partitions },
      );
    }
  }
}
