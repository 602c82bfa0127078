/**
 * Bytes of keys and values per produce request. kafkajs makes one record batch of a
 * request's messages to each partition, and a broker refuses a batch over its
 * max.message.bytes (1 MiB by default, record overhead included): large states, bundles of
 * pairs with large values, or dead letters with their values and stacks would otherwise fail
 * the write, and so the job.
 */
export const SEND_BYTES = 512 * 1024;

/** `messages` in order, cut where a request would pass `maxRecords` or `maxBytes` (a message larger than that goes alone). */
export function sendChunks<M extends { key?: Buffer | null; value: Buffer | null }>(messages: M[], maxRecords: number, maxBytes = SEND_BYTES): M[][] {
  const chunks: M[][] = [];
  let chunk: M[] = [];
  let bytes = 0;
  for (const message of messages) {
    const size = (message.key?.length ?? 0) + (message.value?.length ?? 0);
    if (chunk.length > 0 && (chunk.length >= maxRecords || bytes + size > maxBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(message);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
