/**
 * Validation rules: the checks that decide whether a batch is done. Every rule runs every time,
 * in config order, and each one yields a result; a rule never throws, so one broken rule can't
 * hide the others. Commands run asynchronously in their own process group, so a timeout kills
 * everything they started and the event loop (progress, dashboard, signals) keeps running.
 */
import { spawn } from "node:child_process";
import { open, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import type { ValidationRule } from "../config/schema.ts";
import type { ValidationResult } from "../state/types.ts";

/** A rule whose placeholders the caller has expanded for one batch; `target` is informative. */
export type ExpandedRule = ValidationRule & { target?: string };

export interface ValidationContext {
  /** Relative paths and the default command cwd resolve against this (not the process cwd: V3). */
  workspace: string;
  /** mtimes (ms) taken before the batch's FIRST attempt, keyed by path; see snapshotMtimes. */
  baseline: Record<string, number>;
  /** Aborting kills a running command and skips commands not yet started. */
  signal?: AbortSignal;
}

export interface ValidationSummary {
  passed: number;
  failed: number;
  total: number;
  /** 100 when there are no rules, so an empty rule set never triggers completion mode. */
  percent: number;
}

interface Outcome {
  passed: boolean;
  detail: string;
}

const CHUNK_BYTES = 1 << 20;
/** content_regex needs the text in memory; past this it searches only the head of the file. */
export const MAX_REGEX_BYTES = 64 << 20;
const OUTPUT_TAIL_CHARS = 500;
const KILL_GRACE_MS = 2000;
/** After the shell exits, how long its leftover background processes may keep our pipes open. */
const PIPE_DRAIN_MS = 1000;

export async function runValidations(rules: ExpandedRule[], ctx: ValidationContext): Promise<ValidationResult[]> {
  const results: ValidationResult[] = [];
  for (const rule of rules) results.push(await runRule(rule, ctx));
  return results;
}

export function summarize(results: ValidationResult[]): ValidationSummary {
  const total = results.length;
  const passed = results.filter((r) => r.passed).length;
  return { passed, failed: total - passed, total, percent: total === 0 ? 100 : (passed / total) * 100 };
}

/**
 * mtimes for file_modified baselines; a missing file records 0 so creating it counts as a
 * change. Take it once before a batch's first attempt and keep it for every later attempt,
 * so files written in attempt 1 still count after a completion prompt says "don't touch" (R10).
 */
export async function snapshotMtimes(paths: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await Promise.all(
    paths.map(async (p) => {
      out[p] = await stat(p).then(
        (s) => s.mtimeMs,
        () => 0,
      );
    }),
  );
  return out;
}

async function runRule(rule: ExpandedRule, ctx: ValidationContext): Promise<ValidationResult> {
  const target = targetOf(rule, ctx.workspace);
  const base = { type: String(rule.type), description: (typeof rule.description === "string" && rule.description.trim()) || target, target };
  try {
    return { ...base, ...(await check(rule, target, ctx)) };
  } catch (e) {
    return { ...base, passed: false, detail: `validation error: ${errorText(e)}` };
  }
}

/** The expanded command or resolved path; tolerant of malformed rules so runRule can't throw. */
function targetOf(rule: ExpandedRule, workspace: string): string {
  const r = rule as { command?: unknown; path?: unknown };
  if (rule.type === "command_succeeds") return String(r.command ?? "");
  return typeof r.path === "string" ? resolveIn(workspace, r.path) : "";
}

function check(rule: ExpandedRule, target: string, ctx: ValidationContext): Promise<Outcome> {
  switch (rule.type) {
    case "file_exists":
      return fileExists(target);
    case "file_modified":
      return fileModified(target, baselineOf(ctx.baseline, target, rule.path));
    case "content_contains":
      return contentContains(target, rule.pattern);
    case "content_regex":
      return contentRegex(target, rule.pattern, rule.flags);
    case "command_succeeds": {
      const cwd = rule.working_directory ? resolveIn(ctx.workspace, rule.working_directory) : ctx.workspace;
      return commandSucceeds(rule.command, cwd, rule.timeout_seconds * 1000, ctx.signal);
    }
    default:
      // Rules come from stored state too, which may predate a rule type.
      throw new Error(`unknown rule type "${(rule as { type: unknown }).type}"`);
  }
}

async function fileExists(path: string): Promise<Outcome> {
  const found = await regularFile(path);
  if (typeof found === "string") return { passed: false, detail: found };
  return { passed: true, detail: `file exists (${found.size} bytes)` };
}

async function fileModified(path: string, baseline: number | undefined): Promise<Outcome> {
  const found = await regularFile(path);
  if (typeof found === "string") return { passed: false, detail: found };
  const before = baseline ?? 0;
  if (found.mtimeMs > before) {
    const how = before === 0 ? "created" : `modified (mtime ${iso(found.mtimeMs)}, was ${iso(before)})`;
    const note = baseline === undefined ? "; no baseline was recorded for this path" : "";
    return { passed: true, detail: `${how} since the batch started${note}` };
  }
  return { passed: false, detail: `not modified since the batch started (mtime ${iso(found.mtimeMs)}, baseline ${iso(before)})` };
}

/** Streams the file with an overlap between chunks, so memory stays flat for any file size. */
async function contentContains(path: string, pattern: string): Promise<Outcome> {
  const found = await regularFile(path);
  if (typeof found === "string") return { passed: false, detail: found };
  // Byte search is exact for UTF-8: a valid encoded needle can't match mid-character.
  const needle = Buffer.from(pattern, "utf8");
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(CHUNK_BYTES + needle.length);
    let carry = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, carry, CHUNK_BYTES, null);
      const filled = carry + bytesRead;
      if (buf.subarray(0, filled).indexOf(needle) !== -1) return { passed: true, detail: `contains ${quote(pattern)}` };
      if (bytesRead === 0) break;
      carry = Math.min(needle.length - 1, filled);
      buf.copy(buf, 0, filled - carry, filled);
    }
  } finally {
    await fh.close();
  }
  return { passed: false, detail: `text not found: ${quote(pattern)}` };
}

async function contentRegex(path: string, pattern: string, flags: string): Promise<Outcome> {
  let re: RegExp;
  try {
    re = new RegExp(pattern, flags);
  } catch (e) {
    return { passed: false, detail: `invalid regular expression /${pattern}/${flags}: ${errorText(e)}` };
  }
  const found = await regularFile(path);
  if (typeof found === "string") return { passed: false, detail: found };
  const fh = await open(path, "r");
  let text: string;
  try {
    const buf = Buffer.alloc(Math.min(found.size, MAX_REGEX_BYTES));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    text = buf.toString("utf8", 0, bytesRead);
  } finally {
    await fh.close();
  }
  const m = re.exec(text);
  if (m) return { passed: true, detail: `matched ${quote(m[0])}` };
  const partial = found.size > MAX_REGEX_BYTES ? ` (only the first ${MAX_REGEX_BYTES >> 20} MiB of ${found.size} bytes were searched)` : "";
  return { passed: false, detail: `no match for /${pattern}/${flags}${partial}` };
}

async function commandSucceeds(command: string, cwd: string, timeoutMs: number, signal?: AbortSignal): Promise<Outcome> {
  const dir = await stat(cwd).catch(() => null);
  if (!dir?.isDirectory()) return { passed: false, detail: `working directory does not exist: ${cwd}` };
  if (signal?.aborted) return { passed: false, detail: "not run: validation was interrupted" };
  const r = await runShell(command, cwd, timeoutMs, signal);
  if (r.spawnError) return { passed: false, detail: `could not start /bin/sh: ${r.spawnError}` };
  const tail = r.output ? `; output${r.outputChars > r.output.length ? ` (last ${r.output.length} of ${r.outputChars} chars)` : ""}: ${r.output}` : "";
  if (r.timedOut) return { passed: false, detail: `timed out after ${timeoutMs / 1000}s; process group killed${tail}` };
  if (r.interrupted) return { passed: false, detail: `interrupted; process group killed${tail}` };
  if (r.exitCode === 0) return { passed: true, detail: "exit code 0" };
  const status = r.exitCode === null ? `killed by ${r.signal ?? "a signal"}` : `exit code ${r.exitCode}`;
  return { passed: false, detail: `${status}${tail}` };
}

interface ShellResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  interrupted: boolean;
  /** Last OUTPUT_TAIL_CHARS of stdout and stderr, interleaved as they arrived. */
  output: string;
  outputChars: number;
  spawnError?: string;
}

function runShell(command: string, cwd: string, timeoutMs: number, signal?: AbortSignal): Promise<ShellResult> {
  return new Promise((done) => {
    // detached = its own process group, so one kill(-pid) reaches every grandchild.
    const child = spawn("/bin/sh", ["-c", command], { cwd, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const r: ShellResult = { exitCode: null, signal: null, timedOut: false, interrupted: false, output: "", outputChars: 0 };
    const timers: ReturnType<typeof setTimeout>[] = [];
    let finished = false;

    const killGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        // ESRCH: the group is already gone.
      }
    };
    const stop = (why: "timedOut" | "interrupted") => {
      r[why] = true;
      killGroup("SIGTERM");
      timers.push(setTimeout(() => killGroup("SIGKILL"), KILL_GRACE_MS));
    };
    const onAbort = () => stop("interrupted");
    const finish = () => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearTimeout(t);
      signal?.removeEventListener("abort", onAbort);
      r.output = r.output.slice(-OUTPUT_TAIL_CHARS);
      done(r);
    };
    const collect = (chunk: string) => {
      r.outputChars += chunk.length;
      // Keep a little more than needed so slicing stays cheap for chatty commands.
      r.output = (r.output + chunk).slice(-OUTPUT_TAIL_CHARS * 4);
    };

    child.stdout.setEncoding("utf8").on("data", collect);
    child.stderr.setEncoding("utf8").on("data", collect);
    child.on("error", (e) => {
      r.spawnError = errorText(e);
      finish();
    });
    child.on("exit", (code, sig) => {
      r.exitCode = code;
      r.signal = sig;
      clearTimeout(deadline);
      signal?.removeEventListener("abort", onAbort);
      // Whatever survived a kill must not outlive the validation.
      if (r.timedOut || r.interrupted) killGroup("SIGKILL");
      timers.push(
        setTimeout(() => {
          // A background process still holds our pipes: stop waiting for it, and stop it.
          killGroup("SIGKILL");
          child.stdout.destroy();
          child.stderr.destroy();
          finish();
        }, PIPE_DRAIN_MS),
      );
    });
    child.on("close", finish);
    const deadline = setTimeout(() => stop("timedOut"), timeoutMs);
    timers.push(deadline);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A regular file's stats, or a failure detail saying what is there instead. */
async function regularFile(path: string): Promise<{ size: number; mtimeMs: number } | string> {
  try {
    const s = await stat(path);
    if (s.isFile()) return s;
    return s.isDirectory() ? `${path} is a directory, not a file` : `${path} is not a regular file`;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return `file not found: ${path}`;
    throw e;
  }
}

function baselineOf(baseline: Record<string, number>, resolved: string, raw: string): number | undefined {
  return baseline[resolved] ?? baseline[raw];
}

function resolveIn(workspace: string, p: string): string {
  return isAbsolute(p) ? p : resolve(workspace, p);
}

function iso(ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : "none";
}

function quote(s: string, max = 120): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
