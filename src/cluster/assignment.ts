/**
 * Which instance owns which state partition: pure functions, shared by the leader that
 * writes the assignment and by the tests and tools that read it (Flink's
 * KeyGroupRangeAssignment in spirit: small, deterministic, tested alone).
 */

/** One partition's owner, and the epoch that grows each time its owner changes. */
export interface PartitionOwner {
  owner: string | undefined;
  epoch: number;
}

export interface Assignment {
  /** Grows with each assignment the leader writes. */
  generation: number;
  /** Per mapWithState stream (by its index), one entry per state partition. */
  streams: Record<string, PartitionOwner[]>;
  /** Per source topic, one entry per partition: the instance whose stage 1 reads it (epochs unused). */
  sources?: Record<string, PartitionOwner[]>;
  /**
   * Per member, the registration the assignment was made for. An instance takes partitions
   * only from an assignment that names its own registration: one that restarted (or whose
   * session expired) under the same id is a new owner, and its partitions' epochs move on.
   */
  incarnations?: Record<string, string>;
}

export interface PartitionRef {
  stream: number;
  partition: number;
}

/** A partition of one of the assignment's keys (a state stream's index, or a source topic). */
interface Slot {
  key: string;
  partition: number;
}

const bySlot = (a: Slot, b: Slot) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.partition - b.partition);

function loads(assignment: Record<string, PartitionOwner[]>, members: readonly string[]): Map<string, Slot[]> {
  const owned = new Map(members.map((m) => [m, [] as Slot[]]));
  for (const [key, partitions] of Object.entries(assignment)) {
    partitions.forEach((p, partition) => {
      if (p.owner !== undefined) owned.get(p.owner)?.push({ key, partition });
    });
  }
  return owned;
}

/**
 * The next assignment for `members` (instance ids) and `layout` (partitions per stream).
 * Sticky: a partition stays with its owner while that owner is a member and not above its
 * share; only what balance needs moves. Every member ends with ⌊P/m⌋ or ⌈P/m⌉ partitions
 * of the P in all streams. A partition whose owner changes gets epoch + 1 (so a restore can
 * tell its writes from those of the owner before), and so does one whose owner registered
 * again (`incarnations` differs from the previous assignment's): a process that restarted
 * under the same id must not take its predecessor's unfinished batch for its own.
 * Deterministic for the same inputs.
 */
export function nextAssignment(previous: Assignment | undefined, members: readonly string[], layout: Record<string, number>, incarnations: Record<string, string> = {}): Assignment {
  const live = [...new Set(members)].sort();
  const streams: Record<string, PartitionOwner[]> = {};
  for (const [stream, count] of Object.entries(layout)) {
    const before = previous?.streams[stream] ?? [];
    streams[stream] = Array.from({ length: count }, (_, p) => {
      const prior = before[p];
      const owner = prior?.owner !== undefined && live.includes(prior.owner) ? prior.owner : undefined;
      return { owner, epoch: prior?.epoch ?? 0 };
    });
  }
  const total = Object.values(layout).reduce((a, b) => a + b, 0);
  if (live.length > 0) {
    const ceiling = Math.ceil(total / live.length);
    const owned = loads(streams, live);
    // Above its share: give back the highest partitions.
    for (const member of live) {
      const mine = owned.get(member)!.sort(bySlot);
      while (mine.length > ceiling) {
        const { key, partition } = mine.pop()!;
        streams[key][partition].owner = undefined;
      }
    }
    const leastLoaded = () => live.reduce((best, m) => (owned.get(m)!.length < owned.get(best)!.length ? m : best), live[0]);
    for (const [key, partitions] of Object.entries(streams)) {
      partitions.forEach((p, partition) => {
        if (p.owner !== undefined) return;
        const to = leastLoaded();
        p.owner = to;
        owned.get(to)!.push({ key, partition });
      });
    }
    // Even out what stickiness left uneven: from the most loaded to the least, one at a time.
    for (;;) {
      const most = live.reduce((best, m) => (owned.get(m)!.length > owned.get(best)!.length ? m : best), live[0]);
      const least = leastLoaded();
      if (owned.get(most)!.length - owned.get(least)!.length <= 1) break;
      const moved = owned.get(most)!.sort(bySlot).pop()!;
      streams[moved.key][moved.partition].owner = least;
      owned.get(least)!.push(moved);
    }
  }
  const registeredAgain = (owner: string | undefined) => owner !== undefined && incarnations[owner] !== previous?.incarnations?.[owner];
  for (const [stream, partitions] of Object.entries(streams)) {
    partitions.forEach((p, partition) => {
      const prior = previous?.streams[stream]?.[partition];
      if (p.owner !== prior?.owner || registeredAgain(p.owner)) p.epoch = (prior?.epoch ?? 0) + 1;
    });
  }
  const known = Object.fromEntries(live.flatMap((m) => (incarnations[m] === undefined ? [] : [[m, incarnations[m]]])));
  return { generation: (previous?.generation ?? 0) + 1, streams, ...(Object.keys(known).length > 0 ? { incarnations: known } : {}) };
}

/**
 * The next assignment of both kinds: state partitions (with epochs) and source partitions,
 * each kind balanced over the members on its own, both sticky.
 */
export function nextClusterAssignment(
  previous: Assignment | undefined,
  members: readonly string[],
  layout: Record<string, number>,
  sourceLayout: Record<string, number>,
  incarnations: Record<string, string> = {},
): Assignment {
  const state = nextAssignment(previous, members, layout, incarnations);
  const sources = nextAssignment(previous && { generation: previous.generation, streams: previous.sources ?? {} }, members, sourceLayout);
  return { ...state, sources: sources.streams };
}

/** The source partitions `member` reads. */
export function sourcesReadBy(assignment: Assignment, member: string): Array<{ topic: string; partition: number }> {
  return Object.entries(assignment.sources ?? {}).flatMap(([topic, partitions]) => partitions.flatMap((p, partition) => (p.owner === member ? [{ topic, partition }] : [])));
}

/** The partitions `member` owns, with their epochs. */
export function ownedBy(assignment: Assignment, member: string): Array<PartitionRef & { epoch: number }> {
  return Object.entries(assignment.streams).flatMap(([stream, partitions]) =>
    partitions.flatMap((p, partition) => (p.owner === member ? [{ stream: Number(stream), partition, epoch: p.epoch }] : [])),
  );
}

/** Whether two assignments give every partition the same owner and epoch, made for the same registrations. */
export function sameAssignment(a: Assignment | undefined, b: Assignment): boolean {
  if (!a) return false;
  return JSON.stringify([a.streams, a.sources ?? {}, a.incarnations ?? {}]) === JSON.stringify([b.streams, b.sources ?? {}, b.incarnations ?? {}]);
}
