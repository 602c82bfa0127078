import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { ChangelogRestore, endMessage, entryMessage, epochMessage, letterMessage, readChangelogRecord, takeoverMessage, type BatchEnd, type KafkaMessage } from '../../src/cluster/changelog.js';
import type { DeadLetter } from '../../src/storage/partition/dead-letters.js';

const v = (n: number) => Uint8Array.from([n]);
const batchEnd = (epoch: number, batchTime: number, position: number): BatchEnd => ({ epoch, batchTime, position, marks: { 'in:0': [position, 0] }, keyCount: 0 });
const end = (epoch: number, batchTime: number, position: number) => endMessage(batchEnd(epoch, batchTime, position));

function restore(messages: KafkaMessage[]): { state: Record<string, number | null>; letters: DeadLetter[]; restorer: ChangelogRestore } {
  const state: Record<string, number | null> = {};
  const letters: DeadLetter[] = [];
  const restorer = new ChangelogRestore((key, value) => void (state[JSON.stringify(key)] = value === null ? null : value[0]), 0, (letter) => void letters.push(letter));
  for (const m of messages) restorer.read(readChangelogRecord(m.key, m.value, m.headers));
  return { state, letters, restorer };
}

const letter = (batchTime: number, index: number, key: unknown): DeadLetter => ({
  batchTime, partition: 0, index, key, value: { nested: [1, 'two'] }, timingOut: false, attempts: 3,
  error: { name: 'Error', message: `record ${index} of batch ${batchTime} failed`, stack: 'Error: at the mapping function' },
});

describe('changelog restore', () => {
  it('applies whole batches in order, tombstones included, and reports the last batch end', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined),
      entryMessage(1, 100, 'x', v(1)), entryMessage(1, 100, ['t', 1], v(2)), end(1, 100, 10),
      entryMessage(1, 200, 'x', v(3)), entryMessage(1, 200, ['t', 1], null), end(1, 200, 25),
    ]);
    assert.deepEqual(state, { '"x"': 3, '["t",1]': null });
    assert.deepEqual(restorer.last, batchEnd(1, 200, 25));
  });

  it('drops a batch that never ended (its owner died in it) at the next takeover; the next owner applies it again from the repartition topic', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      entryMessage(1, 200, 'x', v(9)), // no end: a dies
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
      entryMessage(2, 300, 'y', v(2)), end(2, 300, 20),
    ]);
    assert.deepEqual(state, { '"x"': 1, '"y"': 2 });
    assert.equal(restorer.last?.position, 20);
    assert.equal(restorer.waiting, 0);
  });

  it('ignores what a fenced owner wrote after the new owner\'s marker, and keeps what it ended before it', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      entryMessage(1, 200, 'y', v(5)), end(1, 200, 15), // whole before b's marker: b restored it
      epochMessage(2, 'b'),
      entryMessage(1, 300, 'x', v(7)), end(1, 300, 30), // a paused, resumed, went on: fenced
      takeoverMessage(2, batchEnd(1, 200, 15)),
      entryMessage(2, 400, 'z', v(4)), end(2, 400, 22),
    ]);
    assert.deepEqual(state, { '"x"': 1, '"y"': 5, '"z"': 4 });
    assert.equal(restorer.last?.position, 22);
    assert.equal(restorer.epoch, 2);
  });

  it('a key written again by a whole batch after its entry was dropped is not written again by the next owner', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'y', v(5)), entryMessage(1, 100, 'z', v(6)), end(1, 100, 10),
      entryMessage(1, 250, 'y', v(9)), entryMessage(1, 250, 'z', v(8)), // a dies in batch 250
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
      entryMessage(2, 100, 'y', v(5)), end(2, 100, 10), // b writes y again as restored (and not z: say it failed to)
      epochMessage(3, 'c'),
    ]);
    assert.deepEqual(restorer.dropWaiting(3), ['z'], 'y is whole again; z still needs writing');
    assert.deepEqual(state, { '"y"': 5, '"z"': 6 });
  });

  it('a new owner learns which keys a batch that never ended touched, to write them again', () => {
    const { restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'y', v(5)), end(1, 100, 10),
      entryMessage(1, 250, 'y', v(9)), entryMessage(1, 250, ['t', 2], v(1)), // a dies in batch 250
      epochMessage(2, 'b'),
    ]);
    assert.deepEqual(restorer.dropWaiting(2), ['y', ['t', 2]]);
  });

  it("a takeover settles the batch it accepts even when compaction left that batch's end displaced by a fenced owner's later one", () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined),
      entryMessage(1, 100, 'x', v(1)), entryMessage(1, 200, 'y', v(5)), // end:1 of 100 and 200 compacted away by the fenced end below
      epochMessage(2, 'b'),
      entryMessage(1, 300, 'z', v(7)), end(1, 300, 30), // a, fenced, went on
      takeoverMessage(2, batchEnd(1, 200, 15)),
    ]);
    assert.deepEqual(state, { '"x"': 1, '"y"': 5 });
    assert.deepEqual(restorer.last, batchEnd(1, 200, 15));
  });

  it('an owner that took over and died before its first batch end leaves the batch it accepted as the last whole one', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
      epochMessage(3, 'c'),
    ]);
    assert.deepEqual(state, { '"x"': 1 });
    assert.deepEqual(restorer.last, batchEnd(1, 100, 10));
  });

  it("a batch end applies its own epoch's entries only, and a takeover accepts whole only the accepted epoch's batches", () => {
    // An earlier owner's half batch is not made whole by a later owner's batch end, though its time comes first.
    const ended = restore([epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), epochMessage(2, 'b'), entryMessage(2, 200, 'y', v(2)), end(2, 200, 20)]);
    assert.deepEqual(ended.state, { '"y"': 2 });
    // A takeover that accepts epoch 2's batch 200 does not take epoch 1's half batch 100 for whole.
    const accepted = restore([epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), epochMessage(3, 'c'), takeoverMessage(3, batchEnd(2, 200, 20))]);
    assert.deepEqual(accepted.state, {});
    assert.equal(accepted.restorer.waiting, 0, 'dropped, not left waiting');
  });

  it('an older marker landing after a newer one does not lower the fence', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      epochMessage(3, 'b'),
      epochMessage(2, 'a'), entryMessage(2, 200, 'x', v(7)), end(2, 200, 20), // a's retried claim, late
      takeoverMessage(3, batchEnd(1, 100, 10)),
    ]);
    assert.deepEqual(state, { '"x"': 1 });
    assert.equal(restorer.epoch, 3);
    assert.deepEqual(restorer.last, batchEnd(1, 100, 10));
  });

  it('keeps the dead letters of whole batches, as they were written, and drops those of a batch that never ended or of a fenced owner', () => {
    const { state, letters, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined),
      entryMessage(1, 100, 'x', v(1)), letterMessage(1, letter(100, 3, 'bad')), letterMessage(1, letter(100, 7, ['t', 1])), end(1, 100, 10),
      letterMessage(1, letter(200, 0, 'lost')), // a dies in batch 200: it runs again, and dead-letters anew if the record fails again
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
      letterMessage(2, letter(200, 0, 'again')), end(2, 200, 20),
      epochMessage(3, 'c'),
      letterMessage(2, letter(300, 1, 'fenced')), end(2, 300, 30), // b went on after c's marker
      takeoverMessage(3, batchEnd(2, 200, 20)),
    ]);
    assert.deepEqual(letters, [letter(100, 3, 'bad'), letter(100, 7, ['t', 1]), letter(200, 0, 'again')]);
    assert.deepEqual(state, { '"x"': 1 });
    assert.deepEqual(restorer.dropWaiting(4), [], 'a dropped letter is no key to write again');
  });

  it("a removed key's record is a Kafka tombstone carrying its epoch and batch in headers, fenced as any entry; one written as a value before still reads", () => {
    const tombstone = entryMessage(3, 1500.5, ['t', 1], null);
    assert.equal(tombstone.value, null, 'a null value: compaction sheds it after delete.retention.ms');
    assert.deepEqual(readChangelogRecord(tombstone.key, tombstone.value, tombstone.headers), { kind: 'entry', epoch: 3, batchTime: 1500.5, key: ['t', 1], keyBytes: tombstone.key, value: null });
    // Before tombstones: the removal as a value.
    const old = { key: tombstone.key, value: Buffer.from(new Packr({ useRecords: true, moreTypes: true }).pack({ e: 3, t: 1500.5, v: null })) };
    assert.deepEqual(readChangelogRecord(old.key, old.value), { kind: 'entry', epoch: 3, batchTime: 1500.5, key: ['t', 1], keyBytes: tombstone.key, value: null });
    assert.throws(() => readChangelogRecord(tombstone.key, null, {}), /a tombstone without a number in its e header/);
    // A header repeated (kafkajs hands over a list): the last one counts, as Kafka's lastHeader reads it.
    const repeated = { e: [Buffer.from('1'), Buffer.from('3')], t: [Buffer.from('900'), Buffer.from('1500.5')] };
    assert.deepEqual(readChangelogRecord(tombstone.key, null, repeated), { kind: 'entry', epoch: 3, batchTime: 1500.5, key: ['t', 1], keyBytes: tombstone.key, value: null });
    // A fenced owner's late tombstone is ignored like any of its entries.
    const { state } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
      entryMessage(1, 200, 'x', null), end(1, 200, 20),
    ]);
    assert.deepEqual(state, { '"x"': 1 });
  });

  it('a retake under the same epoch keeps its first marker through compaction, so a fenced owner\'s late batch after it stays ignored', () => {
    const written = [
      epochMessage(1, 'a'), takeoverMessage(1, undefined), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
      // a, fenced, ends one more batch after b's marker.
      entryMessage(1, 200, 'late', v(9)), end(1, 200, 20),
      // b's lease ran out; it takes the partition again under the same epoch.
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 100, 10)),
    ];
    // Compaction keeps the newest record of each key, in offset order.
    const newest = new Map(written.map((m, i) => [m.key.toString('hex'), i]));
    const compacted = written.filter((m, i) => newest.get(m.key.toString('hex')) === i);
    const { state, restorer } = restore(compacted);
    assert.deepEqual(state, { '"x"': 1 }, "a's late batch is not believed");
    assert.deepEqual(restorer.last, batchEnd(1, 100, 10));
  });

  it("a batch half-written before a retake under the same epoch is dropped at the retake's takeover, not applied by a later batch end of that epoch", () => {
    const { state, restorer } = restore([
      epochMessage(3, 'a'), takeoverMessage(3, undefined), entryMessage(3, 100, 'x', v(1)), end(3, 100, 10),
      // Batch 200's first request reached the changelog; its lease ran out before its end.
      entryMessage(3, 200, 'x', v(9)),
      // a takes the partition again under the same epoch, from its store at batch 100, and ends an empty batch 300.
      epochMessage(3, 'a'), takeoverMessage(3, batchEnd(3, 100, 10)), end(3, 300, 10),
    ]);
    assert.deepEqual(state, { '"x"': 1 }, 'batch 200 never committed');
    assert.deepEqual(restorer.last, batchEnd(3, 300, 10));
    assert.deepEqual([...restorer.dropped.values()], ['x'], 'its key is for the owner to write again');
  });

  it('a restore that ends with a same-epoch batch half-written drops it too (dropWaiting)', () => {
    const { state, letters, restorer } = restore([
      epochMessage(3, 'a'), takeoverMessage(3, undefined), entryMessage(3, 100, 'x', v(1)), end(3, 100, 10),
      entryMessage(3, 200, 'x', v(9)), letterMessage(3, letter(200, 4, 'bad')),
    ]);
    assert.equal(restorer.waiting, 2);
    assert.deepEqual(restorer.dropWaiting(3), ['x'], 'a retake by the same epoch drops what never ended; the letter is no key to write again');
    assert.equal(restorer.waiting, 0);
    assert.deepEqual(state, { '"x"': 1 });
    assert.deepEqual(letters, [], 'the letter of the batch that never ended is not kept: the batch runs again');
  });

  it('restores a compacted changelog: the newest entry per key, the newest end per epoch, and every marker and takeover', () => {
    // What compaction leaves of: a's batches 100 (x=1, y=5) and 200 (x=2) with their ends; a
    // dying in batch 250 (y=9); b taking over and writing y again as it restored it (y=5);
    // b's batch 400 (z=4).
    const { state, restorer } = restore([
      epochMessage(1, 'a'), takeoverMessage(1, undefined),
      entryMessage(1, 200, 'x', v(2)), end(1, 200, 20), // end:1 of batch 100 and x=1 compacted away by these
      epochMessage(2, 'b'), takeoverMessage(2, batchEnd(1, 200, 20)),
      entryMessage(2, 200, 'y', v(5)), // b's correction displaced a's y=9, which had displaced y=5
      entryMessage(2, 400, 'z', v(4)), end(2, 400, 40), // end:2 of b's corrections compacted away by this one
    ]);
    assert.deepEqual(state, { '"x"': 2, '"y"': 5, '"z"': 4 });
    assert.equal(restorer.last?.batchTime, 400);
  });
});
