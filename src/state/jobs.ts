/**
 * One row per registered job, as `mozart list` and the dashboard's job list show it: from the
 * registry's snapshot when there is one (no store is opened, so a thousand jobs list fast), else
 * from the job's store, read-only.
 */
import { hostname } from "node:os";
import { pidAlive } from "./driver.ts";
import { isLocalLocation } from "./location.ts";
import type { RegistryEntry } from "./registry.ts";
import { jobReport } from "./report.ts";
import { openStore } from "./store.ts";
import type { Requester, StateStore } from "./types.ts";

export interface JobRow {
  job_id: string;
  status: string;
  completed: number;
  total: number;
  cost_usd: number;
  updated_at: string;
  config_path: string;
  state: string;
  stopped_by?: Requester;
  error?: string;
  /** Batches that could not be merged (isolation: worktree). */
  conflict?: number;
  /** The account its claude sessions run on, when the runner registered one. */
  account?: string;
}

const HOST = hostname();

/** `opened`: a store on the entry's state that the caller keeps open (the dashboard's), read instead of opening one. */
export async function jobRow(entry: RegistryEntry, opened?: StateStore): Promise<JobRow> {
  const base = { job_id: entry.job_id, updated_at: entry.updated_at, config_path: entry.config_path, state: entry.state_location, ...(entry.account ? { account: entry.account } : {}) };
  // A job in a shared database is run by workers that write no snapshot here: read its store.
  const snap = isLocalLocation(entry.state_location) ? entry.snapshot : undefined;
  if (snap) {
    // A snapshot that says running, written by a process of this host that is gone: killed, so paused.
    const gone = snap.status === "running" && snap.runner?.host === HOST && !pidAlive(snap.runner.pid);
    return { ...base, status: gone ? "paused" : snap.status, completed: snap.completed, total: snap.total, cost_usd: snap.cost_usd, ...(snap.stopped_by ? { stopped_by: snap.stopped_by } : {}), ...(snap.conflict ? { conflict: snap.conflict } : {}) };
  }
  try {
    const store = opened ?? (await openStore({ kind: entry.state_backend, location: entry.state_location, readOnly: true, env: process.env }));
    try {
      const rec = await store.getJob(entry.job_id);
      if (!rec) return unreadableRow(base, `no job record in ${entry.state_location}`);
      const r = await jobReport(store, rec);
      return { ...base, status: r.status, completed: r.progress.completed, total: r.progress.total, cost_usd: r.cost_usd, ...(r.stopped_by ? { stopped_by: r.stopped_by } : {}), ...(r.progress.conflict ? { conflict: r.progress.conflict } : {}) };
    } finally {
      if (!opened) await store.close();
    }
  } catch (e) {
    return unreadableRow(base, (e as Error).message);
  }
}

/** A registry file that could not be read, or a job whose store could not be: listed, never hidden. */
export function unreadableRow(base: Pick<JobRow, "job_id" | "updated_at" | "config_path" | "state">, reason: string): JobRow {
  return { ...base, status: "unreadable", completed: 0, total: 0, cost_usd: 0, error: reason };
}
