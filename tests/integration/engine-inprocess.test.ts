/**
 * The engine in-process: startRun() against a real store in a temp folder (sqlite and json),
 * a scripted backend and a fake clock, so holds, backoff and spacing run in virtual time and a
 * 2-hour rate-limit hold takes no real time. What these tests read back is what `status` and
 * `logs` would show: the store's records and its event log.
 */
import { describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { requestControl, requester } from "../../src/engine/control.ts";
import { configHash } from "../../src/engine/job.ts";
import { jobReport } from "../../src/state/report.ts";
import { exitCodeOf, startRun } from "../../src/engine/start.ts";
import { EXIT, MozartError } from "../../src/errors.ts";
import { stateLocation } from "../../src/state/location.ts";
import { openStore } from "../../src/state/store.ts";
import type { StoredEvent } from "../../src/state/events.ts";
import { failed, type ScriptedBackend, type ScriptStep } from "../fixtures/fake-backend.ts";
import { until } from "../fixtures/fake-clock.ts";
import { afterThisTest, inProcessBench, prepare } from "./inprocess-bench.ts";
import type { Plain } from "../helpers.ts";

const HOUR = 3_600_000;
const JOB = "inproc";

type Kind = "sqlite" | "json";

const BASE: Plain = {
  name: JOB,
  workspace: "./ws",
  pause_between_batches_seconds: 0,
  batch: { size: 1, total_items: 3 },
  prompt: { template: "Batch {{ batch_num }} items {{ start_item }}-{{ end_item }}\n" },
  retry: { max_retries: 2, base_delay_seconds: 10, max_delay_seconds: 3600, exponential_base: 2, jitter: false, completion_delay_seconds: 5 },
};

const bench = (kind: Kind, over: Plain = {}) => inProcessBench(kind, BASE, over);

/** The events of one batch, by type. */
const typesOf = (events: StoredEvent[], batch: number) => events.filter((e) => "batch_num" in e && e.batch_num === batch).map((e) => e.type);
const ofType = <T extends StoredEvent["type"]>(events: StoredEvent[], type: T) => events.filter((e): e is Extract<StoredEvent, { type: T }> => e.type === type);

/** Rejects with the error startRun gave, as a MozartError. */
async function refusal(p: Promise<unknown>): Promise<MozartError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MozartError);
    return e as MozartError;
  }
  throw new Error("the run was expected to be refused");
}

/** The limit a claude_cli run reports when a rate_limit_event was rejected, reset at `resetsAt`. */
const limitHit = (resetsAt: () => number): ScriptStep => ({
  result: () => ({ exit_code: 1, claude: { is_error: true, result: "You've hit your limit", rate_limit_resets_at: resetsAt() } }),
});

for (const kind of ["sqlite", "json"] as const) {
  describe(`startRun in-process (${kind} state)`, () => {
    test("a 2-hour rate-limit hold is waited out in virtual time, recorded in the event log", async () => {
      const b = await bench(kind, { batch: { total_items: 2 } });
      const t0 = b.clock.now();
      const backend = b.backend({ 1: [limitHit(() => b.clock.now() + 2 * HOUR)] });
      const real = performance.now();
      const { result, events, seen } = await b.run(backend);
      const took = performance.now() - real;

      expect(result.outcome).toBe("completed");
      expect(exitCodeOf(result.outcome)).toBe(EXIT.ok);
      expect(took).toBeLessThan(15_000); // not two hours
      expect(backend.calls.map((c) => [c.batch, c.attempt])).toEqual([
        [1, 1],
        [1, 2],
        [2, 1],
      ]);
      // The second attempt came once the limit reset, and batch 2 did not start during the hold.
      expect(backend.calls[1]!.at).toBeGreaterThanOrEqual(t0 + 2 * HOUR);
      expect(backend.calls[2]!.at).toBeGreaterThanOrEqual(t0 + 2 * HOUR);

      expect(typesOf(events, 1)).toEqual(["batch_start", "attempt_start", "attempt_end", "rate_limit_hold", "hold_end", "attempt_start", "attempt_end", "batch_complete"]);
      const [hold] = ofType(events, "rate_limit_hold");
      expect(hold).toMatchObject({ batch_num: 1, until: t0 + 2 * HOUR, reason: "subscription session limit: You've hit your limit", limit: "session", waits: 1 });
      expect(ofType(events, "attempt_end")[0]).toMatchObject({ attempt: 1, decision: "hold" });
      expect(seen).toEqual(events);

      const b1 = (await b.store.getBatch(JOB, 1))!;
      expect(b1).toMatchObject({ status: "completed", attempts: 2, rate_limit_waits: 1 });
      expect(b1.held_ms!).toBeGreaterThanOrEqual(2 * HOUR);
      expect(b1.held_ms!).toBeLessThan(2 * HOUR + 5_000);
      // The hold costs no retry: a hold is not a retry attempt.
      const attempts = await b.store.listAttempts(JOB, 1);
      expect(attempts.map((a) => [a.attempt, a.mode, a.decision])).toEqual([
        [1, "normal", "hold"],
        [2, "normal", "success"],
      ]);
      expect(await b.store.getHold(JOB)).toBeNull();
      expect(result.summary).toMatchObject({ completed: 2, failed: 0, rate_limit_waits: 1 });
    });

    test("rate_limit_waits is the number of holds: per batch, in the summary, and in the event log", async () => {
      const b = await bench(kind, { batch: { total_items: 2 } });
      const later = () => b.clock.now() + 10 * 60_000;
      const backend = b.backend({ 1: [limitHit(later), limitHit(later), limitHit(later)], 2: [limitHit(later)] });
      const { result, events } = await b.run(backend);
      expect(result.outcome).toBe("completed");
      const holds = ofType(events, "rate_limit_hold");
      expect(holds.map((h) => [h.batch_num, h.waits])).toEqual([
        [1, 1],
        [1, 2],
        [1, 3],
        [2, 1],
      ]);
      expect((await b.store.getBatch(JOB, 1))!.rate_limit_waits).toBe(3);
      expect((await b.store.getBatch(JOB, 2))!.rate_limit_waits).toBe(1);
      expect(result.summary.rate_limit_waits).toBe(holds.length);
      const report = await jobReport(b.store, result.job);
      expect(report.rate_limit_waits).toBe(4);
    });

    test("exponential backoff in virtual time; after max_retries+1 attempts the batch and the job fail (exit 1)", async () => {
      const b = await bench(kind);
      const t0 = b.clock.now();
      const backend = b.backend({}, { result: failed("boom") });
      const { result, events } = await b.run(backend);

      expect(backend.calls.map((c) => [c.batch, c.attempt])).toEqual([
        [1, 1],
        [1, 2],
        [1, 3],
      ]);
      // base 10 s, then 20 s: the delays the retry policy computes, waited in virtual time.
      expect(backend.calls.map((c) => c.at - t0)).toEqual([0, 10_000, 30_000]);
      expect(ofType(events, "attempt_end").map((e) => [e.attempt, e.decision, e.retry_in_ms])).toEqual([
        [1, "retry", 10_000],
        [2, "retry", 20_000],
        [3, "retry", undefined],
      ]);

      expect(result.outcome).toBe("failed");
      expect(exitCodeOf(result.outcome)).toBe(1);
      expect(result.job.status).toBe("failed");
      expect(result.job.error).toBe("batch 1: failed after 3 attempts: exit code 1: boom");
      const b1 = (await b.store.getBatch(JOB, 1))!;
      expect(b1).toMatchObject({ status: "failed", attempts: 3, error: { message: "failed after 3 attempts: exit code 1: boom", category: "transient" } });
      const attempts = await b.store.listAttempts(JOB, 1);
      expect(attempts.map((a) => [a.attempt, a.mode])).toEqual([
        [1, "normal"],
        [2, "retry"],
        [3, "retry"],
      ]);
      expect(ofType(events, "batch_failed")).toHaveLength(1);
      expect(events.at(-1)).toMatchObject({ type: "job_failed", failed: 1, completed: 0, error: "batch 1: failed after 3 attempts: exit code 1: boom" });
      // A failed batch stops the job before batch 2.
      expect(await b.store.getBatch(JOB, 2)).toBeNull();
    });

    test("completion mode: partial validations → a completion prompt with the original task and what failed → success", async () => {
      const b = await bench(kind, {
        batch: { total_items: 1 },
        validations: [
          { type: "file_exists", path: "out/{batch_num}-a.txt", description: "part A" },
          { type: "file_exists", path: "out/{batch_num}-b.txt", description: "part B" },
          { type: "content_contains", path: "out/{batch_num}-c.txt", pattern: "DONE", description: "part C says DONE" },
        ],
      });
      const backend = b.backend({
        1: [
          { files: { "out/1-a.txt": "a", "out/1-b.txt": "b" } },
          { files: { "out/1-c.txt": "DONE" } },
        ],
      });
      const { result, events } = await b.run(backend);

      expect(result.outcome).toBe("completed");
      expect(backend.calls.map((c) => c.attempt)).toEqual([1, 2]);
      const [first, second] = backend.calls;
      expect(first!.prompt).toBe("Batch 1 items 1-1\n");
      expect(second!.prompt).toContain("COMPLETION MODE - Batch 1");
      expect(second!.prompt).toContain("Batch 1 items 1-1");
      expect(second!.prompt).toContain("part C says DONE");
      expect(second!.prompt).toContain("part A");
      const [, incomplete] = second!.prompt.split("### INCOMPLETE ITEMS");
      expect(incomplete!.split("###")[0]).toContain("part C says DONE");
      expect(incomplete!.split("###")[0]).not.toContain("part A");

      const ends = ofType(events, "attempt_end");
      expect(ends.map((e) => [e.decision, e.validations, e.retry_in_ms])).toEqual([
        ["validation_failed", { passed: 2, total: 3 }, 5_000],
        ["success", { passed: 3, total: 3 }, undefined],
      ]);
      expect(ofType(events, "attempt_start").map((e) => e.mode)).toEqual(["normal", "completion"]);
      const b1 = (await b.store.getBatch(JOB, 1))!;
      expect(b1).toMatchObject({ status: "completed", attempts: 2, completion_attempts: 1, validation_passed: true });
      // The stored prompt of the completion attempt is the one the backend got.
      const attempts = await b.store.listAttempts(JOB, 1);
      expect(await b.store.getBlob(attempts[1]!.prompt_blob)).toBe(second!.prompt);
    });

    test("the event log is complete and gap-free, and listeners get exactly the stored events", async () => {
      const b = await bench(kind, { batch: { total_items: 3 } });
      const backend = b.backend({ 2: [{ result: failed("flaky"), output: "half way\n" }, { output: "all done\n" }] }, { output: "working\n" });
      const { result, events, seen } = await b.run(backend);
      expect(result.outcome).toBe("completed");

      const all = await b.events();
      expect(all).toEqual(events);
      expect(all.map((e) => e.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
      expect(all[0]!.type).toBe("job_start");
      expect(all.at(-1)!.type).toBe("job_complete");
      expect(all.every((e) => e.job_id === JOB)).toBe(true);
      expect(typesOf(all, 1)).toEqual(["batch_start", "attempt_start", "output", "attempt_end", "batch_complete"]);
      expect(typesOf(all, 2)).toEqual(["batch_start", "attempt_start", "output", "attempt_end", "attempt_start", "output", "attempt_end", "batch_complete"]);
      expect(typesOf(all, 3)).toEqual(["batch_start", "attempt_start", "output", "attempt_end", "batch_complete"]);
      // One batch after the other: nothing of batch 2 before batch 1 completed.
      const firstOf = (n: number) => all.findIndex((e) => "batch_num" in e && e.batch_num === n);
      const lastOf = (n: number) => all.findLastIndex((e) => "batch_num" in e && e.batch_num === n);
      expect(lastOf(1)).toBeLessThan(firstOf(2));
      expect(lastOf(2)).toBeLessThan(firstOf(3));
      expect(ofType(all, "output").map((e) => e.text)).toEqual(["working\n", "half way\n", "all done\n", "working\n"]);

      expect(seen).toEqual(all);
    });

    test("stop() during a retry backoff ends paused with the batch handed back", async () => {
      const b = await bench(kind);
      const backend = b.backend({ 1: [{ result: failed("boom") }] });
      b.clock.onSleep((ms) => {
        if (ms === 10_000) b.current!.stop(requester("cli"));
      });
      const { result, events } = await b.run(backend);

      expect(result.outcome).toBe("paused");
      expect(exitCodeOf(result.outcome)).toBe(EXIT.paused);
      expect(backend.calls).toHaveLength(1);
      expect(b.clock.sleeps.find((s) => s.ms === 10_000)?.ran).toBe(false);
      const b1 = (await b.store.getBatch(JOB, 1))!;
      expect(b1).toMatchObject({ status: "pending", attempts: 1, owner: null });
      expect(typesOf(events, 1)).toEqual(["batch_start", "attempt_start", "attempt_end", "batch_released"]);
      expect(ofType(events, "batch_released")[0]).toMatchObject({ batch_num: 1, reason: "paused on request" });
      expect(events.at(-1)).toMatchObject({ type: "job_paused", completed: 0, reason: "paused on request", by: { via: "cli" } });
      expect(result.job.status).toBe("paused");
      expect(result.job.stopped_by).toMatchObject({ via: "cli" });

      // A resume goes on with the batch's next attempt number.
      const next = b.backend({}, {});
      const again = await b.run(next, { command: "resume" });
      expect(again.result.outcome).toBe("completed");
      expect(next.calls.map((c) => [c.batch, c.attempt])).toEqual([
        [1, 2],
        [2, 1],
        [3, 1],
      ]);
    });

    test("kill() during an attempt aborts the backend's signal, records the attempt interrupted, ends paused", async () => {
      const b = await bench(kind);
      const backend = b.backend({ 1: [{ waitForAbort: true, onStart: () => b.current!.kill(requester("cli")) }] });
      const { result, events } = await b.run(backend);

      expect(result.outcome).toBe("paused");
      expect(backend.calls).toHaveLength(1);
      expect(backend.calls[0]!.signal.aborted).toBe(true);
      expect(backend.calls[0]!.aborted).toBe(true);
      const [a1] = await b.store.listAttempts(JOB, 1);
      expect(a1).toMatchObject({ attempt: 1, interrupted: true, decision: "interrupted" });
      const b1 = (await b.store.getBatch(JOB, 1))!;
      expect(b1).toMatchObject({ status: "pending", attempts: 1 });
      expect(typesOf(events, 1)).toEqual(["batch_start", "attempt_start", "attempt_end", "batch_released"]);
      expect(ofType(events, "batch_released")[0]!.reason).toBe("stopped at once on request");
      expect(events.at(-1)).toMatchObject({ type: "job_paused", reason: "stopped at once on request" });
      expect(await b.store.getBatch(JOB, 2)).toBeNull();
    });

    test("a pause written by another store handle reaches the run within about a second", async () => {
      const b = await bench(kind, { batch: { total_items: 20 } });
      const backend = b.backend({}, { takesMs: 100 });
      const { done, seen } = b.start(backend);
      await until(() => backend.calls.length >= 1, 10_000, "the first attempt");
      const other = await openStore({ kind: b.job.config.state_backend, location: stateLocation(b.job.config) });
      afterThisTest(() => other.close());
      const asked = performance.now();
      await requestControl(other, JOB, "pause", requester("dashboard"));
      const result = await done;
      const took = performance.now() - asked;

      expect(result.outcome).toBe("paused");
      expect(took).toBeLessThan(5_000);
      expect(result.summary.completed).toBeLessThan(20);
      expect(result.by).toMatchObject({ via: "dashboard" });
      const events = await b.events();
      expect(ofType(events, "control")[0]).toMatchObject({ request: "pause", by: { via: "dashboard" } });
      expect(events.at(-1)).toMatchObject({ type: "job_paused", by: { via: "dashboard" } });
      expect(seen).toEqual(events);
      // The attempt that ran when the pause came was let finish.
      expect(backend.calls.every((c) => !c.aborted)).toBe(true);
      expect((await other.getJob(JOB))!.status).toBe("paused");
    });

    test("a cancel written by another store handle stops running attempts and ends cancelled", async () => {
      const b = await bench(kind, { batch: { total_items: 5 } });
      const backend = b.backend({}, { waitForAbort: true });
      const { done, seen } = b.start(backend);
      await until(() => backend.calls.length >= 1, 10_000, "the first attempt");
      const other = await openStore({ kind: b.job.config.state_backend, location: stateLocation(b.job.config) });
      afterThisTest(() => other.close());
      const asked = performance.now();
      await requestControl(other, JOB, "cancel", requester("cli"));
      const result = await done;

      expect(performance.now() - asked).toBeLessThan(5_000);
      expect(result.outcome).toBe("cancelled");
      expect(exitCodeOf(result.outcome)).toBe(EXIT.paused);
      expect(backend.calls).toHaveLength(1);
      expect(backend.calls[0]!.aborted).toBe(true);
      expect(result.job.status).toBe("cancelled");
      const events = await b.events();
      expect(events.at(-1)).toMatchObject({ type: "job_cancelled", by: { via: "cli" } });
      expect(seen).toEqual(events);
      expect(ofType(events, "batch_released")[0]).toMatchObject({ batch_num: 1 });
      expect((await b.store.getBatch(JOB, 1))!.status).toBe("pending");
    });

    test("a fail_job decision (not signed in) fails the job at once and starts no more batches", async () => {
      const b = await bench(kind, { retry: { max_retries: 5 } });
      const backend = b.backend({ 1: [{ result: failed("Not logged in · Please run /login") }] });
      const { result, events } = await b.run(backend);

      expect(result.outcome).toBe("failed");
      expect(exitCodeOf(result.outcome)).toBe(1);
      expect(backend.batches()).toEqual([1]);
      const b1 = (await b.store.getBatch(JOB, 1))!;
      expect(b1).toMatchObject({ status: "failed", attempts: 1, error: { category: "auth" } });
      expect(b1.error!.message).toContain("Not logged in");
      expect(b1.error!.message).toContain("/login");
      expect(result.job.error).toContain("Not logged in");
      expect(ofType(events, "attempt_end")[0]).toMatchObject({ decision: "fail_job" });
      expect(events.filter((e) => e.type === "batch_start")).toHaveLength(1);
      expect(events.at(-1)!.type).toBe("job_failed");
      expect(await b.store.getBatch(JOB, 2)).toBeNull();
    });

    test("concurrency 3 with pause_between_batches_seconds: at most 3 at once, starts spaced in virtual time", async () => {
      const b = await bench(kind, { concurrency: 3, pause_between_batches_seconds: 10, batch: { total_items: 7 } });
      let backend: ScriptedBackend;
      // The first three hold each other open until all three run, so the cap is reached whatever the machine's speed.
      let allThree = false;
      const together: ScriptStep = { onStart: () => until(() => (allThree ||= backend.running >= 3), 10_000, "three attempts at once") };
      backend = b.backend({ 1: [together], 2: [together], 3: [together] }, {});
      // The exact spacing of starts is the scheduler's, tested in tests/unit/scheduler.test.ts. Here:
      // what a batch records after its start takes real time, during which the virtual clock may
      // move on, so an attempt is called at or after its start: the seventh no earlier than 60 s in.
      const t0 = b.clock.now();
      const { result, events } = await b.run(backend);

      expect(result.outcome).toBe("completed");
      expect(backend.maxRunning).toBe(3);
      expect(backend.batches().sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7]);
      const calls = backend.calls.map((c) => c.at).sort((x, y) => x - y);
      for (let i = 1; i < calls.length; i++) expect(calls[i]! - t0).toBeGreaterThanOrEqual(i * 10_000);
      expect(events[0]).toMatchObject({ type: "job_start", concurrency: 3, pause_between_ms: 10_000, to_run: 7 });
      expect(ofType(events, "batch_complete")).toHaveLength(7);
    });

    test("resume --retry-failed runs only the failed batches", async () => {
      const b = await bench(kind, { retry: { max_retries: 0 } });
      const first = await b.run(b.backend({ 2: [{ result: failed("boom") }] }));
      expect(first.result.outcome).toBe("failed");
      expect((await b.store.getBatch(JOB, 2))!.status).toBe("failed");
      expect(await b.store.getBatch(JOB, 3)).toBeNull();

      const backend = b.backend();
      const { result, events } = await b.run(backend, { command: "resume", retryFailed: true });
      expect(backend.calls.map((c) => [c.batch, c.attempt])).toEqual([[2, 2]]);
      expect((await b.store.getBatch(JOB, 2))!.status).toBe("completed");
      expect(await b.store.getBatch(JOB, 3)).toBeNull();
      expect(events[0]).toMatchObject({ type: "job_start", to_run: 1 });
      expect(result.summary).toMatchObject({ completed: 2, failed: 0 });
      // Batch 3 was never selected: the job is not done, but what was asked for is (exit 0, job paused).
      expect(result.outcome).toBe("selection_done");
      expect(exitCodeOf(result.outcome)).toBe(0);
      expect((await b.store.getJob(JOB))!.status).toBe("paused");
    });

    test("resume --from N re-runs from batch N, completed or not", async () => {
      const b = await bench(kind);
      expect((await b.run(b.backend())).result.outcome).toBe("completed");
      const backend = b.backend();
      const { result } = await b.run(backend, { command: "resume", from: 2 });
      expect(result.outcome).toBe("completed");
      expect(backend.calls.map((c) => [c.batch, c.attempt])).toEqual([
        [2, 2],
        [3, 2],
      ]);
      expect((await b.store.getBatch(JOB, 1))!.attempts).toBe(1);

      const out = await refusal(b.start(b.backend(), { command: "resume", from: 9 }).done);
      expect(out.message).toContain("--from 9 is out of range");
      expect(out.exitCode).toBe(EXIT.usage);
    });

    test("resume --force starts over: every batch runs again from attempt 1", async () => {
      const b = await bench(kind);
      await b.run(b.backend({ 1: [{ result: failed("boom") }] }));
      expect((await b.store.getBatch(JOB, 1))!.attempts).toBe(2);

      const backend = b.backend();
      const { result } = await b.run(backend, { command: "resume", force: true });
      expect(result.outcome).toBe("completed");
      expect(backend.calls.map((c) => [c.batch, c.attempt])).toEqual([
        [1, 1],
        [2, 1],
        [3, 1],
      ]);
      expect(await b.store.listAttempts(JOB, 1)).toHaveLength(1);
    });

    test("fallback_models: batches use the fallback while the per-model limit lasts, the configured model again after its reset", async () => {
      const b = await bench(kind, { batch: { size: 1, total_items: 4 }, backend: { type: "claude_cli", fallback_models: ["claude-sonnet-4-5"] } });
      const opusLimit: ScriptStep = { result: () => ({ exit_code: 1, claude: { is_error: true, result: "You've hit your Opus limit", rate_limit_resets_at: b.clock.now() + HOUR } }) };
      // Batch 1 meets the limit (an hour); batch 3's start waits until virtual time is past it.
      const backend = b.backend({ 1: [opusLimit, {}], 3: [{ onStart: () => b.clock.advance(2 * HOUR) }] });
      const { result } = await b.run(backend);
      expect(result.outcome).toBe("completed");
      expect(backend.calls.map((c) => [c.batch, c.request.model ?? "configured"])).toEqual([
        [1, "configured"],
        [1, "claude-sonnet-4-5"],
        [2, "claude-sonnet-4-5"],
        [3, "claude-sonnet-4-5"],
        [4, "configured"],
      ]);
      // The switch used no retry and set no hold.
      expect((await b.store.getJob(JOB))!.status).toBe("completed");
      expect(await b.store.getHold(JOB)).toBeNull();
    });

    test("nothing to do: a completed job, and --retry-failed with nothing failed", async () => {
      const b = await bench(kind);
      expect((await b.run(b.backend())).result.outcome).toBe("completed");
      const seq = await b.store.lastSeq(JOB);

      const backend = b.backend();
      const again = await b.run(backend);
      expect(again.result.outcome).toBe("nothing_to_do");
      expect(exitCodeOf(again.result.outcome)).toBe(EXIT.ok);
      expect(again.result.message).toContain("already completed");
      expect(again.result.ran).toBe(0);
      expect(backend.calls).toHaveLength(0);
      expect(await b.store.lastSeq(JOB)).toBe(seq);
      expect(await b.store.runners(JOB, Date.now())).toEqual([]);

      // A paused job with nothing failed: --retry-failed has nothing to run.
      const c = await bench(kind);
      const paused = await c.run(c.backend({ 1: [{ onStart: () => c.current!.stop() }] }));
      expect(paused.result.outcome).toBe("paused");
      const none = c.backend();
      const r = await c.run(none, { command: "resume", retryFailed: true });
      expect(r.result.outcome).toBe("nothing_to_do");
      expect(r.result.message).toBe("no failed batches to retry");
      expect(none.calls).toHaveLength(0);
    });

    test("the config hash is the job file as written: key order and an option a newer Mozart adds with a default change nothing", async () => {
      const b = await bench(kind);
      const hash = configHash(b.job);
      expect(hash).toMatch(/^w[0-9a-f]{15}$/);
      // The same file with its keys in another order.
      const reordered = await prepare(b.dir, Object.fromEntries(Object.entries({ ...BASE, state_backend: kind }).reverse()));
      expect(configHash(reordered)).toBe(hash);
      // A default the schema gains (simulated on the prepared config) is not in the file: same hash.
      expect(configHash({ ...b.job, config: { ...b.job.config, some_new_option: { enabled: true } } as typeof b.job.config })).toBe(hash);
      // What the file sets is: a value written out, even the default one, and the template.
      expect(configHash(await b.edit({ retry: { max_retries: 3 } }))).not.toBe(hash);
    });

    test("a job an earlier Mozart recorded (its hash over the config with that version's defaults) resumes when only options it did not know differ", async () => {
      const b = await bench(kind, { batch: { size: 1, total_items: 4 } });
      const paused = await b.run(b.backend({ 2: [{ onStart: () => b.current!.stop() }] }));
      expect(paused.result.outcome).toBe("paused");
      // The record as an earlier version wrote it: a bare hex hash, and a config without options added since.
      const asBefore = async (change: (config: Record<string, unknown>) => void) => {
        const rec = (await b.store.getJob(JOB))!;
        const config = JSON.parse((await b.store.getBlob(rec.config_blob))!) as Record<string, unknown>;
        change(config);
        await b.store.putJob({ ...rec, config_hash: "0123456789abcdef", config_blob: await b.store.putBlob(JSON.stringify(config)) });
      };
      await asBefore((config) => {
        delete config.learning;
        delete (config.retry as Record<string, unknown>).continue_session;
      });
      const backend = b.backend();
      const resumed = await b.run(backend, { command: "resume" });
      expect(resumed.result.outcome).toBe("completed");
      expect(backend.calls.map((c) => c.batch).sort()).toEqual([3, 4]);
      // The record now carries the hash of this version.
      expect((await b.store.getJob(JOB))!.config_hash).toBe(configHash(b.job));

      // An option the earlier version knew, with another value then: the job file changed.
      const c = await bench(kind, { batch: { size: 1, total_items: 4 } });
      expect((await c.run(c.backend({ 2: [{ onStart: () => c.current!.stop() }] }))).result.outcome).toBe("paused");
      const rec = (await c.store.getJob(JOB))!;
      const config = JSON.parse((await c.store.getBlob(rec.config_blob))!) as { retry: { max_retries: number } };
      config.retry.max_retries += 1;
      await c.store.putJob({ ...rec, config_hash: "0123456789abcdef", config_blob: await c.store.putBlob(JSON.stringify(config)) });
      const refused = await refusal(c.start(c.backend(), { command: "resume" }).done);
      expect(refused.message).toContain("the job file changed");
      // And an option it did not know, that the job file sets now, is a change too.
      await c.store.putJob({ ...rec, config_hash: "0123456789abcdef" });
      const withRetry = JSON.parse((await c.store.getBlob(rec.config_blob))!) as { retry: Record<string, unknown> };
      delete withRetry.retry.continue_session;
      await c.store.putJob({ ...rec, config_hash: "0123456789abcdef", config_blob: await c.store.putBlob(JSON.stringify(withRetry)) });
      await c.edit({ retry: { continue_session: false } });
      expect((await refusal(c.start(c.backend(), { command: "resume" }).done)).message).toContain("the job file changed");
    });

    test("a changed batch plan: refused when a recorded batch's items would change, accepted when only total_items grows", async () => {
      const b = await bench(kind, { batch: { size: 2, total_items: 6 } });
      expect((await b.run(b.backend())).result.outcome).toBe("completed");

      // Without --force-config any change is refused.
      await b.edit({ batch: { size: 2, total_items: 8 } });
      const changed = await refusal(b.start(b.backend()).done);
      expect(changed.message).toContain("the job file changed");
      expect(changed.exitCode).toBe(EXIT.usage);

      // Batch 1 would cover items 1–3 instead of 1–2.
      await b.edit({ batch: { size: 3, total_items: 6 } });
      const moved = await refusal(b.start(b.backend(), { forceConfig: true }).done);
      expect(moved.message).toContain("the batch plan changed");
      expect(moved.message).toContain("batch 1 (completed) covered items 1–2");
      expect(moved.exitCode).toBe(EXIT.usage);
      expect((await b.store.getJob(JOB))!.plan).toEqual({ size: 2, start_item: 1, total_items: 6 });

      // More items, same ranges: only the new batch runs.
      await b.edit({ batch: { size: 2, total_items: 8 } });
      const backend = b.backend();
      const { result } = await b.run(backend, { forceConfig: true });
      expect(result.outcome).toBe("completed");
      expect(backend.calls.map((c) => [c.batch, c.request.batch.start_item, c.request.batch.end_item])).toEqual([[4, 7, 8]]);
      const job = (await b.store.getJob(JOB))!;
      expect(job).toMatchObject({ total_batches: 4, plan: { size: 2, start_item: 1, total_items: 8 }, status: "completed" });
      expect(result.summary.completed).toBe(4);
    });

    test("a missing job record while batch records exist is refused, pointing to repair", async () => {
      const b = await bench(kind);
      const backend = b.backend({ 2: [{ onStart: () => b.current!.stop() }] });
      expect((await b.run(backend)).result.outcome).toBe("paused");
      await b.store.close();
      const location = stateLocation(b.job.config);
      if (kind === "json") rmSync(join(location, "jobs"), { recursive: true, force: true });
      else {
        const db = new Database(location);
        db.run("DELETE FROM jobs");
        db.close();
      }
      const store = await openStore({ kind, location });
      afterThisTest(() => store.close());
      expect(await store.getJob(JOB)).toBeNull();
      const next = b.backend();
      const run = startRun({ job: b.job, store, command: "run", env: {}, notify: false, ttlMs: 10_000, tickMs: 20, clock: b.clock, backend: next });
      const e = await refusal(run.done);
      expect(e.message).toContain("is missing");
      expect(e.hint).toContain("mozart repair");
      expect(next.calls).toHaveLength(0);
      expect(await store.getJob(JOB)).toBeNull();
    });

    test("notifications go out for the recorded events, through the injected fetch", async () => {
      const b = await bench(kind, {
        batch: { total_items: 2 },
        notifications: [{ type: "webhook", on_events: ["job_start", "batch_complete", "job_complete"], config: { url: "http://hooks.test/mozart", max_retries: 0 } }],
      });
      const sent: Array<{ url: string; body: Record<string, unknown> }> = [];
      const fetch = async (url: string, init: RequestInit) => {
        sent.push({ url, body: JSON.parse(String(init.body)) as Record<string, unknown> });
        return new Response("ok");
      };
      const { result } = await b.run(b.backend(), { notify: { fetch, env: {} } });
      expect(result.outcome).toBe("completed");
      expect(sent.every((s) => s.url === "http://hooks.test/mozart")).toBe(true);
      expect(sent.map((s) => s.body.event).sort()).toEqual(["batch_complete", "batch_complete", "job_complete", "job_start"]);
    });
  });
}
