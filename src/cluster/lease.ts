import { performance } from 'node:perf_hooks';

/**
 * The check to run before each request sent under a lease from the coordinator's checkOwned
 * (a performance.now() time): throws `lapsed()` once the lease has run out, so that a
 * fenced owner's record of a key cannot land after the next owner's, which compaction
 * could then keep alone.
 */
export function withinLease(leaseUntil: number, lapsed: () => Error): () => void {
  return () => {
    if (performance.now() > leaseUntil) throw lapsed();
  };
}
