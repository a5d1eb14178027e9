/**
 * One outcome per finished batch: how it ended, what it took, what failed. Built from the batch
 * record at the moment the batch finishes (no clock, no store), kept on the batch record in the
 * job's state and appended to the history (learning/history.ts) for `mozart stats`, estimates
 * and the prompt-quality breaker.
 */
import type { BatchRecord, TokenCounts } from "../state/types.ts";

export const OUTCOME_CATEGORIES = ["first_try", "after_retry", "after_completion", "failed", "cancelled"] as const;
export type OutcomeCategory = (typeof OUTCOME_CATEGORIES)[number];

export interface Outcome {
  /** Format version of the record. */
  v: 1;
  job_id: string;
  batch_num: number;
  /** Items in the batch. */
  items: number;
  /** ISO time the batch finished. */
  at: string;
  runner: string;
  /**
   * first_try: completed by its first attempt (rate-limit holds do not count); after_retry:
   * completed after at least one failed attempt, without completion mode; after_completion:
   * completed in completion mode; failed: the batch failed (`decision` says why); cancelled:
   * the job was cancelled while the batch was running.
   */
  category: OutcomeCategory;
  /** failed: the decision category (validation, rate_limit, auth, timeout, …). */
  decision?: string;
  /** Attempts, holds included; `holds` of them were rate-limited. */
  attempts: number;
  holds: number;
  completion_attempts: number;
  usd: number;
  tokens: TokenCounts;
  /** Wall time of the batch in the run that finished it, holds included. */
  duration_ms: number;
  held_ms: number;
  /** Held time by limit kind (reset_time, retry_after, default_wait, backoff, or `shared` for another batch's hold). */
  held_by: Record<string, number>;
  /** The validations that failed, with the attempts they failed on. */
  failed_validations: Array<{ description: string; attempts: number[] }>;
  backend: string;
  model?: string;
  config_hash: string;
  template_hash: string;
}

export interface OutcomeContext {
  job_id: string;
  runner: string;
  at: string;
  backend: string;
  model?: string;
  config_hash: string;
  template_hash: string;
  /** The run's own wall time of the batch. */
  duration_ms: number;
  cancelled?: boolean;
}

/** What the batch record says about how its attempts went, kept across attempts and runs. */
export interface BatchLearning {
  /** Rule description → attempts it failed on. */
  failed_validations?: Record<string, number[]>;
  held_by?: Record<string, number>;
  tokens?: TokenCounts;
}

export function categoryOf(b: Pick<BatchRecord, "status" | "attempts" | "rate_limit_waits" | "completion_attempts">, cancelled = false): OutcomeCategory {
  if (cancelled) return "cancelled";
  if (b.status === "failed") return "failed";
  if (b.completion_attempts > 0) return "after_completion";
  return b.attempts - b.rate_limit_waits <= 1 ? "first_try" : "after_retry";
}

export function buildOutcome(b: BatchRecord & BatchLearning, ctx: OutcomeContext): Outcome {
  const category = categoryOf(b, ctx.cancelled);
  const tokens = b.tokens ?? { input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 };
  return {
    v: 1,
    job_id: ctx.job_id,
    batch_num: b.batch_num,
    items: b.end_item - b.start_item + 1,
    at: ctx.at,
    runner: ctx.runner,
    category,
    ...(category === "failed" ? { decision: b.error?.category ?? "unknown" } : {}),
    attempts: b.attempts,
    holds: b.rate_limit_waits,
    completion_attempts: b.completion_attempts,
    usd: b.cost_usd,
    tokens,
    duration_ms: ctx.duration_ms,
    held_ms: b.held_ms ?? 0,
    held_by: { ...b.held_by },
    failed_validations: Object.entries(b.failed_validations ?? {}).map(([description, attempts]) => ({ description, attempts: [...attempts] })),
    backend: ctx.backend,
    ...(ctx.model ? { model: ctx.model } : {}),
    config_hash: ctx.config_hash,
    template_hash: ctx.template_hash,
  };
}

/** A record read back from the history or the state, or undefined when it is not one. */
export function checkOutcome(value: unknown): Outcome | undefined {
  const o = value as Partial<Outcome> | null;
  if (!o || typeof o !== "object" || o.v !== 1 || typeof o.job_id !== "string" || typeof o.batch_num !== "number" || typeof o.at !== "string") return undefined;
  if (!(OUTCOME_CATEGORIES as readonly string[]).includes(o.category as string)) return undefined;
  return o as Outcome;
}

export const succeeded = (o: Pick<Outcome, "category">): boolean => o.category === "first_try" || o.category === "after_retry" || o.category === "after_completion";
