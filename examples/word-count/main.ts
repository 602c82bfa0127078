import { availableParallelism } from 'node:os';
import { BatchEvents, ConfigError, StateSpec, StreamingContext, type MapWithStateStream, type QueueInputDStream } from '../../src/index.js';
import { createTypist } from './typist.js';
import { Cli } from '../cli.js';

const USAGE = `usage: node dist/examples/word-count/main.js [options]
  --data-dir <path>        where the counts live; re-running on it continues them (default ./data/word-count)
  --batch-ms <ms>          batch interval (default 1000)
  --batches <n>            batches of typed lines; the job stops once that many have run (default 10)
  --lines-per-batch <n>    lines the typist types per batch (default 5)
  --partitions <n>         state partitions; another count than the data dir's re-shards it (default 4)
  --seed <n>               typist seed: the same seed types the same words (default 1)
  --snapshot-every <n>     snapshot the counts every n batches into <data-dir>/snapshots; 0: never (default 5)
  --metrics-port <port>    serve Prometheus metrics on http://127.0.0.1:<port>/metrics (0: any free port)
  --ui-port <port>         serve the status page on http://127.0.0.1:<port>/ (0: any free port)
  -h, --help`;

const cli = new Cli('word-count', USAGE);
const values = cli.parse({
  'data-dir': { type: 'string', default: './data/word-count' },
  'batch-ms': { type: 'string' },
  batches: { type: 'string' },
  'lines-per-batch': { type: 'string' },
  partitions: { type: 'string' },
  seed: { type: 'string' },
  'snapshot-every': { type: 'string' },
  'metrics-port': { type: 'string' },
  'ui-port': { type: 'string' },
});
const batchMs = cli.int(values, 'batch-ms', 1000);
const batches = cli.int(values, 'batches', 10);
const linesPerBatch = cli.int(values, 'lines-per-batch', 5);
const partitions = cli.int(values, 'partitions', 4);
const seed = cli.int(values, 'seed', 1, 0);
const snapshotEvery = cli.int(values, 'snapshot-every', 5, 0);
const port = (name: string) => (values[name] === undefined ? undefined : cli.int(values, name, 0, 0));
const metricsPort = port('metrics-port');
const uiPort = port('ui-port');

let ssc: StreamingContext;
let lines: QueueInputDStream<string>;
let counts: MapWithStateStream<string, number, [string, number]>;
try {
  // One worker per partition at most: more threads than partitions would sit idle.
  ssc = new StreamingContext({
    batchIntervalMs: batchMs, dataDir: values['data-dir'] as string, threads: Math.min(partitions, availableParallelism()), appName: 'word-count',
    snapshotEvery: snapshotEvery > 0 ? snapshotEvery : undefined,
    metrics: metricsPort === undefined ? undefined : { port: metricsPort },
    ui: uiPort === undefined ? undefined : { port: uiPort },
  });
  // One typist turn per batch, whenever the batch runs (Spark's queueStream oneAtATime).
  lines = ssc.queueStream<string>({ oneAtATime: true });
  counts = lines
    .flatMap((line) => line.split(/\s+/))
    .filter(Boolean)
    .map((word): [string, number] => [word, 1])
    .mapWithState(StateSpec.function<string, number, number, [string, number]>(new URL('./count.js', import.meta.url)).numPartitions(partitions));
} catch (error) {
  // Flags the runtime rejects (an interval over a day, too many partitions) are usage errors too.
  if (error instanceof ConfigError) cli.fail(error.message);
  throw error;
}

counts.foreachBatch((records, time) => {
  for (const [word, count] of records) console.log(`Word ${word}, count ${count}`);
  console.log(`-------------------- batch ${new Date(time).toISOString()} --------------------`);
});

// Every turn is queued before the start, and each batch takes one: batch k gets turn k
// however far the timer runs ahead of slow batches (lines typed as a batch starts would land
// in whichever batch the timer made next).
const type = createTypist(seed);
for (let turn = 0; turn < batches; turn++) lines.pushBatch(type(linesPerBatch));
ssc.on(BatchEvents.SNAPSHOT_COMPLETED, (e) => console.log(`word-count: snapshot of batch ${new Date(e.batchTime).toISOString()} in ${e.path} (${e.keyCount} words)`));
ssc.on(BatchEvents.SNAPSHOT_FAILED, (e) => console.error(`word-count: snapshot failed: ${e.error.message}`));
ssc.on(BatchEvents.STATE_RESTORED, (e) =>
  console.log(`word-count: restored ${e.partitions.map((p) => `partition ${p.partition} (${p.problem})`).join(', ')} from the snapshot of ${new Date(e.snapshot).toISOString()}`),
);
ssc.on(BatchEvents.RECOVERY_INCOMPLETE, (e) => console.log(`word-count: ${e.message}`));

let stopping: Promise<void> | undefined;
const finish = (code: number) => {
  stopping ??= ssc.stop().then(
    () => {
      process.exitCode ??= code;
    },
    // It stopped, but could not close everything.
    (error: Error) => {
      console.error(`word-count: the stop did not close everything: ${error.message}`);
      process.exitCode = 1;
    },
  );
};
let completed = 0;
ssc.on(BatchEvents.COMPLETED, (e) => {
  console.log(`word-count: batch ${new Date(e.batchTime).toISOString()} done: ${e.records} lines in ${e.processingTimeMs.toFixed(1)} ms, scheduling delay ${e.schedulingDelayMs} ms`);
  if (++completed === batches) finish(0);
});
ssc.on(BatchEvents.FAILED, ({ batchTime, error }) => {
  console.error(`word-count: batch ${new Date(batchTime).toISOString()} failed: ${error.message}`);
  finish(1);
});
process.once('SIGINT', () => finish(130));
cli.onClosedStdout(() => finish(0));

try {
  await ssc.start();
} catch (error) {
  // A store that does not fit (a clock behind the stored batches, a damaged store with no snapshot) fails here.
  console.error(`word-count: cannot start: ${(error as Error).message}`);
  process.exit(1);
}
console.log(`word-count: data dir ${ssc.dataDir} holds ${counts.store().count()} word counts from earlier runs`);
console.log(`word-count: typing ${linesPerBatch} lines per ${batchMs} ms batch for ${batches} batches (seed ${seed})`);
const { metrics, ui } = ssc.endpoints();
if (metrics) console.log(`word-count: metrics at ${metrics}`);
if (ui) console.log(`word-count: status page at ${ui}`);
