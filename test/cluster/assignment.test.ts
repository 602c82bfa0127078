import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextAssignment, nextClusterAssignment, ownedBy, sameAssignment, sourcesReadBy, type Assignment } from '../../src/cluster/assignment.js';

const counts = (a: Assignment, members: string[]) => members.map((m) => ownedBy(a, m).length);

describe('cluster assignment', () => {
  it('spreads every partition of every stream over the members, ⌊P/m⌋ or ⌈P/m⌉ each, epoch 1 at first', () => {
    const a = nextAssignment(undefined, ['b', 'a', 'c'], { 0: 8, 1: 3 });
    assert.equal(a.generation, 1);
    assert.deepEqual(counts(a, ['a', 'b', 'c']).sort(), [3, 4, 4]);
    for (const partitions of Object.values(a.streams)) for (const p of partitions) assert.deepEqual([typeof p.owner, p.epoch], ['string', 1]);
    assert.deepEqual(nextAssignment(undefined, ['c', 'a', 'b'], { 0: 8, 1: 3 }), a, 'deterministic whatever the order of members');
  });

  it('moves only the partitions of a member that left, and bumps only their epochs', () => {
    const a = nextAssignment(undefined, ['a', 'b', 'c'], { 0: 9 });
    const b = nextAssignment(a, ['a', 'c'], { 0: 9 });
    assert.deepEqual(counts(b, ['a', 'c']).sort(), [4, 5]);
    b.streams[0].forEach((p, i) => {
      const before = a.streams[0][i];
      if (before.owner === 'b') assert.deepEqual([p.owner !== 'b', p.epoch], [true, 2], `partition ${i} moved`);
      else assert.deepEqual(p, before, `partition ${i} stayed`);
    });
  });

  it('gives a joining member its share, taking only what balance needs from the others', () => {
    const a = nextAssignment(undefined, ['a', 'b'], { 0: 8 });
    const b = nextAssignment(a, ['a', 'b', 'c'], { 0: 8 });
    assert.deepEqual(counts(b, ['a', 'b', 'c']).sort(), [2, 3, 3]);
    const moved = b.streams[0].filter((p, i) => p.owner !== a.streams[0][i].owner);
    assert.equal(moved.length, 2, 'two partitions moved to the new member');
    for (const p of moved) assert.deepEqual([p.owner, p.epoch], ['c', 2]);
  });

  it('evens out what giving back the surplus leaves uneven: 7 partitions over 2, then 3 members, moves two', () => {
    const a = nextAssignment(undefined, ['b', 'c'], { 0: 7 });
    const b = nextAssignment(a, ['a', 'b', 'c'], { 0: 7 });
    assert.deepEqual(counts(b, ['a', 'b', 'c']).sort(), [2, 2, 3]);
    const moved = b.streams[0].filter((p, i) => p.owner !== a.streams[0][i].owner);
    assert.equal(moved.length, 2, 'the new member takes two, no more');
    for (const p of moved) assert.deepEqual([p.owner, p.epoch], ['a', 2]);
  });

  it('a member above its share gives back its highest partitions, and a member id given twice counts once', () => {
    const alone = nextAssignment(undefined, ['a'], { 0: 6 });
    const shared = nextAssignment(alone, ['a', 'b'], { 0: 6 });
    assert.deepEqual(shared.streams[0].map((p) => p.owner), ['a', 'a', 'a', 'b', 'b', 'b'], 'a keeps its lowest three');
    assert.deepEqual(shared.streams[0].map((p) => p.epoch), [1, 1, 1, 2, 2, 2], 'only the three that moved have a new epoch');
    // A member listed twice (two registrations read under one id) is still one share, and moves nothing more.
    assert.deepEqual(nextAssignment(alone, ['a', 'b', 'a'], { 0: 6 }), shared);
  });

  it('a member that leaves and comes back gets partitions under new epochs, never its old ones silently', () => {
    const a = nextAssignment(undefined, ['a', 'b'], { 0: 4 });
    const b = nextAssignment(a, ['a'], { 0: 4 });
    const c = nextAssignment(b, ['a', 'b'], { 0: 4 });
    const backToB = [...c.streams[0].entries()].filter(([, p]) => p.owner === 'b');
    assert.equal(backToB.length, 2, 'the member back gets its share');
    for (const [i, p] of backToB) assert.ok(p.epoch > b.streams[0][i].epoch, `partition ${i} went back to b under epoch ${p.epoch}, not past ${b.streams[0][i].epoch}`);
    assert.equal(c.generation, 3);
  });

  it('a member that registered again unseen (restarted, or its session expired, under the same id) keeps its partitions under new epochs', () => {
    const a = nextClusterAssignment(undefined, ['a', 'b'], { 0: 4 }, { words: 2 }, { a: 'a1', b: 'b1' });
    assert.deepEqual(a.incarnations, { a: 'a1', b: 'b1' });
    const same = nextClusterAssignment(a, ['a', 'b'], { 0: 4 }, { words: 2 }, { a: 'a1', b: 'b1' });
    assert.ok(sameAssignment(a, same), 'the same registrations: nothing to write');
    const b = nextClusterAssignment(a, ['a', 'b'], { 0: 4 }, { words: 2 }, { a: 'a1', b: 'b2' });
    assert.ok(!sameAssignment(a, b), 'a new registration is a new assignment');
    assert.deepEqual(b.incarnations, { a: 'a1', b: 'b2' });
    a.streams[0].forEach((p, i) => {
      assert.equal(b.streams[0][i].owner, p.owner, `partition ${i} stays with its owner`);
      assert.equal(b.streams[0][i].epoch, p.owner === 'b' ? p.epoch + 1 : p.epoch, `partition ${i} of ${p.owner}`);
    });
    assert.deepEqual(b.sources, a.sources, 'source partitions stay where they are');
    // A member that owns no state partition registered again: only the registrations change, and that is still written.
    const lone = nextClusterAssignment(undefined, ['a', 'b', 'c'], { 0: 2 }, {}, { a: 'a1', b: 'b1', c: 'c1' });
    const idle = ['a', 'b', 'c'].find((m) => ownedBy(lone, m).length === 0)!;
    const again = nextClusterAssignment(lone, ['a', 'b', 'c'], { 0: 2 }, {}, { ...lone.incarnations, [idle]: `${idle}2` });
    assert.deepEqual(again.streams, lone.streams);
    assert.ok(!sameAssignment(lone, again));
  });

  it('names what a member owns with its epoch, records no incarnation it was not given, and is never the same as no assignment', () => {
    const first = nextAssignment(undefined, ['a'], { 0: 1 });
    assert.deepEqual(ownedBy(first, 'a'), [{ stream: 0, partition: 0, epoch: 1 }]);
    assert.equal('incarnations' in first, false, JSON.stringify(first));
    assert.equal(sameAssignment(undefined, first), false);
  });

  it('a reader above its share gives back its highest source partitions, by topic name and partition, whatever order the topics were given in', () => {
    const alone = nextClusterAssignment(undefined, ['a'], { 0: 1 }, { b: 2, a: 2 });
    const shared = nextClusterAssignment(alone, ['a', 'x'], { 0: 1 }, { b: 2, a: 2 });
    assert.deepEqual(sourcesReadBy(shared, 'x'), [{ topic: 'b', partition: 0 }, { topic: 'b', partition: 1 }]);
    assert.deepEqual(sourcesReadBy(shared, 'a'), [{ topic: 'a', partition: 0 }, { topic: 'a', partition: 1 }]);
  });

  it('with no member, no partition has an owner', () => {
    const a = nextAssignment(nextAssignment(undefined, ['a'], { 0: 2 }), [], { 0: 2 });
    assert.deepEqual(a.streams[0], [{ owner: undefined, epoch: 2 }, { owner: undefined, epoch: 2 }]);
  });

  it('shares out source partitions beside state partitions, each kind balanced on its own, sources sticky too', () => {
    const a = nextClusterAssignment(undefined, ['a', 'b', 'c'], { 0: 6 }, { words: 3 });
    assert.deepEqual(counts(a, ['a', 'b', 'c']), [2, 2, 2], 'state partitions balanced alone');
    assert.deepEqual(['a', 'b', 'c'].map((m) => sourcesReadBy(a, m).length), [1, 1, 1], 'each member reads one source partition');
    assert.deepEqual(sourcesReadBy(a, 'a').concat(sourcesReadBy(a, 'b'), sourcesReadBy(a, 'c')).map((s) => s.partition).sort(), [0, 1, 2], 'every source partition read once');
    const b = nextClusterAssignment(a, ['a', 'c'], { 0: 6 }, { words: 3 });
    const readByB = sourcesReadBy(a, 'b')[0].partition;
    assert.ok(b.sources!.words.every((p, i) => (i === readByB ? p.owner !== 'b' : p.owner === a.sources!.words[i].owner)), 'only the leaver\'s source partition moved');
    assert.ok(!sameAssignment(a, b));
    assert.ok(sameAssignment(b, nextClusterAssignment(b, ['a', 'c'], { 0: 6 }, { words: 3 })), 'nothing moves when nothing changed');
    const moved = { ...b, sources: { words: b.sources!.words.map((p) => ({ ...p, owner: 'a' })) } };
    assert.ok(!sameAssignment(b, moved), 'a change of source reader is a change of assignment');
  });
});
