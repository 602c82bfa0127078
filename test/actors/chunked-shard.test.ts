import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkedShard } from '../../src/actors/chunked-shard.js';

/** A follower that records what it was told, in order. */
function recorder() {
  const told: Array<[string, unknown]> = [];
  return { told, follower: { chunk: (c: { bytes: Uint8Array; last: boolean }, i: number) => void told.push(['chunk', [i, c.bytes[0], c.last]]), failed: (e: unknown) => void told.push(['failed', e]) } };
}

describe('ChunkedShard, a partition\'s shard as the router makes it', () => {
  it('gives a follower that comes late every chunk from the first, then the rest as they are pushed', () => {
    const shard = new ChunkedShard();
    shard.push(Uint8Array.of(1), false);
    const late = recorder();
    shard.follow(late.follower);
    shard.push(Uint8Array.of(2), true);
    assert.deepEqual(late.told, [['chunk', [0, 1, false]], ['chunk', [1, 2, true]]]);
    const after = recorder();
    shard.follow(after.follower);
    assert.deepEqual(after.told, late.told, 'a retry follows the whole shard again');
    assert.throws(() => shard.push(Uint8Array.of(3), false), /ChunkedShard: the last chunk was already pushed/);
  });

  it('tells a follower that comes after the sharding failed of the failure, after the chunks made before it', () => {
    const shard = new ChunkedShard();
    const early = recorder();
    shard.follow(early.follower);
    shard.push(Uint8Array.of(1), false);
    const error = new Error('record 7 is not a pair');
    shard.fail(error);
    const late = recorder();
    shard.follow(late.follower);
    assert.deepEqual(early.told, [['chunk', [0, 1, false]], ['failed', error]]);
    assert.deepEqual(late.told, early.told, 'not left waiting for a chunk that never comes');
  });
});
