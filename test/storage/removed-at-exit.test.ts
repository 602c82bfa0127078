import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { removedAtExit } from '../../src/storage/removed-at-exit.js';
import { tempDir } from '../helpers.js';

// That the paths go at exit is cli.test's "interrupted by Ctrl-C"; this is what registering costs.
describe('scratch paths removed at exit', () => {
  it('adds one exit listener however many paths are registered (a listener each would warn past ten, and keep every path)', () => {
    const before = process.listenerCount('exit');
    const done = Array.from({ length: 20 }, () => removedAtExit(join(tempDir(), 'scratch')));
    assert.ok(process.listenerCount('exit') - before <= 1, `${process.listenerCount('exit') - before} exit listeners added`);
    for (const forget of done) forget();
  });

  it('at process.exit() removes the paths still registered, and leaves one whose registration was given back (kept)', () => {
    const dir = tempDir();
    const [scratch, kept] = [join(dir, 'scratch'), join(dir, 'kept')];
    for (const path of [scratch, kept]) writeFileSync(path, 'x');
    const module = new URL('../../src/storage/removed-at-exit.js', import.meta.url).href;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', [
      `const { removedAtExit } = await import(${JSON.stringify(module)});`,
      `removedAtExit(${JSON.stringify(scratch)});`,
      `removedAtExit(${JSON.stringify(kept)})();`,
      'process.exit(0);',
    ].join('\n')], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(child.status, 0, child.stderr);
    assert.equal(existsSync(scratch), false, 'the registered path is removed');
    assert.equal(existsSync(kept), true, 'the path given back is kept');
  });
});
