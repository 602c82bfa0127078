import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchEvents, DataLossError, type DataLostEvent } from '../../src/index.js';
import { dataLostEvent, describeGap, failOrAnnounce, gapsAtStart, heldPart, unreadGap, type Watermarks } from '../../src/engine/sources/kafka-gaps.js';

const marks = (low: number, high = 100): ReadonlyMap<string, Watermarks> => new Map([['words:0', { low, high }]]);

// The broker's answers come from the integration tests (kafka-retention-gap); these are the
// cases of the arithmetic that a real retention run does not reach on demand.
describe('gaps at start, between what the job recorded and what the broker still holds', () => {
  it('a recorded range cut by the low watermark is lost up to it, not to its end; the gap names its batch, and the event carries it', () => {
    const recorded = [{ batchTime: 5000, ranges: [{ topic: 'words', partition: 0, from: 10, until: 40 }] }];
    const [gap, ...more] = gapsAtStart(marks(25), new Map(), recorded, recorded[0]);
    assert.deepEqual(more, []);
    assert.deepEqual([gap.from, gap.until, gap.where, gap.batchTime, gap.replay], [10, 25, 'recorded-batch', 5000, false]);
    assert.equal(describeGap(gap), 'words[0] offsets 10–24 (15 records) of batch 5000, which was in flight when the job stopped');
    const event = dataLostEvent(gap);
    assert.deepEqual([event.from, event.until, event.batchTime], [10, 25, 5000]);
  });

  it('an empty recorded range (a batch that read nothing of the partition) is no gap, wherever the watermark is; one record is "1 record"', () => {
    const empty = [{ batchTime: 6000, ranges: [{ topic: 'words', partition: 0, from: 20, until: 20 }] }];
    assert.deepEqual(gapsAtStart(marks(30), new Map(), empty, undefined), []);
    const one = gapsAtStart(marks(21), new Map([['words:0', 20]]), [], undefined);
    assert.equal(one.length, 1);
    assert.equal(describeGap(one[0]), "words[0] offsets 20–20 (1 record): the job's position is 20, the broker's earliest offset 21");
    assert.equal(dataLostEvent(one[0]).batchTime, undefined, 'a position belongs to no batch');
  });

  it('a position or a recorded range that begins at the low watermark itself has lost nothing', () => {
    assert.deepEqual(gapsAtStart(marks(20), new Map([['words:0', 20]]), [], undefined), []);
    const recorded = [{ batchTime: 7000, ranges: [{ topic: 'words', partition: 0, from: 20, until: 30 }] }];
    assert.deepEqual(gapsAtStart(marks(20), new Map(), recorded, recorded[0]), []);
  });

  it('the batch in flight, held only in part, begins and ends no earlier than the low watermark', () => {
    const batch = { batchTime: 8000, ranges: [{ topic: 'words', partition: 0, from: 10, until: 15 }, { topic: 'words', partition: 1, from: 3, until: 9 }] };
    // Partition 0 lost its whole range, partition 1 (no watermark known here) nothing.
    assert.deepEqual(heldPart(batch, marks(25)).ranges, [{ topic: 'words', partition: 0, from: 25, until: 25 }, { topic: 'words', partition: 1, from: 3, until: 9 }]);
    assert.deepEqual(heldPart(batch, marks(12)).ranges[0], { topic: 'words', partition: 0, from: 12, until: 15 });
  });

  it('a gap found while reading fails the job with failOnDataLoss, announcing nothing; without, it is announced and reading goes on', () => {
    const gap = unreadGap('words', 0, 5, 9, 'running');
    const announced: DataLostEvent[] = [];
    const announce = (event: string, payload: DataLostEvent) => {
      assert.equal(event, BatchEvents.DATA_LOST);
      announced.push(payload);
    };
    const error = failOrAnnounce(gap, true, '/statestream/wc', announce);
    assert.ok(error instanceof DataLossError);
    assert.match(error.message, /words\[0\] offsets 5–8 \(4 records\): deleted while the job was behind/);
    assert.equal(announced.length, 0, 'nothing announced');
    assert.equal(failOrAnnounce(gap, false, '/statestream/wc', announce), undefined);
    assert.deepEqual(announced.map((e) => [e.from, e.until, e.where]), [[5, 9, 'running']]);
    assert.equal(failOrAnnounce(undefined, true, '/statestream/wc', announce), undefined, 'no gap, nothing to fail');
  });
});
