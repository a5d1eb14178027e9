/**
 * The scheduler and the per-batch attempt loop: render → execute → classify → validate, with
 * retries, completion mode and rate-limit holds. The engine is the only writer of job state;
 * every step is saved before the next one starts, so a kill -9 at any moment loses nothing that
 * was recorded as done.
 */
import type { Backend, ExecutionResult } from "../backends/types.ts";
import type { PreparedJob } from "../config/check.ts";
import { completionPrompt } from "../prompts/completion.ts";
import type { AttemptMode, BatchError, BatchRecord, JobRecord, StateStore, ValidationResult } from "../state/types.ts";
import { classify, type Decision } from "./classify.ts";
import type { Emitter } from "./events.ts";
import { requestFor } from "./job.ts";
import { attemptsAllowed, retryDelayMs } from "./retry.ts";
import { sleep, type Shutdown } from "./shutdown.ts";
import { runValidations, snapshotMtimes, summarize } from "./validate.ts";

export interface RunContext {
  job: PreparedJob;
  store: StateStore;
  backend: Backend;
  events: Emitter;
  shutdown: Shutdown;
  /** The job record, already created or loaded (and locked) by the caller. */
  record: JobRecord;
  /** Batches to run, in order; the caller decides (all not completed, --from, --retry-failed). */
  batches: number[];
  now?: () => number;
  random?: () => number;
}

export type RunOutcome = "completed" | "failed" | "paused";

const TAIL = 2000;
const iso = (ms: number) => new Date(ms).toISOString();
const tail = (s: string, n = TAIL) => (s.length > n ? `…${s.slice(-n)}` : s);

export function newBatchRecord(job: PreparedJob, n: number): BatchRecord {
  const b = job.batch(n);
  return {
    batch_num: n,
    status: "pending",
    start_item: b.start_item,
    end_item: b.end_item,
    attempts: 0,
    completion_attempts: 0,
    rate_limit_waits: 0,
    validation_passed: null,
    validations: [],
    error: null,
    cost_usd: 0,
  };
}

export async function runJob(ctx: RunContext): Promise<RunOutcome> {
  const { job, store, backend, events, shutdown } = ctx;
  const cfg = job.config;
  const now = ctx.now ?? Date.now;
  const random = ctx.random ?? Math.random;
  const rec = ctx.record;
  const jobId = rec.job_id;
  const started = now();

  // One writer per process: job record writes are chained so they land in order.
  let saving: Promise<void> = Promise.resolve();
  const saveJob = () => {
    rec.updated_at = iso(now());
    const snapshot = structuredClone(rec);
    saving = saving.then(() => store.putJob(snapshot));
    return saving;
  };

  let failure: { message: string; batch: number } | undefined;
  const queue = [...ctx.batches];
  let nextStart = 0;
  const pauseMs = cfg.pause_between_batches_seconds * 1000;

  rec.status = "running";
  rec.started_at ??= iso(started);
  rec.error = undefined;
  rec.completed_at = undefined;
  await saveJob();
  events.emit({ type: "job_start", job_id: jobId, total_batches: rec.total_batches, to_run: queue.length, completed: rec.completed_batches, resumed: rec.total_attempts > 0, concurrency: cfg.concurrency });

  /** Every worker waits out a persisted hold before starting an attempt. */
  const waitForHold = async (batchNum: number) => {
    while (rec.hold && Date.parse(rec.hold.until) > now() && !shutdown.stop.aborted) {
      await sleep(Math.min(Date.parse(rec.hold.until) - now(), 1000), shutdown.stop);
    }
    if (rec.hold && Date.parse(rec.hold.until) <= now()) {
      const held = rec.hold.batch_num;
      rec.hold = null;
      await saveJob();
      events.emit({ type: "hold_end", batch_num: held ?? batchNum });
    }
  };

  const stopped = () => shutdown.stop.aborted || failure !== undefined;

  const runBatch = async (n: number): Promise<void> => {
    const batch: BatchRecord = (await store.getBatch(jobId, n)) ?? newBatchRecord(job, n);
    const rules = job.validations(n);
    const batchStart = now();
    if (batch.status === "failed") rec.failed_batches = Math.max(0, rec.failed_batches - 1);
    batch.status = "in_progress";
    batch.started_at = iso(batchStart);
    batch.error = null;
    // file_modified compares against the moment before the batch's FIRST attempt, kept across
    // attempts and restarts, so work done in attempt 1 still counts in attempt 2.
    batch.mtime_baseline ??= await snapshotMtimes(rules.filter((r) => r.type === "file_modified").map((r) => r.target));
    // Saved with the first attempt's record below: one write fewer per batch.
    events.emit({ type: "batch_start", batch_num: n, start_item: batch.start_item, end_item: batch.end_item });

    const original = job.prompt(n);
    const allowed = attemptsAllowed(cfg.retry);
    let mode: AttemptMode = "normal";
    let normalUsed = 0;
    let completionUsed = 0;
    let holds = 0;
    let last: ValidationResult[] = batch.validations;

    const leave = async () => {
      // Stopped before the batch finished: it is picked up again on resume.
      batch.status = "pending";
      await store.putBatch(jobId, batch);
    };
    const fail = async (error: BatchError, result?: ExecutionResult) => {
      batch.status = "failed";
      batch.error = error;
      batch.completed_at = iso(now());
      batch.duration_ms = now() - batchStart;
      if (result) batch.last_output = lastOutput(result);
      await store.putBatch(jobId, batch);
      rec.failed_batches++;
      failure ??= { message: `batch ${n}: ${error.message}`, batch: n };
      await saveJob();
      events.emit({ type: "batch_failed", batch_num: n, attempts: batch.attempts, error });
    };

    for (;;) {
      if (stopped()) return leave();
      await waitForHold(n);
      if (stopped()) return leave();

      const prompt =
        mode === "completion"
          ? completionPrompt({ batchNum: n, attempt: completionUsed + 1, maxAttempts: cfg.retry.max_completion_attempts, results: last, originalPrompt: original })
          : original;
      batch.attempts++;
      if (mode === "completion") batch.completion_attempts++;
      rec.total_attempts++;
      const attempt = batch.attempts;
      await store.putBatch(jobId, batch);
      const request = requestFor(job, n, attempt, prompt);
      events.emit({ type: "attempt_start", batch_num: n, attempt, mode, argv: backend.describe(request).argv });
      const attemptStart = now();
      const result = await backend.execute(request, shutdown.kill);
      const decision: Decision = classify(result, { now: now(), waitMinutes: cfg.rate_limit.wait_minutes, extraPatterns: job.limitPatterns });

      let results: ValidationResult[] | undefined;
      if (decision.kind === "success") {
        results = await runValidations(rules, { workspace: cfg.workspace, baseline: batch.mtime_baseline ?? {}, signal: shutdown.kill });
        last = results;
        batch.validations = results;
        batch.validation_passed = results.every((r) => r.passed);
      }
      const summary = results ? summarize(results) : undefined;
      const cost = result.cost_usd ?? 0;
      batch.cost_usd += cost;
      rec.cost_usd += cost;
      if (result.claude?.permission_denials?.length) {
        batch.permission_denials = result.claude.permission_denials.map((d) => d.tool_name + (d.tool_input ? ` ${JSON.stringify(d.tool_input).slice(0, 200)}` : ""));
      }
      batch.last_output = lastOutput(result);

      const reason = decisionReason(decision, summary);
      await store.appendAttempt(jobId, {
        batch_num: n,
        attempt,
        mode,
        started_at: iso(attemptStart),
        ended_at: iso(now()),
        duration_ms: result.duration_ms,
        prompt,
        argv: result.argv,
        cwd: result.cwd,
        exit_code: result.exit_code,
        signal: result.signal,
        timed_out: result.timed_out,
        interrupted: result.interrupted,
        stdout: result.stdout,
        stderr: result.stderr,
        ...(result.cost_usd !== undefined ? { cost_usd: result.cost_usd } : {}),
        ...(result.claude?.session_id ? { session_id: result.claude.session_id } : {}),
        decision: summary && summary.failed > 0 ? "validation_failed" : decision.kind,
        reason,
        validation_passed: results ? batch.validation_passed : null,
      });

      const end = (extra: { retry_in_ms?: number } = {}) =>
        events.emit({
          type: "attempt_end",
          batch_num: n,
          attempt,
          decision: summary && summary.failed > 0 ? "validation_failed" : decision.kind,
          reason,
          duration_ms: result.duration_ms,
          exit_code: result.exit_code,
          ...(result.cost_usd !== undefined ? { cost_usd: result.cost_usd } : {}),
          output_tail: tail(result.stderr.trim() || result.text || result.stdout, 600),
          ...(summary ? { validations: { passed: summary.passed, total: summary.total } } : {}),
          ...extra,
        });

      switch (decision.kind) {
        case "interrupted":
          end();
          return leave();
        case "fail_job":
          end();
          return fail({ message: `${decision.reason} — ${decision.hint}`, category: decision.category }, result);
        case "hold": {
          end();
          holds++;
          batch.rate_limit_waits++;
          rec.rate_limit_waits++;
          if (holds > cfg.rate_limit.max_waits) {
            return fail({ message: `still rate-limited after ${cfg.rate_limit.max_waits} holds (rate_limit.max_waits): ${decision.reason}`, category: "rate_limit" }, result);
          }
          const until = Math.max(decision.until, rec.hold ? Date.parse(rec.hold.until) : 0);
          rec.hold = { until: iso(until), reason: decision.reason, batch_num: n };
          await saveJob();
          await store.putBatch(jobId, batch);
          events.emit({ type: "rate_limit_hold", batch_num: n, until, reason: decision.reason, waits: holds });
          continue; // a hold costs no retry
        }
        case "success":
          if (summary!.failed === 0) {
            batch.status = "completed";
            batch.error = null;
            batch.completed_at = iso(now());
            batch.duration_ms = now() - batchStart;
            await store.putBatch(jobId, batch);
            rec.completed_batches++;
            await saveJob();
            end();
            events.emit({ type: "batch_complete", batch_num: n, attempts: batch.attempts, duration_ms: batch.duration_ms, cost_usd: batch.cost_usd });
            return;
          }
          break;
        case "retry":
          break;
      }

      // An unsuccessful attempt: it uses the budget of the mode it ran in.
      if (mode === "completion") completionUsed++;
      else normalUsed++;
      const pct = summarize(last).percent;
      const canComplete = last.length > 0 && pct > cfg.retry.completion_threshold_percent && completionUsed < cfg.retry.max_completion_attempts;
      if (canComplete) {
        mode = "completion";
        const delay = cfg.retry.completion_delay_seconds * 1000;
        end({ retry_in_ms: delay });
        await store.putBatch(jobId, batch);
        if (!(await sleep(delay, shutdown.stop))) return leave();
        continue;
      }
      if (normalUsed >= allowed) {
        end();
        const failing = last.filter((r) => !r.passed).map((r) => r.description);
        const message =
          decision.kind === "success"
            ? `validations still failing after ${batch.attempts} attempt${batch.attempts === 1 ? "" : "s"}: ${failing.join("; ")}`
            : `failed after ${normalUsed} attempt${normalUsed === 1 ? "" : "s"}: ${decision.kind === "retry" ? decision.reason : reason}`;
        return fail({ message, category: decision.kind === "retry" ? decision.category : "validation" }, result);
      }
      mode = "retry";
      const delay = Math.max(retryDelayMs(normalUsed, cfg.retry, random), decision.kind === "retry" ? (decision.min_delay_ms ?? 0) : 0);
      end({ retry_in_ms: delay });
      batch.error = { message: reason, category: decision.kind === "retry" ? decision.category : "validation" };
      await store.putBatch(jobId, batch);
      if (!(await sleep(delay, shutdown.stop))) return leave();
    }
  };

  const worker = async () => {
    for (;;) {
      if (stopped()) return;
      await waitForHold(queue[0] ?? 0);
      if (stopped()) return;
      const n = queue.shift();
      if (n === undefined) return;
      // pause_between_batches_seconds spaces batch starts, whatever the concurrency.
      const startAt = Math.max(now(), nextStart);
      nextStart = startAt + pauseMs;
      if (startAt > now() && !(await sleep(startAt - now(), shutdown.stop))) {
        queue.unshift(n);
        return;
      }
      if (stopped()) {
        queue.unshift(n);
        return;
      }
      await runBatch(n);
    }
  };

  let crash: { error: unknown } | undefined;
  const guarded = async () => {
    try {
      await worker();
    } catch (error) {
      // A worker could not save (disk full, state unreadable): stop every other attempt now,
      // so nothing runs on unrecorded, then report the cause.
      crash ??= { error };
      shutdown.request("error");
      shutdown.request("error");
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(cfg.concurrency, queue.length || 1)) }, guarded));
  if (crash) throw crash.error;
  await saving;

  const duration = now() - started;
  if (failure) {
    rec.status = "failed";
    rec.error = failure.message;
    rec.completed_at = iso(now());
    await saveJob();
    events.emit({ type: "job_failed", job_id: jobId, completed: rec.completed_batches, failed: rec.failed_batches, total_batches: rec.total_batches, error: failure.message, duration_ms: duration, cost_usd: rec.cost_usd });
    return "failed";
  }
  if (rec.completed_batches >= rec.total_batches) {
    rec.status = "completed";
    rec.completed_at = iso(now());
    rec.hold = null;
    await saveJob();
    events.emit({ type: "job_complete", job_id: jobId, completed: rec.completed_batches, total_batches: rec.total_batches, duration_ms: duration, cost_usd: rec.cost_usd });
    return "completed";
  }
  rec.status = "paused";
  await saveJob();
  events.emit({ type: "job_paused", job_id: jobId, completed: rec.completed_batches, total_batches: rec.total_batches, reason: shutdown.reason() ?? "stopped" });
  return "paused";
}

function lastOutput(r: ExecutionResult): string {
  const parts = [r.text && r.text !== r.stdout ? r.text : r.stdout, r.stderr].filter((s) => s && s.trim());
  return tail(parts.join("\n--- stderr ---\n"));
}

function decisionReason(d: Decision, summary: ReturnType<typeof summarize> | undefined): string {
  switch (d.kind) {
    case "success":
      return summary && summary.failed > 0 ? `${summary.passed}/${summary.total} validations passed` : "all validations passed";
    case "interrupted":
      return "interrupted";
    default:
      return d.reason;
  }
}
