/**
 * Notifications of real runs (`mozart run`, `resume`, `run --join` of small offline jobs with
 * the `command` backend) to a real receiver: receivers that hang or fail cost a run at most the
 * documented 5 s at its end, 5xx is retried and 4xx is not, a resumed run notifies, a joining
 * runner sends no second job_start, and desktop notifications go through notify-send on PATH.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FLUSH_TIMEOUT_MS } from "../../src/notify/index.ts";
import { WebhookPayloadSchema, type WebhookPayload } from "../../src/notify/payload.ts";
import { commandBackend, sandbox, type Sandbox } from "./engine-helpers.ts";
import { startReceiver, type Receiver } from "./receiver.ts";
import { waitFor, xsandbox, type XSandbox } from "./xproc-helpers.ts";

let rx: Receiver;
beforeAll(async () => {
  rx = await startReceiver();
});
afterAll(() => rx.close());

let box: Sandbox | undefined;
let xbox: XSandbox | undefined;
afterEach(async () => {
  box?.cleanup();
  box = undefined;
  await xbox?.cleanup();
  xbox = undefined;
  rx.reset();
});

const hook = (path: string, on_events: string[], config: Record<string, unknown> = {}) => ({ type: "webhook", on_events, config: { url: `${rx.url}${path}`, ...config } });
const bodies = (path: string): WebhookPayload[] => rx.on(path).map((r) => WebhookPayloadSchema.parse(r.body));
const events = (path: string) => bodies(path).map((b) => b.event);

/** A small offline job: 3 batches that succeed at once, no pause between them. */
const small = (notifications: unknown[]) => ({ batch: { size: 1, total_items: 3 }, backend: commandBackend("true"), notifications });

async function timedRun(b: Sandbox, job: string) {
  const started = Date.now();
  const r = await b.start(["run", job]).done;
  return { ...r, ms: Date.now() - started };
}

describe("a slow or broken receiver never holds a run up beyond the documented bound", () => {
  test(
    "hanging and failing receivers: at most FLUSH_TIMEOUT_MS more than the same run without notifications; 500 retried, 400 not",
    async () => {
      expect(FLUSH_TIMEOUT_MS).toBe(5000);
      box = sandbox("sqlite");
      const baseline = await timedRun(box, box.job(small([]), "plain.yaml"));
      expect(baseline.code).toBe(0);
      box.cleanup();

      rx.plan("/hang", [[0, 0]]);
      box = sandbox("sqlite");
      const hung = await timedRun(box, box.job(small([hook("/hang", ["job_start", "batch_complete", "job_complete"], { timeout: 30, max_retries: 2 })])));
      expect(hung.code).toBe(0);
      expect(hung.stderr).toContain(`still unsent after ${FLUSH_TIMEOUT_MS} ms`);
      expect(rx.on("/hang").length).toBeGreaterThanOrEqual(1);
      // Generous: CI is a noisy 2-core machine; the point is "seconds", not "30 s × 3 tries".
      expect(hung.ms - baseline.ms).toBeLessThan(FLUSH_TIMEOUT_MS + 6000);
      box.cleanup();

      rx.plan("/e500", [[500, 0]]);
      rx.plan("/e400", [[400, 0]]);
      box = sandbox("json");
      const failing = await timedRun(box, box.job(small([hook("/e500", ["job_complete"], { max_retries: 2, retry_delay: 0.2 }), hook("/e400", ["job_complete"], { max_retries: 2, retry_delay: 0.2 })])));
      expect(failing.code).toBe(0);
      expect(rx.on("/e500")).toHaveLength(3);
      expect(rx.on("/e400")).toHaveLength(1);
      expect(failing.stderr).toContain("webhook notification for job_complete failed after 3 tries: HTTP 500");
      expect(failing.stderr).toContain("webhook notification for job_complete failed: HTTP 400");
      expect(failing.ms - baseline.ms).toBeLessThan(FLUSH_TIMEOUT_MS + 6000);
    },
    90_000,
  );
});

describe("every way a run starts notifies", () => {
  test("a failed run, then `mozart resume`: both notify, with progress, cost and the next command", async () => {
    box = sandbox("sqlite");
    const job = box.job({
      batch: { size: 1, total_items: 3 },
      retry: { max_retries: 0 },
      backend: commandBackend(`[ "$MOZART_BATCH_NUM" != 2 ] || [ -e {job_dir}/ok ]`),
      notifications: [hook("/life", ["job_start", "batch_complete", "batch_failed", "job_failed", "job_complete"])],
    });
    const first = await box.start(["run", job]).done;
    expect(first.code).toBe(1);
    // A failed batch fails the job: batch 3 never starts.
    expect(events("/life").sort()).toEqual(["batch_complete", "batch_failed", "job_failed", "job_start"]);
    const failed = bodies("/life").find((b) => b.event === "job_failed")!;
    expect(failed.progress).toEqual({ completed: 1, failed: 1, total: 3 });
    expect(failed.next_commands).toEqual(["mozart status test-job", "mozart resume test-job"]);
    expect(failed.message).toContain("1/3 batches done, 1 failed, $0.00");
    const batchFailed = bodies("/life").find((b) => b.event === "batch_failed")!;
    expect(batchFailed.batch).toMatchObject({ number: 2, attempts: 1 });
    expect(batchFailed.next_commands).toEqual(["mozart status test-job --batch 2"]);
    rx.reset();

    writeFileSync(join(box.dir, "ok"), "");
    const resumed = await box.start(["resume", "test-job"]).done;
    expect(resumed.code).toBe(0);
    expect(events("/life").sort()).toEqual(["batch_complete", "batch_complete", "job_complete", "job_start"]);
    const start = bodies("/life").find((b) => b.event === "job_start")!;
    // The failed batch is pending again once the resume starts: 1 done, none failed, 2 to run.
    expect(start).toMatchObject({ resumed: true, to_run: 2, progress: { completed: 1, failed: 0, total: 3 } });
    expect(start.message).toStartWith("Resumed: 2 of 3 batches to run — 1/3 batches done, $0.00");
    expect(bodies("/life").filter((b) => b.event === "batch_complete").map((b) => b.batch?.number).sort()).toEqual([2, 3]);
    expect(bodies("/life").find((b) => b.event === "job_complete")).toMatchObject({ progress: { completed: 3, failed: 0, total: 3 }, next_commands: [] });
  }, 60_000);

  test("`mozart pause` during a run: job_paused says who and gives the resume command", async () => {
    xbox = xsandbox("sqlite");
    const job = xbox.job({
      batch: { size: 1, total_items: 4 },
      backend: commandBackend(`i=0; while [ ! -e {job_dir}/go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done`),
      notifications: [hook("/pause", ["job_paused"])],
    });
    const run = xbox.start(["run", job]);
    await waitFor("the first batch to start", () => xbox!.lines("calls.log").length >= 1);
    expect((await xbox.exec(["pause", "test-job"])).code).toBe(0);
    // The runner sees the request at its next control tick; only then may the batch end.
    await waitFor("the runner to see the pause", async () => (await xbox!.events("test-job")).some((e) => e.type === "control"), 30_000, 100);
    writeFileSync(join(xbox.dir, "go"), "");
    expect((await run.done).code).toBe(130);
    const [paused] = bodies("/pause");
    expect(paused?.reason).toStartWith("mozart pause from ");
    expect(paused?.progress.total).toBe(4);
    expect(paused?.next_commands).toEqual(["mozart resume test-job"]);
    expect(paused?.message).toContain("— continue: mozart resume test-job");
  }, 60_000);

  test("a runner that joins with --join sends no second job_start; the job's end is notified once", async () => {
    xbox = xsandbox("sqlite");
    const job = xbox.job({
      concurrency: 1,
      batch: { size: 1, total_items: 6 },
      // Every batch waits for `go`, written once both runners hold the job, so both work on it.
      backend: commandBackend(`i=0; while [ ! -e {job_dir}/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; sleep 0.1`),
      notifications: [hook("/join", ["job_start", "batch_complete", "job_complete"])],
    });
    const first = xbox.start(["run", job]);
    await waitFor("the first runner to start a batch", () => xbox!.lines("calls.log").length >= 1);
    const second = xbox.start(["run", "--join", job]);
    await waitFor("the second runner to join", async () => (await xbox!.events("test-job")).some((e) => e.type === "job_start" && e.mode === "join"), 30_000, 200);
    writeFileSync(join(xbox.dir, "go"), "");
    const [a, b] = await Promise.all([first.done, second.done]);
    expect([a.code, b.code]).toEqual([0, 0]);
    const sent = events("/join");
    expect(sent.filter((e) => e === "job_start")).toHaveLength(1);
    expect(sent.filter((e) => e === "job_complete")).toHaveLength(1);
    const done = bodies("/join").filter((x) => x.event === "batch_complete").map((x) => x.batch?.number);
    expect([...done].sort()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(bodies("/join").find((x) => x.event === "job_complete")?.progress).toEqual({ completed: 6, failed: 0, total: 6 });
  }, 90_000);
});

describe("desktop notifications of a real run", () => {
  test("go through notify-send on PATH, one per event, with the run's wording", async () => {
    box = sandbox("sqlite");
    const bin = join(box.dir, "bin");
    mkdirSync(bin);
    const record = join(box.dir, "notify-send.log");
    writeFileSync(join(bin, "notify-send"), `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done >> '${record}'\necho '---' >> '${record}'\n`);
    chmodSync(join(bin, "notify-send"), 0o755);
    const job = box.job(small([{ type: "desktop", on_events: ["job_start", "batch_complete", "job_complete"], config: { app_name: "Mozart test", timeout: 3 } }]));
    const r = await box.start(["run", job], { PATH: `${bin}:${process.env.PATH ?? ""}` }).done;
    expect(r.code).toBe(0);
    expect(r.stderr).not.toContain("notification");
    const calls = readFileSync(record, "utf8").split("---\n").filter(Boolean).map((c) => c.trimEnd().split("\n"));
    expect(calls).toHaveLength(5);
    for (const c of calls) expect(c.slice(0, 3)).toEqual(["--app-name=Mozart test", "--expire-time=3000", "--"]);
    const titles = calls.map((c) => c[3]).sort();
    expect(titles).toEqual(["Mozart: test-job batch 1 done", "Mozart: test-job batch 2 done", "Mozart: test-job batch 3 done", "Mozart: test-job completed", "Mozart: test-job started"]);
    expect(calls.find((c) => c[3] === "Mozart: test-job completed")?.[4]).toMatch(/^Completed in \d+s — 3\/3 batches done, \$0\.00$/);
  }, 60_000);

  test("without notify-send: one warning for the whole run, not one per event", async () => {
    box = sandbox("json");
    const empty = join(box.dir, "empty-bin");
    mkdirSync(empty);
    const job = box.job(small([{ type: "desktop", on_events: ["job_start", "batch_start", "batch_complete", "job_complete"] }]));
    const r = await box.start(["run", job], { PATH: empty }).done;
    expect(r.code).toBe(0);
    const warnings = r.stderr.split("\n").filter((l) => l.includes("notify-send"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("notify-send is not installed");
  }, 60_000);
});
