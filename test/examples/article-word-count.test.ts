import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { StateSpec } from '../../src/index.js';
import { fixture, keyedJob, tempDir } from '../helpers.js';
import { produceWithKcat } from '../integration/services/kafka.js';
import { useServices } from '../integration/services/suite.js';
import { startKafkaWordCount } from '../integration/job-process.js';
import { countsByWord } from './printed-counts.js';
import { createTypist } from '../../examples/word-count/typist.js';

const run = promisify(execFile);
const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}/main.js`, import.meta.url));

/**
 * The article's rule, seen from the outside: each printed count is the previous one plus
 * one, except after 11, where one occurrence removed the word silently and the next printed 1.
 */
function assertArticleSequence(byWord: Map<string, number[]>): void {
  for (const [word, counts] of byWord) {
    assert.equal(counts[0], 1, `${word} starts at 1: ${counts.join(',')}`);
    for (let i = 1; i < counts.length; i++) {
      assert.equal(counts[i], counts[i - 1] === 11 ? 1 : counts[i - 1] + 1, `${word}: ${counts.join(',')}`);
    }
  }
}

describe("the article's word count", () => {
  it('counts a word up to 11, removes it at its next occurrence, and starts again at 1 (the mapping module the examples load)', async () => {
    const job = await keyedJob(StateSpec.function<string, number, number, [string, number]>(fixture('article-count')).numPartitions(2), { dataDir: tempDir() });
    try {
      const words = (n: number) => Array.from({ length: n }, () => ['BBBBBBB', 1] as [string, number]);
      assert.deepEqual(await job.batch(words(11)), Array.from({ length: 11 }, (_, i) => ['BBBBBBB', i + 1]), 'Word BBBBBBB, count 11 is emitted');
      assert.equal(job.stream.store().get('BBBBBBB'), 11);
      assert.deepEqual(await job.batch(words(3)), [['BBBBBBB', 1], ['BBBBBBB', 2]], 'the 12th occurrence removes it and emits nothing; the 13th starts at 1');
    } finally {
      await job.ssc.stop();
    }
  });

  it('examples/word-count prints "count 11" once per round of a word, as the article\'s console does, for every line its typist typed', async () => {
    // An interval short enough that batches queue behind slow ones: each still takes one turn of the typist.
    const { stdout } = await run(process.execPath, [example('word-count'), '--batch-ms', '20', '--batches', '25', '--seed', '1', '--snapshot-every', '0', '--data-dir', join(tempDir(), 'wc')], { timeout: 120_000 });
    const byWord = countsByWord(stdout);
    assert.ok([...byWord.values()].some((counts) => counts.includes(11)), `some word reached 11:\n${stdout}`);
    assertArticleSequence(byWord);

    // What the same seed types, counted by the article's rule: every printed count, none missing, none twice.
    const type = createTypist(1);
    const counts = new Map<string, number>();
    const expected = new Map<string, number[]>();
    for (let turn = 0; turn < 25; turn++) {
      for (const word of type(5).flatMap((line) => line.split(/\s+/)).filter(Boolean)) {
        const count = counts.get(word) ?? 0;
        if (count === 11) {
          counts.delete(word);
          continue;
        }
        counts.set(word, count + 1);
        expected.set(word, [...(expected.get(word) ?? []), count + 1]);
      }
    }
    assert.deepEqual(new Map([...byWord].sort()), new Map([...expected].sort()));
    const lines = [...stdout.matchAll(/ done: (\d+) lines in /g)].map((m) => Number(m[1]));
    assert.deepEqual(lines.slice(0, 25), Array.from({ length: 25 }, () => 5), 'each of the first 25 batches took one turn of 5 lines');
    assert.ok(lines.slice(25).every((n) => n === 0), `batches after the last turn took nothing: ${lines.join(',')}`);
  });

  describe('examples/kafka-word-count', { timeout: 180_000 }, () => {
    const services = useServices();

    it('counts words typed with kcat by the same rule', async () => {
      const topic = 'article-words';
      await services.kafka.createTopic(topic, 2);
      const example = startKafkaWordCount({
        brokers: services.kafka.brokers, topic, zookeeper: services.zk.connectString, group: 'article', dataDir: join(tempDir(), 'kwc'), zkRoot: '/statestream/article-words',
      });
      try {
        // Thirteen BBBBBBB in one message: one batch, one partition, in order.
        await produceWithKcat(services.kafka.brokers, topic, [{ value: Array(13).fill('BBBBBBB').join(' ') }, { value: 'AAAA' }]);
        const deadline = Date.now() + 90_000;
        // The counts are printed line by line and may arrive in pieces: wait for all twelve, each line whole.
        const printed = () => {
          const out = example.output();
          return /Word AAAA, count 1\n/.test(out) && (countsByWord(out).get('BBBBBBB')?.length ?? 0) >= 12 && out.endsWith('\n');
        };
        while (!printed()) {
          if (Date.now() > deadline) assert.fail(`not all counts for BBBBBBB and AAAA within 90 s; output:\n${example.output()}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.deepEqual(countsByWord(example.output()).get('BBBBBBB'), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 1]);
      } finally {
        await example.stop();
      }
    });
  });
});
