import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { StateSpec, exportJobState, readStateExport } from '../../src/index.js';
import { copyBytes, decodeEntry, encodeEntry, encodeExportEntry, messageCodec, unpackExportValues, valueProblem } from '../../src/storage/codec.js';
import { readBinary } from '../../src/storage/partition/state-map.js';
import { openPartitionStore } from '../../src/storage/partition/store.js';
import { fixture, keyedJob, runThenStop, tempDir } from '../helpers.js';
import type { Visits } from '../fixtures/typed-state.js';

const spec = () => StateSpec.function<string, { page: number; tag: string }, Visits, unknown>(fixture('typed-state')).numPartitions(2);

function visits(pages: Array<[number, number]>, tags: string[], since: number): Visits {
  return { byPage: new Map(pages), tags: new Set(tags), since: new Date(since) };
}

describe('state types across commits', () => {
  it('a Map (with numeric keys), a Set and a Date in a state are the same types in the next batch, in store() and in stateSnapshots()', async () => {
    const job = await keyedJob(spec(), { dataDir: tempDir() });
    try {
      assert.deepEqual(await job.batch([['ann', { page: 1, tag: 'a' }], ['ann', { page: 1, tag: 'b' }]]), [['ann', 1, 1, 1000], ['ann', 2, 2, 1000]]);
      // The state now comes from LMDB: m.get must still be a Map's get.
      assert.deepEqual(await job.batch([['ann', { page: 1, tag: 'a' }], ['bob', { page: 7, tag: 'z' }]]), [['ann', 3, 2, 1000], ['bob', 1, 1, 2000]]);
      assert.deepEqual(job.stream.store().get('ann'), visits([[1, 3]], ['a', 'b'], 1000));
      assert.deepEqual(job.snapshots.at(-1)!.pairs, [['ann', visits([[1, 3]], ['a', 'b'], 1000)], ['bob', visits([[7, 1]], ['z'], 2000)]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('keep their types through an export, an import as initial state, and initial state given as pairs', async () => {
    const dataDir = tempDir();
    await runThenStop(spec(), { dataDir }, [['ann', { page: 3, tag: 'x' }]]);
    const file = join(tempDir(), 'state.msgpack');
    await exportJobState(dataDir, file);
    assert.deepEqual([...readStateExport(file).entries()], [['ann', visits([[3, 1]], ['x'], 1000), 1000]]);

    const fromExport = await keyedJob(spec().initialState(readStateExport(file)), { dataDir: tempDir(), startMs: 1000 });
    try {
      assert.deepEqual(await fromExport.batch([['ann', { page: 3, tag: 'y' }]]), [['ann', 2, 2, 1000]]);
    } finally {
      await fromExport.ssc.stop();
    }
    const fromPairs = await keyedJob(spec().initialState([['cy', visits([[5, 4]], ['t'], 500)]]), { dataDir: tempDir() });
    try {
      assert.deepEqual(await fromPairs.batch([['cy', { page: 5, tag: 't' }]]), [['cy', 5, 1, 500]]);
    } finally {
      await fromPairs.ssc.stop();
    }
  });

  it('a Buffer in a record, a state and an output comes back a Buffer with its own bytes, from LMDB and from memory', async () => {
    type Out = [string, number, Buffer, boolean];
    for (const stateCacheEntries of [0, 1000]) {
      const spec = StateSpec.function<string, Uint8Array, { n: number; bytes: Uint8Array }, Out>(fixture('bytes-state')).numPartitions(1);
      const job = await keyedJob(spec, { dataDir: tempDir(), threads: 1, stateCacheEntries });
      const seen = (out: Out[]) => out.map(([key, n, bytes, inside]) => [key, n, Buffer.isBuffer(bytes) ? bytes.toString('hex') : `not a Buffer: ${String(bytes)}`, inside]);
      try {
        assert.deepEqual(seen(await job.batch([['a', Buffer.from([1, 2, 3])], ['b', Buffer.from([9, 9, 9, 9, 9, 9])]])), [['a', 1, '010203', true], ['b', 1, '090909090909', true]]);
        assert.deepEqual(seen(await job.batch([['a', Buffer.from([0])], ['b', Buffer.from([0])]])), [['a', 2, '010203', true], ['b', 2, '090909090909', true]], `stateCacheEntries ${stateCacheEntries}`);
        assert.deepEqual(seen(await job.batch([['a', Buffer.from([0])]])), [['a', 3, '010203', true]], `stateCacheEntries ${stateCacheEntries}: what the batch before committed`);
        const a = job.stream.store().get('a') as { n: number; bytes: Uint8Array };
        job.stream.store().get('b');
        assert.ok(Buffer.isBuffer(a.bytes), 'store() gives a Buffer');
        assert.equal(a.bytes.toString('hex'), '010203', `stateCacheEntries ${stateCacheEntries}: store().get('a') after a read of b`);
        assert.ok(job.snapshots.at(-1)!.pairs.every(([, s]) => Buffer.isBuffer(s.bytes)), 'stateSnapshots() give Buffers');
      } finally {
        await job.ssc.stop();
      }
    }
  });

  it("an entry read from LMDB keeps its bytes when the thread's next read reuses lmdb-js's read buffer", () => {
    const store = openPartitionStore(tempDir());
    try {
      store.state.putSync('a', encodeEntry({ bytes: Buffer.from([1, 2, 3]) }, 1));
      store.state.putSync('b', encodeEntry({ bytes: Buffer.from([9, 9, 9, 9, 9, 9]) }, 1));
      const [a] = decodeEntry<{ bytes: Buffer }>(readBinary(store, 'a')!);
      decodeEntry(readBinary(store, 'b')!);
      assert.equal(a.bytes.toString('hex'), '010203');
    } finally {
      store.env.close();
    }
  });

  it('a Map inside an array, a Set or another Map comes back a Map', () => {
    // Each the only Map of its state: nothing else marks the state as holding one.
    const states: Array<[unknown, (state: any) => unknown]> = [
      [{ visits: [{ byPage: new Map([[1, 2]]) }] }, (state) => state.visits[0].byPage],
      [[new Map([['a', 1]])], (state) => state[0]],
      [{ tags: new Set([new Map([[3, 4]])]) }, (state) => [...state.tags][0]],
      [{ tags: new Set([{ byPage: new Map([[7, 8]]) }]) }, (state) => [...state.tags][0].byPage],
      [new Map([['k', new Map([[5, 6]])]]), (state) => state.get('k')],
    ];
    for (const [written, inner] of states) {
      const [state, lastUpdated] = decodeEntry(encodeEntry(written, 1000));
      assert.equal(lastUpdated, 1000);
      assert.deepEqual(state, written);
      assert.ok(inner(state) instanceof Map, `${JSON.stringify(written, (_, v) => (v instanceof Map ? `Map(${v.size})` : v instanceof Set ? `Set(${v.size})` : v))}: the inner Map is a Map`);
    }
  });

  it('entries written before Maps and Sets kept their type read as they always did', () => {
    // The codec entries had until now: [state, lastUpdated], objects and Maps as MessagePack maps, Sets as arrays.
    const before = new Packr({ useRecords: false });
    const store = openPartitionStore(tempDir());
    try {
      const old = { count: 2, byPage: new Map([[1, 2]]), tags: new Set(['a']) };
      store.state.putSync('k', before.pack([old, 1000]));
      const [state, lastUpdated] = decodeEntry(store.state.getBinary('k')!);
      assert.equal(lastUpdated, 1000);
      assert.deepEqual(state, { count: 2, byPage: { 1: 2 }, tags: ['a'] });
    } finally {
      store.env.close();
    }
    // And a state with no Map is still written in that format, byte for byte.
    const plain = { count: 2, pages: [1, 2], at: new Date(5) };
    assert.deepEqual(encodeEntry(plain, 1000), before.pack([plain, 1000]));
  });
});

describe("an export's bytes read a chunk at a time", () => {
  it('an entry holding a Map keyed by objects, cut anywhere, is left whole for the next chunk, and reads back as written', () => {
    const state = new Map([[{ day: 1 }, 'x'.repeat(100)], [{ day: 2 }, 'y'.repeat(100)]]);
    const bytes = Buffer.concat([encodeExportEntry(['k', state, 5]), encodeExportEntry(['plain', 1, 6])]);
    const first = encodeExportEntry(['k', state, 5]).length;
    for (const cut of [1, 20, first - 50, first - 1]) {
      const seen: unknown[] = [];
      assert.equal(unpackExportValues(bytes.subarray(0, cut), (v) => void seen.push(v)), 0, `cut at ${cut} of ${first}`);
      assert.deepEqual(seen, []);
    }
    const seen: unknown[] = [];
    assert.equal(unpackExportValues(bytes, (v) => void seen.push(v)), bytes.length);
    assert.deepEqual(seen, [['k', state, 5], ['plain', 1, 6]]);
  });
});

describe('copyBytes', () => {
  it("copies a value lmdb-js read into its shared buffer: the value's bytes only, kept after the next read", () => {
    const store = openPartitionStore(tempDir());
    try {
      store.env.transactionSync(() => {
        store.state.putSync('a', Buffer.from([1, 2, 3]));
        store.state.putSync('b', Buffer.from([9, 9, 9, 9, 9]));
      });
      const read = readBinary(store, 'a')!;
      // lmdb-js hands out one large buffer, its length set to the value's.
      assert.ok(read.buffer.byteLength > read.length);
      const copy = copyBytes(read);
      readBinary(store, 'b');
      assert.deepEqual([...copy], [1, 2, 3]);
      assert.equal(copy.buffer.byteLength, 3);
    } finally {
      void store.env.close();
    }
  });
});

describe('record values: refused only where MessagePack would not carry them to the worker as they are', () => {
  /** A Decimal-like class: its own constructor property is a function, and msgpackr packs what toJSON returns. */
  class Decimal {
    constructor(private readonly text: string) {
      Object.defineProperty(this, 'constructor', { value: Decimal, enumerable: true });
    }
    toJSON(): string {
      return this.text;
    }
  }

  it('carries wide bigints, toJSON objects, bytes, flat objects and short tuples, each as messageCodec reads it back', () => {
    const wide = 2n ** 70n;
    for (const value of [wide, new Decimal('1.5'), Buffer.from('ab'), { user: 'u', amount: 3 }, ['a', 1, null], new Map([[1, { n: 2n ** 65n }]]), new Date(0)]) {
      assert.equal(valueProblem(value, { message: true }), undefined, `${String(value)} is carried`);
    }
    assert.deepEqual(messageCodec.unpack(messageCodec.pack([wide, new Decimal('1.5')])), [wide, '1.5'], 'what the mapping function then gets');
  });

  it('names a function, a symbol, a cycle and a lone surrogate with their path', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(valueProblem({ n: 1, cb: () => 1 }, { message: true }), '$.cb is a function');
    assert.equal(valueProblem([1, [Symbol('s')]], { message: true }), '$[1][0] is a symbol');
    assert.equal(valueProblem(cyclic, { message: true }), '$.self refers back to itself (a cycle)');
    assert.match(valueProblem({ name: 'x\ud800' }, { message: true })!, /^\$\.name is a string with a lone surrogate/);
    // A property name that is not well-formed, in a flat object: UTF-8 would store another name.
    assert.match(valueProblem({ '\ud800': 1 }, { message: true }) ?? '', /lone surrogate/);
    // One object referred to twice is no cycle.
    const shared = { n: 1 };
    assert.equal(valueProblem({ a: shared, b: [shared, { c: shared }] }, { message: true }), undefined);
  });

  it('in a Map or a Set, names the entry, the key or the member; in a store, a bigint past 64 bits either way', () => {
    assert.equal(valueProblem({ m: new Map([['a', { f: () => 1 }]]) }), '$.m.get(a).f is a function');
    assert.equal(valueProblem(new Map([['a', () => 1]])), '$.get(a) is a function');
    assert.equal(valueProblem(new Map([[() => 1, 1]])), '$.<key> is a function');
    assert.match(valueProblem(new Map([['x\ud800', 1]])) ?? '', /^\$\.<key> is a string with a lone surrogate/);
    assert.match(valueProblem(new Set([1, Symbol('s')])) ?? '', /^\$\.\S+ is a symbol$/);
    // A store keeps 64-bit integers: one past either end is refused, the ends themselves are kept.
    assert.equal(valueProblem({ n: 2n ** 64n }), '$.n is a bigint wider than 64 bits');
    assert.equal(valueProblem({ n: -(2n ** 63n) - 1n }), '$.n is a bigint wider than 64 bits');
    assert.equal(valueProblem({ lo: -(2n ** 63n), hi: 2n ** 64n - 1n }), undefined);
  });
});
