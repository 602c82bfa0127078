import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyTable, MAX_PROBE } from '../../src/actors/key-table.js';
import { ShardBuilder } from '../../src/actors/shard-encoder.js';
import { readShard } from '../../src/actors/shard-format.js';
import { murmur2Ascii, murmur2Partitioner } from '../../src/engine/partitioner.js';
import { InvalidRecordError } from '../../src/errors.js';
import { testRandom, type SeededRandom } from '../random.js';

const PARTITIONS = 4;

/** Each partition's records as the worker reads them back: [key, value] in order, and the distinct keys in the order first seen. */
type Routed = Array<{ records: Array<[unknown, unknown]>; keys: unknown[] }>;

function builder(table: KeyTable | undefined, into: Routed, batchTime = 100): ShardBuilder {
  return new ShardBuilder(
    PARTITIONS,
    murmur2Partitioner,
    { batchTime, stream: 0 },
    (p, chunk) => {
      const { refs, keys, values } = readShard(chunk.buffer);
      const routed = into[p];
      routed.keys.push(...keys);
      for (let i = 0; i < refs.length; i++) routed.records.push([routed.keys[refs[i]], values[i]]);
    },
    // Chunks of 7 records: the refs of a later chunk index into keys sent with earlier ones.
    { chunkRecords: 7, ...(table ? { keyTable: table } : {}) },
  );
}

const empty = (): Routed => Array.from({ length: PARTITIONS }, () => ({ records: [], keys: [] }));

/** The same records routed with the stream's table and by a builder of their own (Maps only). */
function routeBothWays(table: KeyTable, records: unknown[]): { withTable: Routed; own: Routed } {
  const withTable = empty();
  const own = empty();
  const a = builder(table, withTable);
  const b = builder(undefined, own);
  for (const record of records) {
    a.add(record);
    b.add(record);
  }
  a.finish();
  b.finish();
  return { withTable, own };
}

/** Keys of every kind a record may have: ASCII strings (the table's), others (a Map's), and ones that look alike. */
function randomKey(random: SeededRandom, words: number): unknown {
  switch (random.between(0, 9)) {
    case 0:
      return `é-${random.between(0, 20)}`;
    case 1:
      return random.between(0, 1) === 0 ? -0 : random.between(0, 5);
    case 2:
      return ['w', random.between(0, 5)];
    case 3:
      return `["w",${random.between(0, 5)}]`;
    default:
      return `w${random.between(0, words)}`;
  }
}

describe("routing a batch's records with the stream's key table", () => {
  it('gives every batch the shards a builder of its own gives, across batches and past the table growing', (t) => {
    const random = testRandom(t);
    const table = new KeyTable();
    for (let batch = 0; batch < 6; batch++) {
      // Up to 12 000 distinct words a batch: the table (4096 slots at first) grows twice.
      const words = [10, 300, 12_000, 40, 12_000, 5][batch];
      const records = Array.from({ length: 20_000 }, (_, i) => [randomKey(random, words), i]);
      const { withTable, own } = routeBothWays(table, records);
      assert.deepEqual(withTable, own, `batch ${batch}, ${random.replay}`);
      assert.equal(withTable.reduce((n, p) => n + p.records.length, 0), records.length);
      // -0 and 0 are one key, as everywhere else.
      for (const p of withTable) assert.ok(!p.keys.some((k) => Object.is(k, -0)));
      // Every key in the partition the partitioner gives it (the table's keys from the hash it probed with).
      withTable.forEach(({ keys }, p) => {
        for (const key of keys) assert.equal(murmur2Partitioner.partition(key, PARTITIONS), p, `${JSON.stringify(key)}, ${random.replay}`);
      });
      // The table grew for the large batches, and a small one after them made it small again.
      if (words === 12_000) assert.ok(table.capacity >= 16_384, `capacity ${table.capacity} after batch ${batch}`);
      if (words <= 40) assert.equal(table.capacity, 4096, `after batch ${batch}`);
    }
    // A large batch, then the stream goes idle: a batch with no records gives the large table back too.
    const big = builder(table, empty());
    for (let i = 0; i < 20_000; i++) big.add([`k${i}`, i]);
    big.finish();
    assert.ok(table.capacity >= 32_768);
    builder(table, empty()).finish();
    assert.equal(table.capacity, 4096);
  });

  it('a batch routed while another holds the table keeps its keys apart, and the table serves the next one', () => {
    const table = new KeyTable();
    const first = empty();
    const second = empty();
    const a = builder(table, first, 100);
    const b = builder(table, second, 200);
    a.add(['x', 1]);
    b.add(['x', 2]); // the table is a's: b keeps its keys in a Map
    a.add(['y', 3]);
    b.add(['y', 4]);
    a.add(['x', 5]);
    b.add(['x', 6]);
    a.finish();
    b.finish();
    const flat = (routed: Routed) => routed.flatMap((p) => p.records).sort((l, r) => (l[1] as number) - (r[1] as number));
    assert.deepEqual(flat(first), [['x', 1], ['y', 3], ['x', 5]]);
    assert.deepEqual(flat(second), [['x', 2], ['y', 4], ['x', 6]]);
    assert.equal(first.reduce((n, p) => n + p.keys.length, 0), 2);
    assert.equal(second.reduce((n, p) => n + p.keys.length, 0), 2);
    assert.ok(table.acquire({}), 'both gave it back');
  });

  it('a batch that fails on a record gives the table back, and the next batch finds none of its keys', () => {
    const table = new KeyTable();
    const a = builder(table, empty());
    a.add(['kept', 1]);
    assert.throws(() => a.add(['x'.repeat(2000), 2]), InvalidRecordError); // too long for an LMDB key
    a.release(); // what the stream does when a batch cannot be routed
    const next = empty();
    const b = builder(table, next);
    b.add(['kept', 3]);
    b.finish();
    assert.deepEqual(next.flatMap((p) => p.keys), ['kept']);
    assert.deepEqual(next.flatMap((p) => p.records), [['kept', 3]]);
    // The table itself: a key of a released batch is unknown to the next.
    const owner = {};
    assert.ok(table.acquire(owner));
    assert.equal(table.find('kept', KeyTable.hash('kept')!), -1);
    table.release(owner);
  });

  it('leaves the table for a Map when keys made to share their hash would make each lookup walk far, and routes them as a Map does', (t) => {
    // Words whose murmur2 ends in the same 12 bits: one run of slots in a table of 4096.
    const colliding: string[] = [];
    for (let i = 0; colliding.length < MAX_PROBE + 200; i++) {
      const word = `c${i}`;
      if ((murmur2Ascii(word)! & 0xfff) === 0x2a5) colliding.push(word);
    }
    const random = testRandom(t);
    const table = new KeyTable();
    const records = Array.from({ length: 6000 }, (_, i) => [random.between(0, 3) === 0 ? `w${random.between(0, 50)}` : colliding[random.between(0, colliding.length - 1)], i]);
    const { withTable, own } = routeBothWays(table, records);
    assert.deepEqual(withTable, own, random.replay);
    assert.equal(table.overlong, 1, 'the batch left the table once');
    // The next batch, of honest keys, has the table again.
    const next = empty();
    const c = builder(table, next);
    for (let i = 0; i < 100; i++) c.add([`w${i % 10}`, i]);
    const owner = {};
    assert.equal(table.acquire(owner), false, 'the batch holds the table');
    c.finish();
    assert.equal(table.overlong, 1);
    assert.equal(next.flatMap((p) => p.records).length, 100);
    assert.ok(table.acquire(owner), 'and gave it back, as the batch that left it did');
    table.release(owner);
  });

  it('a batch holding a grown table keeps its keys whole when an empty batch finishes beside it, or a finished batch releases again', () => {
    const table = new KeyTable();
    const keys = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `k${from + i}`);
    const distinct = (routed: Routed) => routed.flatMap((p) => p.keys);

    // An empty batch finishing (it compacts an idle table) while another holds the table.
    const held = empty();
    const a = builder(table, held);
    for (const key of keys(0, 5000)) a.add([key, 1]);
    builder(table, empty()).finish();
    for (const key of keys(0, 5000)) a.add([key, 2]);
    a.finish();
    assert.equal(distinct(held).length, 5000, 'each key once');
    assert.equal(new Set(distinct(held)).size, 5000);

    // A release from a batch that already gave the table back (a failure after its finish).
    const later = empty();
    const b = builder(table, later);
    for (const key of keys(0, 1000)) b.add([key, 1]);
    a.release();
    for (const key of keys(0, 3000)) b.add([key, 2]);
    b.finish();
    assert.equal(distinct(later).length, 3000, 'each key once, across the table growing');
    assert.equal(later.flatMap((p) => p.records).length, 4000);
  });

  it("a batch after the table's batch stamp wraps past 2^32 - 1 still sends each key once, as a builder of its own does", () => {
    const table = new KeyTable();
    const records = Array.from({ length: 300 }, (_, i) => [`w${i % 40}`, i]);
    routeBothWays(table, records);
    // As after 2^32 - 2 batches: the next batch takes the last stamp, the one after it wraps.
    (table as unknown as { stamp: number }).stamp = 0xffffffff - 1;
    for (let batch = 0; batch < 3; batch++) {
      const { withTable, own } = routeBothWays(table, records);
      assert.deepEqual(withTable, own, `batch ${batch} after the wrap`);
      assert.equal(withTable.flatMap((p) => p.keys).length, 40, `batch ${batch}: each key once`);
    }
  });
});

describe("a batch's chunks", () => {
  it('are of chunkRecords records each as a partition fills, the last one marked and holding the rest, empty when none is left', () => {
    const sizes: Array<[number, number, boolean]> = [];
    const shards = new ShardBuilder(1, murmur2Partitioner, { batchTime: 100, stream: 0 }, (p, chunk, last) => void sizes.push([p, readShard(chunk.buffer).refs.length, last]), { chunkRecords: 7 });
    for (let i = 0; i < 14; i++) shards.add([`k${i % 3}`, i]);
    shards.finish();
    assert.deepEqual(sizes, [[0, 7, false], [0, 7, false], [0, 0, true]]);
  });
});
