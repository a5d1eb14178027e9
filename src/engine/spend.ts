/**
 * An attempt's entry in the cost ledger, from what its backend reported. No clock, no store: the
 * caller gives the key and the batch record, whose `session_costs` this keeps up to date.
 */
import type { ExecutionResult } from "../backends/types.ts";
import { hasTokens, noTokens, roundUsd } from "../state/spend.ts";
import type { BatchRecord, SpendRecord } from "../state/types.ts";

/**
 * The ledger entry of an attempt, or undefined when it cost nothing and used no tokens. A backend
 * reporting a session's cumulative cost (claude after `--resume`) is charged the difference to
 * the session's previous figure, kept per batch in `session_costs`.
 */
export function spendEntry(r: ExecutionResult, key: Pick<SpendRecord, "batch_num" | "attempt" | "runner" | "at" | "backend">, b: BatchRecord): SpendRecord | undefined {
  const sp = r.spend ?? (r.cost_usd ? { usd: r.cost_usd, tokens: noTokens(), priced_by: "backend" as const } : undefined);
  if (!sp) return undefined;
  let amount = sp.usd;
  if (sp.session) {
    const before = b.session_costs?.[sp.session.id] ?? 0;
    amount = Math.max(0, sp.session.cumulative_usd - before);
    b.session_costs = { ...b.session_costs, [sp.session.id]: sp.session.cumulative_usd };
  }
  if (!amount && !hasTokens(sp.tokens)) return undefined;
  return {
    ...key,
    ...(sp.model ? { model: sp.model } : {}),
    usd: roundUsd(amount),
    tokens: sp.tokens,
    priced_by: sp.priced_by,
    ...(sp.tier ? { tier: sp.tier } : {}),
    ...(sp.requests ? { requests: sp.requests } : {}),
  };
}
