import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChangelogRestore, endMessage, entryMessage, epochMessage, readChangelogRecord, type KafkaMessage } from '../../src/cluster/changelog.js';

const v = (n: number) => Uint8Array.from([n]);
const end = (epoch: number, batchTime: number, position: number) => endMessage({ epoch, batchTime, position, marks: { 'in:0': [position, 0] }, keyCount: 0 });

function restore(messages: KafkaMessage[]): { state: Map<unknown, number | null>; restorer: ChangelogRestore } {
  const state = new Map<unknown, number | null>();
  const restorer = new ChangelogRestore((key, value) => state.set(JSON.stringify(key), value === null ? null : value[0]));
  for (const m of messages) restorer.read(readChangelogRecord(m.key, m.value));
  return { state, restorer };
}

describe('changelog restore', () => {
  it('applies whole batches in order, tombstones included, and reports the last batch end', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'),
      entryMessage(1, 100, 'x', v(1)), entryMessage(1, 100, ['t', 1], v(2)), end(1, 100, 10),
      entryMessage(1, 200, 'x', v(3)), entryMessage(1, 200, ['t', 1], null), end(1, 200, 25),
    ]);
    assert.deepEqual([...state], [['"x"', 3], ['["t",1]', null]]);
    assert.equal(restorer.last?.batchTime, 200);
    assert.equal(restorer.last?.position, 25);
    assert.deepEqual(restorer.last?.marks, { 'in:0': [25, 0] });
  });

  it('drops a batch that never ended (its owner died mid-batch); the next owner re-applies it from the repartition topic', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      entryMessage(1, 200, 'x', v(9)), // no end: a dies
      epochMessage(2, 'b'), entryMessage(2, 300, 'x', v(2)), end(2, 300, 20),
    ]);
    assert.deepEqual([...state], [['"x"', 1], ['"x"', 2]].slice(1));
    assert.equal(restorer.last?.position, 20);
  });

  it('ignores what a fenced owner wrote after the new owner\'s marker, and keeps what it wrote whole before it', () => {
    const { state, restorer } = restore([
      epochMessage(1, 'a'), entryMessage(1, 100, 'x', v(1)), end(1, 100, 10),
      entryMessage(1, 200, 'y', v(5)), end(1, 200, 15), // whole before b's marker: b restored it
      epochMessage(2, 'b'),
      entryMessage(1, 300, 'x', v(7)), end(1, 300, 30), // a paused, resumed, went on: fenced
      entryMessage(2, 400, 'z', v(4)), end(2, 400, 22),
    ]);
    assert.deepEqual(Object.fromEntries(state), { '"x"': 1, '"y"': 5, '"z"': 4 });
    assert.equal(restorer.last?.position, 22);
    assert.equal(restorer.epoch, 2);
  });

  it('restores a compacted changelog: the newest entry per key and the newest batch end', () => {
    const { state, restorer } = restore([
      entryMessage(1, 100, 'y', v(5)),
      epochMessage(2, 'b'),
      entryMessage(2, 400, 'x', v(8)),
      end(2, 400, 40),
      entryMessage(2, 500, 'z', v(1)), // after the last end: not whole
    ]);
    // The old-epoch entry before the marker lost its own end to compaction; its value is still the newest for 'y'.
    assert.equal(state.get('"x"'), 8);
    assert.equal(state.has('"z"'), false);
    assert.equal(restorer.last?.batchTime, 400);
  });
});
