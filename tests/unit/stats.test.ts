import { describe, expect, test } from "bun:test";
import { computeStats, percentile } from "../../src/learning/stats.ts";
import { judge, failingOf } from "../../src/learning/breaker.ts";
import { outcome } from "../fixtures/outcomes.ts";

/** A scripted set of runs: two jobs, two models, every category. */
const RUNS = [
  outcome({ batch_num: 1, category: "first_try", usd: 0.1, duration_ms: 1000 }),
  outcome({ batch_num: 2, category: "first_try", usd: 0.2, duration_ms: 2000 }),
  outcome({ batch_num: 3, category: "after_retry", attempts: 3, holds: 1, usd: 0.4, duration_ms: 10_000, held_ms: 4000, held_by: { reset_time: 4000 }, failed_validations: [{ description: "has summary", attempts: [1] }] }),
  outcome({ batch_num: 4, category: "after_completion", attempts: 2, completion_attempts: 1, usd: 0.3, duration_ms: 3000, failed_validations: [{ description: "has table", attempts: [1] }] }),
  outcome({ batch_num: 5, category: "failed", decision: "validation", attempts: 4, usd: 0.5, duration_ms: 4000, held_ms: 1000, held_by: { backoff: 1000 }, failed_validations: [{ description: "has summary", attempts: [1, 2, 3, 4] }, { description: "has table", attempts: [4] }] }),
  outcome({ batch_num: 6, category: "cancelled", attempts: 1, usd: 0.05, duration_ms: 500 }),
  outcome({ job_id: "job-b", batch_num: 1, category: "first_try", model: "claude-sonnet-4-5", items: 5, usd: 1, duration_ms: 6000, at: "2026-04-01T00:00:00.000Z" }),
];

describe("stats", () => {
  test("percentile is nearest rank", () => {
    expect(percentile([], 50)).toBe(0);
    expect(percentile([5], 90)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90)).toBe(9);
    expect(percentile([1, 2, 3], 90)).toBe(3);
  });

  test("every figure on a scripted set of runs is exact", () => {
    const s = computeStats(RUNS);
    expect(s.jobs).toEqual(["job-a", "job-b"]);
    expect(s.outcomes).toBe(7);
    expect(s.finished).toBe(6);
    expect(s.categories).toEqual({ first_try: 3, after_retry: 1, after_completion: 1, failed: 1, cancelled: 1 });
    expect(s.first_try_rate).toBe(0.5);
    // Attempts without holds: 1,1,2,2,4,1.
    expect(s.attempts).toEqual([
      { attempts: 1, batches: 3 },
      { attempts: 2, batches: 2 },
      { attempts: 4, batches: 1 },
    ]);
    expect(s.failing_validations).toEqual([
      { description: "has summary", failures: 5, batches: 2, example: { job_id: "job-a", batch_num: 3, at: "2026-03-01T00:00:00.000Z" } },
      { description: "has table", failures: 2, batches: 2, example: { job_id: "job-a", batch_num: 4, at: "2026-03-01T00:00:00.000Z" } },
    ]);
    // Finished costs sorted: 0.1 0.2 0.3 0.4 0.5 1 → p50 rank 3, p90 rank 6.
    expect(s.cost_usd).toEqual({ p50: 0.3, p90: 1, total: 2.55 });
    // Durations sorted: 1000 2000 3000 4000 6000 10000.
    expect(s.duration_ms).toEqual({ p50: 3000, p90: 10_000, total: 26_500 });
    // Successful items: 10 + 10 + 10 + 10 + 5; every outcome's cost counts.
    expect(s.successful_items).toBe(45);
    expect(s.cost_per_successful_item).toBe(Math.round((2.55 / 45) * 1e8) / 1e8);
    expect(s.held).toEqual({ ms: 5000, share: Math.round((5000 / 26_500) * 1e6) / 1e6, by_kind: { backoff: { ms: 1000, share: Math.round((1000 / 26_500) * 1e6) / 1e6 }, reset_time: { ms: 4000, share: Math.round((4000 / 26_500) * 1e6) / 1e6 } } });
    expect(Object.keys(s.by_model)).toEqual(["claude-haiku-4-5", "claude-sonnet-4-5"]);
    expect(s.by_model["claude-sonnet-4-5"]).toMatchObject({ finished: 1, first_try_rate: 1, cost_per_successful_item: 0.2, cost_usd: { p50: 1, p90: 1, total: 1 } });
    expect(s.by_model["claude-haiku-4-5"]).toMatchObject({ outcomes: 6, finished: 5, first_try_rate: 0.4, successful_items: 40 });
  });

  test("per job and --since select the outcomes", () => {
    expect(computeStats(RUNS, { job: "job-b" })).toMatchObject({ jobs: ["job-b"], outcomes: 1, first_try_rate: 1 });
    const since = computeStats(RUNS, { since: Date.parse("2026-03-15T00:00:00Z") });
    expect(since).toMatchObject({ outcomes: 1, since: "2026-03-15T00:00:00.000Z", jobs: ["job-b"] });
    expect(computeStats([])).toMatchObject({ outcomes: 0, first_try_rate: null, cost_per_successful_item: null, attempts: [] });
  });
});

describe("the breaker's maths", () => {
  const cfg = { window: 4, min_confidence_threshold: 0.3, high_confidence_threshold: 0.75, escalation_enabled: true };
  const first = (n: number) => outcome({ batch_num: n, category: "first_try" });
  const retried = (n: number) => outcome({ batch_num: n, category: "after_retry", failed_validations: [{ description: "has table", attempts: [1] }] });

  test("nothing is judged before the window is full", () => {
    expect(judge([retried(1), retried(2), retried(3)], cfg, 1, 4)).toEqual({ concurrency: 1 });
  });
  test("below min_confidence_threshold: pause, naming the failing validations", () => {
    // 1 of 4 = 0.25 < 0.3
    expect(judge([first(1), retried(2), retried(3), retried(4)], cfg, 2, 4)).toEqual({ rate: 0.25, concurrency: 2, pause: { rate: 0.25, window: 4, threshold: 0.3, failing: ["has table"] } });
  });
  test("exactly at min is not below it; under high steps down, never below 1", () => {
    const w = [first(1), first(2), retried(3), retried(4)]; // 0.5
    expect(judge(w, { ...cfg, min_confidence_threshold: 0.5 }, 3, 4)).toEqual({ rate: 0.5, concurrency: 2 });
    expect(judge(w, cfg, 1, 4)).toEqual({ rate: 0.5, concurrency: 1 });
  });
  test("at or above high_confidence_threshold: one step up, never above the maximum; cancelled batches are not judged", () => {
    const w = [retried(1), first(2), first(3), first(4), outcome({ batch_num: 5, category: "cancelled" })]; // last 4 judged: 0.75
    expect(judge(w, cfg, 2, 4)).toEqual({ rate: 0.75, concurrency: 3 });
    expect(judge(w, cfg, 4, 4)).toEqual({ rate: 0.75, concurrency: 4 });
  });
  test("without escalation: the configured concurrency, no pause", () => {
    expect(judge([retried(1), retried(2), retried(3), retried(4)], { ...cfg, escalation_enabled: false }, 1, 4)).toEqual({ concurrency: 4 });
  });
  test("failing validations are ordered by failures", () => {
    expect(failingOf([outcome({ batch_num: 1, category: "failed", failed_validations: [{ description: "a", attempts: [1] }, { description: "b", attempts: [1, 2] }] })])).toEqual(["b", "a"]);
  });
});
