/**
 * What happens to a batch after an attempt: complete, retry after a delay, switch to completion
 * mode, hold for a limit, fail, or go back to pending. Pure: the clock and the randomness come
 * in as values. Together with classify() it holds every decision the engine makes, and the
 * retry, completion and hold budgets are counted here and nowhere else.
 */
import type { AttemptDecision, AttemptMode } from "../state/types.ts";
import type { Decision } from "./classify.ts";
import { attemptsAllowed, retryDelayMs, type RetryConfig } from "./retry.ts";

/** Where a batch stands between attempts. Counts are of unsuccessful attempts in this run. */
export interface BatchProgress {
  /** The mode of the next attempt. */
  mode: AttemptMode;
  normalUsed: number;
  completionUsed: number;
  /** Rate-limit holds of this batch so far (persisted as the batch's rate_limit_waits). */
  holds: number;
}

export interface StepPolicy {
  retry: RetryConfig & { max_completion_attempts: number; completion_threshold_percent: number; completion_delay_seconds: number };
  rate_limit: { wait_minutes: number; max_waits: number };
}

export interface ValidationOutcome {
  passed: number;
  failed: number;
  total: number;
  percent: number;
  /** Descriptions of the failing rules. */
  failing: string[];
}

export interface StepInput {
  now: number;
  /** A number in [0, 1) for the retry jitter. */
  random: number;
  decision: Decision;
  /** The validations of this attempt, when it succeeded and they ran. */
  validation?: ValidationOutcome;
  /** The latest validations of the batch (this attempt's, or an earlier one's). */
  lastValidation?: ValidationOutcome;
  /** The batch's attempts so far, earlier runs included (for messages; budgets count this run's). */
  attempts?: number;
}

export type Next =
  | { kind: "complete" }
  | { kind: "retry"; after_ms: number }
  | { kind: "completion"; after_ms: number }
  | { kind: "hold"; until: number }
  | { kind: "fail"; message: string; category: string; scope: "batch" | "job" }
  | { kind: "interrupted" };

export interface StepOutput {
  next: Next;
  progress: BatchProgress;
  /** What the attempt record says the attempt was. */
  decision: AttemptDecision;
  reason: string;
}

/** No hold lasts longer than this; a reset time further away falls back to rate_limit.wait_minutes. */
export const MAX_HOLD_MS = 7 * 24 * 3_600_000;
/** A reset time that has already passed still holds at least this long (doubling per hold, up to wait_minutes). */
export const MIN_HOLD_MS = 5_000;

export function initialProgress(holds = 0): BatchProgress {
  return { mode: "normal", normalUsed: 0, completionUsed: 0, holds };
}

export function step(progress: BatchProgress, input: StepInput, policy: StepPolicy): StepOutput {
  const d = input.decision;
  const p = { ...progress };
  const v = input.validation;

  if (d.kind === "interrupted") return { next: { kind: "interrupted" }, progress: p, decision: "interrupted", reason: "stopped before it finished" };

  if (d.kind === "fail_job") {
    return { next: { kind: "fail", message: `${d.reason} — ${d.hint}`, category: d.category, scope: "job" }, progress: p, decision: "fail_job", reason: d.reason };
  }
  if (d.kind === "fail_batch") return { next: { kind: "fail", message: d.reason, category: d.category, scope: "batch" }, progress: p, decision: "fail_batch", reason: d.reason };

  // A per-model limit left by switching model (backend.fallback_models): the next attempt runs at
  // once with the next model; no retry budget is used, nothing was wrong with the batch.
  if (d.kind === "retry" && d.category === "model_limit") return { next: { kind: "retry", after_ms: 0 }, progress: p, decision: "retry", reason: d.reason };

  if (d.kind === "hold") {
    p.holds++;
    if (p.holds > policy.rate_limit.max_waits) {
      return {
        next: { kind: "fail", message: `still rate-limited after ${policy.rate_limit.max_waits} holds (rate_limit.max_waits): ${d.reason}`, category: "rate_limit", scope: "batch" },
        progress: p,
        decision: "hold",
        reason: d.reason,
      };
    }
    const waitMs = policy.rate_limit.wait_minutes * 60_000;
    const { until, note } =
      d.source === "backoff" ? backoffHold(p.holds, input.now, waitMs) : d.source === "retry_after" ? retryAfterHold(d.until, input.now, waitMs) : holdUntil(d.until, p.holds, input.now, waitMs);
    return { next: { kind: "hold", until }, progress: p, decision: "hold", reason: note ? `${d.reason} (${note})` : d.reason };
  }

  if (d.kind === "success" && v && v.failed === 0) return { next: { kind: "complete" }, progress: p, decision: "success", reason: "all validations passed" };

  // An unsuccessful attempt uses the budget of the mode it ran in.
  const decision: AttemptDecision = d.kind === "success" ? "validation_failed" : "retry";
  const reason = d.kind === "success" ? `${v!.passed}/${v!.total} validations passed` : d.reason;
  if (p.mode === "completion") p.completionUsed++;
  else p.normalUsed++;

  const last = v ?? input.lastValidation;
  const r = policy.retry;
  if (last && last.total > 0 && last.percent > r.completion_threshold_percent && p.completionUsed < r.max_completion_attempts) {
    p.mode = "completion";
    return { next: { kind: "completion", after_ms: r.completion_delay_seconds * 1000 }, progress: p, decision, reason };
  }
  const inRun = p.normalUsed + p.completionUsed;
  const attempts = Math.max(input.attempts ?? 0, inRun);
  const earlier = attempts > inRun ? ` (${inRun} in this run)` : "";
  if (p.normalUsed >= attemptsAllowed(r)) {
    const message =
      d.kind === "success"
        ? `validations still failing after ${plural(attempts, "attempt")}${earlier}: ${v!.failing.join("; ")}`
        : `failed after ${plural(Math.max(input.attempts ?? 0, p.normalUsed), "attempt")}${earlier}: ${d.reason}`;
    return { next: { kind: "fail", message, category: d.kind === "retry" ? d.category : "validation", scope: "batch" }, progress: p, decision, reason };
  }
  p.mode = "retry";
  const minDelay = d.kind === "retry" ? (d.min_delay_ms ?? 0) : 0;
  return { next: { kind: "retry", after_ms: Math.max(retryDelayMs(p.normalUsed, r, () => input.random), minDelay) }, progress: p, decision, reason };
}

/**
 * The end of a hold: the limit's own reset time, but never a tight loop when that time has
 * passed (at least MIN_HOLD_MS, doubling with each hold of the batch, up to wait_minutes), and
 * never longer than MAX_HOLD_MS (then wait_minutes, itself capped).
 */
export function holdUntil(reset: number, holdNumber: number, now: number, waitMs: number): { until: number; note?: string } {
  const wait = Math.min(waitMs, MAX_HOLD_MS);
  if (!Number.isFinite(reset) || reset - now > MAX_HOLD_MS) {
    return { until: now + wait, note: `the reset time is more than ${MAX_HOLD_MS / 86_400_000} days away or unreadable; holding rate_limit.wait_minutes instead` };
  }
  if (reset - now < 1000) {
    const floor = Math.min(MIN_HOLD_MS * 2 ** Math.min(holdNumber - 1, 20), wait);
    return { until: now + floor, note: reset < now ? "its reset time has already passed" : undefined };
  }
  return { until: reset };
}

/**
 * `retry-after` says exactly when: honoured to the millisecond (an earlier retry fails), with a
 * quarter of a second at least so a `retry-after: 0` cannot loop, and never past MAX_HOLD_MS.
 */
export function retryAfterHold(until: number, now: number, waitMs: number): { until: number; note?: string } {
  if (!Number.isFinite(until) || until - now > MAX_HOLD_MS) return { until: now + Math.min(waitMs, MAX_HOLD_MS), note: "retry-after is more than 7 days away; holding rate_limit.wait_minutes instead" };
  return { until: Math.max(until, now + 250) };
}

/** An API 429 without a reset time: 5 s, doubling with each hold of the batch, at most a minute (and never past wait_minutes). */
export function backoffHold(holdNumber: number, now: number, waitMs: number): { until: number; note: string } {
  const ms = Math.min(MIN_HOLD_MS * 2 ** Math.min(holdNumber - 1, 20), 60_000, waitMs);
  return { until: now + ms, note: `no reset time given; holding ${Math.round(ms / 1000)}s` };
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
