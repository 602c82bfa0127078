/**
 * The Map baseline on a thread of its own, for the scaling scenario: at 10^7 keys its Map
 * fills a heap, and on the main thread every major collection the runtime's main thread
 * triggers would mark it too, a cost the runtime does not have when it runs alone. Each
 * request is timed inside the thread, so posting the words there is not counted.
 */
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { LmdbLoop, MapLoop } from './baselines.js';

/** A batch's words, or the number of a batch sent before and kept by the thread. */
type Words = string[] | number;

type Request =
  | { op: 'batch'; time: number; words: Words; keep?: number }
  | { op: 'size' }
  | { op: 'reload'; path: string; time: number; words: Words; keep?: number };

/** The main thread's handle: one request at a time, answered with a number (ms, or the Map's size). */
export class MapLoopThread {
  private queue: Promise<unknown> = Promise.resolve();
  /** Batches the thread keeps, by the array sent: each is cloned across once. */
  private readonly kept = new Map<string[], number>();

  private constructor(private readonly worker: Worker) {}

  static start(): MapLoopThread {
    // Node reports a 48 MB young generation for a worker either way, but one left to its
    // default ran the Map's hot batch at 10^4 keys in ~40 ms where the main thread takes
    // ~15; said explicitly, the thread matches the main thread.
    return new MapLoopThread(new Worker(new URL(import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 48 } }));
  }

  private ask(request: Request): Promise<number> {
    const answer = this.queue.then(
      () =>
        new Promise<number>((resolve, reject) => {
          const failed = (error: Error) => reject(error);
          this.worker.once('error', failed);
          this.worker.once('message', (reply: { value?: number; error?: string }) => {
            this.worker.off('error', failed);
            if (reply.error !== undefined) reject(new Error(`Map loop thread: ${reply.error}`));
            else resolve(reply.value!);
          });
          this.worker.postMessage(request);
        }),
    );
    this.queue = answer.catch(() => undefined);
    return answer;
  }

  /**
   * A batch run again and again (`keep`) is cloned across once and kept there: the thread
   * then reads the same strings every time, as the main thread's loop did (a string's hash
   * is computed once). Fresh strings each time would slow the Map by rehashing them.
   */
  private words(words: string[], keep: boolean): { words: Words; keep?: number } {
    const id = this.kept.get(words);
    if (id !== undefined) return { words: id };
    if (!keep) return { words };
    this.kept.set(words, this.kept.size);
    return { words, keep: this.kept.size - 1 };
  }

  /** Runs one batch of the word count (`keep`: one that will run again); resolves with its time in ms. */
  batch(time: number, words: string[], keep = false): Promise<number> {
    return this.ask({ op: 'batch', time, ...this.words(words, keep) });
  }

  /** The keys the Map holds. */
  size(): Promise<number> {
    return this.ask({ op: 'size' });
  }

  /**
   * A durable Map's restart, timed: the LMDB loop's database at `path` opened, a new Map
   * reloaded from its every entry, then one batch. Asked of a thread started for it (see
   * scaling-restart.ts): a restarted process's heap holds no other Map to mark.
   */
  reload(path: string, time: number, words: string[]): Promise<number> {
    return this.ask({ op: 'reload', path, time, ...this.words(words, true) });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const map = new MapLoop();
  const kept: string[][] = [];
  const wordsOf = (request: { words: Words; keep?: number }): string[] => {
    if (typeof request.words === 'number') return kept[request.words];
    if (request.keep !== undefined) kept[request.keep] = request.words;
    return request.words;
  };
  port.on('message', (request: Request) => {
    try {
      if (request.op === 'size') return port.postMessage({ value: map.state.size });
      if (request.op === 'batch') {
        const words = wordsOf(request);
        const started = performance.now();
        map.batch(request.time, words);
        return port.postMessage({ value: performance.now() - started });
      }
      const words = wordsOf(request);
      // The open counts, as a restarted runtime's and the LMDB loop's do.
      const started = performance.now();
      const loop = new LmdbLoop(request.path);
      try {
        const reloaded = new MapLoop();
        reloaded.loadFrom(loop);
        reloaded.batch(request.time, words);
        port.postMessage({ value: performance.now() - started });
      } finally {
        void loop.close();
      }
    } catch (error) {
      port.postMessage({ error: (error as Error).message });
    }
  });
}
