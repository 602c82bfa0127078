import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { openGated } from '../open-gate.js';
import type { SerializedError } from '../../errors.js';

/** A source message that could not be decoded, kept with where it came from. */
export interface SourceDeadLetter {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  /** The raw value, as the broker sent it. */
  value: Buffer | null;
  batchTime: number;
  error: SerializedError;
}

/**
 * Undecodable source messages, keyed by [topic, partition, offset]: writing one twice (a
 * replayed batch) keeps one copy.
 */
export class SourceDeadLetterStore {
  private readonly env: RootDatabase;
  private readonly db: Database<SourceDeadLetter, [string, number, number]>;

  constructor(dataDir: string, sourceId: number) {
    const path = join(dataDir, `source-${sourceId}`);
    mkdirSync(path, { recursive: true });
    ({ env: this.env, db: this.db } = openGated(path, { maxDbs: 2 }, (env) => ({
      db: env.openDB<SourceDeadLetter, [string, number, number]>({ name: 'dead-letters', encoding: 'msgpack' }),
    })));
  }

  add(letters: SourceDeadLetter[]): void {
    if (letters.length === 0) return;
    this.env.transactionSync(() => {
      for (const l of letters) this.db.putSync([l.topic, l.partition, l.offset], l);
    });
  }

  list(): SourceDeadLetter[] {
    return [...this.db.getRange({})].map(({ value }) => value);
  }

  /** How many it holds, without reading them (metrics and the status page ask at every scrape). */
  count(): number {
    return this.db.getCount();
  }

  close(): void {
    void this.env.close();
  }
}
