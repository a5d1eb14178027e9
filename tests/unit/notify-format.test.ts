/** The one wording of notifications, and the feed that turns a run's events into them. */
import { describe, expect, test } from "bun:test";
import { describeEvent, type NotifyContext } from "../../src/notify/format.ts";
import { createNotificationFeed } from "../../src/notify/index.ts";
import type { EventPayload, StoredEvent } from "../../src/state/events.ts";
import { formatTime } from "../../src/time.ts";

const at = "2026-05-01T12:47:00.000Z";
const ctx = (over: Partial<NotifyContext> = {}): NotifyContext => ({
  job_id: "my-job",
  job_name: "my-job",
  timestamp: at,
  total_batches: 20,
  completed: 12,
  failed: 0,
  cost_usd: 3.1,
  ...over,
});
const hold = { until: "2026-05-01T15:00:00.000Z", reason: "usage limit" };
const resumeAt = formatTime(Date.parse(hold.until));

describe("every message says what happened, the progress, the cost and what to run next", () => {
  test("paused during a hold: the hold's end, how long until then, and the resume command", () => {
    const n = describeEvent("job_paused", ctx({ reason: "Ctrl+C", hold }));
    expect(n.text).toBe(`Paused: Ctrl+C; on hold until ${resumeAt} (in 2h13m) — 12/20 batches done, $3.10 — continue: mozart resume my-job`);
    expect(n.title).toBe("Mozart: my-job paused");
    expect(n.next).toEqual([{ label: "continue", command: "mozart resume my-job" }]);
  });

  test("on hold: the backend's reason, when work starts again, and that it continues by itself", () => {
    const n = describeEvent("rate_limit_hold", ctx({ batch: { number: 13 }, hold }));
    expect(n.text).toBe(`On hold: usage limit; resumes ${resumeAt} (in 2h13m) — 12/20 batches done, $3.10 — continues by itself; watch: mozart status my-job --watch`);
  });

  test("failed: the error, the failed count, where to look and how to continue", () => {
    const n = describeEvent("job_failed", ctx({ failed: 2, error: "batch 7 failed: validation output/7.md missing" }));
    expect(n.text).toBe("Failed: batch 7 failed: validation output/7.md missing — 12/20 batches done, 2 failed, $3.10 — why: mozart status my-job; after fixing it: mozart resume my-job");
  });

  test("cancelled: who asked, and that it can still be resumed", () => {
    const n = describeEvent("job_cancelled", ctx({ reason: "mozart cancel from alice@build-1" }));
    expect(n.text).toBe("Cancelled: mozart cancel from alice@build-1 — 12/20 batches done, $3.10 — continue anyway: mozart resume my-job");
  });

  test("completed: how long it took and what it cost; nothing to run", () => {
    const n = describeEvent("job_complete", ctx({ completed: 20, duration_seconds: 3 * 3600 + 5 * 60, cost_usd: 4.2 }));
    expect(n.text).toBe("Completed in 3h05m — 20/20 batches done, $4.20");
    expect(n.next).toEqual([]);
  });

  test("job start, resumed, and batches", () => {
    expect(describeEvent("job_start", ctx({ completed: 0, cost_usd: 0, to_run: 20, resumed: false })).text).toBe("Started: 20 batches to run — 0/20 batches done, $0.00 — follow: mozart logs my-job -f");
    expect(describeEvent("job_start", ctx({ to_run: 8, resumed: true })).title).toBe("Mozart: my-job resumed");
    expect(describeEvent("job_start", ctx({ to_run: 8, resumed: true })).headline).toBe("Resumed: 8 of 20 batches to run");
    expect(describeEvent("batch_start", ctx({ batch: { number: 13, start_item: 121, end_item: 130 } })).headline).toBe("Batch 13/20 started (items 121–130)");
    expect(describeEvent("batch_complete", ctx({ batch: { number: 13, attempts: 2, duration_seconds: 62, cost_usd: 0.0042 } })).headline).toBe("Batch 13/20 done in 1m02s after 2 attempts ($0.0042)");
    const failed = describeEvent("batch_failed", ctx({ failed: 1, batch: { number: 13, attempts: 3 }, error: "exit code 1" }));
    expect(failed.text).toBe("Batch 13/20 failed after 3 attempts: exit code 1 — 12/20 batches done, 1 failed, $3.10 — details: mozart status my-job --batch 13");
  });

  test("a job name that needs quoting is quoted in commands, and a test sample says so in its title", () => {
    const n = describeEvent("job_paused", ctx({ job_id: "my job", job_name: "my job", reason: "SIGTERM", test: true }));
    expect(n.next[0]?.command).toBe("mozart resume 'my job'");
    expect(n.title).toBe("[test] Mozart: my job paused");
  });

  test("outside text (a backend's error) is one clean line of at most 100 characters", () => {
    const n = describeEvent("job_failed", ctx({ error: `\x1b]0;pwned\x07bad\r\n${"e".repeat(300)}` }));
    const error = n.headline.slice("Failed: ".length);
    expect(error.length).toBe(100);
    expect(error.startsWith("bad e")).toBe(true);
    expect(error.endsWith("…")).toBe(true);
    expect(n.text).not.toMatch(/[\x00-\x1f]/);
  });
});

describe("the notification feed of a run", () => {
  let seq = 0;
  const ev = (p: EventPayload, when = at): StoredEvent => ({ ...p, seq: ++seq, at: when, job_id: "my-job" }) as StoredEvent;
  const start = { job_id: "my-job", job_name: "my-job", total_batches: 4, completed: 1, failed: 0, cost_usd: 0.5 };
  const jobStart = (mode: "run" | "resume" | "join", extra: Partial<Extract<EventPayload, { type: "job_start" }>> = {}) =>
    ev({ type: "job_start", runner: "r", mode, total_batches: 4, to_run: 3, completed: 1, resumed: true, concurrency: 1, pause_between_ms: 0, ...extra });

  test("carries progress and cost forward: attempts' costs, completions, failures", () => {
    const feed = createNotificationFeed(start);
    expect(feed(jobStart("resume"))).toEqual(["job_start", expect.objectContaining({ completed: 1, cost_usd: 0.5, to_run: 3, resumed: true })]);
    expect(feed(ev({ type: "batch_start", batch_num: 2, start_item: 2, end_item: 2, runner: "r" }))?.[1]).toMatchObject({ batch: { number: 2, start_item: 2, end_item: 2 } });
    expect(feed(ev({ type: "attempt_end", batch_num: 2, attempt: 1, decision: "complete", reason: "", duration_ms: 1000, exit_code: 0, cost_usd: 0.25, output_tail: "" }))).toBeUndefined();
    expect(feed(ev({ type: "batch_complete", batch_num: 2, attempts: 1, duration_ms: 1000, cost_usd: 0.25 }))?.[1]).toMatchObject({ completed: 2, cost_usd: 0.75, batch: { number: 2, duration_seconds: 1 } });
    feed(ev({ type: "attempt_end", batch_num: 3, attempt: 1, decision: "fail", reason: "x", duration_ms: 10, exit_code: 1, cost_usd: 0.1, output_tail: "" }));
    expect(feed(ev({ type: "batch_failed", batch_num: 3, attempts: 1, error: { message: "boom", category: "transient" } }))?.[1]).toMatchObject({ failed: 1, cost_usd: 0.85, error: "boom" });
    expect(feed(ev({ type: "job_failed", completed: 2, failed: 1, total_batches: 4, error: "a batch failed", duration_ms: 5000, cost_usd: 0.9 }))).toEqual([
      "job_failed",
      expect.objectContaining({ completed: 2, failed: 1, cost_usd: 0.9, error: "a batch failed", duration_seconds: 5 }),
    ]);
  });

  test("a batch that could not be merged (isolation: worktree): its batch, the files, how to resolve and continue", () => {
    const feed = createNotificationFeed(start);
    const n = feed(ev({ type: "batch_conflict", batch_num: 3, files: ["src/app.ts"], message: "merge conflict in src/app.ts", resolve: ["cd /wt/batch-3", "git merge main", "mozart resume my-job"] }));
    expect(n).toEqual(["batch_conflict", expect.objectContaining({ batch: { number: 3 }, error: "merge conflict in src/app.ts" })]);
    expect(describeEvent("batch_conflict", n![1]).text).toBe(
      "Batch 3/4 could not be merged: merge conflict in src/app.ts — 1/4 batches done, $0.50 — how to resolve it: mozart status my-job; then: mozart resume my-job",
    );
    expect(describeEvent("batch_conflict", n![1]).title).toBe("Mozart: my-job batch 3 could not be merged");
    // Merged batches notify nothing.
    expect(feed(ev({ type: "batch_merged", batch_num: 2, commit: "abc", target: "main", strategy: "merge" }))).toBeUndefined();
  });

  test("a runner that joins says nothing of a start; its batches and the end are reported", () => {
    const feed = createNotificationFeed(start);
    expect(feed(jobStart("join"))).toBeUndefined();
    expect(feed(ev({ type: "batch_complete", batch_num: 4, attempts: 1, duration_ms: 10, cost_usd: 0 }))?.[0]).toBe("batch_complete");
    expect(feed(ev({ type: "job_complete", completed: 4, total_batches: 4, duration_ms: 10, cost_usd: 1 }))?.[1]).toMatchObject({ completed: 4, failed: 0, cost_usd: 1 });
  });

  test("a hold is remembered until it ends: a pause during it says when work would start again", () => {
    const feed = createNotificationFeed(start);
    const until = Date.parse("2026-05-01T15:00:00.000Z");
    expect(feed(ev({ type: "rate_limit_hold", batch_num: 2, until, reason: "usage limit", waits: 1 }))?.[1]).toMatchObject({ hold: { until: "2026-05-01T15:00:00.000Z", reason: "usage limit" }, batch: { number: 2 } });
    const by = { via: "signal" as const, host: "h", pid: 1, signal: "SIGINT" };
    const paused = feed(ev({ type: "job_paused", completed: 1, total_batches: 4, reason: "SIGINT: paused", by, cost_usd: 0.6 }));
    expect(paused?.[1]).toMatchObject({ reason: "Ctrl+C", cost_usd: 0.6, hold: { until: "2026-05-01T15:00:00.000Z" } });
    feed(ev({ type: "hold_end", batch_num: 2 }));
    const again = feed(ev({ type: "job_paused", completed: 1, total_batches: 4, reason: "paused on request", by: { via: "cli", host: "build-1", pid: 2, user: "alice" } }));
    expect(again?.[1]).toMatchObject({ reason: "mozart pause from alice@build-1", cost_usd: 0.6 });
    expect(again?.[1].hold).toBeUndefined();
  });

  test("a saved hold announced at the start is part of the start and of a pause", () => {
    const feed = createNotificationFeed(start);
    const until = Date.parse(at) + 60_000;
    expect(feed(jobStart("run", { hold: { until, reason: "usage limit", batch_num: 1 } }))?.[1].hold).toEqual({ until: new Date(until).toISOString(), reason: "usage limit" });
    expect(feed(ev({ type: "job_cancelled", completed: 1, total_batches: 4, by: { via: "cli", host: "h", pid: 3 } }))?.[1]).toMatchObject({ reason: "mozart cancel from h" });
  });
});
