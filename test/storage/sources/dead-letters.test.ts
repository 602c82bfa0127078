import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SourceDeadLetterStore, type SourceDeadLetter } from '../../../src/storage/sources/dead-letters.js';
import { tempDir } from '../../helpers.js';

const letter = (topic: string, partition: number, offset: number, value: string): SourceDeadLetter => ({
  topic, partition, offset, key: null, value: Buffer.from(value), batchTime: 1000, error: { name: 'SyntaxError', message: 'not JSON' },
});

describe("a Kafka source's dead letters", () => {
  it('keeps one letter per topic, partition and offset: the same place in two topics is two letters, a replayed one is one', () => {
    const store = new SourceDeadLetterStore(tempDir(), 0);
    try {
      store.add([letter('lines', 0, 7, 'a'), letter('other', 0, 7, 'b'), letter('lines', 1, 7, 'c')]);
      store.add([letter('lines', 0, 7, 'a')]);
      assert.equal(store.count(), 3);
      assert.deepEqual(store.list().map((l) => [l.topic, l.partition, l.offset, l.value?.toString()]).sort(), [['lines', 0, 7, 'a'], ['lines', 1, 7, 'c'], ['other', 0, 7, 'b']]);
    } finally {
      store.close();
    }
  });
});
