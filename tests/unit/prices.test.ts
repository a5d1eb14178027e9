/** The price table: every model family, every kind of token (cache writes by TTL, reads), the batch discount, and the budget arithmetic. */
import { describe, expect, test } from "bun:test";
import { cacheHitRatio, costOf, estimateTokens, maxTokensWithin, priceOf, tokensFromUsage } from "../../src/backends/prices.ts";
import { noTokens } from "../../src/state/spend.ts";
import type { TokenCounts } from "../../src/state/types.ts";

const M = 1_000_000;
const only = (kind: keyof TokenCounts, n = M): TokenCounts => ({ ...noTokens(), [kind]: n });

/** [model id, family, input $/M, output $/M] */
const FAMILIES: Array<[string, string, number, number]> = [
  ["claude-opus-4-5-20251101", "Claude Opus 4.5+", 5, 25],
  ["claude-opus-4-6", "Claude Opus 4.5+", 5, 25],
  ["opus", "Claude Opus 4.5+", 5, 25],
  ["claude-opus-4-1-20250805", "Claude Opus 3/4/4.1", 15, 75],
  ["claude-opus-4-20250514", "Claude Opus 3/4/4.1", 15, 75],
  ["claude-3-opus-20240229", "Claude Opus 3/4/4.1", 15, 75],
  ["claude-sonnet-4-5-20250929", "Claude Sonnet", 3, 15],
  ["claude-sonnet-4-20250514", "Claude Sonnet", 3, 15],
  ["claude-3-7-sonnet-20250219", "Claude Sonnet", 3, 15],
  ["claude-haiku-4-5-20251001", "Claude Haiku 4.5", 1, 5],
  ["claude-3-5-haiku-20241022", "Claude Haiku 3.5", 0.8, 4],
  ["claude-3-haiku-20240307", "Claude Haiku 3", 0.25, 1.25],
];

describe("price table", () => {
  for (const [model, family, input, output] of FAMILIES) {
    test(`${model}: ${family}, every kind of token`, () => {
      const p = priceOf(model)!;
      expect(p).toMatchObject({ family, input, output });
      expect(costOf(p, only("input"))).toBeCloseTo(input, 8);
      expect(costOf(p, only("output"))).toBeCloseTo(output, 8);
      expect(costOf(p, only("cache_write_5m"))).toBeCloseTo(input * 1.25, 8);
      expect(costOf(p, only("cache_write_1h"))).toBeCloseTo(input * 2, 8);
      expect(costOf(p, only("cache_read"))).toBeCloseTo(input * 0.1, 8);
      // Message Batches: half of everything.
      const all: TokenCounts = { input: M, output: M, cache_read: M, cache_write_5m: M, cache_write_1h: M };
      expect(costOf(p, all, { batch: true })).toBeCloseTo((input * (1 + 1.25 + 2 + 0.1) + output) / 2, 8);
    });
  }

  test("a model the table does not know has no price (recorded unpriced, never guessed)", () => {
    expect(priceOf("gpt-4o")).toBeUndefined();
    expect(priceOf("my-local-model")).toBeUndefined();
  });

  test("a realistic request: 1,200 uncached + 3,000 read + 500 written (1h) input, 800 output on Sonnet", () => {
    const t: TokenCounts = { input: 1200, output: 800, cache_read: 3000, cache_write_5m: 0, cache_write_1h: 500 };
    expect(costOf(priceOf("claude-sonnet-4-5")!, t)).toBe(0.0195);
  });
});

describe("usage → tokens", () => {
  test("input_tokens excludes cached tokens; cache writes are split by TTL when the API says so", () => {
    const t = tokensFromUsage({ input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 300, cache_creation_input_tokens: 50, cache_creation: { ephemeral_5m_input_tokens: 20, ephemeral_1h_input_tokens: 30 } });
    expect(t).toEqual({ input: 10, output: 20, cache_read: 300, cache_write_5m: 20, cache_write_1h: 30 });
  });
  test("without the split, writes count at the TTL the request asked for", () => {
    expect(tokensFromUsage({ input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 40 }, "1h")).toMatchObject({ cache_write_1h: 40, cache_write_5m: 0 });
    expect(tokensFromUsage({ input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 40 }, "5m")).toMatchObject({ cache_write_5m: 40, cache_write_1h: 0 });
  });
  test("garbage and missing fields count as zero", () => {
    expect(tokensFromUsage(undefined)).toEqual(noTokens());
    expect(tokensFromUsage({ input_tokens: "12", output_tokens: -3, cache_read_input_tokens: Number.NaN })).toEqual(noTokens());
  });
  test("the cache-hit ratio is the share of prompt tokens read from the cache", () => {
    expect(cacheHitRatio({ input: 100, output: 999, cache_read: 300, cache_write_5m: 100, cache_write_1h: 0 })).toBe(0.6);
    expect(cacheHitRatio(noTokens())).toBe(0);
  });
});

describe("budget arithmetic", () => {
  const sonnet = priceOf("claude-sonnet-4")!;
  test("max_tokens so that prompt + every output token stays within the budget", () => {
    // 10,000 prompt tokens = $0.03; $0.06 left buys 4,000 output tokens at $15/M.
    expect(maxTokensWithin(sonnet, 0.09, { tokens: 10_000, cachedTokens: 0, ttl: "5m" })).toBe(4000);
    // Half of the prompt may be written to the cache (1.25x): $0.01875 + $0.015; the rest buys output.
    expect(maxTokensWithin(sonnet, 0.09, { tokens: 10_000, cachedTokens: 5000, ttl: "5m" })).toBe(3750);
    // At half price the same budget buys twice as much.
    expect(maxTokensWithin(sonnet, 0.09, { tokens: 10_000, cachedTokens: 0, ttl: "5m" }, { batch: true })).toBe(10_000);
  });
  test("a prompt that alone costs more than the budget leaves nothing", () => {
    expect(maxTokensWithin(sonnet, 0.01, { tokens: 10_000, cachedTokens: 0, ttl: "1h" })).toBe(0);
  });
  test("the documented heuristic: 3.5 characters per token, rounded up", () => {
    expect(estimateTokens("x".repeat(35))).toBe(10);
    expect(estimateTokens("x".repeat(36))).toBe(11);
  });
});
