/**
 * The Map baseline on a thread of its own, for the scaling scenario: at 10^7 keys its Map
 * fills a heap, and on the main thread every major collection the runtime's main thread
 * triggers would mark it too, a cost the runtime does not have when it runs alone. Each
 * request is timed inside the thread, so posting the words there is not counted.
 */
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import { LmdbLoop, MapLoop } from './baselines.js';

type Request =
  | { op: 'batch'; time: number; words: string[] }
  | { op: 'size' }
  | { op: 'reload'; path: string; time: number; words: string[] };

/** The main thread's handle: one request at a time, answered with a number (ms, or the Map's size). */
export class MapLoopThread {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private readonly worker: Worker) {}

  static start(): MapLoopThread {
    return new MapLoopThread(new Worker(new URL(import.meta.url)));
  }

  private ask(request: Request): Promise<number> {
    const answer = this.queue.then(
      () =>
        new Promise<number>((resolve, reject) => {
          this.worker.once('message', (reply: { value?: number; error?: string }) => (reply.error !== undefined ? reject(new Error(`Map loop thread: ${reply.error}`)) : resolve(reply.value!)));
          this.worker.once('error', reject);
          this.worker.postMessage(request);
        }),
    );
    this.queue = answer.catch(() => undefined);
    return answer;
  }

  /** Runs one batch of the word count; resolves with its time in ms. */
  batch(time: number, words: string[]): Promise<number> {
    return this.ask({ op: 'batch', time, words });
  }

  /** The keys the Map holds. */
  size(): Promise<number> {
    return this.ask({ op: 'size' });
  }

  /** A durable Map's restart, timed: a new Map reloaded from every entry of the LMDB loop's database at `path`, then one batch. */
  reload(path: string, time: number, words: string[]): Promise<number> {
    return this.ask({ op: 'reload', path, time, words });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const map = new MapLoop();
  port.on('message', (request: Request) => {
    try {
      if (request.op === 'size') return port.postMessage({ value: map.state.size });
      if (request.op === 'batch') {
        const started = performance.now();
        map.batch(request.time, request.words);
        return port.postMessage({ value: performance.now() - started });
      }
      const loop = new LmdbLoop(request.path);
      try {
        const started = performance.now();
        const reloaded = new MapLoop();
        reloaded.loadFrom(loop);
        reloaded.batch(request.time, request.words);
        port.postMessage({ value: performance.now() - started });
      } finally {
        void loop.close();
      }
    } catch (error) {
      port.postMessage({ error: (error as Error).message });
    }
  });
}
