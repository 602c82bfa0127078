import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SEND_BYTES, sendChunks } from '../../src/cluster/send-chunks.js';

const message = (id: number, bytes: number) => ({ key: Buffer.from([id]), value: Buffer.alloc(bytes - 1, id) });
const ids = (chunks: Array<Array<{ key: Buffer }>>) => chunks.map((c) => c.map((m) => m.key[0]));

describe('produce requests cut by records and by bytes', () => {
  it('keeps the order, and cuts at the record limit', () => {
    const messages = Array.from({ length: 7 }, (_, i) => message(i, 10));
    assert.deepEqual(ids(sendChunks(messages, 3)), [[0, 1, 2], [3, 4, 5], [6]]);
  });

  it('cuts before a message that would take a request past the byte limit, and sends a larger one alone', () => {
    const messages = [message(0, 40), message(1, 40), message(2, 30), message(3, 250), message(4, 10)];
    assert.deepEqual(ids(sendChunks(messages, 100, 100)), [[0, 1], [2], [3], [4]]);
    // Each request counts its own bytes from nothing: a cut does not leave the next one nearly full.
    assert.deepEqual(ids(sendChunks([message(0, 60), message(1, 40), message(2, 60), message(3, 40)], 100, 100)), [[0, 1], [2, 3]]);
  });

  it('no request of a batch of large changelog entries passes what a broker takes by default (1 MiB)', () => {
    const messages = Array.from({ length: 1000 }, (_, i) => message(i % 256, 4096));
    const chunks = sendChunks(messages, 1000);
    assert.ok(chunks.length > 1, 'cut by bytes, not only by records');
    for (const chunk of chunks) assert.ok(chunk.reduce((n, m) => n + m.key.length + m.value.length, 0) <= SEND_BYTES);
    assert.equal(chunks.flat().length, 1000, 'every message once');
  });

  it('a first message over the limit goes alone, with no empty request before it; a request filled to the limit exactly is not cut; key bytes count', () => {
    assert.deepEqual(ids(sendChunks([message(0, 250), message(1, 10)], 100, 100)), [[0], [1]]);
    assert.deepEqual(ids(sendChunks([message(0, 60), message(1, 40), message(2, 1)], 100, 100)), [[0, 1], [2]]);
    // 60-byte keys: two messages of 70 bytes pass 100, though their values alone would not.
    const keyed = [0, 1, 2].map((id) => ({ key: Buffer.alloc(60, id), value: Buffer.alloc(10, id) }));
    assert.deepEqual(sendChunks(keyed, 100, 100).map((c) => c.map((m) => m.key[0])), [[0], [1], [2]]);
  });

  it('nothing to send makes no request', () => {
    assert.deepEqual(sendChunks([], 10), []);
  });
});
