/**
 * The `claude_cli` backend: `claude -p` with the prompt on stdin, in its own process group, in
 * the batch's working directory. The JSON result (or the last `result` line of stream-json) is
 * parsed into facts that classify() trusts before any text (claude-cli-observed.md: on API
 * errors `subtype` stays "success", `is_error` is true and stderr is empty).
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import type { BackendConfig } from "../config/schema.ts";
import { runProcess } from "../runtime/process.ts";
import { displayEnv, fromProcess, setupFailure } from "./command.ts";
import type { Backend, BackendContext, ClaudeResultFacts, ExecutionRequest, ExecutionResult } from "./types.ts";

const ROOT_REFUSAL = "--dangerously-skip-permissions cannot be used with root/sudo privileges";
const ROOT_HINT =
  'Inside a sandbox or container, set IS_SANDBOX=1 in the environment (e.g. backend.env: { IS_SANDBOX: "1" }); ' +
  "otherwise run Mozart as a non-root user, or set backend.skip_permissions: false.";
const INSTALL_HINT =
  "Install Claude Code (npm install -g @anthropic-ai/claude-code) so that `claude` is on PATH, or set backend.cli_path to the full path of the executable.";
/** The json result is one object; its `result` text can be long, but not this long. */
const MAX_JSON_BYTES = 32 * 1024 * 1024;

type ClaudeArgvConfig = Pick<
  BackendConfig,
  "cli_path" | "output_format" | "skip_permissions" | "model" | "max_turns" | "allowed_tools" | "append_system_prompt" | "extra_args"
>;

/** The full argv (executable as configured, not resolved). Pure, so `--dry-run` shows exactly this. */
export function buildClaudeArgv(config: ClaudeArgvConfig): string[] {
  const format = config.output_format ?? "json";
  const argv = [config.cli_path ?? "claude", "-p", "--output-format", format];
  // The CLI exits 1 with "stream-json requires --verbose" otherwise.
  if (format === "stream-json") argv.push("--verbose");
  if (config.skip_permissions) argv.push("--dangerously-skip-permissions");
  if (config.model) argv.push("--model", config.model);
  if (config.max_turns !== undefined) argv.push("--max-turns", String(config.max_turns));
  if (config.allowed_tools?.length) argv.push("--allowedTools", config.allowed_tools.join(","));
  if (config.append_system_prompt) argv.push("--append-system-prompt", config.append_system_prompt);
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

function claudeEnv(config: BackendConfig, ctx: BackendContext): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...ctx.env, ...config.env };
  // Mozart owns the retry policy; the CLI's own 10 retries cost about 3 minutes per failing call.
  if (config.claude_max_retries !== undefined) env.CLAUDE_CODE_MAX_RETRIES = String(config.claude_max_retries);
  return env;
}

/** Reads stream-json line by line as it arrives, so only the events we need are kept. */
class StreamJsonReader {
  private partial = "";
  result?: Record<string, unknown>;
  resetsAt?: number;
  push(chunk: string): void {
    const lines = (this.partial + chunk).split("\n");
    this.partial = lines.pop() ?? "";
    for (const line of lines) this.line(line);
  }
  end(): void {
    this.line(this.partial);
    this.partial = "";
  }
  private line(line: string): void {
    const event = parseObject(line);
    if (!event) return;
    if (event.type === "result") this.result = event;
    if (event.type === "rate_limit_event") {
      const info = (event.rate_limit_info ?? {}) as Record<string, unknown>;
      if (info.status === "rejected" && typeof info.resetsAt === "number") this.resetsAt = info.resetsAt * 1000;
      else if (info.status === "allowed") this.resetsAt = undefined;
    }
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
  return facts;
}

export function createClaudeCliBackend(config: BackendConfig, ctx: BackendContext): Backend {
  const format = config.output_format ?? "json";
  return {
    name: "claude_cli",
    describe(req) {
      const argv = buildClaudeArgv(config);
      const found = resolveClaude(config.cli_path, claudeEnv(config, ctx), ctx.jobDir);
      if ("path" in found) argv[0] = found.path;
      const env = displayEnv(config.env);
      if (config.claude_max_retries !== undefined) env.CLAUDE_CODE_MAX_RETRIES = String(config.claude_max_retries);
      return { argv, cwd: req.cwd, env, stdin: "prompt" };
    },
    async execute(req, signal) {
      const env = claudeEnv(config, ctx);
      const argv = buildClaudeArgv(config);
      const found = resolveClaude(config.cli_path, env, ctx.jobDir);
      if ("error" in found) return setupFailure(req, argv, "executable_not_found", `cannot run claude: ${found.error}`, INSTALL_HINT);
      argv[0] = found.path;

      let json = "";
      let jsonOverflow = false;
      const stream = new StreamJsonReader();
      const p = await runProcess({
        argv,
        cwd: req.cwd,
        env,
        stdin: req.prompt,
        timeoutMs: req.timeoutMs,
        signal,
        killGraceMs: ctx.killGraceMs,
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

      if (p.stderr.includes(ROOT_REFUSAL)) {
        result.setup_error = { kind: "invalid_config", message: `claude refused to start: ${ROOT_REFUSAL} (Mozart runs as root and backend.skip_permissions is true)`, hint: ROOT_HINT };
        return result;
      }
      return withFacts(result, format, format === "json" && !jsonOverflow ? json : "", stream);
    },
  };
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
  if (!obj) return result;
  const facts = resultFacts(obj);
  if (stream.resetsAt !== undefined) facts.rate_limit_resets_at = stream.resetsAt;
  result.claude = facts;
  if (!facts.is_error && facts.result !== undefined) result.text = facts.result;
  if (facts.total_cost_usd !== undefined) result.cost_usd = facts.total_cost_usd;
  return result;
}
