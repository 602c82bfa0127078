import type { Producer } from 'kafkajs';
import { OffsetStoreError } from '../errors.js';
import type { DeadLetter } from '../storage/partition/dead-letters.js';
import { endMessage, entryMessage, epochMessage, letterMessage, readChangelogRecord, takeoverMessage, type BatchEnd, type KafkaMessage, type RecordSink } from './changelog.js';
import type { PartitionReader } from './partition-reader.js';
import { sendChunks } from './send-chunks.js';

/**
 * Records per produce request. kafkajs groups a request's messages by partition by copying
 * the group for each message (quadratic in one request's size); a batch that changed 10^5
 * keys sent whole kept the main thread busy for minutes, past the ZooKeeper session.
 */
const SEND_RECORDS = 1_000;

/**
 * Where the last of `messages` landed, from what the broker answered for their sends (made
 * one after another, in order). `beforeEach` runs before each request and throws to send no
 * more (an owner whose lease ran out part-way through a batch of many requests).
 */
async function send(producer: Producer, topic: string, partition: number, messages: KafkaMessage[], beforeEach?: () => void): Promise<number> {
  let last = -1;
  for (const chunk of sendChunks(messages, SEND_RECORDS)) {
    beforeEach?.();
    const [meta] = await producer.send({ topic, acks: -1, messages: chunk.map((m) => ({ ...m, partition })) });
    if (!meta || meta.errorCode !== 0 || meta.baseOffset === undefined) {
      throw new OffsetStoreError(`the changelog ${topic}[${partition}] did not take ${chunk.length} records (error code ${meta?.errorCode})`, { topic, partition });
    }
    last = Number(meta.baseOffset) + chunk.length - 1;
  }
  return last;
}

/** Writes one state partition's changelog: a batch's changed keys, dead letters and end, or an owner's epoch marker. */
export class ChangelogWriter {
  constructor(
    private readonly producer: Producer,
    readonly topic: string,
  ) {}

  /** Returns the offset of the batch's end record. `beforeEach` runs before each produce request, and throws to send no more. */
  writeBatch(partition: number, keys: unknown[], entries: Array<Uint8Array | null>, end: BatchEnd, letters: DeadLetter[] = [], beforeEach?: () => void): Promise<number> {
    const messages = keys.map((key, i) => entryMessage(end.epoch, end.batchTime, key, entries[i]));
    for (const letter of letters) messages.push(letterMessage(end.epoch, letter));
    messages.push(endMessage(end));
    return send(this.producer, this.topic, partition, messages, beforeEach);
  }

  /** An owner takes the partition: what older epochs write after this is ignored by restores. Returns its offset. */
  writeEpoch(partition: number, epoch: number, owner: string): Promise<number> {
    return send(this.producer, this.topic, partition, [epochMessage(epoch, owner)]);
  }

  /** The new owner restored up to its marker and found `accepts` as the last whole batch. Returns its offset. */
  writeTakeover(partition: number, epoch: number, accepts: BatchEnd | undefined, beforeEach?: () => void): Promise<number> {
    return send(this.producer, this.topic, partition, [takeoverMessage(epoch, accepts)], beforeEach);
  }
}

/**
 * Reads a partition's changelog from `from` up to (not including) `until`, into `restore`;
 * the records are read with `reader`, which must read the changelog topic.
 */
export async function readChangelog(reader: PartitionReader, topic: string, partition: number, from: number, until: number, restore: RecordSink, timeoutMs: number): Promise<number> {
  if (until <= from) return 0;
  reader.open(topic, partition, from);
  try {
    let read = 0;
    await reader.readUntil(topic, partition, until, timeoutMs, ({ message }) => {
      restore.read(readChangelogRecord(message.key!, message.value, message.headers));
      read++;
    });
    return read;
  } finally {
    reader.close(topic, partition);
  }
}
