import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PairFilter } from '../../src/cluster/high-water-marks.js';

const at = (offset: number, n: number, partition = 0) => ({ topic: 't', partition, offset, n });

describe('pair filter (per source partition, the last pair applied)', () => {
  it('admits only pairs after the mark, each once, and moves the mark with them', () => {
    const filter = new PairFilter({ 't:0': [5, 1] });
    assert.deepEqual([at(5, 1), at(5, 0), at(4, 3)].map((o) => filter.admit(o)), [false, false, false], 'the mark itself and what came before it');
    assert.equal(filter.admit(at(5, 2)), true, 'the next pair of the same record');
    assert.equal(filter.admit(at(5, 2)), false, 'sent again');
    assert.equal(filter.admit(at(6, 0)), true);
    assert.equal(filter.admit(at(0, 0, 1)), true, 'another partition has a mark of its own');
    assert.deepEqual(filter.snapshot(), { 't:0': [6, 0], 't:1': [0, 0] });
  });
});
