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
import { clip } from "../text.ts";
import { parseResetTime } from "./limits.ts";

const clip300 = (text: string) => clip(text, 300);

export type RetryCategory = "transient" | "timeout" | "overloaded" | "network" | "server" | "crash" | "truncated" | "expired" | "cancelled" | "model_limit";

/**
 * Which limit a hold is for, each with its own decision: an API rate limit lasts seconds
 * (retry-after); a subscription session or weekly limit lasts until its reset time; a per-model
 * limit can be left by switching model (backend.fallback_models). Spend and credit stops are not
 * holds: they fail the job (category spend_cap).
 */
export type LimitKind = "api_rate" | "session" | "weekly" | "model";

const LIMIT_WORDS: Record<LimitKind, string> = {
  api_rate: "API rate limit",
  session: "subscription session limit",
  weekly: "subscription weekly limit (its reset can be days away)",
  model: "per-model limit",
};

/** Words of "You've hit your X limit" that do not name a model. */
const NOT_A_MODEL = /^(?:session|weekly|daily|monthly|usage|extra|shared|spend|rate|\d+-hour)$/i;

/** The kind of a usage-limit message (anchors §B5), and the model a per-model limit names. */
export function limitOfText(line: string): { limit: LimitKind; model?: string } {
  if (/\bweekly limit\b/i.test(line)) return { limit: "weekly" };
  const word = /^You've (?:hit|reached) your ([\w-]+) limit\b/i.exec(line)?.[1];
  if (word && !NOT_A_MODEL.test(word)) return { limit: "model", model: word };
  return { limit: "session" };
}

/** The kind of a rate_limit_event's `rateLimitType`: five_hour, seven_day, seven_day_opus … */
export function limitOfType(type: string | undefined): { limit: LimitKind; model?: string } {
  const model = /^seven_day_(\w+)$/.exec(type ?? "")?.[1];
  if (model) return { limit: "model", model };
  if (type === "seven_day") return { limit: "weekly" };
  return { limit: "session" };
}

/** The message of a hold: what kind of limit, then what the CLI or API said. */
export function limitReason(kind: { limit: LimitKind; model?: string }, detail: string): string {
  const what = kind.limit === "model" && kind.model ? `per-model limit (${kind.model})` : LIMIT_WORDS[kind.limit];
  return clip300(`${what}: ${detail}`);
}
export type FailJobCategory = "auth" | "spend_cap" | "config" | "prompt";

export type Decision =
  | { kind: "success" }
  | { kind: "retry"; category: RetryCategory; reason: string; min_delay_ms?: number }
  | { kind: "hold"; until: number; reason: string; source: "reset_time" | "retry_after" | "default_wait" | "backoff"; limit?: LimitKind; model?: string }
  | { kind: "fail_job"; category: FailJobCategory; reason: string; hint: string }
  /** The request itself is wrong (HTTP 400, over the batch's budget): the batch fails, no retry can help. */
  | { kind: "fail_batch"; category: string; reason: string }
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
  [rx(String.raw`You (?:have|'ve) reached your (?:specified )?(?:workspace |organization |monthly )?spend limit\b`), { kind: "fail_job", category: "spend_cap", hint: HINTS.spend_cap }],
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


export function classify(result: ExecutionResult, opts: ClassifyOptions): Decision {
  if (result.setup_error) return { kind: "fail_job", category: "config", reason: result.setup_error.message, hint: result.setup_error.hint };
  if (result.fail_batch) return { kind: "fail_batch", category: result.fail_batch.category, reason: clip300(result.fail_batch.reason) };
  if (result.interrupted) return { kind: "interrupted" };
  const live = result.claude?.live;
  if (live) return fromLive(live, opts);
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
  const holdFrom = (line: string, reason: string, kind?: { limit: LimitKind; model?: string }): Decision => {
    let zoneNote = "";
    const reset = parseResetTime(line, opts.now, { timeZone: opts.timeZone, onUnknownZone: (name, used) => (zoneNote = ` (time zone "${name}" is unknown; read in ${used})`) });
    const tag = kind ? { limit: kind.limit, ...(kind.model ? { model: kind.model } : {}) } : {};
    if (reset !== null) return { kind: "hold", until: Math.max(reset, opts.now), reason: reason + zoneNote, source: "reset_time", ...tag };
    return { ...defaultHold(reason), ...tag } as Decision;
  };

  // A key the API refused: the structured status decides, so the message can name the key's variable.
  if (http?.key_env && (http.status === 401 || http.status === 403)) {
    return byStatus(http.status, clip300(lines[0] ?? ""), opts, http, clip300(lines.slice(1).join(" ") || lines[0] || ""))!;
  }
  if (matched?.verdict.kind === "fail_job") {
    const v = matched.verdict;
    return { kind: "fail_job", category: v.category, reason: clip300(matched.line), hint: v.hint };
  }

  // An answer the API cut off, or a Message Batch request that never ran: try again.
  if (http?.stop_reason === "max_tokens") return { kind: "retry", category: "truncated", reason: clip300(result.stderr) };
  if (http?.error_type === "expired") return { kind: "retry", category: "expired", reason: clip300(result.stderr) };
  if (http?.error_type === "canceled") return { kind: "retry", category: "cancelled", reason: clip300(result.stderr) };

  // A rejected rate_limit_event carries the exact reset; it beats any text.
  if (c?.rate_limit_resets_at !== undefined) {
    const kind = c.result ? limitOfText(c.result) : { limit: "session" as const };
    return { kind: "hold", until: Math.max(c.rate_limit_resets_at, opts.now), reason: limitReason(kind, c.result || "rate_limit_event rejected"), source: "reset_time", limit: kind.limit, ...(kind.model ? { model: kind.model } : {}) };
  }
  if (matched?.verdict.kind === "limit") {
    const kind = limitOfText(matched.line);
    return holdFrom(matched.line, limitReason(kind, matched.line), kind);
  }

  const extra = lines.find((l) => opts.extraPatterns.some((re) => re.test(l)));
  if (extra !== undefined) return holdFrom(extra, `matched rate_limit.detection_patterns: ${clip300(extra)}`);

  // Text before status here: "Server is temporarily limiting requests" also arrives as a 429 but is a short throttle, not a quota.
  // "Request rejected (429)" is an API rate limit (per minute), not a usage limit: a hold of seconds
  // (step.ts doubles it from 5 s with each hold of the batch), never rate_limit.wait_minutes.
  if (matched?.verdict.kind === "hold_429") return { kind: "hold", until: opts.now, reason: limitReason({ limit: "api_rate" }, matched.line), source: "backoff", limit: "api_rate" };
  if (matched?.verdict.kind === "retry") return { kind: "retry", category: matched.verdict.category, reason: clip300(matched.line) };

  const status = c?.api_error_status ?? http?.status ?? undefined;
  const reasonText = clip300(c?.result || lines[0] || `exit code ${result.exit_code}`);
  if (status !== undefined && status !== null) {
    // An API error's own message is the line after the status line ("Anthropic API error 400 …").
    const apiMessage = http && lines.length > 1 ? clip300(lines.slice(1).join(" ")) : reasonText;
    const fromStatus = byStatus(status, reasonText, opts, http, apiMessage);
    if (fromStatus) return fromStatus;
  }

  if (http?.error_type === "timeout") return { kind: "retry", category: "timeout", reason: reasonText };
  if (http?.error_type === "connection") return { kind: "retry", category: "network", reason: reasonText };
  if (claudeFailed) return { kind: "retry", category: "transient", reason: reasonText };
  // 124 is what `timeout(1)` exits with when a wrapper script enforced its own limit.
  if (result.exit_code === 124) return { kind: "retry", category: "timeout", reason: `exit code 124 (killed by a timeout)${lines[0] ? `: ${clip300(lines[0])}` : ""}` };
  if (result.signal !== null || (result.exit_code !== null && result.exit_code >= 128)) {
    return { kind: "retry", category: "crash", reason: `the process ended by ${result.signal ?? `exit code ${result.exit_code}`}${lines[0] ? `: ${clip300(lines[0])}` : ""}` };
  }
  return { kind: "retry", category: "transient", reason: `exit code ${result.exit_code}${lines.length ? `: ${clip300(lines[lines.length - 1] as string)}` : ""}` };
}

/** A decision the CLI's stream announced while it ran (Mozart stopped it at once). */
function fromLive(v: NonNullable<NonNullable<ExecutionResult["claude"]>["live"]>, opts: ClassifyOptions): Decision {
  const what = (status?: number, error?: string) => [status !== undefined ? `HTTP ${status}` : "", error ?? ""].filter(Boolean).join(" ");
  switch (v.kind) {
    case "auth":
      return { kind: "fail_job", category: "auth", reason: `claude could not authenticate (${what(v.status, v.error) || "authentication failed"}); stopped at its first retry instead of waiting out its own retries`, hint: HINTS.auth };
    case "credits":
      return {
        kind: "fail_job",
        category: "spend_cap",
        reason: `the account has no credits or usage left (${v.error ?? "credits_required"}): waiting for a reset will not help`,
        hint: HINTS.spend_cap,
      };
    case "rate_limit":
      // An API rate limit (requests or tokens per minute): the CLI's own retry delay, seconds, shared by all workers.
      return { kind: "hold", until: opts.now + v.delay_ms, reason: limitReason({ limit: "api_rate" }, `${what(v.status, v.error) || "429"}, claude would retry in ${Math.round(v.delay_ms / 100) / 10}s`), source: "retry_after", limit: "api_rate" };
    case "reset": {
      const kind = limitOfType(v.limit_type);
      const reason = limitReason(kind, `rate_limit_event rejected${v.limit_type ? ` (${v.limit_type})` : ""}, resets ${new Date(v.at).toISOString()}`);
      return { kind: "hold", until: Math.max(v.at, opts.now), reason, source: "reset_time", limit: kind.limit, ...(kind.model ? { model: kind.model } : {}) };
    }
  }
}

function byStatus(status: number, reason: string, opts: ClassifyOptions, http: HttpFacts | undefined, apiMessage = reason): Decision | undefined {
  const retryAfterMs = http?.retry_after_ms;
  const minDelay = retryAfterMs !== undefined ? { min_delay_ms: retryAfterMs } : {};
  if ((status === 401 || status === 403) && http?.key_env) {
    const name = http.key_env;
    return {
      kind: "fail_job",
      category: "auth",
      reason: clip300(`the API refused the key in ${name} (${status}${http.error_type ? ` ${http.error_type}` : ""}: ${apiMessage})`),
      hint: `Set ${name} to a valid API key (or point backend.api_key_env at the variable that holds one), then \`mozart resume\`.`,
    };
  }
  if (status === 401 || status === 403) return { kind: "fail_job", category: "auth", reason, hint: HINTS.auth };
  // A spend-limit 429 has no retry-after and lasts until the next billing period (anchors §C2).
  const spendCap = status === 402 || http?.error_type === "billing_error" || /spend_limit/.test(http?.error_code ?? "");
  if (spendCap) return { kind: "fail_job", category: "spend_cap", reason, hint: HINTS.spend_cap };
  if (status === 404) return { kind: "fail_job", category: "config", reason, hint: HINTS.model };
  if (status === 413) return { kind: "fail_job", category: "prompt", reason, hint: HINTS.prompt };
  if (status === 429) {
    if (retryAfterMs !== undefined) return { kind: "hold", until: opts.now + retryAfterMs, reason, source: "retry_after", limit: "api_rate" };
    if (http?.rate_limit_reset_at !== undefined) return { kind: "hold", until: Math.max(opts.now, http.rate_limit_reset_at), reason, source: "reset_time", limit: "api_rate" };
    // An API 429 that says nothing of when: a hold of seconds (step.ts doubles it from 5 s with
    // each hold of the batch), not rate_limit.wait_minutes, which is for usage limits.
    if (http?.status === 429) return { kind: "hold", until: opts.now, reason, source: "backoff", limit: "api_rate" };
    return { kind: "hold", until: opts.now + opts.waitMinutes * 60_000, reason, source: "default_wait" };
  }
  if (status === 400) return { kind: "fail_batch", category: "request", reason: clip300(`the API refused the request (400${http?.error_type ? ` ${http.error_type}` : ""}): ${apiMessage}`) };
  if (status === 529) return { kind: "retry", category: "overloaded", reason, ...minDelay };
  if (status >= 500 || status === 408 || status === 409) return { kind: "retry", category: "server", reason, ...minDelay };
  return undefined;
}
