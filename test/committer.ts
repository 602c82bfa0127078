import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { fixture } from './helpers.js';

/** A process that commits to the store at `path` when told, and the lines it has printed. */
export async function storeCommitter(path: string) {
  const child = spawn(process.execPath, [fileURLToPath(fixture('gate-committer')), path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    waiters.splice(0).forEach((wake) => wake());
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const printed = async (prefix: string): Promise<string> => {
    for (;;) {
      const line = lines.find((l) => l.startsWith(prefix));
      if (line !== undefined) return line;
      await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), exited.then(() => assert.fail(`the committer exited before it printed "${prefix}": ${lines.join(' | ')}`))]);
    }
  };
  await printed('ready');
  return {
    lines,
    printed,
    /** Waits for `line`, which it prints just before it would block, then checks that it printed nothing after it for 500 ms. */
    stalledAfter: async (line: string, message: string) => {
      await printed(line);
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.deepEqual(lines, ['ready', line], message);
    },
    send: (line: string) => child.stdin!.write(`${line}\n`),
    stop: async () => {
      child.stdin!.end();
      child.kill();
      await exited;
    },
  };
}
