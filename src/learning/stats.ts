/**
 * What the outcome history says, per job or across jobs (`mozart stats`, the dashboard). Pure:
 * outcomes in, figures out. The exact definitions are in docs/learning.md:
 *   - first_try_rate: first-try successes / finished batches (cancelled ones are not finished);
 *   - attempts: how many finished batches took k attempts, holds not counted;
 *   - failing_validations: each rule with the attempts it failed on, the batches, one example batch;
 *   - cost_usd / duration_ms: p50 and p90 per finished batch, nearest rank (the value at
 *     position ceil(p/100 * n) of the sorted values);
 *   - cost_per_successful_item: the cost of every outcome (failed and cancelled batches cost too) /
 *     the items of the successful batches;
 *   - held: time held / the batches' duration, in total and per limit kind;
 *   - by_model: the same figures for each model's outcomes.
 */
import type { OutcomeFigures } from "./digest.ts";
import { succeeded, type OutcomeCategory } from "./outcome.ts";

type Outcome = OutcomeFigures;

export interface Percentiles {
  p50: number;
  p90: number;
}

export interface Figures {
  outcomes: number;
  finished: number;
  categories: Record<OutcomeCategory, number>;
  first_try_rate: number | null;
  /** Attempts (holds not counted) → finished batches that took that many. */
  attempts: Array<{ attempts: number; batches: number }>;
  failing_validations: Array<{ description: string; failures: number; batches: number; example: { job_id: string; batch_num: number; at: string } }>;
  cost_usd: Percentiles & { total: number };
  duration_ms: Percentiles & { total: number };
  successful_items: number;
  cost_per_successful_item: number | null;
  held: { ms: number; share: number; by_kind: Record<string, { ms: number; share: number }> };
}

export interface Stats extends Figures {
  jobs: string[];
  since: string | null;
  by_model: Record<string, Figures>;
}

/** The value at position ceil(p/100 * n) of ascending `sorted` (nearest rank); 0 for none. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

const round = (x: number, digits = 8) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Figures gathered one outcome at a time, so the whole set and each model's share are one pass. */
class Tally {
  categories: Record<OutcomeCategory, number> = { first_try: 0, after_retry: 0, after_completion: 0, failed: 0, cancelled: 0 };
  attempts = new Map<number, number>();
  failing = new Map<string, { failures: number; batches: number; example: { job_id: string; batch_num: number; at: string } }>();
  costs: number[] = [];
  durations: number[] = [];
  heldBy: Record<string, number> = {};
  outcomes = 0;
  total = 0;
  durationTotal = 0;
  held = 0;
  items = 0;

  add(o: Outcome): void {
    this.outcomes++;
    this.categories[o.category]++;
    this.total += o.usd;
    this.durationTotal += o.duration_ms;
    if (o.held_ms) {
      this.held += o.held_ms;
      for (const k in o.held_by) this.heldBy[k] = (this.heldBy[k] ?? 0) + o.held_by[k]!;
    }
    for (const f of o.failed_validations) {
      const seen = this.failing.get(f.description);
      if (seen) {
        seen.failures += f.attempts.length;
        seen.batches++;
      } else this.failing.set(f.description, { failures: f.attempts.length, batches: 1, example: { job_id: o.job_id, batch_num: o.batch_num, at: o.at } });
    }
    if (o.category === "cancelled") return;
    if (succeeded(o)) this.items += o.items;
    const tries = o.attempts - o.holds;
    this.attempts.set(tries, (this.attempts.get(tries) ?? 0) + 1);
    this.costs.push(o.usd);
    this.durations.push(o.duration_ms);
  }

  figures(): Figures {
    const costs = Float64Array.from(this.costs).sort();
    const durations = Float64Array.from(this.durations).sort();
    const finished = this.outcomes - this.categories.cancelled;
    const share = (ms: number) => (this.durationTotal > 0 ? round(ms / this.durationTotal, 6) : 0);
    return {
      outcomes: this.outcomes,
      finished,
      categories: this.categories,
      first_try_rate: finished ? round(this.categories.first_try / finished, 6) : null,
      attempts: [...this.attempts.entries()].sort((a, b) => a[0] - b[0]).map(([k, n]) => ({ attempts: k, batches: n })),
      failing_validations: [...this.failing.entries()]
        .map(([description, f]) => ({ description, ...f }))
        .sort((a, b) => b.failures - a.failures || b.batches - a.batches || (a.description < b.description ? -1 : 1)),
      cost_usd: { p50: percentile(costs, 50), p90: percentile(costs, 90), total: round(this.total) },
      duration_ms: { p50: percentile(durations, 50), p90: percentile(durations, 90), total: this.durationTotal },
      successful_items: this.items,
      cost_per_successful_item: this.items ? round(this.total / this.items) : null,
      held: { ms: this.held, share: share(this.held), by_kind: Object.fromEntries(Object.entries(this.heldBy).sort().map(([k, ms]) => [k, { ms, share: share(ms) }])) },
    };
  }
}

export function figures(outcomes: Outcome[]): Figures {
  const t = new Tally();
  for (const o of outcomes) t.add(o);
  return t.figures();
}

export interface StatsFilter {
  job?: string;
  /** Epoch ms: outcomes at or after it. */
  since?: number;
}

export function selectOutcomes(all: Outcome[], filter: StatsFilter): Outcome[] {
  const since = filter.since;
  return all.filter((o) => (!filter.job || o.job_id === filter.job) && (since === undefined || Date.parse(o.at) >= since));
}

export function computeStats(all: Outcome[], filter: StatsFilter = {}): Stats {
  const whole = new Tally();
  const models = new Map<string, Tally>();
  const jobs = new Set<string>();
  const since = filter.since;
  // ISO times of one format compare as text: no date parsing per outcome.
  const sinceIso = since !== undefined ? new Date(since).toISOString() : undefined;
  for (const o of all) {
    if (filter.job && o.job_id !== filter.job) continue;
    if (sinceIso !== undefined && o.at < sinceIso) continue;
    jobs.add(o.job_id);
    whole.add(o);
    const m = o.model ?? "(unknown)";
    let t = models.get(m);
    if (!t) models.set(m, (t = new Tally()));
    t.add(o);
  }
  return {
    jobs: [...jobs].sort(),
    since: sinceIso ?? null,
    ...whole.figures(),
    by_model: Object.fromEntries([...models.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([m, t]) => [m, t.figures()])),
  };
}
