/**
 * The mutation review, to run again: each entry breaks one check or boundary of the compiled
 * code by hand (a defect a review found that every test let through), runs the test that was
 * written for it, and puts the code back. A test that still passes with its defect in place
 * has stopped guarding it.
 *
 *   npm run mutants                       # install the services, build, then every entry
 *   node dist/test/mutants.js --quick     # without the entries whose test runs for minutes (slow)
 *   node dist/test/mutants.js --only kafka
 *   node dist/test/mutants.js --check     # only that each edit still finds its code, once
 *
 * Integration entries need the services `npm test` installs (scripts/install-services.sh).
 * Not part of `npm test`: each entry runs its test file once more.
 *
 * The mutants go into a copy of dist beside it (dist-mutants, removed at the end), never
 * into dist itself, so a test run or a bench beside this one, or one killed halfway,
 * never loads a broken file. Each test is first run on the copy as built, and must pass:
 * a mutant counts as caught only when that same test then fails (exits 1 with a failed
 * test), not when it cannot run.
 */
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

interface Edit {
  /** Under dist/src. */
  file: string;
  from: string;
  to: string;
}

interface Mutant {
  what: string;
  edits: Edit[];
  /** Under dist/test. */
  test: string;
  /** A --test-name-pattern for the test that guards it, when its file holds others. */
  name?: string;
  /** Its test runs for minutes (a Kafka client retrying, a cluster of processes). */
  slow?: boolean;
}

const one = (file: string, from: string, to: string): Edit[] => [{ file, from, to }];

const MUTANTS: Mutant[] = [
  { what: 'a wrong ?token= opens the status page', edits: one('ui/status-server.js', 'if (query !== undefined && same(query, options.token)) {', 'if (query !== undefined) {'), test: 'ui/status-server.test.js', name: 'off loopback' },
  { what: '--partitions 0 accepted', edits: one('cli/args.js', ' || n < min', ''), test: 'cli/cli.test.js', name: 'usage errors' },
  { what: 'an extra argument accepted', edits: one('cli/args.js', 'if (n > positionals.max)', 'if (false)'), test: 'cli/cli.test.js', name: 'usage errors' },
  { what: "a start at the stored batch's own time", edits: one('engine/local-recovery.js', 'recovery.lastBatch >= firstBatch', 'recovery.lastBatch > firstBatch'), test: 'engine/resume.test.js', name: 'refuses batch times' },
  { what: 'a timing-out call that returns undefined emits it', edits: one('actors/apply-shard.js', 'if (emit && out !== undefined && outputs.push(out, key, undefined))', 'if (emit && outputs.push(out, key, undefined))'), test: 'conformance/map-with-state.test.js', name: 'returns undefined' },
  { what: 'worker restarts counted across batches', edits: one('actors/partition.machine.js', 'deadLetters: [],\n            crashes: 0,\n', 'deadLetters: [],\n'), test: 'actors/supervision.test.js', name: 'restart limit holds per batch' },
  { what: 'record attempts counted across batches', edits: one('actors/partition.machine.js', '            attempts: {},\n', ''), test: 'actors/supervision.test.js', name: 'fewer times than maxAttempts' },
  { what: 'remove() allowed while timing out', edits: one('engine/state.js', 'if (this.timingOut)\n            throw new StateContractError(`State.remove()', 'if (false)\n            throw new StateContractError(`State.remove()'), test: 'engine/bad-input.test.js', name: 'while timing out' },
  { what: 'a malformed record with a key seen before accepted', edits: one('actors/shard-encoder.js', 'if (!Array.isArray(record) || record.length !== 2)', 'if (false)'), test: 'engine/bad-input.test.js', name: 'earlier record of the batch' },
  { what: 'snapshotEvery { ms } skips the exact interval', edits: one('engine/snapshot-scheduler.js', 'return batchTime - this.lastAt >= this.policy.everyMs;', 'return batchTime - this.lastAt > this.policy.everyMs;'), test: 'engine/snapshot-scheduler.test.js', name: 'snapshotEvery' },
  { what: "a dead-lettered record leaves its key's time", edits: one('actors/apply-shard.js', 'if (sweeping && slot.exists)\n', 'if (false)\n'), test: 'actors/supervision.test.js', name: 'dead-lettered record still moves' },
  { what: 'memory of capacity 0 claims to hold every key', edits: one('storage/partition/memory-state-map.js', 'if (!this.complete && this.capacity > 0)', 'if (!this.complete)'), test: 'actors/pinned-partitions.test.js', name: 'far larger' },
  { what: 'memory still complete after a turn dropped keys', edits: one('storage/partition/memory-state-map.js', 'if (leaving.size > 0)\n                this.complete = false;', 'if (false)\n                this.complete = false;'), test: 'actors/pinned-partitions.test.js', name: 'came to hold every key' },
  { what: 'a batch written in place keeps the change log', edits: one('storage/partition/logged-state-map.js', 'foldInto(this.store, folded.values(), true)', 'foldInto(this.store, folded.values(), false)'), test: 'storage/partition/logged-state-map.test.js' },
  { what: 'a time index outlives the timeout it was built for', edits: one('storage/partition/time-index.js', 'store.timeIndex.removeSync(key);', 'void key;'), test: 'engine/resume.test.js', name: 'builds the time index' },
  { what: 'zookeeper.sessionTimeoutMs unchecked', edits: one('storage/zookeeper/connect-options.js', "if (typeof sessionTimeoutMs !== 'number' || !Number.isInteger(sessionTimeoutMs) || sessionTimeoutMs < 1000 || sessionTimeoutMs > 120_000) {", 'if (false) {'), test: 'engine/bad-input.test.js', name: 'kafkaStream options' },
  { what: 'a snapshot manifest in a newer format read', edits: one('storage/snapshots/manifest.js', 'if (manifest.formatVersion > SNAPSHOT_FORMAT_VERSION) {', 'if (false) {'), test: 'storage/snapshots/restore.test.js', name: 'manifest is in a newer format' },
  { what: "a restore checks copies it does not restore", edits: one('storage/snapshots/manifest.js', 'if (only && !only.partitions.includes(part.partition))', 'if (false)'), test: 'storage/snapshots/restore.test.js', name: 'checks only the copies' },
  { what: "a stopped job's restart series left on a shared registry", edits: one('metrics/job-metrics.js', 'm.restarts.remove(where);', 'void where;'), test: 'metrics/metrics.test.js', name: 'on a shared registry' },
  { what: 'a start past a reported gap does not record its new position (the gap is reported again while no record follows)', edits: one('engine/sources/kafka.js', '...movedOn.filter((m) => !readInFlight(m))', ''), test: 'integration/kafka-retention-gap.test.js', name: 'stored position the broker no longer holds' },
  { what: 'reshard and import go ahead while another process has the stores open', edits: one('cli/stores.js', 'if (pids.size > 0)', 'if (false)'), test: 'cli/cli.test.js', name: 'without the folder lock' },
  { what: 'a restore beside a queue source reported as replayed', edits: one('engine/local-recovery.js', 'damagedDir: restored.damagedDir, replayed: context.inputs.every((input) => input.replayable === true)', 'damagedDir: restored.damagedDir, replayed: context.inputs.some((input) => input.replayable === true)'), test: 'integration/kafka-snapshot-restore.test.js', name: 'beside Kafka' },
  { what: 'no gap reported when a queue source reads beside Kafka', edits: one('engine/local-recovery.js', '    if (context.inputs.every((input) => input.replayable === true))\n        return;', '    if (context.inputs.some((input) => input.replayable === true))\n        return;'), test: 'integration/kafka-snapshot-restore.test.js', name: 'beside Kafka' },
  { what: "inspect's dead-letter column leaves the count out", edits: one('cli/inspect.js', "p.deadLetters === undefined ? '-' : String(p.deadLetters)", "'-'"), test: 'cli/cli.test.js', name: 'dead letters, and shows' },
  { what: 'inspect shows a never-initialised store as ok', edits: one('cli/inspect.js', "p.initialised === false ? 'empty (never initialised)' : 'ok'", "'ok'"), test: 'cli/cli.test.js', name: 'dead letters, and shows' },
  { what: 'inspect counts the dead letters of the whole stream in each partition', edits: one('storage/partition/store-check.js', 'deadLetters: store.deadLetters.getKeysCount()', 'deadLetters: 3'), test: 'cli/cli.test.js', name: 'dead letters, and shows' },
  { what: 'a restore names a damaged-store folder when it moved nothing there', edits: one('storage/snapshots/restore.js', 'return moved ? aside : undefined;', 'return aside;'), test: 'storage/snapshots/restore.test.js', name: 'checks only the copies' },
  { what: 'endpoints() still gives the addresses of closed servers after a stop', edits: one('engine/observability.js', '    this.urls = {};\n', ''), test: 'metrics/metrics.test.js', name: 'curl of /metrics during' },
  { what: "a stopped job's snapshot series left on a shared registry", edits: one('metrics/job-metrics.js', ' m.snapshotDuration, m.snapshotLast, m.snapshotBytes, m.snapshotFailures]', ' m.snapshotFailures]'), test: 'metrics/metrics.test.js', name: 'on a shared registry' },
  { what: 'a cluster state stream fed by another accepted', edits: one('cluster/runtime.js', 'if (s.parentStream.root() !== inputs[0]) {', 'if (false) {'), test: 'cluster/options.test.js', name: 'not shaped for a cluster', slow: true },
  { what: 'a cluster job with no state stream accepted', edits: one('cluster/runtime.js', 'if (streams.length === 0)', 'if (false)'), test: 'cluster/options.test.js', name: 'not shaped for a cluster', slow: true },
  { what: "the cluster's own topics' partition count unchecked", edits: one('cluster/topics.js', 'if (metadata.partitions.length !== n.partitions) {', 'if (false) {'), test: 'integration/cluster/stop-while-starting.test.js', name: 'another partition count' },
  { what: 'a cluster instance takes a single-process store', edits: one('cluster/state-stream.js', 'if (layout && !readClusterMeta(store) && new BatchLog(store).last() !== undefined) {', 'if (false) {'), test: 'integration/cluster/cluster-stores.test.js', name: 'single-process job wrote', slow: true },
  { what: 'a cluster instance takes a store of another partition count', edits: one('cluster/state-stream.js', 'if (layout && layout.numPartitions !== this.numPartitions) {', 'if (false) {'), test: 'integration/cluster/cluster-stores.test.js', name: 'single-process job wrote', slow: true },
  { what: "a later stop's longer timeout puts the deadline back", edits: one('engine/streaming-context.js', 'if (this.cut && this.cut.deadline <= deadline)\n', 'if (false)\n'), test: 'engine/stop-timeout.test.js', name: 'already under way' },
  { what: 'maxPairsPerBatch unbounded', edits: one('cluster/options.js', ' || maxPairsPerBatch > 10_000_000', ''), test: 'cluster/options.test.js', name: 'malformed cluster option' },
  { what: 'an async migrate accepted', edits: one('storage/partition/migrate.js', 'if (isThenable(migrated))', 'if (false)'), test: 'engine/state-version.test.js', name: 'returns a promise' },
  { what: 'an export header without stateVersion read', edits: one('storage/export/state-export.js', 'if (!isPositiveInteger(header.stateVersion))', 'if (false)'), test: 'storage/export/state-export.test.js', name: 'not exports' },
  { what: 'an endless lastUpdated in an export read', edits: one('storage/export/state-export.js', ' || !Number.isFinite(value[2])', ''), test: 'storage/export/state-export.test.js', name: 'not exports' },
  { what: 'a damaged snapshot exported', edits: one('cli/transfer.js', '    if (problems.length > 0)', '    if (false)'), test: 'cli/cli.test.js', name: '--verify checks' },
  { what: 'inspect leaves out a missing partition folder', edits: one('cli/stores.js', "reports.push({ partition: p, path: partitionPath(dataDir, stream, p), bytes: undefined, problem: 'the partition folder is missing' });", 'void 0;'), test: 'cli/cli.test.js', name: 'folder is gone' },
  { what: "an import's last batch not raised to the newest lastUpdated", edits: one('cli/transfer.js', 'if (lastUpdated > batchTime)', 'if (false)'), test: 'cli/cli.test.js', name: 'state version, and a header' },
  { what: 'an import counts a repeated key once per entry', edits: one('cli/transfer.js', 'keyCount = writer.keyCounts.reduce((sum, n) => sum + n, 0);', 'keyCount = count;'), test: 'cli/import-repeated-key.test.js', name: 'keeps the last entry' },
  { what: "an import takes any export header's numPartitions", edits: one('cli/transfer.js', 'fromHeader >= 1 && fromHeader <= MAX_PARTITIONS))', 'fromHeader >= 1))'), test: 'cli/import-repeated-key.test.js', name: 'no partition count' },
  { what: "an import records state version 1", edits: one('cli/transfer.js', 'timeIndexed: true, stateVersion: header.stateVersion });', 'timeIndexed: true, stateVersion: 1 });'), test: 'cli/cli.test.js', name: 'state version, and a header' },
  { what: 'a Map inside an array stored as an object', edits: one('storage/codec.js', "            if (typeof item === 'object' && item !== null && holdsMap(item))\n                return true;\n        }\n        return false;", "            if (typeof item === 'object' && item !== null && item instanceof Map)\n                return true;\n        }\n        return false;"), test: 'storage/codec.test.js', name: 'inside an array' },
  { what: 'a Map inside an object in a Set stored as an object', edits: one('storage/codec.js', 'if (holdsMap(item))', 'if (item instanceof Map)'), test: 'storage/codec.test.js', name: 'inside an array' },
  { what: 'filter keeps only records its function returns true for', edits: one('engine/dstream.js', 'next = (v) => void (call(v) && downstream(v));', 'next = (v) => void (call(v) === true && downstream(v));'), test: 'engine/stream-operations.test.js', name: 'truthy' },
  { what: 'filter keeps every record but those it returns false for', edits: one('engine/dstream.js', 'next = (v) => void (call(v) && downstream(v));', 'next = (v) => void (call(v) !== false && downstream(v));'), test: 'engine/stream-operations.test.js', name: 'truthy' },
  { what: 'values up to 255 sent as Int8', edits: one('actors/shard-format.js', 'max <= 0x7f ? 1', 'max <= 0xff ? 1'), test: 'actors/shard-format.test.js' },
  { what: 'values up to 65535 sent as Int16', edits: one('actors/shard-format.js', 'max <= 0x7fff ? 2', 'max <= 0xffff ? 2'), test: 'actors/shard-format.test.js' },
  { what: "a tuple key past LMDB's limit accepted", edits: one('storage/keys.js', 'return bytes > MAX_KEY_BYTES ?', 'return false ?'), test: 'engine/bad-input.test.js', name: 'tuple key longer' },
  { what: 'store().get(-0) not normalized', edits: one('storage/partition/state-view.js', '        key = normalizeKey(key);', '        void 0;'), test: 'conformance/map-with-state.test.js', name: 'accepts numbers' },
  { what: 'output ref 65536 squeezed into 16 bits', edits: one('storage/partition/batch-outputs.js', 'this.maxRef <= 0xffff', 'this.maxRef <= 0x10000'), test: 'storage/partition/batch-outputs.test.js' },
  { what: 'a stateful job with its data folder gone goes on from ZooKeeper', edits: one('engine/sources/kafka.js', 'if (context.hasStateStreams && !context.storesHoldState && lastEnded !== undefined) {', 'if (false) {'), test: 'integration/kafka-retention-gap.test.js', name: 'data folder is gone' },
  { what: 'dead letters of two partitions at one offset overwrite each other', edits: one('storage/sources/dead-letters.js', 'this.db.putSync([l.topic, l.partition, l.offset], l)', 'this.db.putSync([l.topic, 0, l.offset], l)'), test: 'integration/kafka-source.test.js', name: 'dead-letter' },
  { what: 'the json decoder parses a tombstone', edits: one('engine/sources/kafka.js', '        if (value === null)\n            return null;\n', ''), test: 'integration/kafka-source.test.js', name: 'dead-letter' },
  { what: 'an owner on another host with the same folder path taken over', edits: one('storage/zookeeper/ownership.js', 'if (this.holdsDataDir && owner.dataDir === this.me.dataDir && sameProcessSpace(owner)) {', 'if (this.holdsDataDir && owner.dataDir === this.me.dataDir) {'), test: 'storage/zookeeper/ownership.test.js', name: 'certainly no longer runs' },
  { what: 'another pid namespace taken for this one', edits: one('storage/holder.js', 'agree(who.pidNamespace, namespace) && ', ''), test: 'storage/zookeeper/ownership.test.js', name: 'certainly no longer runs' },
  { what: "a stored position past the partition's end accepted", edits: one('engine/sources/kafka.js', 'const pastEnd = [...stored].filter(([id, position]) => position > watermarks.get(id).high);', 'const pastEnd = [];'), test: 'integration/kafka-retention-gap.test.js', name: "past the partition's end" },
  { what: 'snapshot create moves positions past a batch the stores never committed', edits: one('cli/snapshot.js', 'inFlight !== undefined && inFlight.batchTime <= batchTime ? inFlight', 'inFlight !== undefined ? inFlight'), test: 'cli/cli.test.js', name: 'last batch with records' },
  { what: 'assignment stops evening out at a gap of 2', edits: one('cluster/assignment.js', 'owned.get(least).length <= 1)', 'owned.get(least).length <= 2)'), test: 'cluster/assignment.test.js' },
  { what: "assignment's share rounded down", edits: one('cluster/assignment.js', 'Math.ceil(total / live.length)', 'Math.floor(total / live.length)'), test: 'cluster/assignment.test.js' },
  { what: 'a takeover drops the last batch it accepts', edits: one('cluster/changelog.js', 'entry.batchTime <= accepts.batchTime', 'entry.batchTime < accepts.batchTime'), test: 'cluster/changelog.test.js' },
  { what: 'a takeover written without the batch it accepts', edits: one('cluster/changelog.js', 'accepts: accepts ? endValue(accepts) : null', 'accepts: null'), test: 'cluster/changelog.test.js' },
  { what: 'a late older marker lowers the fence', edits: one('cluster/changelog.js', 'this.floor = Math.max(this.floor, record.epoch);', 'this.floor = record.epoch;'), test: 'cluster/changelog.test.js' },
  { what: 'a takeover leaves the last whole batch unset', edits: one('cluster/changelog.js', 'this.last = accepts ?? undefined;', 'void 0;'), test: 'cluster/changelog.test.js' },
  { what: 'produce requests cut by record count only', edits: one('cluster/send-chunks.js', 'bytes + size > maxBytes', 'false'), test: 'cluster/send-chunks.test.js' },
  { what: 'a restore drops the dead letters of whole batches', edits: one('cluster/changelog.js', 'this.keepLetter(entry.letter);', 'void 0;'), test: 'cluster/changelog.test.js' },
  { what: 'a batch sends its dead letters nowhere but its own store', edits: one('cluster/changelog-io.js', 'messages.push(letterMessage(end.epoch, letter));', 'void letter;'), test: 'integration/cluster/cluster-stores.test.js', name: 'dead letter moves', slow: true },
  { what: 'the pair at the high-water mark admitted again', edits: one('cluster/high-water-marks.js', 'origin.n <= mark[1]', 'origin.n < mark[1]'), test: 'cluster/high-water-marks.test.js' },
  { what: 'ManualClock.setTime advances by the target time', edits: one('engine/clock.js', 'await this.advance(Math.max(0, timeMs - this.time));', 'await this.advance(Math.max(0, timeMs));'), test: 'engine/manual-clock.test.js' },
  { what: 'an event renamed', edits: one('engine/batch-events.js', "STATE_RESTORED: 'state.restored',", "STATE_RESTORED: 'state.restore',"), test: 'engine/batch-events.test.js', name: 'names the docs give' },
  { what: 'maxAttempts 1 by default', edits: one('engine/state-spec.js', 'given(options.maxAttempts, 3)', 'given(options.maxAttempts, 1)'), test: 'actors/supervision.test.js', name: 'maxAttempts is 3' },
  { what: "a snapshot event's bytes of one partition", edits: one('storage/snapshots/manifest.js', 'bytes: parts.reduce((n, p) => n + p.bytes, 0),', 'bytes: parts[0].bytes,'), test: 'engine/snapshot-scheduler.test.js', name: 'copy goes on' },
  { what: 'a stop timeout past what a timer holds accepted', edits: one('engine/stop-options.js', ' || timeoutMs > MAX_TIMER_MS) {', ') {'), test: 'engine/option-values.test.js', name: 'beyond what a Node timer holds' },
  { what: 'a chroot on each ZooKeeper host read as one path', edits: one('storage/zookeeper/connect-options.js', "if (slash >= 0 && connect.slice(slash).includes(','))", 'if (false)'), test: 'engine/option-values.test.js', name: 'one chroot' },
  { what: 'a stream shaped by setters called after mapWithState', edits: one('engine/streaming-context.js', 'spec = specAsDefined(spec);', ';'), test: 'engine/option-values.test.js', name: 'taken as it is' },
  { what: 'a file as --data-dir read as an empty folder', edits: one('cli/args.js', "if (kind === 'file' || kind === 'below-a-file')", 'if (false)'), test: 'cli/arguments.test.js', name: 'is a file, or blank' },
  { what: "readSnapshotState ignores its stream option", edits: one('storage/snapshots/source.js', "const streamIndex = streamOption('readSnapshotState', options);", 'const streamIndex = 0;'), test: 'storage/snapshots/snapshots.test.js', name: 'stream it is asked for' },
  { what: 'a snapshot manifest records state version 1', edits: one('storage/snapshots/writer.js', 'stateVersion: layout.stateVersion ?? 1', 'stateVersion: 1'), test: 'storage/snapshots/snapshots.test.js', name: 'stream it is asked for' },
  {
    what: 'initial state loaded again into a partition that committed (both guards out; either alone is covered by the other)',
    edits: [
      { file: 'engine/map-with-state-stream.js', from: '                    pendingInitial[p] = [];', to: '                    void p;' },
      { file: 'actors/apply-shard.js', from: 'this.records === 0 && !this.last && initialState', to: 'this.records === 0 && initialState' },
    ],
    test: 'engine/resume.test.js',
    name: 'initial state goes only',
  },
  {
    what: '--zk-timeout not waited for (the default 10 s instead)',
    edits: [
      { file: 'cli/zk.js', from: 'sessionTimeoutMs: Math.min(5_000, timeoutMs),\n        retry: { initialDelayMs: 100, maxDelayMs: 1_000, maxElapsedMs: timeoutMs }', to: 'sessionTimeoutMs: 5_000,\n        retry: { initialDelayMs: 100, maxDelayMs: 1_000, maxElapsedMs: 10_000 }' },
      { file: 'cli/zk.js', from: '        session.interrupt();\n    }, timeoutMs);', to: '        session.interrupt();\n    }, 10_000);' },
    ],
    test: 'cli/troubles.test.js',
    name: 'ZooKeeper away',
  },
  { what: "--zk-timeout only the retries' budget (a retry begun inside it runs past it)", edits: one('cli/zk.js', '        session.interrupt();\n    }, timeoutMs);', '        session.interrupt();\n    }, 2 ** 31 - 1);'), test: 'cli/troubles.test.js', name: 'ZooKeeper away' },
  { what: '--zk-timeout accepted without --zookeeper', edits: one('cli/args.js', "if (timeoutMs !== undefined)\n", "if (false)\n"), test: 'cli/cli.test.js', name: 'usage errors' },
  { what: 'a store opened without waiting for the commits under way', edits: one('storage/open-gate.js', "        holdExclusively(fd, path, 'open');", '        void path;'), test: 'storage/open-gate.test.js', name: 'an open waits' },
  { what: 'a store closed while another process opens it', edits: one('storage/open-gate.js', "        holdExclusively(fd, path, 'close');", '        void path;'), test: 'storage/partition/store-open-race.test.js', name: 'opens every time' },
  { what: 'a commit begun while another process opens the store', edits: one('storage/open-gate.js', '        waitForLockSync(fd, ...GATE, { shared: true });', '        void fd;'), test: 'storage/open-gate.test.js', name: 'a commit waits' },
  { what: 'an open that waits without taking its turn', edits: one('storage/open-gate.js', '        waitAlone(fd, TURN, deadline, path,', '        void (fd, TURN, deadline, path,'), test: 'storage/open-gate.test.js', name: 'commit back to back' },
  { what: 'a commit that does not wait behind an open taking its turn', edits: one('storage/open-gate.js', '            waitForLockSync(fd, ...TURN, { shared: true });', '            void TURN;'), test: 'storage/open-gate.test.js', name: 'commit back to back' },
  { what: 'a nested transaction that takes and lets go of the gate its outer one holds', edits: one('storage/open-gate.js', '        if (depth > 0 || closed)', '        if (closed)'), test: 'storage/open-gate.test.js', name: 'a commit inside a commit' },
  { what: 'transactions after the first outside the gate', edits: one('storage/open-gate.js', '            depth--;', '            void depth;'), test: 'storage/open-gate.test.js', name: 'a commit inside a commit' },
  { what: 'an aborted transaction\'s writes kept for the next commit', edits: one('storage/partition/memory-state-map.js', "        this.durable.aborted?.();\n        this.staged = [];", "        this.durable.aborted?.();"), test: 'storage/partition/memory-state-map.test.js', name: 'only when their transaction commits' },
  { what: 'inspect that never reports partitions behind', edits: one('cli/inspect.js', 'behind: healthy.some((p) => p.cluster) ? [] :', 'behind: true ? [] :'), test: 'cli/cli.test.js', name: 'inspect does not call' },
  { what: 'a stop that failed to close a store resolves as a clean stop', edits: one('engine/streaming-context.js', '            if (stopped.context.shutdownError)\n                throw stopped.context.shutdownError;', ''), test: 'engine/stop-failure.test.js', name: 'closes what it can' },
  { what: 'a store used and closed at once reports its failed close over the failure of its use', edits: one('storage/partition/store.js', '        closePartitionStores([store], { afterFailure: true });', '        closePartitionStores([store]);'), test: 'storage/partition/store-set.test.js', name: 'used and closed at once' },
  { what: 'stores opened before one that fails left open', edits: one('storage/partition/store.js', '        closePartitionStores(stores, { afterFailure: true });', '        void stores;'), test: 'storage/partition/store-set.test.js', name: 'closes the ones opened before it' },
  { what: 'a failed close leaves the stores after it open', edits: one('first-failure.js', '            step();\n        }\n        catch (error) {\n            this.keep(error);', '            step();\n        }\n        catch (error) {\n            throw error;'), test: 'storage/partition/store-set.test.js', name: 'leaves the other stores closed' },
  { what: 'memory reported empty after every batch', edits: one('actors/apply-shard.js', 'storeReads: memory.misses - this.misses, memoryEntries: memory.size,', 'storeReads: memory.misses - this.misses, memoryEntries: 0,'), test: 'actors/pinned-partitions.test.js', name: 'same thread batch after batch' },
  { what: "a named export's module runs its default", edits: one('actors/partition.worker.js', 'not a function`, { module: ref.url, export: ref.exportName });\n    }\n    return fn;', 'not a function`, { module: ref.url, export: ref.exportName });\n    }\n    return module.default ?? fn;'), test: 'conformance/map-with-state.test.js', name: 'named exports' },
  { what: 'a poisoned record blamed on another partition', edits: one('actors/partition.machine.js', 'on ${what} in partition ${context.partition} of mapWithState stream ${context.stream}, batch ${context.batch.batchTime}: ${cause.message}`, { stream: context.stream, partition: context.partition,', 'on ${what} in partition ${context.partition + 1} of mapWithState stream ${context.stream}, batch ${context.batch.batchTime}: ${cause.message}`, { stream: context.stream, partition: context.partition + 1,'), test: 'actors/supervision.test.js', name: "policy 'stop'" },
  { what: "a snapshot's gate wait never measured", edits: one('engine/snapshot-scheduler.js', '        gateMs = performance.now() - began;', '        void began;'), test: 'engine/snapshot-scheduler.test.js', name: 'gateMs is the short wait' },
  { what: 'one worker thread by default', edits: one('engine/streaming-context.js', "MAX_THREADS, defaultThreads(availableParallelism()));", "MAX_THREADS, 1);"), test: 'engine/option-values.test.js', name: 'default thread count' },
  { what: 'the metrics served on every path', edits: one('metrics/metrics-server.js', "if (url.pathname !== '/metrics') {", 'if (false) {'), test: 'metrics/metrics.test.js', name: 'curl of /metrics' },
  { what: 'a second stop() returns before the first gave the folder back', edits: one('engine/streaming-context.js', 'if (this.stopping !== undefined) {', 'if (false) {'), test: 'engine/data-dir-lock.test.js', name: 'takes its last steps' },
  { what: 'a listener that throws outside a batch reaches the supervisor and the warm-up', edits: one('engine/streaming-context.js', 'if (THROWING_FAILS.has(event)) {', 'if (true) {'), test: 'engine/batch-events.test.js', name: 'partition.restarted or memory.warmed' },
  { what: 'a --zk-root that names no node read as a job that recorded nothing', edits: one('cli/zk.js', '        if (!found)\n', '        if (false)\n'), test: 'cli/cli.test.js', name: 'names no node' },
  { what: 'snapshotEvery { ms } counted from each start', edits: one('engine/snapshot-scheduler.js', '            scheduler.lastAt = lastSnapshot;', '            void lastSnapshot;'), test: 'engine/snapshot-scheduler.test.js', name: 'across a restart' },
  { what: 'snapshotEvery batches counted from each start', edits: one('engine/snapshot-scheduler.js', '                scheduler.batchesSince = Math.max(', '                void Math.max('), test: 'engine/snapshot-scheduler.test.js', name: 'across a restart' },
  { what: 'stores without a snapshot wait a whole interval after a restart', edits: one('engine/snapshot-scheduler.js', '            scheduler.batchesSince = Number.POSITIVE_INFINITY;', ''), test: 'engine/snapshot-scheduler.test.js', name: 'without any snapshot' },
  {
    what: "a cluster instance's partition figures labelled by their place among its partitions",
    edits: one('metrics/job-metrics.js', 'partitions.forEach((p) => {\n                const where = this.partition(stream, p.partition);', 'partitions.forEach((p, i) => {\n                const where = this.partition(stream, i);'),
    test: 'integration/cluster/cluster.test.js',
    name: 'clock runs behind',
    slow: true,
  },
  { what: 'ZooKeeper shown away in /metrics while the job starts', edits: one('metrics/job-metrics.js', '                if (!zk.opened)\n                    continue;\n', ''), test: 'integration/kafka-metrics.test.js', name: 'while the job starts' },
  { what: 'ZooKeeper named a problem on the page while the job starts', edits: one('ui/status-model.js', 'k.zookeeper.connected || !k.zookeeper.opened', 'k.zookeeper.connected'), test: 'integration/kafka-metrics.test.js', name: 'while the job starts' },
  { what: "a re-run's scheduling delay observed", edits: one('metrics/job-metrics.js', '            if (!replay) {\n                m.scheduling.observe(labels, e.schedulingDelayMs / 1000);', '            m.scheduling.observe(labels, e.schedulingDelayMs / 1000);\n            if (!replay) {'), test: 'integration/kafka-replay-timeouts.test.js', name: 're-runs the batches', slow: true },
  { what: "a re-run's batch time shown as the last batch", edits: one('metrics/job-metrics.js', '                m.lastBatch.set(labels, e.batchTime / 1000);\n            }', '            }\n            m.lastBatch.set(labels, e.batchTime / 1000);'), test: 'integration/kafka-replay-timeouts.test.js', name: 're-runs the batches', slow: true },
  { what: 'a cluster member that registered again keeps its epochs', edits: one('cluster/assignment.js', 'if (p.owner !== prior?.owner || registeredAgain(p.owner))', 'if (p.owner !== prior?.owner)'), test: 'cluster/assignment.test.js', name: 'registered again unseen' },
  { what: "a restarted cluster instance takes its predecessor's epochs from the assignment before the leader's next", edits: one('cluster/coordinator.js', 'const forMe = this.registered && (assignment?.incarnations === undefined || assignment.incarnations[this.me.id] === this.incarnation);', 'const forMe = true;'), test: 'integration/cluster/coordinator.test.js', name: 'restarted under the same id' },
  { what: "a start refused because its instance id is taken removes the live holder's membership", edits: one('cluster/coordinator.js', '        if (this.memberSession)\n            await this.zk.removeIfMadeBy(this.path(\'members\', this.me.id), this.memberSession)', "        await this.zk.remove(this.path('members', this.me.id))"), test: 'integration/cluster/coordinator.test.js', name: 'is refused, not taken over' },
  { what: 'another boot (a cloned machine) taken for this one', edits: one('storage/holder.js', ' && agree(who.boot, boot)', ''), test: 'storage/zookeeper/ownership.test.js', name: 'certainly no longer runs' },
  { what: 'a batch record that holds something else parsed blindly', edits: one('storage/zookeeper/offsets.js', "if (value === null || typeof value !== 'object' || !Number.isFinite(value.batchTime) || !Array.isArray(value.ranges) || !value.ranges.every(isRange)) {", 'if (value === undefined) {'), test: 'storage/zookeeper/offsets.test.js', name: 'holds something else' },
  { what: "a cluster source partition's first 'latest' left unrecorded", edits: one('cluster/source-intake.js', 'await this.zk.create(path, Buffer.from(String(start)), zookeeper.CreateMode.PERSISTENT);', 'void zookeeper;'), test: 'integration/cluster/source-intake.test.js', name: 'is recorded as a partition is first read', slow: true },
  { what: "a stopping cluster instance's claim waits out another owner's session", edits: one('cluster/coordinator.js', 'if (this.closed || this.stopping)', 'if (this.closed)'), test: 'integration/cluster/coordinator.test.js', name: 'stops taking' },
  { what: "a stopping cluster instance's restore reads on to its timeout", edits: one('cluster/partition-reader.js', '            if (this.cancelled)\n                throw this.cancelled;\n', ''), test: 'integration/cluster/source-intake.test.js', name: 'ends with the reason given', slow: true },
  { what: 'a join waits for a gone holder of its id only for the session it asked, not the one granted', edits: one('cluster/coordinator.js', 'this.zk.negotiatedTimeoutMs ?? 0', 'this.zk.grantedTimeoutMs'), test: 'integration/cluster/coordinator.test.js', name: 'session ZooKeeper granted' },
  { what: "a refused offset write that names no node and no root", edits: one('storage/zookeeper/ownership.js', 'if (error instanceof OffsetStoreError && zooKeeperAnswer(error) !== undefined)', 'if (false)'), test: 'storage/zookeeper/offsets.test.js', name: 'still a conflict' },
  { what: 'two Kafka streams on one ZooKeeper node through different connect strings accepted', edits: one('storage/zookeeper/connect-options.js', 'return x.path === y.path && x.hosts.some((h) => y.hosts.includes(h));', 'return x.path === y.path && a.connect === b.connect;'), test: 'engine/bad-input.test.js', name: 'kafkaStream options' },
  { what: 'a worker thread that dies between batches ends the process', edits: one('actors/worker-set.js', "pool.on('error', (error) => void (this.diedWith[worker] = error));", ''), test: 'actors/supervision.test.js', name: 'dies between batches' },
  { what: "an older leader's assignment (no registrations) never followed", edits: one('cluster/coordinator.js', 'assignment?.incarnations === undefined || ', ''), test: 'integration/cluster/coordinator.test.js', name: 'earlier statestream' },
  { what: "a source position node a crash left empty never gets its first 'latest'", edits: one('cluster/source-intake.js', 'if (recorded !== undefined)\n            return recorded;', 'return recorded ?? start;'), test: 'integration/cluster/source-intake.test.js', name: 'is recorded as a partition is first read', slow: true },
  { what: 'a stream that missed a batch another stream committed goes unreported', edits: one('engine/local-recovery.js', 'const missing = lastBatch < newest ? all : behind;', 'const missing = behind;'), test: 'actors/supervision.test.js', name: 'another stream of the job committed' },
  { what: 'a tuple key with a part that is no key matched by its JSON text', edits: one('actors/shard-encoder.js', 'if (Array.isArray(key) && !key.every(isScalarKey))', 'if (false)'), test: 'engine/bad-input.test.js', name: 'JSON text it shares' },
  { what: 'a rebuilt batch that fails before the start is over leaves the job running without it', edits: one('engine/streaming-context.js', "? (snapshot.context.error ?? new Error('start failed')) : this.failure;", "? (snapshot.context.error ?? new Error('start failed')) : undefined;"), test: 'integration/kafka-replay-timeouts.test.js', name: 'fails the start', slow: true },
  { what: "a gone predecessor's leader candidacy left to expire with its session", edits: one('cluster/coordinator.js', "for (const name of await this.zk.children(this.path('leader')))", 'for (const name of [])'), test: 'integration/cluster/coordinator.test.js', name: 'crashed while leading' },
  { what: "a cluster instance's folder read as a job's state", edits: one('storage/partition/store-check.js', "    return store.meta.get('cluster') !== undefined;", '    return false;'), test: 'integration/cluster/cluster.test.js', name: 'three instances of the word-count', slow: true },
  { what: 'the page charts the re-runs', edits: one('ui/assets/status.js', "const charted = completed.filter((b) => b.origin !== 'replay');", 'const charted = completed;'), test: 'integration/kafka-replay-timeouts.test.js', name: 're-runs the batches', slow: true },
  { what: 'a missing --zk-root reported as ZooKeeper unreachable by inspect', edits: one('cli/inspect.js', "from: error instanceof MissingRootFailure ? 'zookeeper-root-missing' : 'zookeeper-unreachable'", "from: 'zookeeper-unreachable'"), test: 'cli/cli.test.js', name: 'names no node' },
  { what: "a batch after a gap found while running records the gap in its range (its rebuild reports it again)", edits: one('engine/sources/kafka.js', 'from = Math.max(from, buffer.gaps[passed++].until);', 'passed++;'), test: 'integration/kafka-retention-gap.test.js', name: 'rebuilt after its failure' },
  { what: 'snapshot create skips a stream a crash left mid-swap', edits: one('cli/snapshot.js', '...streamsOnDisk(dataDir), ...streamsMidSwap(dataDir)', '...streamsOnDisk(dataDir)'), test: 'cli/cli.test.js', name: 'snapshot create finishes a restore' },
  { what: 'export --snapshot reads a snapshot in a newer store format', edits: one('cli/transfer.js', 'throw new CliFailure(`snapshot ${batchTime} cannot be read by this statestream: ${newer}`);', ';'), test: 'cli/cli.test.js', name: 'newer store format' },
  { what: "snapshot restore checks the replay against another job's ZooKeeper root", edits: one('cli/snapshot.js', 'if (zk && kafkaRoots.length > 0 && !kafkaRoots.includes(zk.root)) {', 'if (false) {'), test: 'cli/cli.test.js', name: 'ZooKeeper will replay' },
  { what: "an export's scratch copy outlives a Ctrl-C", edits: one('storage/snapshots/source.js', 'const forget = removedAtExit(scratch);', 'const forget = () => undefined;'), test: 'cli/cli.test.js', name: 'Ctrl-C' },
  { what: 'state get of a number does not name the string key of its text', edits: one('cli/state.js', "const asText = typeof key === 'string' ? undefined :", "const asText = undefined && "), test: 'cli/cli.test.js', name: 'names the string key' },
  { what: "a state's bytes decoded as a view of lmdb-js's reused read buffer", edits: one('storage/codec.js', 'entryCodec = new BytesPackr({ useRecords: false, moreTypes: true, copyBuffers: true })', 'entryCodec = new BytesPackr({ useRecords: false, moreTypes: true, copyBuffers: false })'), test: 'storage/codec.test.js', name: 'reuses lmdb-js' },
  { what: 'bytes decoded from a transferred buffer come back a Uint8Array', edits: one('storage/codec.js', 'return super.unpack(asBuffer(source), options);', 'return super.unpack(source, options);'), test: 'storage/codec.test.js', name: 'comes back a Buffer' },
  { what: "an export's temporary file outlives a Ctrl-C", edits: one('storage/export/state-export.js', 'const forget = removedAtExit(tmp);', 'const forget = () => undefined;'), test: 'cli/cli.test.js', name: 'Ctrl-C' },
  { what: 'an export renames its file over a FIFO', edits: one('storage/export/state-export.js', 'if (info && (special || !info.isFile()))', 'if (false)'), test: 'cli/cli.test.js', name: 'FIFO' },
  { what: 'a takeover written after its owner lost the partition during the restore', edits: one('cluster/restore-store.js', 'withinLease(await options.stillOwned(),', 'withinLease(Infinity,'), test: 'integration/cluster/dropped-batch-restore.test.js', name: 'writes no takeover' },
  { what: 'a takeover under an epoch older than a marker in the changelog', edits: one('cluster/restore-store.js', 'if (restore.epoch > epoch) {', 'if (false) {'), test: 'integration/cluster/dropped-batch-restore.test.js', name: 'writes no takeover' },
  { what: 'an epoch marker keyed by its epoch alone (a retake under the same epoch compacts the first away)', edits: one('cluster/changelog.js', 'epoch:${epoch}:${randomUUID()}', 'epoch:${epoch}'), test: 'cluster/changelog.test.js', name: 'retake under the same epoch' },
  { what: 'a state string with a lone surrogate stored as U+FFFD', edits: one('storage/codec.js', "return wellFormed(value) ? undefined : 'is a string with a lone surrogate", "return true ? undefined : 'is a string with a lone surrogate"), test: 'engine/bad-input.test.js', name: 'lone-surrogate' },
  { what: 'an option given twice keeps its last value without a word', edits: one('cli/args.js', 'if (seen.has(token.name))', 'if (false)'), test: 'cli/cli.test.js', name: 'usage errors' },
  { what: "a removed key's changelog record is a value, which compaction never sheds", edits: one('cluster/changelog.js', 'if (value === null)\n        return { key: keyBytes, value: null,', 'if (false)\n        return { key: keyBytes, value: null,'), test: 'cluster/changelog.test.js', name: 'Kafka tombstone' },
  { what: 'export --out /dev/stdout sent to a file replaces the file', edits: one('storage/export/state-export.js', 'const special = /^\\/(proc\\/|dev\\/fd\\/|dev\\/std(in|out|err)$)/.test(resolve(path));', 'const special = false;'), test: 'cli/cli.test.js', name: 'FIFO' },
  { what: 'help <command> --help asks for --help twice', edits: one('cli/main.js', "sub.some((a) => a === '--help' || a === '-h') ? sub : [...sub, '--help']", "[...sub, '--help']"), test: 'cli/cli.test.js', name: 'usage errors' },
  { what: 'a gap found while running keeps the position before it until the next batch ends', edits: one('engine/sources/kafka.js', 'if (!gap || buffer.next !== gap.from)', 'if (true)'), test: 'integration/kafka-retention-gap.test.js', name: 'stopped after a gap' },
  { what: 'a gap passed beside a batch in flight left unrecorded', edits: one('engine/sources/kafka.js', '...movedOn.filter((m) => !readInFlight(m))', '...(pending && pending.ranges.length > 0 ? [] : movedOn)'), test: 'integration/kafka-retention-gap.test.js', name: 'beside a batch in flight', slow: true },
  { what: 'an export that makes an empty store in place of a missing one', edits: one('storage/partition/stream-stores.js', '            if (problem)\n                throw refuse(', '            if (false)\n                throw refuse('), test: 'storage/export/state-export.test.js', name: 'missing or damaged' },
  { what: "exportJobState reads a cluster instance's folder as the job's state", edits: one('storage/partition/stream-stores.js', 'if (isClusterStore(store))', 'if (false)'), test: 'storage/export/state-export.test.js', name: 'missing or damaged' },
  { what: 'an export of the state a half-done swap left', edits: one('storage/partition/stream-stores.js', '    if (swap)\n', '    if (false)\n'), test: 'storage/export/state-export.test.js', name: 'missing or damaged' },
  { what: 'a status page without a token answering any host name', edits: one('ui/status-server.js', 'if (!isLoopback(hostName(request.headers.host))) {', 'if (false) {'), test: 'ui/status-server.test.js', name: 'loopback host name' },
  { what: 'a + in ?token= read as a space', edits: one('ui/status-server.js', 'const query = queryToken(url.search);', "const query = url.searchParams.get('token') ?? undefined;"), test: 'ui/status-server.test.js', name: 'off loopback' },
  { what: "the page counts re-runs among the completed batches, their records and timeouts", edits: one('ui/status-model.js', "if (e.origin === 'replay')\n                this.totals.replayed++;", "if (false)\n                this.totals.replayed++;"), test: 'integration/kafka-replay-timeouts.test.js', name: 're-runs the batches', slow: true },
  { what: '/metrics answers POST and DELETE as it answers GET', edits: one('metrics/http.js', "if (request.method !== 'GET' && request.method !== 'HEAD') {", 'if (false) {'), test: 'metrics/metrics.test.js', name: 'curl of /metrics' },
  { what: 'a request target that is no path answered as a failure of the job (500)', edits: one('metrics/http.js', 'response.writeHead(400, {', 'response.writeHead(500, {'), test: 'ui/status-server.test.js', name: 'without a token' },
  { what: 'delay buckets that stop at a minute', edits: one('metrics/job-metrics.js', ', 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400, 5 * 86400, 10 * 86400]', ']'), test: 'metrics/job-metrics-events.test.js', name: 'a scheduling delay of minutes' },
  { what: 'a worker replaced between batches not counted as restarts', edits: one('metrics/job-metrics.js', 'events.on(BatchEvents.WORKER_REPLACED,', 'void (BatchEvents.WORKER_REPLACED,'), test: 'metrics/job-metrics-events.test.js', name: 'a cluster partition given up' },
  { what: 'a cluster partition given up keeps its memory and read series', edits: one('metrics/job-metrics.js', 'events.on(BatchEvents.PARTITION_RELEASED,', 'void (BatchEvents.PARTITION_RELEASED,'), test: 'metrics/job-metrics-events.test.js', name: 'a cluster partition given up' },
  { what: 'metrics.host without metrics.port accepted, serving nothing', edits: one('metrics/options.js', 'if (raw.host !== undefined && raw.port === undefined)', 'if (false)'), test: 'metrics/metrics.test.js', name: 'registers on the service' },
  { what: 'no worker.replaced event when a thread dies between batches', edits: one('engine/streaming-context.js', 'this.emit(BatchEvents.WORKER_REPLACED, {', 'void ({'), test: 'actors/supervision.test.js', name: 'between batches' },
  { what: 'the status page leaves out a worker replaced between batches', edits: one('ui/status-model.js', 'events.on(BatchEvents.WORKER_REPLACED,', 'void (BatchEvents.WORKER_REPLACED,'), test: 'actors/supervision.test.js', name: 'between batches' },
  { what: 'a batch.completed listener that throws only warns', edits: one('engine/streaming-context.js', 'BatchEvents.STARTED, BatchEvents.COMPLETED, BatchEvents.STATE_RESTORED', 'BatchEvents.STARTED, BatchEvents.STATE_RESTORED'), test: 'engine/bad-input.test.js', name: 'a batch.completed listener that throws fails its batch' },
  { what: 'a state.restored listener that throws only warns', edits: one('engine/streaming-context.js', 'BatchEvents.COMPLETED, BatchEvents.STATE_RESTORED, BatchEvents.RECOVERY_INCOMPLETE]', 'BatchEvents.COMPLETED, BatchEvents.RECOVERY_INCOMPLETE]'), test: 'storage/snapshots/restore.test.js', name: 'a state.restored listener that throws' },
  { what: 'a recovery.incomplete listener that throws only warns', edits: one('engine/streaming-context.js', 'BatchEvents.STATE_RESTORED, BatchEvents.RECOVERY_INCOMPLETE]', 'BatchEvents.STATE_RESTORED]'), test: 'storage/snapshots/restore.test.js', name: 'a recovery.incomplete listener that throws' },
  { what: "an output's rejected promise dropped: the batch completes", edits: one('engine/stop-options.js', '    await unlessAborted(result, cut,', '    await unlessAborted(Promise.resolve(result).catch(() => undefined), cut,'), test: 'engine/bad-input.test.js', name: 'an output whose promise rejects' },
  { what: "a batch rebuilt at start reported as origin 'live'", edits: one('engine/local-recovery.js', "ended.has(time) ? 'replay' : 'in-flight'", "ended.has(time) ? 'replay' : 'live'"), test: 'integration/kafka-source-recovery.test.js', name: 'rebuilds a recorded batch larger', slow: true },
  { what: "a reshard drops the last batch's timed-out count", edits: one('storage/reshard/reshard.js', '...(timedOut === undefined ? {} : { timedOut: q === 0 ? timedOut : 0 })', '...{}'), test: 'engine/rescale.test.js', name: 'timed-out key count' },
  { what: 'a snapshot copy that cannot be read fails the whole restore', edits: one('storage/snapshots/checksum.js', ': checksumFiles.map(digestFileSync));', ': checksumFiles.map(sha256FileSync));'), test: 'storage/snapshots/restore.test.js', name: 'a copy that cannot be read' },
  { what: 'snapshots of negative or fractional batch times never listed', edits: one('storage/snapshots/manifest.js', "if (name === '' || String(Number(name)) !== name || !Number.isFinite(Number(name)))", 'if (!/^\\d+$/.test(name))'), test: 'storage/snapshots/snapshots.test.js', name: 'negative or fractional' },
  { what: 'a restore with a rescale refused as a half-committed batch', edits: one('engine/local-recovery.js', 'if (!levels || had === undefined', 'if (true || had === undefined'), test: 'storage/snapshots/restore.test.js', name: 'a restore and a rescale' },
  { what: 'never-initialised stores listed as damaged "undefined"', edits: one('storage/snapshots/restore.js', 'const bad = present.filter((h) => h.problem !== undefined);', 'const bad = present;'), test: 'storage/snapshots/restore.test.js', name: 'never initialised' },
  { what: 'two Kafka streams of one context in one consumer group', edits: one('engine/streaming-context.js', 'if (input.options.groupId === valid.groupId) {', 'if (false) {'), test: 'engine/bad-input.test.js', name: 'kafkaStream options' },
  { what: 'a recorded range without offsets read as a batch', edits: one('storage/zookeeper/offsets.js', ' || !value.ranges.every(isRange)', ''), test: 'storage/zookeeper/offsets.test.js', name: 'holds something else' },
  { what: 'a garbled last-batch record read as NaN', edits: one('storage/zookeeper/offsets.js', 'if (!Number.isFinite(Number(text)) || text.trim() !== text) {', 'if (false) {'), test: 'storage/zookeeper/offsets.test.js', name: 'holds something else' },
  { what: 'a batch in flight whose records are gone ends before the gap it went past', edits: one('engine/sources/kafka.js', 'if (pending && gaps.length > 0) {', 'if (false) {'), test: 'integration/kafka-retention-gap.test.js', name: 'in flight when the job stopped whose records are gone', slow: true },
  { what: "a batch in flight's lost offsets reported twice (its range and the position)", edits: one('engine/sources/kafka-gaps.js', 'const from = inFlight ? Math.max(position, inFlight.until) : position;', 'const from = position;'), test: 'integration/kafka-retention-gap.test.js', name: 'in flight when the job stopped whose records are gone', slow: true },
  { what: "a group (re)join reads from the group's committed offsets, not from ZooKeeper's positions", edits: one('engine/sources/kafka.js', 'this.consumer.seek({ topic, partition, offset: String(buffer.fetchedUntil) });', 'void buffer;'), test: 'integration/kafka-snapshot-restore.test.js', name: 'the consumer group of the run before', slow: true },
  { what: 'records after a gap found while running dropped (failOnDataLoss: false)', edits: one('engine/sources/kafka.js', 'return lost === undefined;', 'return false;'), test: 'integration/kafka-retention-gap.test.js', name: 'each once, and every record after', slow: true },
  { what: 'trimming after a snapshot that fails is swallowed without a word', edits: one('engine/snapshot-scheduler.js', "code: 'STATESTREAM_SNAPSHOT'", "code: 'STATESTREAM_SILENT'"), test: 'storage/snapshots/snapshots.test.js', name: 'cannot be removed' },
  { what: 'cluster.assignment never announced', edits: one('cluster/runtime.js', 'job.announce(BatchEvents.ASSIGNMENT_CHANGED,', 'void (BatchEvents.ASSIGNMENT_CHANGED,'), test: 'integration/cluster/cluster.test.js', name: 'while words keep arriving', slow: true },
  { what: 'restart counters that begin at their first restart (increase() misses it)', edits: one('metrics/job-metrics.js', 'm.restarts.inc(where, 0);', ''), test: 'metrics/job-metrics-events.test.js', name: 'a cluster partition given up' },
  { what: '--zk-digest without --zookeeper ignored', edits: one('cli/args.js', "if (digest !== undefined)\n", "if (false)\n"), test: 'cli/cli.test.js', name: 'usage errors' },
  { what: "a failed commit reported with LMDB's bare message (no partition, batch or store)", edits: one('actors/apply-shard.js', "throw storeFailure(error, 'could not commit batch', this.partition.store.path, this.task);", 'throw error;'), test: 'actors/store-io-error.test.js' },
  { what: 'a batch a batch.completed listener fails counted as completed and failed on /metrics', edits: one('metrics/job-metrics.js', 'if (e.batchTime !== this.lastCompleted)', 'if (true)'), test: 'metrics/metrics.test.js', name: 'is counted once' },
  { what: 'a batch a batch.completed listener fails shown in two rows on the status page', edits: one('ui/status-model.js', 'if (completed) {', 'if (false) {'), test: 'metrics/metrics.test.js', name: 'is counted once' },
  { what: 'snapshot failures counted from their first (increase() misses it)', edits: one('metrics/job-metrics.js', 'this.m.snapshotFailures.inc(this.labels, 0);', ''), test: 'metrics/job-metrics-events.test.js', name: 'begin at 0' },
  { what: "partitions' restarts counted from 0 only after a completed batch", edits: one('metrics/job-metrics.js', 'this.m.restarts.inc(this.partition(stream, p.partition), 0);', ''), test: 'metrics/job-metrics-events.test.js', name: 'begin at 0' },
  { what: "a restarted job's newest snapshot unknown to the last-success gauge", edits: one('metrics/job-metrics.js', 'this.m.snapshotLast.set(this.labels, at / 1000);', ''), test: 'metrics/job-metrics-events.test.js', name: 'begin at 0' },
  { what: "a restarted context does not hand its newest snapshot's time to the metrics", edits: one('metrics/job-metrics.js', 'this.probe.snapshotsOn ? this.probe.newestSnapshot()?.at : undefined', 'undefined'), test: 'metrics/metrics.test.js', name: 'curl of /metrics' },
  { what: 'the Kafka example serves nothing for --metrics-host without a port, silently', edits: one('../examples/kafka-word-count/main.js', "if (metricsPort === undefined && values['metrics-host'] !== undefined)", 'if (false)'), test: 'examples/examples.test.js', name: 'kafka-word-count refuses' },
  { what: 'a mapped record MessagePack cannot carry stored without a word (its key unnamed)', edits: one('actors/apply-shard.js', 'checkOutput(mapped, key, `record ${i} of the shard`, partition, batchTime)', 'void 0'), test: 'engine/bad-input.test.js', name: 'mapped record that cannot be encoded' },
  { what: "a record's bytes reach the mapping function as a view of the shard (a retry sees what the failed attempt changed)", edits: [
      { file: 'actors/shard-format.js', from: "import { messageCodec } from '../storage/codec.js';", to: "import { messageCodec, messageViews } from '../storage/codec.js';" },
      { file: 'actors/shard-format.js', from: ': messageCodec.unpack(new Uint8Array(buffer, valuesAt', to: ': messageViews.unpack(new Uint8Array(buffer, valuesAt' },
    ], test: 'actors/supervision.test.js', name: 'a retry gives each record' },
  { what: "a stop does not end a start's wait for another owner (it waits out that owner's session timeout)", edits: one('storage/zookeeper/ownership.js', 'if (this.zk.interrupted.aborted) {', 'if (false) {'), test: 'storage/zookeeper/ownership.test.js', name: 'ends as soon as it is stopped' },
  { what: 'a lost root names the session timeout asked for, not the one ZooKeeper granted', edits: one('storage/zookeeper/ownership.js', 'const granted = this.granted ?? asked;', 'const granted = asked;'), test: 'storage/zookeeper/ownership.test.js', name: 'granted when its maxSessionTimeout' },
  { what: "a missing chroot reported as a bare NO_NODE on the job's own path", edits: one('storage/zookeeper/session.js', 'throw this.missingChroot(error) ?? error;', 'throw error;'), test: 'storage/zookeeper/ownership.test.js', name: 'chroot that does not exist' },
  { what: "a digest ACL set on every node under the root, other jobs' roots nested there included", edits: one('storage/zookeeper/offsets.js', 'await this.secure(this.root, this.zk.acls, false);', 'await this.secure(this.root, this.zk.acls, true);'), test: 'storage/zookeeper/acl.test.js', name: 'another job' },
  { what: "/api/status carries every kept batch's per-partition times (tens of MB a poll with many partitions)", edits: one('ui/status-model.js', 'i < this.batches.length - DETAILED_ROWS ?', 'false ?'), test: 'ui/status-model.test.js' },
  { what: "a cluster's source partition read as far ahead as the reader's limit (200 000), not two batches", edits: one('cluster/source-intake.js', ', bufferLimit: 2 * this.options.maxRecordsPerBatch', ''), test: 'integration/cluster/source-intake.test.js', name: 'two batches ahead', slow: true },
  { what: "a cluster owner's lease checked only before a batch's first changelog request", edits: one('cluster/changelog-io.js', '        beforeEach?.();\n', ''), test: 'integration/cluster/dropped-batch-restore.test.js', name: 'stops being sent' },
  { what: "a cluster instanceId of '.' or '..' let through to ZooKeeper", edits: one('storage/zookeeper/connect-options.js', " && name !== '.' && name !== '..'", ''), test: 'cluster/options.test.js' },
  {
    what: 'a swap records its paths relative to the folder the command ran in (finished from another, the old state moves there)',
    edits: [
      { file: 'cli/args.js', from: 'const dataDir = resolve(given);', to: 'const dataDir = given;' },
      { file: 'storage/stream-swap.js', from: "return resolve(dataDir, 'replaced',", to: "return join(dataDir, 'replaced'," },
    ],
    test: 'cli/cli.test.js', name: 'relative --data-dir',
  },
  { what: "every store damaged after a reshard: the newest snapshot's smaller count restored, the partitions past it left damaged", edits: one('storage/snapshots/restore.js', 'if (beyond.length > 0) {', 'if (false) {'), test: 'storage/snapshots/restore.test.js', name: 'every store damaged after a reshard' },
  { what: "a store file that cannot be read fails the start with a bare read error (no partition, no file)", edits: one('storage/partition/store-check.js', 'throw new StoreOpenError(`partition ${partition} of mapWithState stream ${stream} at ${path} could not be read to check it', 'throw error; void (`partition ${partition} of mapWithState stream ${stream} at ${path} could not be read to check it'), test: 'storage/snapshots/restore.test.js', name: 'cannot be read \\(EISDIR here' },
  { what: "a snapshot of stores a migration left at mixed state versions records partition 0's for all", edits: one('storage/snapshots/writer.js', 'if (version !== (layout.stateVersion ?? 1)) {', 'if (false) {'), test: 'engine/state-version.test.js', name: 'crash between partitions switching over' },
  { what: 'a restore fetches every replayed batch\'s records before the start is over (all in memory at once)', edits: one('engine/sources/kafka.js', 'return recovered;', 'for (const r of recovered) { const records = await r.take(); r.take = async () => records; } return recovered;'), test: 'integration/kafka-snapshot-restore.test.js', name: 'replays many batches', slow: true },
  { what: "a relative folder in an earlier version's swap marker followed from wherever the finishing command runs", edits: one('storage/stream-swap.js', "return join(dataDir, 'replaced', basename(dirname(written.keepOldIn)), basename(written.keepOldIn));", 'return resolve(written.keepOldIn);'), test: 'cli/cli.test.js', name: 'earlier version wrote with a relative folder' },
  { what: 'a swap marker\'s absolute folder followed after the data folder moved', edits: one('storage/stream-swap.js', "return join(dataDir, 'replaced', basename(dirname(written.keepOldIn)), basename(written.keepOldIn));", 'return written.keepOldIn.startsWith("/") ? written.keepOldIn : join(dataDir, \'replaced\', basename(dirname(written.keepOldIn)), basename(written.keepOldIn));'), test: 'cli/cli.test.js', name: 'data folder moved' },  { what: 'an export read on after a Map entry in one unpackMultiple: its record definitions turn a later 64 into an object', edits: one('storage/codec.js', 'if (rest[start] !== MAP_EXPORT_ENTRY_HEADER)', 'if (true)'), test: 'storage/export/state-export.test.js', name: 'small numbers after a state whose Map' },
  { what: 'record values not checked: a function inside one reaches the mapping function as undefined', edits: one('actors/shard-encoder.js', "if (typeof value !== 'number')", 'if (false)'), test: 'engine/bad-input.test.js', name: 'record value MessagePack cannot carry' },
  { what: 'an initialState iterator read by a second stream loads nothing, without a word', edits: one('engine/state-spec.js', 'if (reader !== undefined) {', 'if (false) {'), test: 'engine/bad-input.test.js', name: 'initialState iterator is read once' },
  { what: 'an initialState array kept by reference: a change after it was given is loaded', edits: one('engine/state-spec.js', 'this.initial = copy;', 'this.initial = initial;'), test: 'engine/bad-input.test.js', name: 'initialState iterator is read once' },
  { what: "the hint for an argument that starts with '-' names the letter parseArgs stopped at, not the argument", edits: one('cli/args.js', "(args.find((a) => a.startsWith(short[1]) && !a.startsWith('--')) ?? short[1])", 'short[1]'), test: 'cli/cli.test.js', name: 'state get prints' },
  { what: 'an export to a folder that takes no new file is named by its temporary file', edits: one('storage/export/state-export.js', 'throw new StateExportError(`cannot write the export ${path}: no new file can be made', 'throw error; void (`cannot write the export ${path}: no new file can be made'), test: 'storage/export/state-export.test.js', name: 'takes no new file' },
  { what: 'STATESTREAM_STORE_OPEN_WAIT_MS ignored: the wait stays 30 s', edits: one('storage/open-gate.js', 'const waitMs = openWaitMs();', 'const waitMs = 30000;'), test: 'storage/partition/store-set.test.js', name: 'a close that fails' },
  { what: 'a bad STATESTREAM_STORE_OPEN_WAIT_MS let through by StreamingContext', edits: one('engine/streaming-context.js', '        openWaitMs();\n', '\n'), test: 'engine/option-values.test.js', name: 'STATESTREAM_STORE_OPEN_WAIT_MS' },
  { what: 'inspect --brokers taken unchecked', edits: one('cli/inspect.js', 'if (brokers && !brokers.every(isBrokerAddress)) {', 'if (false) {'), test: 'cli/arguments.test.js', name: '--zookeeper and --zk-digest' },
  { what: 'onRecordFailure given no object says its policy is undefined', edits: one('engine/state-spec.js', "if (options === null || typeof options !== 'object') {", 'if (false) {'), test: 'engine/option-values.test.js', name: 'null is a value' },
  { what: "a job's start that meets a statestream command on the folder is told a second copy of the job runs", edits: one('storage/data-lock.js', ': holder?.command', ': false'), test: 'engine/data-dir-lock.test.js', name: 'meets a statestream command' },
  { what: 'a record value holding a bigint wider than 64 bits refused, though messageCodec carries it', edits: one('storage/codec.js', 'return !message && (value >', 'return (value >'), test: 'storage/codec.test.js', name: 'carries wide bigints' },
  { what: "a record value with a toJSON of its own (a Decimal) walked field by field and refused", edits: one('storage/codec.js', 'if (message && !(value instanceof Map)', 'if (false && !(value instanceof Map)'), test: 'storage/codec.test.js', name: 'carries wide bigints' },
  { what: "the '--' hint given for a mistyped one-letter option and to a command that takes no argument", edits: one('cli/args.js', 'positionals.max > 0 &&', 'true ||'), test: 'cli/cli.test.js', name: 'state get prints' },
  { what: 'memory with a bound of 1 keeps two generations of one', edits: one('storage/partition/memory-state-map.js', 'if (this.capacity > 1)\n                this.old = this.young;', 'this.old = this.young;'), test: 'storage/partition/memory-state-map.test.js', name: 'keeps at most its bound' },
  { what: '--json leaves out the swaps a command settled first', edits: one('cli/stores.js', 'return settled.map((s) => ({ command', 'return [].map((s) => ({ command'), test: 'cli/cli.test.js', name: 'settledFirst' },
  { what: 'export --out /dev/stdout prints its summary into the export', edits: one('cli/transfer.js', 'return file.dev === stdout.dev && file.ino === stdout.ino;', 'return false;'), test: 'cli/cli.test.js', name: 'export → import into a new' },
  { what: "a cluster's stage one sends a value MessagePack cannot carry", edits: one('cluster/stage-one.js', 'assertRecordValue(pair, batch.time, index, stream.stateIndex);', ''), test: 'cluster/stage-one.test.js', name: 'cannot carry' },
  { what: "two Kafka sources' lag on one topic share a series", edits: one('metrics/job-metrics.js', 'source: String(s.source), topic: p.topic', 'topic: p.topic'), test: 'integration/kafka-metrics.test.js', name: 'two Kafka sources' },
  { what: 'a last chunk answered stale taken for a failed record', edits: one('actors/partition.machine.js', "if (outcome.status === 'stale')", 'if (false)'), test: 'actors/partition.machine.test.js', name: 'answered "stale"' },
  { what: "a Kafka decoder function called with a tombstone's null value", edits: one('engine/sources/kafka.js', '        if (value === null)\n            return null;\n', ''), test: 'integration/kafka-source.test.js', name: 'decoder not called' },
  { what: 'state get rounds an integer key past 2^53 to another key', edits: one('cli/state.js', 'Number.isInteger(n) && !Number.isSafeInteger(n)', 'false'), test: 'cli/arguments.test.js', name: 'an integer key past' },
  { what: "state get drops the spaces around a key's text", edits: one('cli/state.js', 'if (forceString || text.trim() !== text)', 'if (forceString)'), test: 'cli/arguments.test.js', name: 'an integer key past' },
  { what: 'the status page takes Bearer only capitalised', edits: one('ui/status-server.js', '/^Bearer +(.+)$/i', '/^Bearer +(.+)$/'), test: 'ui/status-server.test.js', name: 'off loopback it needs a token' },
  { what: 'snapshot list --stream says there are no snapshots when none holds the stream', edits: one('cli/snapshot.js', 'streamGiven && readable.length > 0 ?', 'false ?'), test: 'cli/arguments.test.js', name: 'snapshot list: --stream' },
  { what: 'snapshot restore leaves a lock file in a folder with nothing to settle', edits: one('cli/snapshot.js', 'existsSync(dataDir) && interruptedSwap(dataDir, stream) !== undefined ?', 'existsSync(dataDir) ?'), test: 'cli/arguments.test.js', name: 'empty stream folder' },
  { what: 'a thread that exits between batches goes unreported', edits: one('actors/worker-set.js', "pool.on('workerDestroy', () => {", "pool.on('never-emitted', () => {"), test: 'actors/supervision.test.js', name: 'exits between batches' },
  { what: 'a thread that dies in a batch is also reported as replaced between batches', edits: one('actors/worker-set.js', 'const ours = this.open[worker] > 0 || this.stopping();', 'const ours = this.stopping();'), test: 'actors/supervision.test.js', name: 'no record lost' },
  { what: "the page's records keep a batch a listener failed", edits: one('ui/status-model.js', 'this.totals.records -= completed.records ?? 0;', ''), test: 'metrics/metrics.test.js', name: 'completed listener fails' },
  { what: 'memory admits new keys again once its old generation is empty', edits: one('storage/partition/memory-state-map.js', 'if (this.turned) {', 'if (this.old.size > 0) {'), test: 'storage/partition/memory-state-map.test.js', name: 'with a bound of 1' },
  { what: 'ssc.mapWithState accepted after start()', edits: one('engine/streaming-context.js', "this.assertBuilding('mapWithState');", ''), test: 'engine/bad-input.test.js', name: 'lifecycle errors' },
  { what: 'ssc.addOutput accepted after start()', edits: one('engine/streaming-context.js', "this.assertBuilding('addOutput');", ''), test: 'engine/bad-input.test.js', name: 'lifecycle errors' },
  { what: 'a second stop() of a context never started arms a deadline timer', edits: one('engine/streaming-context.js', "            // Nothing runs to cut: a deadline a second call gives would only keep the process up.\n            this.cutClosed = true;\n", ''), test: 'engine/bad-input.test.js', name: 'never started leaves no timer' },
  { what: "a retake under the same epoch keeps what its earlier tenure half-wrote", edits: one('cluster/changelog.js', 'if (entry.epoch > epoch)', 'if (entry.epoch >= epoch)'), test: 'cluster/changelog.test.js', name: 'same-epoch|same epoch' },
  { what: "a start a stop's deadline cut short fails in the pool's bare words", edits: one('engine/streaming-context.js', 'if (error && this.cut?.cutting && !(error instanceof StopTimeoutError))', 'if (false)'), test: 'engine/bad-input.test.js', name: 'deadline passes while the job is starting' },
  { what: 'a start refused for want of an input counts as the one start', edits: one('engine/streaming-context.js', "if (this.inputs.length === 0)\n            return Promise.reject(", "if (this.inputs.length === 0)\n            return this.starting = Promise.reject("), test: 'engine/bad-input.test.js', name: 'lifecycle errors' },
  { what: "a restore's takeover sent after its lease ran out", edits: one('cluster/restore-store.js', 'writer.writeTakeover(partition, epoch, last, leased)', 'writer.writeTakeover(partition, epoch, last)'), test: 'integration/cluster/dropped-batch-restore.test.js', name: 'writes no takeover' },
  { what: "a restarted job's page does not show the snapshot its folder holds", edits: one('ui/status-model.js', 'snapshotOnDisk: this.snapshotCompleted ? undefined : this.probe.newestSnapshot(),', 'snapshotOnDisk: undefined,'), test: 'ui/status-server.test.js', name: 'which store was damaged' },
  { what: "a restarted job's page says no snapshot though its folder holds one", edits: one('ui/assets/status.js', ': before\n      ?', ': false\n      ?'), test: 'ui/status-page.test.js', name: 'draws the batch charts' },
  { what: "the page shows a snapshot from before the start after one of its own completed", edits: one('ui/status-model.js', 'this.snapshotCompleted = true;', ''), test: 'ui/status-model.test.js', name: 'from before this start' },
  { what: 'a scrape resets the gauges another scrape of a shared registry is filling', edits: [
    { file: 'metrics/job-metrics.js', from: 'const series = [];', to: 'const series = [];\n                this.reset();' },
    { file: 'metrics/job-metrics.js', from: 'this.reset();\n                for (const [labels, value] of series)', to: 'for (const [labels, value] of series)' },
    { file: 'metrics/job-metrics.js', from: 'await fill(job, { set: (labels, value) => void series.push([labels, value]) });', to: 'await fill(job, this);' },
  ], test: 'metrics/job-metrics-events.test.js', name: 'two scrapes of a shared registry' },
  { what: 'a reshard by hand of stores another partitioner placed', edits: one('storage/reshard/reshard.js', '    refuseOtherPartitioner(layout, dataDir, streamIndex);\n    const from', '    const from'), test: 'engine/rescale.test.js', name: 'another partitioner' },
  { what: "snapshot restore takes only the first Kafka source's root as the job's", edits: one('cli/snapshot.js', '!kafkaRoots.includes(zk.root)', 'kafkaRoots[0] !== zk.root'), test: 'cli/cli.test.js', name: 'restore says how many batches' },
  { what: "snapshot restore refuses a fractional batch time snapshot list prints", edits: one('cli/args.js', "raw === '' || !Number.isFinite(n) || String(n) !== raw", "!/^\\d+$/.test(raw)"), test: 'cli/troubles.test.js', name: 'fractional batch times' },
  { what: 'a long batch history trimmed in one multi-op past ZooKeeper\'s request limit', edits: one('storage/zookeeper/offsets.js', 'const HISTORY_REMOVALS = 1000;', 'const HISTORY_REMOVALS = 1e9;'), test: 'storage/zookeeper/offsets.test.js', name: '50 000 batches' },
  { what: 'a ZooKeeper request begun after an interrupt waits out its timer', edits: one('storage/zookeeper/session.js', 'if (this.abort.signal.aborted) {\n                    if (onAbort())', 'if (false) {\n                    if (onAbort())'), test: 'storage/zookeeper/session.test.js', name: 'begun after interrupt' },
  { what: "a gap after the batch in flight names the batch's end as the job's position", edits: one('engine/sources/kafka-gaps.js', 'gaps.push(from === position ? gap : { ...gap, position });', 'gaps.push(gap);'), test: 'integration/kafka-retention-gap.test.js', name: 'batch in flight when the job stopped whose records are gone' },
  { what: "a recorded batch's range past the partition's end is waited for at start", edits: one('engine/sources/kafka.js', 'if (rangesPastEnd.length > 0) {', 'if (false) {'), test: 'integration/kafka-retention-gap.test.js', name: 'range ends past the partition', slow: true },
  { what: 'an export into a stream destroyed without an error waits for good', edits: one('storage/export/state-export.js', "stream.on('close', onClose);", ''), test: 'storage/export/state-export.test.js', name: 'destroyed without an error' },
  { what: 'an export to a file under /dev/shm appended to', edits: one('storage/export/state-export.js', 'const special = /^\\/(proc\\/|dev\\/fd\\/|dev\\/std(in|out|err)$)/', 'const special = /^\\/(dev|proc)\\//'), test: 'storage/export/state-export.test.js', name: 'under /dev/shm' },
  { what: 'an export through a link to no file replaces the link', edits: one('storage/export/export-place.js', 'at = resolve(folder, readlinkSync(at));', 'return at;'), test: 'storage/export/state-export.test.js', name: 'symbolic link to no file' },
  { what: "an export header's NaN batchTime accepted", edits: one('storage/export/state-export.js', 'if (header.batchTime !== undefined && (', 'if (false && ('), test: 'storage/export/state-export.test.js', name: 'batchTime is no batch time' },
  { what: 'an export replaced after it was opened read as of its old header', edits: one('storage/export/state-export.js', 'if (again.end !== end || !entryCodec.pack(again.header).equals(entryCodec.pack(header)))', 'if (false)'), test: 'storage/export/state-export.test.js', name: 'replaced after it was opened' },
  { what: "a hand-written source's unstorable state stored changed", edits: one('engine/map-with-state-stream.js', ': storableStates(checked, initial.description)', ': checked'), test: 'storage/export/state-export.test.js', name: 'source written by hand' },
  { what: 'an export entry without a state taken', edits: one('storage/export/state-export.js', 'if (value[1] === undefined)', 'if (false)'), test: 'storage/export/state-export.test.js', name: 'source written by hand' },
  { what: "the change log merged in UTF-16 order, LMDB's keys in UTF-8 bytes' order", edits: one('storage/partition/change-log.js', 'return toBufferKey(key);', 'const s = String(key), b = Buffer.alloc(s.length * 2);\n    for (let i = 0; i < s.length; i++) b.writeUInt16BE(s.charCodeAt(i), i * 2);\n    return b;'), test: 'storage/partition/change-log.test.js', name: 'UTF-8 bytes' },
  { what: 'a sweep times a key out by an index entry older than its time', edits: one('actors/apply-shard.js', "if (entry === undefined || (!loaded && entry[1] !== time)) {", 'if (entry === undefined) {'), test: 'storage/partition/time-index.test.js', name: 'own time' },
  { what: 'a key read for an index entry it did not match is taken for one with a record', edits: one('actors/apply-shard.js', '&& !passedOver?.get(key)', ''), test: 'storage/partition/time-index.test.js', name: 'own time' },
  { what: "a long key with a control character LMDB reads back as another key accepted", edits: one('storage/keys.js', 'return unkeptProblem(key);', 'return undefined;'), test: 'storage/keys.test.js', name: 'control characters' },
  { what: "the short-key fast path takes a long key with a control character", edits: one('storage/keys.js', ' && (record[0].length < UNKEPT_FROM || !UNKEPT.test(record[0]))', ''), test: 'storage/keys.test.js', name: 'control characters' },
  { what: 'a recorded batch of a topic no longer read called a recreated topic', edits: one('engine/sources/kafka.js', 'if (!o.topics.includes(r.topic))\n                return [];', ''), test: 'integration/kafka-retention-gap.test.js', name: 'range ends past the partition' },
  { what: "a dangling link's relative target resolved from the path's text", edits: one('storage/export/export-place.js', 'const folder = realOr(dirname(at));', 'const folder = dirname(at);'), test: 'storage/export/state-export.test.js', name: 'symbolic link to no file' },
  { what: 'export headers compared as JSON (a bigint field cannot be read back)', edits: one('storage/export/state-export.js', '!entryCodec.pack(again.header).equals(entryCodec.pack(header))', 'JSON.stringify(again.header) !== JSON.stringify(header)'), test: 'storage/export/state-export.test.js', name: 'replaced after it was opened' },
  { what: "outputs share one array: one that empties it empties the next one's", edits: one('engine/streaming-context.js', 'recordsFor(batch)).slice(), batch.time)', 'recordsFor(batch)), batch.time)'), test: 'engine/stream-operations.test.js', name: 'array of its own' },
  { what: "a second source of this process on a root through another name takes the first's node for a dead copy's", edits: one('storage/zookeeper/ownership.js', 'if (session !== undefined && ownedHere.has(session)) {', 'if (false) {'), test: 'storage/zookeeper/ownership.test.js', name: 'two names of the same server' },
  { what: 'a bundle of 500 large pairs sent as one message past a broker\'s max.message.bytes', edits: one('cluster/pairs.js', 'if (value.length <= MESSAGE_BYTES || pairs.length === 1) {', 'if (true) {'), test: 'cluster/pairs.test.js', name: 'large values' },
  { what: 'a tuple key kept by reference: code reusing one array moves keys already routed', edits: one('storage/keys.js', '(Array.isArray(key) ? normalParts(key) : normalizeKey(key))', 'normalizeKey(key)'), test: 'engine/stream-operations.test.js', name: 'reuses one key array' },
  { what: "a tuple key of initial state kept by reference", edits: one('actors/shard-encoder.js', 'const key = keyToKeep(pair[0]);', 'const key = pair[0];'), test: 'engine/stream-operations.test.js', name: 'initial state from a generator' },
  { what: 'stale time-index entries kept after the sweep passed over them', edits: one('actors/apply-shard.js', 'this.staleEntries.push([time, key]);', ''), test: 'storage/partition/time-index.test.js', name: 'own time' },
  { what: 'CLI export writes an --out inside the data folder', edits: one('cli/transfer.js', 'if (inside !== undefined)', 'if (false)'), test: 'cli/arguments.test.js', name: 'refuses an --out in the data folder' },
  { what: 'exportJobState writes a target inside the data folder', edits: one('storage/export/job-export.js', 'if (inside !== undefined) {', 'if (false) {'), test: 'storage/export/state-export.test.js', name: 'refuses a target in the job' },
  { what: 'an export target taken as the link, not where it leads', edits: one('storage/export/export-place.js', 'if (info && !info.isSymbolicLink())', 'if (info)'), test: 'storage/export/state-export.test.js', name: 'refuses a target in the job' },
  { what: 'CLI: the data folder checked before the arguments', edits: one('cli/args.js', 'return { dataDir, stream, streamGiven', 'checkDataFolder(dataDir); return { dataDir, stream, streamGiven'), test: 'cli/arguments.test.js', name: 'usage error naming it' },
  { what: 'snapshot restore checks the replay under a root that records no batch', edits: one('cli/snapshot.js', 'if (lastBatch === undefined && kafkaRoots.length === 0) {', 'if (false) {'), test: 'cli/cli.test.js', name: 'restore says how many batches ZooKeeper will replay' },
  { what: 'a value an output throws made an Error of its text, the value lost', edits: one('engine/streaming-context.js', 'asError(error, `batch ${batch.time}`)', 'new Error(String(error))'), test: 'engine/stream-operations.test.js', name: 'an output that throws' },
  { what: 'restore --json leaves out the newer snapshots it kept', edits: one('cli/snapshot.js', 'keptNewerSnapshots: soleStream ? [] : newerSnapshots.map((s) => s.batchTime)', 'keptNewerSnapshots: []'), test: 'cli/cli.test.js', name: 'leaves the newer snapshots' },
  { what: 'import --json leaves out that the snapshots are of the replaced state', edits: one('cli/transfer.js', 'const snapshotsOfReplacedState = replacedDir !== undefined &&', 'const snapshotsOfReplacedState = false &&'), test: 'cli/cli.test.js', name: 'settledFirst' },
  { what: 'inspect says a stream with no folder has an empty one', edits: one('cli/inspect.js', 'existsSync(stateDir(report.dataDir, s.stream)) ?', 'true ?'), test: 'cli/arguments.test.js', name: 'empty stream folder' },
  { what: 'the status page answers a host name that only begins like a loopback one', edits: one('metrics/options.js', '|::1|localhost)$/;', '|::1|localhost)/;'), test: 'ui/status-server.test.js', name: 'loopback host name' },
  { what: 'a restart with a timed snapshot policy and no snapshot waits an interval', edits: one('engine/snapshot-scheduler.js', 'scheduler.lastAt = Number.NEGATIVE_INFINITY;', ''), test: 'engine/snapshot-scheduler.test.js', name: 'first batch after a restart' },
  { what: 'the lock file keeps an older, longer holder record past a new one', edits: one('storage/data-lock.js', 'ftruncateSync(fd, 0);', ''), test: 'engine/data-dir-lock.test.js', name: 'a second context on the same folder' },
  { what: "the status page's batches never trimmed to their bound", edits: one('ui/status-model.js', 'if (list.length > limit)', 'if (false)'), test: 'ui/status-model.test.js', name: 'per-partition times' },
  { what: 'a failed last snapshot not listed among the problems', edits: one('ui/status-model.js', "s.outcome === 'failed' ? [", 'false ? ['), test: 'ui/status-model.test.js', name: 'newest snapshot in the folder' },
  { what: 'metrics on localhost and the page on 127.0.0.1 at one port taken', edits: one('metrics/options.js', "|| (isLoopback(a) && isLoopback(b) && (a === 'localhost' || b === 'localhost'))", ''), test: 'engine/option-values.test.js', name: 'metrics and the page on one port' },
  { what: 'a ui.token with a space taken', edits: one('metrics/options.js', '|| /\\s/.test(valid.token)', ''), test: 'ui/status-server.test.js', name: 'off loopback it needs a token' },
  { what: 'ManualClock jumps to the end of an advance before its batches run', edits: one('engine/clock.js', 'this.time = Math.max(this.time, due.time);', 'this.time = Math.max(this.time, target);'), test: 'engine/manual-clock.test.js', name: 'at its own time' },
  { what: 'a cancelled ManualClock timer still runs', edits: one('engine/clock.js', 'this.timers = this.timers.filter((t) => t !== timer);', 'void timer;'), test: 'engine/manual-clock.test.js', name: 'cancelled timer' },
  { what: "the page up from the context's making, not its start()", edits: one('engine/observability.js', 'this.status.started();', ''), test: 'ui/status-server.test.js', name: 'counts the page up from start()' },
  { what: "a snapshot of this run taken for none once its row left the page's list", edits: one('ui/status-model.js', 'snapshotOnDisk: this.snapshotCompleted ? undefined', "snapshotOnDisk: this.snapshots.some((s) => s.outcome === 'completed') ? undefined"), test: 'ui/status-model.test.js', name: 'newest snapshot in the folder' },
  { what: 'a batch queued behind a failed one runs', edits: one('engine/streaming-context.js', 'if (this.failure) {\n            this.leaveLine(batch);', 'if (false) {\n            this.leaveLine(batch);'), test: 'engine/batch-overlap.test.js', name: 'never runs' },
  { what: 'the change log left unfolded at start, so a migration reads the state before it', edits: one('engine/map-with-state-stream.js', 'for (const store of stores)\n                foldChangeLog(store);\n            return this.prepare(', 'return this.prepare('), test: 'engine/state-version.test.js', name: 'change log held' },
  { what: "a retried batch end taken as done though the history entry is another's", edits: one('storage/zookeeper/offsets.js', "this.holds(this.path('history', batch.batchTime), entry),", ''), test: 'storage/zookeeper/offsets.test.js', name: 'only its history entry' },
  { what: 'a retried batch end taken as done though a later batch is in flight', edits: one('storage/zookeeper/offsets.js', "this.holds(this.path('batch'), ''),", ''), test: 'storage/zookeeper/offsets.test.js', name: 'only its history entry' },
  { what: 'the CLI leaves SIGTERM to the default handler (no cleanup, no 143)', edits: one('cli/main.js', "[['SIGINT', 130], ['SIGTERM', 143]]", "[['SIGINT', 130]]"), test: 'cli/cli.test.js', name: 'by SIGTERM 143' },
  { what: 'StateSpec integer options taken past their upper bound', edits: one('engine/state-spec.js', '|| value < 1 || value > max) {', '|| value < 1) {'), test: 'engine/bad-input.test.js', name: 'StateSpec options and mapping module references' },
  { what: 'StreamingContext integer options taken past their upper bound', edits: one('engine/streaming-context.js', '|| value < min || value > max) {', '|| value < min) {'), test: 'engine/bad-input.test.js', name: 'StreamingContext options' },
  { what: "a write sent before the owner node's deletion was heard of is applied (no check in the multi-op)", edits: one('storage/zookeeper/ownership.js', 'tx.check(node, -1);', ''), test: 'storage/zookeeper/ownership.test.js', name: 'also sent before the news' },
  { what: 'a key removed while in the old generation stays in memory', edits: one('storage/partition/memory-state-map.js', 'if (!this.young.delete(key))\n                        this.old.delete(key);', 'this.young.delete(key);'), test: 'storage/partition/memory-state-map.test.js', name: 'in the old generation when its batch commits' },
  { what: 'a key updated while in the old generation keeps its stale copy there', edits: one('storage/partition/memory-state-map.js', 'return this.admit(key, held);\n        this.old.delete(key);', 'return this.admit(key, held);'), test: 'storage/partition/memory-state-map.test.js', name: 'in the old generation when its batch commits' },
  { what: 'an object state read from LMDB kept in memory by reference', edits: one('storage/partition/memory-state-map.js', 'const fresh = isImmutable(entry[0]) ? entry : new EncodedEntry(copyBytes(bytes), entry[1]);', 'const fresh = entry;'), test: 'storage/partition/memory-state-map.test.js', name: 'changed in place by its reader' },
  { what: "a record failing in a batch's first chunk taken for a crash (its later chunks answer stale)", edits: one('actors/partition.machine.js', "results.find((r) => r.status === 'record-failed' || r.status === 'batch-failed') ?? results.at(-1)", 'results.at(-1)'), test: 'actors/chunked-batches.test.js', name: 'fails in a later chunk' },
  { what: 'an initial-state key idle exactly the timeout timed out a batch early', edits: one('actors/apply-shard.js', 'if (time !== undefined && time < threshold)', 'if (time !== undefined && time <= threshold)'), test: 'storage/export/state-export.test.js', name: 'each key times out once' },
  { what: "the clock checked against an initial-state source's first entry, not its newest", edits: one('actors/shard-encoder.js', 'if (newest === undefined || lastUpdated > newest)', 'if (newest === undefined)'), test: 'storage/export/state-export.test.js', name: 'each key times out once' },
  { what: 'state count sums partitions at different batches without a word', edits: one('cli/state.js', 'const uneven = batches.size > 1;', 'const uneven = false;'), test: 'cli/cli.test.js', name: 'state count prints' },
  { what: "an export let through into a data folder's entry linked to another disk", edits: one('storage/export/export-place.js', ', ...entriesOf(dataDir).map((name) => realOr(join(dataDir, name)))];', '];'), test: 'storage/export/state-export.test.js', name: 'refuses a target in the job' },
  { what: "a snapshot's checksum taken over its copy's first MiB only", edits: one('storage/snapshots/checksum.js', 'hash.update(chunk.subarray(0, n));', '{ hash.update(chunk.subarray(0, n)); break; }'), test: 'storage/snapshots/snapshots.test.js', name: 'past the first MiB' },
  { what: 'the batch history trimmed to the newest snapshot, not the oldest kept', edits: one('engine/snapshot-scheduler.js', 'await this.host.retainFrom(oldest.batchTime);', 'await this.host.retainFrom(batchTime);'), test: 'engine/snapshot-scheduler.test.js', name: 'one is still running is not taken' },
  { what: 'a restore goes by the newest surviving partition, not the oldest', edits: one('storage/snapshots/restore.js', '(m === undefined || h.lastBatch < m)', '(m === undefined || h.lastBatch > m)'), test: 'storage/snapshots/restore.test.js', name: 'oldest surviving partition' },
  { what: "a start settles only stream 0's interrupted swap: a second stream's reshard left half done starts it empty", edits: one('engine/local-recovery.js', 'recoverInterruptedSwaps(context.dataDir, stream.stateIndex);', 'recoverInterruptedSwaps(context.dataDir, 0);'), test: 'cli/cli.test.js', name: 'second stream killed between' },
  { what: 'a snapshot whose copy fails the file check still counts', edits: one('storage/snapshots/writer.js', 'if (problem)', 'if (false)'), test: 'storage/snapshots/snapshots.test.js', name: 'cut short fails its snapshot' },
  { what: "a start that meets inspect's brief look at the lock fails at once", edits: one('storage/data-lock.js', 'const deadline = Date.now() + PROBE_GRACE_MS;', 'const deadline = Date.now();'), test: 'engine/data-dir-lock.test.js', name: 'brief look' },
  { what: "a partition with no stored position of a known topic starts at 'latest', skipping what it holds", edits: one('engine/sources/kafka.js', "offset: topicKnown || o.startingOffsets === 'earliest'", "offset: o.startingOffsets === 'earliest'"), test: 'integration/kafka-source.test.js', name: 'no stored position' },
  { what: 'a Kafka stream takes a topic listed twice', edits: one('engine/sources/kafka-options.js', 'if (new Set(list).size !== list.length)', 'if (false)'), test: 'engine/bad-input.test.js', name: 'kafkaStream options' },
  { what: 'maxRecordsPerBatch taken past its upper bound', edits: one('engine/sources/kafka-options.js', 'maxRecordsPerBatch < 1 || maxRecordsPerBatch > 10_000_000', 'maxRecordsPerBatch < 1'), test: 'engine/bad-input.test.js', name: 'kafkaStream options' },
  { what: 'awaitIdle() resolves before the batches that fell due', edits: one('engine/streaming-context.js', '        await this.jobs;\n        if (this.failure)', '        if (this.failure)'), test: 'engine/manual-clock.test.js', name: 'awaitIdle' },
  { what: "batch.completed's per-partition key counts wrong", edits: one('engine/streaming-context.js', 'thread: p.thread, keyCount: p.keyCount, memoryEntries', 'thread: p.thread, keyCount: 0, memoryEntries'), test: 'engine/batch-events.test.js', name: 'partition figures' },
  { what: "inspect without ZooKeeper leaves out the newest snapshot's Kafka positions", edits: one('cli/inspect.js', 'sources: newest.manifest.sources };', "sources: newest.manifest.sources.filter((s) => s.kind !== 'kafka') };"), test: 'cli/cli.test.js', name: 'snapshot create records the Kafka positions' },
  { what: 'snapshot list --verify --json calls a damaged snapshot verified', edits: one('cli/snapshot.js', '{ verified: problems.length === 0, problems }', '{ verified: true, problems }'), test: 'cli/cli.test.js', name: 'snapshot list shows the snapshots' },
  { what: "snapshot list gives one partition's bytes as the snapshot's", edits: one('cli/snapshot.js', 'bytes: parts.reduce((n, p) => n + p.bytes, 0),', 'bytes: parts[0]?.bytes ?? 0,'), test: 'cli/cli.test.js', name: 'snapshot list shows the snapshots' },
  { what: "inspect's snapshot key counts and sizes wrong", edits: [...one('cli/inspect.js', 'keyCount: s.manifest.streams.reduce((n, m) => n + m.keyCount, 0),', 'keyCount: 0,'), ...one('cli/inspect.js', 'bytes: s.manifest.streams.flatMap((m) => m.partitions).reduce((n, p) => n + p.bytes, 0),', 'bytes: 0,')], test: 'cli/cli.test.js', name: 'snapshot list shows the snapshots' },
  { what: 'Kafka lag below 0', edits: one('metrics/kafka-lag.js', 'Math.max(0, high - p.next)', 'high - p.next'), test: 'metrics/job-metrics-events.test.js', name: 'lag is never below 0' },
  { what: 'a broker problem stays reported after the broker answers again', edits: one('metrics/kafka-lag.js', 'this.problem = undefined;', ''), test: 'metrics/job-metrics-events.test.js', name: 'lag is never below 0' },
  { what: "a record's State keeps the update flag of the record before it", edits: one('engine/state.js', 'this.updated = false;\n        this.removed = false;\n    }\n    wrapTimingOut', 'this.removed = false;\n    }\n    wrapTimingOut'), test: 'conformance/map-with-state.test.js', name: 'starts afresh' },
  { what: "a record's State keeps the removal flag of the record before it", edits: one('engine/state.js', 'this.updated = false;\n        this.removed = false;\n    }\n    wrapTimingOut', 'this.updated = false;\n    }\n    wrapTimingOut'), test: 'conformance/map-with-state.test.js', name: 'starts afresh' },
  { what: 'a key ending in a lone high surrogate taken', edits: one('storage/keys.js', '            if (next >= 0xdc00 && next <= 0xdfff)\n                i++;\n            else\n                return i;', '            i++;'), test: 'storage/keys.test.js', name: 'UTF-8 would turn into one' },
  { what: 'U+DBFF taken for a character of its own', edits: one('storage/keys.js', 'code <= 0xdbff)', 'code < 0xdbff)'), test: 'storage/keys.test.js', name: 'UTF-8 would turn into one' },
  { what: "a flat object's ill-formed property name stored as another", edits: one('storage/codec.js', 'if (!isPlain(value[k]) || !wellFormed(k))', 'if (!isPlain(value[k]))'), test: 'storage/codec.test.js', name: 'names a function, a symbol' },
  { what: 'one object referred to twice taken for a cycle', edits: one('storage/codec.js', '    seen.delete(value);\n    return problem;', '    return problem;'), test: 'storage/codec.test.js', name: 'names a function, a symbol' },
  { what: 'a long key of 3-byte characters passed to LMDB, which fails the commit', edits: one('storage/keys.js', 'key.length * 3 > MAX_KEY_BYTES && Buffer', 'key.length > MAX_KEY_BYTES && Buffer'), test: 'storage/keys.test.js', name: 'over the key size' },
  { what: 'a long tuple of numbers passed to LMDB, which fails the commit', edits: one('storage/keys.js', 'Buffer.byteLength(part) + 1 : 10)', 'Buffer.byteLength(part) + 1 : 0)'), test: 'storage/keys.test.js', name: 'over the key size' },
  { what: "store().count() reads each partition's newest batch, not the pinned one", edits: one('storage/partition/state-view.js', 'new BatchLog(store).last(pin.txns[p])', 'new BatchLog(store).last()'), test: 'storage/partition/state-view.test.js', name: 'answer as of the last completed batch' },
  { what: 'start positions not recorded in ZooKeeper', edits: one('storage/zookeeper/offsets.js', "tx.setData(this.path('offsets', p.topic, p.partition), Buffer.from(String(p.offset)));", 'void p;'), test: 'storage/zookeeper/offsets.test.js', name: 'start positions read back' },
  { what: 'a history anchor at a batch the history holds fails as a conflict', edits: one('storage/zookeeper/offsets.js', '        if ((await this.historyTimes()).includes(batchTime))\n            return;\n', ''), test: 'storage/zookeeper/offsets.test.js', name: 'start positions read back' },
  { what: 'an export written with a header batchTime its reader refuses', edits: one('storage/export/state-export.js', 'if (origin.batchTime !== undefined && !Number.isFinite(origin.batchTime)) {', 'if (false) {'), test: 'storage/export/state-export.test.js', name: 'no batch time is refused' },
  { what: 'a retried batch end taken as done though the last batch recorded is another', edits: one('storage/zookeeper/offsets.js', "this.holds(this.path('last-batch'), String(batch.batchTime)),", ''), test: 'storage/zookeeper/offsets.test.js', name: 'only its history entry' },
  { what: "a retried batch end taken as done though a position is another's", edits: one('storage/zookeeper/offsets.js', "...batch.ranges.map((r) => this.holds(this.path('offsets', r.topic, r.partition), String(r.until))),", ''), test: 'storage/zookeeper/offsets.test.js', name: 'only its history entry' },
  { what: "an owner whose session expired is not told by the expiry", edits: one('storage/zookeeper/ownership.js', 'if (id === this.sessionId)', 'if (false)'), test: 'storage/zookeeper/ownership.test.js', name: 'told so, as the expiry' },
  { what: "a claim deletes another instance's live owner node of an earlier epoch (two owners)", edits: one('cluster/coordinator.js', 'holder.instance === this.me.id && holder.epoch < epoch', 'holder.epoch < epoch'), test: 'integration/cluster/coordinator.test.js', name: 'waiting out another owner' },
  { what: 'cluster.maxPairsPerBatch NaN or fractional taken', edits: one('cluster/options.js', '!Number.isInteger(maxPairsPerBatch) || ', ''), test: 'cluster/options.test.js', name: 'malformed' },
  { what: 'cluster.restoreTimeoutMs fractional taken', edits: one('cluster/options.js', '!Number.isInteger(restoreTimeoutMs) || ', ''), test: 'cluster/options.test.js', name: 'malformed' },
  { what: 'cluster.restoreTimeoutMs below 1000 taken', edits: one('cluster/options.js', 'restoreTimeoutMs < 1000', 'restoreTimeoutMs < 100'), test: 'cluster/options.test.js', name: 'malformed' },
  { what: "exportJobState's batch check reads each store's newest batch, not the pinned one", edits: one('storage/export/job-export.js', 'new BatchLog(s).last(txns?.[p])?.batchTime', 'new BatchLog(s).last()?.batchTime'), test: 'storage/export/state-export.test.js', name: 'read the pinned transactions' },
  { what: 'exportJobState exports stores where one partition records no batch at all', edits: one('storage/export/job-export.js', '(t !== newest ? [partition] : [])', '(t !== undefined && t !== newest ? [partition] : [])'), test: 'storage/export/state-export.test.js', name: 'different batches or state versions' },
  { what: 'a ZooKeeper request answered SESSION_EXPIRED fails instead of being tried again', edits: one('storage/zookeeper/session.js', "'OPERATION_TIMEOUT', 'SESSION_EXPIRED']", "'OPERATION_TIMEOUT']"), test: 'storage/zookeeper/session.test.js', name: 'is tried again' },
  { what: 'a ZooKeeper request whose answer never came fails instead of being sent again', edits: one('storage/zookeeper/session.js', '|| error?.transient === true;', '|| false;'), test: 'storage/zookeeper/session.test.js', name: 'is tried again' },
  { what: 'the extra owner node a retried create made is kept', edits: one('storage/zookeeper/ownership.js', "if (name.includes(token) && `${this.owners}/${name}` !== made.node)", 'if (false)'), test: 'storage/zookeeper/ownership.test.js', name: 'create retried after its answer was lost' },
  { what: 'a listener added after the ownership was lost is never told', edits: one('storage/zookeeper/ownership.js', 'if (this.lost)\n            listener(this.lost);\n        else\n            this.listeners.add(listener);', 'this.listeners.add(listener);'), test: 'storage/zookeeper/ownership.test.js', name: 'session ZooKeeper expired is told so' },
  { what: 'a prune for a snapshot older than the whole history drops all of it', edits: one('storage/zookeeper/offsets.js', 'floor === undefined ? [] :', 'floor === undefined ? times :'), test: 'storage/zookeeper/offsets.test.js', name: 'older than the whole history' },
  { what: 'a history entry gone mid-read is left out of the replay without a word', edits: one('storage/zookeeper/offsets.js', 'if (data === undefined)\n                throw new OffsetStoreError(`the batch history in ZooKeeper lost', 'if (data === undefined)\n                continue;\n            if (false) throw new OffsetStoreError(`the batch history in ZooKeeper lost'), test: 'storage/zookeeper/offsets.test.js', name: 'between the listing and its read' },
  { what: 'a member above its share gives back its lowest partitions', edits: one('cluster/assignment.js', 'const { key, partition } = mine.pop();', 'const { key, partition } = mine.shift();'), test: 'cluster/assignment.test.js', name: 'gives back its highest partitions' },
  { what: 'a member id given twice is counted as two members', edits: one('cluster/assignment.js', 'const live = [...new Set(members)].sort();', 'const live = [...members].sort();'), test: 'cluster/assignment.test.js', name: 'gives back its highest partitions' },
  { what: "a changelog tombstone's repeated header read from its first copy", edits: one('cluster/changelog.js', 'raw[raw.length - 1] : raw;', 'raw[0] : raw;'), test: 'cluster/changelog.test.js', name: 'Kafka tombstone' },
  { what: 'a dropped dead letter counted among the keys to write again', edits: one('cluster/changelog.js', "if (entry.kind === 'entry')", 'if (true)'), test: 'cluster/changelog.test.js', name: 'dropWaiting' },
  { what: "a restored cluster store records no keys in its batch log", edits: one('cluster/restore-store.js', 'outputs: NO_OUTPUTS, keyCount: last.keyCount });', 'outputs: NO_OUTPUTS, keyCount: 0 });'), test: 'integration/cluster/dropped-batch-restore.test.js', name: 'never ended again' },
  { what: "a restore's rewrite of dropped keys ends with no key count", edits: one('cluster/restore-store.js', 'keyCount: last?.keyCount ?? 0,', 'keyCount: 0,'), test: 'integration/cluster/dropped-batch-restore.test.js', name: 'never ended again' },
  { what: 'a record tried once by default, without onRecordFailure', edits: one('engine/state-spec.js', "failure = { policy: 'stop', maxAttempts: 3 };", "failure = { policy: 'stop', maxAttempts: 1 };"), test: 'actors/supervision.test.js', name: 'maxAttempts is 3 unless given' },
  { what: 'a StateSpec has 2 partitions by default', edits: one('engine/state-spec.js', 'partitions = 4;', 'partitions = 2;'), test: 'engine/stream-operations.test.js', name: 'has 4 partitions' },
  { what: 'a Set given as initial state taken for a read-once iterator', edits: one('engine/state-spec.js', "if (typeof initial.next !== 'function')\n        return initial;", ''), test: 'engine/stream-operations.test.js', name: 'has 4 partitions' },
  { what: 'map/flatMap/filter accepted on a running context', edits: one('engine/dstream.js', 'this.graph.assertBuilding(method);', ''), test: 'engine/bad-input.test.js', name: 'building after start' },
  { what: 'stateSnapshots() accepted on a running context', edits: one('engine/map-with-state-stream.js', "this.graph.assertBuilding('stateSnapshots');", ''), test: 'engine/bad-input.test.js', name: 'building after start' },
  { what: "a flatMap generator's error while read passes unnamed", edits: one('engine/dstream.js', 'step = items.next();\n                    }\n                    catch (error) {\n                        throw new OperationFailure(i, error);', 'step = items.next();\n                    }\n                    catch (error) {\n                        throw error;'), test: 'engine/stream-operations.test.js', name: 'names a filter' },
  { what: 'a flatMap returning null named as returning an object', edits: one('engine/dstream.js', "${out === null ? 'null' : typeof out}", '${typeof out}'), test: 'engine/stream-operations.test.js', name: 'names a filter' },
  { what: 'snapshotsKept above 1000 accepted', edits: one('engine/snapshot-scheduler.js', 'kept < 1 || kept > 1000)', 'kept < 1)'), test: 'engine/bad-input.test.js', name: 'StreamingContext options' },
  { what: 'a snapshot that cannot begin is not reported', edits: one('engine/snapshot-scheduler.js', 'this.host.failed(batchTime, error);\n            return;', 'return;'), test: 'engine/snapshot-scheduler.test.js', name: 'snapshot.failed with its batch' },
  { what: 'a snapshot whose copy fails is not reported', edits: one('engine/snapshot-scheduler.js', '(error) => this.host.failed(batchTime, error))', '() => undefined)'), test: 'engine/snapshot-scheduler.test.js', name: 'snapshot.failed with its batch' },
  { what: "a batch's lookup indexes one fresh slot, not all of them", edits: one('storage/partition/batch-cache.js', 'while (this.indexed < this.list.length)', 'if (this.indexed < this.list.length)'), test: 'conformance/map-with-state.test.js', name: 'record in the sweep batch' },
  { what: 'a keyed output with a number that is no 32-bit integer kept in the integer column', edits: one('storage/partition/batch-outputs.js', '(num | 0) !== num ||', ''), test: 'storage/partition/batch-outputs.test.js', name: 'no 32-bit integer' },
  { what: 'a keyed output longer than [key, number] encoded as [key, number]', edits: one('storage/partition/batch-outputs.js', 'out.length === 2 &&', ''), test: 'storage/partition/batch-outputs.test.js', name: 'no 32-bit integer' },
  { what: 'removing a key without state lowers the key count', edits: one('storage/partition/batch-cache.js', 'if (slot.exists)\n            this.keyDelta--;', 'this.keyDelta--;'), test: 'engine/bad-input.test.js', name: 'remove on a key without state' },
  { what: 'a store cut inside the overflow run of its last value called whole', edits: one('storage/partition/lmdb-file.js', 'if (first + pages > pagesInFile)', 'if (false)'), test: 'storage/partition/store-file-check.test.js', name: 'overflow pages of its last' },
  { what: 'a second close of a gated store takes the gate through a closed descriptor', edits: one('storage/open-gate.js', 'if (closed)\n            return close.apply(this, args);', 'if (false)\n            return close.apply(this, args);'), test: 'storage/open-gate.test.js', name: 'second close does nothing' },
  { what: 'a write after close goes through the gate of a closed descriptor', edits: one('storage/open-gate.js', 'if (depth > 0 || closed)', 'if (depth > 0)'), test: 'storage/open-gate.test.js', name: 'second close does nothing' },
  { what: 'an open whose databases fail leaves its environment open', edits: one('storage/open-gate.js', 'void env.close();', 'void env;'), test: 'storage/open-gate.test.js', name: 'second close does nothing' },
  { what: 'a refused folder lock leaves its descriptor open', edits: one('storage/data-lock.js', 'catch (error) {\n            closeSync(fd);\n            throw error;', 'catch (error) {\n            throw error;'), test: 'engine/data-dir-lock.test.js', name: "gone process's record" },
  { what: "a refusal names the gone process whose record the lock file still holds", edits: one('storage/data-lock.js', 'return holder && !isGone(holder) ? holder : undefined;', 'return holder;'), test: 'engine/data-dir-lock.test.js', name: "gone process's record" },
  { what: "import records the newest lastUpdated, not the export's later batch time", edits: one('cli/transfer.js', "let batchTime = typeof header.batchTime === 'number' ? header.batchTime : 0;", 'let batchTime = 0;'), test: 'cli/cli.test.js', name: "header's batch time over older" },
  { what: 'import defaults to 1 partition', edits: one('cli/transfer.js', 'given ?? fromHeader ?? 4;', 'given ?? fromHeader ?? 1;'), test: 'cli/cli.test.js', name: "header's batch time over older" },
  { what: 'import refuses a header without numPartitions', edits: one('cli/transfer.js', 'if (given === undefined && fromHeader !== undefined && !(', 'if (given === undefined && !('), test: 'cli/cli.test.js', name: "header's batch time over older" },
  { what: 'a failed import leaves its staging folder', edits: one('cli/transfer.js', 'rmSync(staging, { recursive: true, force: true });', ';'), test: 'cli/cli.test.js', name: "header's batch time over older" },
  { what: 'import takes an empty state folder for state', edits: one('cli/transfer.js', 'const hasState = existsSync(target) && readdirSync(target).length > 0;', 'const hasState = existsSync(target);'), test: 'cli/cli.test.js', name: "header's batch time over older" },
  { what: 'a swap keeps an empty state folder as the replaced state', edits: one('storage/stream-swap.js', 'else if (readdirSync(paths.current).length === 0)', 'else if (false)'), test: 'cli/cli.test.js', name: "header's batch time over older" },
  { what: 'a batch that leaves the key table for a Map keeps holding it', edits: one('actors/shard-encoder.js', 'table.release(this);\n        this.table = undefined;', 'this.table = undefined;'), test: 'actors/shard-builder.test.js', name: 'leaves the table for a Map' },
  { what: "an empty batch's compact shrinks the key table another batch holds", edits: one('actors/key-table.js', 'if (this.owner === undefined && this.mask + 1', 'if (this.mask + 1'), test: 'actors/shard-builder.test.js', name: 'keeps its keys whole' },
  { what: 'a release from a batch that no longer holds the key table empties it', edits: one('actors/key-table.js', 'if (this.owner !== owner)\n            return;', ''), test: 'actors/shard-builder.test.js', name: 'keeps its keys whole' },
  { what: 'a recorded range cut by the low watermark reported lost to its end', edits: one('engine/sources/kafka-gaps.js', 'until: Math.min(low, r.until)', 'until: r.until'), test: 'engine/kafka-gaps.test.js', name: 'cut by the low watermark' },
  { what: 'an empty recorded range reported as a gap', edits: one('engine/sources/kafka-gaps.js', 'r.from < low && r.from < r.until', 'r.from < low'), test: 'engine/kafka-gaps.test.js', name: 'empty recorded range' },
  { what: "a data-lost event without its gap's batch", edits: one('engine/sources/kafka-gaps.js', '...(gap.batchTime === undefined ? {} : { batchTime: gap.batchTime }),', ''), test: 'engine/kafka-gaps.test.js', name: 'cut by the low watermark' },
  { what: 'one lost record called "1 records"', edits: one('engine/sources/kafka-gaps.js', "record${count === 1 ? '' : 's'}", 'records'), test: 'engine/kafka-gaps.test.js', name: 'empty recorded range' },
  { what: "kafkaStream(null) fails as a TypeError", edits: one('engine/sources/kafka-options.js', "if (options === null || typeof options !== 'object')", "if (false)"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "a Kafka topic name of 250 characters accepted", edits: one('engine/sources/kafka-options.js', "{1,249}$/", "{1,}$/"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "an empty clientId accepted", edits: one('engine/sources/kafka-options.js', "if (options.clientId !== undefined && !nonEmpty(options.clientId))", "if (options.clientId === null)"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "maxRecordsPerBatch 1.5 accepted", edits: one('engine/sources/kafka-options.js', "!Number.isInteger(maxRecordsPerBatch) ||", "!Number.isFinite(maxRecordsPerBatch) ||"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "a groupSessionTimeoutMs that is no integer accepted", edits: one('engine/sources/kafka-options.js', "if (!Number.isInteger(groupSessionTimeoutMs) ||", "if ("), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "ssl: null or [] accepted", edits: one('engine/sources/kafka-options.js', "(ssl === null || typeof ssl !== 'object' || Array.isArray(ssl))", "(typeof ssl !== 'object')"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "sasl as a string or an array not named as sasl", edits: one('engine/sources/kafka-options.js', "if (sasl === null || typeof sasl !== 'object' || Array.isArray(sasl))", "if (sasl === null)"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "a custom sasl mechanism named ''", edits: one('engine/sources/kafka-options.js', "&& typeof fields.mechanism === 'string' && fields.mechanism !== '')", ")"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "sasl aws needs none of its fields", edits: one('engine/sources/kafka-options.js', "aws: ['authorizationIdentity', 'accessKeyId', 'secretAccessKey']", "aws: []"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "clientId defaults to plain statestream", edits: one('engine/sources/kafka-options.js', "clientId: given(options.clientId, `statestream-${appName}`)", "clientId: given(options.clientId, 'statestream')"), test: 'engine/bad-input.test.js', name: 'wrong shape are refused' },
  { what: "inspect calls the owner's node of an older epoch the owner", edits: one('cli/cluster-report.js', 'p.holder === p.owner && p.holderEpoch === p.epoch ?', 'p.holder === p.owner ?'), test: 'cli/cluster-lines.test.js' },
  { what: 'export --snapshot of a stream the snapshot lacks fails on an undefined manifest', edits: one('cli/transfer.js', '    if (!manifest)', '    if (false)'), test: 'cli/cli.test.js', name: 'export → import into a new data folder' },
  { what: 'import of a missing file fails with a bare ENOENT', edits: one('cli/transfer.js', 'if (!existsSync(file))', 'if (false)'), test: 'cli/cli.test.js', name: 'export → import into a new data folder' },
  { what: 'a restore takes the partition count from the newest snapshot, not the healthy stores', edits: one('storage/snapshots/restore.js', 'healthy.find((h) => h.layout)?.layout.numPartitions ??', 'undefined ??'), test: 'storage/snapshots/restore.test.js', name: 'resharded since their newest surviving snapshot' },
  { what: "memory's clear() keeps the change log's overlay it read", edits: one('storage/partition/memory-state-map.js', '        this.durable.reset?.();\n', ''), test: 'actors/memory-never-stale.test.js', name: 'the log is read again' },
  { what: 'memory of capacity 0 keeps what it reads', edits: one('storage/partition/memory-state-map.js', 'if (this.capacity === 0)\n            return entry;\n        const fresh', 'const fresh'), test: 'actors/memory-never-stale.test.js', name: 'stateCacheEntries 0' },
  { what: 'a key updated while in the young generation is kept again, twice', edits: one('storage/partition/memory-state-map.js', 'if (this.young.get(key) !== undefined)\n            this.young.set(key, held);\n        else\n            this.keep(key, held);', 'this.keep(key, held);'), test: 'storage/partition/memory-state-map.test.js', name: 'held once, and gone once removed' },
  { what: 'a key read from the old generation is left there', edits: one('storage/partition/memory-state-map.js', '                this.old.delete(key);\n                this.keep(key, held);\n', ''), test: 'storage/partition/memory-state-map.test.js', name: 'moves to the young one' },
  { what: "store().get reads the change log's newest overlay, not the pinned one", edits: one('storage/partition/state-view.js', 'pin.overlay(partition))', 'readOverlay(store))'), test: 'storage/partition/state-view.test.js', name: '800 other keys' },
  { what: 'a refused migration of several partitions leaves their staged entries', edits: one('storage/partition/migrate.js', 'for (const store of staged)\n            discardStaged(store);', ';'), test: 'engine/state-version.test.js', name: 'leaves the stores unchanged' },
  { what: 'a first message over the byte limit sends an empty request before it', edits: one('cluster/send-chunks.js', 'if (chunk.length > 0 && (', 'if (('), test: 'cluster/send-chunks.test.js', name: 'first message over the limit' },
  { what: "a request's bytes leave out the keys", edits: one('cluster/send-chunks.js', 'const size = (message.key?.length ?? 0) +', 'const size = 0 +'), test: 'cluster/send-chunks.test.js', name: 'first message over the limit' },
  { what: 'a request filled to the byte limit exactly is cut', edits: one('cluster/send-chunks.js', 'bytes + size > maxBytes', 'bytes + size >= maxBytes'), test: 'cluster/send-chunks.test.js', name: 'first message over the limit' },
  { what: 'ManualClock.setTime(NaN) named as advance', edits: one('engine/clock.js', 'if (!Number.isFinite(timeMs))', 'if (false)'), test: 'engine/option-values.test.js', name: 'NaN and Infinity' },
];

const { values } = parseArgs({ options: { only: { type: 'string' }, quick: { type: 'boolean', default: false }, check: { type: 'boolean', default: false } } });
const dist = fileURLToPath(new URL('..', import.meta.url));
// A sibling of dist: the same depth, so that package.json and node_modules resolve as from dist.
const copy = `${dist.replace(/\/$/, '')}-mutants/`;
const srcOf = (root: string, file: string) => `${root}src/${file}`;

const chosen = MUTANTS.filter((m) => (!values.quick || !m.slow) && (!values.only || `${m.what} ${m.test} ${m.edits.map((e) => e.file).join(' ')}`.includes(values.only)));
const missing = chosen.flatMap((m) => m.edits.flatMap((e) => {
  const count = readFileSync(srcOf(dist, e.file), 'utf8').split(e.from).length - 1;
  return count === 1 ? [] : [`${m.what}: ${e.file} holds ${JSON.stringify(e.from)} ${count} times, not once`];
}));
if (missing.length > 0) {
  console.error(`mutants: edits that no longer find their code (rebuild, or update the list):\n  ${missing.join('\n  ')}`);
  process.exit(2);
}
if (values.check) {
  console.log(`mutants: the ${chosen.length} entries each find their code once`);
  process.exit(0);
}

interface Outcome {
  /** The test ran to its end: exit 0 or 1, not killed or timed out. */
  ran: boolean;
  passed: number;
  failed: number;
  seconds: number;
}

/** A test, however long (a Kafka client's retries run out after about two minutes), ends within ten. */
const RUN_DEADLINE_MS = 600_000;
let running: ReturnType<typeof spawn> | undefined;

function runTest(m: Mutant): Promise<Outcome> {
  const started = Date.now();
  const args = ['--test', '--test-timeout=300000', ...(m.name ? [`--test-name-pattern=${m.name}`] : []), `${copy}test/${m.test}`];
  // A group of its own: node --test runs each file in a process of its own, which a stop must take down too.
  const child = (running = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'ignore'], detached: true }));
  const deadline = setTimeout(() => killGroup(child), RUN_DEADLINE_MS);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output = (output + d.toString('utf8')).slice(-100_000)));
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(deadline);
      running = undefined;
      const count = (what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(output)?.[1] ?? 0);
      // A test whose promise never settles ends cancelled (the event loop ran dry): it did not pass.
      resolve({ ran: code === 0 || code === 1, passed: count('pass'), failed: count('fail') + count('cancelled'), seconds: (Date.now() - started) / 1000 });
    }),
  );
}

function killGroup(child: ReturnType<typeof spawn>): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

const cleanUp = () => {
  if (running) killGroup(running);
  rmSync(copy, { recursive: true, force: true });
};
process.on('exit', cleanUp);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

rmSync(copy, { recursive: true, force: true });
cpSync(dist, copy, { recursive: true });

/** Each test as built, once: it must pass before a mutant's failure can mean anything. */
const baselines = new Map<string, Outcome>();
const survived: string[] = [];
const broken: string[] = [];
for (const [i, m] of chosen.entries()) {
  const key = `${m.test} ${m.name ?? ''}`;
  if (!baselines.has(key)) baselines.set(key, await runTest(m));
  const baseline = baselines.get(key)!;
  const label = `${String(i + 1).padStart(2)}/${chosen.length}`;
  if (!baseline.ran || baseline.failed > 0 || baseline.passed === 0) {
    broken.push(m.what);
    console.log(`${label} NO TEST  ${m.what}: ${m.test}${m.name ? ` (${m.name})` : ''} does not pass as built (${baseline.passed} passed, ${baseline.failed} failed${baseline.ran ? '' : ', did not run to its end'})`);
    continue;
  }
  const originals = m.edits.map((e) => [srcOf(copy, e.file), readFileSync(srcOf(copy, e.file), 'utf8')] as const);
  try {
    for (const e of m.edits) writeFileSync(srcOf(copy, e.file), readFileSync(srcOf(copy, e.file), 'utf8').replace(e.from, () => e.to));
    const outcome = await runTest(m);
    const caught = outcome.ran && outcome.failed > 0;
    if (!caught) (outcome.ran ? survived : broken).push(m.what);
    const verdict = caught ? 'caught  ' : outcome.ran ? 'SURVIVED' : 'NO RUN  ';
    console.log(`${label} ${verdict} ${m.what} (${m.test}, ${outcome.seconds.toFixed(0)} s)`);
  } finally {
    for (const [path, text] of originals) writeFileSync(path, text);
  }
}
const problems = [...survived.map((w) => `survived: ${w}`), ...broken.map((w) => `could not be judged: ${w}`)];
console.log(problems.length === 0 ? `mutants: every one of ${chosen.length} was caught` : `mutants: ${problems.length} of ${chosen.length} not caught:\n  ${problems.join('\n  ')}`);
process.exit(problems.length === 0 ? 0 : 1);
