import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { table } from '../../src/cli/args.js';
import { clusterLines, type ClusterPartitionReport, type ClusterReport } from '../../src/cli/cluster-report.js';

const partition = (p: number, fields: Partial<ClusterPartitionReport>): ClusterPartitionReport => ({
  partition: p, owner: 'a', epoch: 3, holder: 'a', holderEpoch: 3, position: 10, changelogOffset: 4, progressAt: undefined, ...fields,
});

// readClusterReport's ZooKeeper and broker reads are in the cluster integration test; this is
// what inspect prints of a report, for the states a running cluster passes through briefly.
describe("inspect's cluster section", () => {
  it('says who holds each partition: its owner, nobody while the owner takes it, or an old holder handing over (another instance, or the owner under an older epoch)', () => {
    const report: ClusterReport = {
      root: '/jobs/wc', appName: 'wc', generation: 7, sources: [],
      members: [{ id: 'a', pid: 1, host: 'h', dataDir: '/d', since: 'then', leader: true } as ClusterReport['members'][number]],
      streams: [{
        stream: 0, repartitionTopic: 'wc-repartition-0', changelogTopic: 'wc-changelog-0',
        partitions: [
          partition(0, {}),
          partition(1, { holder: undefined, holderEpoch: undefined }),
          partition(2, { holder: 'b', holderEpoch: 2 }),
          // The owner's own node of its tenure before: it restarted under the same id, and its new take is not in place yet.
          partition(3, { holderEpoch: 2 }),
        ],
      }],
    };
    const rows = clusterLines(report, table).join('\n').split('\n').filter((l) => /^\s+\d\s/.test(l));
    assert.equal(rows.length, 4, rows.join('\n'));
    assert.match(rows[0], /^\s+0\s+a\s+3\s+owner\s/);
    assert.match(rows[1], /^\s+1\s+a\s+3\s+nobody \(taking\)\s/);
    assert.match(rows[2], /^\s+2\s+a\s+3\s+b \(epoch 2, handing over\)\s/);
    assert.match(rows[3], /^\s+3\s+a\s+3\s+a \(epoch 2, handing over\)\s/);
  });
});
