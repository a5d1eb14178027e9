/**
 * step() as a table: every kind of decision, in every mode, against the retry, completion and
 * hold budgets. The budgets are counted here and nowhere else, so these rows are what proves
 * a hold never costs a retry and a completion attempt never costs max_retries.
 */
import { describe, expect, test } from "bun:test";
import type { Decision } from "../../src/engine/classify.ts";
import { holdUntil, initialProgress, MAX_HOLD_MS, MIN_HOLD_MS, step, type BatchProgress, type Next, type StepPolicy, type ValidationOutcome } from "../../src/engine/step.ts";

const NOW = Date.UTC(2026, 2, 1, 12, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;

interface PolicyOver {
  max_retries?: number;
  max_completion_attempts?: number;
  completion_threshold_percent?: number;
  completion_delay_seconds?: number;
  jitter?: boolean;
  base_delay_seconds?: number;
  max_delay_seconds?: number;
  wait_minutes?: number;
  max_waits?: number;
}

function policy(o: PolicyOver = {}): StepPolicy {
  return {
    retry: {
      max_retries: o.max_retries ?? 2,
      base_delay_seconds: o.base_delay_seconds ?? 10,
      max_delay_seconds: o.max_delay_seconds ?? 3600,
      exponential_base: 2,
      jitter: o.jitter ?? true,
      max_completion_attempts: o.max_completion_attempts ?? 3,
      completion_threshold_percent: o.completion_threshold_percent ?? 50,
      completion_delay_seconds: o.completion_delay_seconds ?? 5,
    },
    rate_limit: { wait_minutes: o.wait_minutes ?? 60, max_waits: o.max_waits ?? 3 },
  };
}

/** A validation outcome of `passed` out of `total` rules. */
function v(passed: number, total: number): ValidationOutcome {
  const failing = Array.from({ length: total - passed }, (_, i) => `rule ${passed + i + 1}`);
  return { passed, failed: total - passed, total, percent: total === 0 ? 100 : (passed / total) * 100, failing };
}

const success: Decision = { kind: "success" };
const transient: Decision = { kind: "retry", category: "transient", reason: "exit code 1: boom" };
const overloaded = (min_delay_ms: number): Decision => ({ kind: "retry", category: "overloaded", reason: "API Error: 529 overloaded", min_delay_ms });
const hold = (until: number): Decision => ({ kind: "hold", until, reason: "You've hit your limit", source: "reset_time" });
const auth: Decision = { kind: "fail_job", category: "auth", reason: "Not logged in", hint: "run claude and /login" };
const interrupted: Decision = { kind: "interrupted" };

const progressIn = (mode: BatchProgress["mode"], normalUsed = 0, completionUsed = 0, holds = 0): BatchProgress => ({ mode, normalUsed, completionUsed, holds });

const MODES = ["normal", "retry", "completion"] as const;
/** Progress in each mode that still has budget left under the default policy (2 retries, 3 completions). */
const fresh: Record<(typeof MODES)[number], BatchProgress> = {
  normal: progressIn("normal"),
  retry: progressIn("retry", 1),
  completion: progressIn("completion", 1, 1),
};

describe("step: decisions that do not depend on the mode", () => {
  for (const mode of MODES) {
    const p = fresh[mode];

    test(`${mode}: all validations pass → complete, no budget used`, () => {
      const s = step(p, { now: NOW, random: 0.5, decision: success, validation: v(3, 3) }, policy());
      expect(s.next).toEqual({ kind: "complete" });
      expect(s.decision).toBe("success");
      expect(s.reason).toBe("all validations passed");
      expect(s.progress).toEqual(p);
    });

    test(`${mode}: no validations configured → complete`, () => {
      const s = step(p, { now: NOW, random: 0.5, decision: success, validation: v(0, 0) }, policy());
      expect(s.next).toEqual({ kind: "complete" });
      expect(s.decision).toBe("success");
      expect(s.progress).toEqual(p);
    });

    test(`${mode}: interrupted → back to pending, no budget used`, () => {
      const s = step(p, { now: NOW, random: 0.5, decision: interrupted, lastValidation: v(2, 3) }, policy());
      expect(s.next).toEqual({ kind: "interrupted" });
      expect(s.decision).toBe("interrupted");
      expect(s.reason).toBe("stopped before it finished");
      expect(s.progress).toEqual(p);
    });

    test(`${mode}: fail_job → the job fails at once, whatever budget is left`, () => {
      const s = step(p, { now: NOW, random: 0.5, decision: auth }, policy({ max_retries: 10 }));
      expect(s.next).toEqual({ kind: "fail", scope: "job", category: "auth", message: "Not logged in — run claude and /login" });
      expect(s.decision).toBe("fail_job");
      expect(s.reason).toBe("Not logged in");
      expect(s.progress).toEqual(p);
    });

    test(`${mode}: an honest hold keeps its reset time and costs no retry or completion budget`, () => {
      const s = step(p, { now: NOW, random: 0.5, decision: hold(NOW + 2 * HOUR) }, policy());
      expect(s.next).toEqual({ kind: "hold", until: NOW + 2 * HOUR });
      expect(s.decision).toBe("hold");
      expect(s.reason).toBe("You've hit your limit");
      expect(s.progress).toEqual({ ...p, holds: p.holds + 1 });
    });
  }
});

describe("step: unsuccessful attempts per mode", () => {
  test("normal, transient failure → retry after the first backoff, counted as a normal attempt", () => {
    const s = step(fresh.normal, { now: NOW, random: 0, decision: transient }, policy());
    expect(s.next).toEqual({ kind: "retry", after_ms: 5_000 }); // 10 s × jitter factor 0.5
    expect(s.decision).toBe("retry");
    expect(s.reason).toBe("exit code 1: boom");
    expect(s.progress).toEqual({ mode: "retry", normalUsed: 1, completionUsed: 0, holds: 0 });
  });

  test("retry, transient failure → the next backoff doubles", () => {
    const s = step(fresh.retry, { now: NOW, random: 0, decision: transient }, policy());
    expect(s.next).toEqual({ kind: "retry", after_ms: 10_000 }); // 20 s × 0.5
    expect(s.progress).toEqual({ mode: "retry", normalUsed: 2, completionUsed: 0, holds: 0 });
  });

  test("completion, transient failure → costs the completion budget; completion goes on while the last validations are above the threshold", () => {
    const s = step(fresh.completion, { now: NOW, random: 0, decision: transient, lastValidation: v(2, 3) }, policy());
    expect(s.next).toEqual({ kind: "completion", after_ms: 5_000 });
    expect(s.decision).toBe("retry");
    expect(s.progress).toEqual({ mode: "completion", normalUsed: 1, completionUsed: 2, holds: 0 });
  });

  for (const mode of MODES) {
    test(`${mode}: some validations pass (above the threshold) → completion mode`, () => {
      const s = step(fresh[mode], { now: NOW, random: 0.5, decision: success, validation: v(2, 3) }, policy());
      expect(s.next).toEqual({ kind: "completion", after_ms: 5_000 });
      expect(s.decision).toBe("validation_failed");
      expect(s.reason).toBe("2/3 validations passed");
      expect(s.progress.mode).toBe("completion");
      // Only the budget of the mode the attempt ran in is used.
      const before = fresh[mode];
      if (mode === "completion") expect(s.progress).toMatchObject({ normalUsed: before.normalUsed, completionUsed: before.completionUsed + 1 });
      else expect(s.progress).toMatchObject({ normalUsed: before.normalUsed + 1, completionUsed: before.completionUsed });
    });

    test(`${mode}: validations at or below the threshold → a full retry, not completion`, () => {
      for (const val of [v(1, 3), v(1, 2), v(0, 3)]) {
        const s = step(fresh[mode], { now: NOW, random: 0, decision: success, validation: val }, policy());
        expect(s.next.kind).toBe("retry");
        expect(s.decision).toBe("validation_failed");
        expect(s.progress.mode).toBe("retry");
      }
    });
  }

  test("the threshold is strict: exactly completion_threshold_percent is not enough", () => {
    const at = step(fresh.normal, { now: NOW, random: 0, decision: success, validation: v(1, 2) }, policy({ completion_threshold_percent: 50 }));
    expect(at.next.kind).toBe("retry");
    const above = step(fresh.normal, { now: NOW, random: 0, decision: success, validation: v(1, 2) }, policy({ completion_threshold_percent: 49.9 }));
    expect(above.next.kind).toBe("completion");
    const high = step(fresh.normal, { now: NOW, random: 0, decision: success, validation: v(4, 5) }, policy({ completion_threshold_percent: 90 }));
    expect(high.next.kind).toBe("retry");
  });

  test("a failed attempt with no validations of its own uses the batch's last validations to pick completion mode", () => {
    const s = step(fresh.normal, { now: NOW, random: 0, decision: transient, lastValidation: v(3, 4) }, policy());
    expect(s.next.kind).toBe("completion");
    const none = step(fresh.normal, { now: NOW, random: 0, decision: transient }, policy());
    expect(none.next.kind).toBe("retry");
    // A batch with no rules has nothing to complete.
    const empty = step(fresh.normal, { now: NOW, random: 0, decision: transient, lastValidation: v(0, 0) }, policy());
    expect(empty.next.kind).toBe("retry");
  });

  test("completion_delay_seconds is the delay of every completion attempt, without jitter", () => {
    for (const random of [0, 0.999]) {
      const s = step(fresh.normal, { now: NOW, random, decision: success, validation: v(2, 3) }, policy({ completion_delay_seconds: 7 }));
      expect(s.next).toEqual({ kind: "completion", after_ms: 7_000 });
    }
    const zero = step(fresh.normal, { now: NOW, random: 0.3, decision: success, validation: v(2, 3) }, policy({ completion_delay_seconds: 0 }));
    expect(zero.next).toEqual({ kind: "completion", after_ms: 0 });
  });
});

describe("step: retry delays", () => {
  const bounds: Array<[retry: number, full: number]> = [
    [1, 10_000],
    [2, 20_000],
    [3, 40_000],
    [4, 80_000],
  ];
  for (const [retry, full] of bounds) {
    test(`retry ${retry}: between half and all of ${full} ms with jitter`, () => {
      const p = progressIn(retry === 1 ? "normal" : "retry", retry - 1);
      const pol = policy({ max_retries: 10 });
      const low = step(p, { now: NOW, random: 0, decision: transient }, pol).next as Extract<Next, { kind: "retry" }>;
      const high = step(p, { now: NOW, random: 0.999, decision: transient }, pol).next as Extract<Next, { kind: "retry" }>;
      expect(low).toEqual({ kind: "retry", after_ms: full / 2 });
      expect(high.kind).toBe("retry");
      expect(high.after_ms).toBeGreaterThan(full * 0.99);
      expect(high.after_ms).toBeLessThanOrEqual(full);
      const exact = step(p, { now: NOW, random: 0.999, decision: transient }, policy({ max_retries: 10, jitter: false })).next;
      expect(exact).toEqual({ kind: "retry", after_ms: full });
    });
  }

  test("max_delay_seconds caps the delay, jitter included", () => {
    const p = progressIn("retry", 6);
    const s = step(p, { now: NOW, random: 0.999, decision: transient }, policy({ max_retries: 10, max_delay_seconds: 60 }));
    expect(s.next.kind).toBe("retry");
    expect((s.next as { after_ms: number }).after_ms).toBeLessThanOrEqual(60_000);
    expect((s.next as { after_ms: number }).after_ms).toBeGreaterThan(59_000);
  });

  test("min_delay_ms (retry-after) raises a shorter backoff, never lowers a longer one", () => {
    const up = step(fresh.normal, { now: NOW, random: 0, decision: overloaded(30_000) }, policy());
    expect(up.next).toEqual({ kind: "retry", after_ms: 30_000 });
    expect(up.progress.normalUsed).toBe(1);
    const kept = step(fresh.normal, { now: NOW, random: 0, decision: overloaded(1_000) }, policy());
    expect(kept.next).toEqual({ kind: "retry", after_ms: 5_000 });
    const without = step(fresh.normal, { now: NOW, random: 0, decision: { kind: "retry", category: "server", reason: "API Error: 500" } }, policy());
    expect(without.next).toEqual({ kind: "retry", after_ms: 5_000 });
  });

  test("min_delay_ms does not apply to a completion attempt", () => {
    const s = step(fresh.normal, { now: NOW, random: 0, decision: overloaded(30_000), lastValidation: v(2, 3) }, policy());
    expect(s.next).toEqual({ kind: "completion", after_ms: 5_000 });
  });
});

describe("step: budgets", () => {
  /** Feeds decisions through step() the way the batch loop does; returns each step's next. */
  function drive(decisions: Array<{ decision: Decision; validation?: ValidationOutcome }>, pol: StepPolicy, start = initialProgress()) {
    let p = start;
    let last: ValidationOutcome | undefined;
    const out: Array<{ next: Next; progress: BatchProgress; decision: string; reason: string }> = [];
    for (const d of decisions) {
      const s = step(p, { now: NOW, random: 0, decision: d.decision, validation: d.validation, lastValidation: last }, pol);
      if (d.validation) last = d.validation;
      p = s.progress;
      out.push(s);
    }
    return out;
  }
  const fails = (n: number) => Array.from({ length: n }, () => ({ decision: transient }));

  test("max_retries 0: the first failure fails the batch", () => {
    const [s] = drive(fails(1), policy({ max_retries: 0 }));
    expect(s!.next).toEqual({ kind: "fail", scope: "batch", category: "transient", message: "failed after 1 attempt: exit code 1: boom" });
    expect(s!.decision).toBe("retry");
    expect(s!.progress.normalUsed).toBe(1);
  });

  test("max_retries 2: two retries, then the third failure fails the batch", () => {
    const steps = drive(fails(3), policy({ max_retries: 2 }));
    expect(steps.map((s) => s.next.kind)).toEqual(["retry", "retry", "fail"]);
    expect(steps[2]!.next).toMatchObject({ scope: "batch", category: "transient", message: "failed after 3 attempts: exit code 1: boom" });
  });

  test("max_completion_attempts 0: partial validations go straight to full retries", () => {
    const steps = drive(
      Array.from({ length: 3 }, () => ({ decision: success, validation: v(2, 3) })),
      policy({ max_retries: 2, max_completion_attempts: 0 }),
    );
    expect(steps.map((s) => s.next.kind)).toEqual(["retry", "retry", "fail"]);
    expect(steps[2]!.next).toMatchObject({ scope: "batch", category: "validation", message: "validations still failing after 3 attempts: rule 3" });
    expect(steps[2]!.decision).toBe("validation_failed");
  });

  test("max_completion_attempts 3 comes on top of max_retries: 1 normal + 3 completion + 2 retries", () => {
    const partial = { decision: success, validation: v(2, 3) };
    const steps = drive(Array.from({ length: 6 }, () => partial), policy({ max_retries: 2, max_completion_attempts: 3 }));
    expect(steps.map((s) => s.next.kind)).toEqual(["completion", "completion", "completion", "retry", "retry", "fail"]);
    expect(steps.map((s) => [s.progress.normalUsed, s.progress.completionUsed])).toEqual([
      [1, 0],
      [1, 1],
      [1, 2],
      [1, 3],
      [2, 3],
      [3, 3],
    ]);
    // The first full retry after the completion attempts waits the first backoff: completion did not count as retries.
    expect(steps[3]!.next).toEqual({ kind: "retry", after_ms: 5_000 });
    expect(steps[5]!.next).toMatchObject({ kind: "fail", message: "validations still failing after 6 attempts: rule 3" });
  });

  test("max_retries 0 with completion attempts: completion runs, then the batch fails", () => {
    const partial = { decision: success, validation: v(2, 3) };
    const steps = drive(Array.from({ length: 4 }, () => partial), policy({ max_retries: 0, max_completion_attempts: 3 }));
    expect(steps.map((s) => s.next.kind)).toEqual(["completion", "completion", "completion", "fail"]);
  });

  test("a completion attempt that succeeds completes the batch", () => {
    const steps = drive([{ decision: success, validation: v(2, 3) }, { decision: success, validation: v(3, 3) }], policy());
    expect(steps.map((s) => s.next.kind)).toEqual(["completion", "complete"]);
  });

  test("holds cost no retry: the retry after any number of holds still waits the first backoff", () => {
    const pol = policy({ max_retries: 1, max_waits: 5 });
    const steps = drive([{ decision: hold(NOW + HOUR) }, { decision: hold(NOW + HOUR) }, { decision: hold(NOW + HOUR) }, { decision: transient }, { decision: transient }], pol);
    expect(steps.map((s) => s.next.kind)).toEqual(["hold", "hold", "hold", "retry", "fail"]);
    expect(steps[2]!.progress).toEqual({ mode: "normal", normalUsed: 0, completionUsed: 0, holds: 3 });
    expect(steps[3]!.next).toEqual({ kind: "retry", after_ms: 5_000 });
    expect(steps[4]!.next).toMatchObject({ message: "failed after 2 attempts: exit code 1: boom" });
  });

  test("a hold in completion mode keeps the mode and the completion budget", () => {
    const s = step(progressIn("completion", 1, 2), { now: NOW, random: 0, decision: hold(NOW + HOUR) }, policy());
    expect(s.progress).toEqual({ mode: "completion", normalUsed: 1, completionUsed: 2, holds: 1 });
  });

  test("max_waits: holds beyond it fail the batch (rate_limit), counting holds from earlier runs", () => {
    const pol = policy({ max_waits: 2 });
    const steps = drive([{ decision: hold(NOW + HOUR) }, { decision: hold(NOW + HOUR) }, { decision: hold(NOW + HOUR) }], pol);
    expect(steps.map((s) => s.next.kind)).toEqual(["hold", "hold", "fail"]);
    expect(steps[2]!.next).toEqual({
      kind: "fail",
      scope: "batch",
      category: "rate_limit",
      message: "still rate-limited after 2 holds (rate_limit.max_waits): You've hit your limit",
    });
    expect(steps[2]!.decision).toBe("hold");

    // The count starts from the batch's persisted rate_limit_waits.
    const resumed = step(initialProgress(2), { now: NOW, random: 0, decision: hold(NOW + HOUR) }, pol);
    expect(resumed.next.kind).toBe("fail");

    const none = step(initialProgress(), { now: NOW, random: 0, decision: hold(NOW + HOUR) }, policy({ max_waits: 0 }));
    expect(none.next).toMatchObject({ kind: "fail", category: "rate_limit" });
  });

  test("step does not change the progress it is given", () => {
    const p = progressIn("retry", 1, 0, 1);
    const copy = { ...p };
    step(p, { now: NOW, random: 0, decision: transient }, policy());
    step(p, { now: NOW, random: 0, decision: hold(NOW + HOUR) }, policy());
    expect(p).toEqual(copy);
  });
});

describe("step: holds through holdUntil", () => {
  test("a reset time that has passed holds the growing minimum, with a note", () => {
    const s1 = step(initialProgress(), { now: NOW, random: 0, decision: hold(NOW - MIN) }, policy());
    expect(s1.next).toEqual({ kind: "hold", until: NOW + MIN_HOLD_MS });
    expect(s1.reason).toBe("You've hit your limit (its reset time has already passed)");
    const s2 = step(s1.progress, { now: NOW, random: 0, decision: hold(NOW - MIN) }, policy());
    expect(s2.next).toEqual({ kind: "hold", until: NOW + 2 * MIN_HOLD_MS });
  });

  test("a reset time weeks away falls back to wait_minutes, with a note", () => {
    const s = step(initialProgress(), { now: NOW, random: 0, decision: hold(NOW + 30 * 24 * HOUR) }, policy({ wait_minutes: 45 }));
    expect(s.next).toEqual({ kind: "hold", until: NOW + 45 * MIN });
    expect(s.reason).toMatch(/^You've hit your limit \(the reset time is more than 7 days away or unreadable; holding rate_limit.wait_minutes instead\)$/);
  });
});

describe("holdUntil", () => {
  const WAIT = 60 * MIN;

  test("an honest reset time is kept", () => {
    for (const ahead of [1_000, 5 * MIN, 2 * HOUR, 6 * 24 * HOUR, MAX_HOLD_MS]) {
      expect(holdUntil(NOW + ahead, 1, NOW, WAIT)).toEqual({ until: NOW + ahead });
    }
  });

  test("a reset in the past or now holds at least MIN_HOLD_MS, doubling with each hold, up to wait_minutes", () => {
    const floors = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((k) => holdUntil(NOW - 10 * MIN, k, NOW, WAIT).until - NOW);
    expect(floors.slice(0, 5)).toEqual([5_000, 10_000, 20_000, 40_000, 80_000]);
    for (let i = 1; i < floors.length; i++) expect(floors[i]!).toBeGreaterThanOrEqual(floors[i - 1]!);
    expect(Math.max(...floors)).toBe(WAIT);
    expect(floors[floors.length - 1]).toBe(WAIT);
  });

  test("never a tight loop: reset now, a moment ago, or under a second away all hold into the future", () => {
    for (const reset of [NOW, NOW - 1, NOW + 999, NOW - 365 * 24 * HOUR, 0]) {
      for (const k of [1, 2, 50, 10_000]) {
        const { until } = holdUntil(reset, k, NOW, WAIT);
        expect(until - NOW).toBeGreaterThanOrEqual(Math.min(MIN_HOLD_MS, WAIT));
        expect(until - NOW).toBeLessThanOrEqual(WAIT);
      }
    }
    expect(holdUntil(NOW, 1, NOW, WAIT)).toEqual({ until: NOW + MIN_HOLD_MS, note: undefined });
    expect(holdUntil(NOW - 1, 1, NOW, WAIT).note).toBe("its reset time has already passed");
  });

  test("the minimum is itself capped by a short wait_minutes", () => {
    expect(holdUntil(NOW - 1, 1, NOW, 2_000).until).toBe(NOW + 2_000);
  });

  test("a reset more than 7 days away, or unreadable, falls back to wait_minutes", () => {
    for (const reset of [NOW + MAX_HOLD_MS + 1, NOW + 30 * 24 * HOUR, Number.NaN, Number.POSITIVE_INFINITY]) {
      const r = holdUntil(reset, 1, NOW, WAIT);
      expect(r.until).toBe(NOW + WAIT);
      expect(r.note).toMatch(/more than 7 days away/);
    }
  });

  test("wait_minutes itself never holds longer than 7 days", () => {
    expect(holdUntil(NOW + 30 * 24 * HOUR, 1, NOW, 365 * 24 * HOUR).until).toBe(NOW + MAX_HOLD_MS);
  });
});
