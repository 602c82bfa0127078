/** What each mode runs. Quick mode must finish in under 5 minutes on a 2-core machine. */
export interface BenchConfig {
  mode: 'quick' | 'full' | 'smoke';
  /** Runs of each measurement; figures are the median with min and max. */
  reps: number;
  /** Past this many seconds, the longer scenarios stop adding runs (after their first). */
  budgetSeconds: number;
  /** Records in the one transaction of the raw lmdb-js put/get baseline. */
  rawKeys: number;
  throughput: {
    vocabularies: number[];
    skew: number;
    records: number;
    batchRecords: number;
    partitions: number;
    threads: number;
  };
  threadsPartitions: {
    threads: number[];
    partitions: number[];
    vocabulary: number;
    records: number;
  };
  scaling: {
    /** State sizes (keys) at which the hot batch is timed. */
    sizes: number[];
    hotKeys: number;
    hotBatchRecords: number;
    /** Fresh keys per batch while the state grows. */
    growBatchRecords: number;
    partitions: number;
    threads: number;
  };
  restart: {
    /** State sizes (reached by the scaling scenario) at which restarts are timed. */
    sizes: number[];
    firstBatchRecords: number;
  };
  timeout: {
    /** Keys that stay in the state, inside the timeout, while others expire. */
    idleKeys: number;
    /** Keys expiring in one batch. */
    expiring: number[];
    partitions: number;
    threads: number;
  };
  snapshots: {
    /** Keys in the state the batches run on (grown as the scaling scenario grows its state). */
    stateKeys: number;
    /** Timed batches per run, Zipf over the state's keys; the same batches in both configurations. */
    batches: number;
    /** Untimed batches first in every run (worker JIT, page cache); they count towards snapshotEvery. */
    warmUpBatches: number;
    batchRecords: number;
    /** snapshotEvery (batches) of the configuration with snapshots. */
    every: number;
    /** The goal: batch p99 with snapshots within this factor of the p99 without. */
    goalRatio: number;
    partitions: number;
    threads: number;
  };
  /** Scenario 7: one topic on the mock broker, read whole by kcat, kafkajs + Map and statestream. */
  kafka: {
    /** Lines of five words in the topic (the mock keeps about 5.5·10^5 short lines of a larger topic). */
    lines: number;
    partitions: number;
    threads: number;
    batchIntervalMs: number;
    maxRecordsPerBatch: number;
  };
}

const common = {
  rawKeys: 1_000_000,
  throughputBase: { vocabularies: [10_000, 1_000_000], skew: 1.0, batchRecords: 50_000, partitions: 4, threads: 2 },
  scalingBase: { hotKeys: 10_000, hotBatchRecords: 100_000, growBatchRecords: 100_000, partitions: 4, threads: 2 },
  timeoutBase: { expiring: [0, 1_000, 100_000], partitions: 4, threads: 2 },
  kafkaBase: { partitions: 4, threads: 2, batchIntervalMs: 100, maxRecordsPerBatch: 100_000 },
  snapshotsBase: { stateKeys: 1_000_000, warmUpBatches: 2, batchRecords: 100_000, every: 5, goalRatio: 1.1, partitions: 4, threads: 2 },
};

export const QUICK: BenchConfig = {
  mode: 'quick',
  reps: 3,
  budgetSeconds: 230,
  rawKeys: common.rawKeys,
  throughput: { ...common.throughputBase, records: 2_000_000 },
  threadsPartitions: { threads: [1, 2], partitions: [1, 2, 8, 32], vocabulary: 10_000, records: 600_000 },
  scaling: { ...common.scalingBase, sizes: [10_000, 100_000, 1_000_000] },
  restart: { sizes: [1_000_000], firstBatchRecords: 10_000 },
  timeout: { ...common.timeoutBase, idleKeys: 1_000_000 },
  snapshots: { ...common.snapshotsBase, batches: 30 },
  kafka: { ...common.kafkaBase, lines: 300_000 },
};

export const FULL: BenchConfig = {
  mode: 'full',
  reps: 3,
  budgetSeconds: Infinity,
  rawKeys: common.rawKeys,
  throughput: { ...common.throughputBase, records: 10_000_000 },
  threadsPartitions: { threads: [1, 2], partitions: [1, 2, 8, 32], vocabulary: 10_000, records: 2_000_000 },
  scaling: { ...common.scalingBase, sizes: [10_000, 100_000, 1_000_000, 10_000_000] },
  restart: { sizes: [1_000_000, 10_000_000], firstBatchRecords: 10_000 },
  timeout: { ...common.timeoutBase, idleKeys: 10_000_000 },
  snapshots: { ...common.snapshotsBase, batches: 60 },
  kafka: { ...common.kafkaBase, lines: 300_000 },
};

/** Tiny sizes, one run each: proves in the test suite that every scenario and output works. */
export const SMOKE: BenchConfig = {
  mode: 'smoke',
  reps: 1,
  budgetSeconds: 60,
  rawKeys: 5_000,
  throughput: { ...common.throughputBase, vocabularies: [100, 2_000], batchRecords: 2_000, records: 10_000 },
  threadsPartitions: { threads: [1, 2], partitions: [1, 2], vocabulary: 100, records: 10_000 },
  scaling: { ...common.scalingBase, hotKeys: 100, hotBatchRecords: 1_000, growBatchRecords: 2_000, sizes: [1_000, 4_000] },
  restart: { sizes: [4_000], firstBatchRecords: 100 },
  timeout: { ...common.timeoutBase, expiring: [0, 10, 100], idleKeys: 2_000 },
  snapshots: { ...common.snapshotsBase, stateKeys: 1_000, batches: 12, warmUpBatches: 1, batchRecords: 500 },
  kafka: { ...common.kafkaBase, lines: 2_000, maxRecordsPerBatch: 500 },
};
