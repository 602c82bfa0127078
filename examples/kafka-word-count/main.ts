/**
 * The article's job against a real cluster: words typed into a Kafka topic, counted per
 * word with mapWithState, offsets in ZooKeeper. Kill it at any moment and start it again:
 * no word is lost and none is counted twice.
 */
import { BatchEvents, StateSpec, StatestreamError, StreamingContext } from '../../src/index.js';
import { Cli } from '../cli.js';

const USAGE = `usage: node dist/examples/kafka-word-count/main.js --brokers host:port[,…] --topic words --zookeeper host:port [options]
  --group <id>          Kafka consumer group (default word-count)
  --data-dir <path>     where the counts live (default ./data/kafka-word-count)
  --batch-ms <ms>       batch interval (default 1000)
  --partitions <n>      state partitions (default 4)
  --max-per-batch <n>   most records a batch takes per topic partition (default 10000)
  --zk-root <path>      ZooKeeper root for the offsets (default /statestream/<app-name>)
  --zk-session-ms <ms>  ZooKeeper session timeout (default 10000): how soon a dead instance's partitions move
  --group-session-ms <ms> the Kafka consumer group's session timeout (default 30000)
  --instance-id <id>    run as one instance of the job on several processes (docs/scale-out.md):
                        instances share the topic and the state partitions; each needs its own --data-dir
  --cluster-root <path> ZooKeeper root of the cluster (default /statestream-cluster/<app-name>)
  --app-name <name>     names the job: ZooKeeper paths and, in a cluster, its topics <name>-0-repartition
                        and <name>-0-changelog (default word-count)
  --quiet               print only a line per batch, not every word
  --metrics-port <port> serve Prometheus metrics on <host>:<port>/metrics (--metrics-host, default 127.0.0.1)
  --ui-port <port>      serve the status page (--ui-host, default 127.0.0.1; off loopback it needs
                        a bearer token, read from STATESTREAM_UI_TOKEN)`;

const cli = new Cli('kafka-word-count', USAGE);
const values = cli.parse({
  brokers: { type: 'string' }, topic: { type: 'string' }, zookeeper: { type: 'string' },
  group: { type: 'string', default: 'word-count' }, 'data-dir': { type: 'string', default: './data/kafka-word-count' },
  'batch-ms': { type: 'string' }, partitions: { type: 'string' }, 'max-per-batch': { type: 'string' },
  'zk-root': { type: 'string' }, 'zk-session-ms': { type: 'string' }, 'group-session-ms': { type: 'string' },
  'instance-id': { type: 'string' }, 'app-name': { type: 'string', default: 'word-count' }, 'cluster-root': { type: 'string' }, quiet: { type: 'boolean', default: false },
  'metrics-port': { type: 'string' }, 'metrics-host': { type: 'string' }, 'ui-port': { type: 'string' }, 'ui-host': { type: 'string' },
}) as Record<string, string | undefined> & { quiet?: boolean };
for (const required of ['brokers', 'topic', 'zookeeper'] as const) if (!values[required]) cli.fail(`--${required} is required`);

let ssc: StreamingContext;
try {
  const port = (name: string) => (values[name] === undefined ? undefined : cli.int(values, name, 0, 0));
  const metricsPort = port('metrics-port');
  const uiPort = port('ui-port');
  // A host alone would serve nothing, without a word.
  if (metricsPort === undefined && values['metrics-host'] !== undefined) cli.fail('--metrics-host needs --metrics-port (nothing serves /metrics without a port)');
  if (uiPort === undefined && values['ui-host'] !== undefined) cli.fail('--ui-host needs --ui-port (nothing serves the status page without a port)');
  const sessionTimeoutMs = values['zk-session-ms'] === undefined ? undefined : cli.int(values, 'zk-session-ms', 10_000);
  ssc = new StreamingContext({
    batchIntervalMs: cli.int(values, 'batch-ms', 1000), dataDir: values['data-dir'], appName: values['app-name'],
    metrics: metricsPort === undefined ? undefined : { port: metricsPort, host: values['metrics-host'] },
    ui: uiPort === undefined ? undefined : { port: uiPort, host: values['ui-host'], token: process.env.STATESTREAM_UI_TOKEN },
    cluster: values['instance-id'] === undefined ? undefined : { zookeeper: { connect: values.zookeeper!, root: values['cluster-root'], sessionTimeoutMs }, instanceId: values['instance-id'] },
  });
  const words = ssc
    .kafkaStream({
      brokers: values.brokers!.split(','), topic: values.topic!, groupId: values.group!,
      zookeeper: { connect: values.zookeeper!, root: values['zk-root'], sessionTimeoutMs }, maxRecordsPerBatch: cli.int(values, 'max-per-batch', 10_000),
      groupSessionTimeoutMs: values['group-session-ms'] === undefined ? undefined : cli.int(values, 'group-session-ms', 30_000),
    })
    .flatMap((record) => (record.value ?? '').split(/\s+/))
    .filter(Boolean)
    .map((word): [string, number] => [word, 1]);
  const counts = words.mapWithState(
    StateSpec.function<string, number, number, [string, number]>(new URL('../word-count/count.js', import.meta.url)).numPartitions(cli.int(values, 'partitions', 4)),
  );
  if (!values.quiet) {
    counts.foreachBatch((records, time) => {
      for (const [word, count] of records) console.log(`Word ${word}, count ${count}`);
      console.log(`-------------------- batch ${new Date(time).toISOString()} --------------------`);
    });
  }
} catch (error) {
  if (error instanceof StatestreamError && error.code === 'ERR_CONFIG') {
    cli.fail(error.context.option === 'ui.token' ? `${error.message} (this example reads it from the environment: STATESTREAM_UI_TOKEN)` : error.message);
  }
  throw error;
}

ssc.on(BatchEvents.COMPLETED, (e) => {
  if (values.quiet && e.records > 0) console.log(`batch ${e.batchTime}: ${e.records} records in ${e.processingTimeMs.toFixed(1)} ms`);
});
// stop() rejects when it could not close everything (it still stopped): said, and the exit code is 1.
const stopAndExit = (code: number, options?: { timeoutMs: number }) =>
  void ssc.stop(options).then(
    () => process.exit(code),
    (error: Error) => {
      console.error(`kafka-word-count: the stop did not close everything: ${error.message}`);
      process.exit(1);
    },
  );
let failing = false;
const fail = (message: string) => {
  if (failing) return;
  failing = true;
  console.error(`kafka-word-count: ${message}`);
  stopAndExit(1);
};
ssc.on(BatchEvents.FAILED, ({ batchTime, error }) => fail(`batch ${batchTime} failed: ${error.message}`));
// Another copy may own the root now: stop at once rather than at the next batch.
ssc.on(BatchEvents.OWNERSHIP_LOST, ({ error }) => fail(error.message));
ssc.on(BatchEvents.OWNERSHIP_TAKEN, ({ root, tookOverFrom }) => {
  if (tookOverFrom) console.log(`kafka-word-count: took ${root} over from process ${tookOverFrom.owner.pid} on ${tookOverFrom.owner.host}: ${tookOverFrom.reason}`);
});
ssc.on(BatchEvents.PARTITION_TAKEN, ({ partition, epoch, records, reused, ms }) => {
  console.log(`kafka-word-count: instance ${values['instance-id']} took partition ${partition} (epoch ${epoch}): ${records} changelog records read${reused ? ' onto its own store' : ''} in ${ms} ms`);
});
ssc.on(BatchEvents.PARTITION_RELEASED, ({ partition, epoch, reason, error }) => {
  console.log(`kafka-word-count: instance ${values['instance-id']} ${reason === 'moved' ? 'gave up' : reason === 'lost' ? 'lost' : 'could not take'} partition ${partition} (epoch ${epoch})${error ? `: ${error.message}` : ''}`);
});
// Within a container's usual 30 s grace period: a batch still applying after 20 s (a mapping
// function stuck in a loop) is cut short and runs again at the next start (docs/operations.md).
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stopAndExit(0, { timeoutMs: 20_000 }));
cli.onClosedStdout(() => stopAndExit(0, { timeoutMs: 20_000 }));

try {
  await ssc.start();
} catch (error) {
  console.error(`kafka-word-count: cannot start: ${(error as Error).message}`);
  process.exit(1);
}
console.log(
  ssc.cluster
    ? `kafka-word-count: instance ${ssc.cluster.instanceId} of ${ssc.cluster.members().length || 1} reading ${values.topic} from ${values.brokers}, cluster in ZooKeeper at ${values.zookeeper}, state in ${ssc.dataDir}`
    : `kafka-word-count: reading ${values.topic} from ${values.brokers}, offsets in ZooKeeper at ${values.zookeeper}, state in ${ssc.dataDir}`,
);
for (const [what, url] of Object.entries(ssc.endpoints())) console.log(`kafka-word-count: ${what === 'ui' ? 'status page' : what} at ${url}`);
