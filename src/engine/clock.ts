/**
 * The engine's time: holds, backoff, spacing and durations. Injected, so the engine is tested
 * in-process with a fake clock and a 2-hour hold takes no real time. Leases and event
 * timestamps always use the wall clock: they are compared across processes.
 */
import { sleep } from "../time.ts";

export interface Clock {
  now(): number;
  /** Resolves true after ms, or false as soon as the signal aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<boolean>;
}

export const systemClock: Clock = { now: () => Date.now(), sleep };
