import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { messageCodec } from '../../../src/storage/codec.js';
import { decodeBatchOutputs, decodeOutputs, encodeRecords, OutputWriter, spareColumnRecords } from '../../../src/storage/partition/batch-outputs.js';

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

  it('keeps a number that is no 32-bit integer, and a record longer than [key, number], as they are, with nothing else in the batch to widen the columns', () => {
    for (const records of [
      [[['apple', 2.5], 'apple', 0]],
      [[['apple', 2 ** 40], 'apple', 0]],
      [[['apple', 1, 'extra'], 'apple', 0], [['apple', 2], 'apple', 0]],
    ] as Array<Array<[unknown, unknown, number]>>) {
      const writer = new OutputWriter();
      for (const [out, key, ref] of records) writer.push(out, key, ref);
      const bytes = writer.encode(keysBytes);
      assert.deepEqual(decodeOutputs(bytes, keys), records.map(([out]) => out));
      assert.deepEqual(decodeOutputs(bytes), records.map(([out]) => out));
    }
  });

  it("decodes a batch's partitions in partition order, each with its shard's keys or the ones recorded with it", () => {
    const first = new OutputWriter();
    first.push(['apple', 1], 'apple', 0);
    first.push(['apple', 2], 'apple', 0);
    const second = new OutputWriter();
    second.push([7, 1], 7, 2);
    second.push({ other: true }, 7, 2);
    const firstBytes = first.encode(keysBytes);
    const records = decodeBatchOutputs([
      { bytes: firstBytes, keys },
      { bytes: encodeRecords([]) },
      // A replayed partition: its records name the keys recorded beside them.
      { bytes: second.encode(keysBytes) },
    ]);
    assert.deepEqual(records, [['apple', 1], ['apple', 2], [7, 1], { other: true }]);
    // The pairs are arrays of their own, as a mapping function's literal would be.
    assert.ok(Array.isArray(records[0]) && records[0] !== records[1]);
    (records[0] as unknown[])[1] = 99;
    assert.deepEqual(records[1], ['apple', 2]);
    assert.deepEqual(decodeBatchOutputs([{ bytes: firstBytes, keys }]), [['apple', 1], ['apple', 2]]);
    // A writer encodes once: its columns go back to the thread's next batch.
    assert.throws(() => first.encode(keysBytes), /encoded already/);
    assert.throws(() => first.push(['apple', 3], 'apple', 0), /encoded already/);
  });

  it('writers filling at the same time (two partitions on one thread) never share columns', () => {
    // One writer encoded first, so that a spare set of columns exists for the next to take.
    const first = new OutputWriter();
    first.push(['apple', 1], 'apple', 0);
    first.encode(keysBytes);
    const a = new OutputWriter();
    const b = new OutputWriter();
    for (let i = 0; i < 3000; i++) {
      a.push(['apple', i], 'apple', 0);
      b.push([7, -i], 7, 2);
    }
    const fromB = decodeOutputs(b.encode(keysBytes), keys) as Array<[unknown, number]>;
    const fromA = decodeOutputs(a.encode(keysBytes), keys) as Array<[unknown, number]>;
    assert.deepEqual(fromA, Array.from({ length: 3000 }, (_, i) => ['apple', i]));
    assert.deepEqual(fromB, Array.from({ length: 3000 }, (_, i) => [7, -i]));
  });

  it('writers one after the other reuse the columns, past their first size, and each encodes its own records', () => {
    for (const size of [3000, 10, 5000, 0, 1]) {
      const writer = new OutputWriter();
      const expected: unknown[] = [];
      for (let i = 0; i < size; i++) {
        const record = i % 7 === 3 ? { i } : ['apple', size * 10 + i];
        writer.push(record, 'apple', 0);
        expected.push(record);
      }
      assert.deepEqual(decodeOutputs(writer.encode(keysBytes), keys), expected, `a writer of ${size} records`);
    }
  });

  it('keeps the columns of a very large batch only while batches fill a sixteenth of them', () => {
    const write = (size: number) => {
      const writer = new OutputWriter();
      for (let i = 0; i < size; i++) writer.push(['apple', i], 'apple', 0);
      assert.equal(decodeOutputs(writer.encode(keysBytes), keys).length, size);
    };
    write(300_000);
    assert.ok(spareColumnRecords() >= 300_000, `the large batch's columns are kept for the next (${spareColumnRecords()})`);
    write(40_000);
    assert.ok(spareColumnRecords() >= 300_000, `a batch of 40 000 records keeps them (${spareColumnRecords()})`);
    write(10);
    assert.ok(spareColumnRecords() <= 1 << 16, `a batch of 10 records lets them go (${spareColumnRecords()} records of room kept)`);
    write(10);
    assert.ok(spareColumnRecords() > 0 && spareColumnRecords() <= 1 << 16, `small columns are kept (${spareColumnRecords()})`);
  });

  it('takes 6 bytes a record when every record is [its key, an integer] and the shard has under 65536 keys, and widens only what must', () => {
    const many = Array.from({ length: 70_000 }, (_, i) => `k${i}`);
    const manyBytes = messageCodec.pack(many);
    const write = (records: Array<[string, number, number]>, names: Uint8Array) => {
      const writer = new OutputWriter();
      for (const [key, num, ref] of records) writer.push([key, num], key, ref);
      return writer.encode(names);
    };
    const counts = Array.from({ length: 1000 }, (_, i): [string, number, number] => [many[i % 100], i - 500, i % 100]);
    const narrow = write(counts, keysBytes);
    assert.equal(narrow.length - keysBytes.length, 24 + 1000 * 2 + 1000 * 4);
    assert.deepEqual(decodeOutputs(narrow, many), counts.map(([key, num]) => [key, num]));
    // A ref past 65535, a float, -0, a number past int32: each widens its own column, and comes back exact.
    const wide: Array<[string, number, number]> = [[many[69_999], 1, 69_999], [many[0], 2.5, 0], [many[1], -0, 1], [many[2], 2 ** 40, 2]];
    const bytes = write(wide, manyBytes);
    assert.equal(bytes.length - manyBytes.length, 24 + 16 + 4 * 8);
    const decoded = decodeOutputs(bytes) as Array<[string, number]>;
    assert.deepEqual(decoded, wide.map(([key, num]) => [key, num]));
    assert.ok(Object.is(decoded[2][1], -0));
    // Refs at the edge of 16 bits: 65535 still narrow, 65536 wide, each its own key.
    for (const top of [65_535, 65_536]) {
      const edge: Array<[string, number, number]> = [[many[top], 1, top], [many[0], 2, 0]];
      assert.deepEqual(decodeOutputs(write(edge, manyBytes), many), edge.map(([key, num]) => [key, num]), `ref ${top}`);
    }
  });

  it('reads the batch logs of the format before (kinds always, u32 refs, f64 numbers)', () => {
    // [['apple', 3], {x: 1}] as that format laid it out, its keys beside it.
    const others = messageCodec.pack([{ x: 1 }]);
    const buffer = new ArrayBuffer(24 + 8 + 8 + others.length + keysBytes.length);
    new Uint32Array(buffer, 0, 5).set([0x4f555432, 2, 1, others.length, keysBytes.length]);
    new Uint8Array(buffer, 20, 2).set([1, 0]);
    new Uint32Array(buffer, 24, 1)[0] = 0;
    new Float64Array(buffer, 32, 1)[0] = 3;
    new Uint8Array(buffer).set(others, 40);
    new Uint8Array(buffer).set(keysBytes, 40 + others.length);
    assert.deepEqual(decodeOutputs(new Uint8Array(buffer)), [['apple', 3], { x: 1 }]);
  });

  it('reads the plain MessagePack lists that stores written before this format hold', () => {
    assert.deepEqual(decodeOutputs(messageCodec.pack([['a', 1], { b: 2 }])), [['a', 1], { b: 2 }]);
    assert.deepEqual(decodeOutputs(messageCodec.pack([])), []);
    assert.deepEqual(decodeOutputs(encodeRecords([['x', 1], null])), [['x', 1], null]);
    // A batch whose partitions' logs were written by different versions (a replay after an upgrade).
    assert.deepEqual(decodeBatchOutputs([{ bytes: messageCodec.pack([['a', 1]]) }, { bytes: encodeRecords([['x', 2]]) }]), [['a', 1], ['x', 2]]);
  });
});
