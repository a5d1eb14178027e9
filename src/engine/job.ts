/** The job record: identity, config hash, the batch plan, and the checks a changed job file must pass. */
import { createHash } from "node:crypto";
import type { ExecutionRequest } from "../backends/types.ts";
import type { PreparedJob } from "../config/check.ts";
import type { BatchRecord, JobRecord, StateStore } from "../state/types.ts";

/** Top-level keys that do not shape the work: changing them needs no --force-config. */
const NOT_SHAPING = new Set(["description", "budget", "on_batch_failure"]);

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === "object" && v !== null && !Array.isArray(v);
const shapeOf = (config: Plain): Plain => Object.fromEntries(Object.entries(config).filter(([k]) => !NOT_SHAPING.has(k)));

/**
 * A change to anything that shapes the work, as the job file writes it (keys sorted, defaults
 * left out) or in the template's text, changes the hash. Defaults are left out so that a Mozart
 * that adds an option with a default changes no job's hash: a paused job resumes after an
 * upgrade. The "w" tells it from the hashes of earlier versions, taken over the config with its
 * defaults (see sameJobFile).
 */
export function configHash(job: PreparedJob): string {
  return `w${createHash("sha256").update(canonicalJson(shapeOf(job.raw))).update("\0").update(job.templateSource).digest("hex").slice(0, 15)}`;
}

/** JSON with every object's keys sorted, so the order a file writes them in does not matter. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (isPlain(v) ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]])) : v));
}

/**
 * Whether the job file still describes the recorded job. A record an earlier Mozart wrote holds
 * a hash over its config with that version's defaults: it still matches when the template is the
 * same and every option the stored config has keeps its value, an option it did not know
 * counting only when the job file sets it.
 */
export async function sameJobFile(job: PreparedJob, rec: JobRecord, store: StateStore): Promise<boolean> {
  if (rec.config_hash === configHash(job)) return true;
  if (rec.config_hash.startsWith("w")) return false;
  const [config, template] = await Promise.all([store.getBlob(rec.config_blob), store.getBlob(rec.template_blob)]);
  if (config === null || template !== job.templateSource) return false;
  let stored: unknown;
  try {
    stored = JSON.parse(config);
  } catch {
    return false;
  }
  return isPlain(stored) && knownValuesSame(shapeOf(stored), shapeOf(job.config as unknown as Plain), shapeOf(job.raw));
}

function knownValuesSame(stored: unknown, current: unknown, written: unknown): boolean {
  const at = (v: unknown, k: string | number): unknown => (Array.isArray(v) ? v[k as number] : isPlain(v) ? v[k as string] : undefined);
  if (Array.isArray(stored) && Array.isArray(current)) {
    return stored.length === current.length && stored.every((s, i) => knownValuesSame(s, current[i], at(written, i)));
  }
  if (isPlain(stored) && isPlain(current)) {
    for (const k of new Set([...Object.keys(stored), ...Object.keys(current)])) {
      if (!(k in stored)) {
        if (at(written, k) !== undefined) return false;
        continue;
      }
      if (!(k in current) || !knownValuesSame(stored[k], current[k], at(written, k))) return false;
    }
    return true;
  }
  return JSON.stringify(stored) === JSON.stringify(current);
}

/** The parts of the job record that follow the job file; the big texts go to blobs, stored once. */
export async function jobFields(
  job: PreparedJob,
  store: StateStore,
): Promise<Pick<JobRecord, "config_hash" | "config_blob" | "source_blob" | "template_blob" | "config_path" | "workspace" | "total_batches" | "plan" | "max_cost_usd">> {
  const c = job.config;
  return {
    config_hash: configHash(job),
    config_blob: await store.putBlob(JSON.stringify(c)),
    source_blob: await store.putBlob(job.source),
    template_blob: await store.putBlob(job.templateSource),
    config_path: job.file,
    workspace: c.workspace,
    total_batches: job.totalBatches,
    plan: { size: c.batch.size, start_item: c.batch.start_item, total_items: c.batch.total_items },
    // Undefined when the job file has none: the spread over the old record then drops it.
    max_cost_usd: c.budget.max_cost_usd,
  };
}

export async function newJobRecord(job: PreparedJob, store: StateStore, now: number): Promise<JobRecord> {
  const at = new Date(now).toISOString();
  return {
    job_id: job.config.name,
    job_name: job.config.name,
    ...(job.config.description ? { description: job.config.description } : {}),
    status: "pending",
    ...(await jobFields(job, store)),
    created_at: at,
    updated_at: at,
  };
}

export function freshBatch(job: PreparedJob, n: number): BatchRecord {
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
    token: 0,
  };
}

/**
 * A changed batch plan (size, start_item, total_items) is accepted only when every batch that
 * has a record still covers exactly the same items: completed batches are matched by item
 * range, never by number alone, so no item is skipped and none is done twice.
 */
export async function planConflict(job: PreparedJob, store: StateStore, jobId: string): Promise<string | undefined> {
  for (let from = 0; ; ) {
    const page = await store.listBatches(jobId, { from, limit: 1000 });
    if (!page.length) return undefined;
    for (const b of page) {
      if (b.damaged || (b.status === "pending" && b.attempts === 0)) continue;
      // Outside the new plan: its items left the job, so there is nothing to skip or redo.
      if (b.batch_num > job.totalBatches) continue;
      const now = job.batch(b.batch_num);
      if (now.start_item !== b.start_item || now.end_item !== b.end_item) {
        return `batch ${b.batch_num} (${b.status}) covered items ${b.start_item}–${b.end_item}; with the new batch plan it would cover items ${now.start_item}–${now.end_item}`;
      }
    }
    from = page[page.length - 1]!.batch_num + 1;
  }
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
    ...(job.cachePrefix(prompt) ? { cache_prefix: job.cachePrefix(prompt) } : {}),
    ...(job.outputPath(n) ? { output_path: job.outputPath(n) } : {}),
  };
}
