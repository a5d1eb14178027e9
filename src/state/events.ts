/**
 * The persisted event log: every event of a run, `{ seq, at, job_id, type, ...payload }`, with
 * `seq` strictly increasing per job. The runner writes it in the same atomic write as the
 * records it describes; any process (`mozart logs -f`, the dashboard, `status --watch`) reads
 * it from any seq while the job runs, without the lease.
 */
import type { AttemptMode, BatchError, Requester, TokenCounts } from "./types.ts";

export type EventPayload =
  | {
      type: "job_start";
      runner: string;
      /** run: a fresh or continued run; join: a runner added to a running job. */
      mode: "run" | "resume" | "join";
      total_batches: number;
      to_run: number;
      completed: number;
      resumed: boolean;
      concurrency: number;
      pause_between_ms: number;
      /** A hold saved by an earlier run that is still on: nothing starts before it ends. */
      hold?: { until: number; reason: string; batch_num: number };
      /** What the job had cost when this runner started (the cost ledger's sum). */
      cost_usd?: number;
      /** The budget in force (budget.max_cost_usd, or one raised by `resume --budget`). */
      budget_usd?: number;
    }
  /** `run --submit`: the job waits for runners elsewhere (`mozart worker`). */
  | { type: "job_submitted"; total_batches: number; completed: number }
  | { type: "batch_start"; batch_num: number; start_item: number; end_item: number; runner: string; at?: string }
  | { type: "attempt_start"; batch_num: number; attempt: number; mode: AttemptMode; argv: string[]; at?: string }
  | { type: "output"; batch_num: number; attempt: number; stream: "stdout" | "stderr"; text: string }
  /**
   * What a running claude session is doing (stream-json): a new turn and the tool it called, or
   * an API call the CLI is waiting to retry; model and session_id once it started.
   */
  | {
      type: "activity";
      batch_num: number;
      attempt: number;
      turn?: number;
      tool?: string;
      retry?: { attempt: number; max_retries: number; delay_ms: number; status?: number; error?: string };
      model?: string;
      session_id?: string;
    }
  | { type: "output_truncated"; batch_num: number; attempt: number; logged_chars: number; file: string }
  | {
      type: "attempt_end";
      batch_num: number;
      attempt: number;
      decision: string;
      reason: string;
      duration_ms: number;
      exit_code: number | null;
      cost_usd?: number;
      /** The attempt's tokens, as in its ledger entry. */
      tokens?: TokenCounts;
      output_tail: string;
      validations?: { passed: number; total: number };
      retry_in_ms?: number;
    }
  /** cost_usd: the batch's, over all its attempts; job_cost_usd: the job's so far, as this runner knows it. */
  | { type: "batch_complete"; batch_num: number; attempts: number; duration_ms: number; cost_usd: number; job_cost_usd?: number }
  | { type: "batch_failed"; batch_num: number; attempts: number; error: BatchError }
  /** The batch went back to pending: stopped, cancelled, or its runner was lost. */
  | { type: "batch_released"; batch_num: number; reason: string }
  | { type: "leftovers_stopped"; batch_num: number; pids: number[]; from_runner: string }
  /** isolation: worktree — the batch's changes landed on the target branch (`already`: found there, e.g. after a crash or a resolution by hand). */
  | { type: "batch_merged"; batch_num: number; commit: string; target: string; strategy: "merge" | "rebase"; already?: boolean }
  /** isolation: worktree — the batch's changes could not land: the files in the way and the commands that resolve it. */
  | { type: "batch_conflict"; batch_num: number; files: string[]; message: string; resolve: string[] }
  /** limit: which kind (engine/classify.ts LimitKind: api_rate, session, weekly, model), when known. */
  | { type: "rate_limit_hold"; batch_num: number; until: number; reason: string; waits: number; limit?: string }
  | { type: "hold_end"; batch_num: number }
  | { type: "control"; request: "pause" | "cancel"; by: Requester }
  | { type: "runner_lost"; runner: string; reason: string }
  | { type: "runner_left"; runner: string; others: number }
  | {
      type: "job_paused";
      completed: number;
      total_batches: number;
      reason: string;
      by?: Requester;
      /** What the job has cost so far (absent from events recorded before it was added). */
      cost_usd?: number;
      /** Paused because the budget was reached. */
      budget?: { reason: "budget"; spent_usd: number; max_cost_usd: number };
      /** Paused by the prompt-quality breaker (learning.escalation_enabled). */
      low_success?: { reason: "low_success"; rate: number; window: number; threshold: number; failing: string[] };
    }
  /** A Message Batch was submitted, moved on, or ended (batch-API backends). */
  | { type: "remote_batch"; key: string; id?: string; status: string; counts?: Record<string, number>; requests: number; error?: string }
  | { type: "job_cancelled"; completed: number; total_batches: number; by?: Requester; cost_usd?: number }
  | { type: "job_complete"; completed: number; total_batches: number; duration_ms: number; cost_usd: number }
  | { type: "job_failed"; completed: number; failed: number; total_batches: number; error: string; duration_ms: number; cost_usd: number };

export type EventType = EventPayload["type"];

export type StoredEvent = EventPayload & {
  seq: number;
  /**
   * ISO time of the event: when it was recorded, or when it happened if the payload says so
   * (batch_start and attempt_start of an attempt that ended within a moment are recorded with
   * its end). `seq` is always the order.
   */
  at: string;
  job_id: string;
};

/** Events after which a job has nothing more to say until someone resumes it. */
export const FINAL_EVENTS: ReadonlySet<EventType> = new Set(["job_paused", "job_cancelled", "job_complete", "job_failed"]);

/** Output kept in the log per attempt (the whole output is in the attempt's output file). */
export const OUTPUT_LOG_CAP_CHARS = 256 * 1024;
