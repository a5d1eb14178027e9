/**
 * The anthropic_batch backend (Message Batches) through the real CLI against the fake API over
 * real HTTP: one create call for every pending batch, results mapped by custom_id, written and
 * validated, errored and expired requests submitted again, completion prompts for partly valid
 * answers, half price in the ledger, and restarts (Ctrl+C, kill -9, a crash during the create
 * call) that re-attach instead of submitting twice; `mozart cancel` cancels at the API.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { errored, expired, ok, promptOf, rateLimited, startFakeAnthropic, succeeded, type BatchOptions, type FakeAnthropic, type FakeReply } from "../fixtures/fake-anthropic.ts";
import { sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";

const KEY = { ANTHROPIC_API_KEY: "sk-test", ANTHROPIC_BASE_URL: "http://127.0.0.1:9" };
const USAGE = { input_tokens: 1000, output_tokens: 1000 };
/** Sonnet at half price: (1000·$3 + 1000·$15) / 1M / 2. */
const ITEM_COST = 0.009;
/** A static part long enough to be cached. */
const CONTEXT = "Context for every batch. ".repeat(60);

const creates = (api: FakeAnthropic) => api.calls("POST", "/v1/messages/batches");
const cancels = (api: FakeAnthropic) => api.calls("POST", /^\/v1\/messages\/batches\/[^/]+\/cancel$/);
const batchNumOf = (custom_id: string) => Number(/^b(\d+)-/.exec(custom_id)![1]);

interface Status {
  status: string;
  cost_usd: number;
  progress: { completed: number; total: number };
  remote_batches: Array<{ id: string | null; status: string; requests: number; counts: Record<string, number> | null }>;
  batches: Array<{ batch_num: number; status: string; attempts: number; error: string | null }>;
}
const status = (box: Sandbox) => box.status("test-job") as unknown as Status;

function batchJob(box: Sandbox, api: FakeAnthropic, extra: Record<string, unknown> = {}, backend: Record<string, unknown> = {}): string {
  return box.job({
    batch: { size: 1, total_items: 10 },
    backend: { type: "anthropic_batch", base_url: api.url, model: "claude-sonnet-4-5", max_tokens: 1000, poll_interval_seconds: 0.1, max_poll_interval_seconds: 0.3, ...backend },
    retry: { max_retries: 2, base_delay_seconds: 0.2, max_delay_seconds: 1, completion_delay_seconds: 0 },
    ...extra,
  });
}

async function until(check: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

let box: Sandbox;
let api: FakeAnthropic;
afterEach(async () => {
  box?.cleanup();
  await api?.close();
});

const answer = (custom_id: string) => `Answer for batch ${batchNumOf(custom_id)}. DONE`;
const fine: BatchOptions = { endAfterMs: 300, result: (item) => succeeded(answer(item.custom_id), { usage: USAGE }) };

describe("anthropic_batch", () => {
  for (const kind of ["sqlite", "json"] as Kind[]) {
    test(`${kind}: one create call for every pending batch; results mapped by custom_id, written, validated, half price`, async () => {
      api = await startFakeAnthropic([ok()], { batches: fine });
      box = sandbox(kind);
      const job = batchJob(box, api, {
        prompt: { template: `${CONTEXT}Batch {{ batch_num }} items {{ start_item }}-{{ end_item }}\n` },
        validations: [{ type: "content_contains", path: "batch{batch_num}-output.md", pattern: "DONE" }],
      });
      const r = await box.start(["run", job], KEY).done;
      expect(r.stderr).not.toContain("error:");
      expect(r.code).toBe(0);
      expect(creates(api)).toHaveLength(1);
      expect(api.batches[0]!.requests).toHaveLength(10);
      expect(api.calls("POST", "/v1/messages")).toHaveLength(0);
      for (let n = 1; n <= 10; n++) expect(readFileSync(join(box.dir, "ws", `batch${n}-output.md`), "utf8")).toBe(`Answer for batch ${n}. DONE`);
      const s = status(box);
      expect(s.status).toBe("completed");
      expect(s.batches.every((b) => b.attempts === 1)).toBe(true);
      expect(s.cost_usd).toBe(0.09);
      expect(s.remote_batches).toEqual([expect.objectContaining({ id: api.batches[0]!.id, status: "ended", requests: 10, counts: { processing: 0, succeeded: 10, errored: 0, canceled: 0, expired: 0 } })]);
      // The request body carries the prompt, its static part cached for an hour (the default for batches).
      const first = api.batches[0]!.requests.find((x) => batchNumOf(x.custom_id) === 1)!;
      expect(promptOf(first.params)).toBe(`${CONTEXT}Batch 1 items 1-1\n`);
      expect((first.params.messages![0] as { content: Array<{ type: string; text: string; cache_control?: unknown }> }).content[0]).toEqual({ type: "text", text: `${CONTEXT}Batch `, cache_control: { type: "ephemeral", ttl: "1h" } });
      // Progress is in the log and in status.
      const logs = box.run(["logs", "test-job"]).stdout;
      expect(logs).toMatch(/Message Batch msgbatch_fake0001 in_progress: 0\/10 done/);
      expect(logs).toMatch(/Message Batch msgbatch_fake0001 ended: 10\/10 done/);
      expect(box.run(["status", "test-job"]).stdout).toContain("msg batch  msgbatch_fake0001 ended: 10/10 done");
    });
  }

  test("requests_per_batch chunks the submission", async () => {
    api = await startFakeAnthropic([ok()], { batches: fine });
    box = sandbox("sqlite");
    const job = batchJob(box, api, {}, { requests_per_batch: 4 });
    expect((await box.start(["run", job], KEY).done).code).toBe(0);
    expect(api.batches.map((b) => b.requests.length)).toEqual([4, 4, 2]);
    expect(status(box).progress.completed).toBe(10);
  });

  test("a 429 on the create call holds every batch once; after the hold they go in one create again", async () => {
    api = await startFakeAnthropic([ok()], { batches: { ...fine, createError: (i) => (i === 0 ? (rateLimited(1) as Extract<FakeReply, { kind: "error" }>) : undefined) } });
    box = sandbox("sqlite");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 4 } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    const [refused, accepted] = creates(api);
    expect(creates(api)).toHaveLength(2);
    expect(accepted!.at - refused!.at).toBeGreaterThanOrEqual(950);
    expect(api.batches).toHaveLength(1);
    expect(api.batches[0]!.requests).toHaveLength(4);
    expect(status(box).progress.completed).toBe(4);
  });

  test("errored and expired requests are submitted again under the retry policy, not billed", async () => {
    api = await startFakeAnthropic([ok()], {
      batches: {
        endAfterMs: 200,
        result: (item, _i, batch) => {
          const n = batchNumOf(item.custom_id);
          if (batch.index === 0 && n === 2) return errored("overloaded_error", "Overloaded");
          if (batch.index === 0 && n === 3) return expired();
          return succeeded(answer(item.custom_id), { usage: USAGE });
        },
      },
    });
    box = sandbox("sqlite");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 5 } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(0);
    // The two go in one new Message Batch: retries that wake together are submitted together.
    expect(api.batches.map((b) => b.requests.map((x) => batchNumOf(x.custom_id)).sort())).toEqual([[1, 2, 3, 4, 5], [2, 3]]);
    const s = status(box);
    expect(s.batches.map((b) => [b.batch_num, b.status, b.attempts])).toEqual([
      [1, "completed", 1],
      [2, "completed", 2],
      [3, "completed", 2],
      [4, "completed", 1],
      [5, "completed", 1],
    ]);
    expect(s.cost_usd).toBe(5 * ITEM_COST);
    const attempts = JSON.parse(box.run(["status", "test-job", "--batch", "3", "--json"]).stdout).attempts;
    expect(attempts[0]).toMatchObject({ decision: "retry", reason: expect.stringContaining("expired") });
  });

  test("an invalid request fails its batch with the API's message, and is not submitted again", async () => {
    api = await startFakeAnthropic([ok()], {
      batches: { endAfterMs: 200, result: (item) => (batchNumOf(item.custom_id) === 2 ? errored("invalid_request_error", "messages.0.content: the prompt is empty") : succeeded(answer(item.custom_id), { usage: USAGE })) },
    });
    box = sandbox("json");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 3 } });
    const r = await box.start(["run", job], KEY).done;
    expect(r.code).toBe(1);
    expect(creates(api)).toHaveLength(1);
    const s = status(box);
    expect(s.batches.map((b) => b.status)).toEqual(["completed", "failed", "completed"]);
    expect(s.batches[1]!.error).toContain("messages.0.content: the prompt is empty");
  });

  test("an answer that fails its validations is submitted again with the completion prompt", async () => {
    api = await startFakeAnthropic([ok()], {
      batches: { endAfterMs: 200, result: (item, _i, batch) => succeeded(batch.index === 0 && batchNumOf(item.custom_id) === 1 ? "Answer, half done" : answer(item.custom_id), { usage: USAGE }) },
    });
    box = sandbox("json");
    const job = batchJob(box, api, {
      batch: { size: 1, total_items: 3 },
      validations: [
        { type: "file_exists", path: "batch{batch_num}-output.md" },
        { type: "content_contains", path: "batch{batch_num}-output.md", pattern: "Answer" },
        { type: "content_contains", path: "batch{batch_num}-output.md", pattern: "DONE", description: "the answer ends with DONE" },
      ],
    });
    expect((await box.start(["run", job], KEY).done).code).toBe(0);
    expect(creates(api)).toHaveLength(2);
    const again = api.batches[1]!.requests;
    expect(again.map((x) => batchNumOf(x.custom_id))).toEqual([1]);
    expect(promptOf(again[0]!.params)).toContain("COMPLETION MODE - Batch 1");
    expect(promptOf(again[0]!.params)).toContain("the answer ends with DONE");
    expect(status(box).batches.map((b) => b.attempts)).toEqual([2, 1, 1]);
  });

  for (const kind of ["sqlite", "json"] as Kind[]) {
    test(`${kind}: kill -9 while polling, then resume: the run re-attaches, zero new create calls`, async () => {
      api = await startFakeAnthropic([ok()], { batches: { endAfterMs: 2500, result: fine.result } });
      box = sandbox(kind);
      const job = batchJob(box, api);
      const run = box.start(["run", job], KEY);
      await until(() => api.calls("GET", /^\/v1\/messages\/batches\/msgbatch_/).length >= 2, "polling");
      run.child.kill("SIGKILL");
      await run.done;
      const r = await box.start(["resume", "test-job"], KEY).done;
      expect(r.stderr).not.toContain("error:");
      expect(r.code).toBe(0);
      expect(creates(api)).toHaveLength(1);
      const s = status(box);
      expect(s.status).toBe("completed");
      // The re-attached attempt is the same attempt: each batch was asked once.
      expect(s.batches.every((b) => b.attempts === 1)).toBe(true);
      expect(s.cost_usd).toBe(0.09);
      for (let n = 1; n <= 10; n++) expect(readFileSync(join(box.dir, "ws", `batch${n}-output.md`), "utf8")).toContain(`Answer for batch ${n}.`);
    });
  }

  test("Ctrl+C while polling leaves the attempts detached; resume picks them up without submitting again", async () => {
    api = await startFakeAnthropic([ok()], { batches: { endAfterMs: 2000, result: fine.result } });
    box = sandbox("sqlite");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 4 } });
    const run = box.start(["run", job], KEY);
    await until(() => api.calls("GET", /^\/v1\/messages\/batches\/msgbatch_/).length >= 1, "polling");
    run.child.kill("SIGINT");
    const stopped = await run.done;
    expect(stopped.code).toBe(130);
    const attempt = JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout).attempts[0];
    expect(attempt).toMatchObject({ decision: "detached", remote: { id: api.batches[0]!.id } });
    expect((await box.start(["resume", "test-job"], KEY).done).code).toBe(0);
    expect(creates(api)).toHaveLength(1);
    expect(status(box).progress.completed).toBe(4);
  });

  test("a crash while the create call is in flight: resume finds the Message Batch by listing, and submits nothing again", async () => {
    api = await startFakeAnthropic([ok()], { batches: { createDelayMs: 1500, endAfterMs: 500, result: fine.result } });
    box = sandbox("sqlite");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 3 } });
    const run = box.start(["run", job], KEY);
    await until(() => api.batches.length === 1, "the create call");
    run.child.kill("SIGKILL");
    await run.done;
    const r = await box.start(["resume", "test-job"], KEY).done;
    expect(r.code).toBe(0);
    expect(creates(api)).toHaveLength(1);
    expect(api.calls("GET", "/v1/messages/batches").length).toBeGreaterThan(0);
    expect(status(box).batches.map((b) => [b.status, b.attempts])).toEqual([
      ["completed", 1],
      ["completed", 1],
      ["completed", 1],
    ]);
  });

  test("mozart cancel calls the cancel endpoint; a resume collects what finished and submits the canceled rest", async () => {
    const options: BatchOptions = { endAfterMs: 60_000, result: fine.result };
    api = await startFakeAnthropic([ok()], { batches: options });
    box = sandbox("sqlite");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 3 } });
    const run = box.start(["run", job], KEY);
    await until(() => api.calls("GET", /^\/v1\/messages\/batches\/msgbatch_/).length >= 1, "polling");
    // Async: the fake API lives in this process, whose event loop must keep running.
    const c = await box.start(["cancel", "test-job", "--wait"]).done;
    expect(c.code).toBe(0);
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(cancels(api)).toHaveLength(1);
    expect(status(box).status).toBe("cancelled");
    // The canceled requests come back canceled and go in a new Message Batch, which ends soon.
    options.endAfterMs = 200;
    expect((await box.start(["resume", "test-job"], KEY).done).code).toBe(0);
    expect(creates(api)).toHaveLength(2);
    expect(status(box).progress.completed).toBe(3);
  });

  test("mozart cancel of a job no runner watches (left detached by Ctrl+C) still cancels its Message Batch at the API", async () => {
    const options: BatchOptions = { endAfterMs: 60_000, result: fine.result };
    api = await startFakeAnthropic([ok()], { batches: options });
    box = sandbox("json");
    const job = batchJob(box, api, { batch: { size: 1, total_items: 2 } });
    const run = box.start(["run", job], KEY);
    await until(() => api.calls("GET", /^\/v1\/messages\/batches\/msgbatch_/).length >= 1, "polling");
    run.child.kill("SIGINT");
    expect((await run.done).code).toBe(130);
    expect(cancels(api)).toHaveLength(0);
    const c = await box.start(["cancel", "test-job"], KEY).done;
    expect(c.code).toBe(0);
    expect(c.stdout).toContain("asked the API to cancel 1 Message Batch");
    expect(cancels(api)).toHaveLength(1);
    expect(status(box).status).toBe("cancelled");
    options.endAfterMs = 200;
    expect((await box.start(["resume", "test-job"], KEY).done).code).toBe(0);
    expect(status(box).progress.completed).toBe(2);
  });

  test("a missing key: exit 2 before anything is submitted", async () => {
    api = await startFakeAnthropic([ok()], { batches: fine });
    box = sandbox("json");
    const job = batchJob(box, api, {}, { api_key_env: "NO_SUCH_KEY" });
    const r = await box.start(["run", job], {}).done;
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("NO_SUCH_KEY");
    expect(api.requests).toHaveLength(0);
  });
});
