import type { Producer } from 'kafkajs';
import { describeValue, InvalidRecordError } from '../errors.js';
import type { BatchRun } from '../engine/batch.js';
import type { DStream } from '../engine/dstream.js';
import { murmur2Partitioner } from '../engine/partitioner.js';
import type { KafkaRecord } from '../engine/sources/kafka.js';
import { assertPair, assertRecordValue, keyToKeep } from '../storage/keys.js';
import { PairBundler } from './pairs.js';
import { sendChunks } from './send-chunks.js';

/** Messages (bundles of pairs) per produce request. */
const SEND_BUNDLES = 50;

export interface StageOneTarget {
  stream: { stateIndex: number; numPartitions: number; parentStream: DStream<unknown> };
  topic: string;
}

/**
 * Stage 1 of a cluster batch: runs each state stream's map/flatMap/filter over the source
 * records this instance took, and produces every [key, value] pair to the state stream's
 * repartition topic, in the partition that is its state partition (murmur2 of the key, as a
 * single process shards it), tagged with the source record it came from and its place
 * among that record's pairs. Resolves once every pair is acknowledged by all in-sync replicas.
 */
export class StageOneWriter {
  constructor(
    private readonly producer: Producer,
    private readonly targets: StageOneTarget[],
  ) {}

  async write(batch: BatchRun, records: Array<KafkaRecord<unknown>>): Promise<void> {
    for (const { stream, topic } of this.targets) {
      const bundles = Array.from({ length: stream.numPartitions }, () => new PairBundler());
      let index = 0;
      let last = -1;
      let n = 0;
      await stream.parentStream.eachRecordFrom(batch, (pair, from) => {
        assertPair(pair, batch.time, index, stream.stateIndex);
        assertRecordValue(pair, batch.time, index, stream.stateIndex);
        n = from === last ? n + 1 : 0;
        last = from;
        const record = records[from];
        const key = keyToKeep(pair[0]);
        try {
          bundles[murmur2Partitioner.partition(key, stream.numPartitions)].add({ key, value: pair[1], origin: { topic: record.topic, partition: record.partition, offset: Number(record.offset), n } });
        } catch (error) {
          throw new InvalidRecordError(`record ${index} of batch ${batch.time}: its value ${describeValue(pair[1])} cannot be written to ${topic}: ${(error as Error).message}`, { batchTime: batch.time, index, stream: stream.stateIndex });
        }
        index++;
      });
      const messages = bundles.flatMap((b, partition) => b.finish().map((value) => ({ value, partition })));
      for (const chunk of sendChunks(messages, SEND_BUNDLES)) await this.producer.send({ topic, acks: -1, messages: chunk });
    }
  }
}
