/**
 * The one status model of a job, from its records alone: effective status, live runners,
 * counts, cost, hold, timing, and the batch rows. `status --json`, `run --json`, `logs`, the
 * step summary and the dashboard all return this value. Batch rows come a page at a time, so a
 * job of a million batches is reported in bounded memory.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { batchAt } from "../plan/batches.ts";
import { diskUsage } from "../workspace/disk.ts";
import { leaseAlive } from "./driver.ts";
import type { BatchRecord, JobRecord, JobStatus, JobSummary, MergeState, PausedFor, RemoteBatch, RemoteBatchCounts, Requester, RunnerLease, StateStore, TokenCounts } from "./types.ts";

export interface RunnerView {
  id: string;
  pid: number;
  host: string;
  started_at: string;
  /** ISO time of the last heartbeat. */
  renewed_at: string;
  alive: boolean;
}

export interface JobReport {
  job_id: string;
  job_name: string;
  description: string | null;
  status: JobStatus;
  /** The runners holding a live lease on the job now. */
  runners: RunnerView[];
  /** Who paused or cancelled the job. */
  stopped_by: Requester | null;
  config_path: string;
  workspace: string;
  state: { backend: StateStore["kind"]; location: string };
  progress: { completed: number; failed: number; in_progress: number; pending: number; damaged: number; conflict: number; total: number; percent: number };
  /** The cost ledger's sum: every attempt of every runner. */
  cost_usd: number;
  tokens: TokenCounts;
  /** Share of the prompt tokens read from the prompt cache. */
  cache_hit_ratio: number;
  /** The budget in force: the job file's budget.max_cost_usd, or one raised by `resume --budget` (kept in the job record). */
  budget: { max_cost_usd: number; source: "job_file" | "resume" } | null;
  /** Why the job paused on its own. */
  paused_for: PausedFor | null;
  /** Message Batches of the job still being processed, and the latest ones that ended. */
  remote_batches: RemoteBatchView[];
  attempts: number;
  rate_limit_waits: number;
  hold: { until: string; reason: string; batch_num: number } | null;
  error: string | null;
  timing: { created_at: string; started_at: string | null; updated_at: string; completed_at: string | null };
  /** The last event's seq: `mozart logs --since` continues from here. */
  last_seq: number;
  /** isolation: worktree — where batches land and the worktrees that exist now. */
  git: GitReport | null;
}

export interface GitReport {
  repository: string;
  base: string;
  target: string | null;
  merge: "ordered" | "none";
  strategy: "merge" | "rebase";
  /** The folder of the job's worktrees, how many there are now and the disk they use (shared links not followed). */
  worktrees: { folder: string; count: number; disk_bytes: number };
}

export interface BatchGitRow {
  branch: string;
  merge: MergeState;
  /** The batch's commit, or the target's commit that landed it. */
  commit: string | null;
  /** merge: conflict — the files in the way and the commands that resolve it. */
  conflict_files: string[];
  resolve: string[];
  kept_branch: string | null;
}

export interface RemoteBatchView {
  key: string;
  id: string | null;
  status: RemoteBatch["status"];
  requests: number;
  counts: RemoteBatchCounts | null;
  submitted_at: string;
  updated_at: string;
  expires_at: string | null;
  ended_at: string | null;
  error: string | null;
}

/** Ended Message Batches shown besides the open ones. */
const ENDED_SHOWN = 3;

export function remoteBatchViews(list: RemoteBatch[]): RemoteBatchView[] {
  const open = list.filter((b) => b.status === "submitting" || b.status === "in_progress" || b.status === "canceling");
  const ended = list.filter((b) => b.status === "ended" || b.status === "failed").slice(-ENDED_SHOWN);
  return [...ended, ...open]
    .sort((a, b) => (a.submitted_at < b.submitted_at ? -1 : 1))
    .map((b) => ({
      key: b.key,
      id: b.id ?? null,
      status: b.status,
      requests: b.items.length,
      counts: b.counts ?? null,
      submitted_at: b.submitted_at,
      updated_at: b.updated_at,
      expires_at: b.expires_at ?? null,
      ended_at: b.ended_at ?? null,
      error: b.error ?? null,
    }));
}

export interface BatchRow {
  batch_num: number;
  status: BatchRecord["status"];
  start_item: number;
  end_item: number;
  attempts: number;
  completion_attempts: number;
  rate_limit_waits: number;
  validation_passed: boolean | null;
  validations: BatchRecord["validations"];
  error: string | null;
  error_category: string | null;
  cost_usd: number;
  duration_ms: number | null;
  permission_denials: string[];
  last_output: string | null;
  /** The runner working on it, while in progress. */
  runner: string | null;
  /** Why the stored record could not be read. */
  damaged: string | null;
  /** isolation: worktree — its branch and what became of it. */
  git: BatchGitRow | null;
}

/** A job is running while a runner holds a live lease; a run whose runner died is paused (resumable). */
export function effectiveStatus(rec: JobRecord, summary: JobSummary, live: RunnerLease[]): JobStatus {
  if (live.length) return "running";
  const complete = summary.completed >= rec.total_batches && summary.damaged === 0;
  if (rec.status === "running") return complete ? "completed" : "paused";
  // Records must never contradict: a job is completed only while every batch is.
  if (rec.status === "completed" && !complete) return "paused";
  return rec.status;
}

/**
 * `summaryOf` lets a caller that reports often (the dashboard) reuse a summary it knows is
 * current; the summary is the one part of the report that reads every batch record.
 */
export async function jobReport(store: StateStore, rec: JobRecord, now = Date.now(), summaryOf?: (lastSeq: number, live: RunnerLease[]) => Promise<JobSummary>): Promise<JobReport> {
  const [live, hold, lastSeq, remotes] = await Promise.all([store.runners(rec.job_id, now), store.getHold(rec.job_id), store.lastSeq(rec.job_id), store.listRemoteBatches(rec.job_id)]);
  const fromFile = rec.max_cost_usd;
  const summary = summaryOf ? await summaryOf(lastSeq, live) : await store.summary(rec.job_id, rec.total_batches);
  const t = summary.tokens;
  const prompt = t.input + t.cache_read + t.cache_write_5m + t.cache_write_1h;
  const total = rec.total_batches;
  const pending = Math.max(0, total - summary.completed - summary.failed - summary.in_progress - summary.damaged - summary.conflict);
  let status = effectiveStatus(rec, summary, live);
  // isolation: worktree — a run killed after its last batch completed but before it landed them all is not done.
  if (status === "completed" && rec.status !== "completed" && rec.git?.merge === "ordered" && (await hasUnlanded(store, rec.job_id))) status = "paused";
  return {
    job_id: rec.job_id,
    job_name: rec.job_name,
    description: rec.description ?? null,
    status,
    runners: live.map((l) => ({ id: l.id, pid: l.pid, host: l.host, started_at: l.started_at, renewed_at: new Date(l.renewed_at).toISOString(), alive: leaseAlive(l, now) })),
    stopped_by: rec.stopped_by ?? null,
    config_path: rec.config_path,
    workspace: rec.workspace,
    state: { backend: store.kind, location: store.location },
    progress: {
      completed: summary.completed,
      failed: summary.failed,
      in_progress: live.length ? summary.in_progress : 0,
      pending: live.length ? pending : pending + summary.in_progress,
      damaged: summary.damaged,
      conflict: summary.conflict,
      total,
      percent: total ? Math.round((summary.completed / total) * 1000) / 10 : 0,
    },
    cost_usd: Math.round(summary.cost_usd * 1e6) / 1e6,
    tokens: summary.tokens,
    cache_hit_ratio: prompt ? Math.round((t.cache_read / prompt) * 1000) / 1000 : 0,
    budget: rec.budget ? { max_cost_usd: rec.budget.max_cost_usd, source: "resume" } : fromFile !== undefined ? { max_cost_usd: fromFile, source: "job_file" } : null,
    paused_for: rec.paused_for ?? null,
    remote_batches: remoteBatchViews(remotes),
    attempts: summary.attempts,
    rate_limit_waits: summary.rate_limit_waits,
    hold: hold && hold.until > now ? { until: new Date(hold.until).toISOString(), reason: hold.reason, batch_num: hold.batch_num } : null,
    error: rec.error ?? null,
    timing: { created_at: rec.created_at, started_at: rec.started_at ?? null, updated_at: rec.updated_at, completed_at: rec.completed_at ?? null },
    last_seq: lastSeq,
    git: rec.git ? gitReport(rec.git) : null,
  };
}

/** isolation: worktree — completed batches whose changes have not landed on the target yet. */
export async function hasUnlanded(store: StateStore, jobId: string): Promise<boolean> {
  for (let from = 1; ; ) {
    const page = await store.listBatches(jobId, { from, limit: 1000, statuses: ["completed"] });
    if (page.some((b) => b.git && b.git.merge !== "merged")) return true;
    if (page.length < 1000) return false;
    from = page[page.length - 1]!.batch_num + 1;
  }
}

function gitReport(g: NonNullable<JobRecord["git"]>): GitReport {
  let count = 0;
  try {
    count = readdirSync(g.root).filter((d) => /^batch-\d+$/.test(d)).length;
  } catch {
    // no worktree folder yet, or removed by `mozart clean`
  }
  return { repository: g.top, base: g.base, target: g.target, merge: g.merge, strategy: g.strategy, worktrees: { folder: g.root, count, disk_bytes: count ? diskUsage(join(g.root)).bytes : 0 } };
}

export function batchRow(b: BatchRecord, liveIds: ReadonlySet<string>): BatchRow {
  // In progress under a runner that is gone: it will run again, so it is pending.
  const orphaned = b.status === "in_progress" && (!b.owner || !liveIds.has(b.owner));
  const status = orphaned ? "pending" : b.status;
  return {
    batch_num: b.batch_num,
    status,
    start_item: b.start_item,
    end_item: b.end_item,
    attempts: b.attempts,
    completion_attempts: b.completion_attempts,
    rate_limit_waits: b.rate_limit_waits,
    validation_passed: b.validation_passed,
    validations: b.validations,
    error: b.error?.message ?? null,
    error_category: b.error?.category ?? null,
    cost_usd: b.cost_usd,
    duration_ms: b.duration_ms ?? null,
    permission_denials: b.permission_denials ?? [],
    last_output: status === "completed" ? null : (b.last_output ?? null),
    runner: status === "in_progress" ? (b.owner ?? null) : null,
    damaged: b.damaged ?? null,
    git: b.git
      ? {
          branch: b.git.kept_branch ?? b.git.branch,
          merge: b.git.merge,
          commit: b.git.merged_commit ?? b.git.head ?? null,
          conflict_files: b.git.conflict?.files ?? [],
          resolve: b.git.conflict?.resolve ?? [],
          kept_branch: b.git.kept_branch ?? null,
        }
      : null,
  };
}

function pendingRow(rec: JobRecord, n: number): BatchRow {
  const r = batchAt(rec.plan, n);
  return {
    batch_num: n,
    status: "pending",
    start_item: r.start_item,
    end_item: r.end_item,
    attempts: 0,
    completion_attempts: 0,
    rate_limit_waits: 0,
    validation_passed: null,
    validations: [],
    error: null,
    error_category: null,
    cost_usd: 0,
    duration_ms: null,
    permission_denials: [],
    last_output: null,
    runner: null,
    damaged: null,
    git: null,
  };
}

/** Every batch 1..total in order, recorded or not, a page of records at a time. */
export async function* batchRows(store: StateStore, rec: JobRecord, opts: { from?: number; to?: number; now?: number } = {}): AsyncGenerator<BatchRow> {
  const PAGE = 1000;
  const liveIds = new Set((await store.runners(rec.job_id, opts.now ?? Date.now())).map((l) => l.id));
  const to = Math.min(opts.to ?? rec.total_batches, rec.total_batches);
  let n = Math.max(1, opts.from ?? 1);
  while (n <= to) {
    const page = await store.listBatches(rec.job_id, { from: n, limit: PAGE });
    const last = page.length === PAGE ? page[page.length - 1]!.batch_num : to;
    for (const b of page) {
      if (b.batch_num > to) break;
      for (; n < b.batch_num; n++) yield pendingRow(rec, n);
      yield batchRow(b, liveIds);
      n = b.batch_num + 1;
    }
    for (; n <= Math.min(last, to); n++) yield pendingRow(rec, n);
  }
}

/** The report with every batch row, for small jobs and tests; large outputs stream batchRows instead. */
export async function statusDocument(store: StateStore, rec: JobRecord): Promise<JobReport & { batches: BatchRow[] }> {
  const report = await jobReport(store, rec);
  const batches: BatchRow[] = [];
  for await (const row of batchRows(store, rec)) batches.push(row);
  return { ...report, batches };
}
