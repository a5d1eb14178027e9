/** Creating and checking the job record: identity, config hash, which batches still need work. */
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import type { ExecutionRequest } from "../backends/types.ts";
import type { PreparedJob } from "../config/check.ts";
import type { BatchRecord, JobRecord, RunnerInfo } from "../state/types.ts";

/** A change to anything that shapes the work (config or template text) changes the hash. */
export function configHash(job: PreparedJob): string {
  const { description: _d, ...shape } = job.config;
  return createHash("sha256").update(JSON.stringify(shape)).update("\0").update(job.templateSource).digest("hex").slice(0, 16);
}

export function newJobRecord(job: PreparedJob, source: string, now: number): JobRecord {
  const at = new Date(now).toISOString();
  return {
    job_id: job.config.name,
    job_name: job.config.name,
    ...(job.config.description ? { description: job.config.description } : {}),
    status: "pending",
    config_hash: configHash(job),
    config_snapshot: job.config,
    config_source: source,
    config_path: job.file,
    workspace: job.config.workspace,
    total_batches: job.totalBatches,
    created_at: at,
    updated_at: at,
    completed_batches: 0,
    failed_batches: 0,
    total_attempts: 0,
    rate_limit_waits: 0,
    cost_usd: 0,
    hold: null,
    runner: null,
  };
}

/** Adopt a (possibly changed) config into an existing record; counts come from the batches. */
export function refreshJobRecord(rec: JobRecord, job: PreparedJob, source: string, batches: BatchRecord[]): void {
  rec.config_hash = configHash(job);
  rec.config_snapshot = job.config;
  rec.config_source = source;
  rec.config_path = job.file;
  rec.workspace = job.config.workspace;
  rec.total_batches = job.totalBatches;
  const inPlan = batches.filter((b) => b.batch_num <= job.totalBatches);
  rec.completed_batches = inPlan.filter((b) => b.status === "completed").length;
  rec.failed_batches = inPlan.filter((b) => b.status === "failed").length;
}

export function me(now: number): RunnerInfo {
  return { pid: process.pid, host: hostname(), started_at: new Date(now).toISOString() };
}

/** Batches a plain run or resume still has to do: everything in the plan not completed. */
export function pendingBatches(total: number, batches: BatchRecord[]): number[] {
  const done = new Set(batches.filter((b) => b.status === "completed").map((b) => b.batch_num));
  const out: number[] = [];
  for (let n = 1; n <= total; n++) if (!done.has(n)) out.push(n);
  return out;
}

/** The backend request for one attempt of batch n; `--dry-run` shows exactly what the runner sends. */
export function requestFor(job: PreparedJob, n: number, attempt = 1, prompt = job.prompt(n)): ExecutionRequest {
  const b = job.batch(n);
  return {
    prompt,
    batch: { batch_num: n, total_batches: job.totalBatches, start_item: b.start_item, end_item: b.end_item },
    attempt,
    job_name: job.config.name,
    workspace: job.config.workspace,
    cwd: job.cwd,
    timeoutMs: job.config.backend.timeout_seconds * 1000,
    command: job.command(n),
  };
}
