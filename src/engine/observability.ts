import { Registry } from 'prom-client';
import { JobMetrics } from '../metrics/job-metrics.js';
import type { JobProbe, KafkaProbe } from '../metrics/job-probe.js';
import { LagSampler } from '../metrics/kafka-lag.js';
import { serveMetrics } from '../metrics/metrics-server.js';
import type { Listening } from '../metrics/http.js';
import { checkPortsApart, validateMetricsOptions, validateUiOptions, type ValidMetrics, type ValidUi } from '../metrics/options.js';
import { StatusModel } from '../ui/status-model.js';
import { serveStatus } from '../ui/status-server.js';
import type { BatchEventMap } from './batch-events.js';
import type { InputStream } from './sources/input.js';
import { KafkaInputDStream } from './sources/kafka.js';
import type { PartitionFigures } from '../storage/partition/figures.js';
import type { SnapshotOnDisk } from '../storage/snapshots/manifest.js';

/** The context's parts metrics and the page may read, handed over as getters (the context keeps them private). */
export interface JobParts {
  appName: string;
  batchIntervalMs: number;
  phase(): string;
  failure(): Error | undefined;
  /** The sources whose positions the job keeps itself (a cluster's runtime reads its source on its own). */
  inputs(): InputStream[];
  /** Every state stream, local or the partitions a cluster instance owns. */
  stateStreams(): Array<{ stateIndex: number; partitionFigures(): PartitionFigures[] }>;
  /** Whether the job takes snapshots. */
  snapshotsOn: boolean;
  /** The newest snapshot in the job's folder, whether this process took it or not. */
  newestSnapshot(): SnapshotOnDisk | undefined;
}

type Events = { on<E extends keyof BatchEventMap>(event: E, listener: (payload: BatchEventMap[E]) => void): unknown };

/** Where the servers listen once the context started. */
export interface Endpoints {
  /** `http://host:port/metrics`, when `metrics.port` was given. */
  metrics?: string;
  /** The status page, when `ui` was given. */
  ui?: string;
}

function probeOf(parts: JobParts): JobProbe {
  return {
    appName: parts.appName,
    batchIntervalMs: parts.batchIntervalMs,
    phase: parts.phase,
    failure: parts.failure,
    stateStreams: () => parts.stateStreams().map((s) => ({ stream: s.stateIndex, partitions: s.partitionFigures() })),
    snapshotsOn: parts.snapshotsOn,
    newestSnapshot: parts.newestSnapshot,
    kafkaSources: () => parts.inputs().filter((i): i is KafkaInputDStream<unknown> => i instanceof KafkaInputDStream) as KafkaProbe[],
  };
}

/**
 * Metrics and the status page of one context: a registry that always counts (so a service
 * can serve it itself), and the servers the options ask for, up from start() to stop().
 */
export class Observability {
  readonly registry: Registry;
  private readonly metricsOptions: ValidMetrics | undefined;
  private readonly uiOptions: ValidUi | undefined;
  private readonly metrics: JobMetrics;
  private readonly status: StatusModel | undefined;
  private readonly samplers = new Map<KafkaProbe, LagSampler>();
  private servers: Listening[] = [];
  private urls: Endpoints = {};

  /** Validates `metrics` and `ui` (ConfigError naming the option) and starts counting events. */
  constructor(options: { metrics?: unknown; ui?: unknown }, parts: JobParts, events: Events) {
    this.metricsOptions = validateMetricsOptions(options.metrics);
    this.uiOptions = validateUiOptions(options.ui);
    checkPortsApart(this.metricsOptions, this.uiOptions);
    this.registry = this.metricsOptions?.registry ?? new Registry();
    const probe = probeOf(parts);
    // One sampler per source, shared by scrapes and the page, so neither doubles the broker's load.
    const lag = () =>
      probe.kafkaSources().map((source) => {
        if (!this.samplers.has(source)) this.samplers.set(source, new LagSampler(source));
        return this.samplers.get(source)!;
      });
    this.metrics = new JobMetrics(this.registry, probe, lag);
    this.metrics.attach(events);
    if (this.uiOptions) {
      this.status = new StatusModel(probe, lag);
      this.status.attach(events);
    }
  }

  /** Opens the servers; a port in use fails start() with a ConfigError naming the option. */
  async start(): Promise<void> {
    try {
      if (this.metricsOptions?.port !== undefined) {
        const server = await serveMetrics(this.metricsOptions.port, this.metricsOptions.host, this.registry);
        this.servers.push(server);
        this.urls.metrics = `${server.url}/metrics`;
      }
      if (this.uiOptions && this.status) {
        this.status.started();
        const server = await serveStatus(this.uiOptions, this.status);
        this.servers.push(server);
        this.urls.ui = `${server.url}/`;
      }
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  endpoints(): Endpoints {
    return { ...this.urls };
  }

  /** The stores and sources are about to close: metrics stop reading them (the page's server stops with stop()). */
  stopReading(): void {
    this.metrics.stopReading();
  }

  async stop(): Promise<void> {
    this.metrics.detach();
    const servers = this.servers;
    this.servers = [];
    this.urls = {};
    await Promise.all(servers.map((s) => s.close()));
  }
}
