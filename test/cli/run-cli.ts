import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI without blocking the event loop (a test's ZooKeeper must keep answering
 * meanwhile). With `closeAfter`, stdout's pipe is closed once that many characters came, as
 * `| head -c n` does.
 */
export function runCli(args: string[], options: { closeAfter?: number } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
      if (options.closeAfter !== undefined && stdout.length >= options.closeAfter) child.stdout.destroy();
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`statestream ${args.join(' ')} did not finish within 60 s`));
    }, 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
