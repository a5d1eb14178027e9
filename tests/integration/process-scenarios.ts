/**
 * One set of runProcess scenarios whose results must be identical on every spawn path: Bun.spawn,
 * the portable node:child_process path forced under Bun, and Deno. process-tree.test.ts runs it
 * in-process and under `deno run -A` (this file as a script: `deno run -A process-scenarios.ts <dir>`
 * prints the results as JSON). Only node: APIs here, no bun:test, so Deno can load it.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { pidAlive as alive } from "../processes.ts";
import { runProcess, type ProcessResult, type RunProcessOptions } from "../../src/runtime/process.ts";

function pids(dir: string, names: string[]): number[] {
  return names.map((n) => join(dir, n)).filter((f) => existsSync(f)).map((f) => Number(readFileSync(f, "utf8").trim()));
}

/** What must match across paths: everything but timings and pids. */
function comparable(r: ProcessResult): Record<string, unknown> {
  const { duration_ms: _d, pid: _p, pgid: _g, ...rest } = r;
  return rest;
}

export type Scenarios = Record<string, unknown>;

export async function runScenarios(dir: string, portable: boolean): Promise<Scenarios> {
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  const base: Pick<RunProcessOptions, "cwd" | "env" | "portable" | "killGraceMs"> = { cwd: dir, env, portable, killGraceMs: 300 };
  const run = async (opts: Partial<RunProcessOptions>) => comparable(await runProcess({ ...base, ...opts }));
  writeFileSync(join(dir, "plain.sh"), "#!/bin/sh\necho hi\n", { mode: 0o644 });

  const spawned: Array<{ pid: number; pgid: number }> = [];
  const tree = async (key: string, opts: Partial<RunProcessOptions>) => {
    const shell = `setsid sh -c 'echo $$ > ${key}-session.pid; exec sleep 1000' & sleep 1000 & echo $! > ${key}-member.pid; echo started; wait`;
    const r = await runProcess({ ...base, shell, ...opts });
    // Checked the moment runProcess resolves (nothing of the tree may be left by then), and again
    // a little later for a pid file written by a process that was forked just as the stop began.
    const files = [`${key}-session.pid`, `${key}-member.pid`];
    const atOnce = pids(dir, files).filter(alive);
    await new Promise((r) => setTimeout(r, 200));
    const left = [...new Set([...atOnce, ...pids(dir, files).filter(alive)])];
    return { ...comparable(r), left, pid_matches_pgid: r.pid === r.pgid && r.pid !== undefined };
  };
  const abortAfter = (ms: number) => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), ms);
    return ac.signal;
  };
  /** Aborts once the files exist, i.e. the tree is complete. */
  const abortWhen = (files: string[]) => {
    const ac = new AbortController();
    const timer = setInterval(() => {
      if (files.every((f) => existsSync(join(dir, f)))) {
        clearInterval(timer);
        ac.abort();
      }
    }, 10);
    return ac.signal;
  };

  const entries: Array<[string, Promise<unknown>]> = [
    ["exit_code_and_streams", run({ shell: "echo out; echo err >&2; exit 3" })],
    ["killed_by_signal", run({ shell: "kill -TERM $$" })],
    ["stdin_1mb", run({ shell: "wc -c", stdin: "x".repeat(1 << 20) })],
    ["no_stdin", run({ shell: "cat; echo end" })],
    ["utf8", run({ shell: "printf '\\303\\251\\342\\202\\254\\360\\237\\230\\200'" })],
    ["bounded_capture", run({ shell: "head -c 2000000 /dev/zero | tr '\\0' x; printf END", maxCapture: { head: 10, tail: 10 } })],
    ["exact_env_and_tags", run({ shell: 'echo "${KEEP-unset} ${DROP-unset} $MOZART_PROCESS_TAGS"', env: { ...env, KEEP: "k", DROP: undefined, MOZART_PROCESS_TAGS: "outer" }, tag: "inner" })],
    ["missing_executable", run({ argv: [join(dir, "no-such-program")] })],
    ["missing_on_path", run({ argv: ["no-such-program-on-path"] })],
    ["not_executable", run({ argv: [join(dir, "plain.sh")] })],
    ["directory_as_executable", run({ argv: [dir] })],
    ["missing_cwd", run({ argv: ["/bin/true"], cwd: join(dir, "no-such-dir") })],
    ["timeout", run({ shell: "sleep 5", timeoutMs: 300 })],
    ["abort", run({ shell: "sleep 5", signal: abortAfter(300) })],
    ["ignores_term_then_killed", run({ shell: "trap '' TERM; sleep 5", timeoutMs: 300 })],
    ["sequence_gets_kill_appended", run({ shell: "trap '' INT; sleep 5", timeoutMs: 300, stopSequence: [["SIGINT", 200]] })],
    // Unique: a stop by tag reaches every process carrying it, a parallel test run's included.
    ["tree_after_timeout", tree("t", { timeoutMs: 800, tag: `scenario-${process.pid}-${Date.now()}-${portable ? "p" : "b"}` })],
    // No tag: the tree read before the first signal is all there is to find the session leaver.
    ["tree_after_abort", tree("a", { signal: abortWhen(["a-session.pid", "a-member.pid"]) })],
    [
      "leftover_ignoring_term_after_exit",
      (async () => {
        const r = await runProcess({ ...base, shell: `(trap '' TERM; exec sleep 1000) & echo $! > leftover.pid; echo done` });
        return { ...comparable(r), left: pids(dir, ["leftover.pid"]).filter(alive) };
      })(),
    ],
    [
      "on_spawn",
      (async () => {
        const r = await runProcess({ ...base, shell: "echo $$", onSpawn: (p) => spawned.push(p) });
        const first = spawned[0];
        return { calls: spawned.length, same_as_result: first?.pid === r.pid && first?.pgid === r.pgid, is_shell: Number(r.stdout.trim()) === r.pid };
      })(),
    ],
  ];
  const out: Scenarios = {};
  for (const [name, result] of entries) out[name] = await result;
  return JSON.parse(JSON.stringify(out).replaceAll(dir, "<dir>")) as Scenarios;
}

if (import.meta.main) {
  const dir = process.argv[2];
  if (!dir) throw new Error("usage: process-scenarios.ts <empty folder>");
  console.log(JSON.stringify(await runScenarios(dir, false)));
}
