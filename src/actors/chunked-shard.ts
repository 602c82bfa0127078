/**
 * One partition's shard of a batch as the main thread makes it: chunks appended while the
 * shard builder goes through the batch's records, the last one marked. A follower is told
 * of each chunk synchronously, as it is pushed, so the partition actor posts it to its
 * worker at once, while the main thread is still in the loop that routes the rest of the
 * batch: the worker applies the start of the batch meanwhile. A retry or a replay follows
 * the chunks again from the first.
 */
export interface ShardChunk {
  bytes: Uint8Array;
  last: boolean;
}

interface Follower {
  chunk(chunk: ShardChunk, index: number): void;
  failed(error: unknown): void;
}

export class ChunkedShard {
  private readonly chunks: ShardChunk[] = [];
  private readonly followers = new Set<Follower>();
  private failure: { error: unknown } | undefined;

  get ended(): boolean {
    return this.chunks.at(-1)?.last === true;
  }

  push(bytes: Uint8Array, last: boolean): void {
    if (this.ended) throw new Error('ChunkedShard: the last chunk was already pushed');
    const chunk = { bytes, last };
    this.chunks.push(chunk);
    for (const follower of this.followers) follower.chunk(chunk, this.chunks.length - 1);
    if (last) this.followers.clear();
  }

  /** The batch could not be sharded: followers stop with this error. */
  fail(error: unknown): void {
    this.failure = { error };
    for (const follower of this.followers) follower.failed(error);
    this.followers.clear();
  }

  /** Calls `chunk` for every chunk from the first (the ones made already at once), then `failed` or nothing more after the last. */
  follow(follower: Follower): void {
    for (let i = 0; i < this.chunks.length; i++) follower.chunk(this.chunks[i], i);
    if (this.ended) return;
    if (this.failure) return follower.failed(this.failure.error);
    this.followers.add(follower);
  }
}
