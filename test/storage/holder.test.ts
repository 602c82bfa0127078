import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { DataDirLock } from '../../src/storage/data-lock.js';
import { isGone, parseIdentity, thisProcess } from '../../src/storage/holder.js';
import { tempDir } from '../helpers.js';

describe('the records of processes that hold a folder or a root', () => {
  it('a record is read only when it names a pid, a host and a time', () => {
    assert.deepEqual(parseIdentity('{"pid":12,"host":"h","since":"then","appName":"x"}'), { pid: 12, host: 'h', since: 'then', appName: 'x' });
    for (const text of ['{"host":"h","since":"s"}', '{"pid":"12","host":"h","since":"s"}', '{"pid":12,"host":3,"since":"s"}', '{"pid":12,"host":"h"}', 'null', '', '{"pid":1', '7']) {
      assert.equal(parseIdentity(text), undefined, text);
    }
  });

  it('a process that exited is gone, even by a record without a pid namespace or boot (written where /proc was not); a live one, or one of another host, is not', () => {
    const exited = spawnSync(process.execPath, ['-e', '0']).pid;
    assert.equal(isGone({ pid: exited, host: hostname(), since: 'earlier' }), true);
    assert.equal(isGone({ ...thisProcess(), pid: exited }), true);
    assert.equal(isGone(thisProcess()), false);
    assert.equal(isGone({ pid: exited, host: `not-${hostname()}`, since: 'earlier' }), false, 'its pid means nothing here');
  });

  it("a folder lock released twice stays released, and the folder can be locked again", async () => {
    const dir = tempDir();
    const lock = await DataDirLock.acquire(dir, { command: 'import' });
    lock.release();
    assert.doesNotThrow(() => lock.release());
    assert.equal(lock.held, false);
    const again = await DataDirLock.acquire(dir, { command: 'reshard' });
    assert.equal(again.held, true);
    again.release();
  });
});
