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
  --zk-root <path>      ZooKeeper root for the offsets (default /statestream/word-count)
  --quiet               print only a line per batch, not every word
  --metrics-port <port> serve Prometheus metrics on <host>:<port>/metrics (--metrics-host, default 127.0.0.1)
  --ui-port <port>      serve the status page (--ui-host, default 127.0.0.1; off loopback it needs
                        a bearer token, read from STATESTREAM_UI_TOKEN)`;

const cli = new Cli('kafka-word-count', USAGE);
const values = cli.parse({
  brokers: { type: 'string' }, topic: { type: 'string' }, zookeeper: { type: 'string' },
  group: { type: 'string', default: 'word-count' }, 'data-dir': { type: 'string', default: './data/kafka-word-count' },
  'batch-ms': { type: 'string' }, partitions: { type: 'string' }, 'max-per-batch': { type: 'string' },
  'zk-root': { type: 'string' }, quiet: { type: 'boolean', default: false },
  'metrics-port': { type: 'string' }, 'metrics-host': { type: 'string' }, 'ui-port': { type: 'string' }, 'ui-host': { type: 'string' },
}) as Record<string, string | undefined> & { quiet?: boolean };
for (const required of ['brokers', 'topic', 'zookeeper'] as const) if (!values[required]) cli.fail(`--${required} is required`);

let ssc: StreamingContext;
try {
  const port = (name: string) => (values[name] === undefined ? undefined : cli.int(values, name, 0, 0));
  const metricsPort = port('metrics-port');
  const uiPort = port('ui-port');
  ssc = new StreamingContext({
    batchIntervalMs: cli.int(values, 'batch-ms', 1000), dataDir: values['data-dir'], appName: 'word-count',
    metrics: metricsPort === undefined ? undefined : { port: metricsPort, host: values['metrics-host'] },
    ui: uiPort === undefined ? undefined : { port: uiPort, host: values['ui-host'], token: process.env.STATESTREAM_UI_TOKEN },
  });
  const words = ssc
    .kafkaStream({
      brokers: values.brokers!.split(','), topic: values.topic!, groupId: values.group!,
      zookeeper: { connect: values.zookeeper!, root: values['zk-root'] }, maxRecordsPerBatch: cli.int(values, 'max-per-batch', 10_000),
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
  if (error instanceof StatestreamError && error.code === 'ERR_CONFIG') cli.fail(error.message);
  throw error;
}

ssc.on(BatchEvents.COMPLETED, (e) => {
  if (values.quiet && e.records > 0) console.log(`batch ${e.batchTime}: ${e.records} records in ${e.processingTimeMs.toFixed(1)} ms`);
});
let failing = false;
const fail = (message: string) => {
  if (failing) return;
  failing = true;
  console.error(`kafka-word-count: ${message}`);
  void ssc.stop().then(() => process.exit(1));
};
ssc.on(BatchEvents.FAILED, ({ batchTime, error }) => fail(`batch ${batchTime} failed: ${error.message}`));
// Another copy may own the root now: stop at once rather than at the next batch.
ssc.on(BatchEvents.OWNERSHIP_LOST, ({ error }) => fail(error.message));
ssc.on(BatchEvents.OWNERSHIP_TAKEN, ({ root, tookOverFrom }) => {
  if (tookOverFrom) console.log(`kafka-word-count: took ${root} over from process ${tookOverFrom.owner.pid} on ${tookOverFrom.owner.host}: ${tookOverFrom.reason}`);
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void ssc.stop().then(() => process.exit(0)));

try {
  await ssc.start();
} catch (error) {
  console.error(`kafka-word-count: cannot start: ${(error as Error).message}`);
  process.exit(1);
}
console.log(`kafka-word-count: reading ${values.topic} from ${values.brokers}, offsets in ZooKeeper at ${values.zookeeper}, state in ${ssc.dataDir}`);
for (const [what, url] of Object.entries(ssc.endpoints())) console.log(`kafka-word-count: ${what === 'ui' ? 'status page' : what} at ${url}`);
