import assert from 'node:assert/strict';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fsyncTree, moveDurably } from '../../src/storage/durable.js';
import { tempDir } from '../helpers.js';

/**
 * A power loss cannot be staged here, so these record which paths are fsynced, in order:
 * the real openSync and fsyncSync run, with each descriptor's path noted on the way (ESM
 * importers see the wrapped functions once the built-in's exports are synced, as
 * fixtures/kill-at does).
 */
describe('durable moves and trees', () => {
  const synced: string[] = [];
  const opened = new Map<number, string>();
  const real = { openSync: fs.openSync, fsyncSync: fs.fsyncSync };
  before(() => {
    fs.openSync = ((path: fs.PathLike, ...rest: unknown[]) => {
      const fd = (real.openSync as (...args: unknown[]) => number)(path, ...rest);
      opened.set(fd, String(path));
      return fd;
    }) as typeof fs.openSync;
    fs.fsyncSync = (fd: number) => {
      synced.push(opened.get(fd) ?? `fd ${fd}`);
      real.fsyncSync(fd);
    };
    syncBuiltinESMExports();
  });
  after(() => {
    Object.assign(fs, real);
    syncBuiltinESMExports();
  });

  it('a move into folders it makes fsyncs the folder holding each new one, deepest first, then the folder it lands in', () => {
    const dir = tempDir();
    fs.writeFileSync(join(dir, 'file'), 'x');
    synced.length = 0;
    moveDurably(join(dir, 'file'), join(dir, 'x', 'y', 'z', 'file'));
    assert.deepEqual(synced, [join(dir, 'x', 'y'), join(dir, 'x'), dir, join(dir, 'x', 'y', 'z')]);
    assert.equal(fs.readFileSync(join(dir, 'x', 'y', 'z', 'file'), 'utf8'), 'x');
    // Into a folder that is there already: only that folder.
    fs.writeFileSync(join(dir, 'second'), 'y');
    synced.length = 0;
    moveDurably(join(dir, 'second'), join(dir, 'x', 'second'));
    assert.deepEqual(synced, [join(dir, 'x')]);
  });

  it('a tree fsyncs every file and folder in it, each folder after what it holds', () => {
    const dir = tempDir();
    fs.mkdirSync(join(dir, 'a', 'b'), { recursive: true });
    for (const file of [join(dir, 'top'), join(dir, 'a', 'mid'), join(dir, 'a', 'b', 'deep')]) fs.writeFileSync(file, 'x');
    synced.length = 0;
    fsyncTree(dir);
    assert.deepEqual(new Set(synced), new Set([dir, join(dir, 'top'), join(dir, 'a'), join(dir, 'a', 'mid'), join(dir, 'a', 'b'), join(dir, 'a', 'b', 'deep')]));
    assert.equal(synced.length, 6, 'each once');
    for (const folder of [join(dir, 'a', 'b'), join(dir, 'a'), dir]) {
      const inside = synced.filter((p) => p.startsWith(`${folder}/`));
      assert.ok(inside.every((p) => synced.indexOf(p) < synced.indexOf(folder)), `${folder} after what it holds: ${synced.join(', ')}`);
    }
  });
});
