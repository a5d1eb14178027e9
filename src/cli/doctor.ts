/**
 * `mozart doctor [job file]`: what a job needs from this machine, each as a line with ✓ or ✗ and
 * what to do. Local checks only: `claude --version` and `git --version` run, nothing is sent to
 * any API, so it costs no tokens; the whole check takes well under 2 s.
 */
import { defineCommand } from "citty";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, statfsSync } from "node:fs";
import { createServer } from "node:net";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { resolveClaude } from "../backends/claude-cli.ts";
import type { PreparedJob } from "../config/check.ts";
import { checkJob, displayPath } from "../config/check.ts";
import { loadJobFile } from "../config/load.ts";
import { EXIT } from "../errors.ts";
import { runProcess } from "../runtime/process.ts";
import { mozartHome } from "../state/registry.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput } from "./output.ts";

export interface Check {
  name: string;
  /** warn: worth knowing, the job can still run. */
  status: "ok" | "warn" | "fail";
  detail: string;
  /** What to do, when not ok. */
  hint?: string;
}

type Env = Record<string, string | undefined>;

/** Below this much free space a workspace or MOZART_HOME is reported. */
const LOW_DISK_BYTES = 1024 ** 3;
const DEFAULT_DASHBOARD_PORT = 8000;

export interface DoctorInput {
  env: Env;
  job?: PreparedJob;
  /** The effective user id (undefined where there is none, e.g. Windows). */
  uid?: number;
  cwd: string;
  port?: number;
}

export async function runDoctor(input: DoctorInput): Promise<Check[]> {
  const { env, job } = input;
  const c = job?.config;
  const claudeCfg = c?.backend.type === "claude_cli" ? c.backend : undefined;
  const usesClaude = !c || claudeCfg !== undefined;
  const checks: Check[] = [];
  const env2: Env = { ...env, ...(claudeCfg?.env ?? {}) };

  if (usesClaude) checks.push(await claudeCheck(claudeCfg?.cli_path, env2, job?.dir ?? input.cwd, !c));
  if (usesClaude) checks.push(...authChecks(env2));
  if (claudeCfg?.skip_permissions || !c) checks.push(rootCheck(input.uid, env2, Boolean(claudeCfg?.skip_permissions)));
  if (c && c.backend.type !== "claude_cli" && c.backend.type !== "command") {
    const name = c.backend.api_key_env;
    checks.push(env[name] ? { name: "API key", status: "ok", detail: `${name} is set` } : { name: "API key", status: "fail", detail: `${name} is not set`, hint: `export ${name}=<your key> (or point backend.api_key_env at the variable that holds it)` });
  }
  checks.push(writable("MOZART_HOME", mozartHome(env)));
  if (c) checks.push(writable("workspace", c.workspace));
  if (c) checks.push(await gitCheck(env, worktrees(c)));
  else checks.push(await gitCheck(env, false));
  checks.push(await portCheck(input.port ?? DEFAULT_DASHBOARD_PORT));
  return checks;
}

/** Whether the job runs each batch in a git worktree (isolation: worktree). */
function worktrees(c: PreparedJob["config"]): boolean {
  return (c as { isolation?: unknown }).isolation === "worktree";
}

async function claudeCheck(cliPath: string | undefined, env: Env, dir: string, optional: boolean): Promise<Check> {
  const found = resolveClaude(cliPath, env, dir);
  if ("error" in found) {
    return {
      name: "claude",
      status: optional ? "warn" : "fail",
      detail: found.error,
      hint: "Install Claude Code (npm install -g @anthropic-ai/claude-code) so that `claude` is on PATH, or set backend.cli_path; only claude_cli jobs need it.",
    };
  }
  const p = await runProcess({ argv: [found.path, "--version"], cwd: dir, env, timeoutMs: 1500 }).catch(() => undefined);
  const version = p && p.exit_code === 0 ? p.stdout.trim().split("\n")[0] : undefined;
  if (!version) return { name: "claude", status: "fail", detail: `${found.path} did not answer --version${p?.stderr ? `: ${p.stderr.trim().slice(0, 200)}` : ""}`, hint: "Reinstall Claude Code, or point backend.cli_path at a working executable." };
  return { name: "claude", status: "ok", detail: `${found.path}, version ${version}` };
}

/** Where Claude Code keeps its login: CLAUDE_CONFIG_DIR, else ~/.claude (and ~/.claude.json for the account). */
function loginFound(env: Env): string | undefined {
  const dir = env.CLAUDE_CONFIG_DIR || join(env.HOME || homedir(), ".claude");
  const credentials = join(dir, ".credentials.json");
  if (existsSync(credentials)) return credentials;
  const account = env.CLAUDE_CONFIG_DIR ? join(dir, ".claude.json") : join(env.HOME || homedir(), ".claude.json");
  try {
    if (/"oauthAccount"\s*:\s*\{/.test(readFileSync(account, "utf8"))) return account;
  } catch {
    // no account file
  }
  return undefined;
}

function authChecks(env: Env): Check[] {
  const login = loginFound(env);
  const key = env.ANTHROPIC_API_KEY ? "ANTHROPIC_API_KEY" : undefined;
  const token = env.CLAUDE_CODE_OAUTH_TOKEN ? "CLAUDE_CODE_OAUTH_TOKEN" : undefined;
  const checks: Check[] = [];
  if (!login && !key && !token) {
    checks.push({ name: "login", status: "fail", detail: "Claude is not logged in and no key is set", hint: "run `claude` once and /login (a subscription), or set ANTHROPIC_API_KEY (API billing) or CLAUDE_CODE_OAUTH_TOKEN (`claude setup-token`)" });
  } else {
    const how = [login ? `logged in (${displayPath(login)})` : "", token ? `${token} set` : "", key ? `${key} set` : ""].filter(Boolean).join(", ");
    checks.push({ name: "login", status: "ok", detail: how });
  }
  if (key && (login || token)) {
    checks.push({
      name: "billing",
      status: "warn",
      detail: "ANTHROPIC_API_KEY is set beside a subscription login: claude uses the key, so the job bills the API, not the subscription",
      hint: "unset ANTHROPIC_API_KEY (or set backend.env: { ANTHROPIC_API_KEY: \"\" }) to run on the subscription",
    });
  }
  return checks;
}

function rootCheck(uid: number | undefined, env: Env, skipPermissions: boolean): Check {
  if (uid !== 0) return { name: "user", status: "ok", detail: uid === undefined ? "not running as root" : `running as uid ${uid}` };
  if (env.IS_SANDBOX === "1") return { name: "user", status: "ok", detail: "running as root with IS_SANDBOX=1" };
  if (!skipPermissions) return { name: "user", status: "warn", detail: "running as root: claude refuses skip_permissions as root outside a sandbox", hint: 'in a container, set IS_SANDBOX=1 (e.g. backend.env: { IS_SANDBOX: "1" })' };
  return {
    name: "user",
    status: "fail",
    detail: "running as root with backend.skip_permissions and no IS_SANDBOX: claude will refuse --dangerously-skip-permissions",
    hint: 'inside a sandbox or container set IS_SANDBOX=1 (e.g. backend.env: { IS_SANDBOX: "1" }); otherwise run as a non-root user, or set backend.skip_permissions: false',
  };
}

/** The folder, or the nearest one above it that exists (it is created there): writable, and its free space. */
function writable(name: string, path: string): Check {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  try {
    accessSync(dir, constants.W_OK);
    rmSync(mkdtempSync(join(dir, ".mozart-doctor-")), { recursive: true, force: true });
  } catch (e) {
    return { name, status: "fail", detail: `${displayPath(path)} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, hint: name === "MOZART_HOME" ? "set MOZART_HOME to a writable folder" : "point workspace at a writable folder" };
  }
  let free: number | undefined;
  try {
    const s = statfsSync(dir);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    // statfs is not available here
  }
  const where = `${displayPath(path)}${dir !== path ? " (created on first run)" : ""}`;
  if (free === undefined) return { name, status: "ok", detail: `${where} is writable` };
  const gb = (free / 1024 ** 3).toFixed(1);
  if (free < LOW_DISK_BYTES) return { name, status: "warn", detail: `${where} is writable, but only ${gb} GB free`, hint: "free some disk space: attempt logs and worktrees need room" };
  return { name, status: "ok", detail: `${where} is writable, ${gb} GB free` };
}

async function gitCheck(env: Env, needed: boolean): Promise<Check> {
  const p = await runProcess({ argv: ["git", "--version"], cwd: homedir(), env, timeoutMs: 1500 }).catch(() => undefined);
  if (p && p.exit_code === 0) return { name: "git", status: "ok", detail: p.stdout.trim() };
  return { name: "git", status: needed ? "fail" : "warn", detail: "git is not on PATH", hint: needed ? "install git: isolation: worktree runs each batch in a git worktree" : "install git if a job uses isolation: worktree" };
}

function portCheck(port: number): Promise<Check> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (e: NodeJS.ErrnoException) =>
      resolve({ name: "dashboard port", status: "warn", detail: `127.0.0.1:${port} is in use (${e.code ?? e.message})`, hint: `start the dashboard on another port: mozart dashboard --port <N> (0 picks a free one)` }),
    );
    server.listen(port, "127.0.0.1", () => server.close(() => resolve({ name: "dashboard port", status: "ok", detail: `127.0.0.1:${port} is free` })));
  });
}

export default defineCommand({
  meta: { name: "doctor", description: "Check this machine for a job: claude and its login, billing, root and sandbox, writable folders and disk, git, the dashboard port (no request that costs tokens)" },
  args: {
    config: { type: "positional", required: false, description: "Job file to check the machine for (optional)" },
    port: { type: "string", description: "Dashboard port to check (default 8000)", valueHint: "PORT" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const job = args.config ? await checkJob(await loadJobFile(args.config)) : undefined;
    const port = args.port === undefined ? undefined : Number(args.port);
    const checks = await runDoctor({ env: process.env, job, uid: process.getuid?.(), cwd: process.cwd(), ...(port !== undefined && Number.isInteger(port) ? { port } : {}) });
    const ok = checks.every((c) => c.status !== "fail");
    if (out.json) {
      out.emit({ ok, ...(job ? { file: job.file, job_name: job.config.name } : {}), checks });
      return ok ? EXIT.ok : EXIT.failed;
    }
    for (const c of checks) {
      const mark = c.status === "ok" ? out.c.green("✓") : c.status === "warn" ? out.c.yellow("!") : out.c.red("✗");
      out.print(`${mark} ${c.name}: ${c.detail}${c.hint ? `\n    → ${c.hint}` : ""}`);
    }
    return ok ? EXIT.ok : EXIT.failed;
  },
});
