/**
 * Runs claimed batches: at most `concurrency` at a time, starts spaced at least `spacingMs`
 * apart whatever the concurrency, none started while a hold is active. It pulls work with
 * `claim()` instead of shifting an array fixed at start, so several runners can drain one
 * job: `claim()` answers a batch, "wait" (nothing now, but another runner holds work that may
 * come back), or null (nothing left). The shape follows p-queue: pause(), resume(), onIdle(),
 * pending, and no hidden globals. A claim or run that throws stops it; onIdle() rejects with it.
 *
 * After a hold ends, starts ramp up instead of all firing at the reset: a random wait of up to
 * RAMP (a tenth of the hold, at most 5 s), then one start per RAMP / concurrency until the ramp
 * is over. Many runners sharing one account's hold thus spread their first requests. And the
 * number running ramps too: one batch at first, doubling each time a batch started since ends
 * (1, 2, 4 … up to `concurrency`), so a fresh quota is not met by every worker at once.
 */
import type { Clock } from "./clock.ts";

export interface SchedulerOptions<T> {
  concurrency: number;
  spacingMs: number;
  clock: Clock;
  claim(): Promise<T | "wait" | null>;
  run(task: T): Promise<void>;
  /** Epoch ms (of the clock) until which nothing may start; 0 for none. */
  holdUntil(): number;
  /** How long to wait before asking again after claim() said "wait". */
  pollMs: number;
  /** Random source of the ramp after a hold (default Math.random). */
  random?: () => number;
}

/** The longest ramp after a hold. */
export const MAX_RAMP_MS = 5000;

export interface Scheduler {
  start(): void;
  /** Start nothing new; running tasks finish. */
  pause(): void;
  resume(): void;
  /** Resolves once nothing runs and nothing more will start (paused, or no work left). */
  onIdle(): Promise<void>;
  /** Changes how many tasks may run at once (at least 1); running tasks above it finish. */
  setConcurrency(n: number): void;
  readonly concurrency: number;
  /** Tasks running now. */
  readonly pending: number;
  /** Tasks started so far. */
  readonly started: number;
  readonly isPaused: boolean;
}

export function createScheduler<T>(opts: SchedulerOptions<T>): Scheduler {
  const { clock } = opts;
  let paused = false;
  let exhausted = false;
  let failed: { error: unknown } | undefined;
  let running = 0;
  let started = 0;
  let concurrency = Math.max(1, opts.concurrency);
  let nextStart = 0;
  let heldSince: number | undefined;
  let rampEnd = 0;
  let rampStep = 0;
  /** After a hold: how many may run now (doubling), until it reaches concurrency; undefined when not ramping. */
  let rampSlots: number | undefined;
  const limit = () => Math.min(concurrency, rampSlots ?? Infinity);
  const random = opts.random ?? Math.random;
  let pumping = false;
  let again = false;
  let wake = new AbortController();
  const idleWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  const idle = () => running === 0 && (paused || exhausted || failed !== undefined);
  const settle = () => {
    if (!idle()) return;
    for (const w of idleWaiters.splice(0)) failed ? w.reject(failed.error) : w.resolve();
  };
  const interrupt = () => {
    wake.abort();
    wake = new AbortController();
  };

  async function pump(): Promise<void> {
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    try {
      do {
        again = false;
        while (!paused && !exhausted && !failed && running < limit()) {
          const signal = wake.signal;
          // Holds are waited out here, so a pause or a new hold ends the wait at once.
          const holdLeft = opts.holdUntil() - clock.now();
          if (holdLeft > 0) {
            heldSince ??= clock.now();
            await clock.sleep(Math.min(holdLeft, 1000), signal);
            continue;
          }
          if (heldSince !== undefined) {
            const ramp = Math.min(MAX_RAMP_MS, (clock.now() - heldSince) / 10);
            heldSince = undefined;
            const first = clock.now() + random() * ramp;
            nextStart = Math.max(nextStart, first);
            rampEnd = first + ramp;
            rampStep = ramp / concurrency;
            rampSlots = concurrency > 1 ? 1 : undefined;
            // What still runs from before the hold must end before the ramp's first start.
            if (running >= limit()) continue;
          }
          // With nothing running, claim before waiting out the spacing: a runner with no work
          // left ends at once instead of sitting out one more pause_between_batches_seconds.
          if (running > 0 && nextStart > clock.now()) {
            await clock.sleep(nextStart - clock.now(), signal);
            continue;
          }
          const task = await opts.claim();
          if (task === null) {
            // Nothing left for anyone: what runs now finishes, then the scheduler is idle.
            exhausted = true;
            break;
          }
          if (task === "wait") {
            await clock.sleep(opts.pollMs, signal);
            continue;
          }
          while (!paused && nextStart > clock.now()) await clock.sleep(nextStart - clock.now(), wake.signal);
          // A pause that arrived meanwhile: run() sees it and hands the batch back unrun.
          launch(task, rampSlots !== undefined);
          nextStart = clock.now() + Math.max(opts.spacingMs, clock.now() < rampEnd ? rampStep : 0);
        }
      } while (again && !paused && !failed);
    } catch (error) {
      failed ??= { error };
    } finally {
      pumping = false;
      settle();
    }
  }

  function launch(task: T, ramping: boolean): void {
    running++;
    started++;
    void opts
      .run(task)
      .catch((error: unknown) => {
        failed ??= { error };
      })
      .finally(() => {
        running--;
        if (ramping && rampSlots !== undefined) {
          rampSlots *= 2;
          if (rampSlots >= concurrency) rampSlots = undefined;
        }
        interrupt();
        if (!failed && !paused) void pump();
        settle();
      });
  }

  return {
    start() {
      void pump();
    },
    pause() {
      paused = true;
      interrupt();
      settle();
    },
    resume() {
      if (!paused) return;
      paused = false;
      void pump();
    },
    setConcurrency(n) {
      const next = Math.max(1, Math.floor(n));
      if (next === concurrency) return;
      concurrency = next;
      interrupt();
      if (!paused) void pump();
    },
    get concurrency() {
      return concurrency;
    },
    onIdle() {
      if (idle()) return failed ? Promise.reject(failed.error) : Promise.resolve();
      return new Promise((resolve, reject) => idleWaiters.push({ resolve, reject }));
    },
    get pending() {
      return running;
    },
    get started() {
      return started;
    },
    get isPaused() {
      return paused;
    },
  };
}
