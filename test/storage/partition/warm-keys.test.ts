import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { readWarmKeys, writeWarmKeys } from '../../../src/storage/partition/warm-keys.js';
import { tempDir } from '../../helpers.js';

describe('the warm-keys hint a clean stop leaves', () => {
  const store = openPartitionStore(tempDir());
  after(() => store.env.close());

  it('is replaced by each stop: one that held no keys leaves no hint, not the one before', () => {
    writeWarmKeys(store, ['a', ['tuple', 1], 7]);
    assert.deepEqual(readWarmKeys(store), ['a', ['tuple', 1], 7]);
    writeWarmKeys(store, []);
    assert.deepEqual(readWarmKeys(store), []);
    assert.equal(store.meta.get('warm-keys'), undefined);
  });

  it('is no hint when what is stored is not a list of keys', () => {
    for (const damaged of ['oops', 42, { keys: ['a'] }]) {
      store.meta.putSync('warm-keys', damaged);
      assert.deepEqual(readWarmKeys(store), [], JSON.stringify(damaged));
    }
  });
});
