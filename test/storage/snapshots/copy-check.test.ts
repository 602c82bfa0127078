import assert from 'node:assert/strict';
import { closeSync, copyFileSync, mkdirSync, openSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkAndHashCopies, sha256FileSync } from '../../../src/storage/snapshots/checksum.js';
import { PAGE_HEADER, readMeta } from '../../../src/storage/partition/lmdb-file.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

/** A store of 20 000 keys under `dir`, and a whole copy of it in `dir`/whole (a snapshot's copy); returns the copy's folder. */
async function wholeCopy(dir: string): Promise<string> {
  const store = openPartitionStore(join(dir, 'live'));
  store.env.transactionSync(() => {
    for (let i = 0; i < 20_000; i++) store.state.putSync(`key-${i}`, Buffer.from([0x92, i & 0x7f, 0]));
  });
  const whole = join(dir, 'whole');
  mkdirSync(whole);
  await store.env.backup(whole, true);
  store.env.close();
  return whole;
}

describe('a snapshot\'s copies are checked before they count', () => {
  it('the checksum thread runs the start-up file check on each copy beside its hash: a whole copy passes, a cut one is named', async () => {
    const dir = tempDir();
    const whole = await wholeCopy(dir);
    const cut = join(dir, 'cut');
    mkdirSync(cut);
    copyFileSync(join(whole, 'data.mdb'), join(cut, 'data.mdb'));
    truncateSync(join(cut, 'data.mdb'), Math.floor(statSync(join(cut, 'data.mdb')).size / 2));

    const [a, b] = await checkAndHashCopies([join(whole, 'data.mdb'), join(cut, 'data.mdb')]);
    assert.equal(a.problem, undefined);
    assert.equal(a.sha256, sha256FileSync(join(whole, 'data.mdb')));
    assert.match(b.problem ?? '', /data\.mdb is truncated/);
  });

  it('names a copy whose meta page is overwritten, and one whose list of databases is a page of zeros; a whole copy beside them still passes', async () => {
    const dir = tempDir();
    const whole = await wholeCopy(dir);
    /** A copy of the whole one with `bytes` written at `position`. */
    const damaged = (name: string, position: (file: string) => number, bytes: Buffer) => {
      mkdirSync(join(dir, name));
      const file = join(dir, name, 'data.mdb');
      copyFileSync(join(whole, 'data.mdb'), file);
      const at = position(file);
      const fd = openSync(file, 'r+');
      try {
        writeSync(fd, bytes, 0, bytes.length, at);
      } finally {
        closeSync(fd);
      }
      return file;
    };
    // The first meta page's magic number, right after the page header.
    const meta = damaged('meta', () => PAGE_HEADER, Buffer.alloc(4));
    // The root page of the main database, which lists the named ones.
    const root = damaged('root', (file) => {
      const fd = openSync(file, 'r');
      try {
        const read = readMeta(fd, statSync(file).size);
        assert.ok('meta' in read && read.meta.main.root !== undefined);
        return read.meta.main.root * read.meta.pageSize;
      } finally {
        closeSync(fd);
      }
    }, Buffer.alloc(4096));

    const [a, b, c] = await checkAndHashCopies([join(whole, 'data.mdb'), meta, root]);
    assert.equal(a.problem, undefined);
    assert.match(b.problem ?? '', /does not start with an LMDB meta page/);
    assert.match(c.problem ?? '', /data\.mdb is damaged: page \d+ of its list of databases, which its newest commit refers to, is not a B-tree page/);
    // The hash is of the bytes as they are, damaged or not.
    assert.equal(c.sha256, sha256FileSync(root));
  });
});
