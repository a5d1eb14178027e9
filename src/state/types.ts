/**
 * Durable records. One job record, one record per batch (which also carries the batch's claim:
 * owner, fencing token, lease expiry), one record per attempt, a persisted event log, runner
 * leases, a control record and a shared hold. Job counters are never stored: they are derived
 * from the batch records (`summary`), so concurrent workers and runners never read-modify-write
 * them.
 *
 * Every driver (drivers/sqlite.ts, drivers/json.ts, drivers/postgres.ts) implements `StateStore` with the same
 * semantics; `commit` is the one way a step of a batch is recorded, atomically and fenced.
 */
import type { Outcome } from "../learning/outcome.ts";
import type { EventPayload, StoredEvent } from "./events.ts";

export const JOB_STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** `conflict`: completed in its own worktree (isolation: worktree), but its changes could not land on the target branch. */
export const BATCH_STATUSES = ["pending", "in_progress", "completed", "failed", "conflict"] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

export type StateBackend = "json" | "sqlite" | "postgres";

/** Who asked for a pause or a cancel, shown by `status` and `list`. */
export interface Requester {
  via: "cli" | "signal" | "dashboard" | "api";
  host: string;
  pid: number;
  user?: string;
  /** SIGINT, SIGTERM, … when `via` is `signal`. */
  signal?: string;
}

export interface ControlRecord {
  request: "pause" | "cancel";
  by: Requester;
  /** ISO time of the request. */
  at: string;
}

export interface Hold {
  /** Epoch ms the hold ends. */
  until: number;
  reason: string;
  batch_num: number;
  /** How the hold's end was found (reset_time, retry_after, default_wait, backoff). */
  kind?: string;
  /** The runner that set it. */
  runner?: string;
}

/**
 * Which batches a run may claim; joiners adopt the run's selection. A shard (`run --shard k/n`)
 * is batch b with ((b-1) mod count) + 1 = index.
 */
export type Selection = { kind: "all" } | { kind: "only"; batches: number[] } | { kind: "shard"; index: number; count: number };

export function inSelection(selection: Selection, n: number): boolean {
  if (selection.kind === "only") return selection.batches.includes(n);
  if (selection.kind === "shard") return ((n - 1) % selection.count) + 1 === selection.index;
  return true;
}

export interface RunInfo {
  id: string;
  started_at: string;
  selection: Selection;
}

export interface JobRecord {
  job_id: string;
  job_name: string;
  description?: string;
  /** Last status a runner wrote; `state/report.ts` derives the effective status. */
  status: JobStatus;
  /** sha256 of the normalised config and template; a change refuses `run` without --force-config. */
  config_hash: string;
  /** Blob hashes (content-addressed, stored once): the normalised config, the job file's text, the template's text. */
  config_blob: string;
  source_blob: string;
  template_blob: string;
  /** Absolute path of the job file. */
  config_path: string;
  workspace: string;
  total_batches: number;
  /** The batch plan the records were made with; a change is checked by item range. */
  plan: { size: number; start_item: number; total_items: number };
  created_at: string;
  updated_at: string;
  /** When the current run started (reset by `resume --force`). */
  started_at?: string;
  completed_at?: string;
  error?: string;
  run?: RunInfo;
  /** Who paused or cancelled the job, when it was not the job itself. */
  stopped_by?: Requester;
  /** The job file's budget.max_cost_usd as of the latest run's start (readers show it without the config). */
  max_cost_usd?: number;
  /**
   * The budget raised by `mozart resume <job> --budget N`: it replaces the job file's
   * `budget.max_cost_usd` for this run and every later one, until another `--budget` (a
   * `resume --force`, which starts the job over, drops it).
   */
  budget?: { max_cost_usd: number; set_at: string };
  /** Why the job paused on its own (not on request): its budget was reached, or its first-try success rate fell. */
  paused_for?: PausedFor;
  /** isolation: worktree — the repository, the base commit and where batches land. */
  git?: JobGit;
}

export type PausedFor =
  | { reason: "budget"; spent_usd: number; max_cost_usd: number }
  /** The prompt-quality breaker (learning.escalation_enabled): first-try success rate over the window below the threshold. */
  | { reason: "low_success"; rate: number; window: number; threshold: number; failing: string[] };

/** Tokens of one or more requests, by how they are billed. `input` excludes cached tokens. */
export interface TokenCounts {
  input: number;
  output: number;
  cache_read: number;
  cache_write_5m: number;
  cache_write_1h: number;
}

/**
 * What one attempt consumed: one entry of the job's cost ledger. Entries are only ever added
 * (in the same atomic write as the attempt's end), keyed by (batch_num, attempt, runner); the
 * job's cost is their sum, never a counter read, changed and written back, so pause, resume,
 * `--join` runners and a runner that lost its lease all add up exactly.
 */
export interface SpendRecord {
  batch_num: number;
  attempt: number;
  runner: string;
  /** ISO time the attempt ended. */
  at: string;
  backend: string;
  model?: string;
  usd: number;
  tokens: TokenCounts;
  /**
   * How `usd` was found: from the tokens by the price table (src/backends/prices.ts); the
   * backend's own figure (claude's `total_cost_usd`, as a delta when a session is resumed); or
   * not at all (a model the table does not know).
   */
  priced_by: "price_table" | "backend" | "unpriced";
  /** `batch`: billed at the Message Batches' half price. */
  tier?: "standard" | "batch";
  /** HTTP requests behind the attempt (continuations of a cut-off answer count). */
  requests?: number;
}

/** The ledger summed. */
export interface SpendTotals {
  usd: number;
  tokens: TokenCounts;
  entries: number;
}

export interface RemoteBatchCounts {
  processing: number;
  succeeded: number;
  errored: number;
  canceled: number;
  expired: number;
}

/**
 * A batch of requests submitted to a provider's batch API (Anthropic Message Batches), recorded
 * before the create call and again once it answered, so a restart re-attaches to it instead of
 * submitting the same work twice. Each item is one attempt of one Mozart batch.
 */
export interface RemoteBatch {
  /** Mozart's key, chosen before the create call. */
  key: string;
  provider: "anthropic";
  /** The provider's id (msgbatch_…), once the create call answered. */
  id?: string;
  /**
   * submitting: recorded, the create call not answered yet (a restart looks the batch up);
   * failed: the create call was refused, nothing was submitted; then the provider's own states.
   */
  status: "submitting" | "failed" | "in_progress" | "canceling" | "ended";
  runner: string;
  submitted_at: string;
  updated_at: string;
  created_at?: string;
  expires_at?: string;
  ended_at?: string;
  counts?: RemoteBatchCounts;
  items: Array<{ custom_id: string; batch_num: number; attempt: number }>;
  cancel_requested_at?: string;
  /** Why the submission failed. */
  error?: string;
}

/** Recorded when a job with `isolation: worktree` starts; kept across resumes (a new base with `resume --force`). */
export interface JobGit {
  /** The main working tree's top folder. */
  top: string;
  /** The commit every batch's worktree starts from. */
  base: string;
  /** The branch completed batches land on (merge: ordered), or null (merge: none). */
  target: string | null;
  merge: "ordered" | "none";
  strategy: "merge" | "rebase";
  /** Branch names start with this (`mozart/<job>/`). */
  prefix: string;
  /** The folder the job's worktrees live in. */
  root: string;
}

/**
 * What became of a batch's worktree and branch:
 * open (it runs), ready (completed and committed, waiting its turn to land), merging (being landed
 * by `merging_by`), merged (on the target), branch (merge: none — left as its branch), conflict
 * (could not land), discarded (failed or re-run: its edits never reach the target).
 */
export const MERGE_STATES = ["open", "ready", "merging", "merged", "branch", "conflict", "discarded"] as const;
export type MergeState = (typeof MERGE_STATES)[number];

export interface BatchGit {
  /** mozart/<job>/batch-<n>. */
  branch: string;
  /** The commit its worktree was created from. */
  base: string;
  /** Its worktree (it may have been removed since: it is recreated from the branch when needed). */
  worktree: string;
  /** The batch's last commit on its branch, once its changes were committed. */
  head?: string;
  merge: MergeState;
  /** The runner landing it (merge: merging). */
  merging_by?: string;
  /** The target's commit that holds it (merge: merged). */
  merged_commit?: string;
  merged_at?: string;
  /** Why it could not land, the files in the way and how to resolve it (merge: conflict). */
  conflict?: { files: string[]; message: string; resolve: string[] };
  /** keep_failed: where a failed batch's branch was kept. */
  kept_branch?: string;
}

/** The target of a JSON rule without a path: the attempt's structured output. */
export const STRUCTURED_OUTPUT = "structured output";

export interface ValidationResult {
  type: string;
  description: string;
  /** Expanded path or command, or STRUCTURED_OUTPUT. */
  target: string;
  passed: boolean;
  detail: string;
}

export interface BatchError {
  message: string;
  category: string;
}

/** The process of a running attempt, so a runner that takes over can stop what is left of it. */
export interface RunningProcess {
  attempt: number;
  runner: string;
  host: string;
  /** Found in the environment of every process the attempt started (see runtime/process.ts). */
  tag: string;
  pid?: number;
  pgid?: number;
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
  /** Tail of the last attempt's output, so `status` shows what the backend said. */
  last_output?: string;
  cost_usd: number;
  started_at?: string;
  completed_at?: string;
  duration_ms?: number;
  /** Time spent in rate-limit holds while this batch waited. */
  held_ms?: number;
  permission_denials?: string[];
  /** mtimes taken before the batch's first attempt, for file_modified rules. */
  mtime_baseline?: Record<string, number>;
  /** A backend session's cumulative cost so far, by session id (claude's `total_cost_usd` after `--resume`). */
  session_costs?: Record<string, number>;
  /**
   * claude_cli: after per-model limits, how far down backend.fallback_models the batch moved
   * (level 1 is the first fallback) and until when the limit that moved it lasts; its attempts
   * use that model until then, in this run and the next.
   */
  model_fallback?: { level: number; until: number };
  /**
   * The claim: the runner that holds the batch while it is in progress, and the fencing token,
   * raised by every claim. A claim lives as long as its owner's runner lease.
   */
  owner?: string | null;
  token: number;
  /** The attempt in flight (kept when the batch is handed back, so the next claimer can stop leftovers). */
  running?: RunningProcess | null;
  /** Set by the store when the stored record could not be read; `mozart repair` resets it. */
  damaged?: string;
  /** isolation: worktree — the batch's branch, worktree and merge. */
  git?: BatchGit | null;
  /** Rule description → the attempts it failed on (for the batch's outcome). */
  failed_validations?: Record<string, number[]>;
  /** Held time by limit kind. */
  held_by?: Record<string, number>;
  /** Tokens of all the batch's attempts. */
  tokens?: TokenCounts;
  /** The outcome of the batch's last finish (learning/outcome.ts); every finish is also in the history. */
  outcome?: Outcome;
}

export type AttemptMode = "normal" | "completion" | "retry";
/**
 * `detached`: the attempt's request is still with the provider (a Message Batch); the runner
 * stopped waiting for it (Ctrl+C, a kill, cancel) and the next run picks its result up.
 */
export type AttemptDecision = "running" | "success" | "validation_failed" | "retry" | "hold" | "fail_job" | "fail_batch" | "interrupted" | "detached";

export interface AttemptRecord {
  batch_num: number;
  attempt: number;
  mode: AttemptMode;
  runner: string;
  started_at: string;
  ended_at?: string;
  duration_ms: number;
  /** Blob hash of the prompt: each distinct prompt is stored once. */
  prompt_blob: string;
  argv: string[];
  cwd: string;
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  interrupted: boolean;
  /** Bounded head and tail of each stream; the full output is in `output_file`. */
  stdout: string;
  stderr: string;
  /** Where the full output of the attempt is kept, under the job's state folder. */
  output_file?: string;
  cost_usd?: number;
  /** The attempt's tokens, as in its ledger entry. */
  tokens?: TokenCounts;
  session_id?: string;
  /** claude_cli with backend.json_schema: the result's `structured_output`. */
  structured_output?: unknown;
  /** claude_cli (retry.continue_session): the session this attempt continued, or tried to and ran fresh instead (with why). */
  resume?: { session_id: string; resumed: boolean; reason?: string };
  /** claude_cli: the model this attempt ran with when it was a fallback (backend.fallback_models). */
  model?: string;
  /** A Message Batches attempt: where its request went. */
  remote?: { key: string; id?: string; custom_id: string };
  decision: AttemptDecision;
  reason: string;
  validation_passed?: boolean | null;
  process?: { pid?: number; pgid?: number; tag: string; host: string };
}

/** A runner's lease on a job: renewed by heartbeats, expired when the runner dies or freezes. */
export interface RunnerLease {
  id: string;
  pid: number;
  host: string;
  started_at: string;
  /** Epoch ms the lease expires unless renewed. */
  until: number;
  /** Epoch ms of the last heartbeat. */
  renewed_at: number;
}

export interface JobSummary {
  total: number;
  completed: number;
  failed: number;
  in_progress: number;
  /** Completed batches whose changes could not land on the target branch (isolation: worktree). */
  conflict: number;
  /** Batches with a record that is pending (failed once and reset, or handed back). */
  pending_recorded: number;
  attempts: number;
  rate_limit_waits: number;
  /** From the cost ledger (every attempt's spend summed). */
  cost_usd: number;
  tokens: TokenCounts;
  /** Sum of the completed batches' durations, for ETAs. */
  completed_duration_ms: number;
  /** Batch records that could not be read. */
  damaged: number;
}

export interface Claim {
  batch: BatchRecord;
  token: number;
  /** Set when the batch was taken over from a runner that is gone: what may still be running. */
  previous?: RunningProcess;
}

/** One step of a batch, recorded atomically: every part lands, or none does. */
export interface Step {
  /** Commit only while `runner` still holds `batch` with `token` and its runner lease. */
  fence?: { runner: string; batch: number; token: number };
  batch?: BatchRecord;
  attempt?: AttemptRecord;
  events?: EventPayload[];
  /** Sets the job's shared hold (an active hold that ends later is kept). */
  hold?: Hold;
  /** Clears the shared hold if it ends at or before this time (a hold extended since stays). */
  clearHold?: number;
  /** Fields of the job record to change. */
  job?: Partial<Pick<JobRecord, "status" | "error" | "completed_at" | "stopped_by" | "paused_for">>;
  /** Texts to store as blobs in the same write (their hash is blobHash(text)). */
  blobs?: string[];
  /** Entries for the cost ledger (an entry already there under the same key is replaced). */
  spend?: SpendRecord[];
}

export type CommitResult = { ok: true; seq: number } | { ok: false; reason: "fenced" };

export interface JoinOptions {
  now: number;
  ttlMs: number;
  /** Refuse while another live runner holds the job (a plain `run`/`resume`). */
  exclusive: boolean;
  /** Expire every other runner's lease first (`--take-over`). */
  takeOver?: boolean;
}

export type JoinResult = { ok: true } | { ok: false; holders: RunnerLease[] };

export interface LeaveOutcome {
  /** Live runners left after this one. */
  others: number;
  summary: JobSummary;
  /** Seq of the last event of the final step, when `final` recorded one. */
  seq?: number;
}

export interface ReadEventsOptions {
  /** Events with seq > after. */
  after?: number;
  limit?: number;
}

export interface ListBatchesOptions {
  /** Batch numbers >= from. */
  from?: number;
  limit?: number;
  statuses?: BatchStatus[];
}

/** What updateBatch's decision gets besides the stored record. */
export interface UpdateContext {
  /** Whether a runner holds a live lease on the job. */
  isLive(runnerId: string): boolean;
}

export type UpdateResult = { ok: true; seq?: number; batch: BatchRecord | null } | { ok: false; reason: "fenced" | "unchanged"; batch: BatchRecord | null };

/** The state store every command uses; one driver per backend (state/drivers/). */
export interface StateStore {
  readonly kind: StateBackend;
  /** Where the state lives (folder for json, database file for sqlite, `postgres://host:port/db` with no credentials). */
  readonly location: string;
  readonly readOnly: boolean;

  getJob(jobId: string): Promise<JobRecord | null>;
  putJob(job: JobRecord): Promise<void>;
  /** Every job in this store, sorted by id. */
  listJobIds(): Promise<string[]>;

  getBatch(jobId: string, batchNum: number): Promise<BatchRecord | null>;
  /** Batch records in batch_num order, a page at a time. */
  listBatches(jobId: string, opts?: ListBatchesOptions): Promise<BatchRecord[]>;
  putBatch(jobId: string, batch: BatchRecord): Promise<void>;
  /** Counters derived from the batch records of batches 1..total. */
  summary(jobId: string, total: number): Promise<JobSummary>;

  listAttempts(jobId: string, batchNum: number): Promise<AttemptRecord[]>;

  /** The cost ledger summed (entries come with `commit`). */
  spendTotals(jobId: string): Promise<SpendTotals>;
  /** Ledger entries in (batch_num, attempt) order, optionally of one batch. */
  listSpend(jobId: string, opts?: { batch?: number }): Promise<SpendRecord[]>;

  /** Records a provider batch (by its key; a later write replaces it). */
  putRemoteBatch(jobId: string, batch: RemoteBatch): Promise<void>;
  /** The job's provider batches, oldest first. */
  listRemoteBatches(jobId: string): Promise<RemoteBatch[]>;

  /** Content-addressed text (prompts, job files, templates): stored once, compressed when large. */
  putBlob(text: string): Promise<string>;
  getBlob(hash: string): Promise<string | null>;

  commit(jobId: string, step: Step, now: number): Promise<CommitResult>;
  readEvents(jobId: string, opts?: ReadEventsOptions): Promise<StoredEvent[]>;
  lastSeq(jobId: string): Promise<number>;

  join(jobId: string, runner: RunnerLease, opts: JoinOptions): Promise<JoinResult>;
  /** Renews the runner's lease and its claims; false when the lease was lost (expired and reaped, or taken over). */
  heartbeat(jobId: string, runnerId: string, now: number, ttlMs: number): Promise<boolean>;
  /** Live runner leases (expired ones are not returned). */
  runners(jobId: string, now: number): Promise<RunnerLease[]>;
  /**
   * Claims batch n for the runner when it has no record, is pending, or is held by a runner whose
   * lease expired; null when it is completed, failed, damaged or held by a live runner. `running`
   * records, in the same write, the attempt about to start, so a runner killed before its next
   * write still leaves enough behind for the next claimer to stop what it started.
   */
  claim(jobId: string, runnerId: string, n: number, opts: { now: number; fresh: () => BatchRecord; running?: (batch: BatchRecord) => RunningProcess }): Promise<Claim | null>;
  /**
   * Compare-and-set on one batch record outside its claim (the merges of isolation: worktree):
   * reads batch n and records the step `change` returns for it, in one atomic write. null from
   * `change` records nothing (`unchanged`). With `runner`, nothing is recorded unless that
   * runner's lease is live (`fenced`). A merged batch is never merged twice because landing it
   * goes ready → merging (one runner) → merged through this call.
   */
  updateBatch(jobId: string, n: number, opts: { now: number; runner?: string }, change: (current: BatchRecord | null, ctx: UpdateContext) => Omit<Step, "fence"> | null): Promise<UpdateResult>;
  /** Batch numbers >= from with a record that could be claimed now (pending, or held by a lost runner), in order. */
  claimable(jobId: string, opts: { now: number; from: number; limit: number }): Promise<number[]>;
  /**
   * Ends the runner's lease: its claims go back to pending. `final` runs inside the same atomic
   * write and decides what else to record (the job's final status) from what is left.
   */
  leave(jobId: string, runnerId: string, now: number, final?: (outcome: LeaveOutcome) => Step | null): Promise<LeaveOutcome>;

  getControl(jobId: string): Promise<ControlRecord | null>;
  setControl(jobId: string, control: ControlRecord | null): Promise<void>;
  getHold(jobId: string): Promise<Hold | null>;

  /** Removes every batch, attempt and output record, the cost ledger and the provider batches of a job (`resume --force`); events are kept. */
  clearBatches(jobId: string): Promise<void>;
  /**
   * Sets matching batch records back to pending, keeping their attempts: `resume --from N`
   * (from), a run that re-runs failed batches (status: failed), `repair` (damaged). Returns how many.
   */
  resetBatches(jobId: string, which: { from?: number; status?: BatchStatus; damaged?: boolean }): Promise<number>;

  /** Where the full output of an attempt is written. */
  outputPath(jobId: string, batchNum: number, attempt: number, stream: "stdout" | "stderr"): string;
  /** Throws when the state was deleted or replaced since it was opened. */
  checkIdentity(): Promise<void>;
  /**
   * Where the driver can tell cheaply: a value that changes whenever anything (another process
   * included) commits to the store, so a reader can keep what it derived until then. Undefined
   * where it cannot.
   */
  changeStamp?(): string;
  close(): Promise<void>;
}
