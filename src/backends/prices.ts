/**
 * The price table: USD per million tokens for each model family, and the one function that
 * turns token counts into dollars. Every backend that prices tokens itself (anthropic_api,
 * anthropic_batch, the `--dry-run` estimate) reads this file and nothing else.
 *
 * List prices (platform.claude.com pricing, 2026). Cache writes cost 1.25x the input price with
 * the 5-minute TTL and 2x with the 1-hour TTL; cache reads cost 0.1x. The Message Batches API
 * bills every kind of token at half price. Long-context surcharges (prompts over 200k tokens on
 * some Sonnet models) are not modelled: such a request is under-counted, never refused.
 */
import { noTokens, roundUsd } from "../state/spend.ts";
import type { TokenCounts } from "../state/types.ts";

export interface ModelPrice {
  /** The family, as shown to people. */
  family: string;
  /** USD per million input tokens (uncached). */
  input: number;
  /** USD per million output tokens. */
  output: number;
  /** The shortest prefix the API caches; a shorter one is sent, and billed, as plain input. */
  minCacheTokens: number;
}

export const CACHE_WRITE_5M = 1.25;
export const CACHE_WRITE_1H = 2;
export const CACHE_READ = 0.1;
export const BATCH_DISCOUNT = 0.5;

/**
 * Model id patterns, most specific first. Ids look like `claude-opus-4-5-20251101`,
 * `claude-3-5-haiku-20241022`, `claude-sonnet-4-5` or a CLI alias such as `opus`.
 */
const TABLE: Array<[RegExp, ModelPrice]> = [
  [/opus-4-(?:[5-9]|1\d)(?!\d)|^opus$/, { family: "Claude Opus 4.5+", input: 5, output: 25, minCacheTokens: 4096 }],
  [/opus-4(?!\d)|opus-3|3-opus/, { family: "Claude Opus 3/4/4.1", input: 15, output: 75, minCacheTokens: 1024 }],
  [/sonnet/, { family: "Claude Sonnet", input: 3, output: 15, minCacheTokens: 1024 }],
  [/haiku-4(?!\d)|^haiku$/, { family: "Claude Haiku 4.5", input: 1, output: 5, minCacheTokens: 4096 }],
  [/3-5-haiku|haiku-3-5/, { family: "Claude Haiku 3.5", input: 0.8, output: 4, minCacheTokens: 2048 }],
  [/haiku/, { family: "Claude Haiku 3", input: 0.25, output: 1.25, minCacheTokens: 2048 }],
];

/** The price of a model, or undefined for a model this table does not know (then nothing is priced). */
export function priceOf(model: string): ModelPrice | undefined {
  const id = model.toLowerCase();
  return TABLE.find(([re]) => re.test(id))?.[1];
}

/** USD for the tokens of one or more requests; `batch` applies the Message Batches discount. */
export function costOf(price: ModelPrice, t: TokenCounts, opts: { batch?: boolean } = {}): number {
  const perToken = (usdPerMillion: number) => usdPerMillion / 1_000_000;
  const input = perToken(price.input);
  const dollars =
    t.input * input + t.cache_write_5m * input * CACHE_WRITE_5M + t.cache_write_1h * input * CACHE_WRITE_1H + t.cache_read * input * CACHE_READ + t.output * perToken(price.output);
  return roundUsd(opts.batch ? dollars * BATCH_DISCOUNT : dollars);
}

/**
 * Token counts from a Messages API `usage` object. `input_tokens` excludes cached tokens; the
 * cache writes are split by TTL when the API says so (`cache_creation.ephemeral_*`), otherwise
 * they are counted at the TTL the request asked for.
 */
export function tokensFromUsage(usage: Record<string, unknown> | undefined, requestedTtl: "5m" | "1h" = "5m"): TokenCounts {
  const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 0);
  const u = usage ?? {};
  const t = noTokens();
  t.input = n(u.input_tokens);
  t.output = n(u.output_tokens);
  t.cache_read = n(u.cache_read_input_tokens);
  const creation = u.cache_creation as Record<string, unknown> | undefined;
  const written = n(u.cache_creation_input_tokens);
  if (creation && typeof creation === "object" && (n(creation.ephemeral_5m_input_tokens) || n(creation.ephemeral_1h_input_tokens))) {
    t.cache_write_5m = n(creation.ephemeral_5m_input_tokens);
    t.cache_write_1h = n(creation.ephemeral_1h_input_tokens);
  } else if (requestedTtl === "1h") t.cache_write_1h = written;
  else t.cache_write_5m = written;
  return t;
}

/** Share of the prompt tokens that were read from the cache (0 when nothing was sent). */
export function cacheHitRatio(t: TokenCounts): number {
  const prompt = t.input + t.cache_read + t.cache_write_5m + t.cache_write_1h;
  return prompt ? t.cache_read / prompt : 0;
}

/**
 * The largest `max_tokens` whose worst case stays within `budgetUsd`: the prompt's tokens all
 * billed (at the cache-write price when part of it may be written to the cache), then every
 * output token at the output price. 0 when the prompt alone would cost more.
 */
export function maxTokensWithin(price: ModelPrice, budgetUsd: number, prompt: { tokens: number; cachedTokens: number; ttl: "5m" | "1h" }, opts: { batch?: boolean } = {}): number {
  const discount = opts.batch ? BATCH_DISCOUNT : 1;
  const input = (price.input / 1_000_000) * discount;
  const writeFactor = prompt.ttl === "1h" ? CACHE_WRITE_1H : CACHE_WRITE_5M;
  const promptCost = (prompt.tokens - prompt.cachedTokens) * input + prompt.cachedTokens * input * writeFactor;
  const left = budgetUsd - promptCost;
  if (left <= 0) return 0;
  // A hair of slack for float noise (0.09 - 0.03 is 0.0599…).
  return Math.floor(left / ((price.output / 1_000_000) * discount) + 1e-6);
}

/** The documented heuristic when no token count is at hand: 3.5 characters per token (what the Python original used), rounded up. */
export const CHARS_PER_TOKEN = 3.5;
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}
