/**
 * The engine driving the fake `claude` executable (real process, real output shapes from
 * claude-cli-observed.md): limits become holds, auth fails fast, cost and denials are recorded.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { FIXTURES } from "../helpers.ts";
import { sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";

const FAKE = join(FIXTURES, "fake-claude");
const claudeBackend = (extra: Record<string, unknown> = {}) => ({ type: "claude_cli", cli_path: FAKE, skip_permissions: true, timeout_seconds: 30, ...extra });
const writePrompt = { template: "Do batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}.md :: done {{ batch_num }}\n" };
const validations = [{ type: "file_exists", path: "out/b{batch_num}.md" }];
const env = (scenario: string, extra: Record<string, string> = {}) => ({ FAKE_CLAUDE_SCENARIO: scenario, FAKE_CLAUDE_PRETEND_ROOT: "0", ...extra });
const calls = (box: Sandbox) => box.lines("claude-calls.jsonl").map((l) => JSON.parse(l) as { argv: string[]; env: Record<string, string | null> });

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`engine with claude_cli (${kind} state)`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("a job completes; cost and the invocation are recorded", () => {
      box = sandbox(kind);
      const job = box.job({ backend: claudeBackend({ claude_max_retries: 0 }), prompt: writePrompt, validations });
      const r = box.run(["run", job], env("write-files"));
      expect(r.stderr).not.toContain("error:");
      expect(r.code).toBe(0);
      const s = box.status("test-job");
      expect(s.progress.completed).toBe(3);
      expect(s.cost_usd).toBeGreaterThan(0);
      const c = calls(box);
      expect(c).toHaveLength(3);
      expect(c[0]!.argv).toEqual(expect.arrayContaining(["-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"]));
      expect(c[0]!.env.CLAUDE_CODE_MAX_RETRIES).toBe("0");
    });

    test("claude's total_cost_usd goes to the ledger per attempt; budget.max_cost_usd_per_batch becomes --max-budget-usd", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 2 }, backend: claudeBackend(), prompt: writePrompt, validations, budget: { max_cost_usd_per_batch: 0.5 } });
      const r = box.run(["run", job], env("write-files"));
      expect(r.code).toBe(0);
      const c = calls(box);
      expect(c[0]!.argv).toEqual(expect.arrayContaining(["--max-budget-usd", "0.5"]));
      const s = box.status("test-job") as unknown as { cost_usd: number; tokens: { input: number; output: number }; batches: Array<{ cost_usd: number }> };
      const attempts = [1, 2].map((n) => JSON.parse(box.run(["status", "test-job", "--batch", String(n), "--json"]).stdout).attempts[0] as { cost_usd: number; tokens: { output: number } });
      expect(attempts.every((a) => a.cost_usd > 0 && a.tokens.output > 0)).toBe(true);
      expect(s.cost_usd).toBeCloseTo(attempts[0]!.cost_usd + attempts[1]!.cost_usd, 8);
      expect(s.batches.map((b) => b.cost_usd)).toEqual(attempts.map((a) => a.cost_usd));
      expect(s.tokens.output).toBe(attempts[0]!.tokens.output + attempts[1]!.tokens.output);
    });

    test("a limit with a reset time 3 s ahead holds about 3 s, then continues", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend(), prompt: writePrompt, validations, rate_limit: { wait_minutes: 60 } });
      const started = Date.now();
      const r = box.run(["run", job], env("usage-limit-epoch,write-files", { FAKE_CLAUDE_RESET_SECONDS: "3" }));
      const took = Date.now() - started;
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("rate limit on batch 1: holding all work until");
      expect(took).toBeGreaterThan(1500);
      expect(took).toBeLessThan(20_000); // not wait_minutes (60 min)
      const s = box.status("test-job");
      expect(s.rate_limit_waits).toBe(1);
      expect(s.batches[0]).toMatchObject({ status: "completed", attempts: 2 });
    });

    test("Ctrl+C interrupts a hold at once; the hold is persisted and a restarted run keeps waiting", async () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend(), prompt: writePrompt, validations });
      const p = box.start(["run", job], env("usage-limit-epoch", { FAKE_CLAUDE_RESET_SECONDS: "10" }));
      for (let i = 0; i < 400 && !p.output().stderr.includes("holding all work"); i++) await Bun.sleep(25);
      const holdSeen = Date.now();
      p.child.kill("SIGINT");
      const r = await p.done;
      expect(r.code).toBe(130);
      expect(Date.now() - holdSeen).toBeLessThan(7000); // not the rest of the 10 s hold
      const s = box.status("test-job") as unknown as { status: string; hold: { until: string } | null };
      expect(s.status).toBe("paused");
      const until = Date.parse(s.hold!.until);
      expect(until).toBeGreaterThan(Date.now());
      // The restarted run waits for the persisted hold before its first attempt.
      const again = box.run(["run", job], env("write-files"));
      expect(again.code).toBe(0);
      expect(Date.now()).toBeGreaterThanOrEqual(until);
      expect(calls(box)).toHaveLength(2);
    }, 40_000);

    test("a limit with no reset time holds for wait_minutes, then continues", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend(), prompt: writePrompt, validations, rate_limit: { wait_minutes: 0.03 } });
      const started = Date.now();
      const r = box.run(["run", job], env("limit-no-reset,write-files"));
      expect(r.code).toBe(0);
      expect(Date.now() - started).toBeGreaterThan(1500);
      expect(box.status("test-job").batches[0]).toMatchObject({ status: "completed", attempts: 2 });
    });

    test("holds are limited by max_waits per batch", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend(), prompt: writePrompt, validations, rate_limit: { wait_minutes: 0.005, max_waits: 1 } });
      const r = box.run(["run", job], env("limit-no-reset"));
      expect(r.code).toBe(1);
      expect(calls(box)).toHaveLength(2);
      expect(box.status("test-job").batches[0]!.error).toContain("still rate-limited after 1 holds");
    });

    test("auth failure fails fast with no retry and says what to do", () => {
      box = sandbox(kind);
      const job = box.job({ backend: claudeBackend(), prompt: writePrompt, validations, retry: { max_retries: 5, base_delay_seconds: 0.01, max_delay_seconds: 0.02 } });
      const r = box.run(["run", job], env("auth"));
      expect(r.code).toBe(1);
      expect(calls(box)).toHaveLength(1);
      const s = box.status("test-job");
      expect(s.status).toBe("failed");
      expect(s.batches[0]!.error_category).toBe("auth");
      expect(s.batches[0]!.error).toMatch(/Invalid API key/);
    });

    test("overload (529) backs off and retries; claude is found on PATH", () => {
      box = sandbox(kind);
      const { cli_path: _onPath, ...backend } = claudeBackend();
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend, prompt: writePrompt, validations });
      const r = box.run(["run", job], env("overloaded,write-files"));
      expect(r.code).toBe(0);
      expect(box.status("test-job").batches[0]).toMatchObject({ status: "completed", attempts: 2 });
    });

    test("a crash is retried; a missing claude is a clear, fatal, non-retried error", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend(), prompt: writePrompt, validations });
      expect(box.run(["run", job], env("crash,write-files")).code).toBe(0);
      const missing = box.job({ name: "no-claude", batch: { size: 1, total_items: 1 }, backend: claudeBackend({ cli_path: join(box.dir, "nope", "claude") }), prompt: writePrompt }, "missing.yaml");
      const r = box.run(["run", missing]);
      expect(r.code).toBe(1);
      const s = box.status("no-claude");
      expect(s.batches[0]!.attempts).toBe(1);
      expect(s.batches[0]!.error).toContain(join(box.dir, "nope", "claude"));
    });

    test("root refusal of --dangerously-skip-permissions is a config error with the fix", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend(), prompt: writePrompt, validations });
      const r = box.run(["run", job], { ...env("write-files"), FAKE_CLAUDE_PRETEND_ROOT: "1", IS_SANDBOX: "" });
      expect(r.code).toBe(1);
      const b = box.status("test-job").batches[0]!;
      expect(b.attempts).toBe(1); // not retried
      expect(b.error).toContain("IS_SANDBOX=1");
    });

    test("denied tool calls are recorded and shown", () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: claudeBackend({ skip_permissions: false }), prompt: writePrompt, validations, retry: { max_retries: 0 } });
      const r = box.run(["run", job], env("write-files"));
      expect(r.code).toBe(1);
      const s = box.status("test-job");
      expect(s.batches[0]!.permission_denials[0]).toContain("Write");
      expect(box.run(["status", "test-job"]).stdout).toContain("denied 1 tool call");
    });
  });
}
