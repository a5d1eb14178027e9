/**
 * What a job will cost and how long it will take, from the outcomes of past batches that used the
 * same prompt template (same template hash). Pure. For n batches at concurrency c, over the m past
 * finished batches of the template (cancelled ones excluded):
 *   cost:     expected n · mean(cost), range [n · p10(cost), n · p90(cost)];
 *   duration: expected ⌈n / c⌉ · mean(duration), range [⌈n / c⌉ · p10, ⌈n / c⌉ · p90]
 * (batches run c at a time; the pause between batch starts is not included). p10/p90 are nearest rank.
 */
import type { OutcomeFigures } from "./digest.ts";
import { percentile } from "./stats.ts";

export interface Range {
  expected: number;
  low: number;
  high: number;
}

export interface HistoryEstimate {
  source: "history";
  template_hash: string;
  /** Past finished batches of this template the estimate is made from. */
  batches_seen: number;
  jobs_seen: string[];
  cost_usd: Range;
  duration_ms: Range;
}

/** Fewer past batches than this make no estimate. */
export const MIN_BATCHES = 3;

export function historyEstimate(outcomes: OutcomeFigures[], templateHash: string, batches: number, concurrency: number): HistoryEstimate | undefined {
  const seen = outcomes.filter((o) => o.template_hash === templateHash && o.category !== "cancelled");
  if (seen.length < MIN_BATCHES) return undefined;
  const costs = Float64Array.from(seen.map((o) => o.usd)).sort();
  const durations = Float64Array.from(seen.map((o) => o.duration_ms)).sort();
  const mean = (xs: Float64Array) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rounds = Math.ceil(batches / Math.max(1, concurrency));
  const r8 = (x: number) => Math.round(x * 1e8) / 1e8;
  return {
    source: "history",
    template_hash: templateHash,
    batches_seen: seen.length,
    jobs_seen: [...new Set(seen.map((o) => o.job_id))].sort(),
    cost_usd: { expected: r8(batches * mean(costs)), low: r8(batches * percentile(costs, 10)), high: r8(batches * percentile(costs, 90)) },
    duration_ms: { expected: Math.round(rounds * mean(durations)), low: rounds * percentile(durations, 10), high: rounds * percentile(durations, 90) },
  };
}
