/**
 * Graceful stop. The first Ctrl+C (or SIGTERM) stops starting work and lets running attempts
 * finish; the second kills the running attempts' process groups. The engine only sees two
 * AbortSignals, so it is testable without real signals.
 */
export interface Shutdown {
  /** Aborted on the first request: start nothing new, end waits early. */
  readonly stop: AbortSignal;
  /** Aborted on the second request: kill running attempts. */
  readonly kill: AbortSignal;
  request(reason: string): void;
  reason(): string | undefined;
}

export function createShutdown(): Shutdown {
  const stop = new AbortController();
  const kill = new AbortController();
  let why: string | undefined;
  return {
    stop: stop.signal,
    kill: kill.signal,
    request(reason) {
      if (!stop.signal.aborted) {
        why = reason;
        stop.abort(reason);
      } else if (!kill.signal.aborted) {
        kill.abort(reason);
      }
    },
    reason: () => why,
  };
}

/** Sleep that ends early (resolving false) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
