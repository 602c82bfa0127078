import type { KafkaConfig } from 'kafkajs';
import { ConfigError, describeValue, given, isIntegerIn, unknownOption } from '../../errors.js';
import { isBrokerAddress, validateZooKeeperOptions, type ValidZooKeeperOptions, type ZooKeeperConnectOptions } from '../../storage/zookeeper/connect-options.js';

/** A function decoder is called for a message with a value; a message without one (a tombstone) reaches the stream with value null. */
export type KafkaDecoder<V> = 'string' | 'json' | 'buffer' | ((value: Buffer, message: { topic: string; partition: number; offset: string }) => V);

export interface KafkaStreamOptions<V = string> {
  brokers: string[];
  /** One topic, or several with `topics`. */
  topic?: string;
  topics?: string[];
  /** The Kafka consumer group: offsets are committed to it too, so lag tools see progress. */
  groupId: string;
  clientId?: string;
  /** Where positions are kept; root defaults to `/statestream/<appName>`. */
  zookeeper: ZooKeeperConnectOptions;
  /**
   * Where a partition with no recorded position starts. Default 'earliest'. Only for those:
   * a recorded position the broker no longer holds is a gap, handled by failOnDataLoss.
   */
  startingOffsets?: 'earliest' | 'latest';
  /**
   * Records the job needs that are gone from the broker (retention deleted them while the job
   * was stopped or behind): true (the default, as Spark's) fails the job with DataLossError
   * naming topic, partition and offsets; false goes on from the earliest offset the broker
   * holds and reports each gap with the `source.data-lost` event.
   */
  failOnDataLoss?: boolean;
  /** Most records a batch takes from one topic-partition. Default 10000. */
  maxRecordsPerBatch?: number;
  /** How message values become record values. Default 'string'. */
  decoder?: KafkaDecoder<V>;
  /** A message the decoder cannot read: fail the batch naming it, or keep it in the source's dead-letter store. */
  onDecodeFailure?: 'stop' | 'dead-letter';
  /**
   * The consumer group's session timeout (Kafka's default, 30000). A job restarted after a
   * crash waits up to this long for the dead member to leave the group before it can fetch.
   */
  groupSessionTimeoutMs?: number;
  ssl?: KafkaConfig['ssl'];
  sasl?: KafkaConfig['sasl'];
}

export interface ValidKafkaOptions<V> {
  brokers: string[];
  topics: string[];
  groupId: string;
  clientId: string;
  zookeeper: ValidZooKeeperOptions;
  startingOffsets: 'earliest' | 'latest';
  failOnDataLoss: boolean;
  maxRecordsPerBatch: number;
  decoder: KafkaDecoder<V>;
  onDecodeFailure: 'stop' | 'dead-letter';
  groupSessionTimeoutMs: number;
  ssl?: KafkaConfig['ssl'];
  sasl?: KafkaConfig['sasl'];
}

const known = new Set(['brokers', 'topic', 'topics', 'groupId', 'clientId', 'zookeeper', 'startingOffsets', 'failOnDataLoss', 'maxRecordsPerBatch', 'decoder', 'onDecodeFailure', 'groupSessionTimeoutMs', 'ssl', 'sasl']);

function fail(message: string, option: string): never {
  throw new ConfigError(`kafkaStream: ${message}`, { option });
}

const nonEmpty = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';

/** Checks every option when the stream is defined, so nothing bad reaches kafkajs or ZooKeeper. */
export function validateKafkaOptions<V>(options: KafkaStreamOptions<V>, appName: string): ValidKafkaOptions<V> {
  if (options === null || typeof options !== 'object') fail(`expects an options object, got ${describeValue(options)}`, 'options');
  const unknown = unknownOption(options, known);
  if (unknown !== undefined) fail(`unknown option "${unknown}" (known: ${[...known].join(', ')})`, unknown);
  const { brokers, topic, topics, groupId, zookeeper } = options;
  if (!Array.isArray(brokers) || brokers.length === 0 || !brokers.every(isBrokerAddress)) {
    fail(`brokers must be a non-empty array of "host:port" strings, the port from 1 to 65535, got ${describeValue(brokers)}`, 'brokers');
  }
  if (topic !== undefined && topics !== undefined) fail('give either topic or topics, not both', 'topic');
  if (topics !== undefined && !Array.isArray(topics)) fail(`topics must be an array of topic names (topic: for one), got ${describeValue(topics)}`, 'topics');
  const list = topics ?? (topic === undefined ? [] : [topic]);
  const topicOption = topics === undefined ? 'topic' : 'topics';
  if (list.length === 0) fail('topic (or topics) is required', topicOption);
  for (const t of list) if (!nonEmpty(t) || !/^[A-Za-z0-9._-]{1,249}$/.test(t) || t === '.' || t === '..') fail(`topic names are 1–249 characters of letters, digits, '.', '_' or '-' (Kafka refuses '.' and '..'); got ${describeValue(t)}`, topicOption);
  if (new Set(list).size !== list.length) fail(`topics must not repeat: ${describeValue(list)}`, 'topics');
  if (!nonEmpty(groupId)) fail(`groupId must be a non-empty string, got ${describeValue(groupId)}`, 'groupId');
  if (options.clientId !== undefined && !nonEmpty(options.clientId)) fail(`clientId must be a non-empty string, got ${describeValue(options.clientId)}`, 'clientId');
  const zk = validateZooKeeperOptions(zookeeper, `/statestream/${appName}`, fail);
  const startingOffsets = given(options.startingOffsets, 'earliest');
  if (startingOffsets !== 'earliest' && startingOffsets !== 'latest') fail(`startingOffsets must be 'earliest' or 'latest', got ${describeValue(startingOffsets)}`, 'startingOffsets');
  const failOnDataLoss = given(options.failOnDataLoss, true);
  if (typeof failOnDataLoss !== 'boolean') fail(`failOnDataLoss must be true or false, got ${describeValue(failOnDataLoss)}`, 'failOnDataLoss');
  const maxRecordsPerBatch = given(options.maxRecordsPerBatch, 10_000);
  if (!isIntegerIn(maxRecordsPerBatch, 1, 10_000_000)) {
    fail(`maxRecordsPerBatch must be an integer from 1 to 10000000, got ${describeValue(options.maxRecordsPerBatch)}`, 'maxRecordsPerBatch');
  }
  const decoder = given(options.decoder, 'string');
  if (typeof decoder !== 'function' && decoder !== 'string' && decoder !== 'json' && decoder !== 'buffer') {
    fail(`decoder must be 'string', 'json', 'buffer' or a function, got ${describeValue(decoder)}`, 'decoder');
  }
  const onDecodeFailure = given(options.onDecodeFailure, 'stop');
  if (onDecodeFailure !== 'stop' && onDecodeFailure !== 'dead-letter') fail(`onDecodeFailure must be 'stop' or 'dead-letter', got ${describeValue(onDecodeFailure)}`, 'onDecodeFailure');
  const groupSessionTimeoutMs = given(options.groupSessionTimeoutMs, 30_000);
  // A broker's defaults (group.min.session.timeout.ms, group.max.session.timeout.ms): outside
  // them its group refuses the join, which kafkajs reports only once the job runs.
  if (!isIntegerIn(groupSessionTimeoutMs, 6000, 1_800_000)) {
    fail(`groupSessionTimeoutMs must be an integer from 6000 to 1800000 (a Kafka broker's default limits), got ${describeValue(options.groupSessionTimeoutMs)}`, 'groupSessionTimeoutMs');
  }
  checkSecurity(options.ssl, options.sasl);
  return {
    brokers, topics: list, groupId, clientId: given(options.clientId, `statestream-${appName}`),
    zookeeper: zk,
    startingOffsets, failOnDataLoss, maxRecordsPerBatch, decoder, onDecodeFailure, groupSessionTimeoutMs, ssl: options.ssl, sasl: options.sasl,
  };
}

const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512', 'aws', 'oauthbearer'];
/** What each built-in mechanism needs besides it, as kafkajs reads them (it takes the mechanism in any case). */
const SASL_FIELDS: Record<string, string[]> = {
  plain: ['username', 'password'], 'scram-sha-256': ['username', 'password'], 'scram-sha-512': ['username', 'password'],
  aws: ['authorizationIdentity', 'accessKeyId', 'secretAccessKey'], oauthbearer: [],
};

/**
 * `ssl` and `sasl` as kafkajs reads them, checked here: kafkajs would only find a bad one
 * when it connects, as a failed authentication retried for minutes.
 */
function checkSecurity(ssl: unknown, sasl: unknown): void {
  if (ssl !== undefined && typeof ssl !== 'boolean' && (ssl === null || typeof ssl !== 'object' || Array.isArray(ssl))) {
    fail(`ssl must be true, false or a TLS options object (ca, cert, key, …), got ${describeValue(ssl)}`, 'ssl');
  }
  if (sasl === undefined) return;
  if (sasl === null || typeof sasl !== 'object' || Array.isArray(sasl)) fail(`sasl must be an object like { mechanism: 'plain', username, password }, got ${describeValue(sasl)}`, 'sasl');
  const fields = sasl as Record<string, unknown>;
  const mechanism = typeof fields.mechanism === 'string' ? fields.mechanism.toLowerCase() : undefined;
  // A mechanism of the program's own comes with its authenticationProvider (kafkajs' custom mechanisms).
  if (typeof fields.authenticationProvider === 'function' && typeof fields.mechanism === 'string' && fields.mechanism !== '') return;
  if (mechanism === undefined || !SASL_MECHANISMS.includes(mechanism)) {
    fail(`sasl.mechanism must be one of ${SASL_MECHANISMS.map((m) => `'${m}'`).join(', ')} (or your own, with an authenticationProvider), got ${describeValue(fields.mechanism)}`, 'sasl.mechanism');
  }
  for (const field of SASL_FIELDS[mechanism]) {
    // kafkajs refuses only a missing one: an empty password is the broker's to judge.
    if (typeof fields[field] !== 'string') fail(`sasl.${field} must be a string for mechanism '${mechanism}', got ${describeValue(fields[field])}`, `sasl.${field}`);
  }
  if (mechanism === 'oauthbearer' && typeof fields.oauthBearerProvider !== 'function') {
    fail("sasl.oauthBearerProvider must be a function returning { value } for mechanism 'oauthbearer'", 'sasl.oauthBearerProvider');
  }
}
