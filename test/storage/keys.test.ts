import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidRecordError, StateExportError, StateSpec, writeStateExport, readStateExport } from '../../src/index.js';
import { keyProblem } from '../../src/storage/keys.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { join } from 'node:path';

const grin = '\u{1F600}';
/** Two keys cut from emoji with slice: their lone low surrogates, different strings. */
const cutA = grin.slice(1);
const cutB = '\u{1F680}'.slice(1);

describe('keys that are not well-formed strings', () => {
  it('are two different strings that UTF-8 would turn into one', () => {
    assert.notEqual(cutA, cutB);
    assert.equal(Buffer.from(cutA).toString(), Buffer.from(cutB).toString(), 'both become U+FFFD in UTF-8');
    // A high surrogate left at the end (an emoji cut after its first half), the last of them included.
    for (const key of [grin.slice(0, 1), `abc${grin}`.slice(0, 4), 'a\udbff', ['t', 'a\ud83d']]) assert.match(keyProblem(key) ?? '', /surrogate/, JSON.stringify(key));
    assert.equal(keyProblem(`abc${grin}`), undefined, 'an emoji whole is a key');
  });

  it('over the key size LMDB takes are refused as keys, whatever their characters: 3-byte ones, or a tuple of numbers', () => {
    assert.match(keyProblem('漢'.repeat(1000)) ?? '', /bytes/);
    assert.match(keyProblem(Array.from({ length: 300 }, (_, i) => i)) ?? '', /bytes/);
    assert.equal(keyProblem('漢'.repeat(600)), undefined, '1800 bytes fit');
  });

  it('fail the batch naming the key and the record, on the short-key fast path, in long keys and in tuples; the stores stay as they were', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [cutA, /record 1 of batch 2000: key "\\ude00" is not a well-formed string \(a lone surrogate at index 0\)/],
      [`${'x'.repeat(700)}${cutB}`, /record 1 of batch 2000: key "x{40}…" is not a well-formed string \(a lone surrogate at index 700\)/],
      [['user', `a${cutB}`], /record 1 of batch 2000: key \["user","a\\ude80"\] is not a well-formed string \(a lone surrogate at index 1 of part 1\)/],
      // 700 characters, under the limit as characters, over it as UTF-8 bytes: not the short-key fast path.
      ['漢'.repeat(700), /record 1 of batch 2000: key is 2100 bytes of UTF-8; LMDB keys are limited to 1900$/],
    ];
    for (const [key, message] of cases) {
      const job = await keyedJob(StateSpec.function<unknown, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir() });
      try {
        await job.batch([['keep', 1]]);
        job.input.pushBatch([['keep', 1], [key, 1]] as never);
        await assert.rejects(job.clock.advance(1000), (e: unknown) => e instanceof InvalidRecordError && message.test((e as Error).message) && (e as InvalidRecordError).context.index === 1);
        assert.deepEqual([...job.stream.store().entries()], [['keep', 1]]);
      } finally {
        await job.ssc.stop();
      }
    }
  });

  it('two keys cut from different emoji never share a state: the first is refused', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(1), { dataDir: tempDir() });
    try {
      job.input.pushBatch([[cutA, 1], [cutB, 1]]);
      await assert.rejects(job.clock.advance(1000), (e: unknown) => e instanceof InvalidRecordError && /record 0 of batch 1000/.test((e as Error).message));
      assert.equal(job.stream.store().count(), 0);
      assert.throws(() => job.stream.store().get(cutB), (e: unknown) => e instanceof InvalidRecordError && /store\(\)\.get: key "\\ude80" is not a well-formed string/.test((e as Error).message));
    } finally {
      await job.ssc.stop();
    }
  });

  it('are refused in initial state and in exports too, and well-formed text (emoji whole, other scripts) is accepted', async () => {
    assert.match(keyProblem(cutA)!, /not a well-formed string/);
    assert.equal(keyProblem(`${grin} ok ünïcödé 漢字`), undefined);
    assert.throws(() => StateSpec.function(fixture('count')).initialState([[cutA, 1]]), (e: unknown) => e instanceof InvalidRecordError && /StateSpec\.initialState entry 0: key "\\ude00" is not a well-formed string/.test((e as Error).message));
    const file = join(tempDir(), 'bad.msgpack');
    await assert.rejects(writeStateExport(file, { stateVersion: 1 }, [[cutA, 1, 0]]), (e: unknown) => e instanceof StateExportError && /entry 0 given to writeStateExport: key "\\ude00" is not a well-formed string/.test((e as Error).message));
    await writeStateExport(file, { stateVersion: 1 }, [[grin, 1, 0]]);
    assert.deepEqual([...readStateExport(file).entries()], [[grin, 1, 0]]);
  });
});

describe('keys whose control characters LMDB would not keep', () => {
  it('a string of 64 characters or more holding U+0000–U+0004, alone or in a tuple, fails its batch named; shorter ones, and U+0005, are kept whole', async () => {
    const long = `${'x'.repeat(63)}\u0001y`;
    assert.match(keyProblem(long)!, /holds U\+0001 at index 63: in a string of 64 characters or more, LMDB's key encoding reads it back as another key/);
    assert.match(keyProblem(`${'x'.repeat(63)}\u0001`)!, /holds U\+0001 at index 63/, 'at exactly 64 characters');
    assert.match(keyProblem(['a', `${'y'.repeat(70)}\u0000`])!, /holds U\+0000 at index 70 of part 1/);
    const job = await keyedJob(StateSpec.function<unknown, number, number, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir() });
    try {
      const kept: unknown[] = [`a\u0001b`, `${'x'.repeat(62)}\u0004`, `${'x'.repeat(100)}\u0005y`, ['t\u0000', 'u\u0003']];
      await job.batch(kept.map((k) => [k, 1]) as never);
      for (const k of kept) assert.equal(job.stream.store().get(k), 1, JSON.stringify(k));
      assert.equal([...job.stream.store().entries()].length, kept.length, 'each key read back as itself');
      job.input.pushBatch([['keep', 1], [long, 1]] as never);
      await assert.rejects(job.clock.advance(1000), (e: unknown) => e instanceof InvalidRecordError && /record 1 of batch 2000: key "x{40}…" holds U\+0001 at index 63/.test((e as Error).message));
    } finally {
      await job.ssc.stop();
    }
  });
});

describe('keys at the edges', () => {
  it('are refused past 1900 bytes, as a string or a tuple, and kept at 1900', () => {
    assert.equal(keyProblem('k'.repeat(1900)), undefined);
    assert.match(keyProblem('k'.repeat(1901)) ?? '', /key is 1901 bytes of UTF-8; LMDB keys are limited to 1900/);
    // A tuple's string part counts its bytes and one more.
    assert.equal(keyProblem(['a'.repeat(949), 'b'.repeat(949)]), undefined);
    assert.match(keyProblem(['a'.repeat(949), 'b'.repeat(950)]) ?? '', /key is about 1901 bytes encoded/);
  });

  it('a tuple holding -0 is the key with 0: one state, found by either, in the partition of 0', async () => {
    const job = await keyedJob(StateSpec.function<unknown, number, number, unknown>(fixture('count')).numPartitions(3), { dataDir: tempDir() });
    try {
      await job.batch([[['t', -0], 1]] as never);
      await job.batch([[['t', 0], 1]] as never);
      assert.equal(job.stream.store().count(), 1);
      assert.equal(job.stream.store().get(['t', 0]), 2);
      assert.equal(job.stream.store().get(['t', -0]), 2);
    } finally {
      await job.ssc.stop();
    }
  });

  it("store().get refuses a key no record could have, rather than answer with the state of the key LMDB would read it as", async () => {
    const job = await keyedJob(StateSpec.function<unknown, number, number, unknown>(fixture('count')).numPartitions(1), { dataDir: tempDir() });
    try {
      await job.batch([['a', 1], ['x\ufffd', 2]]);
      const store = job.stream.store();
      assert.deepEqual([store.get('a'), store.get('x\ufffd')], [1, 2]);
      for (const [key, problem] of [
        // A one-element tuple encodes in LMDB as its element; a lone surrogate as U+FFFD.
        [['a'], /^store\(\)\.get: key \["a"\] cannot be an LMDB key/],
        ['x\ud800', /^store\(\)\.get: key "x\\ud800" is not a well-formed string \(a lone surrogate at index 1\)/],
        [Number.NaN, /^store\(\)\.get: key NaN cannot be an LMDB key/],
      ] as const) {
        assert.throws(() => store.get(key), (e: unknown) => e instanceof InvalidRecordError && problem.test((e as Error).message), String(key));
      }
    } finally {
      await job.ssc.stop();
    }
  });

  it('initial state a store cannot keep is refused when given, naming the entry', () => {
    assert.throws(
      () => StateSpec.function(fixture('count')).initialState([['a', { n: 2n ** 64n }]]),
      (e: unknown) => e instanceof InvalidRecordError && /^StateSpec\.initialState entry 0 \(key "a"\): the state cannot be stored: \$\.n is a bigint wider than 64 bits$/.test((e as Error).message),
    );
    // A third element (a lastUpdated, say) would be dropped without a word: initial pairs are [key, state], an export's entries are StateSources.
    assert.throws(
      () => StateSpec.function(fixture('count')).initialState([['a', 1, 5]] as never),
      (e: unknown) => e instanceof InvalidRecordError && (e as Error).message === 'StateSpec.initialState entry 0 is ["a",1,5], not a [key, state] pair',
    );
  });
});
