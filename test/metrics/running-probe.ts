import type { JobProbe } from '../../src/metrics/job-probe.js';

/** What the metrics and the status page ask a running single-process job with no state streams, no Kafka source and no snapshots, with `parts` changed. */
export function runningProbe(parts: Partial<JobProbe> = {}): JobProbe {
  return {
    appName: 'status', batchIntervalMs: 1000, phase: () => 'running', failure: () => undefined, stateStreams: () => [], kafkaSources: () => [],
    snapshotsOn: false, newestSnapshot: () => undefined, ...parts,
  };
}
