/** An attempt's ledger entry: priced spend as reported, claude's cumulative session cost as deltas, nothing for an attempt that cost nothing. */
import { describe, expect, test } from "bun:test";
import type { ExecutionResult, Spend } from "../../src/backends/types.ts";
import { spendEntry } from "../../src/engine/spend.ts";
import { noTokens } from "../../src/state/spend.ts";
import type { BatchRecord } from "../../src/state/types.ts";

const key = { batch_num: 3, attempt: 1, runner: "r1", at: "2026-01-01T00:00:00.000Z", backend: "claude_cli" };
const result = (spend?: Spend, cost_usd?: number): ExecutionResult => ({ exit_code: 0, signal: null, timed_out: false, interrupted: false, duration_ms: 1, stdout: "", stderr: "", argv: [], cwd: "/", ...(spend ? { spend } : {}), ...(cost_usd !== undefined ? { cost_usd } : {}) });
const batch = (): BatchRecord => ({ batch_num: 3, status: "in_progress", start_item: 3, end_item: 3, attempts: 1, completion_attempts: 0, rate_limit_waits: 0, validation_passed: null, validations: [], cost_usd: 0, token: 1 });
const tokens = { input: 10, output: 20, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 };

describe("spendEntry", () => {
  test("a priced API attempt: its figures, model, tier and requests, under the attempt's key", () => {
    const e = spendEntry(result({ usd: 0.0123456789, tokens, priced_by: "price_table", model: "claude-sonnet-4-5", tier: "batch", requests: 2 }), { ...key, backend: "anthropic_batch" }, batch());
    expect(e).toEqual({ ...key, backend: "anthropic_batch", model: "claude-sonnet-4-5", usd: 0.01234568, tokens, priced_by: "price_table", tier: "batch", requests: 2 });
  });

  test("claude's total_cost_usd is cumulative over a resumed session: each attempt is charged the difference", () => {
    const b = batch();
    const first = spendEntry(result({ usd: 0.5, tokens, priced_by: "backend", session: { id: "s1", cumulative_usd: 0.5 } }), key, b);
    expect(first?.usd).toBe(0.5);
    expect(b.session_costs).toEqual({ s1: 0.5 });
    const second = spendEntry(result({ usd: 0.8, tokens, priced_by: "backend", session: { id: "s1", cumulative_usd: 0.8 } }), { ...key, attempt: 2 }, b);
    expect(second?.usd).toBe(0.3);
    // A new session starts from nothing.
    const third = spendEntry(result({ usd: 0.25, tokens, priced_by: "backend", session: { id: "s2", cumulative_usd: 0.25 } }), { ...key, attempt: 3 }, b);
    expect(third?.usd).toBe(0.25);
    expect(b.session_costs).toEqual({ s1: 0.8, s2: 0.25 });
  });

  test("a session figure that went down (a reset session) is never a negative charge", () => {
    const b = { ...batch(), session_costs: { s1: 1 } };
    expect(spendEntry(result({ usd: 0.2, tokens, priced_by: "backend", session: { id: "s1", cumulative_usd: 0.2 } }), key, b)?.usd).toBe(0);
  });

  test("nothing spent and no tokens: no entry; a bare cost_usd (a backend without facts) is recorded as the backend's figure", () => {
    expect(spendEntry(result(), key, batch())).toBeUndefined();
    expect(spendEntry(result({ usd: 0, tokens: noTokens(), priced_by: "unpriced" }), key, batch())).toBeUndefined();
    expect(spendEntry(result(undefined, 0.04), key, batch())).toMatchObject({ usd: 0.04, priced_by: "backend", tokens: noTokens() });
    // Tokens of a model the price table does not know are kept, unpriced.
    expect(spendEntry(result({ usd: 0, tokens, priced_by: "unpriced", model: "mystery-1" }), key, batch())).toMatchObject({ usd: 0, priced_by: "unpriced", tokens });
  });
});
