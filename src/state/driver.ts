/**
 * What every state driver shares: `defineDriver` (one file per driver, in the style of
 * unstorage's drivers), one way to build an error that names the driver and the file, record
 * checks at the boundary (a damaged record is reported with its batch, never as `undefined`
 * or `$NaN`), content-addressed blobs, and lease liveness.
 *
 * Why not unstorage underneath: a step must land atomically (batch + attempt + events) and be
 * fenced by the claim's token, seq numbers must be allocated across processes, and claims need
 * compare-and-set. unstorage is a key-value interface with none of those; over db0 it also
 * re-prepares every statement, which was a fifth of the runner's CPU per batch.
 */
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { gunzipSync, gzipSync } from "node:zlib";
import { MozartError } from "../errors.ts";
import { noTokens, roundUsd } from "./spend.ts";
import { BATCH_STATUSES, JOB_STATUSES, type AttemptRecord, type BatchRecord, type Hold, type JobRecord, type JobSummary, type RunnerLease, type SpendTotals, type StateBackend, type StateStore } from "./types.ts";

export interface DriverOptions {
  /** A folder for json, a database file for sqlite; for postgres a connection URL, or `$NAME` of the variable holding it. */
  location: string;
  /** Reading commands open the store read-only and never create anything. */
  readOnly?: boolean;
  /** Where `$NAME` locations are looked up (default: the process environment). */
  env?: Record<string, string | undefined>;
  /** Problems the store recovers from on its own (a dropped database connection, retried). */
  warn?: (message: string) => void;
  /** Where attempt output files go when the store itself is not a folder on this machine (postgres). */
  outputDir?: string;
}

export type DriverFactory = (opts: DriverOptions) => Promise<StateStore>;

/** Identity: gives a driver factory its type, like unstorage's defineDriver. */
export function defineDriver(factory: DriverFactory): DriverFactory {
  return factory;
}

/** The one way drivers report a problem: what, where, and what to do. */
export function createError(driver: StateBackend, message: string, hint?: string): MozartError {
  return new MozartError(`state (${driver}): ${message}`, hint ? { hint } : {});
}

const HOST = hostname();

/** True unless the pid is certainly gone. EPERM means it exists under another user. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A runner lease is live until it expires; on this host a runner whose process is gone is dead
 * at once, so a `resume` right after a kill -9 need not wait out the lease.
 */
export function leaseAlive(lease: Pick<RunnerLease, "until" | "host" | "pid">, now: number): boolean {
  if (lease.until <= now) return false;
  return lease.host !== HOST || pidAlive(lease.pid);
}

/** A hold set while another is active keeps the later end. */
export function laterHold(current: Hold | null | undefined, next: Hold): Hold {
  return current && current.until > next.until ? current : next;
}

// ---------------------------------------------------------------------------------------------
// Blobs: prompts, job files and templates, stored once each. Large text is gzipped: a 10 MB
// prompt per batch must not become 100 MB of state per 10 batches.

export const COMPRESS_OVER = 8 * 1024;

export function blobHash(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex").slice(0, 32);
}

export function encodeBlob(text: string): { data: Uint8Array; gzip: boolean } {
  const raw = Buffer.from(text, "utf8");
  if (raw.length <= COMPRESS_OVER) return { data: raw, gzip: false };
  const packed = gzipSync(raw, { level: 6 });
  return packed.length < raw.length ? { data: packed, gzip: true } : { data: raw, gzip: false };
}

export function decodeBlob(data: Uint8Array, gzip: boolean): string {
  return (gzip ? gunzipSync(data) : Buffer.from(data)).toString("utf8");
}

// ---------------------------------------------------------------------------------------------
// Record checks. Stored JSON may be truncated, hand-edited or from another version.

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isStr = (v: unknown): v is string => typeof v === "string";

/** A readable batch record, or one marked damaged (pending, never counted as done). */
export function checkBatch(value: unknown, batchNum: number, where: string): BatchRecord {
  const v = value as Partial<BatchRecord> | null;
  const problem =
    v === null || typeof v !== "object" || Array.isArray(v)
      ? "not a JSON object"
      : (v as { __unreadable?: boolean }).__unreadable
        ? "not valid JSON (truncated or overwritten)"
        : v.batch_num !== batchNum
        ? `batch_num is ${JSON.stringify(v.batch_num)}`
        : !(BATCH_STATUSES as readonly string[]).includes(v.status as string)
          ? `status is ${JSON.stringify(v.status)}`
          : !isNum(v.start_item) || !isNum(v.end_item)
            ? "the item range is missing"
            : !isNum(v.attempts) || !isNum(v.cost_usd)
              ? "attempts or cost_usd is not a number"
              : !Array.isArray(v.validations)
                ? "validations is not a list"
                : undefined;
  if (problem === undefined) {
    const b = v as BatchRecord;
    b.token ??= 0;
    b.completion_attempts ??= 0;
    b.rate_limit_waits ??= 0;
    return b;
  }
  return damagedBatch(batchNum, `batch ${batchNum} (${where}): ${problem}`);
}

export function damagedBatch(batchNum: number, reason: string): BatchRecord {
  return {
    batch_num: batchNum,
    status: "pending",
    start_item: 0,
    end_item: 0,
    attempts: 0,
    completion_attempts: 0,
    rate_limit_waits: 0,
    validation_passed: null,
    validations: [],
    cost_usd: 0,
    token: 0,
    damaged: reason,
  };
}

export function checkJob(value: unknown, jobId: string, where: string, driver: StateBackend): JobRecord {
  const v = value as Partial<JobRecord> | null;
  const problem =
    v === null || typeof v !== "object" || Array.isArray(v)
      ? "it is not a JSON object"
      : (v as { __unreadable?: boolean }).__unreadable
        ? "it is not valid JSON (truncated or overwritten)"
        : v.job_id !== jobId
        ? `it belongs to job ${JSON.stringify(v.job_id)}`
        : !(JOB_STATUSES as readonly string[]).includes(v.status as string)
          ? `its status is ${JSON.stringify(v.status)}`
          : !isNum(v.total_batches) || !isStr(v.config_hash) || !isStr(v.config_blob) || !v.plan
            ? "it lacks fields this version needs (it may have been written by an older Mozart)"
            : undefined;
  if (problem) {
    throw createError(driver, `the job record of ${JSON.stringify(jobId)} (${where}) is damaged: ${problem}`, `rebuild it from the job file and the batch records: mozart repair <job file>`);
  }
  return v as JobRecord;
}

/** A readable attempt record, or a placeholder that says it could not be read (status --batch never fails on one). */
export function checkAttempt(value: unknown, batchNum: number, where: string): AttemptRecord {
  const v = value as Partial<AttemptRecord> | null;
  if (v !== null && typeof v === "object" && isNum(v.batch_num) && isNum(v.attempt) && isStr(v.decision) && Array.isArray(v.argv)) return v as AttemptRecord;
  const attempt = v && typeof v === "object" && isNum(v.attempt) ? v.attempt : 0;
  return {
    batch_num: batchNum,
    attempt,
    mode: "normal",
    runner: "",
    started_at: "",
    duration_ms: 0,
    prompt_blob: "",
    argv: [],
    cwd: "",
    exit_code: null,
    signal: null,
    timed_out: false,
    interrupted: false,
    stdout: "",
    stderr: "",
    decision: "interrupted",
    reason: `this attempt record could not be read (${where})`,
  };
}

/** JSON text → value, or undefined when it does not parse. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export function emptySummary(total: number): JobSummary {
  return { total, completed: 0, failed: 0, in_progress: 0, conflict: 0, pending_recorded: 0, attempts: 0, rate_limit_waits: 0, cost_usd: 0, tokens: noTokens(), completed_duration_ms: 0, damaged: 0 };
}

/**
 * The job's cost comes from the ledger; state written before there was one has its costs only
 * in the batch records, which are summed instead.
 */
export function withLedger(s: JobSummary, ledger: SpendTotals): JobSummary {
  if (ledger.entries) {
    s.cost_usd = roundUsd(ledger.usd);
    s.tokens = ledger.tokens;
  } else s.cost_usd = roundUsd(s.cost_usd);
  return s;
}

/** One row of a SQL summary (`status` or 'damaged', count and sums), added to `s`: both SQL drivers read it this way. */
export interface SummaryRow {
  st: string;
  c: unknown;
  a?: unknown;
  w?: unknown;
  cost?: unknown;
  d?: unknown;
}

export function addSummaryRow(s: JobSummary, r: SummaryRow): void {
  const count = Number(r.c);
  // A row whose record does not read back counts as damaged, whatever its status: never as done.
  if (r.st === "damaged") {
    s.damaged = count;
    return;
  }
  if (r.st === "completed") {
    s.completed = count;
    s.completed_duration_ms = Number(r.d ?? 0);
  } else if (r.st === "failed") s.failed = count;
  else if (r.st === "in_progress") s.in_progress = count;
  else if (r.st === "conflict") s.conflict = count;
  else s.pending_recorded = count;
  s.attempts += Number(r.a ?? 0);
  s.rate_limit_waits += Number(r.w ?? 0);
  s.cost_usd += Number(r.cost ?? 0);
}

/** Adds one batch record to a summary (batches outside 1..total do not count). */
export function addToSummary(s: JobSummary, b: BatchRecord): void {
  if (b.batch_num < 1 || b.batch_num > s.total) return;
  if (b.damaged) {
    s.damaged++;
    return;
  }
  if (b.status === "completed") {
    s.completed++;
    s.completed_duration_ms += b.duration_ms ?? 0;
  } else if (b.status === "failed") s.failed++;
  else if (b.status === "in_progress") s.in_progress++;
  else if (b.status === "conflict") s.conflict++;
  else s.pending_recorded++;
  s.attempts += b.attempts;
  s.rate_limit_waits += b.rate_limit_waits;
  s.cost_usd += b.cost_usd;
}

export const myHost = (): string => HOST;
