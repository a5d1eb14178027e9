/**
 * Stopping whole process trees with real processes: the command backend and the claude_cli
 * backend (tests/fixtures/fake-claude's `tool-sleep`, which starts its tool in a session of its
 * own like Claude Code) on timeout and on abort; leftovers after a normal exit; stopTree and
 * findTagged for trees whose parents are gone; and the same results from Bun.spawn, the portable
 * node:child_process path and Deno. Liveness treats zombies as dead (PID 1 here does not reap).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createBackend } from "../../src/backends/index.ts";
import type { BackendContext, ExecutionRequest, ExecutionResult } from "../../src/backends/types.ts";
import { BackendSchema } from "../../src/config/schema.ts";
import { defaultStopSequence, findTagged, PROCESS_TAGS_ENV, runProcess, stopTree } from "../../src/runtime/process.ts";
import { tempDir } from "../helpers.ts";
import { pidAlive } from "./engine-helpers.ts";
import { runScenarios } from "./process-scenarios.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const FAKE_CLAUDE = join(ROOT, "tests", "fixtures", "fake-claude");
const BIN = join(ROOT, "node_modules", ".bin");
const PROCESS_TS = join(ROOT, "src", "runtime", "process.ts");
const GRACE = 300;

const tmp = tempDir("mozart-tree-");
afterAll(() => tmp.cleanup());
let dirs = 0;
function freshDir(): string {
  const dir = join(tmp.path, `d${dirs++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const baseEnv = (extra: Record<string, string | undefined> = {}) => ({ ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}`, FAKE_CLAUDE_PRETEND_ROOT: "0", ...extra });
const ctx = (env: Record<string, string | undefined> = {}): BackendContext => ({ jobDir: ROOT, workspace: tmp.path, env: baseEnv(env), killGraceMs: GRACE });

async function waitFor(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(20);
  }
}
const readPid = (file: string) => Number(readFileSync(file, "utf8").trim());
const signalsIn = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => l.split(" ") as [string, string]) : []);

type Mode = "timeout" | "abort";
/** A request that ends by `mode`: a timeout, or an abort once `ready` holds (the tree is in place). */
function ending(mode: Mode, ready: () => boolean, fields: Partial<ExecutionRequest>, cwd: string) {
  const ac = new AbortController();
  if (mode === "abort") void waitFor(ready).then(() => ac.abort());
  const req: ExecutionRequest = {
    prompt: "Run the tool.",
    batch: { batch_num: 1, total_batches: 1, start_item: 1, end_item: 1 },
    attempt: 1,
    job_name: "tree-job",
    workspace: cwd,
    cwd,
    timeoutMs: mode === "timeout" ? 1500 : 60_000,
    ...fields,
  };
  return { req, signal: ac.signal };
}
const expectEnded = (r: ExecutionResult, mode: Mode) => expect(mode === "timeout" ? r.timed_out : r.interrupted).toBe(true);

for (const mode of ["timeout", "abort"] as const) {
  describe(`command backend, stopped by ${mode}`, () => {
    const backend = createBackend(BackendSchema.parse({ type: "command" }), ctx());

    test("no process of the tree is left, the setsid'ed one included; SIGTERM comes first", async () => {
      const dir = freshDir();
      const command = [
        `setsid sh -c 'echo $$ > session.pid; exec sleep 1000' &`,
        `sleep 1000 & echo $! > member.pid`,
        `trap 'echo SIGTERM >> signals.log; exit 143' TERM`,
        `trap 'echo SIGINT >> signals.log' INT`,
        `echo $$ > shell.pid`,
        `wait; wait`,
      ].join("\n");
      const files = ["session.pid", "member.pid", "shell.pid"].map((f) => join(dir, f));
      const { req, signal } = ending(mode, () => files.every(existsSync), { command }, dir);
      const r = await backend.execute(req, signal);
      expectEnded(r, mode);
      expect(r.exit_code).toBe(143);
      const pids = files.map(readPid);
      expect(pids.filter(pidAlive)).toEqual([]);
      expect(signalsIn(join(dir, "signals.log")).map(([s]) => s)).toEqual(["SIGTERM"]);
    });

    test("processes that ignore SIGTERM get SIGKILL after the grace period", async () => {
      const dir = freshDir();
      const command = `trap '' TERM; setsid sh -c 'echo $$ > session.pid; exec sleep 1000' & sleep 1000 & echo $! > member.pid; wait`;
      const files = ["session.pid", "member.pid"].map((f) => join(dir, f));
      let stopStarted = 0;
      const { req, signal } = ending(mode, () => files.every(existsSync), { command }, dir);
      signal.addEventListener("abort", () => (stopStarted = Date.now()));
      const started = Date.now();
      const r = await backend.execute(req, signal);
      expectEnded(r, mode);
      expect(r.signal).toBe("SIGKILL");
      // The grace period passed before the SIGKILL (generous bounds: CI is a noisy machine).
      expect(Date.now() - (stopStarted || started + req.timeoutMs)).toBeGreaterThanOrEqual(GRACE - 50);
      expect(files.map(readPid).filter(pidAlive)).toEqual([]);
    });
  });

  describe(`claude_cli backend (fake-claude tool-sleep), stopped by ${mode}`, () => {
    const claude = (env: Record<string, string>) => createBackend(BackendSchema.parse({ type: "claude_cli", cli_path: FAKE_CLAUDE }), ctx({ FAKE_CLAUDE_SCENARIO: "tool-sleep:1000", ...env }));
    const setup = () => {
      const dir = freshDir();
      const files = { tool: join(dir, "tool.pid"), signals: join(dir, "signals.log") };
      return { dir, files, env: { FAKE_CLAUDE_GRANDCHILD_PID_FILE: files.tool, FAKE_CLAUDE_SIGNAL_LOG: files.signals } };
    };

    test("SIGINT first: the CLI stops its tool and prints an error result; nothing is left", async () => {
      const { dir, files, env } = setup();
      let child = 0;
      const { req, signal } = ending(mode, () => existsSync(files.tool), { onSpawn: (p) => (child = p.pid) }, dir);
      const r = await claude(env).execute(req, signal);
      expectEnded(r, mode);
      expect(signalsIn(files.signals).map(([s]) => s)).toEqual(["SIGINT"]);
      expect(r.exit_code).toBe(1);
      expect(r.claude).toMatchObject({ is_error: true, subtype: "error_during_execution" });
      expect(child).toBeGreaterThan(0);
      expect([child, readPid(files.tool)].filter(pidAlive)).toEqual([]);
    });

    test("a CLI that exits on SIGTERM without stopping its tool: the tool is stopped anyway", async () => {
      const { dir, files, env } = setup();
      const { req, signal } = ending(mode, () => existsSync(files.tool), {}, dir);
      const r = await claude({ ...env, FAKE_CLAUDE_IGNORE_INT: "1" }).execute(req, signal);
      expectEnded(r, mode);
      expect(signalsIn(files.signals).map(([s]) => s)).toEqual(["SIGINT", "SIGTERM"]);
      expect(r.exit_code).toBe(143);
      expect(r.claude).toBeUndefined();
      expect(pidAlive(readPid(files.tool))).toBe(false);
    });

    test("a CLI that ignores SIGINT and SIGTERM gets SIGKILL after both grace periods", async () => {
      const { dir, files, env } = setup();
      let child = 0;
      const { req, signal } = ending(mode, () => existsSync(files.tool), { onSpawn: (p) => (child = p.pid) }, dir);
      const r = await claude({ ...env, FAKE_CLAUDE_IGNORE_INT: "1", FAKE_CLAUDE_IGNORE_TERM: "1" }).execute(req, signal);
      expectEnded(r, mode);
      expect(r.signal).toBe("SIGKILL");
      const got = signalsIn(files.signals);
      expect(got.map(([s]) => s)).toEqual(["SIGINT", "SIGTERM"]);
      const [int, term] = got.map(([, at]) => Number(at)) as [number, number];
      expect(term - int).toBeGreaterThanOrEqual(GRACE - 50);
      expect(Date.now() - term).toBeGreaterThanOrEqual(GRACE - 50);
      expect([child, readPid(files.tool)].filter(pidAlive)).toEqual([]);
    });
  });
}

describe("after a normal exit", () => {
  test("a group member that ignores SIGTERM is gone when runProcess resolves", async () => {
    const dir = freshDir();
    // The shell exits only once the member has set its trap: a SIGTERM before that would kill it at once, and prove nothing.
    const r = await runProcess({ shell: `(trap '' TERM; : > trapped; exec sleep 1000) & while [ ! -e trapped ]; do sleep 0.01; done; echo $! > left.pid; echo done`, cwd: dir, env: baseEnv(), killGraceMs: GRACE });
    expect(r).toMatchObject({ exit_code: 0, stdout: "done\n", timed_out: false, interrupted: false });
    expect(pidAlive(readPid(join(dir, "left.pid")))).toBe(false);
    expect(r.duration_ms).toBeGreaterThanOrEqual(GRACE - 50);
  });

  test("an empty group costs no waiting, whatever the grace period", async () => {
    const started = Date.now();
    for (let i = 0; i < 5; i++) expect((await runProcess({ argv: ["/bin/true"], cwd: tmp.path, env: baseEnv(), killGraceMs: 5000 })).exit_code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000); // five grace periods would be 25 s
  });

  test("pid and pgid are in the result and given to onSpawn before the end", async () => {
    let seen: { pid: number; pgid: number } | undefined;
    let seenBeforeEnd = false;
    const r = await runProcess({ shell: "echo $$; sleep 0.2", cwd: tmp.path, env: baseEnv(), onSpawn: (p) => (seen = p), onOutput: () => (seenBeforeEnd = seen !== undefined) });
    expect(seenBeforeEnd).toBe(true);
    expect(seen).toEqual({ pid: r.pid!, pgid: r.pgid! });
    expect(r.pgid).toBe(r.pid!);
    expect(Number(r.stdout.trim())).toBe(r.pid!);
  });
});

describe("stopTree and findTagged", () => {
  test("a tagged tree whose runner and shell were killed with SIGKILL is found and stopped by its tag", async () => {
    const dir = freshDir();
    const tag = `tree-test-${process.pid}-${Date.now()}`;
    const shell = `setsid sh -c 'echo $$ > session.pid; exec sleep 1000' & sleep 1000 & echo $! > member.pid; echo $$ > shell.pid; wait`;
    // A runner that dies without any chance to clean up, the way a crashed Mozart would.
    const runner = spawn(process.execPath, ["-e", `const { runProcess } = await import(${JSON.stringify(PROCESS_TS)}); await runProcess({ shell: ${JSON.stringify(shell)}, cwd: ${JSON.stringify(dir)}, env: process.env, tag: ${JSON.stringify(tag)} });`], { stdio: "ignore", env: baseEnv() });
    const files = ["session.pid", "member.pid", "shell.pid"].map((f) => join(dir, f));
    await waitFor(() => files.every(existsSync));
    const [session, member, shellPid] = files.map(readPid) as [number, number, number];
    runner.kill("SIGKILL");
    process.kill(shellPid, "SIGKILL");
    await waitFor(() => !pidAlive(shellPid) && !pidAlive(runner.pid!));
    // Their parents are gone: the tree is lost, the tag is not.
    expect(findTagged(tag).sort()).toEqual([session, member].sort());
    const signalled = await stopTree({ tag }, defaultStopSequence(GRACE));
    expect(signalled.sort()).toEqual([session, member].sort());
    expect([session, member].filter(pidAlive)).toEqual([]);
    expect(findTagged(tag)).toEqual([]);
  });

  test("stopTree({ pid }) stops the process and every descendant, session leavers included", async () => {
    const dir = freshDir();
    const root = spawn("/bin/sh", ["-c", `setsid sh -c 'echo $$ > session.pid; exec sleep 1000' & sleep 1000 & echo $! > child.pid; wait`], { cwd: dir, stdio: "ignore", detached: true });
    const files = ["session.pid", "child.pid"].map((f) => join(dir, f));
    await waitFor(() => files.every(existsSync));
    const pids = [root.pid!, ...files.map(readPid)];
    const signalled = await stopTree({ pid: root.pid! }, defaultStopSequence(GRACE));
    expect(signalled.sort()).toEqual([...pids].sort());
    expect(pids.filter(pidAlive)).toEqual([]);
  });

  test("a tagged process never finds or stops itself or its ancestors", async () => {
    const dir = freshDir();
    const tag = `self-test-${process.pid}-${Date.now()}`;
    const script = `const m = await import(${JSON.stringify(PROCESS_TS)}); const found = m.findTagged(${JSON.stringify(tag)}); const stopped = await m.stopTree({ tag: ${JSON.stringify(tag)}, pid: process.ppid, pgid: process.ppid }, [["SIGKILL", 0]]); console.log(JSON.stringify({ self: process.pid, parent: process.ppid, found, stopped }));`;
    const r = await runProcess({ argv: ["/bin/sh", "-c", `"${process.execPath}" -e '${script.replaceAll("'", "'\\''")}'; echo shell-survived`], cwd: dir, env: baseEnv(), tag });
    expect(r.exit_code).toBe(0);
    const [json, after] = r.stdout.trim().split("\n");
    const out = JSON.parse(json!) as { self: number; parent: number; found: number[]; stopped: number[] };
    expect(out.found).not.toContain(out.self);
    expect(out.found).not.toContain(out.parent);
    expect(out.stopped).toEqual([]);
    expect(after).toBe("shell-survived");
  });

  test("the tag is appended to an inherited MOZART_PROCESS_TAGS, and must be one word", async () => {
    const r = await runProcess({ shell: `echo "$${PROCESS_TAGS_ENV}"`, cwd: tmp.path, env: baseEnv({ [PROCESS_TAGS_ENV]: "job-a attempt-1" }), tag: "nested-2" });
    expect(r.stdout).toBe("job-a attempt-1 nested-2\n");
    expect(() => runProcess({ argv: ["/bin/true"], cwd: tmp.path, env: {}, tag: "two words" })).toThrow(TypeError);
  });
});

describe("Bun.spawn, the portable path and Deno give the same results", () => {
  let bun: Record<string, unknown> = {};

  test("Bun.spawn vs node:child_process under Bun", async () => {
    bun = await runScenarios(freshDir(), false);
    const portable = await runScenarios(freshDir(), true);
    expect(portable).toEqual(bun);
    // Equal and right: a few anchors so two identical mistakes can't pass.
    expect(bun.exit_code_and_streams).toMatchObject({ exit_code: 3, stdout: "out\n", stderr: "err\n" });
    expect(bun.killed_by_signal).toMatchObject({ exit_code: null, signal: "SIGTERM" });
    expect(bun.stdin_1mb).toMatchObject({ stdout: "1048576\n" });
    expect(bun.utf8).toMatchObject({ stdout: "é€😀" });
    expect(bun.exact_env_and_tags).toMatchObject({ stdout: "k unset outer inner\n" });
    expect(bun.missing_executable).toMatchObject({ spawn_error: { kind: "executable_not_found" } });
    expect(bun.missing_on_path).toMatchObject({ spawn_error: { kind: "executable_not_found" } });
    expect(bun.not_executable).toMatchObject({ spawn_error: { kind: "not_executable" } });
    expect(bun.missing_cwd).toMatchObject({ spawn_error: { kind: "working_directory_missing" } });
    expect(bun.timeout).toMatchObject({ timed_out: true, signal: "SIGTERM" });
    expect(bun.abort).toMatchObject({ interrupted: true, signal: "SIGTERM" });
    expect(bun.ignores_term_then_killed).toMatchObject({ timed_out: true, signal: "SIGKILL" });
    expect(bun.tree_after_timeout).toMatchObject({ timed_out: true, left: [], pid_matches_pgid: true });
    expect(bun.tree_after_abort).toMatchObject({ interrupted: true, left: [], pid_matches_pgid: true });
    expect(bun.leftover_ignoring_term_after_exit).toMatchObject({ exit_code: 0, stdout: "done\n", left: [] });
    expect(bun.on_spawn).toEqual({ calls: 1, same_as_result: true, is_shell: true });
  }, 30_000);

  test("Deno (deno run -A) matches Bun", async () => {
    const dir = freshDir();
    const deno = spawnSync(join(BIN, "deno"), ["run", "-A", join(import.meta.dir, "process-scenarios.ts"), dir], { encoding: "utf8", env: { ...process.env, DENO_NO_UPDATE_CHECK: "1" }, timeout: 50_000 });
    expect(deno.stderr).toBe("");
    expect(deno.status).toBe(0);
    expect(JSON.parse(deno.stdout)).toEqual(bun);
  }, 60_000);
});
