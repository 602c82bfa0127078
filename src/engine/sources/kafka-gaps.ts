import kafkajs, { type Admin } from 'kafkajs';
import { DataLossError, OffsetStoreError } from '../../errors.js';
import type { OffsetRange, RecordedBatch } from '../../storage/zookeeper/offsets.js';
import { BatchEvents, type DataLostEvent } from '../batch-events.js';

/** A partition's offsets as the broker holds them: low is the earliest it still has, high the next it will write. */
export interface Watermarks {
  low: number;
  high: number;
}

/**
 * One partition's watermarks as the broker reports them now. A partition the topic no longer
 * has (deleted and made again with fewer) fails loudly: read as offset 0, a recreated topic
 * would pass for one that kept every record.
 */
export async function watermarksOf(admin: Admin, topic: string, partition: number): Promise<Watermarks> {
  let offsets: Awaited<ReturnType<Admin['fetchTopicOffsets']>>;
  try {
    offsets = await admin.fetchTopicOffsets(topic);
  } catch (error) {
    // kafkajs 2.2 reads metadata that lists no partition of the topic (seen while a broker of
    // three came back, its leaders not yet elected) as an empty answer, and fails on it with
    // a TypeError ("Cannot destructure property 'partitions' of 'high.pop(...)'"). That is a
    // broker not ready, to retry as kafkajs's own errors are, not a defect of the job.
    if (error instanceof TypeError && /'partitions' of '(high|low)\.pop\(\.\.\.\)'/.test(error.message)) throw new kafkajs.KafkaJSError(`the brokers gave no offsets of topic ${topic} (its partitions' leaders not known yet): ${error.message}`, { retriable: true });
    throw error;
  }
  const p = offsets.find((o) => o.partition === partition);
  if (!p) throw new OffsetStoreError(`the topic ${topic} has no partition ${partition}`, { topic, partition });
  return { low: Number(p.low), high: Number(p.high) };
}

/** Offsets a job needs that the broker no longer holds: `until` is the earliest offset it still holds. */
export interface Gap extends OffsetRange {
  where: DataLostEvent['where'];
  batchTime?: number;
  /** For a recorded batch: the one in flight when the job stopped, or one to replay for a restored store. */
  replay?: boolean;
  /** For a position's gap that begins where the batch in flight ends: the position ZooKeeper holds. */
  position?: number;
}

/**
 * At start: every stored position and every recorded range (the batch in flight, the
 * batches a restored store replays) that begins before the earliest offset the broker
 * holds. A range wholly deleted is lost whole; one cut is lost up to the low watermark.
 */
export function gapsAtStart(
  watermarks: ReadonlyMap<string, Watermarks>,
  stored: ReadonlyMap<string, number>,
  recorded: readonly RecordedBatch[],
  pending: RecordedBatch | undefined,
): Gap[] {
  const gaps: Gap[] = [];
  for (const batch of recorded) {
    for (const r of batch.ranges) {
      const low = watermarks.get(`${r.topic}:${r.partition}`)?.low;
      if (low !== undefined && r.from < low && r.from < r.until) {
        gaps.push({ topic: r.topic, partition: r.partition, from: r.from, until: Math.min(low, r.until), where: 'recorded-batch', batchTime: batch.batchTime, replay: batch !== pending });
      }
    }
  }
  for (const [id, position] of stored) {
    const mark = watermarks.get(id);
    // The batch in flight begins at the position: its own gap (above) is the part before its end, so each offset is reported once.
    const inFlight = pending?.ranges.find((r) => `${r.topic}:${r.partition}` === id);
    const from = inFlight ? Math.max(position, inFlight.until) : position;
    const gap = mark && unreadGap(id.slice(0, id.lastIndexOf(':')), Number(id.slice(id.lastIndexOf(':') + 1)), from, mark.low, 'position');
    if (gap) gaps.push(from === position ? gap : { ...gap, position });
  }
  return gaps;
}

/**
 * The batch in flight as far as the broker still holds it, for a start that goes on past a
 * gap (failOnDataLoss: false): each range begins no earlier than the earliest offset held and
 * ends no earlier either. Its end then moves the position past the gap reported at this start
 * (ending at the recorded end, the next start would report the rest again), and its history
 * entry names only records a restore can read.
 */
export function heldPart(batch: RecordedBatch, watermarks: ReadonlyMap<string, Watermarks>): RecordedBatch {
  return {
    batchTime: batch.batchTime,
    ranges: batch.ranges.map((r) => {
      const low = watermarks.get(`${r.topic}:${r.partition}`)?.low;
      return low === undefined || r.from >= low ? r : { ...r, from: low, until: Math.max(r.until, low) };
    }),
  };
}

/**
 * Offsets from `from` on that lie before `low`, the earliest offset the broker holds: the
 * records there were deleted unread. `where` says what wanted them (a stored position, or
 * a fetch that passed over them while reading).
 */
export function unreadGap(topic: string, partition: number, from: number, low: number, where: 'position' | 'running'): Gap | undefined {
  return from < low ? { topic, partition, from, until: low, where } : undefined;
}

function offsets(gap: Gap): string {
  const count = gap.until - gap.from;
  return `${gap.topic}[${gap.partition}] offsets ${gap.from}–${gap.until - 1} (${count} record${count === 1 ? '' : 's'})`;
}

export function describeGap(gap: Gap): string {
  switch (gap.where) {
    case 'position':
      return gap.position === undefined
        ? `${offsets(gap)}: the job's position is ${gap.from}, the broker's earliest offset ${gap.until}`
        : `${offsets(gap)}: the job's position is ${gap.position} and its batch in flight ends at ${gap.from}, the broker's earliest offset ${gap.until}`;
    case 'recorded-batch':
      return `${offsets(gap)} of batch ${gap.batchTime}, ${gap.replay ? 'which a store restored from a snapshot must re-run' : 'which was in flight when the job stopped'}`;
    default:
      return `${offsets(gap)}: deleted while the job was behind, before it fetched them`;
  }
}

export function dataLossError(gaps: readonly Gap[], root: string): DataLossError {
  return new DataLossError(
    `records this job has not read are gone from Kafka (deleted by retention, or the topic was recreated): ${gaps.map(describeGap).join('; ')}. ` +
      'Nothing was counted from them and the positions in ZooKeeper were not moved. To go on without them, start the job with failOnDataLoss: false ' +
      '(it continues from the earliest offsets the broker holds and reports each gap with the source.data-lost event)',
    { root, gaps: gaps.map((g) => ({ ...g })) },
  );
}

export function dataLostEvent(gap: Gap): DataLostEvent {
  return {
    topic: gap.topic, partition: gap.partition, from: gap.from, until: gap.until, where: gap.where,
    ...(gap.batchTime === undefined ? {} : { batchTime: gap.batchTime }),
    message: `went on without ${describeGap(gap)} (failOnDataLoss: false)`,
  };
}

/**
 * A gap found while the job reads: with `failOnDataLoss` the error to fail the job with
 * (nothing is announced, no position moves); without, the gap is announced as a
 * `source.data-lost` event and reading goes on (undefined).
 */
export function failOrAnnounce(gap: Gap | undefined, failOnDataLoss: boolean, root: string, announce: ((event: typeof BatchEvents.DATA_LOST, payload: DataLostEvent) => void) | undefined): DataLossError | undefined {
  if (!gap) return undefined;
  if (failOnDataLoss) return dataLossError([gap], root);
  announce?.(BatchEvents.DATA_LOST, dataLostEvent(gap));
  return undefined;
}
