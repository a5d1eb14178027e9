/**
 * Outcome records and the prompt-quality breaker, in-process with the scripted backend and the
 * fake clock (real stores in temp folders), and the history across real processes.
 */
import { describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { requestControl, requester } from "../../src/engine/control.ts";
import { HISTORY_FILE, parseHistory, readHistory } from "../../src/learning/history.ts";
import type { Outcome } from "../../src/learning/outcome.ts";
import type { ExecutionResult } from "../../src/backends/types.ts";
import { failed, type ScriptedBackend, type ScriptStep } from "../fixtures/fake-backend.ts";
import { until } from "../fixtures/fake-clock.ts";
import { afterThisTest, inProcessBench } from "./inprocess-bench.ts";
import { mozart, tempDir, type Plain } from "../helpers.ts";

const JOB = "learn";

const BASE: Plain = {
  name: JOB,
  workspace: "./ws",
  pause_between_batches_seconds: 0,
  batch: { size: 2, total_items: 6 },
  prompt: { template: "Batch {{ batch_num }}\n" },
  retry: { max_retries: 2, base_delay_seconds: 10, max_delay_seconds: 3600, jitter: false, completion_delay_seconds: 5 },
};

async function bench(kind: "sqlite" | "json", over: Plain = {}) {
  const b = await inProcessBench(kind, BASE, over, { prefix: "mozart-learn-", home: true });
  return Object.assign(b, { history: (): Promise<Outcome[]> => readHistory(join(b.home!, HISTORY_FILE)) });
}

const ok = (files: Record<string, string> = {}): ScriptStep => ({ files });
const priced = (usd: number, model = "claude-haiku-4-5"): Partial<ExecutionResult> => ({
  spend: { usd, tokens: { input: 100, output: 50, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 }, priced_by: "price_table", model },
});

for (const kind of ["sqlite", "json"] as const) {
  describe(`outcome records (${kind} state)`, () => {
    test("first try, after retry and failed: one outcome per finished batch, in the batch record and the history", async () => {
      const b = await bench(kind, { retry: { max_retries: 1 } });
      const backend = b.backend(
        {
          1: [{ result: priced(0.01) }],
          2: [{ result: { ...failed("transient"), ...priced(0.002) } }, { result: priced(0.02) }],
          3: [{ result: failed("boom") }, { result: failed("boom") }],
        },
        {},
      );
      const result = await b.start(backend).done;
      expect(result.outcome).toBe("failed");
      const history = await b.history();
      const byBatch = new Map(history.map((o) => [o.batch_num, o]));
      expect(byBatch.get(1)).toMatchObject({ v: 1, job_id: JOB, category: "first_try", attempts: 1, holds: 0, items: 2, usd: 0.01, model: "claude-haiku-4-5", backend: "command" });
      expect(byBatch.get(1)!.tokens).toEqual({ input: 100, output: 50, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 });
      expect(byBatch.get(2)).toMatchObject({ category: "after_retry", attempts: 2, usd: 0.022 });
      expect(byBatch.get(2)!.tokens.input).toBe(200);
      expect(byBatch.get(3)).toMatchObject({ category: "failed", decision: expect.any(String), attempts: 2 });
      expect(byBatch.get(3)!.decision).not.toBe("unknown");
      for (const o of history) {
        expect(o.config_hash).toBe(result.job.config_hash);
        expect(o.template_hash).toBe(result.job.template_blob);
        expect(o.duration_ms).toBeGreaterThanOrEqual(0);
      }
      // The job's state has the same outcome on each batch record.
      for (const n of [1, 2, 3]) expect((await b.store.getBatch(JOB, n))!.outcome).toEqual(byBatch.get(n)!);
    });

    test("success after completion mode names the validations that failed and on which attempts", async () => {
      const b = await bench(kind, {
        batch: { total_items: 2 },
        validations: [
          { type: "file_exists", path: "a-{{ batch_num }}.txt", description: "a exists" },
          { type: "file_exists", path: "b-{{ batch_num }}.txt", description: "b exists" },
          { type: "file_exists", path: "c-{{ batch_num }}.txt", description: "c exists" },
        ],
      });
      const backend = b.backend({ 1: [ok({ "a-1.txt": "a", "b-1.txt": "b" }), ok({ "c-1.txt": "c" })] });
      const result = await b.start(backend).done;
      expect(result.outcome).toBe("completed");
      const [o] = await b.history();
      expect(o).toMatchObject({ batch_num: 1, category: "after_completion", attempts: 2, completion_attempts: 1 });
      expect(o!.failed_validations).toEqual([{ description: "c exists", attempts: [1] }]);
    });

    test("time held is in the outcome, by limit kind", async () => {
      const b = await bench(kind, { batch: { total_items: 2 } });
      const limit: ScriptStep = { result: () => ({ exit_code: 1, claude: { is_error: true, result: "You've hit your limit", rate_limit_resets_at: b.clock.now() + 3_600_000 } }) as Partial<ExecutionResult> };
      const backend = b.backend({ 1: [limit] });
      expect((await b.start(backend).done).outcome).toBe("completed");
      const [o] = await b.history();
      expect(o).toMatchObject({ batch_num: 1, category: "first_try", attempts: 2, holds: 1 });
      expect(o!.held_ms).toBeGreaterThanOrEqual(3_600_000);
      expect(Object.keys(o!.held_by)).toEqual(["reset_time"]);
      expect(o!.held_by.reset_time).toBe(o!.held_ms);
    });

    test("a batch running when the job is cancelled records a cancelled outcome", async () => {
      const b = await bench(kind);
      const backend = b.backend({}, { waitForAbort: true });
      const { done } = b.start(backend);
      await until(() => backend.calls.length >= 1, 10_000, "the first attempt");
      await requestControl(b.store, JOB, "cancel", requester("cli"));
      expect((await done).outcome).toBe("cancelled");
      const history = await b.history();
      expect(history.map((o) => [o.batch_num, o.category])).toEqual([[1, "cancelled"]]);
      expect((await b.store.getBatch(JOB, 1))!.outcome?.category).toBe("cancelled");
    });

    test("learning.enabled: false records no outcomes", async () => {
      const b = await bench(kind, { learning: { enabled: false } });
      expect((await b.start(b.backend()).done).outcome).toBe("completed");
      expect(await b.history()).toEqual([]);
      expect((await b.store.getBatch(JOB, 1))!.outcome).toBeUndefined();
    });

    test("the breaker pauses with low_success after the window, names the failing validations, and resume continues", async () => {
      const b = await bench(kind, {
        batch: { size: 1, total_items: 8 },
        learning: { escalation_enabled: true, window: 3, min_confidence_threshold: 0.5 },
        notifications: [{ type: "webhook", on_events: ["job_paused"], config: { url: "http://127.0.0.1:9/hook", max_retries: 0 } }],
        validations: [{ type: "file_exists", path: "out-{{ batch_num }}.txt", description: "the output file" }],
      });
      // A bad prompt: every batch needs a retry before its file appears.
      const script: Record<number, ScriptStep[]> = {};
      for (let n = 1; n <= 8; n++) script[n] = [ok(), ok({ [`out-${n}.txt`]: "x" })];
      const first = b.backend(script);
      const sent: Array<{ url: string; body: string }> = [];
      const fetch = (async (url: string | URL, init?: { body?: string }) => {
        sent.push({ url: String(url), body: String(init?.body ?? "") });
        return new Response("ok", { status: 200 });
      }) as unknown as typeof globalThis.fetch;
      const r1 = await b.start(first, { notify: { fetch } }).done;
      expect(r1.outcome).toBe("paused");
      expect(r1.job.paused_for).toEqual({ reason: "low_success", rate: 0, window: 3, threshold: 0.5, failing: ["the output file"] });
      expect(r1.summary.completed).toBe(3);
      const events = await b.store.readEvents(JOB);
      const paused = events.filter((e) => e.type === "job_paused").at(-1) as { reason: string; low_success?: unknown };
      expect(paused.reason).toContain("low_success");
      expect(paused.reason).toContain("the output file");
      // Notified through the job's notifications, with the reason.
      const pausedNote = sent.map((x) => JSON.parse(x.body)).find((x) => x.event === "job_paused");
      expect(pausedNote).toBeDefined();
      expect(JSON.stringify(pausedNote)).toContain("low_success");
      // Nothing past the window started: the breaker stopped the quota burn.
      expect(new Set(first.calls.map((c) => c.batch))).toEqual(new Set([1, 2, 3]));

      // Fixed prompt: resume runs the rest at the first try and completes.
      const fixed: Record<number, ScriptStep[]> = {};
      for (let n = 1; n <= 8; n++) fixed[n] = [ok({ [`out-${n}.txt`]: "x" })];
      const r2 = await b.start(b.backend(fixed), { command: "resume" }).done;
      expect(r2.outcome).toBe("completed");
      expect(r2.job.paused_for).toBeUndefined();
      expect(r2.summary.completed).toBe(8);
    });

    test("concurrency rises one step per finished batch while the success rate stays high, never above `concurrency`", async () => {
      const b = await bench(kind, {
        batch: { size: 1, total_items: 14 },
        concurrency: 3,
        learning: { escalation_enabled: true, window: 2, high_confidence_threshold: 0.9 },
      });
      const atStart: number[] = [];
      let backend: ScriptedBackend | undefined;
      // Long enough that the next starts come while earlier batches run, on a loaded machine too.
      backend = b.backend({}, { takesMs: 250, onStart: () => void atStart.push(backend!.running) });
      const result = await b.start(backend).done;
      expect(result.outcome).toBe("completed");
      // Starts at 1; judged once 2 batches finished; then +1 per finished batch, up to 3.
      expect(atStart.slice(0, 2)).toEqual([1, 1]);
      const firstTwo = atStart.indexOf(2);
      const firstThree = atStart.indexOf(3);
      expect(firstTwo).toBeGreaterThan(1);
      expect(firstThree).toBeGreaterThan(firstTwo);
      expect(Math.max(...atStart)).toBe(3);
      expect(backend.maxRunning).toBe(3);
      // The run's start says what it starts with (the ETA counts on it), not the configured 3.
      const start = (await b.store.readEvents(JOB)).find((e) => e.type === "job_start") as { concurrency: number };
      expect(start.concurrency).toBe(1);
    });

    test("without escalation the concurrency stays as configured and nothing pauses", async () => {
      const b = await bench(kind, { batch: { size: 1, total_items: 6 }, concurrency: 2, validations: [{ type: "file_exists", path: "x-{{ batch_num }}.txt" }] });
      const script: Record<number, ScriptStep[]> = {};
      for (let n = 1; n <= 6; n++) script[n] = [ok(), ok({ [`x-${n}.txt`]: "x" })];
      const result = await b.start(b.backend(script)).done;
      expect(result.outcome).toBe("completed");
      expect((await b.history()).every((o) => o.category === "after_retry")).toBe(true);
    });
  });
}

describe("the history file", () => {
  test("a torn last line is skipped and the next append starts on a line of its own", async () => {
    const t = tempDir("mozart-hist-");
    afterThisTest(t.cleanup);
    const { appendOutcome } = await import("../../src/learning/history.ts");
    const path = join(t.path, "h.jsonl");
    const o = { v: 1, job_id: "j", batch_num: 1, items: 1, at: "2026-01-01T00:00:00.000Z", runner: "r", category: "first_try", attempts: 1, holds: 0, completion_attempts: 0, usd: 0, tokens: { input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 }, duration_ms: 1, held_ms: 0, held_by: {}, failed_validations: [], backend: "command", config_hash: "c", template_hash: "t" } as Outcome;
    await appendOutcome(path, o);
    writeFileSync(path, `${readFileSync(path, "utf8")}{"v":1,"job_id":"j","batch_nu`);
    expect((await readHistory(path)).length).toBe(1);
    await appendOutcome(path, { ...o, batch_num: 2 });
    expect((await readHistory(path)).map((x) => x.batch_num)).toEqual([1, 2]);
    expect(parseHistory("")).toEqual([]);
  });

  test("a run's appender holds the file open: other writers' lines in between, and a torn line, lose none of its own", async () => {
    const t = tempDir("mozart-hist-open-");
    afterThisTest(t.cleanup);
    const { openHistory } = await import("../../src/learning/history.ts");
    const path = join(t.path, "deep", "h.jsonl");
    const o = { v: 1, job_id: "run", batch_num: 1, items: 1, at: "2026-01-01T00:00:00.000Z", runner: "r", category: "first_try", attempts: 1, holds: 0, completion_attempts: 0, usd: 0, tokens: { input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 }, duration_ms: 1, held_ms: 0, held_by: {}, failed_validations: [], backend: "command", config_hash: "c", template_hash: "t" } as Outcome;
    const history = openHistory(path);
    // Not awaited one by one: they still go out in order.
    await Promise.all([1, 2, 3].map((n) => history.append({ ...o, batch_num: n })));
    // Another job's runner appends, then another process dies mid-line.
    appendFileSync(path, `${JSON.stringify({ ...o, job_id: "other", batch_num: 1 })}\n{"v":1,"job_id":"torn","batch_nu`);
    await history.append({ ...o, batch_num: 4 });
    await history.append({ ...o, batch_num: 5 });
    await history.close();
    expect((await readHistory(path)).map((x) => `${x.job_id}:${x.batch_num}`)).toEqual(["run:1", "run:2", "run:3", "other:1", "run:4", "run:5"]);
    // Closing twice, and closing an appender that never wrote, are harmless.
    await history.close();
    await openHistory(join(t.path, "never", "h.jsonl")).close();
    expect(existsSync(join(t.path, "never"))).toBe(false);
  });

  test("history survives a new process: a second run appends, the first run's lines stay as they were", () => {
    const t = tempDir("mozart-hist-proc-");
    afterThisTest(t.cleanup);
    const home = join(t.path, "home");
    const jobFile = (name: string) => {
      const file = join(t.path, `${name}.yaml`);
      writeFileSync(file, stringify({ name, workspace: `./ws-${name}`, pause_between_batches_seconds: 0, backend: { type: "command", command: "true" }, batch: { size: 1, total_items: 3 }, prompt: { template: "x {{ batch_num }}" } }));
      return file;
    };
    const env = { MOZART_HOME: home };
    expect(mozart(["run", jobFile("first")], { env, timeout: 60_000 }).code).toBe(0);
    const path = join(home, HISTORY_FILE);
    const before = readFileSync(path, "utf8");
    expect(parseHistory(before).map((o) => [o.job_id, o.batch_num, o.category])).toEqual([
      ["first", 1, "first_try"],
      ["first", 2, "first_try"],
      ["first", 3, "first_try"],
    ]);
    expect(mozart(["run", jobFile("second")], { env, timeout: 60_000 }).code).toBe(0);
    const after = readFileSync(path, "utf8");
    expect(after.startsWith(before)).toBe(true);
    expect(parseHistory(after).map((o) => o.job_id)).toEqual(["first", "first", "first", "second", "second", "second"]);
  });
});

describe("estimates from history", () => {
  test("the dry-run estimate of a repeated job says its source, and the repeated run's cost falls inside its range", async () => {
    const b = await bench("sqlite", { batch: { size: 1, total_items: 6 } });
    const script = () => {
      const s: Record<number, ScriptStep[]> = {};
      for (let n = 1; n <= 6; n++) s[n] = [{ result: priced(0.01 * n) }];
      return s;
    };
    const first = await b.start(b.backend(script())).done;
    expect(first.outcome).toBe("completed");

    const file = join(b.dir, "job.yaml");
    const dry = mozart(["run", file, "--dry-run", "--json"], { env: { MOZART_HOME: b.home } });
    expect(dry.code).toBe(0);
    const doc = JSON.parse(dry.stdout);
    const e = doc.history_estimate;
    expect(e).toMatchObject({ source: "history", batches_seen: 6, jobs_seen: [JOB] });
    expect(e.template_hash).toBe(first.job.template_blob);
    // Costs 0.01..0.06: expected 6 × mean, range 6 × p10 .. 6 × p90 (nearest rank).
    expect(e.cost_usd).toEqual({ expected: 0.21, low: 0.06, high: 0.36 });
    const human = mozart(["run", file, "--dry-run"], { env: { MOZART_HOME: b.home, NO_COLOR: "1" } });
    expect(human.stdout).toContain("Estimate from history (source: 6 past batches of this prompt template");

    // The job again: what it costs lies in the range the history gave.
    const again = await b.start(b.backend(script()), { command: "resume", force: true }).done;
    expect(again.outcome).toBe("completed");
    expect(again.summary.cost_usd).toBeGreaterThanOrEqual(e.cost_usd.low);
    expect(again.summary.cost_usd).toBeLessThanOrEqual(e.cost_usd.high);
    expect(Math.abs(again.summary.cost_usd - e.cost_usd.expected)).toBeLessThan(1e-9);
    // With a new template there is no history to go by.
    await b.edit({ prompt: { template: "Something else {{ batch_num }}\n" } });
    expect(JSON.parse(mozart(["run", file, "--dry-run", "--json"], { env: { MOZART_HOME: b.home } }).stdout).history_estimate).toBeNull();
  });
});
