/**
 * What to do after an attempt: success, retry, hold for a limit, or stop the job. Pure: the
 * clock comes in as `now`.
 *
 * Structured facts decide first (setup errors, `is_error`/`api_error_status`, HTTP status and
 * `retry-after`, `rate_limit_event.resetsAt`). Text patterns are a fallback and are anchored to
 * the start of a line, and they only ever see error channels: stderr, the error `result` of a
 * failed claude run, API error messages, and, for output without structure (text format, the
 * command backend), the last few lines of stdout of a failed run. The model's prose on a
 * successful run is never scanned: the v0.1 tool turned "processed 1403 items" into a fatal
 * auth error that way (reference-spec §11.1 R6).
 */
import type { ExecutionResult, HttpFacts } from "../backends/types.ts";
import { parseResetTime } from "./limits.ts";

export type RetryCategory = "transient" | "timeout" | "overloaded" | "network" | "server" | "crash";
export type FailJobCategory = "auth" | "spend_cap" | "config" | "prompt";

export type Decision =
  | { kind: "success" }
  | { kind: "retry"; category: RetryCategory; reason: string; min_delay_ms?: number }
  | { kind: "hold"; until: number; reason: string; source: "reset_time" | "retry_after" | "default_wait" }
  | { kind: "fail_job"; category: FailJobCategory; reason: string; hint: string }
  | { kind: "interrupted" };

export interface ClassifyOptions {
  now: number;
  /** rate_limit.wait_minutes: the hold when a limit names no reset time. */
  waitMinutes: number;
  /** rate_limit.detection_patterns, compiled case-insensitive; added to the built-in patterns (never replacing them). */
  extraPatterns: RegExp[];
  /** Zone for reset times printed without one (default: the system's). */
  timeZone?: string;
}

/** How many trailing stdout lines of an unstructured failed run may hold an error message. */
const STDOUT_TAIL_LINES = 5;

export const HINTS = {
  auth:
    "Claude is not signed in or the key was rejected. For claude_cli run `claude` once and /login (or set a valid ANTHROPIC_API_KEY / CLAUDE_CODE_OAUTH_TOKEN); " +
    "note that a stray ANTHROPIC_API_KEY overrides a subscription login. For anthropic_api set the variable named by backend.api_key_env. Then `mozart resume`.",
  spend_cap:
    "Waiting will not help soon: raise the spend limit or add credits in the Anthropic console (or use another account), then `mozart resume` the job.",
  prompt: "The rendered prompt does not fit the model's context window: make batch.size smaller or shorten the prompt template, then `mozart resume`.",
  root:
    "claude refuses --dangerously-skip-permissions as root. Inside a sandbox or container set IS_SANDBOX=1 in the environment (e.g. backend.env: { IS_SANDBOX: \"1\" }), " +
    "or run Mozart as a non-root user, or set backend.skip_permissions: false.",
  cli_args: "claude rejected its arguments: check backend.output_format and backend.extra_args (`mozart run --dry-run` shows the exact command).",
  model: "The API does not know this model: check backend.model.",
} as const;

type TextVerdict =
  | { kind: "fail_job"; category: FailJobCategory; hint: string }
  | { kind: "limit" }
  | { kind: "hold_429" }
  | { kind: "retry"; category: RetryCategory };

/** Optional `API Error: ` / `Error: ` prefix, then an optional status code, as the CLI prints them. */
const P = String.raw`^(?:(?:API\s+)?Error:\s*)?(?:\d{3}\s+)?`;
const rx = (body: string) => new RegExp(P + body, "i");

/** Ordered: spend caps before limits, because both start with "You've hit your …" (anchors §B5). */
const RULES: Array<[RegExp, TextVerdict]> = [
  [/^You've hit your (?:[\w'-]+\s+){0,3}?(?:spend limit|shared budget)\b/i, { kind: "fail_job", category: "spend_cap", hint: HINTS.spend_cap }],
  [rx(String.raw`(?:[\w-]+\s+){0,3}?spend limit reached\b`), { kind: "fail_job", category: "spend_cap", hint: HINTS.spend_cap }],
  [rx(String.raw`You (?:have|'ve) reached your (?:specified )?(?:API )?usage limits?\b`), { kind: "fail_job", category: "spend_cap", hint: HINTS.spend_cap }],
  [/\busage limits?\b.*\bregain access\b/i, { kind: "fail_job", category: "spend_cap", hint: HINTS.spend_cap }],
  [rx(String.raw`(?:Your\s+)?credit balance is too low\b`), { kind: "fail_job", category: "spend_cap", hint: HINTS.spend_cap }],

  [/^Not logged in\b/i, { kind: "fail_job", category: "auth", hint: HINTS.auth }],
  [/^Login expired\b/i, { kind: "fail_job", category: "auth", hint: HINTS.auth }],
  [rx(String.raw`Invalid (?:API key|authentication credentials|bearer token|x-api-key)\b`), { kind: "fail_job", category: "auth", hint: HINTS.auth }],
  [/^API Error:\s*(?:401|403)\b/i, { kind: "fail_job", category: "auth", hint: HINTS.auth }],
  [rx(String.raw`OAuth token (?:revoked|has expired|has been revoked|is invalid)\b`), { kind: "fail_job", category: "auth", hint: HINTS.auth }],
  [/^Could not resolve authentication method\b/i, { kind: "fail_job", category: "auth", hint: HINTS.auth }],

  [rx(String.raw`Prompt is too long\b`), { kind: "fail_job", category: "prompt", hint: HINTS.prompt }],

  [/^--dangerously-skip-permissions cannot be used with root\/sudo privileges/i, { kind: "fail_job", category: "config", hint: HINTS.root }],
  [/^Error: When using --print, --output-format=stream-json requires --verbose/i, { kind: "fail_job", category: "config", hint: HINTS.cli_args }],
  [/^Error: --json-schema is not a valid JSON Schema/i, { kind: "fail_job", category: "config", hint: HINTS.cli_args }],
  [/^error: unknown option '/i, { kind: "fail_job", category: "config", hint: HINTS.cli_args }],

  [/^You've hit your (?:[\w-]+\s+)?limit\b/i, { kind: "limit" }],
  [/^You've reached your (?:[\w-]+\s+)?limit\b/i, { kind: "limit" }],
  [/^\d+-hour limit reached\b/i, { kind: "limit" }],
  [/^Claude (?:AI )?usage limit reached\b/i, { kind: "limit" }],
  [/^You're out of extra usage\b/i, { kind: "limit" }],
  [/^(?:Usage|Session|Weekly) limit reached\b/i, { kind: "limit" }],

  [rx(String.raw`Server is temporarily limiting requests\b`), { kind: "retry", category: "overloaded" }],
  [rx(String.raw`Request rejected \(429\)`), { kind: "hold_429" }],
  [/^API Error:\s*(?:Repeated\s+)?529\b/i, { kind: "retry", category: "overloaded" }],
  [/^API Error:.*\bOverloaded\b/i, { kind: "retry", category: "overloaded" }],
  [/^\w+ is experiencing high load\b/i, { kind: "retry", category: "overloaded" }],
  [/^API Error:\s*5\d\d\b/i, { kind: "retry", category: "server" }],
  [/^API Error:\s*Server error mid-response\b/i, { kind: "retry", category: "server" }],
  [/^API Error:\s*(?:Connection lost|The response stopped arriving)\b/i, { kind: "retry", category: "network" }],
  [rx(String.raw`Request timed out\b`), { kind: "retry", category: "timeout" }],
  [rx(String.raw`(?:Unable to connect to API|Connection error)\b`), { kind: "retry", category: "network" }],
];

/** The lines a pattern may look at: error channels only, each trimmed of list bullets; JSON error bodies contribute their `message`. */
export function errorLines(result: ExecutionResult): string[] {
  const texts: string[] = [result.stderr];
  const c = result.claude;
  if (c && (c.is_error || c.subtype?.startsWith("error_"))) texts.push(c.result ?? "", ...(c.errors ?? []));
  const structured = c !== undefined || result.http !== undefined;
  const failed = result.exit_code !== 0 || result.signal !== null;
  if (!structured && failed) texts.push(result.stdout.split("\n").filter((l) => l.trim()).slice(-STDOUT_TAIL_LINES).join("\n"));
  const lines: string[] = [];
  for (const text of texts) {
    for (const raw of text.split("\n")) {
      const line = raw.replace(/^\s*(?:[●⎿•·>*-]\s+)*/, "").trim();
      if (!line) continue;
      lines.push(line);
      for (const m of line.matchAll(/"message"\s*:\s*"((?:[^"\\]|\\.)*)"/g)) if (m[1]) lines.push(m[1].replace(/\\"/g, '"'));
    }
  }
  return lines;
}

function matchRules(lines: string[]): { verdict: TextVerdict; line: string } | undefined {
  for (const [re, verdict] of RULES) {
    const line = lines.find((l) => re.test(l));
    if (line !== undefined) return { verdict, line };
  }
  return undefined;
}

function clip(text: string, max = 300): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function classify(result: ExecutionResult, opts: ClassifyOptions): Decision {
  if (result.setup_error) return { kind: "fail_job", category: "config", reason: result.setup_error.message, hint: result.setup_error.hint };
  if (result.interrupted) return { kind: "interrupted" };
  if (result.timed_out) {
    const what = result.http ? "the request was cancelled" : "the process group was killed";
    return { kind: "retry", category: "timeout", reason: `no result within backend.timeout_seconds; ${what}` };
  }

  const c = result.claude;
  const http = result.http;
  const claudeFailed = c !== undefined && (c.is_error || (c.subtype?.startsWith("error_") ?? false));
  const httpFailed = http?.status !== undefined && http.status >= 400;
  const exitFailed = result.exit_code !== 0 || result.signal !== null;
  if (!claudeFailed && !httpFailed && !exitFailed) return { kind: "success" };

  const lines = errorLines(result);
  const matched = matchRules(lines);
  const defaultHold = (reason: string): Decision => ({ kind: "hold", until: opts.now + opts.waitMinutes * 60_000, reason, source: "default_wait" });
  const holdFrom = (line: string, reason: string): Decision => {
    const reset = parseResetTime(line, opts.now, { timeZone: opts.timeZone });
    if (reset !== null) return { kind: "hold", until: Math.max(reset, opts.now), reason, source: "reset_time" };
    return defaultHold(reason);
  };

  if (matched?.verdict.kind === "fail_job") {
    const v = matched.verdict;
    return { kind: "fail_job", category: v.category, reason: clip(matched.line), hint: v.hint };
  }

  // A rejected rate_limit_event carries the exact reset; it beats any text.
  if (c?.rate_limit_resets_at !== undefined) {
    return { kind: "hold", until: Math.max(c.rate_limit_resets_at, opts.now), reason: clip(c.result || "usage limit reached (rate_limit_event rejected)"), source: "reset_time" };
  }
  if (matched?.verdict.kind === "limit") return holdFrom(matched.line, clip(matched.line));

  const extra = lines.find((l) => opts.extraPatterns.some((re) => re.test(l)));
  if (extra !== undefined) return holdFrom(extra, `matched rate_limit.detection_patterns: ${clip(extra)}`);

  // Text before status here: "Server is temporarily limiting requests" also arrives as a 429 but is a short throttle, not a quota.
  if (matched?.verdict.kind === "hold_429") return defaultHold(clip(matched.line));
  if (matched?.verdict.kind === "retry") return { kind: "retry", category: matched.verdict.category, reason: clip(matched.line) };

  const status = c?.api_error_status ?? http?.status ?? undefined;
  const reasonText = clip(c?.result || lines[0] || `exit code ${result.exit_code}`);
  if (status !== undefined && status !== null) {
    const fromStatus = byStatus(status, reasonText, opts, http);
    if (fromStatus) return fromStatus;
  }

  if (http?.error_type === "timeout") return { kind: "retry", category: "timeout", reason: reasonText };
  if (http?.error_type === "connection") return { kind: "retry", category: "network", reason: reasonText };
  if (claudeFailed) return { kind: "retry", category: "transient", reason: reasonText };
  // 124 is what `timeout(1)` exits with when a wrapper script enforced its own limit.
  if (result.exit_code === 124) return { kind: "retry", category: "timeout", reason: `exit code 124 (killed by a timeout)${lines[0] ? `: ${clip(lines[0])}` : ""}` };
  if (result.signal !== null || (result.exit_code !== null && result.exit_code >= 128)) {
    return { kind: "retry", category: "crash", reason: `the process ended by ${result.signal ?? `exit code ${result.exit_code}`}${lines[0] ? `: ${clip(lines[0])}` : ""}` };
  }
  return { kind: "retry", category: "transient", reason: `exit code ${result.exit_code}${lines.length ? `: ${clip(lines[lines.length - 1] as string)}` : ""}` };
}

function byStatus(status: number, reason: string, opts: ClassifyOptions, http: HttpFacts | undefined): Decision | undefined {
  const retryAfterMs = http?.retry_after_ms;
  const minDelay = retryAfterMs !== undefined ? { min_delay_ms: retryAfterMs } : {};
  if (status === 401 || status === 403) return { kind: "fail_job", category: "auth", reason, hint: HINTS.auth };
  // A spend-limit 429 has no retry-after and lasts until the next billing period (anchors §C2).
  const spendCap = status === 402 || http?.error_type === "billing_error" || /spend_limit/.test(http?.error_code ?? "");
  if (spendCap) return { kind: "fail_job", category: "spend_cap", reason, hint: HINTS.spend_cap };
  if (status === 404) return { kind: "fail_job", category: "config", reason, hint: HINTS.model };
  if (status === 413) return { kind: "fail_job", category: "prompt", reason, hint: HINTS.prompt };
  if (status === 429) {
    if (retryAfterMs !== undefined) return { kind: "hold", until: opts.now + retryAfterMs, reason, source: "retry_after" };
    return { kind: "hold", until: opts.now + opts.waitMinutes * 60_000, reason, source: "default_wait" };
  }
  if (status === 529) return { kind: "retry", category: "overloaded", reason, ...minDelay };
  if (status >= 500 || status === 408 || status === 409) return { kind: "retry", category: "server", reason, ...minDelay };
  return undefined;
}
