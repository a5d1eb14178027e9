/** Test helpers: run the real CLI as a child process, make temp folders. */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");
export const MAIN = join(ROOT, "src", "main.ts");
export const FIXTURES = join(ROOT, "tests", "fixtures");
const BIN = join(ROOT, "node_modules", ".bin");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The environment tests give mozart: isolated MOZART_HOME, no colour, fakes on PATH. */
export function testEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...extra })) if (v !== undefined) env[k] = v;
  env.PATH = `${join(FIXTURES, "bin")}:${BIN}:${env.PATH ?? ""}`;
  if (!("FORCE_COLOR" in extra)) delete env.FORCE_COLOR;
  return env;
}

/** `timeout` (ms) kills a mozart that hangs, so a slow path fails its test instead of stalling the suite. */
export function mozart(args: string[], opts: { cwd?: string; env?: Record<string, string | undefined>; timeout?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: testEnv(opts.env),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    ...(opts.timeout ? { timeout: opts.timeout, killSignal: "SIGKILL" as const } : {}),
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Start mozart without waiting, for signal tests. */
export function mozartAsync(args: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}) {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: opts.cwd ?? ROOT, env: testEnv(opts.env), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const done = new Promise<CliResult>((res) => child.on("close", (code, signal) => res({ code: code ?? (signal ? 128 : -1), stdout, stderr })));
  return { child, done, output: () => ({ stdout, stderr }) };
}

export function tempDir(prefix = "mozart-test-"): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === "object" && v !== null && !Array.isArray(v);
/** `b` laid over `a`, objects merged key by key all the way down (arrays and other values replaced): a test's overrides on a base job. */
export function merge(a: Plain, b: Plain): Plain {
  const out: Plain = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isPlain(v) && isPlain(out[k]) ? merge(out[k] as Plain, v) : v;
  return out;
}
