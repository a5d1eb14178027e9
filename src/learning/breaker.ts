/**
 * The prompt-quality breaker and the concurrency it allows, from the outcomes of the run's last
 * finished batches. Pure: outcomes in, a verdict out.
 *
 * Let W = learning.window and R = (first-try successes among the run's last W finished batches) / W,
 * judged once W batches have finished in this run (cancelled ones do not count; failed ones count
 * as not first-try). Then, after every finished batch:
 *   - escalation_enabled and R < min_confidence_threshold: the job pauses (reason low_success);
 *   - escalation_enabled and R >= high_confidence_threshold: concurrency + 1, at most `concurrency`;
 *   - escalation_enabled and R < high_confidence_threshold: concurrency - 1, at least 1.
 * With escalation the run starts at concurrency 1. A resumed run starts a new window.
 */
import type { Outcome } from "./outcome.ts";

export interface BreakerConfig {
  window: number;
  min_confidence_threshold: number;
  high_confidence_threshold: number;
  escalation_enabled: boolean;
}

export interface Verdict {
  /** Set when the job must pause. */
  pause?: { rate: number; window: number; threshold: number; failing: string[] };
  /** The concurrency to run at from now on. */
  concurrency: number;
  /** The first-try success rate over the window, when the window is full. */
  rate?: number;
}

/** The batches the breaker judges: finished, not cancelled, the last `window` of them. */
export function windowOf(outcomes: Outcome[], window: number): Outcome[] {
  const judged = outcomes.filter((o) => o.category !== "cancelled");
  return judged.slice(Math.max(0, judged.length - window));
}

export function judge(outcomes: Outcome[], cfg: BreakerConfig, current: number, max: number): Verdict {
  if (!cfg.escalation_enabled) return { concurrency: max };
  const w = windowOf(outcomes, cfg.window);
  if (w.length < cfg.window) return { concurrency: current };
  const rate = w.filter((o) => o.category === "first_try").length / w.length;
  if (rate < cfg.min_confidence_threshold) {
    return { rate, concurrency: current, pause: { rate, window: cfg.window, threshold: cfg.min_confidence_threshold, failing: failingOf(w) } };
  }
  const next = rate >= cfg.high_confidence_threshold ? Math.min(max, current + 1) : Math.max(1, current - 1);
  return { rate, concurrency: next };
}

/** The validations that failed in these batches, most often first. */
export function failingOf(outcomes: Outcome[]): string[] {
  const count = new Map<string, number>();
  for (const o of outcomes) for (const f of o.failed_validations) count.set(f.description, (count.get(f.description) ?? 0) + f.attempts.length);
  return [...count.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([d]) => d);
}

/** The concurrency a run starts at. */
export function initialConcurrency(cfg: Pick<BreakerConfig, "escalation_enabled">, max: number): number {
  return cfg.escalation_enabled ? 1 : max;
}
