/**
 * The scheduler with a fake clock: the concurrency cap, spacing between starts, holds, pause and
 * resume, and how onIdle() ends. Tasks are held open by the test, so what runs at once is
 * decided by the test, not by timing.
 */
import { describe, expect, test } from "bun:test";
import { createScheduler, type SchedulerOptions } from "../../src/engine/scheduler.ts";
import { createFakeClock, until, type FakeClock } from "../fixtures/fake-clock.ts";

const T0 = Date.UTC(2026, 0, 1);

/** A task the test ends by hand. */
interface Gate {
  id: number;
  startedAt: number;
  finish(): void;
  fail(e: Error): void;
}

function harness(o: { tasks?: number; concurrency?: number; spacingMs?: number; holdUntil?: () => number; claims?: Array<number | "wait" | null>; auto?: boolean; pollMs?: number; clock?: FakeClock; random?: () => number }) {
  const clock = o.clock ?? createFakeClock(T0);
  const queue: Array<number | "wait" | null> = o.claims ?? Array.from({ length: o.tasks ?? 0 }, (_, i) => i + 1);
  const open = new Map<number, Gate>();
  const started: Gate[] = [];
  const finished: number[] = [];
  let claimCalls = 0;
  let running = 0;
  let maxRunning = 0;
  const opts: SchedulerOptions<number> = {
    concurrency: o.concurrency ?? 1,
    spacingMs: o.spacingMs ?? 0,
    clock,
    pollMs: o.pollMs ?? 1000,
    holdUntil: o.holdUntil ?? (() => 0),
    ...(o.random ? { random: o.random } : {}),
    async claim() {
      claimCalls++;
      return queue.length ? queue.shift()! : null;
    },
    run(id) {
      running++;
      maxRunning = Math.max(maxRunning, running);
      return new Promise<void>((resolve, reject) => {
        const gate: Gate = {
          id,
          startedAt: clock.now(),
          finish: () => {
            open.delete(id);
            running--;
            finished.push(id);
            resolve();
          },
          fail: (e) => {
            open.delete(id);
            running--;
            reject(e);
          },
        };
        started.push(gate);
        open.set(id, gate);
        if (o.auto) queueMicrotask(gate.finish);
      });
    },
  };
  const scheduler = createScheduler(opts);
  return {
    clock,
    scheduler,
    started,
    finished,
    open,
    queue,
    get claimCalls() {
      return claimCalls;
    },
    get running() {
      return running;
    },
    get maxRunning() {
      return maxRunning;
    },
    /** Ends every open task, repeatedly, until the scheduler is idle. */
    async drain() {
      let idle = false;
      const done = scheduler.onIdle().then(() => (idle = true));
      await until(() => {
        for (const g of [...open.values()]) g.finish();
        return idle;
      });
      await done;
    },
  };
}

/** Lets the scheduler's pending promises and immediates run. */
const settle = async (rounds = 20) => {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
};

describe("scheduler: concurrency", () => {
  for (const concurrency of [1, 2, 3, 5]) {
    test(`at most ${concurrency} run at once, and the cap is reached`, async () => {
      const h = harness({ tasks: 12, concurrency });
      h.scheduler.start();
      for (let round = 0; h.finished.length < 12; round++) {
        await until(() => h.open.size === Math.min(concurrency, 12 - h.finished.length), 5000, `${concurrency} open tasks`);
        await settle();
        expect(h.running).toBeLessThanOrEqual(concurrency);
        expect(h.scheduler.pending).toBe(h.open.size);
        // End the oldest one; another takes its place.
        h.open.values().next().value!.finish();
        if (round > 100) throw new Error("no progress");
      }
      await h.scheduler.onIdle();
      expect(h.maxRunning).toBe(concurrency);
      expect(h.started.map((g) => g.id)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      expect(h.scheduler.started).toBe(12);
      expect(h.scheduler.pending).toBe(0);
    });
  }

  test("a concurrency below 1 still runs one at a time", async () => {
    const h = harness({ tasks: 3, concurrency: 0, auto: true });
    h.scheduler.start();
    await h.scheduler.onIdle();
    expect(h.maxRunning).toBe(1);
    expect(h.finished).toEqual([1, 2, 3]);
  });
});

describe("scheduler: spacing", () => {
  for (const concurrency of [1, 4]) {
    test(`starts are spaced by spacingMs with concurrency ${concurrency}, even when tasks end at once`, async () => {
      const h = harness({ tasks: 6, concurrency, spacingMs: 10_000, auto: true });
      h.scheduler.start();
      await h.scheduler.onIdle();
      const at = h.started.map((g) => g.startedAt - T0);
      expect(at[0]).toBe(0);
      for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(10_000);
      // Nothing else moves this clock: the spacing is exactly what was asked.
      expect(at).toEqual([0, 10_000, 20_000, 30_000, 40_000, 50_000]);
    });
  }

  test("with concurrency 4 the starts are spaced while earlier tasks still run", async () => {
    const h = harness({ tasks: 4, concurrency: 4, spacingMs: 5_000 });
    h.scheduler.start();
    await until(() => h.open.size === 4);
    expect(h.finished).toEqual([]);
    expect(h.started.map((g) => g.startedAt - T0)).toEqual([0, 5_000, 10_000, 15_000]);
    await h.drain();
  });

  test("no spacing: every task starts at the same virtual time", async () => {
    const h = harness({ tasks: 5, concurrency: 5 });
    h.scheduler.start();
    await until(() => h.open.size === 5);
    expect(new Set(h.started.map((g) => g.startedAt))).toEqual(new Set([T0]));
    await h.drain();
  });
});

describe("scheduler: holds", () => {
  test("nothing starts before an active hold ends", async () => {
    const end = T0 + 2 * 3_600_000;
    const h = harness({ tasks: 3, concurrency: 3, holdUntil: () => end, auto: true });
    h.scheduler.start();
    await h.scheduler.onIdle();
    expect(h.started.length).toBe(3);
    for (const g of h.started) expect(g.startedAt).toBeGreaterThanOrEqual(end);
    // The wait is taken in slices of at most a second, so a newer hold is noticed.
    const holdSleeps = h.clock.sleeps.filter((s) => s.from < end);
    expect(holdSleeps.length).toBeGreaterThan(0);
    for (const s of holdSleeps) expect(s.ms).toBeLessThanOrEqual(1000);
  });

  test("after a hold, starts ramp up: a random wait, then 1, 2, 4 … running, each start a ramp/concurrency apart", async () => {
    const end = T0 + 3_600_000;
    const h = harness({ tasks: 7, concurrency: 4, holdUntil: () => end, random: () => 0.5 });
    h.scheduler.start();
    await until(() => h.started.length === 1, 5000, "1 start");
    // An hour's hold ramps over the longest ramp: the first start half of it in.
    expect(h.started[0]!.startedAt - end).toBe(2500);
    await new Promise((r) => setTimeout(r, 50));
    expect(h.started).toHaveLength(1); // one at a time until it ends
    h.open.get(1)!.finish();
    await until(() => h.started.length === 3, 5000, "2 more starts");
    expect(h.open.size).toBe(2);
    h.open.get(2)!.finish();
    // Two ramp starts ended or run: four may run now.
    await until(() => h.open.size === 4, 5000, "4 running");
    await h.drain();
    expect(h.finished).toHaveLength(7);
  });

  test("a short hold ramps over a tenth of its length; without a hold nothing waits", async () => {
    let end = T0 + 2000;
    const h = harness({ tasks: 2, concurrency: 2, holdUntil: () => end, random: () => 1 });
    h.scheduler.start();
    await until(() => h.started.length === 1, 5000, "1 start");
    expect(h.started[0]!.startedAt - end).toBe(200);
    h.open.get(1)!.finish();
    await until(() => h.started.length === 2, 5000, "2 starts");
    await h.drain();
    end = 0;
    const free = harness({ tasks: 2, concurrency: 2, random: () => 1 });
    free.scheduler.start();
    await until(() => free.started.length === 2, 5000, "2 starts");
    expect(free.started.map((g) => g.startedAt - T0)).toEqual([0, 0]);
    await free.drain();
  });

  test("a hold set by a running task stops the next start until it ends", async () => {
    let hold = 0;
    const h = harness({ tasks: 3, concurrency: 1, holdUntil: () => hold });
    h.scheduler.start();
    await until(() => h.open.size === 1);
    hold = h.clock.now() + 600_000;
    h.open.get(1)!.finish();
    await until(() => h.open.size === 1 && h.open.has(2));
    expect(h.open.get(2)!.startedAt).toBeGreaterThanOrEqual(hold);
    await h.drain();
    expect(h.finished).toEqual([1, 2, 3]);
  });
});

describe("scheduler: pause and resume", () => {
  test("pause() starts nothing new, lets running tasks finish, and makes onIdle() resolve; resume() goes on", async () => {
    const h = harness({ tasks: 5, concurrency: 2 });
    h.scheduler.start();
    await until(() => h.open.size === 2);
    h.scheduler.pause();
    expect(h.scheduler.isPaused).toBe(true);
    let idle = false;
    const idlePromise = h.scheduler.onIdle().then(() => (idle = true));
    await settle();
    expect(idle).toBe(false); // two still run
    h.open.get(1)!.finish();
    await settle();
    expect(h.started.length).toBe(2); // nothing replaced it
    expect(idle).toBe(false);
    h.open.get(2)!.finish();
    await idlePromise;
    expect(h.started.length).toBe(2);
    expect(h.scheduler.pending).toBe(0);

    h.scheduler.resume();
    expect(h.scheduler.isPaused).toBe(false);
    await h.drain();
    expect(h.finished.sort()).toEqual([1, 2, 3, 4, 5]);
    expect(h.scheduler.started).toBe(5);
  });

  test("pause() ends a spacing or hold wait at once", async () => {
    const h = harness({ tasks: 3, concurrency: 1, spacingMs: 3_600_000, auto: true });
    let paused = false;
    h.clock.onSleep((ms) => {
      if (ms === 3_600_000 && !paused) {
        paused = true;
        h.scheduler.pause();
      }
    });
    h.scheduler.start();
    await h.scheduler.onIdle();
    expect(h.started.length).toBe(1);
    expect(h.clock.sleeps.find((s) => s.ms === 3_600_000)?.ran).toBe(false);
    expect(h.clock.now()).toBe(T0);
  });

  test("onIdle() of a paused scheduler with nothing running resolves at once", async () => {
    const h = harness({ tasks: 3 });
    h.scheduler.pause();
    h.scheduler.start();
    await h.scheduler.onIdle();
    expect(h.started.length).toBe(0);
    expect(h.claimCalls).toBe(0);
  });
});

describe("scheduler: how it ends", () => {
  test("with nothing left it ends at once, not one pause_between_batches_seconds later", async () => {
    const h = harness({ tasks: 2, concurrency: 1, spacingMs: 60_000, auto: true });
    h.scheduler.start();
    await h.scheduler.onIdle();
    // Two starts a minute apart, then the empty claim comes straight after the last task.
    expect(h.started.map((g) => g.startedAt - T0)).toEqual([0, 60_000]);
    expect(h.clock.now() - T0).toBe(60_000);
  });

  test("null from claim() ends it: onIdle() resolves once the running tasks finished, and claim() is not asked again", async () => {
    const h = harness({ tasks: 2, concurrency: 3 });
    h.scheduler.start();
    await until(() => h.open.size === 2);
    await settle();
    const calls = h.claimCalls;
    expect(calls).toBe(3); // two tasks, then null
    let idle = false;
    const idlePromise = h.scheduler.onIdle().then(() => (idle = true));
    await settle();
    expect(idle).toBe(false);
    h.open.get(1)!.finish();
    h.open.get(2)!.finish();
    await idlePromise;
    await settle();
    expect(h.claimCalls).toBe(calls);
  });

  test("nothing to claim: onIdle() resolves with nothing started", async () => {
    const h = harness({ tasks: 0 });
    h.scheduler.start();
    await h.scheduler.onIdle();
    expect(h.started.length).toBe(0);
    expect(h.claimCalls).toBe(1);
  });

  test('"wait" from claim() polls again after pollMs', async () => {
    const h = harness({ claims: ["wait", "wait", 1, "wait", 2, null], pollMs: 1_500, auto: true });
    h.scheduler.start();
    await h.scheduler.onIdle();
    expect(h.finished).toEqual([1, 2]);
    expect(h.started.map((g) => g.startedAt - T0)).toEqual([3_000, 4_500]);
    expect(h.claimCalls).toBe(6);
    expect(h.clock.sleeps.filter((s) => s.ms === 1_500).length).toBe(3);
  });

  test("a task that throws stops the scheduler: onIdle() rejects with its error once the others finished", async () => {
    const h = harness({ tasks: 5, concurrency: 2 });
    h.scheduler.start();
    await until(() => h.open.size === 2);
    let outcome: unknown;
    const idlePromise = h.scheduler.onIdle().then(
      () => (outcome = "resolved"),
      (e: Error) => (outcome = e),
    );
    h.open.get(1)!.fail(new Error("disk full"));
    await settle();
    expect(outcome).toBeUndefined(); // task 2 still runs
    expect(h.started.length).toBe(2); // and nothing new started
    h.open.get(2)!.finish();
    await idlePromise;
    expect((outcome as Error).message).toBe("disk full");
    await expect(h.scheduler.onIdle()).rejects.toThrow("disk full");
    expect(h.started.length).toBe(2);
  });

  test("a claim() that throws stops the scheduler and rejects onIdle()", async () => {
    const clock = createFakeClock(T0);
    let n = 0;
    const scheduler = createScheduler<number>({
      concurrency: 1,
      spacingMs: 0,
      clock,
      pollMs: 1000,
      holdUntil: () => 0,
      claim: async () => {
        if (++n === 2) throw new Error("state unreadable");
        return n;
      },
      run: async () => {},
    });
    scheduler.start();
    await expect(scheduler.onIdle()).rejects.toThrow("state unreadable");
    expect(scheduler.started).toBe(1);
  });
});
