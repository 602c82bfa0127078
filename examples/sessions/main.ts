import { availableParallelism } from 'node:os';
import { BatchEvents, ConfigError, StateSpec, StreamingContext, type MapWithStateStream, type QueueInputDStream } from '../../src/index.js';
import type { Click, Session, SessionSummary } from './session.js';
import { Cli } from '../cli.js';

const USAGE = `usage: node dist/examples/sessions/main.js [options]
  --data-dir <path>   where open sessions live between runs (default ./data/sessions)
  --batch-ms <ms>     batch interval (default 500)
  --idle-ms <ms>      a session ends after this long without a click (default 2000)
  --batches <n>       turns of the click script; the job stops once that many batches have run (default 12)
  -h, --help`;

const cli = new Cli('sessions', USAGE);
const values = cli.parse({
  'data-dir': { type: 'string', default: './data/sessions' },
  'batch-ms': { type: 'string' },
  'idle-ms': { type: 'string' },
  batches: { type: 'string' },
});
const batchMs = cli.int(values, 'batch-ms', 500);
const idleMs = cli.int(values, 'idle-ms', 2000);
const batches = cli.int(values, 'batches', 12);

// Who clicks in which batch (1-based). With the defaults a session ends 5 batches after its
// last click: ann and bob go quiet and time out, cai leaves and comes back (a new session),
// and dee clicks every second batch, so she is never idle long enough to time out.
const PAGES = ['/', '/search', '/item/17', '/item/42', '/cart', '/checkout', '/help'];
const USERS: Array<{ user: string; clicksIn: (batch: number) => boolean }> = [
  { user: 'ann', clicksIn: (b) => b <= 3 },
  { user: 'bob', clicksIn: (b) => b <= 6 },
  { user: 'cai', clicksIn: (b) => b === 1 || b >= 9 },
  { user: 'dee', clicksIn: (b) => b % 2 === 0 },
];
const clicksFor = (batch: number): Array<[string, Click]> =>
  USERS.flatMap(({ user, clicksIn }, i) => (clicksIn(batch) ? [[user, { page: PAGES[(i * 2 + batch) % PAGES.length], at: Date.now() }]] : []));

let ssc: StreamingContext;
let clicks: QueueInputDStream<[string, Click]>;
let sessions: MapWithStateStream<string, Session, SessionSummary>;
try {
  ssc = new StreamingContext({ batchIntervalMs: batchMs, dataDir: values['data-dir'] as string, threads: Math.min(2, availableParallelism()), appName: 'sessions' });
  clicks = ssc.queueStream<[string, Click]>();
  sessions = clicks.mapWithState(
    StateSpec.function<string, Click, Session, SessionSummary>(new URL('./session.js', import.meta.url)).numPartitions(2).timeout(idleMs),
  );
} catch (error) {
  if (error instanceof ConfigError) cli.fail(error.message);
  throw error;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const clock = (ms: number) => new Date(ms).toISOString().slice(11, 23);
sessions.foreachBatch((ended) => {
  for (const s of ended) {
    console.log(`Session ${s.user}: ${plural(s.pages, 'page')} in ${((s.end - s.start) / 1000).toFixed(1)} s (${clock(s.start)} → ${clock(s.end)}): ${s.path.join(' > ')}`);
  }
});

// Clicks for batch k+1 are made as batch k starts, stamped with the time they are made: while
// batches keep up with the interval, every batch gets its own turn of the script (batches that
// queue behind a slow one take the turns as they come, none or several at once).
let turn = 0;
const clickNext = () => {
  if (turn++ < batches) clicks.pushBatch(clicksFor(turn));
};
ssc.on(BatchEvents.STARTED, clickNext);

let stopping: Promise<void> | undefined;
const finish = (code: number) => {
  stopping ??= ssc.stop().then(
    () => {
      process.exitCode ??= code;
    },
    // It stopped, but could not close everything.
    (error: Error) => {
      console.error(`sessions: the stop did not close everything: ${error.message}`);
      process.exitCode = 1;
    },
  );
};
let completed = 0;
ssc.on(BatchEvents.COMPLETED, ({ batchTime, records, keysTimedOut }) => {
  const open = sessions.store().count();
  console.log(`----- batch ${new Date(batchTime).toISOString()}: ${plural(records, 'click')}, ${plural(keysTimedOut, 'session')} ended, ${open} open -----`);
  if (++completed < batches) return;
  const still = [...sessions.store().entries()].map(([user, s]) => `${user} (${plural(s.pages, 'page')})`);
  console.log(`sessions: stopping; still open and kept in the data dir: ${still.join(', ') || 'none'}`);
  finish(0);
});
ssc.on(BatchEvents.FAILED, ({ batchTime, error }) => {
  console.error(`sessions: batch ${new Date(batchTime).toISOString()} failed: ${error.message}`);
  finish(1);
});
process.once('SIGINT', () => finish(130));
cli.onClosedStdout(() => finish(0));

clickNext();
try {
  await ssc.start();
} catch (error) {
  console.error(`sessions: cannot start: ${(error as Error).message}`);
  process.exit(1);
}
// Sessions left open by an earlier run end at the first batch that comes more than idleMs
// after their last click (the first batch, for a run started that long after the last one),
// unless that user clicks again in it (a record always comes before the idle sweep, as in Spark).
console.log(`sessions: data dir ${ssc.dataDir} holds ${plural(sessions.store().count(), 'open session')} from earlier runs`);
console.log(`sessions: ${batches} batches of ${batchMs} ms, sessions end after ${idleMs} ms idle`);
