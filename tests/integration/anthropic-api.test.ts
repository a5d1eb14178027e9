/**
 * The anthropic_api backend at full strength, through the real CLI against the fake Anthropic
 * API over real HTTP: answers written to files and validated, base_url, 429 holds shared by every
 * worker, 529 backoff, a refused or missing key, cut-off answers, prompt caching, the cost ledger
 * and budgets that pause (and resume --budget), totals across resume and --join, and the
 * `--dry-run` estimate.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { badRequest, cutOff, ok, overloaded, rateLimited, startFakeAnthropic, unauthorized, type FakeAnthropic, type FakeReply } from "../fixtures/fake-anthropic.ts";
import { sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";

const KEY = { ANTHROPIC_API_KEY: "sk-test", ANTHROPIC_BASE_URL: "http://127.0.0.1:9" };
/** Sonnet prices: $3/M input, $15/M output; 1,000 in + 1,000 out = $0.018. */
const USAGE = { input_tokens: 1000, output_tokens: 1000 };
const BATCH_COST = 0.018;

interface Status {
  status: string;
  error: string | null;
  cost_usd: number;
  tokens: { input: number; output: number; cache_read: number; cache_write_5m: number; cache_write_1h: number };
  cache_hit_ratio: number;
  budget: { max_cost_usd: number; source: string } | null;
  paused_for: { reason: string; spent_usd: number; max_cost_usd: number } | null;
  rate_limit_waits: number;
  progress: { completed: number; total: number };
  batches: Array<{ batch_num: number; status: string; attempts: number; error: string | null; error_category: string | null; cost_usd: number }>;
}

function events(box: Sandbox, job = "test-job"): Array<Record<string, unknown> & { type: string; at: string }> {
  const r = box.run(["logs", job, "--json"]);
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
const status = (box: Sandbox, job = "test-job") => box.status(job) as unknown as Status;
const messages = (api: FakeAnthropic) => api.calls("POST", "/v1/messages");

function apiJob(box: Sandbox, api: FakeAnthropic, extra: Record<string, unknown> = {}, backend: Record<string, unknown> = {}): string {
  return box.job({
    batch: { size: 1, total_items: 2 },
    backend: { type: "anthropic_api", base_url: api.url, model: "claude-sonnet-4-5", max_tokens: 2000, ...backend },
    ...extra,
  });
}

let box: Sandbox;
let api: FakeAnthropic;
afterEach(async () => {
  box?.cleanup();
  await api?.close();
});

describe("anthropic_api: answers, limits, errors", () => {
  for (const kind of ["sqlite", "json"] as Kind[]) {
    test(`${kind}: a job with file validations succeeds through base_url; the answers are files, priced in the ledger`, async () => {
      api = await startFakeAnthropic((req) => ok(`Answer for: ${(req.body as { messages: Array<{ content: unknown }> }).messages.length} message(s)`, { usage: USAGE }));
      box = sandbox(kind);
      const job = apiJob(box, api, {
        validations: [
          { type: "file_exists", path: "batch{batch_num}-output.md" },
          { type: "content_contains", path: "batch{batch_num}-output.md", pattern: "Answer for" },
          { type: "content_regex", path: "{{ workspace }}/batch{batch_num}-output.md", pattern: "^Answer for: \\d" },
        ],
      });
      // ANTHROPIC_BASE_URL points nowhere: only backend.base_url can reach the fake.
      const r = await box.start(["run", job], KEY).done;
      expect(r.stderr).not.toContain("error:");
      expect(r.code).toBe(0);
      expect(messages(api)).toHaveLength(2);
      for (const n of [1, 2]) expect(readFileSync(join(box.dir, "ws", `batch${n}-output.md`), "utf8")).toBe("Answer for: 1 message(s)");
      const s = status(box);
      expect(s.batches.map((b) => [b.status, b.attempts, b.cost_usd])).toEqual([
        ["completed", 1, BATCH_COST],
        ["completed", 1, BATCH_COST],
      ]);
      expect(s.cost_usd).toBe(2 * BATCH_COST);
      expect(s.tokens).toEqual({ input: 2000, output: 2000, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 });
      // The run summary and logs show the cost too.
      expect(r.stdout).toContain("$0.0360");
      expect(box.run(["logs", "test-job"]).stdout).toMatch(/batch 2 completed .*\$0\.0180\).*job so far \$0\.0360/);
    });
  }

  test("a 429 with retry-after: 2 holds about 2 s, then succeeds", async () => {
    api = await startFakeAnthropic([rateLimited(2), ok("fine", { usage: USAGE })]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    const [first, second] = messages(api);
    const gap = second!.at - first!.at;
    expect(gap).toBeGreaterThanOrEqual(1950);
    expect(gap).toBeLessThan(3500);
    const s = status(box);
    expect(s.rate_limit_waits).toBe(1);
    expect(s.batches[0]!.status).toBe("completed");
    const hold = events(box).find((e) => e.type === "rate_limit_hold")!;
    expect(Number(hold.until) - Date.parse(hold.at)).toBeLessThan(2100);
  });

  test("one hold is shared by 4 workers: the server sees no request inside it", async () => {
    // The first request is refused after 300 ms; the three others in flight finish after 600 ms,
    // inside the hold, and their workers must then wait it out before their next batch.
    api = await startFakeAnthropic((_req, i) => (i === 0 ? { ...(rateLimited(2) as Extract<FakeReply, { kind: "error" }>), delayMs: 300 } : ok("done", { delayMs: 600, usage: USAGE })));
    box = sandbox("sqlite");
    const job = apiJob(box, api, { concurrency: 4, batch: { size: 1, total_items: 8 } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    expect(messages(api)).toHaveLength(9);
    const hold = events(box).find((e) => e.type === "rate_limit_hold")!;
    const from = Date.parse(hold.at);
    const until = Number(hold.until);
    expect(until - from).toBeGreaterThan(1800);
    const inside = messages(api).filter((m) => m.at > from && m.at < until - 20);
    expect(inside.map((m) => m.at - from)).toEqual([]);
    // Work resumed once the hold was over.
    expect(messages(api).filter((m) => m.at >= until - 20).length).toBe(5);
    expect(status(box).progress.completed).toBe(8);
  });

  test("529 backs off before the retry", async () => {
    api = await startFakeAnthropic([overloaded(), ok("fine")]);
    box = sandbox("json");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 }, retry: { max_retries: 2, base_delay_seconds: 0.6, max_delay_seconds: 5, jitter: false } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    const [first, second] = messages(api);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(580);
    expect(status(box).batches[0]).toMatchObject({ status: "completed", attempts: 2 });
  });

  test("401 fails fast, and the message names the key's variable", async () => {
    api = await startFakeAnthropic([unauthorized()]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { retry: { max_retries: 3, base_delay_seconds: 0.01, max_delay_seconds: 0.02 } }, { api_key_env: "MY_TEAM_KEY" });
    const r = await box.start(["run", job], { MY_TEAM_KEY: "sk-wrong" }).done;
    expect(r.code).toBe(1);
    expect(messages(api)).toHaveLength(1);
    const s = status(box);
    expect(s.batches[0]!.error_category).toBe("auth");
    expect(s.batches[0]!.error).toContain("MY_TEAM_KEY");
    expect(r.stdout + r.stderr).toContain("MY_TEAM_KEY");
  });

  test("a missing key: exit 2 before the job starts, the variable named, no request sent", async () => {
    api = await startFakeAnthropic([ok()]);
    box = sandbox("json");
    const job = apiJob(box, api, {}, { api_key_env: "MY_MISSING_KEY" });
    const r = await box.start(["run", job], { MY_MISSING_KEY: "" }).done;
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("MY_MISSING_KEY");
    expect(api.requests).toHaveLength(0);
    expect(box.run(["status", "test-job"]).code).not.toBe(0);
  });

  test("400 fails the batch with the API's own message, no retry", async () => {
    api = await startFakeAnthropic([badRequest("max_tokens: 99999999 > 64000, which is the maximum allowed")]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(1);
    expect(messages(api)).toHaveLength(1);
    expect(status(box).batches[0]!.error).toContain("max_tokens: 99999999 > 64000, which is the maximum allowed");
  });

  test("a cut-off answer is a failed attempt with a clear reason, and is retried", async () => {
    api = await startFakeAnthropic([cutOff("Half an ans"), ok("The whole answer.")]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 }, validations: [{ type: "content_contains", path: "batch1-output.md", pattern: "whole" }] });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    expect(status(box).batches[0]).toMatchObject({ status: "completed", attempts: 2 });
    expect(box.read("ws/batch1-output.md")).toBe("The whole answer.");
    const attempts = JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout).attempts;
    expect(attempts[0]).toMatchObject({ decision: "retry", reason: expect.stringContaining("cut off at max_tokens (2000)") });
  });

  test("continue_on_max_tokens asks for the rest and appends it; both requests are in the attempt's cost", async () => {
    api = await startFakeAnthropic([cutOff("The first half,  ", { usage: USAGE }), ok(" and the second half.", { usage: USAGE })]);
    box = sandbox("json");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 } }, { continue_on_max_tokens: true });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    const [, second] = messages(api);
    const body = second!.body as { messages: Array<{ role: string; content: unknown }> };
    expect(body.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    // The API refuses an assistant turn that ends in whitespace.
    expect(body.messages[1]!.content).toBe("The first half,");
    expect(box.read("ws/batch1-output.md")).toBe("The first half, and the second half.");
    expect(status(box)).toMatchObject({ cost_usd: 2 * BATCH_COST, batches: [{ attempts: 1 }] });
  });
});

describe("prompt caching", () => {
  const STATIC = `You are grading essays.\n${"Rubric line. ".repeat(200)}\n`;
  test("the static part goes as a cached block with the configured TTL; cache figures are recorded, priced and shown", async () => {
    api = await startFakeAnthropic([
      ok("graded 1", { usage: { input_tokens: 20, output_tokens: 10, cache_creation_input_tokens: 1000, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 1000 } } }),
      ok("graded 2", { usage: { input_tokens: 20, output_tokens: 10, cache_read_input_tokens: 1000 } }),
    ]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { prompt: { template: `${STATIC}Essay {{ batch_num }}: items {{ start_item }}-{{ end_item }}\n` } }, { cache_ttl: "1h", system: "Be terse." });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    for (const [i, m] of messages(api).entries()) {
      const body = m.body as { system: Array<{ type: string; text: string; cache_control?: unknown }>; messages: Array<{ content: unknown }> };
      const [cached, rest] = body.messages[0]!.content as Array<{ type: string; text: string; cache_control?: unknown }>;
      // Everything before the first per-batch variable.
      expect(cached).toEqual({ type: "text", text: `${STATIC}Essay `, cache_control: { type: "ephemeral", ttl: "1h" } });
      expect(rest).toEqual({ type: "text", text: `${i + 1}: items ${i + 1}-${i + 1}\n` });
      // The system prompt comes first and is cached with the block after it (one breakpoint).
      expect(body.system).toEqual([{ type: "text", text: "Be terse." }]);
    }
    const s = status(box);
    expect(s.tokens).toEqual({ input: 40, output: 20, cache_read: 1000, cache_write_5m: 0, cache_write_1h: 1000 });
    // Sonnet: 20·$3 + 1000·$6 (1h write) + 10·$15, then 20·$3 + 1000·$0.30 (read) + 10·$15, per million.
    expect(s.cost_usd).toBe(0.00672);
    expect(s.cache_hit_ratio).toBe(0.49);
    const text = box.run(["status", "test-job"]).stdout;
    expect(text).toContain("tokens     40 in, 20 out, cache 1k read / 1k written (1k 1h); cache hits 49%");
    const attempts = JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout).attempts;
    expect(attempts[0]).toMatchObject({ cost_usd: 0.00621, tokens: { cache_write_1h: 1000, cache_read: 0 } });
  });

  test("prompt.cache_prefix is the static part when given; 5m is the default TTL; a static part too short to cache goes as plain text", async () => {
    api = await startFakeAnthropic([ok("ok")]);
    box = sandbox("json");
    const background = "Background. ".repeat(100);
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 }, prompt: { cache_prefix: `Shared context for {{ job_name }}.\n${background}`, template: "Work on batch {{ batch_num }}." } });
    expect((await box.start(["run", job], KEY).done).code).toBe(0);
    const content = (messages(api)[0]!.body as { messages: Array<{ content: unknown }> }).messages[0]!.content;
    expect(content).toEqual([
      { type: "text", text: `Shared context for test-job.\n${background}`, cache_control: { type: "ephemeral", ttl: "5m" } },
      { type: "text", text: "Work on batch 1." },
    ]);
    // "Work on batch " is fewer characters than the model's 1,024-token minimum: no cache block.
    const short = apiJob(box, api, { name: "short", batch: { size: 1, total_items: 1 }, prompt: { template: "Work on batch {{ batch_num }}." } });
    expect((await box.start(["run", short], KEY).done).code).toBe(0);
    expect((messages(api)[1]!.body as { messages: Array<{ content: unknown }> }).messages[0]!.content).toBe("Work on batch 1.");
  });

  test("a cache_prefix with a per-batch variable is refused by validate", () => {
    box = sandbox("json");
    const job = box.job({ backend: { type: "anthropic_api" }, prompt: { cache_prefix: "batch {{ batch_num }}", template: "x" } });
    const r = box.run(["validate", job]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('prompt.cache_prefix uses "batch_num"');
  });
});

describe("budgets and the cost ledger", () => {
  test("budget.max_cost_usd stops the job at the right batch; resume --budget raises it, and the raised budget is kept", async () => {
    api = await startFakeAnthropic([ok("answer", { usage: USAGE })]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 6 }, budget: { max_cost_usd: 0.05 } });
    // $0.018 a batch: after batch 3 the job has cost $0.054, past $0.05; batch 4 never starts.
    const first = await box.start(["run", job], KEY).done;
    expect(first.code).toBe(130);
    expect(first.stdout).toContain("budget reached");
    let s = status(box);
    expect(s.status).toBe("paused");
    expect(s.progress.completed).toBe(3);
    expect(s.batches.map((b) => b.status)).toEqual(["completed", "completed", "completed", "pending", "pending", "pending"]);
    expect(s.paused_for).toEqual({ reason: "budget", spent_usd: 0.054, max_cost_usd: 0.05 });
    expect(s.budget).toEqual({ max_cost_usd: 0.05, source: "job_file" });
    expect(messages(api)).toHaveLength(3);

    // Raised to $0.08: batch 4 ($0.072) and 5 ($0.09) run, then it pauses again.
    const second = await box.start(["resume", "test-job", "--budget", "0.08"], KEY).done;
    expect(second.code).toBe(130);
    s = status(box);
    expect(s.progress.completed).toBe(5);
    expect(s.budget).toEqual({ max_cost_usd: 0.08, source: "resume" });
    // A plain resume keeps the raised budget (it lives in the job record): nothing runs.
    const third = await box.start(["resume", "test-job"], KEY).done;
    expect(third.code).toBe(130);
    expect(status(box).progress.completed).toBe(5);
    expect(messages(api)).toHaveLength(5);
    // A budget below what was spent is refused.
    const low = await box.start(["resume", "test-job", "--budget", "0.01"], KEY).done;
    expect(low.code).toBe(2);
    expect(low.stderr).toContain("not above the $0.0900");

    expect((await box.start(["resume", "test-job", "--budget", "1"], KEY).done).code).toBe(0);
    s = status(box);
    expect(s.status).toBe("completed");
    expect(messages(api)).toHaveLength(6);
    // Nothing lost, nothing counted twice across four runs.
    expect(s.cost_usd).toBe(0.108);
    expect(s.paused_for).toBeNull();
  });

  test("budget.max_cost_usd_per_batch lowers max_tokens so one request cannot cost more", async () => {
    api = await startFakeAnthropic([ok("short")]);
    box = sandbox("json");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 1 }, budget: { max_cost_usd_per_batch: 0.003 } }, { max_tokens: 4096 });
    expect((await box.start(["run", job], KEY).done).code).toBe(0);
    const maxTokens = (messages(api)[0]!.body as { max_tokens: number }).max_tokens;
    // $0.003 less the prompt (counted generously) buys fewer than 200 output tokens at $15/M.
    expect(maxTokens).toBeGreaterThan(100);
    expect(maxTokens).toBeLessThan(200);
  });

  for (const kind of ["sqlite", "json"] as Kind[]) {
    test(`${kind}: cost totals are exact with a --join runner, each attempt counted once`, async () => {
      api = await startFakeAnthropic([ok("answer", { usage: USAGE, delayMs: 250 })]);
      box = sandbox(kind);
      const job = apiJob(box, api, { concurrency: 2, batch: { size: 1, total_items: 12 } });
      const a = box.start(["run", job], KEY);
      const deadline = Date.now() + 20_000;
      while (messages(api).length < 1 && Date.now() < deadline) await Bun.sleep(20);
      const b = box.start(["run", "--join", job], KEY);
      const [ra, rb] = await Promise.all([a.done, b.done]);
      expect([ra.code, rb.code]).toEqual([0, 0]);
      const s = status(box);
      expect(s.status).toBe("completed");
      expect(messages(api)).toHaveLength(12);
      // Both runners drained the job; the ledger has every attempt once.
      const starts = events(box).filter((e) => e.type === "job_start").map((e) => e.mode);
      expect(starts).toEqual(["run", "join"]);
      expect(s.cost_usd).toBe(0.216);
      expect(s.tokens.input).toBe(12_000);
      expect(s.batches.reduce((sum, x) => sum + x.cost_usd, 0)).toBeCloseTo(12 * BATCH_COST, 10);
    });
  }

  test("cost totals are exact across a kill -9 and a resume", async () => {
    api = await startFakeAnthropic([ok("answer", { usage: USAGE, delayMs: 400 })]);
    box = sandbox("sqlite");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 4 } });
    const run = box.start(["run", job], KEY);
    const deadline = Date.now() + 20_000;
    // Two answered and the third asked: kill -9 while it is in flight.
    while (messages(api).length < 3 && Date.now() < deadline) await Bun.sleep(20);
    run.child.kill("SIGKILL");
    await run.done;
    const r = await box.start(["resume", "test-job"], KEY).done;
    expect(r.code).toBe(0);
    // Every request that answered was paid for once; the one cut off by the kill never answered.
    const answered = messages(api).length - 1;
    const s = status(box);
    expect(s.progress.completed).toBe(4);
    expect(s.cost_usd).toBeGreaterThanOrEqual(4 * BATCH_COST);
    expect(s.cost_usd).toBeLessThanOrEqual(answered * BATCH_COST + 1e-9);
    expect(Math.round(s.cost_usd / BATCH_COST)).toBe(s.tokens.input / 1000);
  });
});

describe("--dry-run cost estimate", () => {
  test("with a key: count_tokens on the prompts, per backend, and the Message Batches' saving", async () => {
    api = await startFakeAnthropic([ok()], { countTokens: () => 1000 });
    box = sandbox("json");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 4 } }, { max_tokens: 1000 });
    const r = await box.start(["run", job, "--dry-run", "--json"], KEY).done;
    expect(r.code).toBe(0);
    expect(api.calls("POST", "/v1/messages/count_tokens").length).toBeGreaterThan(0);
    expect(messages(api)).toHaveLength(0);
    const e = JSON.parse(r.stdout).cost_estimate;
    expect(e).toMatchObject({ model: "claude-sonnet-4-5", counted_by: "count_tokens", input_tokens: 4000, max_tokens: 1000 });
    const apiRow = e.backends.find((b: { backend: string }) => b.backend === "anthropic_api");
    const batchRow = e.backends.find((b: { backend: string }) => b.backend === "anthropic_batch");
    // 4,000 input tokens at $3/M, up to 4,000 output at $15/M; half price in batches.
    expect(apiRow).toMatchObject({ input_usd: 0.012, output_max_usd: 0.06, total_max_usd: 0.072, configured: true });
    expect(batchRow).toMatchObject({ total_max_usd: 0.036, configured: false });
    expect(e.batch_saving_usd).toBe(0.036);
    const text = await box.start(["run", job, "--dry-run"], KEY).done;
    expect(text.stdout).toContain("Cost estimate");
    expect(text.stdout).toContain("anthropic_batch saves up to $0.0360 against anthropic_api");
  });

  test("without a key: the documented heuristic, and nothing is sent", async () => {
    api = await startFakeAnthropic([ok()]);
    box = sandbox("json");
    const job = apiJob(box, api, { batch: { size: 1, total_items: 2 } });
    const r = await box.start(["run", job, "--dry-run", "--json"], { ANTHROPIC_API_KEY: "" }).done;
    expect(r.code).toBe(0);
    expect(api.requests).toHaveLength(0);
    expect(JSON.parse(r.stdout).cost_estimate).toMatchObject({ counted_by: "heuristic", counted_note: expect.stringContaining("3.5 characters per token") });
    expect(existsSync(join(box.dir, "ws", "batch1-output.md"))).toBe(false);
  });
});
