import type { Key } from 'lmdb';
import { ClusterError, OwnershipLostError } from '../errors.js';
import { copyBytes, decodeEntry } from '../storage/codec.js';
import { BatchLog } from '../storage/partition/batch-log.js';
import { DeadLetterStore, type DeadLetter } from '../storage/partition/dead-letters.js';
import { NO_OUTPUTS } from '../storage/partition/batch-outputs.js';
import { emptyChangeLog } from '../storage/partition/change-log.js';
import { readBinary } from '../storage/partition/state-map.js';
import type { PartitionStore } from '../storage/partition/store.js';
import { TimeIndex } from '../storage/partition/time-index.js';
import { ChangelogRestore, type BatchEnd, type RecordSink } from './changelog.js';
import { readChangelog, type ChangelogWriter } from './changelog-io.js';
import { withinLease } from './lease.js';
import type { HighWaterMarks } from './high-water-marks.js';
import type { PartitionReader } from './partition-reader.js';

/**
 * What a cluster partition's store records beside its state, in the transaction of each
 * batch (meta key 'cluster'): where its repartition partition is read from next, the marks
 * of what it applied, and the changelog record of its last batch with the epoch it wrote
 * it under, and where that epoch began.
 */
export interface ClusterMeta {
  position: number;
  marks: HighWaterMarks;
  /** The changelog offset of the last batch end this store holds, and the epoch that wrote it. */
  changelogOffset: number;
  epoch: number;
  /** The offset of that epoch's marker: a reuse of this store checks the changelog from there. */
  epochAt: number;
  /** Set while a restore writes: a store left so was cut short and is restored again from the beginning. */
  restoring?: boolean;
}

export function readClusterMeta(store: PartitionStore): ClusterMeta | undefined {
  return store.meta.get('cluster') as ClusterMeta | undefined;
}

const WRITES_PER_TRANSACTION = 10_000;

/** Applies changelog entries and dead letters to a store in transactions of a bounded size, keeping the time index with them. */
class StoreWriter {
  private pending: Array<[unknown, Uint8Array | null]> = [];
  private letters: DeadLetter[] = [];
  private readonly index: TimeIndex;

  constructor(
    private readonly store: PartitionStore,
    private readonly timeIndexed: boolean,
  ) {
    this.index = new TimeIndex(store);
  }

  // An entry's bytes are a Buffer of their own already: messageCodec copies each bin it decodes.
  readonly write = (key: unknown, value: Uint8Array | null): void => {
    this.pending.push([key, value]);
    this.flushWhenFull();
  };

  readonly keepLetter = (letter: DeadLetter): void => {
    this.letters.push(letter);
    this.flushWhenFull();
  };

  private flushWhenFull(): void {
    if (this.pending.length + this.letters.length >= WRITES_PER_TRANSACTION) this.flush();
  }

  flush(): void {
    const writes = this.pending;
    const letters = this.letters;
    this.pending = [];
    this.letters = [];
    if (writes.length + letters.length === 0) return;
    const { store, index, timeIndexed } = this;
    store.env.transactionSync(() => {
      const kept = new DeadLetterStore(store);
      for (const letter of letters) kept.add(letter);
      for (const [key, value] of writes) {
        const old = readBinary(store, key as Key);
        if (timeIndexed && old !== undefined) index.remove(decodeEntry(old)[1], key);
        if (value === null) {
          if (old !== undefined) store.state.removeSync(key as Key);
          continue;
        }
        store.state.putSync(key as Key, value as Buffer);
        if (timeIndexed) index.add(decodeEntry(value)[1], key);
      }
    });
  }
}

function clear(store: PartitionStore): void {
  store.env.transactionSync(() => {
    for (const db of [store.state, store.timeIndex, store.deadLetters]) for (const { key } of db.getRange({})) db.removeSync(key);
    emptyChangeLog(store);
    store.meta.removeSync('last-batch');
    store.meta.removeSync('cluster');
  });
}

export interface RestoreOutcome {
  /** Changelog records read. */
  records: number;
  /** Whether the store's own state was kept (read on from where it stood) or rebuilt from the beginning. */
  reused: boolean;
  /** The last whole batch the partition holds, if any. */
  last: BatchEnd | undefined;
  /** Keys written again because a batch that never ended touched them. */
  rewritten: number;
}

/**
 * Takes a partition's changelog for a new owner and brings its local store to what the
 * changelog holds. The epoch marker goes first, so that nothing a fenced owner writes
 * after it is believed; the store is restored up to it; then the takeover record names the
 * last whole batch found, and keys that a batch which never ended touched are written
 * again as restored (on a compacted topic that batch's entries may have displaced theirs).
 *
 * A store this instance kept from an earlier ownership is reused when the changelog shows
 * its epoch was not fenced before its last batch: its records are read from that epoch's
 * marker without being applied, then what others wrote since is applied. Any other store
 * is cleared and rebuilt from the changelog's beginning (`low`). Afterwards the store
 * records the last whole batch's positions and marks, under the new epoch.
 */
export async function restorePartition(
  store: PartitionStore,
  options: {
    timeIndexed: boolean; reader: PartitionReader; writer: ChangelogWriter; partition: number; low: number; epoch: number; owner: string; timeoutMs: number;
    /**
     * Throws OwnershipLostError unless this instance still owns the partition (the coordinator's
     * check, which also has the partition taken again); resolves with the end of its lease
     * (performance.now() time), past which nothing more is sent.
     */
    stillOwned: () => Promise<number>;
  },
): Promise<RestoreOutcome> {
  const { reader, writer, partition, epoch, timeoutMs } = options;
  const topic = writer.topic;
  const marker = await writer.writeEpoch(partition, epoch, options.owner);
  const local = readClusterMeta(store);
  let reused = false;
  let records = 0;
  let from = options.low;
  let restore: ChangelogRestore | undefined;
  const stored = new StoreWriter(store, options.timeIndexed);
  if (local && !local.restoring && local.epochAt >= options.low && local.changelogOffset < marker) {
    // Was this store's epoch fenced before its last batch? Its records are read, not applied.
    let fenced = false;
    const check = new ChangelogRestore(() => undefined);
    const seen: RecordSink = {
      read(record) {
        check.read(record);
        if (record.kind === 'epoch' && record.epoch > local.epoch) fenced = true;
      },
    };
    records += await readChangelog(reader, topic, partition, local.epochAt, local.changelogOffset + 1, seen, timeoutMs);
    if (!fenced) {
      reused = true;
      from = local.changelogOffset + 1;
      restore = new ChangelogRestore(stored.write, local.epoch, stored.keepLetter);
      restore.last = check.last;
    }
  }
  if (!restore) {
    clear(store);
    restore = new ChangelogRestore(stored.write, 0, stored.keepLetter);
  }
  store.meta.putSync('cluster', { ...(local ?? { position: 0, marks: {}, changelogOffset: -1, epoch: 0, epochAt: -1 }), restoring: true });
  records += await readChangelog(reader, topic, partition, from, marker, restore, timeoutMs);
  stored.flush();
  // A restore takes minutes at most: the partition may have moved on meanwhile (a session that
  // expired in a long pause). Its next owner's entries of a key must not be followed by ours.
  // What follows is sent under that check's lease, as a batch's requests are.
  const leased = withinLease(await options.stillOwned(), () =>
    new OwnershipLostError(`cluster: partition ${partition} of ${topic}: the restore outlived the lease of its ownership check; it sends nothing more`, { topic, partition, epoch }),
  );
  if (restore.epoch > epoch) {
    throw new ClusterError(
      `cluster: partition ${partition} of ${topic} holds the marker of epoch ${restore.epoch}, later than this owner's ${epoch}: the ZooKeeper assignment the epochs come from ` +
        "was reset (another zookeeper.root, or its data lost) while the job's Kafka topics stayed, and every restore would ignore what this owner writes. " +
        'Give the job its ZooKeeper root back, or another appName (new topics, empty state)',
      { topic, partition, epoch, changelogEpoch: restore.epoch },
    );
  }
  const dropped = restore.dropWaiting(epoch);
  const last = restore.last;
  let at = await writer.writeTakeover(partition, epoch, last, leased);
  if (dropped.length > 0) {
    const entries = dropped.map((key) => {
      const bytes = readBinary(store, key as Key);
      // lmdb-js reads into one large shared buffer: Uint8Array.from would copy all of it.
      return bytes === undefined ? null : copyBytes(bytes);
    });
    at = await writer.writeBatch(partition, dropped, entries, {
      epoch, batchTime: last?.batchTime ?? 0, position: last?.position ?? 0, marks: last?.marks ?? {}, keyCount: last?.keyCount ?? 0,
    }, [], leased);
  }
  const meta: ClusterMeta = { position: last?.position ?? 0, marks: last?.marks ?? {}, changelogOffset: at, epoch, epochAt: marker };
  store.env.transactionSync(() => {
    if (last) new BatchLog(store).record({ batchTime: last.batchTime, outputs: NO_OUTPUTS, keyCount: last.keyCount });
    store.meta.putSync('cluster', meta);
  });
  return { records, reused, last, rewritten: dropped.length };
}
