import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { asideFolder, commitSwap, interruptedSwap, moveWithSwap, recoverInterruptedSwaps, swapPaths, type SwapStep } from '../../src/storage/stream-swap.js';
import { tempDir } from '../helpers.js';

describe('a swap of a stream\'s stores stopped after its last rename', () => {
  it('leaves no marker or record of moves in the state folder once a start or a command settles the folder, and reports nothing to settle', () => {
    const dataDir = tempDir();
    const paths = swapPaths(dataDir, 0, 'importing');
    mkdirSync(paths.current, { recursive: true });
    writeFileSync(join(paths.current, 'old-store'), 'old');
    mkdirSync(paths.building);
    writeFileSync(join(paths.building, 'new-store'), 'new');
    // What moves with the swap (as a restore retires snapshots), recorded in the new stores' folder.
    mkdirSync(join(dataDir, 'retire'));
    moveWithSwap(paths, [[join(dataDir, 'retire'), join(dataDir, 'retired')]]);
    const stop = (step: SwapStep) => {
      if (step === 'new-moved') throw new Error('stopped at new-moved');
    };
    assert.throws(() => commitSwap(paths, asideFolder(dataDir, 0, 'aside'), stop), /stopped at new-moved/);
    assert.deepEqual(readdirSync(paths.current).sort(), ['complete', 'moved', 'new-store'], 'the stop came before the records were taken out');
    assert.equal(interruptedSwap(dataDir, 0), undefined, 'the new stores are in place: nothing is half done');

    assert.deepEqual(recoverInterruptedSwaps(dataDir, 0), []);
    assert.deepEqual(readdirSync(paths.current), ['new-store']);
    assert.equal(readFileSync(join(paths.current, 'new-store'), 'utf8'), 'new');
    assert.deepEqual(readdirSync(join(dataDir, 'replaced', 'aside', 'state-0')), ['old-store'], 'the old stores kept aside');
    assert.deepEqual(readdirSync(dataDir).sort(), ['replaced', 'retired', 'state-0']);
  });
});
