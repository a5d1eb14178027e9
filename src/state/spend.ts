/**
 * The cost ledger's arithmetic, shared by the drivers and the engine: token counts added up,
 * and a ledger summed with each key counted once.
 */
import type { SpendRecord, SpendTotals, TokenCounts } from "./types.ts";

export const noTokens = (): TokenCounts => ({ input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 });

export function addTokens(a: TokenCounts, b: Partial<TokenCounts> | undefined): TokenCounts {
  const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  return {
    input: a.input + n(b?.input),
    output: a.output + n(b?.output),
    cache_read: a.cache_read + n(b?.cache_read),
    cache_write_5m: a.cache_write_5m + n(b?.cache_write_5m),
    cache_write_1h: a.cache_write_1h + n(b?.cache_write_1h),
  };
}

export const hasTokens = (t: TokenCounts | undefined): boolean => Boolean(t && (t.input || t.output || t.cache_read || t.cache_write_5m || t.cache_write_1h));

/** The key of a ledger entry: one per attempt of a batch and runner. */
export const spendKey = (s: Pick<SpendRecord, "batch_num" | "attempt" | "runner">): string => `${s.batch_num}\0${s.attempt}\0${s.runner}`;

export function emptyTotals(): SpendTotals {
  return { usd: 0, tokens: noTokens(), entries: 0 };
}

export function addSpend(t: SpendTotals, s: SpendRecord): void {
  t.usd += Number.isFinite(s.usd) ? s.usd : 0;
  t.tokens = addTokens(t.tokens, s.tokens);
  t.entries++;
}

/** Sums stay exact to a millionth of a cent: float noise from adding thousands of small amounts is rounded away. */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e8) / 1e8;
}

/** A ledger entry read back from storage, or undefined when it is not one. */
export function checkSpend(value: unknown): SpendRecord | undefined {
  const v = value as Partial<SpendRecord> | null;
  if (!v || typeof v !== "object" || typeof v.batch_num !== "number" || typeof v.attempt !== "number" || typeof v.runner !== "string" || typeof v.usd !== "number") return undefined;
  return { ...v, tokens: addTokens(noTokens(), v.tokens) } as SpendRecord;
}
