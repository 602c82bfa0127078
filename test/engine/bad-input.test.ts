import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  BatchEvents, ConfigError, EncodingError, InvalidRecordError, LifecycleError, ManualClock, MappingModuleError, PoisonRecordError,
  StateContractError, StateSpec, StopTimeoutError, StreamingContext, type DStream,
} from '../../src/index.js';
import { fixture, keyedJob, startStopExit, tempDir } from '../helpers.js';
import { within } from '../wait.js';
import { openPartitionStore, partitionPath } from '../../src/storage/partition/store.js';
import { validateKafkaOptions } from '../../src/engine/sources/kafka-options.js';

/** Worker threads this process runs (the test runner itself runs none). */
function workerThreads(): number {
  return (process.report.getReport() as unknown as { workers: unknown[] }).workers.length;
}

/** Threads of this process holding a reader slot in a partition store: an open store keeps one. */
function ownReaders(dataDir: string, partition: number): string[] {
  const store = openPartitionStore(partitionPath(dataDir, 0, partition));
  try {
    store.env.readerCheck();
    return store.env.readerList().split('\n').filter((line) => line.trim().split(/\s+/)[0] === String(process.pid));
  } finally {
    store.env.close();
  }
}

describe('bad options are refused when given, naming the option', () => {
  it('StreamingContext options', () => {
    const bad: Array<[object, RegExp]> = [
      [{}, /batchIntervalMs must be an integer from 1 .* got nothing/],
      [{ batchIntervalMs: 0 }, /batchIntervalMs must be an integer from 1/],
      [{ batchIntervalMs: 1.5 }, /batchIntervalMs/],
      [{ batchIntervalMs: '1000' }, /batchIntervalMs .* got "1000"/],
      [{ batchIntervalMs: 100, threads: 0 }, /threads must be an integer from 1 to 256, got 0/],
      [{ batchIntervalMs: 100, threads: 257 }, /threads must be an integer from 1 to 256, got 257/],
      [{ batchIntervalMs: 24 * 3600_000 + 1 }, /batchIntervalMs must be an integer from 1 to 86400000, got 86400001/],
      [{ batchIntervalMs: 100, maxWorkerRestarts: 101 }, /maxWorkerRestarts must be an integer from 0 to 100, got 101/],
      [{ batchIntervalMs: 100, snapshotsKept: 1001 }, /snapshotsKept must be an integer from 1 to 1000, got 1001/],
      [{ batchIntervalMs: 100, stateCacheEntries: 2 ** 24 + 1 }, /stateCacheEntries must be an integer from 0 to 16777216, got 16777217/],
      [{ batchIntervalMs: 100, dataDir: '' }, /dataDir must be a non-empty path string/],
      [{ batchIntervalMs: 100, appName: 'no spaces' }, /appName must be/],
      [{ batchIntervalMs: 100, appName: 'a'.repeat(101) }, /appName must be/],
      [{ batchIntervalMs: 100, clock: {} }, /clock must have now\(\) and schedule/],
      [{ batchIntervalMs: 100, batchInterval: 5 }, /unknown option "batchInterval"/],
    ];
    for (const [options, message] of bad) {
      assert.throws(() => new StreamingContext(options as never), (e: unknown) => e instanceof ConfigError && message.test((e as Error).message), JSON.stringify(options));
    }
  });

  it('StateSpec options and mapping module references', () => {
    assert.throws(() => StateSpec.function('./relative.js'), (e: unknown) => e instanceof ConfigError && /file URL .* or an absolute path/.test((e as Error).message));
    assert.throws(() => StateSpec.function(new URL('https://example.com/fn.js')), /must be a file: URL/);
    assert.throws(() => StateSpec.function('/no/such/module.js'), (e: unknown) => e instanceof MappingModuleError && /no mapping module at \/no\/such\/module.js/.test((e as Error).message));
    assert.throws(() => StateSpec.function({ module: fixture('count'), export: '' }), /export must be a non-empty string/);
    const spec = StateSpec.function(fixture('count'));
    assert.throws(() => spec.numPartitions(0), /numPartitions must be an integer from 1 to 4096, got 0/);
    assert.throws(() => spec.numPartitions(4097), /numPartitions must be an integer from 1 to 4096, got 4097/);
    assert.throws(() => spec.onRecordFailure({ policy: 'dead-letter', maxAttempts: 101 }), /onRecordFailure maxAttempts must be an integer from 1 to 100, got 101/);
    assert.throws(() => spec.timeout(-5), /timeout must be an integer/);
    assert.throws(() => spec.initialState(42 as never), /iterable of \[key, state\] pairs/);
    assert.throws(() => spec.onRecordFailure({ policy: 'ignore' as never }), /policy must be 'stop' or 'dead-letter'/);
  });

  it('misspelt options, values of the wrong type and out-of-range ports are refused when given, naming them', () => {
    const spec = StateSpec.function(fixture('count'));
    assert.throws(() => spec.numPartitions('8' as never), (e: unknown) => e instanceof ConfigError && /numPartitions must be an integer from 1 to 4096, got "8"$/.test((e as Error).message));
    assert.throws(() => spec.onRecordFailure({ policy: 'dead-letter', maxAttempt: 10 } as never), /onRecordFailure: unknown option "maxAttempt" \(known: policy, maxAttempts\)/);
    assert.throws(() => StateSpec.function({ module: fixture('count'), exportName: 'count' } as never), /StateSpec\.function: unknown option "exportName"/);
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1 });
    assert.throws(() => ssc.queueStream({ oneAtTime: true } as never), /queueStream: unknown option "oneAtTime" \(known: oneAtATime\)/);
    assert.throws(() => ssc.on('batch.complete' as never, () => undefined), (e: unknown) => e instanceof ConfigError && /StreamingContext\.on: no event "batch\.complete" \(events: batch\.started, batch\.completed/.test((e as Error).message));
    assert.throws(() => ssc.on(BatchEvents.COMPLETED, 'log' as never), (e: unknown) => e instanceof ConfigError && (e as Error).message === 'StreamingContext.on("batch.completed"): the listener must be a function, got "log"');
    const kafka = { brokers: ['localhost:9092'], topic: 'words', groupId: 'g', zookeeper: { connect: 'localhost:2181' } };
    assert.throws(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: 'localhost:2181', rooot: '/team-a/wc' } as never }), /unknown option "zookeeper\.rooot" \(known: connect, root, sessionTimeoutMs, digest\)/);
    assert.throws(() => ssc.kafkaStream({ ...kafka, brokers: ['localhost:99999'] }), /brokers must be .* the port from 1 to 65535, got \["localhost:99999"\]/);
    assert.throws(() => ssc.kafkaStream({ ...kafka, zookeeper: { connect: 'zk1:2181,zk2:65536' } }), /zookeeper\.connect must be .* each port from 1 to 65535, got "zk1:2181,zk2:65536"/);
    const { topic: _one, ...noTopic } = kafka;
    assert.throws(() => ssc.kafkaStream({ ...noTopic, topics: 'words' as never }), /topics must be an array of topic names \(topic: for one\), got "words"/);
  });

  it('kafkaStream options of the wrong shape are refused by name, and clientId defaults to statestream-<appName>', () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1 });
    const kafka = { brokers: ['localhost:9092'], topic: 'words', groupId: 'g', zookeeper: { connect: 'localhost:2181' } };
    const refused: Array<[unknown, RegExp]> = [
      [null, /^kafkaStream: expects an options object, got null$/],
      [{ ...kafka, topic: 'x'.repeat(250) }, /^kafkaStream: topic names are 1–249 characters/],
      [{ ...kafka, clientId: '' }, /^kafkaStream: clientId must be a non-empty string, got ""$/],
      [{ ...kafka, maxRecordsPerBatch: 1.5 }, /^kafkaStream: maxRecordsPerBatch must be an integer from 1 to 10000000, got 1\.5$/],
      [{ ...kafka, groupSessionTimeoutMs: 6000.5 }, /^kafkaStream: groupSessionTimeoutMs must be an integer from 6000 to 1800000 .*, got 6000\.5$/],
      [{ ...kafka, groupSessionTimeoutMs: '30000' }, /^kafkaStream: groupSessionTimeoutMs must be an integer .*, got "30000"$/],
      [{ ...kafka, ssl: null }, /^kafkaStream: ssl must be true, false or a TLS options object .*, got null$/],
      [{ ...kafka, ssl: [] }, /^kafkaStream: ssl must be true, false or a TLS options object .*, got \[\]$/],
      [{ ...kafka, sasl: 'plain' }, /^kafkaStream: sasl must be an object like \{ mechanism: 'plain', username, password \}, got "plain"$/],
      [{ ...kafka, sasl: [] }, /^kafkaStream: sasl must be an object like .*, got \[\]$/],
      [{ ...kafka, sasl: { mechanism: '', authenticationProvider: () => ({}) } }, /^kafkaStream: sasl\.mechanism must be one of .*, got ""$/],
      [{ ...kafka, sasl: { mechanism: 'aws' } }, /^kafkaStream: sasl\.authorizationIdentity must be a string for mechanism 'aws', got undefined$/],
    ];
    for (const [options, message] of refused) {
      assert.throws(() => ssc.kafkaStream(options as never), (e: unknown) => e instanceof ConfigError && message.test((e as Error).message), JSON.stringify(options)?.slice(0, 100));
    }
    assert.equal(validateKafkaOptions({ ...kafka, topic: 'x'.repeat(249) }, 'wc').topics[0].length, 249, 'the longest name Kafka takes');
    assert.equal(validateKafkaOptions(kafka, 'wc').clientId, 'statestream-wc');
  });

  it('kafkaStream takes its documented defaults, its bounds themselves, and keeps what it does not check (ssl, sasl, the ZooKeeper digest) as given', () => {
    const kafka = { brokers: ['localhost:9092'], topic: 'words', groupId: 'g', zookeeper: { connect: 'localhost:2181' } };
    assert.deepEqual(validateKafkaOptions(kafka, 'wc'), {
      brokers: ['localhost:9092'], topics: ['words'], groupId: 'g', clientId: 'statestream-wc',
      zookeeper: { connect: 'localhost:2181', root: '/statestream/wc', sessionTimeoutMs: 10_000, digest: undefined },
      startingOffsets: 'earliest', failOnDataLoss: true, maxRecordsPerBatch: 10_000, decoder: 'string', onDecodeFailure: 'stop', groupSessionTimeoutMs: 30_000, ssl: undefined, sasl: undefined,
    });
    const ssl = { rejectUnauthorized: false };
    const sasl = { mechanism: 'scram-sha-512' as const, username: 'u', password: 'p' };
    const given = validateKafkaOptions({ ...kafka, ssl, sasl, zookeeper: { connect: 'localhost:2181', digest: 'job:secret' } }, 'wc');
    // Without the digest a job's ZooKeeper nodes would be written with no ACL at all.
    assert.deepEqual([given.ssl, given.sasl, given.zookeeper.digest], [ssl, sasl, 'job:secret']);
    for (const options of [
      { brokers: ['localhost:65535'], zookeeper: { connect: 'localhost:65535', sessionTimeoutMs: 1000 } },
      { groupSessionTimeoutMs: 6000, decoder: 'buffer' },
      { groupSessionTimeoutMs: 1_800_000 },
    ]) validateKafkaOptions({ ...kafka, ...options } as never, 'wc');
    const refused: Array<[unknown, RegExp]> = [
      [{ ...kafka, sasl: { mechanism: 'scram-sha-512', password: 'p' } }, /^kafkaStream: sasl\.username must be a string for mechanism 'scram-sha-512', got undefined$/],
      [{ ...kafka, zookeeper: { connect: 'localhost:2181', digest: ':secret' } }, /zookeeper\.digest must be "user:password"/],
      [{ ...kafka, zookeeper: { connect: 'localhost:2181/my root' } }, /zookeeper\.connect must be/],
      [{ ...kafka, zookeeper: { connect: 'localhost:2181', root: '/a b' } }, /zookeeper\.root must be an absolute ZooKeeper path/],
    ];
    for (const [options, message] of refused) {
      assert.throws(() => validateKafkaOptions(options as never, 'wc'), (e: unknown) => e instanceof ConfigError && message.test((e as Error).message), JSON.stringify(options));
    }
  });

  it('initial state a job could not store is refused, naming the entry: when given for an array or a Map, at start() for any other iterable', async () => {
    const spec = () => StateSpec.function(fixture('count'));
    assert.throws(() => spec().initialState([['a', 1], ['u', undefined]] as never), (e: unknown) => e instanceof InvalidRecordError && /StateSpec\.initialState entry 1 \(key "u"\) has no state \(undefined\)/.test((e as Error).message));
    assert.throws(() => spec().initialState(new Map([['f', () => 1]]) as never), /StateSpec\.initialState entry 0 \(key "f"\): the state cannot be stored: \$ is a function/);
    assert.throws(() => spec().initialState(['bad'] as never), /StateSpec\.initialState entry 0 is "bad", not a \[key, state\] pair/);
    function* pairs(): Generator<[string, unknown]> {
      yield ['a', 1];
      yield ['b', Symbol('no')];
    }
    await assert.rejects(keyedJob(spec().initialState(pairs() as never), { dataDir: tempDir() }), (e: unknown) => e instanceof InvalidRecordError && /StateSpec\.initialState entry 1 \(mapWithState stream 0\) \(key "b"\): the state cannot be stored: \$ is a symbol/.test((e as Error).message));
  });

  it('an initialState iterator is read once: a second stream given it is refused at start(), naming both; an array changed after it was given loads as given', async () => {
    function* pairs(): Generator<[string, number]> {
      yield ['a', 5];
    }
    const spec = StateSpec.function<string, number, number, unknown>(fixture('count')).initialState(pairs());
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock() });
    const input = ssc.queueStream<[string, number]>();
    input.mapWithState(spec).foreachBatch(() => {});
    input.mapWithState(spec).foreachBatch(() => {});
    try {
      await assert.rejects(ssc.start(), (e: unknown) => e instanceof ConfigError && /initialState of mapWithState stream 1 is an iterator already read \(by mapWithState stream 0 of this context\), and an iterator reads once only/.test((e as Error).message));
    } finally {
      await ssc.stop();
    }
    // The same spec in a later context: its iterator was read by the first.
    const later = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock() });
    later.queueStream<[string, number]>().mapWithState(spec).foreachBatch(() => {});
    try {
      await assert.rejects(later.start(), (e: unknown) => e instanceof ConfigError && /initialState of mapWithState stream 0 is an iterator already read \(by mapWithState stream 0 of an earlier context\)/.test((e as Error).message));
    } finally {
      await later.stop();
    }

    const given: Array<[string, number]> = [['a', 5]];
    const copied = StateSpec.function<string, number, number, unknown>(fixture('count')).initialState(given);
    given[0] = ['a', 50];
    given.push(['b', 9]);
    const job = await keyedJob(copied, { dataDir: tempDir() });
    try {
      await job.batch([['a', 1]]);
      assert.deepEqual([...job.stream.store().entries()], [['a', 6]]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('kafkaStream options, checked when the stream is defined', () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock() });
    const good = { brokers: ['127.0.0.1:9092'], topic: 'words', groupId: 'g', zookeeper: { connect: '127.0.0.1:2181' } };
    const bad: Array<[object, RegExp]> = [
      [{ ...good, brokers: [] }, /brokers must be a non-empty array of "host:port" strings/],
      [{ ...good, brokers: ['localhost'] }, /brokers must be .* got \["localhost"\]/],
      [{ ...good, topic: undefined }, /topic \(or topics\) is required/],
      [{ ...good, topics: ['a'] }, /either topic or topics, not both/],
      [{ ...good, topic: 'bad topic' }, /topic names are 1–249 characters/],
      [{ ...good, groupId: '' }, /groupId must be a non-empty string/],
      [{ ...good, zookeeper: { connect: 'nohost' } }, /zookeeper.connect must be "host:port/],
      [{ ...good, zookeeper: { connect: '127.0.0.1:2181', root: 'relative' } }, /zookeeper.root must be an absolute ZooKeeper path/],
      [{ ...good, zookeeper: { connect: '127.0.0.1:2181', digest: 'nocolon' } }, /zookeeper.digest must be "user:password"/],
      [{ ...good, zookeeper: { connect: '127.0.0.1:2181', sessionTimeoutMs: 500 } }, /zookeeper.sessionTimeoutMs must be an integer from 1000 to 120000, got 500/],
      [{ ...good, zookeeper: { connect: '127.0.0.1:2181', sessionTimeoutMs: '5000' } }, /zookeeper.sessionTimeoutMs must be an integer from 1000 to 120000, got "5000"/],
      // The bounds themselves: port 0, a password of nothing, one millisecond over.
      [{ ...good, zookeeper: { connect: '127.0.0.1:0' } }, /zookeeper.connect must be "host:port/],
      [{ ...good, brokers: ['127.0.0.1:0'] }, /brokers must be .* got \["127\.0\.0\.1:0"\]/],
      [{ ...good, zookeeper: { connect: '127.0.0.1:2181', digest: 'user:' } }, /zookeeper.digest must be "user:password"/],
      [{ ...good, zookeeper: { connect: '127.0.0.1:2181', sessionTimeoutMs: 120_001 } }, /zookeeper.sessionTimeoutMs must be an integer from 1000 to 120000, got 120001/],
      [{ ...good, startingOffsets: 'beginning' }, /startingOffsets must be 'earliest' or 'latest', got "beginning"/],
      [{ ...good, maxRecordsPerBatch: 0 }, /maxRecordsPerBatch must be an integer from 1/],
      [{ ...good, maxRecordsPerBatch: 10_000_001 }, /maxRecordsPerBatch must be an integer from 1 to 10000000, got 10000001/],
      [{ ...good, topic: undefined, topics: ['a', 'b', 'a'] }, /topics must not repeat/],
      [{ ...good, decoder: 'xml' }, /decoder must be 'string', 'json', 'buffer' or a function/],
      [{ ...good, onDecodeFailure: 'skip' }, /onDecodeFailure must be 'stop' or 'dead-letter'/],
      [{ ...good, groupSessionTimeoutMs: 10 }, /groupSessionTimeoutMs must be an integer from 6000 to 1800000/],
      // Below a broker's default group.min.session.timeout.ms: the join would be refused only once the job runs.
      [{ ...good, groupSessionTimeoutMs: 5999 }, /groupSessionTimeoutMs must be an integer from 6000 to 1800000 \(a Kafka broker's default limits\), got 5999/],
      [{ ...good, groupSessionTimeoutMs: 1_800_001 }, /groupSessionTimeoutMs must be an integer from 6000 to 1800000/],
      [{ ...good, brokerz: [] }, /unknown option "brokerz"/],
    ];
    for (const [options, message] of bad) {
      assert.throws(() => ssc.kafkaStream(options as never), (e: unknown) => e instanceof ConfigError && message.test((e as Error).message), JSON.stringify(options));
    }
    ssc.kafkaStream(good);
    assert.throws(() => ssc.kafkaStream({ ...good, topic: 'other' }), /already keeps its offsets under \/statestream\/statestream/);
    // The same node through a chroot, or through another server of the same ensemble.
    const at = (connect: string, root: string) => ({ ...good, topic: 'other', zookeeper: { connect, root } });
    const first = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock() });
    first.kafkaStream(at('zk-1:2181,zk-2:2181/app', '/wc'));
    assert.throws(() => first.kafkaStream(at('zk-2:2181,zk-3:2181', '/app/wc')), /already keeps its offsets under \/app\/wc \(on zk-2:2181,zk-3:2181, the node \/wc on zk-1:2181,zk-2:2181\/app names\)/);
    // Host names are not case-sensitive: ZK-2 is the server zk-2.
    assert.throws(() => first.kafkaStream({ ...at('ZK-2:2181/app', '/wc'), groupId: 'g5' }), /already keeps its offsets under \/wc \(on ZK-2:2181\/app, the node \/wc on zk-1:2181,zk-2:2181\/app names\)/);
    first.kafkaStream({ ...at('zk-3:2181', '/app/wc2'), groupId: 'g2' });
    first.kafkaStream({ ...at('other-zk:2181', '/app/wc'), groupId: 'g3' });
    // One consumer group for two streams: each member would get part of the partitions.
    // Whatever addresses it names the brokers by: localhost and 127.0.0.1 are one cluster.
    assert.throws(
      () => first.kafkaStream({ ...at('zk-3:2181', '/app/wc4'), brokers: ['localhost:9092'], groupId: 'g2' }),
      (e: unknown) => e instanceof ConfigError && e.context.option === 'groupId' && /already reads with groupId "g2"; give each a groupId of its own/.test(e.message),
    );
  });

  it('stream operations', () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock() });
    const q = ssc.queueStream<number>();
    assert.throws(() => q.map(5 as never), /map expects a function, got number/);
    assert.throws(() => q.foreachBatch(undefined as never), /foreachBatch expects a function/);
    // null named as null, not as typeof's "object".
    for (const [method, call] of [['map', () => q.map(null as never)], ['flatMap', () => q.flatMap(null as never)], ['filter', () => q.filter(null as never)], ['foreachBatch', () => q.foreachBatch(null as never)]] as const) {
      assert.throws(call, (e: unknown) => (e as Error).message === `${method} expects a function, got null`, method);
    }
    assert.throws(() => ssc.queueStream({ oneAtATime: 'yes' as never }), /oneAtATime must be a boolean/);
    // true meant as oneAtATime: not taken as "no options", which would merge the pushes into one batch.
    assert.throws(() => ssc.queueStream(true as never), (e: unknown) => e instanceof ConfigError && (e as Error).message === 'queueStream options must be an object, got true');
    assert.throws(() => ssc.queueStream(null as never), (e: unknown) => e instanceof ConfigError && /queueStream options must be an object, got null/.test((e as Error).message));
  });
});

describe('a mapping module that does not load fails start()', () => {
  for (const [name, ref, message] of [
    ['no such export', { module: fixture('article-count'), export: 'nope' }, /has no export named "nope" \(its exports: default, tally\)/],
    ['export is not a function', { module: fixture('not-a-function'), export: 'default' }, /export "default" of .* is a number, not a function/],
    ['a module with no exports', { module: fixture('no-exports'), export: 'default' }, /has no export named "default" \(its exports: none\)/],
    ['module throws on import', fixture('throws-on-import'), /throws-on-import\.js could not be loaded: top-level failure: the rate table could not be read/],
  ] as const) {
    it(name, async () => {
      const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1 });
      ssc.queueStream<[string, number]>().mapWithState(StateSpec.function(ref as never));
      await assert.rejects(ssc.start(), (e: unknown) => e instanceof MappingModuleError && message.test((e as Error).message));
      assert.equal(ssc.state, 'stopped');
      assert.equal(workerThreads(), 0, 'the failed start closed its workers');
    });
  }

  it('a failed start() leaves the process running: 20 starts that fail as soon as one of 8 workers has loaded the module', async () => {
    // The pool is destroyed while its other workers may still be starting. Terminating a worker
    // in the middle of loading an ES module through require(), or lmdb's native addon, used to
    // kill the whole process (Node's fatal error), in most runs of this test.
    const child = spawn(process.execPath, [fileURLToPath(fixture('failing-starts')), tempDir(), '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exit = await within(new Promise<[number | null, string | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal]))), '20 failed starts', { timeoutMs: 120_000 });
    assert.deepEqual(exit, [0, null], output.slice(-2000));
    assert.match(output, /^survived 20$/m);
  });

  it("a stop whose deadline passes while the job is starting fails start() with a StopTimeoutError that says so, not the pool's bare words", async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 2 });
    // Its module takes 1.5 s to load on each thread: the deadline falls inside the start's module check.
    ssc.queueStream<[string, number]>().mapWithState(StateSpec.function(fixture('slow-import')).numPartitions(2));
    const starting = ssc.start();
    const stopping = ssc.stop({ timeoutMs: 500 });
    await assert.rejects(starting, (e: unknown) => e instanceof StopTimeoutError && /^stop\(\) waited 500 ms while the job was still starting: the worker threads were terminated and start\(\) did not finish/.test((e as Error).message));
    await within(stopping, 'the stop');
    assert.equal(ssc.state, 'stopped');
    assert.equal(workerThreads(), 0);
  });

  it('stop() during start() waits for it and closes everything: no worker thread and no store left open', async () => {
    const dataDir = tempDir();
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir, clock: new ManualClock(), threads: 2 });
    ssc.queueStream<[string, number]>().mapWithState(StateSpec.function(fixture('count')).numPartitions(2));
    const starting = ssc.start();
    assert.equal(ssc.state, 'starting', 'stop() is called while start() runs');
    const stopping = ssc.stop();
    await within(Promise.all([starting, stopping]), 'start() and the stop() called during it to settle');
    assert.equal(ssc.state, 'stopped');
    assert.ok(existsSync(partitionPath(dataDir, 0, 1)), 'start() went on to open the stores before stop() closed them');
    assert.equal(workerThreads(), 0, 'the worker pool is gone');
    for (const partition of [0, 1]) assert.deepEqual(ownReaders(dataDir, partition), [], `partition ${partition}'s store is closed`);
  });

  it('a batch listener that throws fails the batch instead of losing it', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, unknown>(fixture('count')), { dataDir: tempDir() });
    try {
      job.ssc.on('batch.started', () => {
        throw new Error('listener bug');
      });
      job.input.pushBatch([['a', 1]]);
      await assert.rejects(job.clock.advance(1000), /listener bug/);
      await assert.rejects(job.ssc.awaitIdle(), /listener bug/);
      assert.equal(job.ssc.state, 'failed');
      assert.throws(() => job.input.pushBatch([['b', 1]]), (e: unknown) => e instanceof LifecycleError && /queueStream\.pushBatch: the StreamingContext is failed; records given now would never be processed/.test(e.message));
    } finally {
      await job.ssc.stop();
    }
  });

  // An output's failure fails its batch as thrown: a Kafka job then records no positions for it (outputs are at least once).
  for (const [where, fault] of [
    ['an output that throws', 'throw'],
    ['an output whose promise rejects', 'reject'],
    ['a batch.completed listener that throws', 'completed'],
  ] as const) {
    it(`${where} fails its batch with that very error, and the context stops processing`, async () => {
      const boom = new Error(`${fault} boom`);
      const clock = new ManualClock(0);
      const ssc = new StreamingContext({ batchIntervalMs: 1000, clock, dataDir: tempDir(), threads: 1 });
      const input = ssc.queueStream<[string, number]>();
      const stream = input.mapWithState(StateSpec.function<string, number, number, unknown>(fixture('count')).numPartitions(1));
      const seen: number[] = [];
      stream.foreachBatch(async (records, time) => {
        seen.push(time);
        if (fault === 'throw') throw boom;
        if (fault === 'reject') await new Promise((_, reject) => setTimeout(() => reject(boom), 10));
      });
      const failed: unknown[] = [];
      const completed: number[] = [];
      ssc.on(BatchEvents.FAILED, (e) => void failed.push(e.error));
      ssc.on(BatchEvents.COMPLETED, (e) => {
        completed.push(e.batchTime);
        if (fault === 'completed') throw boom;
      });
      await ssc.start();
      try {
        input.pushBatch([['a', 1]]);
        await assert.rejects(clock.advance(1000), (e: unknown) => e === boom);
        assert.deepEqual(failed, [boom]);
        assert.deepEqual(seen, [1000], 'the output ran once');
        assert.deepEqual(completed, fault === 'completed' ? [1000] : [], 'no batch.completed for a batch whose output failed');
        assert.equal(ssc.state, 'failed');
        await assert.rejects(ssc.awaitIdle(), (e: unknown) => e === boom);
      } finally {
        await ssc.stop();
      }
    });
  }

  it('a stopped context neither starts again nor takes records, and a query on it says it is stopped', async () => {
    const never = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1 });
    never.queueStream<[string, number]>().mapWithState(StateSpec.function(fixture('count'))).foreachBatch(() => undefined);
    await never.stop();
    await assert.rejects(never.start(), (e: unknown) => e instanceof LifecycleError && /start\(\): the context is stopped; a context starts once/.test(e.message));

    const job = await keyedJob(StateSpec.function(fixture('count')), { dataDir: tempDir() });
    await job.batch([['a', 1]]);
    await job.ssc.stop();
    assert.throws(() => job.input.push(['b', 1]), (e: unknown) => e instanceof LifecycleError && /the StreamingContext is stopped; records given now would never be processed/.test(e.message));
    assert.throws(() => job.input.pushBatch([['b', 1]]), LifecycleError);
    assert.throws(() => job.stream.store().get('a'), /store\(\)\.get: the StreamingContext is stopped \(a context starts once; a new StreamingContext on the same dataDir reads the stores\)/);
    // Each query names itself.
    for (const [name, query] of [['store().count', () => job.stream.store().count()], ['store().entries', () => job.stream.store().entries()], ['deadLetters', () => job.stream.deadLetters()]] as const) {
      assert.throws(query, (e: unknown) => e instanceof LifecycleError && (e as Error).message.startsWith(`${name}: the StreamingContext is stopped`), name);
    }
    await assert.rejects(job.ssc.start(), /a context starts once/);
  });

  it('a listener may still push while the context stops: the batches already generated finish, none fails', async () => {
    const job = await keyedJob(StateSpec.function(fixture('count')), { dataDir: tempDir() });
    const failed: unknown[] = [];
    job.ssc.on(BatchEvents.FAILED, (e) => void failed.push(e));
    let pushedWhileStopping = 0;
    job.ssc.on(BatchEvents.STARTED, () => {
      if (job.ssc.state === 'stopping') pushedWhileStopping++;
      job.input.push(['more', 1]);
    });
    job.input.push(['a', 1]);
    const advanced = job.clock.advance(1000);
    await job.ssc.stop();
    await advanced;
    assert.equal(pushedWhileStopping, 1, 'the batch started after stop() began');
    assert.deepEqual(failed, []);
    assert.equal(job.ssc.state, 'stopped');
  });

  it("a source that cannot hand over a batch's records fails that batch with its error, and the context with it, rather than running it empty", async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 1000, dataDir: tempDir(), clock: new ManualClock(0), threads: 1 });
    const input = ssc.queueStream<[string, number]>();
    const seen: unknown[] = [];
    input.mapWithState(StateSpec.function(fixture('count')).numPartitions(1)).foreachBatch((records) => void seen.push(records));
    const failed: Array<[number, string]> = [];
    ssc.on(BatchEvents.FAILED, (e) => void failed.push([e.batchTime, e.error.message]));
    await ssc.start();
    try {
      // What a cluster instance's source does once it lost its position: take() throws.
      (input as unknown as { take(): never }).take = () => {
        throw new Error('cannot hand over');
      };
      await assert.rejects((ssc.clock as ManualClock).advance(1000), /cannot hand over/);
      await assert.rejects(ssc.awaitIdle(), /cannot hand over/);
      assert.deepEqual(failed, [[1000, 'cannot hand over']]);
      assert.deepEqual(seen, [], 'no output ran for the batch');
      assert.equal(ssc.state, 'failed');
    } finally {
      await ssc.stop();
    }
  });

  it('start() without an input, and building after start, are lifecycle errors', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1 });
    await assert.rejects(ssc.start(), (e: unknown) => e instanceof LifecycleError && /^start\(\): no input stream is defined/.test((e as Error).message));
    // Nothing started: the context is still being built, and starts once it has an input.
    assert.equal(ssc.state, 'created');
    ssc.queueStream();
    await ssc.start();
    assert.equal(ssc.state, 'running');
    await ssc.stop();
    const job = await keyedJob(StateSpec.function(fixture('count')), { dataDir: tempDir() });
    try {
      assert.throws(() => job.ssc.queueStream(), /must be defined before start\(\)/);
      await assert.rejects(job.ssc.start(), /a context starts once/);
      // The context's own methods too, not only the streams' (which call them).
      assert.throws(() => job.ssc.mapWithState(job.input as never, StateSpec.function(fixture('count'))), (e: unknown) => e instanceof LifecycleError && /^mapWithState: streams and outputs must be defined before start\(\)/.test((e as Error).message));
      assert.throws(() => job.ssc.addOutput(job.input, () => undefined), (e: unknown) => e instanceof LifecycleError && /^addOutput: streams and outputs must be defined before start\(\)/.test((e as Error).message));
      // A stream made on a running context would never run: refused, named.
      const input = job.input as unknown as DStream<[string, number]>;
      for (const [method, make] of [
        ['map', () => input.map((r) => r)],
        ['flatMap', () => input.flatMap((r) => [r])],
        ['filter', () => input.filter(() => true)],
        ['stateSnapshots', () => job.stream.stateSnapshots()],
        ['foreachBatch', () => input.foreachBatch(() => undefined)],
      ] as Array<[string, () => unknown]>) {
        assert.throws(make, (e: unknown) => e instanceof LifecycleError && new RegExp(`^${method}: streams and outputs must be defined before start\\(\\)`).test((e as Error).message), method);
      }
      assert.deepEqual(await job.batch([['a', 1]]), [['a', 1]], 'the job goes on');
    } finally {
      await job.ssc.stop();
    }
  });

  it('stop() twice on a context that never started leaves no timer behind', async () => {
    const ssc = new StreamingContext({ batchIntervalMs: 100, dataDir: tempDir(), clock: new ManualClock(), threads: 1 });
    ssc.queueStream();
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const first = ssc.stop();
    await ssc.stop({ timeoutMs: 60_000 });
    await first;
    assert.equal(timers(), before, 'the second call armed no deadline');
  });

  it("stop() of a context on the system clock cancels the next batch's timer: the process exits by itself, a long batch interval notwithstanding", async () => {
    const { exit, output } = await startStopExit();
    assert.deepEqual(exit, [0, null], output.slice(-2000));
    assert.match(output, /^stopped$/m);
  });
});

describe('bad records and states fail the batch, naming what and where, and leave the stores as they were', () => {
  async function expectBatchFailure(records: unknown[], check: (e: unknown) => boolean) {
    const job = await keyedJob(StateSpec.function<unknown, unknown, unknown, unknown>(fixture('count')).numPartitions(2), { dataDir: tempDir() });
    try {
      await job.batch([['keep', 1]] as never);
      job.input.pushBatch([['keep', 1], ...records] as never);
      await assert.rejects(job.clock.advance(1000), check);
      assert.deepEqual([...job.stream.store().entries()], [['keep', 1]]);
    } finally {
      await job.ssc.stop();
    }
  }

  it('a record that is not a [key, value] pair', () =>
    expectBatchFailure(['just-a-word'], (e) => e instanceof InvalidRecordError && /\[key, value\] pairs; record 1 of batch 2000 is "just-a-word"/.test((e as Error).message)));

  it('a malformed record whose key an earlier record of the batch already had', () =>
    expectBatchFailure([['a', 1], ['a', 1, 'extra']], (e) => e instanceof InvalidRecordError && /\[key, value\] pairs; record 2 of batch 2000 is \["a",1,"extra"\]/.test((e as Error).message)));

  it('a key that cannot be an LMDB key', () =>
    expectBatchFailure([[{ user: 1 }, 1]], (e) => e instanceof InvalidRecordError && /record 1 of batch 2000: key \{"user":1\} cannot be an LMDB key/.test((e as Error).message)));

  it('a NaN or infinite key is named as it is, not as JSON\'s null', () =>
    expectBatchFailure([[NaN, 1]], (e) => e instanceof InvalidRecordError && /record 1 of batch 2000: key NaN cannot be an LMDB key/.test((e as Error).message)));

  it('a tuple with a part that is no key, after a tuple whose JSON text it shares, is refused rather than counted as that tuple', () =>
    expectBatchFailure([[['u', '2024-01-01T00:00:00.000Z'], 1], [['u', new Date('2024-01-01T00:00:00.000Z')], 1]], (e) => e instanceof InvalidRecordError && /record 2 of batch 2000: key .* cannot be an LMDB key/.test((e as Error).message)));

  it('a tuple with a BigInt part is named as a record, not a JSON TypeError', () =>
    expectBatchFailure([[['u', 1n], 1]], (e) => e instanceof InvalidRecordError && /record 1 of batch 2000: key .* cannot be an LMDB key/.test((e as Error).message)));

  it('a one-element tuple, which LMDB would store as its element', () =>
    expectBatchFailure([[['keep'], 1]], (e) => e instanceof InvalidRecordError && /key \["keep"\] cannot be an LMDB key: .* two or more/.test((e as Error).message)));

  it('a tuple key longer than LMDB allows', () =>
    expectBatchFailure([[['user', 'x'.repeat(2500)], 1]], (e) => e instanceof InvalidRecordError && /record 1 of batch 2000: key is about 250\d bytes encoded; LMDB keys are limited to 1900/.test((e as Error).message)));

  // A function value reached the mapping function as undefined; a symbol or a cycle failed the batch in msgpackr's words.
  const cyclic: Record<string, unknown> = { n: 1 };
  cyclic.self = cyclic;
  for (const [what, value, message] of [
    ['a function inside it', { n: 1, cb: () => 1 }, /record 2 of batch 2000 \(key "v", mapWithState stream 0\) cannot be sent to its partition: its value.cb is a function/],
    ['a symbol', Symbol('x'), /record 2 of batch 2000 \(key "v", mapWithState stream 0\) cannot be sent to its partition: its value is a symbol/],
    ['a cycle', cyclic, /record 2 of batch 2000 \(key "v", mapWithState stream 0\) cannot be sent to its partition: its value.self refers back to itself/],
  ] as const) {
    it(`a record value MessagePack cannot carry (${what})`, () =>
      expectBatchFailure([['v', 1], ['v', value]], (e) => e instanceof InvalidRecordError && message.test((e as Error).message)));
  }

  it('a key longer than LMDB allows', () =>
    expectBatchFailure([['k'.repeat(5000), 1]], (e) => e instanceof InvalidRecordError && /5000 bytes of UTF-8; LMDB keys are limited to 1900/.test((e as Error).message)));

  for (const [value, message] of [
    ['store-function', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value is a function/],
    ['store-nested-symbol', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value.deep\[1\].s is a symbol/],
    ['store-cycle', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value.self refers back to itself \(a cycle\)/],
    ['store-wide-bigint', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value.n is a bigint wider than 64 bits/],
    // Stored as U+FFFD, it would read back otherwise than memory holds it.
    ['store-lone-surrogate', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value.name is a string with a lone surrogate/],
    ['store-lone-surrogate-state', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value is a string with a lone surrogate/],
    ['store-lone-surrogate-name', /the state of key "f" in partition \d of batch 2000 cannot be stored: the value.inner has a property name with a lone surrogate/],
  ] as const) {
    it(`a state that cannot be encoded (${value})`, async () => {
      const job = await keyedJob(StateSpec.function<string, string, unknown, unknown>(fixture('misuse')).numPartitions(2), { dataDir: tempDir() });
      try {
        await job.batch([['keep', 'ok']]);
        job.input.pushBatch([['keep', 'ok'], ['f', value]]);
        await assert.rejects(job.clock.advance(1000), (e: unknown) => e instanceof EncodingError && message.test((e as Error).message));
        assert.deepEqual([...job.stream.store().entries()], [['keep', 'fine']]);
      } finally {
        await job.ssc.stop();
      }
    });
  }

  it('a mapped record that cannot be encoded fails the batch naming the key and the record, and nothing of the batch is stored', async () => {
    const job = await keyedJob(StateSpec.function<string, string, unknown, unknown>(fixture('misuse')).numPartitions(2), { dataDir: tempDir() });
    try {
      await job.batch([['keep', 'ok']]);
      job.input.pushBatch([['g', 'ok'], ['f', 'output-function']]);
      await assert.rejects(job.clock.advance(1000), (e: unknown) => {
        assert.ok(e instanceof EncodingError && /^the record mapped from key "f" \(record \d of the shard\) in partition \d of batch 2000 cannot be stored: the value\.format is a function/.test(e.message), String(e));
        // Where the worker threw it, not where the main thread rebuilt it from the worker's message.
        assert.match(e.stack ?? '', /^EncodingError: the record mapped from key "f"[^]*\n\s+at .*\/src\/(actors|storage)\/[\w./-]+\.js:\d+/);
        assert.doesNotMatch(e.stack ?? '', /deserializeError/);
        return true;
      });
      assert.deepEqual([...job.stream.store().entries()], [['keep', 'fine']]);
    } finally {
      await job.ssc.stop();
    }
  });

  it('bigints that fit in 64 bits are stored and read back as they were', async () => {
    const job = await keyedJob(StateSpec.function<string, string, unknown, unknown>(fixture('misuse')), { dataDir: tempDir() });
    try {
      await job.batch([['big', 'store-64-bit-bigints']]);
      assert.deepEqual(job.stream.store().get('big'), { max: 2n ** 64n - 1n, min: -(2n ** 63n) });
    } finally {
      await job.ssc.stop();
    }
  });
});

describe('State used against its contract throws as Spark does', () => {
  for (const [value, message] of [
    ['update-after-remove', /cannot update the state of key k after it has been removed/],
    ['remove-twice', /the state of key k has already been removed/],
    ['get-absent', /no state exists for key k/],
    ['update-undefined', /the new state of key k is undefined; call remove\(\)/],
  ] as const) {
    it(value, async () => {
      const job = await keyedJob(StateSpec.function<string, string, unknown, unknown>(fixture('misuse')).onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir: tempDir() });
      try {
        job.input.pushBatch([['k', value]]);
        await assert.rejects(job.clock.advance(1000), (e: unknown) => {
          assert.ok(e instanceof PoisonRecordError);
          assert.ok((e as Error).cause instanceof StateContractError, 'the cause keeps its class across the thread boundary');
          assert.match(((e as Error).cause as Error).message, message);
          return true;
        });
      } finally {
        await job.ssc.stop();
      }
    });
  }

  it('remove on a key without state is allowed, as in Spark, and leaves the key without state', async () => {
    const job = await keyedJob(StateSpec.function<string, string, unknown, unknown>(fixture('misuse')).onRecordFailure({ policy: 'stop', maxAttempts: 1 }), { dataDir: tempDir() });
    const keyCounts: number[] = [];
    job.ssc.on(BatchEvents.COMPLETED, (e) => void keyCounts.push(e.partitionStats[0].reduce((n, p) => n + p.keyCount, 0)));
    try {
      assert.deepEqual(await job.batch([['k', 'remove-absent']]), ['removed, exists false']);
      assert.equal(job.stream.store().count(), 0);
      assert.equal(job.stream.store().get('k'), undefined);
      await job.batch([['k', 'remove-absent']]);
      assert.deepEqual(keyCounts, [0, 0], 'removing nothing takes no key off the count');
    } finally {
      await job.ssc.stop();
    }
  });

  for (const [first, state, message] of [
    ['ok', 'fine', /cannot update the state of key k while it is timing out/],
    ['remove-when-timing-out', 'remove-me', /cannot remove the state of key k while it is timing out; it is removed after this call/],
  ] as const) {
    it(`${message.source.includes('update') ? 'update' : 'remove'} while timing out`, async () => {
      const job = await keyedJob(StateSpec.function<string, string, unknown, unknown>(fixture('misuse')).timeout(1000).onRecordFailure({ policy: 'dead-letter', maxAttempts: 1 }), { dataDir: tempDir() });
      try {
        await job.batch([['k', first]]);
        await job.batch([]);
        await job.batch([]); // 3000: k (1000) < 2000 times out; the function tries update() or remove()
        const [letter] = job.stream.deadLetters();
        assert.equal(letter.key, 'k');
        assert.equal(letter.timingOut, true);
        assert.match(letter.error.message, message);
        assert.equal(letter.state, state, 'the state the key held is kept with the letter');
        assert.equal(job.stream.store().count(), 0, 'the key is removed all the same');
      } finally {
        await job.ssc.stop();
      }
    });
  }
});
