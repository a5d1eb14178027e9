/**
 * claude_cli read live (stream-json, the default): decisions from the CLI's events while it
 * runs (auth stops at once, a 429's retry_delay_ms is the shared hold, a rejected
 * rate_limit_event holds until its reset, credits_required stops the job), and the session's
 * turns, tools and retries in the persisted event log.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StoredEvent } from "../../src/state/events.ts";
import { FIXTURES } from "../helpers.ts";
import { pidAlive, sandbox, type Sandbox } from "./engine-helpers.ts";

const FAKE = join(FIXTURES, "fake-claude");
/** Default settings: no output_format, no claude_max_retries. */
const backend = (extra: Record<string, unknown> = {}) => ({ type: "claude_cli", cli_path: FAKE, skip_permissions: true, timeout_seconds: 120, stop_grace_seconds: 2, ...extra });
const writePrompt = { template: "Do batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}.md :: done {{ batch_num }}\n" };
const validations = [{ type: "file_exists", path: "out/b{batch_num}.md" }];
const env = (scenario: string, extra: Record<string, string> = {}) => ({ FAKE_CLAUDE_SCENARIO: scenario, FAKE_CLAUDE_PRETEND_ROOT: "0", ...extra });
const calls = (box: Sandbox) => box.lines("claude-calls.jsonl").map((l) => JSON.parse(l) as { argv: string[]; env: Record<string, string>; pid: number; time: number; prompt?: string });
const events = (box: Sandbox) => box.run(["logs", "test-job", "--json"]).stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as StoredEvent);

describe("claude_cli read live", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("stream-json is the default; the session's turns and tools are in the event log and in logs", () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 1 }, backend: backend(), prompt: writePrompt, validations });
    const r = box.run(["run", job], env("write-files"));
    expect(r.code).toBe(0);
    const c = calls(box);
    expect(c[0]!.argv).toEqual(expect.arrayContaining(["--output-format", "stream-json", "--verbose"]));
    // The policy: a few seconds of the CLI's own retries, not its default 10.
    expect(c[0]!.env.CLAUDE_CODE_MAX_RETRIES).toBe("3");
    const activity = events(box).filter((e) => e.type === "activity") as Array<Extract<StoredEvent, { type: "activity" }>>;
    expect(activity.find((a) => a.session_id)?.model).toBe("claude-opus-4-8");
    expect(activity.find((a) => a.tool)).toMatchObject({ batch_num: 1, attempt: 1, turn: 1 });
    expect(activity.find((a) => a.tool)!.tool).toContain("Write");
    expect(activity.find((a) => a.tool)!.tool).toContain("out/b1.md");
    // In order: after the attempt's start, before its end.
    const all = events(box);
    const at = (t: string) => all.findIndex((e) => e.type === t);
    expect(at("attempt_start")).toBeLessThan(at("activity"));
    expect(all.findLastIndex((e) => e.type === "activity")).toBeLessThan(at("attempt_end"));
    expect(box.run(["logs", "test-job"]).stdout).toMatch(/batch 1 attempt 1: turn 1: Write .*out\/b1\.md/);
  });

  test("401: an api_retry announcing authentication_failed fails the job in under 5 s, one attempt, nothing left running", () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 2 }, backend: backend(), prompt: writePrompt, validations, retry: { max_retries: 5, base_delay_seconds: 0.01, max_delay_seconds: 0.02 } });
    const started = Date.now();
    const r = box.run(["run", job], env("retry-auth", { FAKE_CLAUDE_SIGNAL_LOG: join(box.dir, "signals.log") }));
    const took = Date.now() - started;
    expect(r.code).toBe(1);
    expect(took).toBeLessThan(5000);
    const c = calls(box);
    expect(c).toHaveLength(1);
    // Stopped by Mozart (SIGINT) at the first retry, not after the CLI's own retries ran out.
    expect(box.lines("signals.log")[0]).toMatch(/^SIGINT /);
    expect(pidAlive(c[0]!.pid)).toBe(false);
    const s = box.status("test-job");
    expect(s.status).toBe("failed");
    expect(s.batches[0]).toMatchObject({ attempts: 1, error_category: "auth" });
    expect(s.batches[0]!.error).toContain("authentication_failed");
    expect(s.batches[0]!.error).toContain("/login");
    expect(r.stderr).toContain("ANTHROPIC_API_KEY");
    // The retry the CLI announced is in the log too.
    expect(events(box).some((e) => e.type === "activity" && e.retry?.status === 401)).toBe(true);
  });

  test("429: the CLI's retry_delay_ms of 2000 is one shared hold of about 2 s across 4 workers, and the job completes", () => {
    box = sandbox("sqlite");
    const job = box.job({ concurrency: 4, batch: { size: 1, total_items: 4 }, backend: backend(), prompt: writePrompt, validations, rate_limit: { wait_minutes: 60 } });
    const started = Date.now();
    // The first call meets the 429; the others start meanwhile.
    const r = box.run(["run", job], env("retry-429:2000,write-files"));
    const took = Date.now() - started;
    expect(r.code).toBe(0);
    expect(took).toBeLessThan(30_000); // never wait_minutes (60 min)
    const holds = events(box).filter((e) => e.type === "rate_limit_hold") as Array<Extract<StoredEvent, { type: "rate_limit_hold" }>>;
    expect(holds).toHaveLength(1);
    const holdAt = Date.parse(events(box).find((e) => e.type === "rate_limit_hold")!.at);
    expect(holds[0]!.until - holdAt).toBeGreaterThan(1500);
    expect(holds[0]!.until - holdAt).toBeLessThan(3000);
    expect(holds[0]!.reason).toContain("API rate limit");
    // Nothing started inside the hold: the retry of the held batch came after it.
    const c = calls(box);
    expect(c).toHaveLength(5);
    expect(c[4]!.time).toBeGreaterThanOrEqual(holds[0]!.until - 50);
    const s = box.status("test-job");
    expect(s.progress.completed).toBe(4);
  }, 30_000);

  test("429 under claude_max_retries: 0 is a hold of seconds, not wait_minutes", () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 1 }, backend: backend({ claude_max_retries: 0 }), prompt: writePrompt, validations, rate_limit: { wait_minutes: 60 } });
    const started = Date.now();
    const r = box.run(["run", job], env("retry-429:2000,write-files"));
    expect(r.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(calls(box)[0]!.env.CLAUDE_CODE_MAX_RETRIES).toBe("0");
    expect(box.status("test-job").rate_limit_waits).toBe(1);
  }, 30_000);

  for (const [name, scenario] of [
    ["seconds", "reset-event:s"],
    ["milliseconds", "reset-event:ms"],
  ] as const) {
    test(`a rejected rate_limit_event with resetsAt 3 s ahead (in ${name}) holds about 3 s`, () => {
      box = sandbox("sqlite");
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: backend(), prompt: writePrompt, validations, rate_limit: { wait_minutes: 60 } });
      const started = Date.now();
      const r = box.run(["run", job], env(`${scenario},write-files`, { FAKE_CLAUDE_RESET_SECONDS: "3" }));
      const took = Date.now() - started;
      expect(r.code).toBe(0);
      const hold = events(box).find((e) => e.type === "rate_limit_hold") as Extract<StoredEvent, { type: "rate_limit_hold" }>;
      expect(hold.reason).toContain("rate_limit_event rejected");
      expect(hold.until - Date.parse(hold.at)).toBeGreaterThan(1500);
      expect(hold.until - Date.parse(hold.at)).toBeLessThan(4500);
      expect(took).toBeGreaterThan(1500);
      expect(box.status("test-job").batches[0]).toMatchObject({ status: "completed", attempts: 2 });
    }, 30_000);
  }

  test("credits_required stops the job with a spend message", () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 2 }, backend: backend(), prompt: writePrompt, validations });
    const r = box.run(["run", job], env("credits"));
    expect(r.code).toBe(1);
    expect(calls(box)).toHaveLength(1);
    const s = box.status("test-job");
    expect(s.status).toBe("failed");
    expect(s.batches[0]).toMatchObject({ attempts: 1, error_category: "spend_cap" });
    expect(s.batches[0]!.error).toContain("credits_required");
    expect(s.batches[0]!.error).toContain("spend limit or add credits");
  });
});

describe("limit kinds", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("a per-model limit with backend.fallback_models switches the model, recorded per attempt; no hold", () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 1 }, backend: backend({ fallback_models: ["claude-sonnet-4-5"] }), prompt: writePrompt, validations, retry: { max_retries: 0 } });
    const r = box.run(["run", job], env("model-limit"));
    expect(r.code).toBe(0);
    const c = calls(box);
    expect(c).toHaveLength(2);
    expect(c[0]!.argv).not.toContain("--model");
    expect(c[1]!.argv).toEqual(expect.arrayContaining(["--model", "claude-sonnet-4-5"]));
    const attempts = JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout).attempts as Array<{ decision: string; reason: string; model?: string; argv: string[] }>;
    expect(attempts[0]).toMatchObject({ decision: "retry" });
    expect(attempts[0]!.reason).toContain("per-model limit (opus)");
    expect(attempts[0]!.reason).toContain("the next attempt uses claude-sonnet-4-5");
    expect(attempts[0]!.model).toBeUndefined();
    expect(attempts[1]).toMatchObject({ decision: "success", model: "claude-sonnet-4-5" });
    expect(box.run(["status", "test-job", "--batch", "1"]).stdout).toContain("model     claude-sonnet-4-5");
    expect(box.status("test-job").rate_limit_waits).toBe(0);
  });

  test("while the per-model limit lasts, later batches start on the fallback, and a resumed batch goes on with it", () => {
    box = sandbox("sqlite");
    const job = box.job({
      batch: { size: 1, total_items: 3 },
      backend: backend({ fallback_models: ["claude-sonnet-4-5"] }),
      // Batch 3 never writes its file: it fails on the fallback and is resumed.
      prompt: { template: "Do batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}.md :: done\n" },
      validations: [{ type: "file_exists", path: "out/b{batch_num}.md" }, { type: "file_exists", path: "out/extra-{batch_num}.md" }],
      retry: { max_retries: 0, max_completion_attempts: 0 },
      on_batch_failure: "continue",
    });
    const models = (from: number) => calls(box).slice(from).map((c) => (c.argv.includes("--model") ? c.argv[c.argv.indexOf("--model") + 1] : "default"));
    // Batch 1 meets the Opus limit and switches; batches 2 and 3 start on the fallback at once.
    expect(box.run(["run", job], env("model-limit")).code).toBe(1);
    expect(models(0)).toEqual(["default", "claude-sonnet-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5"]);
    // Every batch failed its second file (none was written): resumed, they run on the fallback from their first new attempt.
    const before = calls(box).length;
    expect(box.run(["resume", "test-job", "--retry-failed"], env("model-limit")).code).toBe(1);
    expect(models(before)).toEqual(["claude-sonnet-4-5", "claude-sonnet-4-5", "claude-sonnet-4-5"]);
    const attempts = JSON.parse(box.run(["status", "test-job", "--batch", "2", "--json"]).stdout).attempts as Array<{ model?: string }>;
    expect(attempts.map((a) => a.model)).toEqual(["claude-sonnet-4-5", "claude-sonnet-4-5"]);
  });

  test("a per-model limit without a fallback is a hold until its reset, named as a per-model limit", async () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 1 }, backend: backend(), prompt: writePrompt, validations });
    const p = box.start(["run", job], env("model-limit"));
    for (let i = 0; i < 400 && !p.output().stderr.includes("holding all work"); i++) await Bun.sleep(25);
    p.child.kill("SIGINT");
    await p.done;
    const hold = events(box).find((e) => e.type === "rate_limit_hold") as Extract<StoredEvent, { type: "rate_limit_hold" }>;
    expect(hold.limit).toBe("model");
    expect(hold.reason).toContain("per-model limit (opus)");
  }, 20_000);
});

describe("on_batch_failure", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("continue: the other batches run to the end; the job fails listing the failed batch, with the --retry-failed hint", () => {
    box = sandbox("sqlite");
    const job = box.job({ on_batch_failure: "continue", batch: { size: 1, total_items: 4 }, backend: backend(), prompt: { template: "Do batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}.md :: done\n" }, validations: [{ type: "file_exists", path: "out/b{batch_num}.md" }, { type: "command_succeeds", command: "test {batch_num} -ne 2" }], retry: { max_retries: 0, max_completion_attempts: 0 } });
    const r = box.run(["run", job], env("write-files"));
    expect(r.code).toBe(1);
    const s = box.status("test-job");
    expect(s.status).toBe("failed");
    expect(s.progress).toMatchObject({ completed: 3, failed: 1 });
    expect(s.error).toContain("1 batch failed (2)");
    expect(s.error).toContain("--retry-failed");
    expect(calls(box)).toHaveLength(4);
  });

  test("stop (the default): no batch starts after the failure", () => {
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 1, total_items: 4 }, backend: backend(), prompt: { template: "Do batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}.md :: done\n" }, validations: [{ type: "file_exists", path: "out/b{batch_num}.md" }, { type: "command_succeeds", command: "test {batch_num} -ne 2" }], retry: { max_retries: 0, max_completion_attempts: 0 } });
    const r = box.run(["run", job], env("write-files"));
    expect(r.code).toBe(1);
    expect(box.status("test-job").progress.completed).toBe(1);
    expect(calls(box)).toHaveLength(2);
  });
});

describe("retry.continue_session", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());
  /** A long task context, as real prompts have: what a cold retry sends again and a resumed one does not. */
  const context = "Context: " + "the items of this batch are described at length here. ".repeat(60);
  const twoFiles = { template: `${context}\nDo batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}-1.md :: one\nWRITE: out/b{{ batch_num }}-2.md :: two\n` };
  const both = [{ type: "file_exists", path: "out/b{batch_num}-1.md" }, { type: "file_exists", path: "out/b{batch_num}-2.md" }];
  type Attempt = { attempt: number; decision: string; session_id?: string; argv: string[]; cost_usd: number; tokens: { input: number; cache_read: number; output: number }; resume?: { session_id: string; resumed: boolean; reason?: string } };
  const attempts = () => JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout).attempts as Attempt[];
  const job = (retry: Record<string, unknown> = {}) => box.job({ batch: { size: 1, total_items: 1 }, backend: backend(), prompt: twoFiles, validations: both, retry: { max_retries: 2, base_delay_seconds: 0.01, max_delay_seconds: 0.02, completion_delay_seconds: 0, ...retry } });

  test("a validation failure, then a retry that resumes the first attempt's session with the completion prompt; cost deltas sum exactly", () => {
    box = sandbox("sqlite");
    const r = box.run(["run", job()], env("partial,write-files"));
    expect(r.code).toBe(0);
    const [first, second] = attempts();
    expect(first!.decision).toBe("validation_failed");
    expect(first!.session_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(second!.argv).toEqual(expect.arrayContaining(["--resume", first!.session_id!]));
    expect(second!.resume).toEqual({ session_id: first!.session_id!, resumed: true });
    expect(second!.session_id).toBe(first!.session_id);
    // The session's context is read from the cache, and the task is not sent again.
    expect(second!.tokens.cache_read).toBeGreaterThan(0);
    expect(second!.tokens.input).toBeLessThan(first!.tokens.input / 2);
    // total_cost_usd is cumulative over --resume: the ledger holds each attempt's delta, summing to the session's total.
    const session = JSON.parse(box.read(`fake-state/sessions/${first!.session_id}.json`)) as { cost: number };
    expect(Math.round((first!.cost_usd + second!.cost_usd) * 1e6)).toBe(Math.round(session.cost * 1e6));
    expect(Math.round(box.status("test-job").cost_usd * 1e6)).toBe(Math.round(session.cost * 1e6));
  });

  test("a session that cannot be resumed falls back to a fresh one, recorded in the attempt", () => {
    box = sandbox("sqlite");
    const r = box.run(["run", job()], env("partial,write-files", { FAKE_CLAUDE_FORGET_SESSIONS: "1" }));
    expect(r.code).toBe(0);
    const [first, second] = attempts();
    expect(second!.resume).toMatchObject({ session_id: first!.session_id!, resumed: false });
    expect(second!.resume!.reason).toContain("No conversation found");
    expect(second!.argv).not.toContain("--resume");
    expect(second!.session_id).not.toBe(first!.session_id);
    expect(box.lines("claude-calls.jsonl")).toHaveLength(3);
  });

  test("continue_session: false retries cold; the resumed retry sends fewer uncached input tokens", () => {
    box = sandbox("sqlite");
    expect(box.run(["run", job({ continue_session: false })], env("partial,write-files")).code).toBe(0);
    const cold = attempts()[1]!;
    expect(cold.argv).not.toContain("--resume");
    expect(cold.tokens.cache_read).toBe(0);
    box.cleanup();
    box = sandbox("sqlite");
    expect(box.run(["run", job()], env("partial,write-files")).code).toBe(0);
    const warm = attempts()[1]!;
    expect(warm.tokens.input).toBeLessThan(cold.tokens.input);
    if (process.env.MOZART_REPORT_SAVINGS) console.log(`retry input tokens: cold ${cold.tokens.input}, resumed ${warm.tokens.input} (+${warm.tokens.cache_read} cache reads); cost cold $${cold.cost_usd}, resumed $${warm.cost_usd}`);
  });
});

describe("the quota guard across jobs", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("a subscription limit met by job A holds job B on the same account: B starts nothing during the hold; both complete", async () => {
    box = sandbox("sqlite");
    const account = { CLAUDE_CONFIG_DIR: join(box.dir, "claude-config"), ANTHROPIC_API_KEY: "" };
    const a = box.job({ name: "job-a", workspace: "./ws-a", batch: { size: 1, total_items: 1 }, backend: backend(), prompt: writePrompt, validations, rate_limit: { wait_minutes: 60 } }, "a.yaml");
    const b = box.job({ name: "job-b", workspace: "./ws-b", batch: { size: 1, total_items: 2 }, backend: backend(), prompt: writePrompt, validations }, "b.yaml");
    const pa = box.start(["run", a], env("reset-event:ms,write-files", { ...account, FAKE_CLAUDE_RESET_SECONDS: "3" }));
    for (let i = 0; i < 400 && !pa.output().stderr.includes("holding all work"); i++) await Bun.sleep(25);
    expect(pa.output().stderr).toContain("holding all work");
    const pb = box.start(["run", b], env("write-files", account));
    for (let i = 0; i < 400 && !pb.output().stderr.includes("holding all work"); i++) await Bun.sleep(25);
    // While it lasts, list and status show the account's hold on both jobs, and who met it.
    const listed = JSON.parse(box.run(["list", "--json"], account).stdout) as { jobs: Array<{ job_id: string; account_hold?: { met_by: string; limit: string } }>; account_holds: Array<{ met_by: string; until: string; limit: string }> };
    expect(listed.account_holds).toHaveLength(1);
    expect(listed.account_holds[0]).toMatchObject({ met_by: "job-a", limit: "session" });
    expect(listed.jobs.find((j) => j.job_id === "job-b")?.account_hold).toMatchObject({ met_by: "job-a" });
    expect(listed.jobs.find((j) => j.job_id === "job-a")?.account_hold).toMatchObject({ met_by: "job-a" });
    const human = box.run(["list"], account).stdout;
    expect(human).toMatch(/account config-[0-9a-f]{16} on hold until .*session limit met by job job-a/);
    expect(human).toMatch(/job-b: starts no batch before .* \(its account's hold, met by job-a\)/);
    expect(box.run(["status", "job-b"], account).stdout).toMatch(/account {4}on hold until .*\(session limit, met by job job-a: .*\): no batch of this job starts before then/);
    const statusB = JSON.parse(box.run(["status", "job-b", "--json"], account).stdout) as { account_hold: { met_by: string; until: string } | null };
    expect(statusB.account_hold).toMatchObject({ met_by: "job-a", until: listed.account_holds[0]!.until });
    expect((await pb.done).code).toBe(0);
    expect((await pa.done).code).toBe(0);
    // Over: nothing is shown any more.
    expect((JSON.parse(box.run(["list", "--json"], account).stdout) as { account_holds: unknown[] }).account_holds).toEqual([]);
    expect((JSON.parse(box.run(["status", "job-b", "--json"], account).stdout) as { account_hold: unknown }).account_hold).toBeNull();
    const holdA = (box.run(["logs", "job-a", "--json"]).stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as StoredEvent).find((e) => e.type === "rate_limit_hold")) as Extract<StoredEvent, { type: "rate_limit_hold" }>;
    expect(holdA.limit).toBe("session");
    const eventsB = box.run(["logs", "job-b", "--json"]).stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l) as StoredEvent);
    const holdB = eventsB.find((e) => e.type === "rate_limit_hold") as Extract<StoredEvent, { type: "rate_limit_hold" }>;
    expect(holdB.limit).toBe("account");
    expect(holdB.reason).toContain("met by job job-a");
    expect(holdB.until).toBe(holdA.until);
    // Every claude call of job B came after the reset.
    const callsB = calls(box).filter((c) => (c as unknown as { cwd: string }).cwd.endsWith("ws-b"));
    expect(callsB).toHaveLength(2);
    for (const c of callsB) expect(c.time).toBeGreaterThanOrEqual(holdA.until - 50);
    expect(box.status("job-b").progress.completed).toBe(2);
    expect(box.status("job-a").progress.completed).toBe(1);
  }, 30_000);
});

describe("admission control", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("utilization 0.95 starts nothing new until the reset, running batches finish; then starts ramp up 1, 2, 4", () => {
    box = sandbox("sqlite");
    const job = box.job({ concurrency: 4, batch: { size: 1, total_items: 8 }, backend: backend(), prompt: writePrompt, validations });
    const r = box.run(["run", job], env("quota:0.95,write-files", { FAKE_CLAUDE_RESET_SECONDS: "3" }));
    expect(r.code).toBe(0);
    const all = events(box);
    const hold = all.find((e) => e.type === "rate_limit_hold") as Extract<StoredEvent, { type: "rate_limit_hold" }>;
    expect(hold.limit).toBe("admission");
    expect(hold.reason).toContain("95% used");
    // Nothing interrupted: every batch completes in one attempt.
    expect(box.status("test-job").batches.every((b) => b.attempts === 1 && b.status === "completed")).toBe(true);
    // No attempt started between the hold and the reset (the first four started before it).
    const holdAt = Date.parse(hold.at);
    const startsAt = all.filter((e) => e.type === "attempt_start").map((e) => Date.parse(e.at)).sort((a, b) => a - b);
    expect(startsAt).toHaveLength(8);
    expect(startsAt.filter((t) => t > holdAt && t < hold.until - 50)).toEqual([]);
    const post = startsAt.filter((t) => t >= hold.until - 50);
    expect(post).toHaveLength(4);
    // The ramp: the first start after the reset runs alone; without it the four would start together, before any ended.
    const firstComplete = Math.min(...all.filter((e) => e.type === "batch_complete" && Date.parse(e.at) >= hold.until - 50).map((e) => Date.parse(e.at)));
    expect(post[1]!).toBeGreaterThanOrEqual(firstComplete);
  }, 30_000);
});

describe("structured results", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("backend.json_schema (inline or a file) is passed as --json-schema; structured_output is saved per attempt", () => {
    box = sandbox("sqlite");
    const schema = { type: "object", properties: { items: { type: "array" } }, required: ["items"] };
    const prompt = { template: 'Do batch {{ batch_num }}.\nSTRUCTURED: {"items": [1, 2, 3]}\nWRITE: out/b{{ batch_num }}.md :: done\n' };
    const inline = box.job({ batch: { size: 1, total_items: 1 }, backend: backend({ json_schema: schema }), prompt, validations });
    expect(box.run(["run", inline], env("write-files")).code).toBe(0);
    const c = calls(box);
    const at = c[0]!.argv.indexOf("--json-schema");
    expect(JSON.parse(c[0]!.argv[at + 1]!)).toEqual(schema);
    const attempt = JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout).attempts[0] as { structured_output: unknown };
    expect(attempt.structured_output).toEqual({ items: [1, 2, 3] });

    writeFileSync(join(box.dir, "answer.schema.json"), JSON.stringify(schema));
    const fromFile = box.job({ name: "from-file", workspace: "./ws2", batch: { size: 1, total_items: 1 }, backend: backend({ json_schema: "answer.schema.json" }), prompt, validations }, "file.yaml");
    expect(box.run(["run", fromFile], env("write-files")).code).toBe(0);
    const c2 = calls(box);
    expect(JSON.parse(c2[1]!.argv[c2[1]!.argv.indexOf("--json-schema") + 1]!)).toEqual(schema);

    const missing = box.job({ name: "no-schema", workspace: "./ws3", batch: { size: 1, total_items: 1 }, backend: backend({ json_schema: "nope.json" }), prompt, validations }, "missing.yaml");
    expect(box.run(["run", missing], env("write-files")).code).toBe(1);
    expect(box.status("no-schema").batches[0]!.error).toContain("nope.json");
  }, 20_000);

  test("json_schema and jsonpath rules check the structured output: a failure names its paths, and the retry continues the session with them", () => {
    box = sandbox("sqlite");
    const schema = { type: "object", required: ["count", "title"], properties: { count: { type: "integer", maximum: 1 }, title: { type: "string" } } };
    const job = box.job({
      batch: { size: 1, total_items: 2 },
      backend: backend({ json_schema: schema }),
      prompt: { template: 'Do batch {{ batch_num }}.\nSTRUCTURED: {"count": {{ batch_num }}, "title": "b{{ batch_num }}"}\nWRITE: out/b{{ batch_num }}.md :: done\n' },
      validations: [
        { type: "file_exists", path: "out/b{batch_num}.md" },
        { type: "json_schema", schema, description: "the answer follows the schema" },
        { type: "jsonpath", assert: ["$.count == 1", '$.title == "b1"'] },
      ],
      retry: { max_retries: 0, max_completion_attempts: 1, completion_threshold_percent: 30, base_delay_seconds: 0.01, max_delay_seconds: 0.02 },
      on_batch_failure: "continue",
    });
    const r = box.run(["run", job], env("write-files"));
    expect(r.code).toBe(1);
    const s = box.status("test-job");
    expect(s.batches.map((b) => b.status)).toEqual(["completed", "failed"]);
    const c = calls(box);
    expect(c.every((call) => call.argv.includes("--json-schema"))).toBe(true);
    // Batch 2's first attempt, then its completion attempt in the same session, told which paths failed.
    expect(c).toHaveLength(3);
    const b2 = c.slice(1);
    expect(b2[0]!.prompt).toContain("Do batch 2.");
    expect(b2[1]!.argv).toContain("--resume");
    expect(b2[1]!.prompt).toContain("[SCHEMA NOT MATCHED] the answer follows the schema");
    expect(b2[1]!.prompt).toContain("$.count: must be <= 1");
    expect(b2[1]!.prompt).toContain("[ASSERTION FAILED]");
    expect(b2[1]!.prompt).toContain('$.title is "b2", expected == "b1"');
    expect(b2[1]!.prompt).toContain("your structured answer");
    const validations = (s.batches[1] as unknown as { validations: Array<{ type: string; description: string; passed: boolean; detail: string; target: string }> }).validations;
    expect(validations.map((v) => [v.type, v.passed, v.target])).toEqual([
      ["file_exists", true, join(box.dir, "ws", "out", "b2.md")],
      ["json_schema", false, "structured output"],
      ["jsonpath", false, "structured output"],
    ]);
    // The batch keeps its last attempt's results: that answer (the fake's `{}`) had neither key.
    expect(validations[2]!.detail).toBe("2 of 2 assertions failed: $.count: matched nothing; $.title: matched nothing");
    // Without a description, a rule is named by what it asks.
    expect(validations[2]!.description).toBe('structured output: $.count == 1; $.title == "b1"');
    expect(box.run(["status", "test-job"]).stdout).toContain("✗ the answer follows the schema: does not match the JSON Schema: $.count: is required; $.title: is required");
  }, 30_000);
});
