import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { messageCodec } from '../../../src/storage/codec.js';
import { decodeBatchOutputs, decodeOutputs, encodeRecords, OutputWriter } from '../../../src/storage/partition/batch-outputs.js';

describe("a batch's mapped records as workers send them and batch logs keep them", () => {
  const keys = ['apple', ['t', 1], 7];
  const keysBytes = messageCodec.pack(keys);

  it('keeps order and values across keyed and other records, with the router\'s keys or the ones inside', () => {
    const writer = new OutputWriter();
    const records: Array<[unknown, unknown, number | undefined]> = [
      [['apple', 1], 'apple', 0],
      [{ not: 'keyed' }, 'apple', 0],
      [[keys[1], -0], keys[1], 1],
      [['apple', 'text'], 'apple', 0], // a string, not a number: kept as it is
      [[7, 2.5], 7, 2],
      [['someone else', 3], 'apple', 0], // another key than the record's
      [['idle', 9], 'idle', undefined], // a timeout: no shard key
    ];
    for (const [out, key, ref] of records) writer.push(out, key, ref);
    const bytes = writer.encode(keysBytes);
    const expected = records.map(([out]) => out);
    assert.deepEqual(decodeOutputs(bytes, keys), expected);
    assert.deepEqual(decodeOutputs(bytes), expected, 'a replay decodes with the keys recorded beside them');
    assert.ok(Object.is((decodeOutputs(bytes)[2] as unknown[])[1], -0));
    // Out of alignment, as a buffer read back from LMDB inside a larger record may be.
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    assert.deepEqual(decodeOutputs(shifted.subarray(3)), expected);
  });

  it("decodes a batch's partitions in partition order, each with its shard's keys or the ones recorded with it", () => {
    const first = new OutputWriter();
    first.push(['apple', 1], 'apple', 0);
    first.push(['apple', 2], 'apple', 0);
    const second = new OutputWriter();
    second.push([7, 1], 7, 2);
    second.push({ other: true }, 7, 2);
    const records = decodeBatchOutputs([
      { bytes: first.encode(keysBytes), keys },
      { bytes: encodeRecords([]) },
      // A replayed partition: its records name the keys recorded beside them.
      { bytes: second.encode(keysBytes) },
    ]);
    assert.deepEqual(records, [['apple', 1], ['apple', 2], [7, 1], { other: true }]);
    // The pairs are arrays of their own, as a mapping function's literal would be.
    assert.ok(Array.isArray(records[0]) && records[0] !== records[1]);
    (records[0] as unknown[])[1] = 99;
    assert.deepEqual(records[1], ['apple', 2]);
    assert.deepEqual(decodeBatchOutputs([{ bytes: first.encode(keysBytes), keys }]), [['apple', 1], ['apple', 2]]);
  });

  it('reads the plain MessagePack lists that stores written before this format hold', () => {
    assert.deepEqual(decodeOutputs(messageCodec.pack([['a', 1], { b: 2 }])), [['a', 1], { b: 2 }]);
    assert.deepEqual(decodeOutputs(messageCodec.pack([])), []);
    assert.deepEqual(decodeOutputs(encodeRecords([['x', 1], null])), [['x', 1], null]);
  });
});
