import { statSync } from 'node:fs';
import { extname, isAbsolute } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, describeValue, given, isIntegerIn, MappingModuleError, unknownOption } from '../errors.js';
import { assertInitialEntry } from '../storage/keys.js';
import type { ResolvedMappingRef } from '../actors/messages.js';
import { isStateSource, type StateSource } from '../storage/export/state-source.js';
import type { MigrateFunction } from '../storage/partition/migrate.js';
import type { State } from './state.js';

/** Spark's mapping function, run on worker threads: `undefined` means emit nothing. */
export type MappingFunction<K, V, S, M> = (time: number, key: K, value: V | undefined, state: State<S>) => M | undefined | Promise<M | undefined>;

/** A mapping function is named by its module: a file URL, an absolute path, or `{ module, export }`. */
export type MappingRef = URL | string | { module: URL | string; export?: string };

export type RecordFailurePolicy = 'stop' | 'dead-letter';

export interface RecordFailureOptions {
  /** What happens once a record has failed `maxAttempts` times: fail the batch, or move the record to the dead-letter store. */
  policy: RecordFailurePolicy;
  /** Attempts per record before the policy applies (default 3). */
  maxAttempts?: number;
}

/**
 * What a worker thread can import: JavaScript, and TypeScript where this Node strips its
 * types itself (22.18 and later: `process.features.typescript`); Node 20 cannot.
 */
const MODULE_EXTENSIONS = new Set(['.js', '.mjs', '.cjs', ...((process.features as { typescript?: unknown }).typescript ? ['.ts', '.mts', '.cts'] : [])]);

function moduleUrl(module: URL | string, where: string): URL {
  let url: URL;
  if (module instanceof URL) url = module;
  else if (typeof module === 'string' && module.startsWith('file:')) url = new URL(module);
  else if (typeof module === 'string' && isAbsolute(module)) url = pathToFileURL(module);
  else {
    throw new ConfigError(
      `${where}: the mapping module must be a file URL (new URL('./fn.js', import.meta.url)) or an absolute path, got ${describeValue(module)}; ` +
        'mapping functions run on worker threads, so they are named by module rather than passed as closures',
      { module: String(module) },
    );
  }
  if (url.protocol !== 'file:') throw new ConfigError(`${where}: the mapping module must be a file: URL, got ${url.href}`, { module: url.href });
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch (error) {
    // file://host/x.js names a file on another machine: worker threads can only load local files.
    throw new ConfigError(`${where}: the mapping module must be a local file URL (file:///path/fn.js), got ${url.href}: ${(error as Error).message}`, { module: url.href });
  }
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat === undefined) throw new MappingModuleError(`${where}: no mapping module at ${path}`, { module: url.href });
  if (!stat.isFile()) throw new MappingModuleError(`${where}: the mapping module ${path} is not a file (a folder?)`, { module: url.href });
  // A module a worker thread cannot import (a .ts file on Node 20) would only fail at start().
  if (!MODULE_EXTENSIONS.has(extname(path))) {
    throw new MappingModuleError(`${where}: the mapping module ${path} is not a module this Node can load (${[...MODULE_EXTENSIONS].join(', ')}); compile it to JavaScript first`, { module: url.href });
  }
  return url;
}

function positiveInteger(value: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!isIntegerIn(value, 1, max)) {
    throw new ConfigError(`StateSpec.${name} must be an integer from 1 to ${max}, got ${describeValue(value)}`, { option: name, value });
  }
  return value;
}

/**
 * The spec as mapWithState takes it: a frozen copy, so that a setter called afterwards
 * shapes only streams defined after it, never one already defined (whose partitions are
 * counted and whose checks are made), as Kafka Streams copies its Materialized.
 */
export function specAsDefined<K, V, S, M>(spec: StateSpec<K, V, S, M>): StateSpec<K, V, S, M> {
  const copy = Object.assign(Object.create(Object.getPrototypeOf(spec) as object) as StateSpec<K, V, S, M>, spec);
  Object.freeze(copy);
  return copy;
}

/** Iterators (a generator, say) given as initialState, and the stream that read each (and of which context: its stream graph). */
const readIterators = new WeakMap<object, { stream: number; graph: object }>();

/**
 * `initial` to read for `stream`: an iterator reads once, so a second stream (or a later
 * context) given the same spec would load nothing from it without a word.
 */
export function readInitialIterable<T>(initial: Iterable<T>, stream: number, graph: object): Iterable<T> {
  if (typeof (initial as Partial<Iterator<T>>).next !== 'function') return initial;
  const reader = readIterators.get(initial);
  if (reader !== undefined) {
    throw new ConfigError(
      `StateSpec.initialState of mapWithState stream ${stream} is an iterator already read (by mapWithState stream ${reader.stream} of ${reader.graph === graph ? 'this' : 'an earlier'} context), and an iterator reads once only: give an array, a Map or a StateSource, or a StateSpec with its own iterator to each stream`,
      { option: 'initialState', stream, readBy: reader.stream },
    );
  }
  readIterators.set(initial, { stream, graph });
  return initial;
}

/** The most partitions a stream may have (StateSpec.numPartitions; the CLI's reshard and import keep to it too). */
export const MAX_PARTITIONS = 4096;

/** What mapWithState needs: the function, and optionally initial state, partitions, idle timeout and a failure policy. */
export class StateSpec<K, V, S, M> {
  private initial: Iterable<[K, S]> | StateSource<K> | undefined;
  private version = 1;
  private migrate: MigrateFunction<S> | undefined;
  private partitions = 4;
  private idleMs: number | null = null;
  private failure: Required<RecordFailureOptions> = { policy: 'stop', maxAttempts: 3 };

  private constructor(readonly fn: ResolvedMappingRef) {}

  static function<K, V, S, M>(ref: MappingRef): StateSpec<K, V, S, M> {
    if (ref !== null && typeof ref === 'object' && !(ref instanceof URL)) {
      const unknown = unknownOption(ref, ['module', 'export']);
      if (unknown !== undefined) throw new ConfigError(`StateSpec.function: unknown option "${unknown}" of { module, export }`, { option: unknown });
      const exportName = given(ref.export, 'default');
      if (typeof exportName !== 'string' || exportName === '') throw new ConfigError(`StateSpec.function: export must be a non-empty string, got ${describeValue(exportName)}`, { export: exportName });
      return new StateSpec({ url: moduleUrl(ref.module, 'StateSpec.function').href, exportName });
    }
    return new StateSpec({ url: moduleUrl(ref as URL | string, 'StateSpec.function').href, exportName: 'default' });
  }

  /**
   * State for keys before the first batch, loaded into each partition's store with the first
   * batch it commits. Pairs are stamped with that batch's time; a StateSource (such as
   * readStateExport(path)) keeps each key's lastUpdated, so idle timeouts carry on.
   */
  initialState(initial: Iterable<[K, S]> | StateSource<K>): this {
    if (isStateSource(initial)) {
      this.initial = initial;
      return this;
    }
    // A string is iterable too, as characters: never what was meant.
    if (initial === null || typeof initial === 'string' || typeof (initial as Iterable<unknown>)?.[Symbol.iterator] !== 'function') {
      throw new ConfigError(`StateSpec.initialState expects an iterable of [key, state] pairs or a StateSource (readStateExport(path)), got ${describeValue(initial)}`, { option: 'initialState' });
    }
    // An array or a Map is checked now, and copied: what the streams load is what was given,
    // whatever happens to it afterwards. Any other iterable may be read once only, so it is
    // checked as the job loads it (readInitialIterable).
    if (Array.isArray(initial) || initial instanceof Map) {
      const copy: Array<[K, S]> = [];
      for (const entry of initial as Iterable<unknown>) {
        assertInitialEntry(entry, copy.length);
        copy.push(entry as [K, S]);
      }
      this.initial = copy;
      return this;
    }
    this.initial = initial;
    return this;
  }

  /**
   * The version of the state's shape, recorded in the stores and in exports (default 1).
   * State written under an older version is passed through `migrate` once, on the main
   * thread, when a job opens the stores or loads it as initial state.
   */
  stateVersion(version: number, migrate?: (state: unknown, fromVersion: number) => S): this {
    const checked = positiveInteger(version, 'stateVersion');
    if (migrate !== undefined && typeof migrate !== 'function') {
      throw new ConfigError(`StateSpec.stateVersion: migrate must be a function (state, fromVersion) => newState, got ${migrate === null ? 'null' : typeof migrate}`, { option: 'migrate' });
    }
    this.version = checked;
    this.migrate = migrate;
    return this;
  }

  numPartitions(n: number): this {
    this.partitions = positiveInteger(n, 'numPartitions', MAX_PARTITIONS);
    return this;
  }

  /** Keys with no record for longer than `idleMs` are timed out (Spark's StateSpec.timeout). */
  timeout(idleMs: number): this {
    this.idleMs = positiveInteger(idleMs, 'timeout');
    return this;
  }

  onRecordFailure(options: RecordFailureOptions): this {
    if (options === null || typeof options !== 'object') {
      throw new ConfigError(`StateSpec.onRecordFailure expects options { policy, maxAttempts }, got ${describeValue(options)}`, { option: 'onRecordFailure' });
    }
    if (options.policy !== 'stop' && options.policy !== 'dead-letter') {
      throw new ConfigError(`StateSpec.onRecordFailure: policy must be 'stop' or 'dead-letter', got ${describeValue(options.policy)}`, { option: 'policy' });
    }
    const unknown = unknownOption(options, ['policy', 'maxAttempts']);
    if (unknown !== undefined) throw new ConfigError(`StateSpec.onRecordFailure: unknown option "${unknown}" (known: policy, maxAttempts)`, { option: unknown });
    this.failure = { policy: options.policy, maxAttempts: positiveInteger(given(options.maxAttempts, 3), 'onRecordFailure maxAttempts', 100) };
    return this;
  }

  getNumPartitions(): number {
    return this.partitions;
  }

  getTimeout(): number | null {
    return this.idleMs;
  }

  getInitialState(): Iterable<[K, S]> | StateSource<K> | undefined {
    return this.initial;
  }

  getStateVersion(): number {
    return this.version;
  }

  getMigrate(): MigrateFunction<S> | undefined {
    return this.migrate;
  }

  getRecordFailure(): Required<RecordFailureOptions> {
    return this.failure;
  }
}
