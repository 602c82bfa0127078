import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, ManualClock, MappingModuleError, StateSpec, StreamingContext, exportJobState, readSnapshotState, readStateExport, writeStateExport } from '../../src/index.js';
import { defaultThreads } from '../../src/engine/context-options.js';
import { fixture, tempDir } from '../helpers.js';

/** Asserts that `run` throws a ConfigError whose message matches, and that names `option` when given. */
function refuses(run: () => unknown, message: RegExp, option?: string): void {
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof ConfigError, `a ConfigError, got ${String(e)}`);
    assert.match(e.message, message);
    if (option !== undefined) assert.equal((e.context as { option?: string }).option, option);
    return true;
  });
}

const context = (extra: object = {}) => new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1, ...extra });
/** A context with a stream to start: what start() does with the options is what is tested. */
function startable(extra: object): StreamingContext {
  const ssc = context(extra);
  ssc.queueStream<[string, number]>().mapWithState(StateSpec.function(fixture('count')));
  return ssc;
}
const kafka = { brokers: ['127.0.0.1:9092'], topic: 'words', groupId: 'g', zookeeper: { connect: '127.0.0.1:2181' } };
const cluster = { zookeeper: { connect: '127.0.0.1:2181' } };

describe('option values: what a value is, not only whether it was given', () => {
  it('null is a value, refused by name, not "not given" standing in for the default', () => {
    for (const option of ['threads', 'maxWorkerRestarts', 'stateCacheEntries']) {
      refuses(() => context({ [option]: null }), new RegExp(`${option} must be an integer .* got null`), option);
    }
    refuses(() => context({ snapshotsKept: null }), /snapshotsKept must be an integer from 1 to 1000, got null/, 'snapshotsKept');
    refuses(() => context({ clock: null }), /clock must have now\(\) and schedule/, 'clock');
    const ssc = context();
    for (const option of ['maxRecordsPerBatch', 'startingOffsets', 'failOnDataLoss', 'decoder', 'groupSessionTimeoutMs', 'clientId']) {
      refuses(() => ssc.kafkaStream({ ...kafka, [option]: null } as never), new RegExp(`${option} must be .*got null`), option);
    }
    refuses(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: '127.0.0.1:2181', sessionTimeoutMs: null } } as never), /zookeeper\.sessionTimeoutMs must be .* got null/, 'zookeeper.sessionTimeoutMs');
    refuses(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: '127.0.0.1:2181', root: null } } as never), /zookeeper\.root must be .* got null/, 'zookeeper.root');
    for (const option of ['maxPairsPerBatch', 'instanceId', 'restoreTimeoutMs']) {
      refuses(() => context({ cluster: { ...cluster, [option]: null } }), new RegExp(`cluster\\.${option} must be .*got null`), `cluster.${option}`);
    }
    refuses(() => StateSpec.function(fixture('count')).onRecordFailure({ policy: 'dead-letter', maxAttempts: null } as never), /maxAttempts must be an integer from 1 to 100, got null/);
    refuses(() => StateSpec.function(fixture('count')).onRecordFailure('dead-letter' as never), /onRecordFailure expects options \{ policy, maxAttempts \}, got "dead-letter"/);
    refuses(() => StateSpec.function(fixture('count')).onRecordFailure(null as never), /onRecordFailure expects options \{ policy, maxAttempts \}, got null/);
  });

  it('STATESTREAM_STORE_OPEN_WAIT_MS that is no whole number of milliseconds is refused by StreamingContext, naming it', () => {
    try {
      for (const value of ['2s', '0', '-5', '1.5', '2147483648']) {
        process.env.STATESTREAM_STORE_OPEN_WAIT_MS = value;
        refuses(() => context({}), new RegExp(`^STATESTREAM_STORE_OPEN_WAIT_MS must be a whole number of milliseconds from 1 to 2147483647, got "${value}"$`));
      }
      // Both ends of the range the message names are taken.
      for (const value of ['1', '45000', '2147483647']) {
        process.env.STATESTREAM_STORE_OPEN_WAIT_MS = value;
        assert.ok(context({}) instanceof StreamingContext, value);
      }
      // Set but empty (a shell's `VAR= cmd`): the default, as when it is not set.
      process.env.STATESTREAM_STORE_OPEN_WAIT_MS = '';
      assert.ok(context({}) instanceof StreamingContext);
    } finally {
      delete process.env.STATESTREAM_STORE_OPEN_WAIT_MS;
    }
  });

  it('NaN and Infinity are named as they are, not as JSON\'s null', async () => {
    refuses(() => context({ batchIntervalMs: NaN }), /batchIntervalMs must be an integer from 1 to 86400000, got NaN$/);
    assert.throws(() => new ManualClock('5' as never), /ManualClock: startMs must be a finite number, got "5"$/);
    await assert.rejects(async () => new ManualClock(0).advance(Infinity), /ManualClock\.advance: ms must be a finite number >= 0, got Infinity$/);
    await assert.rejects(async () => new ManualClock(0).setTime(NaN), /ManualClock\.setTime: timeMs must be a finite number, got NaN$/);
    refuses(() => context({ threads: Infinity }), /threads must be an integer from 1 to 256, got Infinity$/);
    refuses(() => context({ snapshotsKept: NaN }), /snapshotsKept .* got NaN$/);
    refuses(() => context({ snapshotEvery: NaN }), /snapshotEvery .* got NaN$/, 'snapshotEvery');
    refuses(() => context({ metrics: { port: NaN } }), /metrics\.port must be an integer from 0 to 65535 \(0: any free port\), got NaN$/);
    refuses(() => context({ cluster: { ...cluster, maxPairsPerBatch: Infinity } }), /cluster\.maxPairsPerBatch must be an integer from 1 to 10000000, got Infinity$/);
    const ssc = context();
    refuses(() => ssc.kafkaStream({ ...kafka, maxRecordsPerBatch: NaN }), /maxRecordsPerBatch must be an integer from 1 to 10000000, got NaN$/);
    refuses(() => ssc.kafkaStream({ ...kafka, groupSessionTimeoutMs: -Infinity }), /groupSessionTimeoutMs .* got -Infinity$/);
    refuses(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: '127.0.0.1:2181', sessionTimeoutMs: NaN } }), /sessionTimeoutMs .* got NaN$/);
    // A large value is named by its first 60 characters of JSON, so that one message stays one line.
    refuses(() => context({ threads: { list: 'x'.repeat(100) } }), new RegExp(`threads must be an integer from 1 to 256, got \\{"list":"${'x'.repeat(51)}…$`));
  });

  it('stop({ timeoutMs }) beyond what a Node timer holds is refused, and the job goes on until a stop it can keep', async () => {
    const ssc = context();
    const counts: Array<Array<[string, number]>> = [];
    const lines = ssc.queueStream<[string, number]>();
    lines.mapWithState(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2)).foreachBatch((records) => void counts.push(records));
    await ssc.start();
    await assert.rejects(async () => ssc.stop({ timeoutMs: 2 ** 31 }), (e: unknown) => e instanceof ConfigError && /timeoutMs must be a number of milliseconds from 0 to 2147483647 .* got 2147483648$/.test(e.message));
    await assert.rejects(async () => ssc.stop({ timeoutMs: NaN }), /got NaN$/);
    assert.equal(ssc.state, 'running', 'a refused stop stops nothing: before, a timer past 2^31 − 1 ms fired at once and cut every batch');
    lines.push(['a', 1], ['a', 1]);
    await (ssc.clock as ManualClock).advance(100);
    await ssc.awaitIdle();
    await ssc.stop({ timeoutMs: 2 ** 31 - 1 });
    assert.deepEqual(counts.flat().sort(), [['a', 1], ['a', 2]]);
  });

  it('zookeeper.connect takes one chroot, after the last host, and it must be a path ZooKeeper accepts', () => {
    const ssc = context();
    const connect = (value: string) => {
      const root = `/r${Math.random().toString(36).slice(2)}`;
      return ssc.kafkaStream({ ...kafka, groupId: `g${root}`, zookeeper: { connect: value, root } });
    };
    refuses(() => connect('zk1:2181/a,zk2:2181/b'), /"\/a,zk2:2181\/b" holds another host: a chroot path goes once, after the last host/, 'zookeeper.connect');
    refuses(() => connect('zk1:2181/'), /the chroot "\/" is not an absolute ZooKeeper path/, 'zookeeper.connect');
    refuses(() => connect('zk1:2181/jobs/../x'), /the chroot "\/jobs\/\.\.\/x"/, 'zookeeper.connect');
    refuses(() => connect('zk1:2181,zk2:99999/x'), /port 99999 of "zk2:99999" is not from 1 to 65535/, 'zookeeper.connect');
    connect('zk1:2181/a:b');
    connect('zk1:2181,zk2:2181/team-a');
    connect('zk1:2181');
  });

  it("ZooKeeper roots and the app name refuse '.' and '..' elements, and a root must be a string", () => {
    const ssc = context();
    for (const root of ['/jobs/..', '/a/.', '/a//b']) {
      refuses(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: '127.0.0.1:2181', root } }), /zookeeper\.root must be an absolute ZooKeeper path .*no '\.' or '\.\.' element/, 'zookeeper.root');
    }
    refuses(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: '127.0.0.1:2181', root: ['/a'] as never } }), /zookeeper\.root .* got \["\/a"\]/, 'zookeeper.root');
    refuses(() => context({ cluster: { zookeeper: { connect: '127.0.0.1:2181', root: '/x/..' } } }), /cluster\.zookeeper\.root must be/, 'cluster.zookeeper.root');
    for (const appName of ['.', '..']) refuses(() => context({ appName }), /appName must be .*not '\.' or '\.\.'/, 'appName');
    assert.equal(context({ appName: '...' }).appName, '...');
    for (const topic of ['.', '..']) refuses(() => ssc.kafkaStream({ ...kafka, topic }), /Kafka refuses '\.' and '\.\.'/, 'topic');
    const { topic: _one, ...noTopic } = kafka;
    refuses(() => ssc.kafkaStream({ ...noTopic, topics: ['ok', '..'] }), /Kafka refuses/, 'topics');
  });

  it('a blank data folder, a default thread count past the bound, and a snapshot interval that would never come', () => {
    refuses(() => context({ dataDir: '   ' }), /dataDir must be a non-empty path string, got "   "/, 'dataDir');
    refuses(() => context({ snapshotEvery: 10_000_000 }), /snapshotEvery must be a number of batches from 1 to 1000000/, 'snapshotEvery');
    refuses(() => context({ snapshotEvery: { ms: 31 * 24 * 3600_000 } }), /\(n from 1 to 2592000000, 30 days\)/, 'snapshotEvery');
    // The bounds themselves are taken.
    for (const snapshotEvery of [1_000_000, { batches: 1_000_000 }, { ms: 30 * 24 * 3600_000 }]) assert.doesNotThrow(() => context({ snapshotEvery }), JSON.stringify(snapshotEvery));
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir() });
    assert.equal(ssc.threads, Math.min(availableParallelism(), 256), 'one thread per core');
    assert.equal(defaultThreads(300), 256, 'a machine of 300 cores gets the most threads the option takes');
    assert.equal(defaultThreads(2), 2);
  });

  it('the documented defaults and lower bounds of the context options: snapshotsKept from 1, snapshotEvery one way, a clock that can schedule', () => {
    // docs/operations.md, "Limits of the options": what a context takes when an option is left out.
    const plain = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), snapshotEvery: 5 });
    assert.equal(plain.appName, 'statestream', 'the default app name (the offsets live under /statestream/<appName>)');
    assert.equal(plain.maxWorkerRestarts, 3);
    assert.equal(plain.stateCacheEntries, 1_000_000);
    assert.equal(plain.snapshotPolicy?.keep, 3, 'the newest 3 snapshots are kept');
    // snapshotsKept 0 would prune every snapshot, the one just taken too.
    refuses(() => context({ snapshotEvery: 1, snapshotsKept: 0 }), /snapshotsKept must be an integer from 1 to 1000, got 0/, 'snapshotsKept');
    assert.equal(context({ snapshotEvery: 1, snapshotsKept: 1 }).snapshotPolicy?.keep, 1);
    // Both at once: which one counts would be a guess.
    refuses(() => context({ snapshotEvery: { batches: 2, ms: 1000 } }), /snapshotEvery must be a number of batches .* got \{"batches":2,"ms":1000\}/, 'snapshotEvery');
    refuses(() => context({ snapshotEvery: {} }), /snapshotEvery must be/, 'snapshotEvery');
    // A clock that tells the time but cannot schedule would only fail once started, at its first batch.
    refuses(() => context({ clock: { now: () => 0 } }), /clock must have now\(\) and schedule\(time, callback\)/, 'clock');
    refuses(() => context({ clock: { schedule: () => () => undefined } }), /clock must have now\(\) and schedule/, 'clock');
  });

  it('metrics and the page on one port are refused when given; a host that is no address here is named as the host at start()', async () => {
    refuses(() => context({ metrics: { port: 9464 }, ui: { port: 9464 } }), /metrics\.port and ui\.port are both 9464/, 'ui.port');
    context({ metrics: { port: 0 }, ui: { port: 0 } });
    refuses(() => context({ metrics: { port: 9464, host: 'localhost' }, ui: { port: 9464 } }), /both 9464/, 'ui.port');
    context({ metrics: { port: 9464, host: '127.0.0.1' }, ui: { port: 9464, host: '127.0.0.2' } });
    refuses(() => context({ metrics: { port: 9464, host: '0.0.0.0' }, ui: { port: 9464, host: '127.0.0.2', token: 'x'.repeat(16) } }), /both 9464/, 'ui.port');
    // IPv6's every-address, and localhost on either side (it may resolve to any loopback address).
    refuses(() => context({ metrics: { port: 9464, host: '::' }, ui: { port: 9464, host: '127.0.0.2', token: 'x'.repeat(16) } }), /both 9464/, 'ui.port');
    refuses(() => context({ metrics: { port: 9464 }, ui: { port: 9464, host: 'localhost' } }), /both 9464/, 'ui.port');
    // A host name may be as long as DNS allows, and no longer.
    context({ metrics: { port: 0, host: `${'a'.repeat(60)}.example` } });
    refuses(() => context({ metrics: { port: 0, host: 'a'.repeat(256) } }), /metrics\.host must be a host name or IP address/, 'metrics.host');
    refuses(() => context({ ui: { port: 0, token: 12345678901234567 } }), /ui\.token must be a string of at least 16 characters/, 'ui.token');
    const ssc = startable({ metrics: { port: 0, host: '192.0.2.1' } });
    await assert.rejects(ssc.start(), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, /metrics\.host: metrics cannot listen on 192\.0\.2\.1:0: EADDRNOTAVAIL/);
      assert.equal((e.context as { option?: string }).option, 'metrics.host');
      return true;
    });
    assert.equal(ssc.state, 'stopped');
    // A name that resolves to nothing is the host's fault too.
    const unnamed = startable({ metrics: { port: 0, host: 'no-such-host.invalid' } });
    await assert.rejects(unnamed.start(), (e: unknown) => e instanceof ConfigError && e.context.option === 'metrics.host' && /cannot listen on no-such-host\.invalid:0: (ENOTFOUND|EAI_AGAIN)/.test(e.message));
  });

  it('an IPv6 host is written in brackets, where the server listens and in what a start refused says', async () => {
    const first = startable({ metrics: { port: 0, host: '::1' } });
    await first.start();
    try {
      const url = first.endpoints().metrics!;
      assert.match(url, /^http:\/\/\[::1\]:\d+\/metrics$/);
      const port = Number(new URL(url).port);
      const second = startable({ metrics: { port, host: '::1' } });
      await assert.rejects(second.start(), (e: unknown) => e instanceof ConfigError && e.message.includes(`metrics cannot listen on [::1]:${port}: EADDRINUSE`));
    } finally {
      await first.stop();
    }
  });

  it('a string is not taken as an iterable of records or of initial pairs', () => {
    refuses(() => StateSpec.function(fixture('count')).initialState('abc' as never), /initialState expects an iterable of \[key, state\] pairs .* got "abc"/, 'initialState');
    const ssc = context();
    const lines = ssc.queueStream<string>();
    refuses(() => lines.pushBatch('a b a'), /pushBatch expects an iterable of records \(push\(record\) for one\), got "a b a"/);
    lines.pushBatch(['a b a']);
  });

  it('a StateSpec is taken as it is when mapWithState is called: a setter called later shapes later streams only', () => {
    const ssc = context();
    const spec = StateSpec.function(fixture('count')).numPartitions(3);
    const first = ssc.queueStream<[string, number]>().mapWithState(spec) as unknown as { numPartitions: number; spec: StateSpec<unknown, unknown, unknown, unknown> };
    spec.numPartitions(5).timeout(1000).onRecordFailure({ policy: 'dead-letter' }).stateVersion(2).initialState([['a', 1]]);
    assert.equal(first.numPartitions, 3, 'before, the stream reported the later count while its stores kept the first');
    assert.equal(first.spec.getTimeout(), null);
    assert.equal(first.spec.getRecordFailure().policy, 'stop');
    assert.equal(first.spec.getStateVersion(), 1);
    assert.equal(first.spec.getInitialState(), undefined);
    const second = ssc.queueStream<[string, number]>().mapWithState(spec) as unknown as { numPartitions: number };
    assert.equal(second.numPartitions, 5);
    // A cluster stream's checks see the spec as it is taken: initialState set after it cannot slip by them.
    const clustered = context({ cluster });
    const late = StateSpec.function(fixture('count'));
    const pairs = clustered.kafkaStream(kafka).map((record) => [record.value, 1] as [string, number]);
    const stream = pairs.mapWithState(late) as unknown as { spec: StateSpec<unknown, unknown, unknown, unknown> };
    late.initialState([['a', 1]]).stateVersion(2);
    assert.equal(stream.spec.getInitialState(), undefined);
    assert.equal(stream.spec.getStateVersion(), 1);
  });

  it('a mapping module must be a local JavaScript file', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'fn.js'));
    writeFileSync(join(dir, 'count.ts'), 'export default () => undefined;\n');
    assert.throws(() => StateSpec.function(join(dir, 'fn.js')), (e: unknown) => e instanceof MappingModuleError && /the mapping module .*fn\.js is not a file \(a folder\?\)/.test(e.message));
    // Node 20 cannot load TypeScript on a worker; a Node that strips types itself can.
    if ((process.features as { typescript?: unknown }).typescript) StateSpec.function(join(dir, 'count.ts'));
    else assert.throws(() => StateSpec.function(join(dir, 'count.ts')), (e: unknown) => e instanceof MappingModuleError && /count\.ts is not a module this Node can load \(\.js, \.mjs, \.cjs\); compile it to JavaScript first/.test(e.message));
    refuses(() => StateSpec.function({ module: fixture('count'), export: null } as never), /export must be a non-empty string, got null/);
    refuses(() => StateSpec.function(NaN as never), /or an absolute path, got NaN;/);
    refuses(() => StateSpec.function('file://otherhost/srv/count.js'), /the mapping module must be a local file URL \(file:\/\/\/path\/fn\.js\), got file:\/\/otherhost\/srv\/count\.js/);
  });

  it('kafkaStream ssl and sasl are checked when given, as kafkajs would only find out when it connects', () => {
    const ssc = context();
    refuses(() => ssc.kafkaStream({ ...kafka, ssl: 'yes' as never }), /ssl must be true, false or a TLS options object .* got "yes"/, 'ssl');
    refuses(() => ssc.kafkaStream({ ...kafka, sasl: { mechanism: 'gssapi' } as never }), /sasl\.mechanism must be one of 'plain', 'scram-sha-256', 'scram-sha-512', 'aws', 'oauthbearer' \(or your own, with an authenticationProvider\), got "gssapi"/, 'sasl.mechanism');
    refuses(() => ssc.kafkaStream({ ...kafka, sasl: { mechanism: 'plain', username: 'u' } as never }), /sasl\.password must be a string for mechanism 'plain', got undefined/, 'sasl.password');
    refuses(() => ssc.kafkaStream({ ...kafka, sasl: { mechanism: 'oauthbearer' } as never }), /sasl\.oauthBearerProvider must be a function/, 'sasl.oauthBearerProvider');
    ssc.kafkaStream({ ...kafka, ssl: true, sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' } });
    // What kafkajs takes is taken: any case, an empty password, a mechanism of the program's own.
    context().kafkaStream({ ...kafka, sasl: { mechanism: 'PLAIN', username: 'u', password: '' } as never });
    context().kafkaStream({ ...kafka, sasl: { mechanism: 'my-mech', authenticationProvider: () => ({ authenticate: async () => undefined }) } as never });
    refuses(() => context().kafkaStream({ ...kafka, sasl: { mechanism: 'plain', username: 'u', password: null } as never }), /sasl\.password must be a string for mechanism 'plain', got null/, 'sasl.password');
  });

  it('exportJobState and readSnapshotState check their arguments: a misspelt stream is not read as stream 0', async () => {
    const dataDir = tempDir();
    await assert.rejects(exportJobState(dataDir, join(dataDir, 'out.msgpack'), { streem: 1 } as never), /exportJobState: unknown option "streem" \(known: stream\)/);
    await assert.rejects(exportJobState(undefined as never, join(dataDir, 'out.msgpack')), (e: unknown) => e instanceof ConfigError && /exportJobState: dataDir must be a non-empty path string, got undefined/.test(e.message));
    await assert.rejects(exportJobState(dataDir, 42 as never), /exportJobState: target must be a file path or a writable stream, got 42/);
    await assert.rejects(exportJobState(dataDir, join(dataDir, 'out.msgpack'), { stream: -1 }), /stream must be an integer ≥ 0/);
    refuses(() => readSnapshotState(dataDir, { streem: 0 } as never), /readSnapshotState: unknown option "streem"/, 'streem');
    refuses(() => readSnapshotState(dataDir, { stream: 1.5 }), /readSnapshotState: stream must be an integer ≥ 0 .* got 1\.5/, 'stream');
    refuses(() => readSnapshotState('' as never), /readSnapshotState: path must be a non-empty path string/, 'path');
    await assert.rejects(writeStateExport(null as never, { stateVersion: 1 }, []), /writeStateExport: target must be a file path or a writable stream, got null/);
    await assert.rejects(writeStateExport('  ', { stateVersion: 1 }, []), /writeStateExport: target must be a file path or a writable stream, got "  "/);
    refuses(() => readStateExport('  '), /readStateExport expects a file path, got "  "/, 'path');
  });
});
