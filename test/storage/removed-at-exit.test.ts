import assert from 'node:assert/strict';
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
});
