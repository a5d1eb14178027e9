/**
 * The dashboard API's shapes, as zod schemas: the routes validate their input with them and
 * openapi.ts turns them into the OpenAPI document. The response schemas describe values built
 * by state/report.ts; the type checks at the bottom fail to compile when the two drift apart.
 */
import { z } from "zod";
import type { AccountHoldView } from "../state/accounts.ts";
import type { JobRow } from "../state/jobs.ts";
import type { BatchRow, JobReport } from "../state/report.ts";
import type { HistoryEstimate } from "../learning/estimate.ts";
import type { Stats } from "../learning/stats.ts";
import { BATCH_STATUSES, JOB_STATUSES, MERGE_STATES, type AttemptRecord } from "../state/types.ts";

/** Job ids are job names: at most 200 characters (config/schema.ts), no control characters. */
export const MAX_ID_LENGTH = 200;

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().describe("bad_request, unauthorized, forbidden, not_found, conflict, too_large, internal"),
      message: z.string(),
    }),
  })
  .meta({ id: "Error" });

const Requester = z.object({
  via: z.enum(["cli", "signal", "dashboard", "api"]),
  host: z.string(),
  pid: z.number(),
  user: z.string().optional(),
  signal: z.string().optional(),
});

const Tokens = z.object({ input: z.number(), output: z.number(), cache_read: z.number(), cache_write_5m: z.number(), cache_write_1h: z.number() });

const Validation = z.object({ type: z.string(), description: z.string(), target: z.string(), passed: z.boolean(), detail: z.string() });

export const JobRowSchema = z
  .object({
    job_id: z.string(),
    status: z.string().describe("pending, running, paused, completed, failed, cancelled, or unreadable"),
    completed: z.number(),
    total: z.number(),
    cost_usd: z.number(),
    updated_at: z.string(),
    config_path: z.string(),
    state: z.string(),
    stopped_by: Requester.optional(),
    error: z.string().optional(),
    conflict: z.number().optional().describe("Batches that could not be merged (isolation: worktree)"),
    account: z.string().optional().describe("The account its claude sessions run on (a config folder's or an API key's hash, never the key)"),
  })
  .meta({ id: "JobRow" });

export const AccountHoldSchema = z
  .object({
    account: z.string(),
    until: z.string(),
    reason: z.string(),
    limit: z.string().nullable().describe("session, weekly, admission …"),
    met_by: z.string().describe("The job that met the limit"),
  })
  .describe("A subscription limit held for the whole account: no job on it starts a batch before `until`")
  .meta({ id: "AccountHold" });

export const JobReportSchema = z
  .object({
    job_id: z.string(),
    job_name: z.string(),
    description: z.string().nullable(),
    status: z.enum(JOB_STATUSES),
    runners: z.array(z.object({ id: z.string(), pid: z.number(), host: z.string(), started_at: z.string(), renewed_at: z.string(), alive: z.boolean() })),
    stopped_by: Requester.nullable(),
    config_path: z.string(),
    workspace: z.string(),
    state: z.object({ backend: z.enum(["json", "sqlite", "postgres"]), location: z.string() }),
    progress: z.object({ completed: z.number(), failed: z.number(), in_progress: z.number(), pending: z.number(), damaged: z.number(), conflict: z.number(), total: z.number(), percent: z.number() }),
    cost_usd: z.number().describe("The cost ledger's sum: every attempt of every runner, in USD"),
    tokens: Tokens,
    cache_hit_ratio: z.number().describe("Share of the prompt tokens read from the prompt cache"),
    budget: z.object({ max_cost_usd: z.number(), source: z.enum(["job_file", "resume"]) }).nullable(),
    paused_for: z
      .discriminatedUnion("reason", [
        z.object({ reason: z.literal("budget"), spent_usd: z.number(), max_cost_usd: z.number() }),
        z.object({ reason: z.literal("low_success"), rate: z.number(), window: z.number(), threshold: z.number(), failing: z.array(z.string()) }),
      ])
      .nullable(),
    remote_batches: z
      .array(
        z.object({
          key: z.string(),
          id: z.string().nullable(),
          status: z.enum(["submitting", "failed", "in_progress", "canceling", "ended"]),
          requests: z.number(),
          counts: z.object({ processing: z.number(), succeeded: z.number(), errored: z.number(), canceled: z.number(), expired: z.number() }).nullable(),
          submitted_at: z.string(),
          updated_at: z.string(),
          expires_at: z.string().nullable(),
          ended_at: z.string().nullable(),
          error: z.string().nullable(),
        }),
      )
      .describe("Message Batches (anthropic_batch) still being processed, and the latest that ended"),
    attempts: z.number(),
    rate_limit_waits: z.number(),
    hold: z.object({ until: z.string(), reason: z.string(), batch_num: z.number() }).nullable(),
    error: z.string().nullable(),
    timing: z.object({ created_at: z.string(), started_at: z.string().nullable(), updated_at: z.string(), completed_at: z.string().nullable() }),
    last_seq: z.number(),
    git: z
      .object({
        repository: z.string(),
        base: z.string(),
        target: z.string().nullable(),
        merge: z.enum(["ordered", "none"]),
        strategy: z.enum(["merge", "rebase"]),
        worktrees: z.object({ folder: z.string(), count: z.number(), disk_bytes: z.number() }),
      })
      .nullable()
      .describe("isolation: worktree — the repository, where batches land, and the worktrees that exist now"),
  })
  .meta({ id: "JobReport" });

/** What the dashboard adds to the report: the job's concurrency, for the page's ETA. */
export const JobStatusSchema = JobReportSchema.extend({ concurrency: z.number().nullable(), account_hold: AccountHoldSchema.nullable() }).meta({ id: "JobStatus" });

export const BatchRowSchema = z
  .object({
    batch_num: z.number(),
    status: z.enum(BATCH_STATUSES),
    start_item: z.number(),
    end_item: z.number(),
    attempts: z.number(),
    completion_attempts: z.number(),
    rate_limit_waits: z.number(),
    validation_passed: z.boolean().nullable(),
    validations: z.array(Validation),
    error: z.string().nullable(),
    error_category: z.string().nullable(),
    cost_usd: z.number(),
    duration_ms: z.number().nullable(),
    permission_denials: z.array(z.string()),
    last_output: z.string().nullable(),
    runner: z.string().nullable(),
    damaged: z.string().nullable(),
    git: z
      .object({
        branch: z.string(),
        merge: z.enum(MERGE_STATES),
        commit: z.string().nullable(),
        conflict_files: z.array(z.string()),
        resolve: z.array(z.string()),
        kept_branch: z.string().nullable(),
      })
      .nullable()
      .describe("isolation: worktree — the batch's branch and what became of it"),
  })
  .meta({ id: "BatchRow" });

export const AttemptSchema = z
  .object({
    batch_num: z.number(),
    attempt: z.number(),
    mode: z.enum(["normal", "completion", "retry"]),
    runner: z.string(),
    started_at: z.string(),
    ended_at: z.string().optional(),
    duration_ms: z.number(),
    argv: z.array(z.string()),
    cwd: z.string(),
    exit_code: z.number().nullable(),
    signal: z.string().nullable(),
    timed_out: z.boolean(),
    interrupted: z.boolean(),
    cost_usd: z.number().optional(),
    tokens: Tokens.optional(),
    session_id: z.string().optional(),
    remote: z.object({ key: z.string(), id: z.string().optional(), custom_id: z.string() }).optional(),
    decision: z.enum(["running", "success", "validation_failed", "retry", "hold", "fail_job", "fail_batch", "interrupted", "detached"]),
    reason: z.string(),
    validation_passed: z.boolean().nullable().optional(),
    prompt: z.string().nullable(),
    output: z.object({
      stdout: z.string(),
      stderr: z.string(),
      truncated: z.boolean().describe("Only the tail of the output is shown; the whole of it is in the attempt's output file"),
    }),
  })
  .meta({ id: "Attempt" });

export const JobListQuery = z.object({
  status: z.enum(JOB_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(20).regex(/^\d+$/, "a cursor is the next_cursor of the previous page").optional(),
});

export const BatchListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(200),
  cursor: z.string().max(20).regex(/^\d+$/, "a cursor is the next_cursor of the previous page").optional(),
});

export const EventsQuery = z.object({
  since: z.coerce.number().int().min(0).optional().describe("Start after this seq (the Last-Event-ID header wins when both are sent)"),
});

export const JobIdParam = z.object({ id: z.string().min(1).max(MAX_ID_LENGTH) });
export const BatchParam = JobIdParam.extend({
  n: z
    .string()
    .regex(/^[1-9]\d{0,14}$/, "a batch number is a whole number from 1")
    .transform(Number)
    .describe("The batch number, from 1"),
});

/** A control request's body: empty, `{}`, or a note on who asks. */
export const ControlBody = z.object({ reason: z.string().max(500).optional() }).strict();

export const Health = z.object({ ok: z.literal(true), version: z.string() }).meta({ id: "Health" });
export const JobList = z.object({ jobs: z.array(JobRowSchema), total: z.number(), next_cursor: z.string().nullable() });
export const BatchList = z.object({ batches: z.array(BatchRowSchema), next_cursor: z.string().nullable() });
export const BatchDetail = z.object({ batch: BatchRowSchema, attempts: z.array(AttemptSchema) });
export const JobDocument = JobReportSchema.extend({ account_hold: AccountHoldSchema.nullable(), batches: z.array(BatchRowSchema) }).meta({ id: "JobDocument" });
export const ControlAccepted = z.object({ job_id: z.string(), request: z.enum(["pause", "cancel"]), delivered_to: z.number(), status: z.string() });
export const ResumeAccepted = z.object({
  job_id: z.string(),
  pid: z.number(),
  log: z.string().describe("The detached `mozart resume`'s output, in the job's state folder"),
  follow: z.string().describe("A command that follows the run"),
  events: z.string().describe("The job's event stream"),
});

const Pct = z.object({ p50: z.number(), p90: z.number(), total: z.number() });
const Figures = z.object({
  outcomes: z.number(),
  finished: z.number(),
  categories: z.object({ first_try: z.number(), after_retry: z.number(), after_completion: z.number(), failed: z.number(), cancelled: z.number() }),
  first_try_rate: z.number().nullable(),
  attempts: z.array(z.object({ attempts: z.number(), batches: z.number() })),
  failing_validations: z.array(z.object({ description: z.string(), failures: z.number(), batches: z.number(), example: z.object({ job_id: z.string(), batch_num: z.number(), at: z.string() }) })),
  cost_usd: Pct,
  duration_ms: Pct,
  successful_items: z.number(),
  cost_per_successful_item: z.number().nullable(),
  held: z.object({ ms: z.number(), share: z.number(), by_kind: z.record(z.string(), z.object({ ms: z.number(), share: z.number() })) }),
});
const StatsSchema = Figures.extend({ jobs: z.array(z.string()), since: z.string().nullable(), by_model: z.record(z.string(), Figures) });
const RangeSchema = z.object({ expected: z.number(), low: z.number(), high: z.number() });
const EstimateSchema = z.object({ source: z.literal("history"), template_hash: z.string(), batches_seen: z.number(), jobs_seen: z.array(z.string()), cost_usd: RangeSchema, duration_ms: RangeSchema });
export const JobStats = z
  .object({
    job_id: z.string(),
    stats: StatsSchema.describe("What the outcome history says of this job (docs/learning.md)"),
    batches_left: z.number(),
    estimate: EstimateSchema.nullable().describe("The batches left, estimated from past batches of the job's prompt template; null with fewer than 3"),
  })
  .meta({ id: "JobStats" });

// Compile-time checks: each schema accepts exactly what the report functions produce.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
type Attempt = Omit<AttemptRecord, "prompt_blob" | "stdout" | "stderr" | "output_file" | "process"> & { prompt: string | null; output: { stdout: string; stderr: string; truncated: boolean } };
export type SchemasMatchReports = [
  Assert<Same<z.infer<typeof JobReportSchema>, JobReport>>,
  Assert<Same<z.infer<typeof BatchRowSchema>, BatchRow>>,
  Assert<Same<z.infer<typeof JobRowSchema>, JobRow>>,
  Assert<Same<z.infer<typeof AttemptSchema>, Attempt>>,
  Assert<Same<z.infer<typeof StatsSchema>, Stats>>,
  Assert<Same<z.infer<typeof EstimateSchema>, HistoryEstimate>>,
  Assert<Same<z.infer<typeof AccountHoldSchema>, AccountHoldView>>,
];
export type { Attempt };
