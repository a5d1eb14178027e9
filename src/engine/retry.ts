/**
 * Backoff maths for full retries. Pure: the caller passes the randomness, so tests are exact.
 */
import type { JobConfig } from "../config/schema.ts";

export type RetryConfig = Pick<
  JobConfig["retry"],
  "max_retries" | "base_delay_seconds" | "max_delay_seconds" | "exponential_base" | "jitter"
>;

/**
 * Delay before retry number `retryNumber` (1 = the first retry), in milliseconds.
 * Jitter scales the capped delay by a factor in [0.5, 1.0], so it spreads retries out without
 * ever exceeding max_delay_seconds (the reference multiplied by up to 1.5 after capping: R14).
 */
export function retryDelayMs(retryNumber: number, cfg: RetryConfig, random: () => number): number {
  const k = Number.isFinite(retryNumber) ? Math.max(1, Math.floor(retryNumber)) : 1;
  // Large k overflows to Infinity, which the cap absorbs.
  const seconds = Math.min(cfg.base_delay_seconds * cfg.exponential_base ** (k - 1), cfg.max_delay_seconds);
  const factor = cfg.jitter ? 0.5 + 0.5 * clamp01(random()) : 1;
  return Math.round(seconds * factor * 1000);
}

/** Attempts a batch may make in normal/retry mode: `max_retries` counts retries, not tries (R2). */
export function attemptsAllowed(cfg: Pick<RetryConfig, "max_retries">): number {
  return Math.max(0, Math.floor(cfg.max_retries)) + 1;
}

// A misbehaving random source must not push the delay outside its documented bounds.
function clamp01(x: number): number {
  return Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
}
