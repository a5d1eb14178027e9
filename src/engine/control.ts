/**
 * Steering a run from anywhere. `mozart pause`, `mozart cancel`, the dashboard and a runner's
 * own signal handlers write the job's control record; every runner of the job watches it (and
 * its lease, the shared hold, and the state's identity) on a short tick, so a request reaches
 * a runner on any machine within a second. Nothing here uses signals between processes.
 */
import { hostname, userInfo } from "node:os";
import { dirname } from "node:path";
import { createBackend } from "../backends/index.ts";
import type { JobConfig } from "../config/schema.ts";
import { updateSnapshot } from "../state/registry.ts";
import { jobReport, type RunnerView } from "../state/report.ts";
import type { ControlRecord, Hold, JobRecord, JobStatus, Requester, StateStore } from "../state/types.ts";

/** How often a runner looks at its control record: well inside the promised second. */
export const CONTROL_TICK_MS = 250;

export function requester(via: Requester["via"], signal?: string): Requester {
  let user: string | undefined;
  try {
    user = userInfo().username;
  } catch {
    user = undefined;
  }
  return { via, host: hostname(), pid: process.pid, ...(user ? { user } : {}), ...(signal ? { signal } : {}) };
}

/** Asks every runner of the job to pause (drain) or cancel (stop now). A cancel is never downgraded to a pause. */
export async function requestControl(store: StateStore, jobId: string, request: ControlRecord["request"], by: Requester, now = Date.now()): Promise<ControlRecord> {
  const current = await store.getControl(jobId);
  if (current?.request === "cancel" && request === "pause") return current;
  const record: ControlRecord = { request, by, at: new Date(now).toISOString() };
  await store.setControl(jobId, record);
  return record;
}

export type SteerResult =
  /** Written to the control record; every live runner reacts within a second. */
  | { kind: "requested"; control: ControlRecord; runners: RunnerView[]; status: JobStatus }
  /** A cancel of a job no runner holds: recorded as cancelled at once (and its Message Batches cancelled at the API). */
  | { kind: "cancelled"; status: JobStatus; was: JobStatus; remote?: RemoteCancel }
  /** Nothing to do: a pause of a job that is not running, a cancel of a completed or cancelled one. */
  | { kind: "not_running"; status: JobStatus };

/**
 * Pause or cancel a job, the one way `mozart pause/cancel` and the dashboard do it. A job no
 * runner holds cannot be paused (nothing runs), but can be cancelled unless it already ended so.
 */
export async function steerJob(
  store: StateStore,
  record: JobRecord,
  request: ControlRecord["request"],
  by: Requester,
  home: string,
  env: Record<string, string | undefined> = process.env,
): Promise<SteerResult> {
  const id = record.job_id;
  const before = await jobReport(store, record);
  if (before.runners.length) {
    const control = await requestControl(store, id, request, by);
    return { kind: "requested", control, runners: before.runners, status: before.status };
  }
  if (request === "pause" || before.status === "completed" || before.status === "cancelled") return { kind: "not_running", status: before.status };
  await store.commit(id, { job: { status: "cancelled", stopped_by: by }, events: [{ type: "job_cancelled", completed: before.progress.completed, total_batches: before.progress.total, by }] }, Date.now());
  // Nobody waits for the submitted Message Batches, but the API still works on them: cancel them there.
  const remote = await cancelSubmitted(store, record, env);
  const after = await jobReport(store, (await store.getJob(id)) ?? record);
  await updateSnapshot(home, id, { status: after.status, completed: after.progress.completed, total: after.progress.total, cost_usd: after.cost_usd, stopped_by: by }).catch(() => {});
  return { kind: "cancelled", status: after.status, was: before.status, ...(remote ? { remote } : {}) };
}

export interface RemoteCancel {
  /** Message Batches asked to cancel. */
  asked: number;
  /** Why nothing could be cancelled, when so. */
  problem?: string;
}

/**
 * Cancels, at the API, the Message Batches of a job that no runner watches (its attempts were
 * left detached by Ctrl+C or a kill), with the backend of the config saved with the job. Undefined
 * when there are none.
 */
export async function cancelSubmitted(store: StateStore, record: JobRecord, env: Record<string, string | undefined>): Promise<RemoteCancel | undefined> {
  const open = (await store.listRemoteBatches(record.job_id)).filter((b) => b.id && b.status === "in_progress");
  if (!open.length) return undefined;
  const text = await store.getBlob(record.config_blob);
  const config = text ? (JSON.parse(text) as JobConfig) : undefined;
  if (config?.backend.type !== "anthropic_batch") return { asked: 0, problem: "the job's saved config has no anthropic_batch backend" };
  const warnings: string[] = [];
  const backend = createBackend(config.backend, {
    jobDir: dirname(record.config_path),
    workspace: record.workspace,
    env,
    remote: {
      store,
      jobId: record.job_id,
      runnerId: "cancel",
      event: async (e) => {
        await store.commit(record.job_id, { events: [e] }, Date.now());
      },
      warn: (m) => warnings.push(m),
    },
  });
  const missing = backend.preflight?.();
  if (missing) return { asked: 0, problem: `${missing.message}: the Message Batches were not cancelled at the API` };
  await backend.cancelRemote?.();
  return { asked: open.length, ...(warnings.length ? { problem: warnings.join("; ") } : {}) };
}

export interface WatchHandlers {
  control(record: ControlRecord): void;
  /** The shared hold as stored (null when there is none). */
  hold(hold: Hold | null): void;
  /** Another runner of the job failed it. */
  jobFailed(job: JobRecord): void;
  /** The lease could not be renewed: this runner was frozen or cut off and another took over. */
  lost(reason: string): void;
  /** The state was deleted or replaced, or cannot be read any more. */
  broken(error: Error): void;
}

export interface Watcher {
  stop(): void;
}

export function watchRun(opts: {
  store: StateStore;
  jobId: string;
  runnerId: string;
  ttlMs: number;
  heartbeatMs: number;
  tickMs?: number;
  wallNow?: () => number;
  handlers: WatchHandlers;
}): Watcher {
  const { store, jobId, handlers } = opts;
  const wallNow = opts.wallNow ?? Date.now;
  const tickMs = opts.tickMs ?? CONTROL_TICK_MS;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastBeat = wallNow();
  let lastControl = "";
  let failures = 0;

  const tick = async () => {
    try {
      await store.checkIdentity();
      const now = wallNow();
      if (now - lastBeat >= opts.heartbeatMs) {
        const ok = await store.heartbeat(jobId, opts.runnerId, now, opts.ttlMs);
        lastBeat = now;
        if (!ok) {
          handlers.lost(`its lease expired (no heartbeat for over ${Math.round(opts.ttlMs / 1000)}s: the process was frozen, suspended or starved) and another runner took its batches over`);
          return;
        }
      }
      const control = await store.getControl(jobId);
      const key = control ? `${control.request}@${control.at}` : "";
      if (control && key !== lastControl) handlers.control(control);
      lastControl = key;
      handlers.hold(await store.getHold(jobId));
      const job = await store.getJob(jobId);
      if (job?.status === "failed") handlers.jobFailed(job);
      failures = 0;
    } catch (e) {
      // A busy database or a slow disk for a moment is not a broken state; a deleted one is.
      const err = e as Error;
      if (/deleted|replaced/.test(err.message) || ++failures >= 8) {
        handlers.broken(err);
        return;
      }
    } finally {
      if (!stopped) timer = setTimeout(() => void tick(), tickMs);
    }
  };
  timer = setTimeout(() => void tick(), tickMs);
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
