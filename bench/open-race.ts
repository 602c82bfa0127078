/**
 * What another process's opens of a store cost the process writing it, measured by hand (not
 * part of `npm run bench`; docs/operations.md says why it matters):
 *   node dist/bench/open-race.js [--runs 3] [--seconds 10] [--raw false] [--readonly true]
 * Each run: a writer process commits a counter to a partition store (opened as the runtime
 * opens its stores) as fast as it can, and checks in each write transaction that it starts
 * from its own last commit; beside it an opener process opens and closes the same store in a
 * loop, through the open gate as statestream's tools do (src/storage/open-gate.ts), or with
 * `--raw true` with lmdb's own open (`--readonly` then picks its mode), as a process that
 * does not know the gate would. Reported per run: commits, commits the writer found lost (its transaction started
 * from an older snapshot, or a read right after the commit did not see it), errors, and opens. The same run without the opener is the control.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { open } from 'lmdb';
import { openPartitionStore } from '../src/storage/partition/store.js';
import { tempDataDir } from './runtime.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '10' },
    raw: { type: 'string', default: 'false' },
    readonly: { type: 'string', default: 'true' },
  },
});

interface WriterReport {
  commits: number;
  lost: number;
  errors: string[];
}

/** Commits counter i in transaction i; a transaction that does not see i - 1 started from a snapshot before the writer's last commit. */
function writer(path: string, seconds: number): WriterReport {
  const store = openPartitionStore(path);
  const report: WriterReport = { commits: 0, lost: 0, errors: [] };
  const deadline = Date.now() + seconds * 1000;
  let last = 0;
  while (Date.now() < deadline) {
    try {
      store.env.transactionSync(() => {
        const seen = (store.meta.get('counter') as number | undefined) ?? 0;
        if (seen !== last) report.lost += Math.max(1, last - seen);
        store.meta.putSync('counter', last + 1);
      });
      last++;
      report.commits++;
      // Read back outside the transaction, as the runtime's readers do.
      store.env.resetReadTxn();
      const read = store.meta.get('counter') as number | undefined;
      if (read !== last) report.lost++;
    } catch (error) {
      if (report.errors.length < 5) report.errors.push((error as Error).message);
      if (report.errors.length >= 5) break;
    }
  }
  store.env.close();
  return report;
}

function opener(path: string, seconds: number, raw: boolean, readOnly: boolean): number {
  const deadline = Date.now() + seconds * 1000;
  let opens = 0;
  while (Date.now() < deadline) {
    const env = raw ? open({ path, readOnly }) : openPartitionStore(path).env;
    env.get('counter');
    void env.close();
    opens++;
  }
  return opens;
}

function child(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code, signal) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${args[0]} exited with ${code ?? signal}: ${out}`))));
  });
}

const [role, path, seconds] = positionals;
if (role === 'writer') {
  console.log(JSON.stringify(writer(path, Number(seconds))));
} else if (role === 'opener') {
  console.log(JSON.stringify(opener(path, Number(seconds), positionals[3] === 'true', positionals[4] === 'true')));
} else {
  const runs = Number(values.runs);
  const secs = Number(values.seconds);
  for (const withOpener of [false, true]) {
    for (let run = 1; run <= runs; run++) {
      const dir = tempDataDir('open-race');
      try {
        const storePath = join(dir.path, 'store');
        openPartitionStore(storePath).env.close();
        const writing = child(['writer', storePath, String(secs)]);
        const opening = withOpener ? child(['opener', storePath, String(secs), values.raw!, values.readonly!]) : Promise.resolve('0');
        const [w, o] = await Promise.all([writing, opening]);
        const report = JSON.parse(w) as WriterReport;
        console.log(
          `${withOpener ? (values.raw === 'true' ? `with a raw opener (readOnly ${values.readonly})` : 'with an opener through the gate') : 'alone'}, run ${run}: ${report.commits} commits, ` +
            `${report.lost} lost, ${report.errors.length} errors${report.errors.length ? ` (${report.errors[0]})` : ''}, ${o} opens`,
        );
      } finally {
        dir.remove();
      }
    }
  }
}
