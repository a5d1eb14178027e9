/**
 * Durable records. One job record, one record per batch, and an append-only attempt log, so
 * recording a batch costs O(1) whatever the job size. The engine is the only writer.
 */
import type { JobConfig } from "../config/schema.ts";

export const JOB_STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const BATCH_STATUSES = ["pending", "in_progress", "completed", "failed"] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

export interface RunnerInfo {
  pid: number;
  host: string;
  started_at: string;
}

export interface Hold {
  /** ISO time the hold ends. */
  until: string;
  reason: string;
  batch_num: number;
}

export interface JobRecord {
  job_id: string;
  job_name: string;
  description?: string;
  status: JobStatus;
  /** sha256 of the normalised config; a change refuses `run` without --force-config. */
  config_hash: string;
  config_snapshot: JobConfig;
  /** The job file's text, so `resume` works even when the file moved or changed. */
  config_source: string;
  /** Absolute path of the job file. */
  config_path: string;
  workspace: string;
  total_batches: number;
  created_at: string;
  updated_at: string;
  started_at?: string;
  completed_at?: string;
  error?: string;
  completed_batches: number;
  failed_batches: number;
  total_attempts: number;
  rate_limit_waits: number;
  cost_usd: number;
  /** A persisted rate-limit hold: a restarted run keeps waiting until then. */
  hold?: Hold | null;
  runner?: RunnerInfo | null;
}

export interface ValidationResult {
  type: string;
  description: string;
  /** Expanded path or command. */
  target: string;
  passed: boolean;
  detail: string;
}

export interface BatchError {
  message: string;
  category: string;
}

export interface BatchRecord {
  batch_num: number;
  status: BatchStatus;
  start_item: number;
  end_item: number;
  attempts: number;
  completion_attempts: number;
  rate_limit_waits: number;
  validation_passed: boolean | null;
  validations: ValidationResult[];
  error?: BatchError | null;
  /** Tail of the last attempt's output, so `status` shows what Claude said. */
  last_output?: string;
  cost_usd: number;
  started_at?: string;
  completed_at?: string;
  duration_ms?: number;
  permission_denials?: string[];
  /** mtimes taken before the batch's first attempt, for file_modified rules. */
  mtime_baseline?: Record<string, number>;
}

export type AttemptMode = "normal" | "completion" | "retry";

export interface AttemptRecord {
  batch_num: number;
  attempt: number;
  mode: AttemptMode;
  started_at: string;
  ended_at: string;
  duration_ms: number;
  prompt: string;
  argv: string[];
  cwd: string;
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  interrupted: boolean;
  stdout: string;
  stderr: string;
  cost_usd?: number;
  session_id?: string;
  /** What classify decided: success | retry | hold | fail_batch | fail_job. */
  decision: string;
  reason: string;
  validation_passed?: boolean | null;
}

export type LockResult = { ok: true } | { ok: false; holder: RunnerInfo };

/** The state store every command uses; implemented over unstorage (fs JSON or SQLite). */
export interface StateStore {
  readonly kind: "json" | "sqlite";
  /** Where the state lives (folder for json, database file for sqlite). */
  readonly location: string;
  getJob(jobId: string): Promise<JobRecord | null>;
  putJob(job: JobRecord): Promise<void>;
  listJobs(): Promise<JobRecord[]>;
  getBatch(jobId: string, batchNum: number): Promise<BatchRecord | null>;
  putBatch(jobId: string, batch: BatchRecord): Promise<void>;
  listBatches(jobId: string): Promise<BatchRecord[]>;
  appendAttempt(jobId: string, attempt: AttemptRecord): Promise<void>;
  listAttempts(jobId: string, batchNum?: number): Promise<AttemptRecord[]>;
  /** Remove every batch and attempt record of a job (used by `resume --force`). */
  clearBatches(jobId: string): Promise<void>;
  /** Single-runner lock; a lock whose process is dead (same host) is taken over. */
  acquireLock(jobId: string, me: RunnerInfo): Promise<LockResult>;
  releaseLock(jobId: string): Promise<void>;
  close(): Promise<void>;
}
