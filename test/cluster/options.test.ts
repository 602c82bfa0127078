import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { ClusterError, ConfigError, StateSpec, StreamingContext } from '../../src/index.js';
import { defaultInstanceId, validateClusterOptions } from '../../src/cluster/options.js';
import { fixture, tempDir } from '../helpers.js';

const zk = { connect: '127.0.0.1:1' };
const context = (extra: Record<string, unknown>) => new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), appName: 'wc', ...extra } as ConstructorParameters<typeof StreamingContext>[0]);
const refused = (make: () => unknown, option: string, message: RegExp) =>
  assert.throws(make, (error: unknown) => {
    assert.ok(error instanceof ConfigError, String(error));
    assert.match(error.message, message);
    assert.equal((error.context as { option?: string }).option, option);
    return true;
  });

describe('cluster options: checked when the context is made, naming the option', () => {
  it('refuses a malformed cluster option', () => {
    refused(() => context({ cluster: 'zk:2181' }), 'cluster', /cluster must be an object like \{ zookeeper: \{ connect \} \}/);
    for (const [value, named] of [[null, 'null'], [[], '\\[\\]']] as const) refused(() => context({ cluster: value }), 'cluster', new RegExp(`cluster must be an object like .*, got ${named}$`));
    refused(() => context({ cluster: { zookeeper: zk, standby: 1 } }), 'cluster.standby', /cluster\.standby is not a cluster option \(known: zookeeper, instanceId, maxPairsPerBatch, restoreTimeoutMs\)/);
    refused(() => context({ cluster: { zookeeper: { connect: 'no port' } } }), 'cluster.zookeeper.connect', /cluster\.zookeeper\.connect must be "host:port\[,host:port…\]\[\/chroot\]", each port from 1 to 65535, got "no port": "no port" is not host:port/);
    refused(() => context({ cluster: { zookeeper: { ...zk, root: 'relative' } } }), 'cluster.zookeeper.root', /absolute ZooKeeper path/);
    refused(() => context({ cluster: { zookeeper: zk, instanceId: 'has space' } }), 'cluster.instanceId', /instanceId must be 1–100 characters .* got "has space"/);
    // ZooKeeper refuses them as path elements (members/<id>), deep in the start.
    for (const id of ['.', '..']) refused(() => context({ cluster: { zookeeper: zk, instanceId: id } }), 'cluster.instanceId', new RegExp(`instanceId must be .*\\(not '\\.' or '\\.\\.'\\), got "${id.replace(/\./g, '\\.')}"`));
    refused(() => context({ cluster: { zookeeper: zk, maxPairsPerBatch: 0 } }), 'cluster.maxPairsPerBatch', /from 1 to 10000000, got 0/);
    refused(() => context({ cluster: { zookeeper: zk, maxPairsPerBatch: 10_000_001 } }), 'cluster.maxPairsPerBatch', /from 1 to 10000000, got 10000001/);
    refused(() => context({ cluster: { zookeeper: zk, restoreTimeoutMs: 10 } }), 'cluster.restoreTimeoutMs', /at least 1000, got 10/);
    refused(() => context({ cluster: { zookeeper: zk, restoreTimeoutMs: 999 } }), 'cluster.restoreTimeoutMs', /at least 1000, got 999/);
    refused(() => context({ cluster: { zookeeper: zk, restoreTimeoutMs: 1500.5 } }), 'cluster.restoreTimeoutMs', /got 1500\.5/);
    for (const bad of [Number.NaN, 1.5]) refused(() => context({ cluster: { zookeeper: zk, maxPairsPerBatch: bad } }), 'cluster.maxPairsPerBatch', /from 1 to 10000000/);
    // The bounds themselves are taken.
    for (const maxPairsPerBatch of [1, 10_000_000]) assert.equal(validateClusterOptions({ zookeeper: zk, maxPairsPerBatch }, 'wc', '/data/a').maxPairsPerBatch, maxPairsPerBatch);
    assert.equal(validateClusterOptions({ zookeeper: zk, restoreTimeoutMs: 1000 }, 'wc', '/data/a').restoreTimeoutMs, 1000);
  });

  it("defaults: an instance id of the host and the data folder (two folders on one host, two ids), 10^5 pairs a batch, a 300 s restore", () => {
    const [a, b] = [validateClusterOptions({ zookeeper: zk }, 'wc', '/data/a'), validateClusterOptions({ zookeeper: zk }, 'wc', '/data/b')];
    assert.notEqual(a.instanceId, b.instanceId);
    assert.equal(validateClusterOptions({ zookeeper: zk }, 'wc', '/data/a').instanceId, a.instanceId, 'the same folder, the same id');
    assert.equal(a.instanceId, defaultInstanceId('/data/a'));
    // The id a restarted instance is known by ends in the first 8 hex digits of the folder's sha256:
    // a change of its form would give every instance a new identity on upgrade.
    assert.equal(a.instanceId, `${hostname().slice(0, 60)}-46d2cd93`, 'the host name (letters, digits, dots and dashes, as host names are) and the hash');
    assert.match(a.instanceId, /^[A-Za-z0-9._-]{1,100}$/);
    assert.deepEqual([a.maxPairsPerBatch, a.restoreTimeoutMs], [100_000, 300_000]);
  });

  it('refuses snapshots and an initial state, which a cluster restores from its changelog instead', () => {
    refused(() => context({ cluster: { zookeeper: zk }, snapshotEvery: 5 }), 'snapshotEvery', /snapshotEvery is not supported with cluster/);
    const ssc = context({ cluster: { zookeeper: zk } });
    const pairs = ssc.kafkaStream({ brokers: ['127.0.0.1:9'], topic: 'words', groupId: 'wc', zookeeper: zk }).map((r) => [r.value, 1] as [string, number]);
    assert.throws(() => pairs.mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).initialState([['a', 1]])), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /mapWithState in a cluster: initialState is not supported yet/);
      return true;
    });
  });

  it('a job not shaped for a cluster is refused: a queueStream when defined, two Kafka sources at start() before reaching ZooKeeper', async () => {
    refused(() => context({ cluster: { zookeeper: zk } }).queueStream(), 'cluster', /queueStream: a job that runs as a cluster reads exactly one kafkaStream/);
    const ssc = context({ cluster: { zookeeper: zk } });
    const source = (topic: string) => ssc.kafkaStream({ brokers: ['127.0.0.1:9'], topic, groupId: `wc-${topic}`, zookeeper: { ...zk, root: `/wc/${topic}` } });
    source('words').map((r) => [r.value, 1] as [string, number]).mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')));
    source('more').foreachBatch(() => undefined);
    await assert.rejects(ssc.start(), (error: unknown) => {
      assert.ok(error instanceof ClusterError, String(error));
      assert.match(error.message, /reads exactly one kafkaStream/);
      return true;
    });
    assert.equal(ssc.cluster, undefined);

    // One Kafka source, but no state to spread; or a state stream fed from another state stream's records.
    const startRefused = async (build: (ssc: StreamingContext) => void, message: RegExp) => {
      const job = context({ cluster: { zookeeper: zk } });
      build(job);
      await assert.rejects(job.start(), (error: unknown) => {
        assert.ok(error instanceof ClusterError, String(error));
        assert.match(error.message, message);
        return true;
      });
      assert.equal(job.cluster, undefined);
    };
    const words = (job: StreamingContext) => job.kafkaStream({ brokers: ['127.0.0.1:9'], topic: 'words', groupId: 'wc', zookeeper: zk });
    await startRefused((job) => words(job).foreachBatch(() => undefined), /the job has no mapWithState stream; there is nothing to spread over instances/);
    await startRefused((job) => {
      const counts = words(job).map((r) => [r.value, 1] as [string, number]).mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')));
      counts.map(([word]) => [word, 1] as [string, number]).mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')));
    }, /mapWithState stream 1 must be fed from the kafkaStream by map\/flatMap\/filter alone/);
  });
});
