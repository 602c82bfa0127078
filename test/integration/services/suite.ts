import { after, before } from 'node:test';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { startMockKafka, type MockKafka } from './kafka.js';
import { startZooKeeper, type ZooKeeperOptions, type ZooKeeperServer } from './zookeeper.js';

export interface SuiteServices {
  zk: ZooKeeperServer;
  kafka: MockKafka;
  producer: Producer;
}

/**
 * A private ZooKeeper and a one-broker mock Kafka cluster for the enclosing describe(),
 * with a connected producer; stopped when the suite ends. Read the fields inside tests.
 */
export function useServices(options: { zookeeper?: ZooKeeperOptions } = {}): SuiteServices {
  const services = {} as SuiteServices;
  before(async () => {
    [services.zk, services.kafka] = await Promise.all([startZooKeeper(options.zookeeper), startMockKafka({ brokers: 1 })]);
    services.producer = new Kafka({ brokers: services.kafka.brokers, logLevel: logLevel.NOTHING }).producer();
    await services.producer.connect();
  });
  after(async () => {
    await services.producer?.disconnect();
    await Promise.all([services.kafka?.stop(), services.zk?.stop()]);
  });
  return services;
}
