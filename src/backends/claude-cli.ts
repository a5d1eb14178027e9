/**
 * The `claude_cli` backend: `claude -p` with the prompt on stdin, in its own process group, in
 * the batch's working directory. The JSON result (or the last `result` line of stream-json) is
 * parsed into facts that classify() trusts before any text (claude-cli-observed.md: on API
 * errors `subtype` stays "success", `is_error` is true and stderr is empty). A timeout or an
 * abort stops it with SIGINT first (claudeStopSequence), then the rest of its tree.
 */
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import type { ClaudeCliConfig } from "../config/schema.ts";
import { runProcess, type StopSequence } from "../runtime/process.ts";
import { displayEnv, fromProcess, setupFailure } from "./command.ts";
import { tokensFromUsage } from "./prices.ts";
import type { Activity, Backend, BackendContext, ClaudeResultFacts, ExecutionResult, LiveVerdict, Spend } from "./types.ts";

const ROOT_REFUSAL = "--dangerously-skip-permissions cannot be used with root/sudo privileges";
const ROOT_HINT =
  'Inside a sandbox or container, set IS_SANDBOX=1 in the environment (e.g. backend.env: { IS_SANDBOX: "1" }); ' +
  "otherwise run Mozart as a non-root user, or set backend.skip_permissions: false.";
const INSTALL_HINT =
  "Install Claude Code (npm install -g @anthropic-ai/claude-code) so that `claude` is on PATH, or set backend.cli_path to the full path of the executable.";
/**
 * CLAUDE_CODE_MAX_RETRIES when backend.claude_max_retries is not set. The CLI's own default is
 * 10 retries with a backoff doubling from 0.5 s (about 3 minutes per failing call, invisible to
 * the json format). Mozart reads every retry live from stream-json and stops the CLI at once on
 * the ones waiting cannot fix (auth, credits) or that are rate limits (a shared hold instead);
 * what is left (5xx, 529, network) the CLI may retry 3 times, a few seconds, before Mozart's own
 * retry policy takes over.
 */
export const DEFAULT_CLAUDE_MAX_RETRIES = 3;
/** The json result is one object; its `result` text can be long, but not this long. */
const MAX_JSON_BYTES = 32 * 1024 * 1024;

type ClaudeArgvConfig = Pick<ClaudeCliConfig, "cli_path" | "output_format" | "skip_permissions" | "model" | "max_turns" | "allowed_tools" | "append_system_prompt" | "extra_args">;

/**
 * SIGINT first: on SIGINT Claude Code stops its tools (which run in sessions of their own) and
 * still prints a result; on SIGTERM it exits 143 with no result and leaves them running.
 */
export function claudeStopSequence(graceMs = 5000): StopSequence {
  return [
    ["SIGINT", graceMs],
    ["SIGTERM", graceMs],
    ["SIGKILL", 0],
  ];
}

/**
 * The full argv (executable as configured, not resolved). Pure, so `--dry-run` shows exactly this.
 * `budgetUsd` (what budget.max_cost_usd_per_batch has left for the batch) becomes `--max-budget-usd`.
 */
export function buildClaudeArgv(config: ClaudeArgvConfig, budgetUsd?: number, over: { model?: string; resume?: string; jsonSchema?: string } = {}): string[] {
  const format = config.output_format ?? "stream-json";
  const argv = [config.cli_path ?? "claude", "-p", "--output-format", format];
  // The CLI exits 1 with "stream-json requires --verbose" otherwise.
  if (format === "stream-json") argv.push("--verbose");
  if (config.skip_permissions) argv.push("--dangerously-skip-permissions");
  // A fallback model (backend.fallback_models after a per-model limit) replaces the configured one.
  const model = over.model ?? config.model;
  if (model) argv.push("--model", model);
  if (config.max_turns !== undefined) argv.push("--max-turns", String(config.max_turns));
  if (config.allowed_tools?.length) argv.push("--allowedTools", config.allowed_tools.join(","));
  if (config.append_system_prompt) argv.push("--append-system-prompt", config.append_system_prompt);
  // Cents, rounded down: the CLI stops the session once it has spent this much.
  if (budgetUsd !== undefined) argv.push("--max-budget-usd", (Math.floor(Math.max(0, budgetUsd) * 10000) / 10000).toString());
  if (over.jsonSchema) argv.push("--json-schema", over.jsonSchema);
  // retry.continue_session: the attempt continues the earlier attempt's session.
  if (over.resume) argv.push("--resume", over.resume);
  return [...argv, ...(config.extra_args ?? [])];
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds the executable the way a shell would, so a missing one is reported before anything runs. */
export function resolveClaude(cliPath: string | undefined, env: Record<string, string | undefined>, jobDir: string): { path: string } | { error: string } {
  if (cliPath && (cliPath.includes("/") || cliPath.includes("\\"))) {
    const path = isAbsolute(cliPath) ? cliPath : resolve(jobDir, cliPath);
    return isExecutableFile(path) ? { path } : { error: `backend.cli_path points to ${path}, which is not an executable file` };
  }
  const name = cliPath ?? "claude";
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (dir && isExecutableFile(join(dir, name))) return { path: join(dir, name) };
  }
  return { error: `the \`${name}\` executable was not found on PATH` };
}

function claudeEnv(config: ClaudeCliConfig, ctx: BackendContext): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...ctx.env, ...config.env };
  // Mozart owns the retry policy; the CLI's own 10 retries cost about 3 minutes per failing call.
  env.CLAUDE_CODE_MAX_RETRIES = maxRetriesOf(config);
  return env;
}

/** backend.claude_max_retries, else CLAUDE_CODE_MAX_RETRIES written in backend.env, else DEFAULT_CLAUDE_MAX_RETRIES. */
function maxRetriesOf(config: ClaudeCliConfig): string {
  return config.claude_max_retries !== undefined ? String(config.claude_max_retries) : (config.env?.CLAUDE_CODE_MAX_RETRIES ?? String(DEFAULT_CLAUDE_MAX_RETRIES));
}

const AUTH_ERRORS = new Set(["authentication_failed", "oauth_org_not_allowed", "account_on_hold", "cloud_credential_error"]);

/**
 * The decision one stream-json event carries, if any (anchors §B3): an api_retry for 401/403 or
 * an authentication error, for a 429, or for a billing error; a rejected rate_limit_event with a
 * reset time or `credits_required`. Pure.
 */
export function liveVerdict(event: Record<string, unknown>): LiveVerdict | undefined {
  if (event.type === "system" && event.subtype === "api_retry") {
    const status = typeof event.error_status === "number" ? event.error_status : undefined;
    const error = typeof event.error === "string" ? event.error : undefined;
    const at = { ...(status !== undefined ? { status } : {}), ...(error ? { error } : {}) };
    if (status === 401 || status === 403 || (error && AUTH_ERRORS.has(error))) return { kind: "auth", ...at };
    if (error === "billing_error" || status === 402) return { kind: "credits", ...(error ? { error } : {}) };
    if (status === 429 || error === "rate_limit") {
      const delay = typeof event.retry_delay_ms === "number" && Number.isFinite(event.retry_delay_ms) ? Math.max(0, event.retry_delay_ms) : 0;
      return { kind: "rate_limit", delay_ms: delay, ...at };
    }
    return undefined;
  }
  if (event.type === "rate_limit_event") {
    const info = (event.rate_limit_info ?? {}) as Record<string, unknown>;
    if (info.errorCode === "credits_required") return { kind: "credits", error: "credits_required" };
    // resetsAt is reported in seconds by some CLI versions and in milliseconds by others.
    if (info.status === "rejected" && typeof info.resetsAt === "number") {
      const at = info.resetsAt > 1e12 ? info.resetsAt : info.resetsAt * 1000;
      return { kind: "reset", at, ...(typeof info.rateLimitType === "string" ? { limit_type: info.rateLimitType } : {}) };
    }
  }
  return undefined;
}

/** A tool call in a few words: its name and the input that says most (a path, a command, a pattern). */
function toolSummary(block: Record<string, unknown>): string {
  const input = (block.input ?? {}) as Record<string, unknown>;
  const detail = [input.file_path, input.command, input.pattern, input.url, input.description].find((v) => typeof v === "string") as string | undefined;
  const name = typeof block.name === "string" ? block.name : "tool";
  return detail ? `${name} ${detail.replace(/\s+/g, " ").slice(0, 120)}` : name;
}

/** Reads stream-json line by line as it arrives, so only the events we need are kept. */
class StreamJsonReader {
  /** The line being received, in pieces: joined once when its newline arrives, so a long line costs linear time. */
  private pieces: string[] = [];
  private size = 0;
  /** The line being received is longer than MAX_JSON_BYTES: it is skipped, not parsed. */
  private tooLong = false;
  result?: Record<string, unknown>;
  resetsAt?: number;
  /** The first event that decided the attempt; later ones do not change it. */
  verdict?: LiveVerdict;
  private turns = 0;
  constructor(private readonly on: { verdict?: (v: LiveVerdict) => void; activity?: (a: Activity) => void } = {}) {}
  push(chunk: string): void {
    let start = 0;
    for (let nl = chunk.indexOf("\n"); nl !== -1; nl = chunk.indexOf("\n", start)) {
      this.take(chunk.slice(start, nl));
      this.flush();
      start = nl + 1;
    }
    if (start < chunk.length) this.take(chunk.slice(start));
  }
  end(): void {
    this.flush();
  }
  private take(piece: string): void {
    if (this.tooLong) return;
    this.size += piece.length;
    if (this.size > MAX_JSON_BYTES) {
      this.tooLong = true;
      this.pieces = [];
      return;
    }
    this.pieces.push(piece);
  }
  private flush(): void {
    if (!this.tooLong && this.pieces.length) this.line(this.pieces.length === 1 ? this.pieces[0]! : this.pieces.join(""));
    this.pieces = [];
    this.size = 0;
    this.tooLong = false;
  }
  private line(line: string): void {
    const event = parseObject(line);
    if (!event) return;
    if (event.type === "result") this.result = event;
    if (event.type === "rate_limit_event") {
      const info = (event.rate_limit_info ?? {}) as Record<string, unknown>;
      // resetsAt is reported in seconds by some CLI versions and in milliseconds by others.
      if (info.status === "rejected" && typeof info.resetsAt === "number") this.resetsAt = info.resetsAt > 1e12 ? info.resetsAt : info.resetsAt * 1000;
      else if (info.status === "allowed") this.resetsAt = undefined;
    }
    const verdict = this.verdict ? undefined : liveVerdict(event);
    if (verdict) {
      this.verdict = verdict;
      this.on.verdict?.(verdict);
    }
    if (this.on.activity) {
      const a = this.activity(event);
      if (a) this.on.activity(a);
    }
  }
  private activity(event: Record<string, unknown>): Activity | undefined {
    if (event.type === "system" && event.subtype === "init") {
      return { ...(typeof event.model === "string" ? { model: event.model } : {}), ...(typeof event.session_id === "string" ? { session_id: event.session_id } : {}) };
    }
    if (event.type === "system" && event.subtype === "api_retry") {
      const num = (v: unknown) => (typeof v === "number" ? v : 0);
      return {
        retry: {
          attempt: num(event.attempt),
          max_retries: num(event.max_retries),
          delay_ms: num(event.retry_delay_ms),
          ...(typeof event.error_status === "number" ? { status: event.error_status } : {}),
          ...(typeof event.error === "string" ? { error: event.error } : {}),
        },
      };
    }
    if (event.type === "rate_limit_event") {
      const info = (event.rate_limit_info ?? {}) as Record<string, unknown>;
      if (typeof info.utilization !== "number") return undefined;
      const resets = typeof info.resetsAt === "number" ? (info.resetsAt > 1e12 ? info.resetsAt : info.resetsAt * 1000) : undefined;
      return {
        quota: {
          status: typeof info.status === "string" ? info.status : "allowed",
          utilization: info.utilization,
          ...(resets !== undefined ? { resets_at: resets } : {}),
          ...(typeof info.rateLimitType === "string" ? { limit_type: info.rateLimitType } : {}),
        },
      };
    }
    // Subagents' messages (parent_tool_use_id set) are not turns of the session.
    if (event.type === "assistant" && !event.parent_tool_use_id) {
      const content = ((event.message as { content?: unknown } | undefined)?.content ?? []) as Array<Record<string, unknown>>;
      const tool = Array.isArray(content) ? content.find((b) => b && b.type === "tool_use") : undefined;
      this.turns++;
      return { turn: this.turns, ...(tool ? { tool: toolSummary(tool) } : {}) };
    }
    return undefined;
  }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{")) return undefined;
  try {
    const value: unknown = JSON.parse(trimmed);
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The json format prints one object; tolerate a stray warning line before it. */
function parseJsonResult(stdout: string): Record<string, unknown> | undefined {
  const whole = parseObject(stdout);
  if (whole?.type === "result") return whole;
  const lines = stdout.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const obj = parseObject(lines[i] ?? "");
    if (obj?.type === "result") return obj;
  }
  return undefined;
}

export function resultFacts(obj: Record<string, unknown>): ClaudeResultFacts {
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const num = (v: unknown) => (typeof v === "number" ? v : undefined);
  const facts: ClaudeResultFacts = { is_error: obj.is_error === true };
  if (str(obj.subtype)) facts.subtype = str(obj.subtype);
  if (typeof obj.api_error_status === "number" || obj.api_error_status === null) facts.api_error_status = obj.api_error_status as number | null;
  if (str(obj.result) !== undefined) facts.result = str(obj.result);
  if (num(obj.total_cost_usd) !== undefined) facts.total_cost_usd = num(obj.total_cost_usd);
  if (obj.usage && typeof obj.usage === "object") facts.usage = obj.usage as Record<string, unknown>;
  if (str(obj.session_id)) facts.session_id = str(obj.session_id);
  if (num(obj.num_turns) !== undefined) facts.num_turns = num(obj.num_turns);
  if (str(obj.terminal_reason)) facts.terminal_reason = str(obj.terminal_reason);
  if (Array.isArray(obj.permission_denials)) facts.permission_denials = obj.permission_denials as ClaudeResultFacts["permission_denials"];
  if (Array.isArray(obj.errors)) facts.errors = obj.errors.filter((e): e is string => typeof e === "string");
  if (obj.structured_output !== undefined) facts.structured_output = obj.structured_output;
  return facts;
}

/** backend.json_schema as the `--json-schema` argument: the inline schema, or the file's content. */
export function jsonSchemaArg(schema: ClaudeCliConfig["json_schema"], jobDir: string): { text?: string; error?: string } {
  if (schema === undefined) return {};
  if (typeof schema !== "string") return { text: JSON.stringify(schema) };
  const path = isAbsolute(schema) ? schema : resolve(jobDir, schema);
  try {
    return { text: JSON.stringify(JSON.parse(readFileSync(path, "utf8"))) };
  } catch (e) {
    return { error: `backend.json_schema: cannot read a JSON Schema from ${path} (${(e as Error).message})` };
  }
}

export function createClaudeCliBackend(config: ClaudeCliConfig, ctx: BackendContext): Backend {
  const format = config.output_format ?? "stream-json";
  const schema = jsonSchemaArg(config.json_schema, ctx.jobDir);
  return {
    name: "claude_cli",
    startsProcesses: true,
    describe(req) {
      const argv = buildClaudeArgv(config, req.budget_usd, { model: req.model, ...(req.resume ? { resume: req.resume.session_id } : {}), ...(schema.text ? { jsonSchema: schema.text } : {}) });
      const found = resolveClaude(config.cli_path, claudeEnv(config, ctx), ctx.jobDir);
      if ("path" in found) argv[0] = found.path;
      const env = displayEnv(config.env);
      env.CLAUDE_CODE_MAX_RETRIES = maxRetriesOf(config);
      return { argv, cwd: req.cwd, env, stdin: "prompt" };
    },
    async execute(req, signal) {
      const env = { ...claudeEnv(config, ctx), ...(req.worktree ? { MOZART_WORKTREE: req.worktree } : {}) };
      const argv = buildClaudeArgv(config, req.budget_usd, { model: req.model, ...(schema.text ? { jsonSchema: schema.text } : {}) });
      const found = resolveClaude(config.cli_path, env, ctx.jobDir);
      if ("error" in found) return setupFailure(req, argv, "executable_not_found", `cannot run claude: ${found.error}`, INSTALL_HINT);
      if (schema.error) return setupFailure(req, argv, "invalid_config", schema.error, "point backend.json_schema at a JSON file holding a JSON Schema, or write the schema inline");
      argv[0] = found.path;
      if (!req.resume) return runClaude(argv, req.prompt);
      // Continue the session (retry.continue_session); one that cannot be resumed falls back to a fresh one, recorded.
      const session_id = req.resume.session_id;
      const resumed = await runClaude(buildClaudeArgv({ ...config, cli_path: found.path }, req.budget_usd, { model: req.model, resume: session_id, ...(schema.text ? { jsonSchema: schema.text } : {}) }), req.prompt);
      const failure = resumeFailure(resumed);
      if (!failure || signal.aborted) return { ...resumed, resume: { session_id, resumed: true } };
      const fresh = await runClaude(argv, req.resume.fresh_prompt);
      return { ...fresh, duration_ms: resumed.duration_ms + fresh.duration_ms, resume: { session_id, resumed: false, reason: failure } };

      async function runClaude(argv: string[], prompt: string): Promise<ExecutionResult> {
        let json = "";
        let jsonOverflow = false;
        // An event that decides the attempt stops the CLI at once (SIGINT first, so it stops its tools).
        const decided = new AbortController();
        const stream = new StreamJsonReader({ verdict: () => decided.abort(), ...(req.onActivity ? { activity: req.onActivity } : {}) });
        const p = await runProcess({
          argv,
          cwd: req.cwd,
          env,
          stdin: prompt,
          timeoutMs: req.timeoutMs,
          signal: AbortSignal.any([signal, decided.signal]),
          stopSequence: claudeStopSequence(ctx.killGraceMs),
          ...(req.tag ? { tag: req.tag } : {}),
          ...(req.onSpawn ? { onSpawn: req.onSpawn } : {}),
          onOutput(name, chunk) {
            if (name === "stdout" && format === "stream-json") stream.push(chunk);
            else if (name === "stdout" && format === "json" && !jsonOverflow) {
              json += chunk;
              if (json.length > MAX_JSON_BYTES) jsonOverflow = true;
            }
            req.onOutput?.(name, chunk);
          },
        });
        const result = fromProcess(p, req.cwd, "claude");
        if (result.setup_error) return result;
        // Stopped by Mozart on what the stream said, not by the user: the verdict decides the attempt.
        if (stream.verdict && !signal.aborted) result.interrupted = false;

        if (p.stderr.includes(ROOT_REFUSAL)) {
          result.setup_error = { kind: "invalid_config", message: `claude refused to start: ${ROOT_REFUSAL} (Mozart runs as root and backend.skip_permissions is true)`, hint: ROOT_HINT };
          return result;
        }
        return withFacts(result, format, format === "json" && !jsonOverflow ? json : "", stream);
      }
    },
  };
}

/** Why `--resume` did not continue the session (its transcript is gone, or another machine's), if it did not. */
function resumeFailure(r: ExecutionResult): string | undefined {
  if (r.exit_code === 0 || r.timed_out || r.interrupted) return undefined;
  const text = `${r.stderr}\n${r.claude?.result ?? ""}\n${(r.claude?.errors ?? []).join("\n")}`;
  const line = text.split("\n").find((l) => /No conversation found|session .*not found|could not resume/i.test(l));
  return line?.trim().slice(0, 300);
}

function withFacts(result: ExecutionResult, format: string, json: string, stream: StreamJsonReader): ExecutionResult {
  if (format === "text") {
    if (result.exit_code === 0) result.text = result.stdout.trim();
    return result;
  }
  let obj: Record<string, unknown> | undefined;
  if (format === "json") obj = parseJsonResult(json);
  else {
    stream.end();
    obj = stream.result;
  }
  if (!obj && !stream.verdict) return result;
  const facts: ClaudeResultFacts = obj ? resultFacts(obj) : { is_error: true };
  if (stream.verdict) {
    facts.live = stream.verdict;
    facts.is_error = true;
  }
  if (stream.resetsAt !== undefined) facts.rate_limit_resets_at = stream.resetsAt;
  result.claude = facts;
  if (!facts.is_error && facts.result !== undefined) result.text = facts.result;
  if (facts.total_cost_usd !== undefined || facts.usage) result.spend = spendOfResult(facts);
  if (facts.total_cost_usd !== undefined) result.cost_usd = facts.total_cost_usd;
  return result;
}

/**
 * The CLI's own cost figure, and its token counts. `total_cost_usd` covers the whole session, so
 * it is reported as the session's cumulative figure: the engine records the difference to what
 * the session cost before (a resumed session), so the ledger never counts it twice.
 */
export function spendOfResult(facts: ClaudeResultFacts): Spend {
  const tokens = tokensFromUsage(facts.usage);
  const usd = facts.total_cost_usd ?? 0;
  return {
    usd,
    tokens,
    priced_by: facts.total_cost_usd !== undefined ? "backend" : "unpriced",
    ...(facts.session_id ? { session: { id: facts.session_id, cumulative_usd: usd } } : {}),
  };
}
