import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkAndHashCopies, sha256FileSync } from '../../../src/storage/snapshots/checksum.js';
import { openPartitionStore } from '../../../src/storage/partition/store.js';
import { tempDir } from '../../helpers.js';

describe('a snapshot\'s copies are checked before they count', () => {
  it('the checksum thread runs the start-up file check on each copy beside its hash: a whole copy passes, a cut one is named', async () => {
    const dir = tempDir();
    const store = openPartitionStore(join(dir, 'live'));
    store.env.transactionSync(() => {
      for (let i = 0; i < 20_000; i++) store.state.putSync(`key-${i}`, Buffer.from([0x92, i & 0x7f, 0]));
    });
    const whole = join(dir, 'whole');
    const cut = join(dir, 'cut');
    mkdirSync(whole);
    mkdirSync(cut);
    await store.env.backup(whole, true);
    store.env.close();
    copyFileSync(join(whole, 'data.mdb'), join(cut, 'data.mdb'));
    truncateSync(join(cut, 'data.mdb'), Math.floor(statSync(join(cut, 'data.mdb')).size / 2));

    const [a, b] = await checkAndHashCopies([join(whole, 'data.mdb'), join(cut, 'data.mdb')]);
    assert.equal(a.problem, undefined);
    assert.equal(a.sha256, sha256FileSync(join(whole, 'data.mdb')));
    assert.match(b.problem ?? '', /data\.mdb is truncated/);
  });
});
