import { describe, expect, test } from "bun:test";
import { attemptsAllowed, retryDelayMs, type RetryConfig } from "../../src/engine/retry.ts";

const cfg = (over: Partial<RetryConfig> = {}): RetryConfig => ({
  max_retries: 3,
  base_delay_seconds: 10,
  max_delay_seconds: 3600,
  exponential_base: 2,
  jitter: false,
  ...over,
});
const never = () => {
  throw new Error("random must not be called without jitter");
};

describe("retryDelayMs", () => {
  test("grows exponentially from the base delay, in milliseconds", () => {
    expect([1, 2, 3, 4].map((k) => retryDelayMs(k, cfg(), never))).toEqual([10_000, 20_000, 40_000, 80_000]);
    expect(retryDelayMs(3, cfg({ base_delay_seconds: 0.5, exponential_base: 3 }), never)).toBe(4_500);
  });

  test("is capped at max_delay_seconds, even for huge retry numbers", () => {
    expect(retryDelayMs(9, cfg({ max_delay_seconds: 100 }), never)).toBe(100_000);
    expect(retryDelayMs(5000, cfg({ max_delay_seconds: 100 }), never)).toBe(100_000);
  });

  test("treats retry numbers below 1 as the first retry", () => {
    expect(retryDelayMs(0, cfg(), never)).toBe(10_000);
    expect(retryDelayMs(-3, cfg(), never)).toBe(10_000);
  });

  test("jitter scales the delay between 50% and 100%", () => {
    const c = cfg({ jitter: true });
    expect(retryDelayMs(2, c, () => 0)).toBe(10_000);
    expect(retryDelayMs(2, c, () => 0.5)).toBe(15_000);
    expect(retryDelayMs(2, c, () => 0.999999)).toBeCloseTo(20_000, -1);
  });

  test("jitter never exceeds max_delay_seconds (R14), whatever the random source returns", () => {
    const c = cfg({ jitter: true, max_delay_seconds: 30 });
    for (const r of [0, 0.25, 0.5, 0.75, 0.9999, 1, 1.7, -2, Number.NaN]) {
      for (const k of [1, 2, 3, 4, 10, 100]) {
        const ms = retryDelayMs(k, c, () => r);
        expect(ms).toBeLessThanOrEqual(30_000);
        expect(ms).toBeGreaterThanOrEqual(Math.min(10_000 * 2 ** (k - 1), 30_000) * 0.5);
      }
    }
  });

  test("many random draws stay within [half, full] of the capped delay", () => {
    const c = cfg({ jitter: true, max_delay_seconds: 50 });
    for (let i = 0; i < 1000; i++) {
      const ms = retryDelayMs(3, c, Math.random);
      expect(ms).toBeGreaterThanOrEqual(20_000);
      expect(ms).toBeLessThanOrEqual(40_000);
    }
  });
});

describe("attemptsAllowed", () => {
  test("max_retries counts retries after the first try (R2)", () => {
    expect(attemptsAllowed({ max_retries: 0 })).toBe(1);
    expect(attemptsAllowed({ max_retries: 2 })).toBe(3);
    expect(attemptsAllowed(cfg())).toBe(4);
  });
});
