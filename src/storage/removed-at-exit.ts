import { rmSync } from 'node:fs';

/**
 * Scratch files and folders that must not outlive the process: a temporary export file, a
 * snapshot's scratch copy. They are removed in `finally` blocks as a rule; this also removes
 * them when the process exits without running those (`process.exit()`, as the CLI does on
 * Ctrl-C). Nothing runs at a SIGKILL, and nothing here is needed for consistency.
 */
const pending = new Set<string>();
let hooked = false;

/** Registers `path` for removal at exit; call the returned function once the path is removed or kept. */
export function removedAtExit(path: string): () => void {
  pending.add(path);
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const p of pending) rmSync(p, { recursive: true, force: true });
    });
  }
  return () => void pending.delete(path);
}
