/**
 * `work`, unless `signal` aborts before it settles (or has aborted already and `work` has
 * not settled yet): then the error `aborted()` makes. `work` itself goes on; its outcome is
 * dropped. The listener goes with the race, whichever side won.
 */
export async function unlessAborted<T>(work: PromiseLike<T>, signal: AbortSignal, aborted: () => Error): Promise<T> {
  let onAbort = (): void => undefined;
  const cut = new Promise<never>((_, reject) => {
    onAbort = () => reject(aborted());
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, cut]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
