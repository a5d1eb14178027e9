/**
 * The engine with the anthropic_api backend against the fake Messages API over real HTTP, and
 * notifications delivered end to end to a local webhook receiver.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ok, rateLimited, startFakeAnthropic, unauthorized, type FakeAnthropic } from "../fixtures/fake-anthropic.ts";
import { commandBackend, sandbox, type Sandbox } from "./engine-helpers.ts";

describe("engine with anthropic_api", () => {
  let box: Sandbox;
  let api: FakeAnthropic;
  afterEach(async () => {
    box?.cleanup();
    await api?.close();
  });

  test("runs every batch through the Messages API; a 429 with retry-after holds, then succeeds", async () => {
    api = await startFakeAnthropic([ok("answer one"), rateLimited(1), ok("answer two")]);
    box = sandbox("sqlite");
    const job = box.job({ batch: { size: 5, total_items: 10 }, backend: { type: "anthropic_api", model: "claude-sonnet-4-20250514", max_tokens: 100 } });
    // async: the fake API lives in this process, so the test must not block its event loop
    const r = await box.start(["run", job], { ANTHROPIC_BASE_URL: api.url, ANTHROPIC_API_KEY: "sk-test" }).done;
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    expect(api.requests).toHaveLength(3);
    expect(JSON.stringify(api.requests[0]!.body)).toContain("Batch 1 items 1-5");
    const s = box.status("test-job");
    expect(s.rate_limit_waits).toBe(1);
    expect(s.batches.map((b) => b.status)).toEqual(["completed", "completed"]);
  });

  test("a bad key fails fast with no retry", async () => {
    api = await startFakeAnthropic([unauthorized()]);
    box = sandbox("json");
    const job = box.job({ backend: { type: "anthropic_api" }, retry: { max_retries: 3, base_delay_seconds: 0.01, max_delay_seconds: 0.02 } });
    const r = await box.start(["run", job], { ANTHROPIC_BASE_URL: api.url, ANTHROPIC_API_KEY: "sk-wrong" }).done;
    expect(r.code).toBe(1);
    expect(api.requests).toHaveLength(1);
    expect(box.status("test-job").batches[0]!.error_category).toBe("auth");
  });


});

describe("notifications end to end", () => {
  let box: Sandbox;
  let server: Server;
  afterEach(() => {
    box?.cleanup();
    server?.close();
  });

  test("batch and job events reach a webhook; a dead webhook never fails the run", async () => {
    const received: Array<{ event: string; progress: Record<string, unknown>; job: Record<string, unknown> }> = [];
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        received.push(JSON.parse(body));
        res.end("ok");
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    box = sandbox("sqlite");
    const job = box.job({
      batch: { size: 1, total_items: 2 },
      backend: commandBackend("true"),
      notifications: [
        { type: "webhook", on_events: ["job_start", "batch_complete", "job_complete"], config: { url } },
        { type: "webhook", on_events: ["job_complete"], config: { url: "http://127.0.0.1:9/nothing-listens", max_retries: 0, timeout: 2 } },
      ],
    });
    const r = box.start(["run", job]);
    const done = await r.done;
    expect(done.code).toBe(0);
    // Sent side by side: arrival order is not guaranteed, only the set.
    expect(received.map((e) => e.event).sort()).toEqual(["batch_complete", "batch_complete", "job_complete", "job_start"]);
    const complete = received.find((e) => e.event === "job_complete")!;
    expect(complete.job).toMatchObject({ id: "test-job" });
    expect(complete.progress).toEqual({ completed: 2, failed: 0, total: 2 });
  });
});
