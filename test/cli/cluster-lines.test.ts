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

  it('shows the leader, a Kafka problem, each column\'s own figure and a single source partition', () => {
    const member = (id: string, leader: boolean) => ({ id, pid: id === 'a' ? 1 : 2, host: 'h', dataDir: `/d/${id}`, since: 'then', leader }) as ClusterReport['members'][number];
    const report: ClusterReport = {
      root: '/jobs/wc', appName: 'wc', generation: 7, kafkaProblem: 'cannot read the topics\' end offsets from b:9092: gone',
      members: [member('a', true), member('b', false)],
      streams: [{
        stream: 0, repartitionTopic: 'wc-repartition-0', changelogTopic: 'wc-changelog-0',
        partitions: [partition(0, { position: 10, repartitionEnd: 15, repartitionLag: 5, changelogOffset: 4, changelogEnd: 7, changelogLag: 2 })],
      }],
      sources: [{ topic: 'lines', partition: 0, reader: 'b', position: 6, end: 9, lag: 3 }],
    };
    const lines = clusterLines(report, table);
    assert.equal(lines[1], '  a (leader): pid 1 on h, data folder /d/a, since then');
    assert.equal(lines[2], '  b: pid 2 on h, data folder /d/b, since then');
    assert.equal(lines[3], "  lag unknown: cannot read the topics' end offsets from b:9092: gone");
    const cells = (line: string) => line.trim().split(/\s{2,}/);
    const text = lines.join('\n').split('\n');
    const header = text.findIndex((l) => /^\s+partition\s+owner/.test(l));
    assert.deepEqual(cells(text[header + 1]), ['0', 'a', '3', 'owner', '10', '5', '4', '2'], 'next pair, repartition lag, changelog at, changelog lag');
    const sources = text.indexOf('  Source partitions (stage 1)');
    assert.ok(sources > 0, 'one source partition has its section');
    assert.deepEqual(cells(text[sources + 1]), ['topic', 'partition', 'read by', 'next offset', 'lag']);
    assert.deepEqual(cells(text[sources + 2]), ['lines', '0', 'b', '6', '3']);
  });
});
