import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { StateSpec } from '../../src/index.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { runCli, type CliRun } from './run-cli.js';

type Ran = CliRun;
const run = (args: string[], closeAfter?: number) => runCli(args, { closeAfter });

const noStack = (ran: Ran) => assert.doesNotMatch(ran.stderr, /\n\s+at /, `no stack trace: ${ran.stderr}`);

/** A pattern that matches the text as written. */
function literally(text: string): RegExp {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
}

function failsWith(ran: Ran, code: number, message: RegExp): void {
  noStack(ran);
  assert.equal(ran.code, code, ran.stderr);
  assert.match(ran.stderr, message);
}

describe('the CLI checks its arguments as given', { timeout: 240_000 }, () => {
  let dataDir = '';
  const version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

  before(async () => {
    dataDir = tempDir();
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('count')).numPartitions(2), { dataDir, snapshotEvery: 1 });
    // Enough keys that an export does not fit one pipe buffer.
    await job.batchWithSnapshot(Array.from({ length: 20_000 }, (_, i) => [`key-${i}-${'x'.repeat(20)}`, 1] as [string, number]));
    await job.ssc.stop();
  });

  it('--zookeeper and --zk-digest: a bad port, a chroot per host, a digest without a colon are usage errors, not crashes', async () => {
    const zk = (...more: string[]) => run(['inspect', '--data-dir', dataDir, '--zk-root', '/statestream/app', ...more]);
    // Each of --zookeeper and --zk-root without the other names the one missing.
    failsWith(await zk(), 2, /^statestream: --zk-root needs --zookeeper host:port\n/);
    failsWith(await run(['inspect', '--data-dir', dataDir, '--zookeeper', '127.0.0.1:2181']), 2, /^statestream: --zookeeper needs --zk-root \/statestream\/<app> \(the job's ZooKeeper root\)\n/);
    failsWith(await zk('--zookeeper', '127.0.0.1:99999'), 2, /--zookeeper must be host:port\[,host:port…\]\[\/chroot\], each port from 1 to 65535: port 99999 of "127\.0\.0\.1:99999" is not from 1 to 65535/);
    failsWith(await zk('--zookeeper', '127.0.0.1:abc'), 2, /"127\.0\.0\.1:abc" is not host:port/);
    failsWith(await zk('--zookeeper', 'a:2181/x,b:2181/y'), 2, /holds another host: a chroot path goes once, after the last host/);
    failsWith(await zk('--zookeeper', '127.0.0.1:2181', '--zk-digest', 'nocolon'), 2, /--zk-digest must be user:password/);
    failsWith(await run(['inspect', '--data-dir', dataDir, '--zookeeper', '127.0.0.1:2181', '--zk-root', '/statestream/..']), 2, /--zk-root must be an absolute ZooKeeper path .*no '\.' or '\.\.' element/);
    // --brokers and --app-name too: a bad one showed only as "lag unknown" in a report that exited 0.
    for (const brokers of ['localhost', ',', '127.0.0.1:9092,']) {
      failsWith(await zk('--zookeeper', '127.0.0.1:2181', '--brokers', brokers), 2, new RegExp(`--brokers must be host:port\\[,host:port…\\], each port from 1 to 65535, got ${JSON.stringify(brokers)}`));
    }
    failsWith(await zk('--zookeeper', '127.0.0.1:2181', '--app-name', 'a/b'), 2, /--app-name must be the job's appName: .*got "a\/b"/);
  });

  it('-V and --version answer wherever they stand; help <command> is that command\'s help', async () => {
    for (const args of [['-V'], ['inspect', '--version'], ['snapshot', 'list', '-V']]) {
      const ran = await run(args);
      assert.equal(ran.code, 0, `${args.join(' ')}: ${ran.stderr}`);
      assert.equal(ran.stdout, `statestream ${version}\n`);
    }
    const help = await run(['help', 'snapshot', 'list']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: statestream snapshot list /);
    const top = await run(['help', 'inspect']);
    assert.match(top.stdout, /^Usage: statestream inspect /);
    failsWith(await run(['help', 'nope']), 2, /help: unknown command "nope"/);
    for (const args of [['help', '--help'], ['help', '-h']]) assert.match((await run(args)).stdout, /^Usage: statestream <command>/);
    assert.equal((await run(['snapshot', '-V'])).stdout, `statestream ${version}\n`);
    // An option's value is not an option: -V as --out's value is no request for the version.
    failsWith(await run(['export', '--data-dir', dataDir, '--out', '-V']), 2, /--out is missing its value, or its value starts with '-'/);
  });

  it('a --data-dir that is a file, or blank, is named as such by every command', async () => {
    const file = join(tempDir(), 'not-a-folder');
    writeFileSync(file, 'x');
    for (const args of [['snapshot', 'list'], ['inspect'], ['snapshot', 'create', '--stream', '0'], ['state', 'count'], ['export', '--out', join(tempDir(), 'x.msgpack')]]) {
      failsWith(await run([...args, '--data-dir', file]), 1, literally(`${file} is not a folder (give the job's data folder with --data-dir)`));
    }
    failsWith(await run(['inspect', '--data-dir', '']), 2, /--data-dir must be a folder path/);
    failsWith(await run(['snapshot', 'list', '--data-dir', join(file, 'below')]), 1, /not-a-folder\/below is not a folder/);
    // Commands that only read: a folder that is not there is a mistyped path, not an empty job.
    const nowhere = join(tempDir(), 'no-such-folder');
    for (const args of [['snapshot', 'list'], ['inspect']]) failsWith(await run([...args, '--data-dir', nowhere]), 1, /there is no data folder at .*no-such-folder \(give the job's folder with --data-dir\)/);
  });

  it('state get: an integer key past 2^53 is refused, not rounded to another key; text with spaces around it is a string key', async () => {
    for (const [key, number, rounded] of [
      ['12345678901234567890', '12345678901234567890', '12345678901234567000'],
      ['-9007199254740993', '-9007199254740993', '-9007199254740992'],
      ['["user",9007199254740993]', '9007199254740993', '9007199254740992'],
      ['9007199254740993.0', '9007199254740993.0', '9007199254740992'],
      ['9007199254740993E0', '9007199254740993E0', '9007199254740992'],
    ]) {
      const message = `state get: the key's number ${number} is an integer of 2^53 or more, where a number read from JSON may be rounded (here to ${rounded}, perhaps another key); give --string`;
      failsWith(await run(['state', 'get', '--data-dir', dataDir, '--', key]), 2, literally(message));
    }
    failsWith(await run(['state', 'get', '--data-dir', dataDir, '9007199254740991']), 1, /^statestream: key 9007199254740991 is not in the state/);
    failsWith(await run(['state', 'get', '--data-dir', dataDir, ' 42']), 1, /^statestream: key " 42" is not in the state/);
    failsWith(await run(['state', 'get', '--data-dir', dataDir, '1.2345678901234567890123']), 1, /^statestream: key 1\.2345678901234567 is not in the state/);
  });

  it('snapshot create on a mistyped folder creates nothing there', async () => {
    const typo = join(tempDir(), 'dta');
    failsWith(await run(['snapshot', 'create', '--data-dir', typo, '--stream', '0']), 1, /stream 0 has no state under .*dta \(no .*state-0\)/);
    assert.equal(existsSync(typo), false, 'no folder, no lock file');
    // Without --stream: no stream to snapshot, and still no folder made.
    failsWith(await run(['snapshot', 'create', '--data-dir', typo]), 1, /^statestream: there is no state to snapshot under .*dta\n$/);
    assert.equal(existsSync(typo), false, 'no folder, no lock file without --stream either');
  });

  it('reshard without --partitions is a usage error; on a mistyped folder it creates nothing there', async () => {
    failsWith(await run(['reshard', '--data-dir', dataDir]), 2, /reshard: missing --partitions <n>/);
    const typo = join(tempDir(), 'dta');
    failsWith(await run(['reshard', '--partitions', '3', '--data-dir', typo]), 1, /stream 0 has no state under .*dta \(no .*state-0\)/);
    assert.equal(existsSync(typo), false, 'no folder, no lock file');
  });

  it('an empty stream folder has no state, as every command says', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'state-0'));
    const inspect = await run(['inspect', '--data-dir', dir]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, /no partition stores: the folder is empty, the stream has no state yet/);
    // Asked for by name, a stream without state is what the exit codes call a failure.
    failsWith(await run(['inspect', '--data-dir', dir, '--stream', '0']), 1, /stream 0 has no state under /);
    const absent = await run(['inspect', '--data-dir', dir, '--stream', '1']);
    assert.equal(absent.code, 1);
    assert.match(absent.stdout, /no partition stores: there is no \S+state-1\n/, 'a stream with no folder is not said to have an empty one');
    for (const args of [['state', 'count'], ['export', '--out', join(tempDir(), 'x.msgpack')]]) {
      failsWith(await run([...args, '--data-dir', dir]), 1, /stream 0 has no state under .* holds no partition store/);
    }
    // A restore with nothing to restore from leaves the folder as it was: no lock file.
    const empty = tempDir();
    failsWith(await run(['snapshot', 'restore', '5', '--data-dir', empty]), 1, /snapshot list' shows the snapshots/);
    assert.deepEqual(readdirSync(empty), []);
  });

  it('snapshot list: --stream picks the snapshots holding it, --verify fails on a manifest it cannot read', async () => {
    const listed = await run(['snapshot', 'list', '--data-dir', dataDir, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    const all = JSON.parse(listed.stdout) as Array<{ batchTime: number }>;
    assert.equal(all.length, 1);
    const other = JSON.parse((await run(['snapshot', 'list', '--data-dir', dataDir, '--stream', '1', '--json'])).stdout) as unknown[];
    assert.deepEqual(other, [], 'no snapshot holds stream 1');
    const otherText = await run(['snapshot', 'list', '--data-dir', dataDir, '--stream', '1']);
    assert.match(otherText.stdout, /^No snapshot under .*snapshots holds stream 1\.\n$/);
    const bad = join(dataDir, 'snapshots', '999999999');
    mkdirSync(bad);
    writeFileSync(join(bad, 'manifest.json'), '{ not json');
    try {
      failsWith(await run(['snapshot', 'list', '--data-dir', dataDir, '--verify']), 1, /1 snapshot\(s\) fail verification: 999999999/);
      const plain = await run(['snapshot', 'list', '--data-dir', dataDir]);
      assert.equal(plain.code, 0);
      assert.match(plain.stderr, /snapshot 999999999 cannot be read/);
    } finally {
      rmSync(bad, { recursive: true });
    }
  });

  it('import of a folder, and export to a path that cannot be written, name what was given', async () => {
    failsWith(await run(['import', tempDir(), '--data-dir', tempDir()]), 1, /is not a file \(give a state export/);
    for (const blank of ['', '  ']) failsWith(await run(['export', '--data-dir', dataDir, '--out', blank]), 2, /--out must be a file path, or - for stdout/);
    const missing = join(tempDir(), 'no', 'such');
    failsWith(await run(['export', '--data-dir', dataDir, '--out', join(missing, 'x.msgpack')]), 1, /there is no folder .*no\/such to write it in/);
    const folder = tempDir();
    failsWith(await run(['export', '--data-dir', dataDir, '--out', folder]), 1, /is a folder; give the export file's path/);
    const file = join(tempDir(), 'a-file');
    writeFileSync(file, 'x');
    failsWith(await run(['export', '--data-dir', dataDir, '--out', join(file, 'x.msgpack')]), 1, /a-file is not a folder$/m);
    failsWith(await run(['export', '--data-dir', dataDir, '--out', join(file, 'below', 'x.msgpack')]), 1, /a-file\/below is not a folder$/m);
    assert.doesNotMatch((await run(['export', '--data-dir', dataDir, '--out', join(missing, 'x.msgpack')])).stderr, /\.tmp/);
  });

  it('export refuses an --out in the data folder: a store, the lock file, a new file there, or a link into it', async () => {
    const store = join(dataDir, 'state-0', 'partition-0000', 'data.mdb');
    const before = readFileSync(store);
    const link = join(tempDir(), 'into.msgpack');
    symlinkSync(join(dataDir, 'statestream.lock'), link);
    for (const out of [store, join(dataDir, 'statestream.lock'), join(dataDir, 'export.msgpack'), link]) {
      failsWith(await run(['export', '--data-dir', dataDir, '--out', out]), 1, /^statestream: --out .* would write .*, inside the data folder .*, whose files are the job's; write the export outside it$/m);
    }
    assert.deepEqual(readFileSync(store), before);
    assert.ok(!existsSync(join(dataDir, 'export.msgpack')));
    assert.equal((await run(['inspect', '--data-dir', dataDir])).code, 0, 'the stores are whole');
  });

  it('a bad argument is a usage error naming it, whatever --data-dir names', async () => {
    const file = join(tempDir(), 'not-a-folder');
    writeFileSync(file, 'x');
    failsWith(await run(['reshard', '--data-dir', file, '--partitions', 'abc']), 2, /--partitions must be an integer from 1 to \d+, got "abc"/);
    failsWith(await run(['snapshot', 'restore', 'abc', '--data-dir', file]), 2, /<batchTime> must be a batch time/);
    failsWith(await run(['export', '--data-dir', dataDir, '--out', join(tempDir(), 'no', 'such', 'x.msgpack'), '--snapshot', 'abc']), 2, /--snapshot must be a batch time/);
    failsWith(await run(['import', 'x.msgpack', '--data-dir', file, '--partitions', '0']), 2, /--partitions must be an integer from 1 to \d+, got "0"/);
    failsWith(await run(['inspect', '--data-dir', file, '--brokers', 'nohost']), 2, /--brokers need --zookeeper and --zk-root/);
    failsWith(await run(['state', 'get', '{"a":1}', '--data-dir', file]), 2, /state get: /);
    failsWith(await run(['snapshot', 'create', '--data-dir', file, '--zookeeper', '127.0.0.1:1']), 2, /--zookeeper needs --zk-root/);
    failsWith(await run(['export', '--data-dir', file, '--out', join(tempDir(), 'x.msgpack'), '--snapshot', '1e']), 2, /--snapshot must be a batch time/);
    failsWith(await run(['state', 'count', '--data-dir', file]), 1, /not-a-folder is not a folder \(give the job's data folder with --data-dir\)/);
  });

  it('a negative value is named in one line; a reader that closes the pipe ends the export quietly', async () => {
    const negative = await run(['import', 'x.msgpack', '--data-dir', tempDir(), '--partitions', '-3']);
    failsWith(negative, 2, /^statestream: --partitions is missing its value, or its value starts with '-' \(write --partitions=<value> for such a value\)\nRun 'statestream import --help' for usage\.\n$/);
    const closed = await run(['export', '--data-dir', dataDir, '--out', '-'], 1000);
    noStack(closed);
    assert.equal(closed.code, 141, closed.stderr);
    assert.equal(closed.stderr, '');
  });
});
