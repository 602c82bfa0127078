import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { DataDirLock } from '../../src/storage/data-lock.js';
import { describeProcess, isGone, isThisProcess, parseIdentity, thisProcess } from '../../src/storage/holder.js';
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

  it('a process that runs as another user is not gone: signalling it is refused (EPERM), which says it runs', () => {
    // As root, the check runs in a child of an unprivileged user, and the process it asks about is
    // this one (root's); run as any other user, it asks about pid 1, which runs as root.
    // The module is handed over as text (it imports built-ins only): that user may not be able to read this checkout.
    const asRoot = process.getuid?.() === 0;
    const target = asRoot ? process.pid : 1;
    const source = readFileSync(new URL('../../src/storage/holder.js', import.meta.url), 'utf8');
    const script = [
      "const { isGone, thisProcess } = await import('data:text/javascript,' + encodeURIComponent(process.env.HOLDER_SOURCE));",
      "let answer = 'none';",
      `try { process.kill(${target}, 0); } catch (error) { answer = error.code; }`,
      `console.log(JSON.stringify({ answer, gone: isGone({ ...thisProcess(), pid: ${target} }) }));`,
    ].join('\n');
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, cwd: '/', env: { ...process.env, HOLDER_SOURCE: source }, ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    assert.equal(child.status, 0, child.stderr);
    const { answer, gone } = JSON.parse(child.stdout) as { answer: string; gone: boolean };
    assert.equal(answer, 'EPERM', `precondition: process ${target} runs as another user than the child's`);
    assert.equal(gone, false);
  });

  it('a record of another process on this host is that process, not this one: described by its pid and host', () => {
    const other = { ...thisProcess(), pid: spawnSync(process.execPath, ['-e', '0']).pid! };
    assert.equal(isThisProcess(other), false);
    assert.equal(isThisProcess(thisProcess()), true);
    assert.equal(describeProcess(other, 'job "x"'), `process ${other.pid} on host ${hostname()} (job "x", since ${other.since})`);
    assert.match(describeProcess(thisProcess(), 'job "x"'), new RegExp(`^this process \\(pid ${process.pid}, job "x", since `));
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
