/**
 * The three backends against real processes and real HTTP: `command` with /bin/sh, `claude_cli`
 * with tests/fixtures/fake-claude (the observed CLI shapes), `anthropic_api` with the fake
 * Messages API. Nothing of ours is mocked.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { buildClaudeArgv } from "../../src/backends/claude-cli.ts";
import { createBackend } from "../../src/backends/index.ts";
import type { BackendContext, ExecutionRequest, ExecutionResult } from "../../src/backends/types.ts";
import { BackendSchema, type BackendConfig, type ClaudeCliConfig } from "../../src/config/schema.ts";
import { classify } from "../../src/engine/classify.ts";
import { runProcess } from "../../src/runtime/process.ts";
import { type FakeAnthropic, ok, overloaded, rateLimited, serverError, spendLimited, startFakeAnthropic, unauthorized } from "../fixtures/fake-anthropic.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const FIXTURES = join(ROOT, "tests", "fixtures");
const FAKE_CLAUDE = join(FIXTURES, "fake-claude");
const BIN = join(ROOT, "node_modules", ".bin");

let tmp = "";
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "mozart-backends-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let dirCount = 0;
function freshDir(): string {
  const dir = join(tmp, `d${dirCount++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** fake-claude needs `bun` on PATH; the root check is pinned so tests behave the same as root or not. */
function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}`, FAKE_CLAUDE_PRETEND_ROOT: "0", IS_SANDBOX: undefined, CLAUDE_CODE_MAX_RETRIES: undefined, ...extra };
}
function ctx(env: Record<string, string | undefined> = {}, more: Partial<BackendContext> = {}): BackendContext {
  return { jobDir: FIXTURES, workspace: tmp, env: baseEnv(env), killGraceMs: 1000, ...more };
}
function config(input: Record<string, unknown>): BackendConfig {
  return BackendSchema.parse(input);
}
function claudeConfig(input: Record<string, unknown>): ClaudeCliConfig {
  return BackendSchema.parse({ ...input, type: "claude_cli" }) as ClaudeCliConfig;
}
function request(fields: Partial<ExecutionRequest> = {}): ExecutionRequest {
  const cwd = fields.cwd ?? freshDir();
  return {
    prompt: "Summarise items 1-10.",
    batch: { batch_num: 2, total_batches: 5, start_item: 11, end_item: 20 },
    attempt: 1,
    job_name: "demo-job",
    workspace: cwd,
    cwd,
    timeoutMs: 20_000,
    ...fields,
  };
}
const never = () => new AbortController().signal;
const decide = (r: ExecutionResult, now = Date.now()) => classify(r, { now, waitMinutes: 60, extraPatterns: [], timeZone: "UTC" });

/** Alive and not a zombie (PID 1 in containers may never reap, and kill(pid, 0) succeeds on zombies). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    // no /proc entry (or no /proc at all): ask the kernel
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(25);
  }
}

describe("runProcess", () => {
  test("output streams through onOutput before the process ends", async () => {
    const seen: Array<{ chunk: string; at: number }> = [];
    const started = Date.now();
    const r = await runProcess({ shell: "echo first; sleep 0.6; echo second", cwd: tmp, env: baseEnv(), onOutput: (_s, chunk) => seen.push({ chunk, at: Date.now() - started }) });
    expect(r.exit_code).toBe(0);
    const first = seen.find((s) => s.chunk.includes("first"));
    expect(first).toBeDefined();
    expect(first!.at).toBeLessThan(r.duration_ms - 300);
  });

  test("50 MB of output is captured bounded (head and tail kept, the cut noted)", async () => {
    let streamed = 0;
    const r = await runProcess({
      shell: "printf START; head -c 50000000 /dev/zero | tr '\\0' x; printf END",
      cwd: tmp,
      env: baseEnv(),
      onOutput: (_s, c) => (streamed += c.length),
    });
    expect(r.exit_code).toBe(0);
    expect(streamed).toBe(50_000_008);
    expect(r.stdout.length).toBeLessThan(400 * 1024);
    expect(r.stdout.startsWith("STARTxxx")).toBe(true);
    expect(r.stdout.endsWith("xxxEND")).toBe(true);
    expect(r.stdout).toContain("characters omitted");
    expect(r.omitted.stdout).toBe(50_000_008 - 64 * 1024 - 256 * 1024);
  });

  test("the child's environment is exactly the one given (variables can be removed)", async () => {
    process.env.MOZART_TEST_LEAK = "leaked";
    try {
      const r = await runProcess({ shell: 'echo "[${MOZART_TEST_LEAK-unset}]"', cwd: tmp, env: { PATH: process.env.PATH } });
      expect(r.stdout.trim()).toBe("[unset]");
    } finally {
      delete process.env.MOZART_TEST_LEAK;
    }
  });

  test("a missing executable and a missing cwd are different spawn errors", async () => {
    const exe = await runProcess({ argv: [join(tmp, "no-such-program")], cwd: tmp, env: baseEnv() });
    expect(exe.spawn_error?.kind).toBe("executable_not_found");
    expect(exe.spawn_error?.message).toContain("no-such-program");
    const plain = join(tmp, "not-executable.sh");
    writeFileSync(plain, "#!/bin/sh\necho hi\n", { mode: 0o644 });
    const noX = await runProcess({ argv: [plain], cwd: tmp, env: baseEnv() });
    expect(noX.spawn_error?.kind).toBe("not_executable");
    const dir = await runProcess({ argv: ["/bin/true"], cwd: join(tmp, "no-such-dir"), env: baseEnv() });
    expect(dir.spawn_error?.kind).toBe("working_directory_missing");
    expect(dir.spawn_error?.message).toContain("no-such-dir");
  });
});

describe("command backend", () => {
  const cmd = (command: string, more: Record<string, unknown> = {}) => createBackend(config({ type: "command", command, ...more }), ctx());

  test("a 1 MB prompt arrives intact on stdin", async () => {
    const prompt = `${"0123456789abcdef".repeat(65_536)}\nend`;
    const req = request({ prompt });
    const r = await cmd("unused").execute({ ...req, command: 'cat > "$MOZART_WORKSPACE/got.txt"' }, never());
    expect(r.exit_code).toBe(0);
    const got = readFileSync(join(req.workspace, "got.txt"), "utf8");
    expect(got.length).toBe(prompt.length);
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(prompt).digest("hex"));
  });

  test("MOZART_* variables, backend.env and the inherited environment are all present", async () => {
    const backend = createBackend(config({ type: "command", command: "x", env: { TEST_FROM_BACKEND: "b" } }), ctx({ TEST_INHERITED: "i" }));
    const req = request();
    const r = await backend.execute({ ...req, command: "env | grep -E '^(MOZART_|TEST_)' | sort" }, never());
    expect(r.exit_code).toBe(0);
    const vars = Object.fromEntries(r.stdout.trim().split("\n").map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]));
    expect(vars).toEqual({
      MOZART_ATTEMPT: "1",
      MOZART_BATCH_NUM: "2",
      MOZART_END_ITEM: "20",
      MOZART_JOB_NAME: "demo-job",
      MOZART_START_ITEM: "11",
      MOZART_TOTAL_BATCHES: "5",
      MOZART_WORKSPACE: req.workspace,
      TEST_FROM_BACKEND: "b",
      TEST_INHERITED: "i",
    });
  });

  test("exit codes and stderr come back as they are; the request's expanded command wins", async () => {
    const r = await cmd("exit 0").execute(request({ command: "echo oops >&2; exit 3" }), never());
    expect(r.exit_code).toBe(3);
    expect(r.stderr).toBe("oops\n");
    expect(r.argv).toEqual(["/bin/sh", "-c", "echo oops >&2; exit 3"]);
    expect(decide(r)).toMatchObject({ kind: "retry", category: "transient" });
  });

  test("backend.command is used when the request carries none", async () => {
    const r = await cmd("echo from-config").execute(request(), never());
    expect(r.stdout).toBe("from-config\n");
  });

  test("an empty command and a missing cwd are setup errors", async () => {
    const empty = await createBackend(config({ type: "command" }), ctx()).execute(request(), never());
    expect(empty.setup_error).toMatchObject({ kind: "invalid_config", message: "backend.command is empty" });
    const missing = join(tmp, "not-there");
    const r = await cmd("true").execute(request({ cwd: missing }), never());
    expect(r.setup_error?.kind).toBe("working_directory_missing");
    expect(r.setup_error?.message).toContain(missing);
    expect(r.setup_error?.hint).toContain("working_directory");
    expect(decide(r)).toMatchObject({ kind: "fail_job", category: "config" });
  });

  test("a timeout kills the whole group, grandchildren that ignore SIGTERM included", async () => {
    const pidFile = join(tmp, "cmd-grandchild.pid");
    const backend = createBackend(config({ type: "command" }), ctx({}, { killGraceMs: 400 }));
    const started = Date.now();
    const r = await backend.execute(request({ timeoutMs: 500, command: `(trap '' TERM; exec sleep 1000) & echo $! > ${pidFile}; wait` }), never());
    expect(r.timed_out).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000); // not the sleep's 1000 s
    const pid = Number(readFileSync(pidFile, "utf8"));
    await waitFor(() => !alive(pid), 2000);
    expect(alive(pid)).toBe(false);
    expect(decide(r)).toMatchObject({ kind: "retry", category: "timeout" });
  });

  test("a child that exits but leaves a grandchild holding stdout does not hang the attempt", async () => {
    const pidFile = join(tmp, "cmd-linger.pid");
    const backend = createBackend(config({ type: "command" }), ctx({}, { killGraceMs: 300 }));
    const r = await backend.execute(request({ command: `sleep 1000 & echo $! > ${pidFile}; echo done` }), never());
    expect(r.exit_code).toBe(0);
    expect(r.stdout).toBe("done\n");
    expect(r.duration_ms).toBeLessThan(10_000); // not the grandchild's 1000 s
    const pid = Number(readFileSync(pidFile, "utf8"));
    await waitFor(() => !alive(pid), 2000);
  });

  test("aborting the signal interrupts the attempt", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    const started = Date.now();
    const r = await cmd("sleep 30").execute(request(), ac.signal);
    expect(r.interrupted).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000); // not the 30 s sleep
    expect(decide(r)).toEqual({ kind: "interrupted" });
  });

  test("describe() shows the command, MOZART_* values and hides secret-looking backend.env values", () => {
    const inv = createBackend(config({ type: "command", command: "x", env: { API_TOKEN: "s3cret", REGION: "eu" } }), ctx()).describe(request({ command: "run.sh 2" }));
    expect(inv.argv).toEqual(["/bin/sh", "-c", "run.sh 2"]);
    expect(inv.env).toMatchObject({ API_TOKEN: "***", REGION: "eu", MOZART_BATCH_NUM: "2" });
    expect(JSON.stringify(inv)).not.toContain("s3cret");
  });
});

describe("claude_cli backend against fake-claude", () => {
  const claude = (fields: Record<string, unknown> = {}, env: Record<string, string | undefined> = {}) =>
    createBackend(config({ type: "claude_cli", cli_path: FAKE_CLAUDE, ...fields }), ctx(env));
  const scenario = (name: string, fields: Record<string, unknown> = {}, env: Record<string, string | undefined> = {}) =>
    claude(fields, { FAKE_CLAUDE_SCENARIO: name, ...env }).execute(request(), never());

  test("buildClaudeArgv puts every option in place, prompt never in argv", () => {
    expect(
      buildClaudeArgv(
        claudeConfig({ cli_path: "/opt/claude", output_format: "stream-json", skip_permissions: true, model: "opus", max_turns: 12, allowed_tools: ["Read", "Edit", "Bash(git diff *)"], append_system_prompt: "Be brief.", extra_args: ["--bare"] }),
      ),
    ).toEqual(["/opt/claude", "-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions", "--model", "opus", "--max-turns", "12", "--allowedTools", "Read,Edit,Bash(git diff *)", "--append-system-prompt", "Be brief.", "--bare"]);
    // stream-json by default, read live; it needs --verbose.
    expect(buildClaudeArgv(claudeConfig({}))).toEqual(["claude", "-p", "--output-format", "stream-json", "--verbose"]);
    expect(buildClaudeArgv(claudeConfig({ output_format: "json" }), 0.123456)).toEqual(["claude", "-p", "--output-format", "json", "--max-budget-usd", "0.1234"]);
  });

  test("ok: the json result is parsed into facts, text and cost; argv, env and stdin as specified", async () => {
    const log = join(tmp, "claude-ok.log");
    const backend = claude(
      { output_format: "json", model: "claude-opus-4-8", max_turns: 3, allowed_tools: ["Read", "Edit"], append_system_prompt: "sys", extra_args: ["--strict-mcp-config"], claude_max_retries: 0 },
      { FAKE_CLAUDE_LOG: log },
    );
    const req = request();
    const r = await backend.execute(req, never());
    expect(r.exit_code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.text).toBe("fake-ok");
    expect(r.claude).toMatchObject({ is_error: false, subtype: "success", api_error_status: null, result: "fake-ok", num_turns: 1, terminal_reason: "completed", permission_denials: [] });
    expect(r.claude?.session_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.claude?.usage?.input_tokens).toBeGreaterThan(0);
    expect(r.cost_usd).toBeGreaterThan(0);
    expect(r.cost_usd).toBe(r.claude?.total_cost_usd as number);
    const call = JSON.parse(readFileSync(log, "utf8").trim());
    expect(call.argv).toEqual(["-p", "--output-format", "json", "--model", "claude-opus-4-8", "--max-turns", "3", "--allowedTools", "Read,Edit", "--append-system-prompt", "sys", "--strict-mcp-config"]);
    expect(call.cwd).toBe(req.cwd);
    expect(call.env.CLAUDE_CODE_MAX_RETRIES).toBe("0");
    expect(call.prompt_length).toBe(req.prompt.length);
    expect(decide(r)).toEqual({ kind: "success" });
  });

  test("a 1 MB prompt goes through stdin and a 1 MB json result is still parsed", async () => {
    const prompt = "p".repeat(1024 * 1024);
    const r = await claude({}, { FAKE_CLAUDE_SCENARIO: "echo" }).execute(request({ prompt }), never());
    expect(r.exit_code).toBe(0);
    expect(r.text?.length).toBe(prompt.length);
    expect(r.stdout.length).toBeLessThan(400 * 1024); // the stored copy stays bounded
    expect(r.argv.join(" ").length).toBeLessThan(1000);
  });

  const rows: Array<[string, (r: ExecutionResult) => void]> = [
    ["limit-reset", (r) => {
      expect(r.claude).toMatchObject({ is_error: true, subtype: "success", api_error_status: 429 });
      expect(r.claude?.result).toMatch(/^You've hit your limit · resets \d{1,2}(:\d\d)?[ap]m \(UTC\)$/);
      const now = Date.now();
      const d = decide(r, now);
      expect(d).toMatchObject({ kind: "hold", source: "reset_time" });
      if (d.kind === "hold") {
        expect(d.until).toBeGreaterThan(now + 3600_000 - 60_000);
        expect(d.until).toBeLessThanOrEqual(now + 3600_000 + 60_000);
      }
    }],
    ["limit-no-reset", (r) => expect(decide(r)).toMatchObject({ kind: "hold", source: "default_wait" })],
    ["usage-limit-epoch", (r) => {
      expect(r.claude?.api_error_status).toBeNull();
      const epoch = Number(/\|(\d+)/.exec(r.claude?.result ?? "")?.[1]);
      expect(decide(r)).toMatchObject({ kind: "hold", until: epoch * 1000, source: "reset_time" });
    }],
    ["rate-limit", (r) => expect(decide(r)).toMatchObject({ kind: "hold", source: "backoff" })],
    ["overloaded", (r) => expect(decide(r)).toMatchObject({ kind: "retry", category: "overloaded" })],
    ["server-error", (r) => expect(decide(r)).toMatchObject({ kind: "retry", category: "server" })],
    ["auth", (r) => {
      expect(r.claude?.result).toBe("Invalid API key · Fix external API key");
      expect(decide(r)).toMatchObject({ kind: "fail_job", category: "auth" });
    }],
    ["spend-cap", (r) => expect(decide(r)).toMatchObject({ kind: "fail_job", category: "spend_cap" })],
    ["throttle", (r) => expect(decide(r)).toMatchObject({ kind: "retry", category: "overloaded" })],
    ["api-timeout", (r) => expect(decide(r)).toMatchObject({ kind: "retry", category: "timeout" })],
    ["server-down", (r) => expect(decide(r)).toMatchObject({ kind: "retry", category: "network" })],
    ["prompt-too-long", (r) => expect(decide(r)).toMatchObject({ kind: "fail_job", category: "prompt" })],
    ["max-turns", (r) => {
      expect(r.claude).toMatchObject({ is_error: true, subtype: "error_max_turns", terminal_reason: "max_turns", errors: ["Reached maximum number of turns (10)"] });
      expect(decide(r)).toMatchObject({ kind: "retry", category: "transient" });
    }],
  ];
  for (const [name, verify] of rows) {
    test(`scenario ${name}: exit 1, empty stderr, facts parsed`, async () => {
      const r = await scenario(name, { output_format: "json" });
      expect(r.exit_code).toBe(1);
      expect(r.stderr).toBe("");
      expect(r.claude?.is_error).toBe(true);
      expect(r.text).toBeUndefined();
      verify(r);
    });
  }

  test("scenario crash: killed by a signal → retry crash", async () => {
    const r = await scenario("crash");
    expect(r.signal === "SIGSEGV" || r.exit_code === 139).toBe(true);
    expect(r.claude).toBeUndefined();
    expect(decide(r)).toMatchObject({ kind: "retry", category: "crash" });
  });

  test("scenario sequence: one item per call, the last repeats", async () => {
    const state = freshDir();
    const backend = claude({}, { FAKE_CLAUDE_SCENARIO: "overloaded,ok", FAKE_CLAUDE_STATE_DIR: state });
    const kinds: string[] = [];
    for (let i = 0; i < 3; i++) kinds.push(decide(await backend.execute(request(), never())).kind);
    expect(kinds).toEqual(["retry", "success", "success"]);
  });

  test("write-files with skip_permissions writes the files named in the prompt", async () => {
    const req = request({ prompt: "Do it.\nWRITE: out/a.txt :: alpha\nWRITE: b.txt\n" });
    const r = await claude({ skip_permissions: true }, { FAKE_CLAUDE_SCENARIO: "write-files" }).execute(req, never());
    expect(r.exit_code).toBe(0);
    expect(readFileSync(join(req.cwd, "out/a.txt"), "utf8")).toBe("alpha");
    expect(existsSync(join(req.cwd, "b.txt"))).toBe(true);
    expect(r.claude).toMatchObject({ num_turns: 2, permission_denials: [] });
  });

  test("partial writes only the first file", async () => {
    const req = request({ prompt: "WRITE: one.txt\nWRITE: two.txt\n" });
    const r = await claude({ skip_permissions: true }, { FAKE_CLAUDE_SCENARIO: "partial" }).execute(req, never());
    expect(r.exit_code).toBe(0);
    expect(existsSync(join(req.cwd, "one.txt"))).toBe(true);
    expect(existsSync(join(req.cwd, "two.txt"))).toBe(false);
  });

  test("without skip_permissions a write is denied: exit 0, no file, permission_denials parsed", async () => {
    const req = request({ prompt: "WRITE: nope.txt :: x\n" });
    const r = await claude({}, { FAKE_CLAUDE_SCENARIO: "write-files" }).execute(req, never());
    expect(r.exit_code).toBe(0);
    expect(existsSync(join(req.cwd, "nope.txt"))).toBe(false);
    expect(r.claude?.permission_denials).toEqual([{ tool_name: "Write", tool_use_id: expect.stringMatching(/^toolu_/), tool_input: { file_path: join(req.cwd, "nope.txt"), content: "x" } }]);
    expect(decide(r)).toEqual({ kind: "success" });
  });

  test("stream-json: --verbose is added, the last result line is parsed", async () => {
    const log = join(tmp, "claude-stream.log");
    const r = await claude({ output_format: "stream-json" }, { FAKE_CLAUDE_LOG: log }).execute(request(), never());
    expect(r.exit_code).toBe(0);
    expect(r.stdout.trim().split("\n").map((l) => JSON.parse(l).type)).toEqual(["system", "assistant", "result"]);
    expect(r.text).toBe("fake-ok");
    expect(r.claude?.is_error).toBe(false);
    expect(JSON.parse(readFileSync(log, "utf8")).argv).toContain("--verbose");
  });

  test("stream-json: a rejected rate_limit_event gives the exact reset time", async () => {
    const r = await scenario("limit-reset", { output_format: "stream-json" }, { FAKE_CLAUDE_RESET_SECONDS: "600" });
    const event = r.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((e) => e.type === "rate_limit_event");
    expect(r.claude?.rate_limit_resets_at).toBe(event.rate_limit_info.resetsAt * 1000);
    expect(decide(r)).toMatchObject({ kind: "hold", until: event.rate_limit_info.resetsAt * 1000, source: "reset_time" });
  });

  test("stream-json without --verbose fails like the real CLI (passed via extra_args on a json backend would not)", async () => {
    const r = await claude({ output_format: "text", extra_args: ["--output-format", "stream-json"] }).execute(request(), never());
    expect(r.exit_code).toBe(1);
    expect(r.stderr).toContain("requires --verbose");
    expect(decide(r)).toMatchObject({ kind: "fail_job", category: "config" });
  });

  test("text format: the answer (or the error line) is on stdout", async () => {
    const good = await claude({ output_format: "text" }).execute(request(), never());
    expect(good).toMatchObject({ exit_code: 0, text: "fake-ok", stdout: "fake-ok\n" });
    expect(good.claude).toBeUndefined();
    const bad = await scenario("auth", { output_format: "text" });
    expect(bad).toMatchObject({ exit_code: 1, stdout: "Invalid API key · Fix external API key\n", stderr: "" });
    expect(decide(bad)).toMatchObject({ kind: "fail_job", category: "auth" });
  });

  test("as root, --dangerously-skip-permissions is refused → setup_error with the IS_SANDBOX hint", async () => {
    const r = await claude({ skip_permissions: true }, { FAKE_CLAUDE_PRETEND_ROOT: "1" }).execute(request(), never());
    expect(r.exit_code).toBe(1);
    expect(r.setup_error?.kind).toBe("invalid_config");
    expect(r.setup_error?.message).toContain("root/sudo");
    expect(r.setup_error?.hint).toContain("IS_SANDBOX=1");
    expect(r.setup_error?.hint).toContain("non-root");
    expect(r.setup_error?.hint).toContain("skip_permissions: false");
    expect(decide(r)).toMatchObject({ kind: "fail_job", category: "config" });
  });

  test("IS_SANDBOX=1 in backend.env lets root skip permissions", async () => {
    const log = join(tmp, "claude-sandbox.log");
    const r = await claude({ skip_permissions: true, env: { IS_SANDBOX: "1" } }, { FAKE_CLAUDE_PRETEND_ROOT: "1", FAKE_CLAUDE_LOG: log }).execute(request(), never());
    expect(r.exit_code).toBe(0);
    expect(r.setup_error).toBeUndefined();
    expect(JSON.parse(readFileSync(log, "utf8")).env.IS_SANDBOX).toBe("1");
  });

  test("claude_max_retries sets CLAUDE_CODE_MAX_RETRIES (overriding the environment)", async () => {
    const log = join(tmp, "claude-retries.log");
    await claude({ claude_max_retries: 2 }, { FAKE_CLAUDE_LOG: log, CLAUDE_CODE_MAX_RETRIES: "10" }).execute(request(), never());
    expect(JSON.parse(readFileSync(log, "utf8")).env.CLAUDE_CODE_MAX_RETRIES).toBe("2");
    const inv = claude({ claude_max_retries: 2 }).describe(request());
    expect(inv.env.CLAUDE_CODE_MAX_RETRIES).toBe("2");
    expect(inv.argv[0]).toBe(FAKE_CLAUDE);
  });

  test("a missing executable is a setup error naming it and the fix", async () => {
    const byPath = await createBackend(config({ type: "claude_cli", cli_path: join(tmp, "nowhere", "claude") }), ctx()).execute(request(), never());
    expect(byPath.setup_error?.kind).toBe("executable_not_found");
    expect(byPath.setup_error?.message).toContain(join(tmp, "nowhere", "claude"));
    expect(byPath.setup_error?.hint).toContain("backend.cli_path");
    const onPath = await createBackend(config({ type: "claude_cli" }), ctx({ PATH: join(tmp, "empty-bin") })).execute(request(), never());
    expect(onPath.setup_error?.message).toContain("`claude` executable was not found on PATH");
    expect(onPath.setup_error?.hint).toContain("npm install -g @anthropic-ai/claude-code");
    expect(decide(onPath)).toMatchObject({ kind: "fail_job", category: "config" });
  });

  test("a relative cli_path resolves against the job file's folder", async () => {
    const r = await createBackend(config({ type: "claude_cli", cli_path: "./fake-claude" }), ctx()).execute(request(), never());
    expect(r.exit_code).toBe(0);
    expect(r.argv[0]).toBe(FAKE_CLAUDE);
  });

  test("a missing working directory is a setup error, not 'claude not found'", async () => {
    const missing = join(tmp, "gone");
    const r = await claude().execute(request({ cwd: missing }), never());
    expect(r.setup_error?.kind).toBe("working_directory_missing");
    expect(r.setup_error?.message).toContain(missing);
  });

  test("timeout kills the group and no grandchild survives", async () => {
    const pidFile = join(tmp, "grandchild.pid");
    const r = await claude({}, { FAKE_CLAUDE_SCENARIO: "grandchild", FAKE_CLAUDE_GRANDCHILD_PID_FILE: pidFile }).execute(request({ timeoutMs: 1500 }), never());
    expect(r.timed_out).toBe(true);
    expect(r.duration_ms).toBeLessThan(10_000); // the 1.5 s timeout and the grace, not a hang
    const pid = Number(readFileSync(pidFile, "utf8"));
    expect(pid).toBeGreaterThan(0);
    await waitFor(() => !alive(pid), 3000);
    expect(alive(pid)).toBe(false);
    expect(decide(r)).toMatchObject({ kind: "retry", category: "timeout" });
  });

  test("abort via the AbortSignal ends a hanging claude at once", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 700);
    const r = await claude({}, { FAKE_CLAUDE_SCENARIO: "hang" }).execute(request(), ac.signal);
    expect(r.interrupted).toBe(true);
    expect(r.duration_ms).toBeLessThan(10_000); // not a hang
    expect(decide(r)).toEqual({ kind: "interrupted" });
  });

  test("slow:N beyond the timeout is timed out; within it, it succeeds", async () => {
    const slow = claude({}, { FAKE_CLAUDE_SCENARIO: "slow:5" });
    const late = await slow.execute(request({ timeoutMs: 800 }), never());
    expect(late).toMatchObject({ timed_out: true, exit_code: null, signal: "SIGINT" }); // claude is stopped with SIGINT first
    const quick = await claude({}, { FAKE_CLAUDE_SCENARIO: "slow:0.3" }).execute(request(), never());
    expect(quick).toMatchObject({ exit_code: 0, text: "fake-ok" });
  });
});

describe("anthropic_api backend against the fake Messages API", () => {
  let api: FakeAnthropic | undefined;
  const start = async (...script: Parameters<typeof startFakeAnthropic>) => {
    await api?.close();
    api = await startFakeAnthropic(...script);
    return api;
  };
  afterAll(() => api?.close());
  const backend = (url: string, fields: Record<string, unknown> = {}, env: Record<string, string | undefined> = {}) =>
    createBackend(config({ type: "anthropic_api", ...fields }), ctx({ ANTHROPIC_BASE_URL: url, ANTHROPIC_API_KEY: "sk-test-123", ...env }));

  test("success: the answer is the attempt's output; one request with the prompt as the user message", async () => {
    const fake = await start([ok("Here is the summary.")]);
    const r = await backend(fake.url).execute(request({ prompt: "Summarise." }), never());
    expect(r).toMatchObject({ exit_code: 0, stdout: "Here is the summary.", text: "Here is the summary.", http: { status: 200 } });
    expect(r.cost_usd).toBeGreaterThan(0);
    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0]!;
    expect(sent.key).toBe("sk-test-123");
    expect(sent.body).toMatchObject({ model: "claude-sonnet-4-20250514", max_tokens: 8192, temperature: 0.7, messages: [{ role: "user", content: "Summarise." }] });
    expect(decide(r)).toEqual({ kind: "success" });
  });

  test("429 with retry-after: http facts, no SDK retry, hold for exactly that long", async () => {
    const fake = await start([rateLimited(2)]);
    const r = await backend(fake.url).execute(request(), never());
    expect(r.exit_code).toBe(1);
    expect(r.http).toMatchObject({ status: 429, retry_after_ms: 2000, error_type: "rate_limit_error" });
    expect(r.http?.request_id).toMatch(/^req_/);
    expect(fake.requests).toHaveLength(1);
    const now = Date.now();
    expect(decide(r, now)).toMatchObject({ kind: "hold", until: now + 2000, source: "retry_after" });
  });

  test("retry-after-ms wins over retry-after", async () => {
    const fake = await start([{ kind: "error", status: 529, type: "overloaded_error", message: "Overloaded", headers: { "retry-after": "5", "retry-after-ms": "300" } }]);
    const r = await backend(fake.url).execute(request(), never());
    expect(r.http).toMatchObject({ status: 529, retry_after_ms: 300, error_type: "overloaded_error" });
    expect(decide(r)).toMatchObject({ kind: "retry", category: "overloaded", min_delay_ms: 300 });
  });

  test("401 → fail the job (auth)", async () => {
    const fake = await start([unauthorized()]);
    const r = await backend(fake.url).execute(request(), never());
    expect(r.http).toMatchObject({ status: 401, error_type: "authentication_error" });
    expect(r.stderr).toContain("invalid x-api-key");
    expect(decide(r)).toMatchObject({ kind: "fail_job", category: "auth" });
  });

  test("529 → retry overloaded; 500 → retry server", async () => {
    let fake = await start([overloaded()]);
    let r = await backend(fake.url).execute(request(), never());
    expect(r.http?.status).toBe(529);
    expect(decide(r)).toMatchObject({ kind: "retry", category: "overloaded" });
    fake = await start([serverError()]);
    r = await backend(fake.url).execute(request(), never());
    expect(r.http?.status).toBe(500);
    expect(fake.requests).toHaveLength(1);
    expect(decide(r)).toMatchObject({ kind: "retry", category: "server" });
  });

  test("a spend-limit 429 fails the job instead of holding", async () => {
    const fake = await start([spendLimited()]);
    const r = await backend(fake.url).execute(request(), never());
    expect(r.http).toMatchObject({ status: 429, error_code: "enforced_spend_limit_reached", should_retry: false });
    expect(decide(r)).toMatchObject({ kind: "fail_job", category: "spend_cap" });
  });

  test("a missing key is a setup error naming the variable", async () => {
    const r = await createBackend(config({ type: "anthropic_api", api_key_env: "MY_TEAM_KEY" }), ctx({ MY_TEAM_KEY: undefined })).execute(request(), never());
    expect(r.setup_error?.kind).toBe("missing_api_key");
    expect(r.setup_error?.message).toContain("MY_TEAM_KEY");
    expect(r.setup_error?.hint).toContain("MY_TEAM_KEY");
    expect(decide(r)).toMatchObject({ kind: "fail_job", category: "config" });
  });

  test("connection refused (a closed port) → retry network", async () => {
    const port = await new Promise<number>((res) => {
      const srv = createServer();
      srv.listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => res(p));
      });
    });
    const r = await backend(`http://127.0.0.1:${port}`).execute(request(), never());
    expect(r.http?.error_type).toBe("connection");
    expect(r.stderr).toContain(`127.0.0.1:${port}`);
    expect(decide(r)).toMatchObject({ kind: "retry", category: "network" });
  });

  test("a request that never answers times out; an abort interrupts", async () => {
    const fake = await start([{ kind: "hang" }]);
    const timedOut = await backend(fake.url).execute(request({ timeoutMs: 400 }), never());
    expect(timedOut.timed_out).toBe(true);
    expect(decide(timedOut)).toMatchObject({ kind: "retry", category: "timeout" });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const aborted = await backend(fake.url).execute(request(), ac.signal);
    expect(aborted.interrupted).toBe(true);
    expect(decide(aborted)).toEqual({ kind: "interrupted" });
  });

  test("the fake accepts x-api-key as well as Bearer", async () => {
    const fake = await start([ok("hi")]);
    const res = await fetch(`${fake.url}/v1/messages`, { method: "POST", headers: { "x-api-key": "k", "content-type": "application/json" }, body: JSON.stringify({ model: "m", max_tokens: 5, messages: [{ role: "user", content: "x" }] }) });
    expect(res.status).toBe(200);
    expect(fake.requests[0]?.auth).toBe("x-api-key");
    const none = await fetch(`${fake.url}/v1/messages`, { method: "POST", body: "{}" });
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ type: "error", error: { type: "authentication_error" } });
  });

  test("describe() never shows the key", () => {
    const inv = backend("http://127.0.0.1:1").describe(request());
    expect(inv.argv).toEqual(["POST", "http://127.0.0.1:1/v1/messages", "model=claude-sonnet-4-20250514", "max_tokens=8192"]);
    expect(JSON.stringify(inv)).not.toContain("sk-test-123");
  });
});

test("the registry builds each backend by type", () => {
  for (const type of ["claude_cli", "anthropic_api", "command"] as const) expect(createBackend(config({ type }), ctx()).name).toBe(type);
});
