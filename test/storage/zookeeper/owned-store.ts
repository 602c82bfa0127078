import { ZooKeeperOffsetStore } from '../../../src/storage/zookeeper/offsets.js';
import { ZooKeeperOwnership } from '../../../src/storage/zookeeper/ownership.js';
import type { ZooKeeperSession } from '../../../src/storage/zookeeper/session.js';

/** An offset store that may write: it owns `root` first, as a job's Kafka source does. `release()` gives the root up. */
export async function ownedOffsetStore(session: ZooKeeperSession, root: string): Promise<ZooKeeperOffsetStore & { release(): Promise<void> }> {
  const ownership = new ZooKeeperOwnership(session, root, { dataDir: 'test', appName: 'test' }, false);
  await ownership.acquire();
  return Object.assign(new ZooKeeperOffsetStore(session, root, ownership), { release: () => ownership.release() });
}
