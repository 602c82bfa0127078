export { StreamingContext, type StreamingContextOptions } from './engine/streaming-context.js';
export type { StopOptions } from './engine/stop-options.js';
export { StateSpec, type MappingFunction, type MappingRef, type RecordFailureOptions, type RecordFailurePolicy } from './engine/state-spec.js';
export type { State } from './engine/state.js';
export { ManualClock, SystemClock, type Clock } from './engine/clock.js';
export type { DStream, MapWithStateStream, StateQueries } from './engine/dstream.js';
export type { QueueInputDStream, QueueStreamOptions } from './engine/sources/queue.js';
export type { KafkaInputDStream, KafkaRecord } from './engine/sources/kafka.js';
export type { KafkaStreamOptions, KafkaDecoder } from './engine/sources/kafka-options.js';
export type { SourceDeadLetter } from './storage/sources/dead-letters.js';
export type { OffsetRange, RecordedBatch } from './storage/zookeeper/offsets.js';
export {
  BatchEvents,
  type BatchEventMap,
  type BatchStartedEvent,
  type BatchCompletedEvent,
  type PartitionBatchStats,
  type BatchFailedEvent,
  type PartitionRestartedEvent,
  type WorkerReplacedEvent,
  type RecoveryIncompleteEvent,
  type SnapshotCompletedEvent,
  type MemoryWarmedEvent,
  type SnapshotFailedEvent,
  type StateRestoredEvent,
  type DataLostEvent,
  type OwnershipTakenEvent,
  type OwnershipLostEvent,
  type AssignmentChangedEvent,
  type PartitionTakenEvent,
  type PartitionReleasedEvent,
} from './engine/batch-events.js';
export type { ClusterOptions } from './cluster/options.js';
export type { ClusterView } from './cluster/runtime.js';
export type { ClusterMember } from './cluster/coordinator.js';
export type { OwnerRecord } from './storage/zookeeper/ownership.js';
export type { FolderHolder } from './storage/data-lock.js';
export type { SnapshotEvery } from './engine/snapshot-scheduler.js';
export type { MetricsOptions, UiOptions } from './metrics/options.js';
export type { Endpoints } from './engine/observability.js';
export { listSnapshots, type SnapshotInfo, type SnapshotManifest, type SnapshotStream, type SnapshotPartition, type SourcePositions } from './storage/snapshots/manifest.js';
export { murmur2, murmur2Partitioner, type Partitioner } from './engine/partitioner.js';
export type { DeadLetter } from './storage/partition/dead-letters.js';
export type { StateSource } from './storage/export/state-source.js';
export {
  readStateExport,
  writeStateExport,
  type StateExport,
  type StateExportHeader,
  type StateExportOrigin,
  type ExportEntry,
} from './storage/export/state-export.js';
export { exportJobState, type ExportJobStateOptions } from './storage/export/job-export.js';
export { readSnapshotState } from './storage/snapshots/source.js';
export type { MigrateFunction } from './storage/partition/migrate.js';
export {
  StatestreamError,
  ConfigError,
  MappingModuleError,
  StateContractError,
  InvalidRecordError,
  EncodingError,
  PoisonRecordError,
  WorkerCrashError,
  StopTimeoutError,
  StoreMismatchError,
  StoreOpenError,
  StoreIOError,
  LifecycleError,
  OffsetStoreError,
  SourceRecordError,
  DataLossError,
  ClusterError,
  NotOwnerError,
  DataDirLockedError,
  JobOwnedError,
  OwnershipLostError,
  StreamOperationError,
  SnapshotError,
  StateExportError,
  StateMigrationError,
} from './errors.js';
