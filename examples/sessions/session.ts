import type { State } from '../../src/index.js';

export interface Click {
  page: string;
  /** When the user clicked (ms since the epoch). */
  at: number;
}

export interface Session {
  start: number;
  last: number;
  pages: number;
  /** The latest pages only, so a user who never goes quiet cannot grow the state without bound. */
  path: string[];
}

export interface SessionSummary {
  user: string;
  start: number;
  end: number;
  pages: number;
  path: string[];
}

const MAX_PATH = 20;

/**
 * Sessionization with mapWithState: clicks only update the session, and the summary is
 * emitted once, when the user has been idle past StateSpec.timeout and the runtime calls
 * us a last time (the state is removed after that call).
 */
export default function session(_time: number, user: string, click: Click | undefined, state: State<Session>): SessionSummary | undefined {
  if (state.isTimingOut()) {
    const { start, last, pages, path } = state.get();
    return { user, start, end: last, pages, path };
  }
  if (click === undefined) return undefined;
  const previous = state.getOption();
  state.update({
    // min/max rather than first/last: clicks of one batch need not arrive in order.
    start: Math.min(previous?.start ?? click.at, click.at),
    last: Math.max(previous?.last ?? click.at, click.at),
    pages: (previous?.pages ?? 0) + 1,
    path: [...(previous?.path ?? []), click.page].slice(-MAX_PATH),
  });
  return undefined;
}
