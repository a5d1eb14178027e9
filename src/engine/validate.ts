/**
 * Validation rules: the checks that decide whether a batch is done. Every rule runs every time,
 * in config order, and each one yields a result; a rule never throws, so one broken rule can't
 * hide the others. Commands run through runProcess like backend commands: asynchronously (the
 * event loop, progress, dashboard and signals keep running), with exactly the environment the
 * caller gives, and a timeout or abort stops everything they started.
 */
import { open, readFile, stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import type { ExpandedRule } from "../config/check.ts";
import type { Assertion } from "../config/json-rules.ts";
import { defaultStopSequence, runProcess, type StopSequence } from "../runtime/process.ts";
import { STRUCTURED_OUTPUT, type ValidationResult } from "../state/types.ts";
import { clip } from "../text.ts";

export interface ValidationContext {
  /** Relative paths and the default command cwd resolve against this (not the process cwd: V3). */
  workspace: string;
  /** mtimes (ms) taken before the batch's FIRST attempt, keyed by path; see snapshotMtimes. */
  baseline: Record<string, number>;
  /** Aborting kills a running command and skips commands not yet started. */
  signal?: AbortSignal;
  /** The complete environment of validation commands, built like the backend's. Default: process.env. */
  env?: Record<string, string | undefined>;
  /** How a timed-out or interrupted command is stopped. Default: SIGTERM, then SIGKILL after 2 s. */
  stopSequence?: StopSequence;
  /** Passed to runProcess, so a sweep at exit finds what validation commands left behind. */
  tag?: string;
  /** The attempt's structured output (claude_cli with backend.json_schema), which JSON rules without a path check. */
  structuredOutput?: unknown;
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
  const base = { type: String(rule.type), description: (typeof rule.description === "string" && rule.description.trim()) || defaultDescription(rule, target), target };
  try {
    return { ...base, ...(await check(rule, target, ctx)) };
  } catch (e) {
    return { ...base, passed: false, detail: `validation error: ${errorText(e)}` };
  }
}

/** What a rule without a description is called: its target, and for JSON rules what it asks of it. */
function defaultDescription(rule: ExpandedRule, target: string): string {
  if (rule.type === "json_schema") return `${target} follows the JSON Schema`;
  if (rule.type === "jsonpath") return `${target}: ${clip((Array.isArray(rule.assert) ? rule.assert : [rule.assert]).join("; "), 120)}`;
  return target;
}

/** The expanded command or resolved path; tolerant of malformed rules so runRule can't throw. */
function targetOf(rule: ExpandedRule, workspace: string): string {
  const r = rule as { command?: unknown; path?: unknown };
  if (rule.type === "command_succeeds") return String(r.command ?? "");
  if ((rule.type === "json_schema" || rule.type === "jsonpath") && r.path === undefined) return STRUCTURED_OUTPUT;
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
      return commandSucceeds(rule.command, cwd, rule.timeout_seconds * 1000, ctx);
    }
    case "json_schema":
    case "jsonpath":
      return jsonRule(rule, target, ctx);
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

/** The JSON a rule checks: the file at `path`, or the attempt's structured output. */
async function jsonDocument(path: string | undefined, ctx: ValidationContext): Promise<{ json: unknown } | Outcome> {
  if (path === undefined) {
    if (ctx.structuredOutput === undefined) {
      return { passed: false, detail: "no structured output: the session's result carried none (backend.json_schema asks for it; an answer that did not follow the schema carries none)" };
    }
    return { json: ctx.structuredOutput };
  }
  const found = await regularFile(path);
  if (typeof found === "string") return { passed: false, detail: found };
  if (found.size > MAX_REGEX_BYTES) return { passed: false, detail: `${path} is ${found.size} bytes: JSON rules read files of at most ${MAX_REGEX_BYTES >> 20} MiB` };
  const text = await readFile(path, "utf8");
  try {
    return { json: JSON.parse(text.replace(/^\uFEFF/, "")) };
  } catch (e) {
    return { passed: false, detail: `${path} is not valid JSON (${errorText(e)})` };
  }
}

/** ajv and jsonpath-plus load with the first JSON rule that runs. */
async function jsonRule(rule: Extract<ExpandedRule, { type: "json_schema" | "jsonpath" }>, target: string, ctx: ValidationContext): Promise<Outcome> {
  const doc = await jsonDocument(rule.path === undefined ? undefined : target, ctx);
  if ("detail" in doc) return doc;
  const rules = await import("../config/json-rules.ts");
  return rule.type === "json_schema" ? matchesSchema(rules, doc.json, rule.schema) : holdsAll(rules, doc.json, rule.assert);
}

type JsonRules = typeof import("../config/json-rules.ts");

function matchesSchema({ compileSchema, MAX_SCHEMA_ERRORS }: JsonRules, json: unknown, schema: unknown): Outcome {
  const failed = compileSchema(schema)(json);
  if (!failed) return { passed: true, detail: "matches the JSON Schema" };
  const more = failed.length > MAX_SCHEMA_ERRORS ? `; and ${failed.length - MAX_SCHEMA_ERRORS} more` : "";
  return { passed: false, detail: `does not match the JSON Schema: ${failed.slice(0, MAX_SCHEMA_ERRORS).join("; ")}${more}` };
}

function holdsAll({ evaluateAssertion, MAX_SCHEMA_ERRORS, parseAssertion }: JsonRules, json: unknown, asserted: string | string[]): Outcome {
  const all = Array.isArray(asserted) ? asserted : [asserted];
  const failed: string[] = [];
  for (const text of all) {
    let a: Assertion;
    try {
      a = parseAssertion(text);
    } catch (e) {
      failed.push(`${JSON.stringify(text)}: ${errorText(e)}`);
      continue;
    }
    const why = evaluateAssertion(a, json);
    if (why) failed.push(why);
  }
  if (!failed.length) return { passed: true, detail: all.length === 1 ? `holds: ${all[0]}` : `all ${all.length} assertions hold` };
  const which = all.length === 1 ? "assertion failed" : `${failed.length} of ${all.length} assertions failed`;
  return { passed: false, detail: `${which}: ${failed.slice(0, MAX_SCHEMA_ERRORS).join("; ")}` };
}

async function commandSucceeds(command: string, cwd: string, timeoutMs: number, ctx: ValidationContext): Promise<Outcome> {
  const dir = await stat(cwd).catch(() => null);
  if (!dir?.isDirectory()) return { passed: false, detail: `working directory does not exist: ${cwd}` };
  if (ctx.signal?.aborted) return { passed: false, detail: "not run: validation was interrupted" };
  const r = await runShell(command, cwd, timeoutMs, ctx);
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

async function runShell(command: string, cwd: string, timeoutMs: number, ctx: ValidationContext): Promise<ShellResult> {
  let output = "";
  let outputChars = 0;
  const p = await runProcess({
    shell: command,
    cwd,
    env: ctx.env ?? process.env,
    timeoutMs,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    stopSequence: ctx.stopSequence ?? defaultStopSequence(KILL_GRACE_MS),
    ...(ctx.tag ? { tag: ctx.tag } : {}),
    // Only the interleaved tail below is reported; keep runProcess's own copies small.
    maxCapture: { head: 0, tail: OUTPUT_TAIL_CHARS },
    onOutput(_stream, chunk) {
      outputChars += chunk.length;
      // Keep a little more than needed so slicing stays cheap for chatty commands.
      output = (output + chunk).slice(-OUTPUT_TAIL_CHARS * 4);
    },
  });
  return {
    exitCode: p.exit_code,
    signal: p.signal,
    timedOut: p.timed_out,
    interrupted: p.interrupted,
    output: output.slice(-OUTPUT_TAIL_CHARS),
    outputChars,
    ...(p.spawn_error ? { spawnError: p.spawn_error.message } : {}),
  };
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
