/**
 * classify() as a table: every outcome in claude-cli-observed.md and every message in anchors
 * §B5, the HTTP statuses of the API backend, and rows proving the model's prose is never read.
 */
import { describe, expect, test } from "bun:test";
import type { ClaudeResultFacts, ExecutionResult, HttpFacts } from "../../src/backends/types.ts";
import { classify, limitOfText, limitOfType, type Decision } from "../../src/engine/classify.ts";

const NOW = Date.UTC(2026, 7, 5, 10, 0); // Wednesday
const WAIT = 60;
const DEFAULT_UNTIL = NOW + WAIT * 60_000;

function run(fields: Partial<ExecutionResult> = {}): ExecutionResult {
  return { exit_code: 0, signal: null, timed_out: false, interrupted: false, duration_ms: 600, stdout: "", stderr: "", argv: ["claude"], cwd: "/tmp", ...fields };
}
/** A `--output-format json` run: stdout is the result object, stderr empty (as observed). */
function claude(facts: Partial<ClaudeResultFacts>, fields: Partial<ExecutionResult> = {}): ExecutionResult {
  const c: ClaudeResultFacts = { is_error: false, subtype: "success", api_error_status: null, ...facts };
  return run({ exit_code: c.is_error ? 1 : 0, stdout: JSON.stringify({ type: "result", ...c }), claude: c, ...fields });
}
const apiError = (status: number | null, result: string, extra: Partial<ClaudeResultFacts> = {}) => claude({ is_error: true, api_error_status: status, result, ...extra });
/** The default text format: the error line goes to stdout, exit 1. */
const textRun = (stdout: string, exit = 1) => run({ exit_code: exit, stdout: `${stdout}\n` });
const http = (facts: HttpFacts, stderr = "") => run({ exit_code: 1, http: facts, stderr, argv: ["POST", "http://127.0.0.1/v1/messages"] });

type Row = [name: string, result: ExecutionResult, expected: Partial<Decision> & { kind: Decision["kind"] }, extra?: RegExp[]];

function check(rows: Row[]): void {
  for (const [name, result, expected, extra] of rows) {
    test(name, () => {
      const d = classify(result, { now: NOW, waitMinutes: WAIT, extraPatterns: extra ?? [], timeZone: "UTC" });
      expect(d).toMatchObject(expected);
    });
  }
}

describe("claude-cli-observed.md outcomes", () => {
  check([
    ["ok", claude({ result: "fake-ok", num_turns: 1, total_cost_usd: 0.015785 }), { kind: "success" }],
    ["tool call writing a file", claude({ result: "done", num_turns: 2 }), { kind: "success" }],
    ["write denied without skip flag (exit 0, permission_denials) is not an error by itself", claude({ result: "done", permission_denials: [{ tool_name: "Write", tool_use_id: "toolu_1", tool_input: { file_path: "/x/nope.txt" } }] }), { kind: "success" }],
    ["our timeout killed the group", run({ exit_code: null, signal: "SIGTERM", timed_out: true }), { kind: "retry", category: "timeout" }],
    ["killed by an outer `timeout 3` (exit 124, empty output)", run({ exit_code: 124 }), { kind: "retry", category: "timeout" }],
    ["429 (API key rate limit) → a hold of seconds, not wait_minutes", apiError(429, "API Error: Request rejected (429) · This request would exceed the rate limit for your organization (fake). Please try again later."), { kind: "hold", until: NOW, source: "backoff" }],
    ["529 → retry overloaded", apiError(529, "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment. If it persists, check your inference gateway (127.0.0.1:8787)."), { kind: "retry", category: "overloaded" }],
    ["401 → fail_job auth", apiError(401, "Invalid API key · Fix external API key"), { kind: "fail_job", category: "auth" }],
    ["API_TIMEOUT_MS expired → retry timeout", apiError(null, "Request timed out"), { kind: "retry", category: "timeout" }],
    ["error event mid-stream, then 529 (cost billed)", apiError(529, "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment.", { total_cost_usd: 0.04686 }), { kind: "retry", category: "overloaded" }],
    ["two 429s then ok", claude({ result: "fake-ok" }), { kind: "success" }],
    ["server down (closed port) → retry network", apiError(null, "API Error: Unable to connect to API (ConnectionRefused)"), { kind: "retry", category: "network" }],
    [
      "root refusal reported by the backend as setup_error",
      run({ exit_code: 1, stderr: "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n", setup_error: { kind: "invalid_config", message: "claude refused to start", hint: "set IS_SANDBOX=1" } }),
      { kind: "fail_job", category: "config", hint: "set IS_SANDBOX=1" },
    ],
    ["root refusal seen only on stderr", run({ exit_code: 1, stderr: "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons\n" }), { kind: "fail_job", category: "config" }],
    ["text format: success prints the answer", textRun("fake-ok", 0), { kind: "success" }],
    ["text format: 429 line on stdout", textRun("API Error: Request rejected (429) · This request would exceed the rate limit for your organization (fake). Please try again later."), { kind: "hold", source: "backoff" }],
    ["text format: 401 line on stdout", textRun("Invalid API key · Fix external API key"), { kind: "fail_job", category: "auth" }],
    ["text format: 529 line on stdout", textRun("API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment."), { kind: "retry", category: "overloaded" }],
    ["stream-json without --verbose", run({ exit_code: 1, stderr: "Error: When using --print, --output-format=stream-json requires --verbose\n" }), { kind: "fail_job", category: "config" }],
    ["SIGTERM (exit 143) without a result", run({ exit_code: 143 }), { kind: "retry", category: "crash" }],
    ["killed by SIGSEGV", run({ exit_code: null, signal: "SIGSEGV" }), { kind: "retry", category: "crash" }],
    ["error_max_turns", claude({ is_error: true, subtype: "error_max_turns", errors: ["Reached maximum number of turns (40)"] }), { kind: "retry", category: "transient" }],
    ["stream-json rate_limit_event rejected: resetsAt wins over the text", apiError(429, "You've hit your limit · resets 3pm (UTC)", { rate_limit_resets_at: NOW + 123_000 }), { kind: "hold", until: NOW + 123_000, source: "reset_time" }],
    ["interrupted by the second Ctrl+C", run({ exit_code: null, signal: "SIGTERM", interrupted: true }), { kind: "interrupted" }],
    ["missing executable (setup_error)", run({ exit_code: null, setup_error: { kind: "executable_not_found", message: "claude not found", hint: "install it" } }), { kind: "fail_job", category: "config", reason: "claude not found", hint: "install it" }],
  ]);
});

describe("anchors §B5 messages", () => {
  check([
    ["session limit with time, local zone", apiError(429, "You've hit your session limit · resets 3:45pm"), { kind: "hold", until: Date.UTC(2026, 7, 5, 15, 45), source: "reset_time" }],
    ["limit with IANA zone", apiError(429, "You've hit your limit · resets 1pm (Europe/Lisbon)"), { kind: "hold", until: Date.UTC(2026, 7, 5, 12, 0), source: "reset_time" }],
    ["limit with date and zone", apiError(429, "You've hit your limit · resets Apr 23 at 4pm (America/Recife)"), { kind: "hold", until: Date.UTC(2027, 3, 23, 19, 0), source: "reset_time" }],
    ["5-hour limit (v1.0.x), exit 1 text format", textRun("5-hour limit reached ∙ resets 2am"), { kind: "hold", until: Date.UTC(2026, 7, 6, 2, 0), source: "reset_time" }],
    ["pipe + epoch (mid-2025), no api status", apiError(null, `Claude AI usage limit reached|${NOW / 1000 + 7200}`), { kind: "hold", until: NOW + 7_200_000, source: "reset_time" }],
    ["'Your limit will reset at'", apiError(null, "Claude usage limit reached. Your limit will reset at 3pm (America/Bogota)."), { kind: "hold", until: Date.UTC(2026, 7, 5, 20, 0), source: "reset_time" }],
    ["out of extra usage", apiError(429, "You're out of extra usage · resets 11:30am (Asia/Colombo)"), { kind: "hold", until: Date.UTC(2026, 7, 6, 6, 0), source: "reset_time" }],
    ["24-hour limit", apiError(429, "24-hour limit reached • resets 11:45pm"), { kind: "hold", until: Date.UTC(2026, 7, 5, 23, 45) }],
    ["weekly limit", apiError(429, "You've hit your weekly limit · resets Mon 12:00am"), { kind: "hold", until: Date.UTC(2026, 7, 10, 0, 0), source: "reset_time" }],
    ["Opus limit", apiError(429, "You've hit your Opus limit · resets 3:45pm"), { kind: "hold", until: Date.UTC(2026, 7, 5, 15, 45) }],
    ["Sonnet limit, no status", apiError(null, "You've hit your Sonnet limit · resets 3pm (UTC)"), { kind: "hold", until: Date.UTC(2026, 7, 5, 15, 0) }],
    ["Fable limit without a reset → default wait", apiError(null, "You've reached your Fable limit."), { kind: "hold", until: DEFAULT_UNTIL, source: "default_wait" }],
    ["limit without a reset time → default wait", apiError(429, "Claude AI usage limit reached"), { kind: "hold", until: DEFAULT_UNTIL, source: "default_wait" }],
    ["monthly spend limit (429) → fail, never hold", apiError(429, "You've hit your monthly spend limit"), { kind: "fail_job", category: "spend_cap" }],
    ["individual spend limit", apiError(429, "You've hit your individual spend limit"), { kind: "fail_job", category: "spend_cap" }],
    ["org's monthly spend limit", apiError(429, "You've hit your org's monthly spend limit"), { kind: "fail_job", category: "spend_cap" }],
    ["team's shared budget", apiError(429, "You've hit your team's shared budget"), { kind: "fail_job", category: "spend_cap" }],
    ["gateway spend limit with a reset date is still a spend cap", apiError(429, "API Error: 429 spend limit reached (daily; resets 2026-08-09 00:00 UTC)"), { kind: "fail_job", category: "spend_cap" }],
    ["API workspace usage limits, regain access", apiError(400, "API Error: 400 You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC."), { kind: "fail_job", category: "spend_cap" }],
    ["usage limits inside a JSON error body", apiError(400, 'API Error: 400 {"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC."}}'), { kind: "fail_job", category: "spend_cap" }],
    ["credit balance too low", apiError(400, "Credit balance is too low"), { kind: "fail_job", category: "spend_cap" }],
    ["server throttle (429 but not a quota) → retry", apiError(429, "API Error: Server is temporarily limiting requests (not your usage limit)"), { kind: "retry", category: "overloaded" }],
    ["API-key/cloud 429", apiError(429, "API Error: Request rejected (429) · this may be a temporary capacity issue. If it persists, check https://status.claude.com."), { kind: "hold", source: "backoff" }],
    ["repeated 529", apiError(529, "API Error: Repeated 529 Overloaded errors. The API is at capacity — this is usually temporary…"), { kind: "retry", category: "overloaded" }],
    ["high load (no status)", apiError(null, "Opus is experiencing high load, please try again"), { kind: "retry", category: "overloaded" }],
    ["500", apiError(500, "API Error: 500 Internal server error. This is a server-side issue, usually temporary — try again in a moment."), { kind: "retry", category: "server" }],
    ["500 text only", apiError(null, "API Error: 500 Internal server error. This is a server-side issue…"), { kind: "retry", category: "server" }],
    ["mid-stream failure", apiError(null, "API Error: Server error mid-response. The response above may be incomplete."), { kind: "retry", category: "server" }],
    ["connection lost mid-response", apiError(null, "API Error: Connection lost while the response was streaming."), { kind: "retry", category: "network" }],
    ["timeout text", apiError(null, "Request timed out"), { kind: "retry", category: "timeout" }],
    ["not logged in", apiError(null, "Not logged in · Please run /login"), { kind: "fail_job", category: "auth" }],
    ["invalid API key", apiError(null, "Invalid API key · Fix external API key"), { kind: "fail_job", category: "auth" }],
    ["401 invalid credentials", apiError(null, "API Error: 401 Invalid authentication credentials"), { kind: "fail_job", category: "auth" }],
    ["OAuth token revoked", apiError(null, "OAuth token revoked · Please run /login"), { kind: "fail_job", category: "auth" }],
    ["OAuth token expired", apiError(null, "OAuth token has expired · Please run /login"), { kind: "fail_job", category: "auth" }],
    ["login expired", apiError(null, "Login expired · Please run /login"), { kind: "fail_job", category: "auth" }],
    ["no auth method", apiError(null, "Could not resolve authentication method. Expected either apiKey or authToken to be set."), { kind: "fail_job", category: "auth" }],
    ["403 status", apiError(403, "API Error: 403 Forbidden"), { kind: "fail_job", category: "auth" }],
    ["prompt too long", apiError(400, "Prompt is too long"), { kind: "fail_job", category: "prompt" }],
    ["invalid --json-schema", run({ exit_code: 1, stderr: "Error: --json-schema is not a valid JSON Schema\n" }), { kind: "fail_job", category: "config" }],
    ["unknown option", run({ exit_code: 1, stderr: "error: unknown option '--frobnicate'\n" }), { kind: "fail_job", category: "config" }],
  ]);
});

describe("anthropic_api HTTP facts", () => {
  check([
    ["200", run({ http: { status: 200 }, text: "hi" }), { kind: "success" }],
    ["429 with retry-after → hold exactly that long", http({ status: 429, retry_after_ms: 2000, error_type: "rate_limit_error" }, "Anthropic API error 429 rate_limit_error\nThis request would exceed the rate limit"), { kind: "hold", until: NOW + 2000, source: "retry_after" }],
    ["429 without retry-after or reset headers → a hold of seconds (backoff), not wait_minutes", http({ status: 429, error_type: "rate_limit_error" }), { kind: "hold", until: NOW, source: "backoff" }],
    ["429 with an anthropic-ratelimit-*-reset time → hold until it", http({ status: 429, error_type: "rate_limit_error", rate_limit_reset_at: NOW + 42_000 }), { kind: "hold", until: NOW + 42_000, source: "reset_time" }],
    ["401 with the key's variable → the message names it", http({ status: 401, error_type: "authentication_error", key_env: "MY_KEY" }, "Anthropic API error 401 authentication_error\ninvalid x-api-key"), { kind: "fail_job", category: "auth", reason: expect.stringContaining("the key in MY_KEY") }],
    ["a cut-off answer (stop_reason max_tokens) → retry truncated", run({ exit_code: 1, http: { status: 200, stop_reason: "max_tokens" }, stderr: "the answer was cut off at max_tokens (100)" }), { kind: "retry", category: "truncated" }],
    ["an expired Message Batch request → retry", run({ exit_code: 1, http: { error_type: "expired" }, stderr: "request b1-a1 expired" }), { kind: "retry", category: "expired" }],
    ["a fail_batch fact (over the batch's budget) → fail the batch", run({ exit_code: 1, fail_batch: { category: "budget", reason: "the prompt alone would cost more" } }), { kind: "fail_batch", category: "budget" }],
    ["spend-limit 429 (error_code) → fail, never hold", http({ status: 429, error_type: "rate_limit_error", error_code: "enforced_spend_limit_reached" }, "Anthropic API error 429\nYou have reached your specified workspace spend limit."), { kind: "fail_job", category: "spend_cap" }],
    ["401 authentication_error", http({ status: 401, error_type: "authentication_error" }, "Anthropic API error 401 authentication_error\ninvalid x-api-key"), { kind: "fail_job", category: "auth" }],
    ["403 permission_error", http({ status: 403, error_type: "permission_error" }), { kind: "fail_job", category: "auth" }],
    ["402 billing_error", http({ status: 402, error_type: "billing_error" }), { kind: "fail_job", category: "spend_cap" }],
    ["400 credit balance", http({ status: 400, error_type: "invalid_request_error" }, "Anthropic API error 400 invalid_request_error\nYour credit balance is too low to access the Anthropic API."), { kind: "fail_job", category: "spend_cap" }],
    ["400 prompt too long", http({ status: 400, error_type: "invalid_request_error" }, "Anthropic API error 400 invalid_request_error\nprompt is too long: 250000 tokens > 200000 maximum"), { kind: "fail_job", category: "prompt" }],
    ["400 other → the batch fails with the API's message", http({ status: 400, error_type: "invalid_request_error" }, "Anthropic API error 400 invalid_request_error\nmessages: text content blocks must be non-empty"), { kind: "fail_batch", category: "request" }],
    ["400 workspace spend limit → fail the job, saying so", http({ status: 400, error_type: "invalid_request_error" }, "Anthropic API error 400 invalid_request_error\nYou have reached your specified workspace spend limit."), { kind: "fail_job", category: "spend_cap", reason: expect.stringContaining("spend limit") }],
    ["404 model → config", http({ status: 404, error_type: "not_found_error" }, "Anthropic API error 404 not_found_error\nmodel: claude-nope"), { kind: "fail_job", category: "config" }],
    ["413 → prompt", http({ status: 413, error_type: "request_too_large" }), { kind: "fail_job", category: "prompt" }],
    ["529 with retry-after-ms → retry no sooner", http({ status: 529, error_type: "overloaded_error", retry_after_ms: 300 }, "Anthropic API error 529 overloaded_error\nOverloaded"), { kind: "retry", category: "overloaded", min_delay_ms: 300 }],
    ["500", http({ status: 500, error_type: "api_error" }), { kind: "retry", category: "server" }],
    ["503", http({ status: 503 }), { kind: "retry", category: "server" }],
    ["408", http({ status: 408 }), { kind: "retry", category: "server" }],
    ["connection refused", http({ error_type: "connection" }, "Connection error: cannot reach http://127.0.0.1:9/v1/messages: fetch failed"), { kind: "retry", category: "network" }],
    ["request timeout", run({ exit_code: 1, timed_out: true, http: { error_type: "timeout" } }), { kind: "retry", category: "timeout" }],
    ["missing key", run({ exit_code: null, setup_error: { kind: "missing_api_key", message: "ANTHROPIC_API_KEY is not set", hint: "export it" } }), { kind: "fail_job", category: "config" }],
  ]);
});

describe("prose is never scanned", () => {
  check([
    ["exit 1 with numbers that look like statuses → plain retry", textRun("processed 1403 items, 429 done, quota fine"), { kind: "retry", category: "transient" }],
    ["exit 1 command output mentioning 401 and permission denied", run({ exit_code: 1, stdout: "checked 401 files\npermission denied for 3 of them (skipped)\n" }), { kind: "retry", category: "transient" }],
    ["exit 1 where an auth-like line is not in the last lines", run({ exit_code: 1, stdout: `Invalid API key · Fix external API key\n${"progress line\n".repeat(20)}` }), { kind: "retry", category: "transient" }],
    ["a successful result that talks about rate limits", claude({ result: "I added rate limit handling: You've hit your limit · resets 3pm (UTC) is now parsed" }), { kind: "success" }],
    ["a successful text run printing a limit message as prose", textRun("You've hit your limit · resets 3pm (UTC)", 0), { kind: "success" }],
    ["a success with scary stderr warnings", claude({ result: "done" }, { stderr: "Invalid API key warning from a plugin\n" }), { kind: "success" }],
    ["a failed json run: stdout prose is not scanned, only the error result", apiError(500, "API Error: 500 Internal server error.", {}), { kind: "retry", category: "server" }],
    ["unanchored mention inside an error line does not count", run({ exit_code: 1, stderr: "warning: retrying because the server said Invalid API key earlier\n" }), { kind: "retry", category: "transient" }],
    ["exit 1 with empty output", run({ exit_code: 1 }), { kind: "retry", category: "transient" }],
    ["exit 2 from a command", run({ exit_code: 2, stderr: "usage: thing [-h]\n" }), { kind: "retry", category: "transient" }],
  ]);
});

describe("rate_limit.detection_patterns add to the built-ins", () => {
  const quota = [/quota exceeded/i];
  check([
    ["a matching failed attempt holds for wait_minutes", run({ exit_code: 1, stderr: "ERROR quota exceeded for project x\n" }), { kind: "hold", until: DEFAULT_UNTIL, source: "default_wait" }, quota],
    ["with a reset time on the same line it holds until then", run({ exit_code: 1, stderr: "quota exceeded, resets 3pm (UTC)\n" }), { kind: "hold", until: Date.UTC(2026, 7, 5, 15, 0), source: "reset_time" }, quota],
    ["a successful attempt is never matched", run({ exit_code: 0, stdout: "quota exceeded\n" }), { kind: "success" }, quota],
    ["built-in 529 still retries (user patterns do not replace the built-ins)", apiError(529, "API Error: 529 Overloaded."), { kind: "retry", category: "overloaded" }, [/foo/]],
    ["built-in limit still holds with unrelated user patterns", apiError(429, "You've hit your limit · resets 3pm (UTC)"), { kind: "hold", source: "reset_time" }, [/foo/]],
    ["built-in auth still fails the job even if a user pattern matches too", apiError(401, "Invalid API key · quota exceeded"), { kind: "fail_job", category: "auth" }, quota],
    ["structured runs: stdout prose is not scanned by user patterns", apiError(500, "API Error: 500 Internal server error.", {}), { kind: "retry", category: "server" }, [/Internal server error in my notes/]],
  ]);
});

test("a reset time already in the past holds until now, not earlier", () => {
  const d = classify(apiError(429, `Claude AI usage limit reached|${NOW / 1000 - 60}`), { now: NOW, waitMinutes: WAIT, extraPatterns: [] });
  expect(d).toEqual({ kind: "hold", until: NOW, reason: expect.any(String), source: "reset_time", limit: "session" });
});

test("reasons and hints name what happened and what to do", () => {
  const d = classify(apiError(401, "Invalid API key · Fix external API key"), { now: NOW, waitMinutes: WAIT, extraPatterns: [] });
  if (d.kind !== "fail_job") throw new Error(`expected fail_job, got ${d.kind}`);
  expect(d.reason).toContain("Invalid API key");
  expect(d.hint).toContain("/login");
  const spend = classify(apiError(429, "You've hit your monthly spend limit"), { now: NOW, waitMinutes: WAIT, extraPatterns: [] });
  expect(spend.kind === "fail_job" && spend.hint).toContain("mozart resume");
});

describe("limit kinds", () => {
  test.each([
    ["You've hit your session limit · resets 3:45pm", { limit: "session" }],
    ["You've hit your limit · resets 1pm (Europe/Lisbon)", { limit: "session" }],
    ["5-hour limit reached ∙ resets 2am", { limit: "session" }],
    ["You've hit your weekly limit · resets Mon 12:00am", { limit: "weekly" }],
    ["You've hit your Opus limit · resets 3:45pm", { limit: "model", model: "Opus" }],
    ["You've reached your Fable limit.", { limit: "model", model: "Fable" }],
  ])("%s", (line, kind) => {
    expect(limitOfText(line)).toEqual(kind as ReturnType<typeof limitOfText>);
  });
  test("rateLimitType", () => {
    expect(limitOfType("five_hour")).toEqual({ limit: "session" });
    expect(limitOfType("seven_day")).toEqual({ limit: "weekly" });
    expect(limitOfType("seven_day_opus")).toEqual({ limit: "model", model: "opus" });
  });
  const OPTS = { now: NOW, waitMinutes: WAIT, extraPatterns: [], timeZone: "UTC" };
  test("each kind has its own decision and message", () => {
    const api = classify(apiError(429, "API Error: Request rejected (429) · this may be a temporary capacity issue."), OPTS);
    expect(api).toMatchObject({ kind: "hold", source: "backoff", limit: "api_rate" });
    expect((api as { reason: string }).reason).toStartWith("API rate limit: ");
    const weekly = classify(apiError(429, "You've hit your weekly limit · resets Mon 12:00am"), OPTS);
    expect(weekly).toMatchObject({ kind: "hold", source: "reset_time", limit: "weekly" });
    expect((weekly as { reason: string }).reason).toContain("weekly limit");
    const model = classify(apiError(429, "You've hit your Opus limit · resets 3:45pm"), OPTS);
    expect(model).toMatchObject({ kind: "hold", limit: "model", model: "Opus" });
    expect(classify(apiError(429, "You've hit your monthly spend limit"), OPTS)).toMatchObject({ kind: "fail_job", category: "spend_cap" });
  });
});
