import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readShard, writeShard } from '../../src/actors/shard-format.js';

/** A chunk as the worker reads it back: [key, value] per record, and the initial state. */
function roundTrip(refs: number[], keys: unknown[], values: unknown[], initial?: Array<[unknown, unknown]>) {
  const shard = readShard(writeShard(refs, keys, values, initial).buffer);
  const intColumn = shard.values instanceof Int8Array ? 1 : shard.values instanceof Int16Array ? 2 : shard.values instanceof Int32Array ? 4 : 0;
  return { records: Array.from(shard.refs, (ref, i) => [shard.keys[ref], shard.values[i]]), initialState: shard.initialState, intColumn };
}

describe('shard format', () => {
  it('integer values travel in the narrowest typed array that holds them, the keys and initial state beside them', () => {
    const cases: Array<[number[], number]> = [
      [[1, 1, 1, 1, 1, 1], 1],
      [[1, -128, 0, 127, -1, 7], 1],
      [[1, -129, 0, 127, -1, 7], 2],
      [[1, 128, 0, 32767, -32768, 7], 2],
      [[1, 32768, 0, 2 ** 31 - 1, -(2 ** 31), 7], 4],
      [[1, -32769, 0, 5, 6, 7], 4],
      // Past a width's top, with nothing below zero: the next width, not an unsigned view of this one.
      [[1, 200, 0, 5, 6, 7], 2],
      [[1, 40_000, 0, 5, 6, 7], 4],
    ];
    for (const [values, width] of cases) {
      const { records, initialState, intColumn } = roundTrip([0, 1, 0, 2, 1, 0], ['a', 'bb', 'ccc'], values, [['a', 5]]);
      assert.equal(intColumn, width, `${values.join(',')}`);
      assert.deepEqual(records, [0, 1, 0, 2, 1, 0].map((ref, i) => [['a', 'bb', 'ccc'][ref], values[i]]));
      assert.deepEqual(initialState, [['a', 5]]);
    }
  });

  it('-0 comes back as 0 either way, as MessagePack has always given it', () => {
    for (const values of [[-0, 1], [-0, 1.5]]) {
      const { records } = roundTrip([0, 0], ['k'], values);
      assert.ok(Object.is(records[0][1], 0));
    }
  });

  it('any other value keeps its MessagePack form, exactly: fractions, wider integers, other types', () => {
    for (const odd of [1.5, 2 ** 31, -(2 ** 31) - 1, NaN, Infinity, '1', null, [1], { n: 1 }, true]) {
      const { records, intColumn } = roundTrip([0, 0], ['k'], [1, odd]);
      assert.equal(intColumn, 0, `${String(odd)} made an integer column`);
      assert.equal(records[0][1], 1);
      if (typeof odd === 'number') assert.ok(Object.is(records[1][1], odd), `${String(odd)} came back as ${String(records[1][1])}`);
      else assert.deepEqual(records[1][1], odd);
    }
  });

  it('a buffer that is no shard is refused, naming the format it holds', () => {
    const buffer = new SharedArrayBuffer(32);
    new Uint32Array(buffer, 0, 4).set([0x4142, 0, 0, 0]);
    assert.throws(() => readShard(buffer), (e: unknown) => e instanceof Error && e.message === 'not a shard (format 4142)');
  });

  it('a chunk with no records reads back empty, with its initial state', () => {
    const { records, initialState } = roundTrip([], [], [], [['x', { s: 1 }]]);
    assert.deepEqual(records, []);
    assert.deepEqual(initialState, [['x', { s: 1 }]]);
  });
});
