/**
 * One instance of the clustered word count the cluster benchmark runs, as its own process
 * (each instance has its own ZooKeeper session, data folder and CPU time, as on a machine
 * of its own). Configured by a JSON argument. Prints JSON lines:
 *   { started } · { taken: { partition, records, reused, ms } } · { applied: n } (pairs
 *   applied here so far, after each batch that applied some) · { cpuUs } on SIGUSR2 ·
 *   { failed: message }
 */
import { BatchEvents, StateSpec, StreamingContext } from '../../src/index.js';
import { WORD_COUNT_FN } from '../runtime.js';

interface InstanceConfig {
  id: string;
  appName: string;
  dataDir: string;
  brokers: string[];
  zookeeper: string;
  topic: string;
  partitions: number;
  batchMs: number;
  maxRecordsPerBatch: number;
}

const config = JSON.parse(process.argv[2]) as InstanceConfig;
const say = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);
// stop() rejects when it could not close everything (it still stopped).
const stopAndExit = (code: number) =>
  void ssc.stop().then(
    () => process.exit(code),
    (error: Error) => {
      say({ stopFailed: error.message });
      process.exit(1);
    },
  );
const ssc = new StreamingContext({
  batchIntervalMs: config.batchMs, dataDir: config.dataDir, threads: 1, appName: config.appName,
  cluster: { zookeeper: { connect: config.zookeeper, sessionTimeoutMs: 10_000 }, instanceId: config.id },
});
let applied = 0;
ssc
  .kafkaStream({ brokers: config.brokers, topic: config.topic, groupId: `${config.appName}-source`, zookeeper: { connect: config.zookeeper }, maxRecordsPerBatch: config.maxRecordsPerBatch, startingOffsets: 'earliest' })
  .flatMap((r) => (r.value ?? '').split(' '))
  .map((w): [string, number] => [w, 1])
  .mapWithState(StateSpec.function<string, number, number, [string, number]>(WORD_COUNT_FN).numPartitions(config.partitions))
  // The function emits one output per pair: the outputs of this instance's partitions count what it applied.
  .foreachBatch((outputs) => {
    if (outputs.length === 0) return;
    applied += outputs.length;
    say({ applied });
  });
ssc.on(BatchEvents.PARTITION_TAKEN, (e) => say({ taken: { partition: e.partition, records: e.records, reused: e.reused, ms: e.ms } }));
ssc.on(BatchEvents.FAILED, ({ error }) => {
  say({ failed: error.message });
  stopAndExit(1);
});
process.on('SIGUSR2', () => {
  const { user, system } = process.cpuUsage();
  say({ cpuUs: user + system });
});
process.once('SIGTERM', () => stopAndExit(0));
try {
  await ssc.start();
  say({ started: true });
} catch (error) {
  say({ failed: (error as Error).message });
  process.exit(1);
}
