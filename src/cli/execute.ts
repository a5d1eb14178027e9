/**
 * What `run` and `resume` share: open the state, take the job's lock, decide which batches to
 * run, wire signals, progress and notifications to the engine, and map the outcome to an exit
 * code. Nothing here decides how a batch runs; that is the engine's job.
 */
import { mkdir } from "node:fs/promises";
import { createBackend } from "../backends/index.ts";
import type { PreparedJob } from "../config/check.ts";
import type { NotificationEvent } from "../config/schema.ts";
import { EXIT, MozartError } from "../errors.ts";
import { createEmitter, type MozartEvent } from "../engine/events.ts";
import { configHash, me, newJobRecord, pendingBatches, refreshJobRecord } from "../engine/job.ts";
import { runJob, type RunOutcome } from "../engine/runner.ts";
import { createShutdown } from "../engine/shutdown.ts";
import { createNotifier } from "../notify/index.ts";
import { stateLocation } from "../state/location.ts";
import { mozartHome, registerJob } from "../state/registry.ts";
import { openStore } from "../state/store.ts";
import type { BatchRecord, JobRecord, StateStore } from "../state/types.ts";
import { shellQuote as quote } from "./dry-run.ts";
import { writeStepSummary } from "./step-summary.ts";
import { formatDuration, createProgress } from "./progress.ts";
import type { Output } from "./output.ts";

export interface ExecuteOptions {
  job: PreparedJob;
  /** The job file's text, kept in state so resume works without the file. */
  source: string;
  out: Output;
  command: "run" | "resume";
  forceConfig?: boolean;
  from?: number;
  retryFailed?: boolean;
  force?: boolean;
}


export async function openJobStore(job: Pick<PreparedJob, "config">): Promise<StateStore> {
  const c = job.config;
  try {
    return await openStore({ kind: c.state_backend, location: stateLocation(c) });
  } catch (e) {
    throw new MozartError(`cannot open the job state at ${stateLocation(c)}: ${(e as Error).message}`, { hint: "check that the folder is writable and the disk is not full" });
  }
}

export async function executeJob(opts: ExecuteOptions): Promise<number> {
  const { job, out } = opts;
  const c = job.config;
  const id = c.name;
  try {
    await mkdir(c.workspace, { recursive: true });
  } catch (e) {
    throw new MozartError(`cannot create the workspace ${c.workspace}: ${(e as Error).message}`);
  }
  const store = await openJobStore(job);
  const now = Date.now();
  const lock = await store.acquireLock(id, me(now));
  if (!lock.ok) {
    await store.close();
    const h = lock.holder;
    throw new MozartError(`job "${id}" is already running (pid ${h.pid} on ${h.host}, since ${h.started_at})`, {
      hint: `watch it with: mozart status ${quote(id)} --watch`,
    });
  }
  try {
    return await executeLocked(opts, store);
  } finally {
    await store.releaseLock(id).catch(() => {});
    await store.close().catch(() => {});
  }
}

async function executeLocked(opts: ExecuteOptions, store: StateStore): Promise<number> {
  const { job, out } = opts;
  const c = job.config;
  const id = c.name;
  const now = Date.now();
  let rec = await store.getJob(id);
  let batches: BatchRecord[] = rec ? await store.listBatches(id) : [];
  // Registered on every run, so `status`/`resume` by name work from any folder, under any MOZART_HOME.
  await registerJob(mozartHome(process.env), {
    job_id: id,
    state_backend: c.state_backend,
    state_location: stateLocation(c),
    config_path: job.file,
    workspace: c.workspace,
    updated_at: new Date(now).toISOString(),
  }).catch((e: Error) => out.warn(`could not register the job under ${mozartHome(process.env)} (${e.message}); status and resume will need the job file`));

  if (!rec) {
    if (opts.command === "resume") throw new MozartError(`job "${id}" has no state yet`, { hint: `start it with: mozart run ${quote(job.file)}` });
    rec = newJobRecord(job, opts.source, now);
  } else {
    const hash = configHash(job);
    if (hash !== rec.config_hash && !opts.forceConfig) {
      throw new MozartError(`the job file changed since job "${id}" started (config ${rec.config_hash} → ${hash})`, {
        exitCode: EXIT.usage,
        hint: `continue with the new config: --force-config; or give the job a new name to start over`,
      });
    }
    if (opts.command === "run") {
      if (rec.status === "completed" && hash === rec.config_hash) {
        out.info(`job ${out.c.bold(id)} is already completed (${rec.completed_batches}/${rec.total_batches} batches): nothing to do`);
        out.info(out.c.dim(`to run it again: mozart resume ${quote(id)} --force`));
        if (out.json) out.emit(await summaryJson(store, rec));
        return EXIT.ok;
      }
      out.info(`job ${out.c.bold(id)} already exists (${rec.status}, ${batches.filter((b) => b.status === "completed").length}/${job.totalBatches} batches done): continuing it`);
    }
  }

  let selection: number[];
  if (opts.force) {
    await store.clearBatches(id);
    batches = [];
    rec.total_attempts = 0;
    rec.cost_usd = 0;
    rec.rate_limit_waits = 0;
    selection = pendingBatches(job.totalBatches, batches);
  } else if (opts.from !== undefined) {
    if (opts.from < 1 || opts.from > job.totalBatches) throw new MozartError(`--from ${opts.from} is out of range: the job has ${job.totalBatches} batches`, { exitCode: EXIT.usage });
    for (const b of batches) {
      if (b.batch_num >= opts.from && b.status !== "pending") {
        b.status = "pending";
        await store.putBatch(id, b);
      }
    }
    selection = Array.from({ length: job.totalBatches - opts.from + 1 }, (_, k) => opts.from! + k);
  } else if (opts.retryFailed) {
    selection = batches.filter((b) => b.status === "failed" && b.batch_num <= job.totalBatches).map((b) => b.batch_num);
    if (!selection.length) out.info("no failed batches to retry");
  } else {
    selection = pendingBatches(job.totalBatches, batches);
  }
  refreshJobRecord(rec, job, opts.source, batches);
  rec.runner = me(now);
  await store.putJob(rec);


  const events = createEmitter((e) => out.detail(`listener error: ${(e as Error).message}`));
  const shutdown = createShutdown();
  const progress = createProgress(out);
  if (!out.json) events.on((e) => progress.handle(e));
  const notifier = createNotifier(c.notifications, { env: process.env, log: (m) => out.warn(m) });
  events.on((e) => forwardToNotifier(e, rec!, notifier.notify));

  const onSignal = (sig: NodeJS.Signals) => {
    const first = !shutdown.stop.aborted;
    shutdown.request(sig);
    progress.stop();
    if (first) out.warn(`${sig === "SIGINT" ? "Ctrl+C" : sig}: starting no new work; letting running attempts finish and saving state. Press Ctrl+C again to stop them now.`);
    else out.warn("stopping running attempts now");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  const backend = createBackend(c.backend, { jobDir: job.dir, workspace: c.workspace, env: process.env });
  let outcome: RunOutcome;
  try {
    outcome = await runJob({ job, store, backend, events, shutdown, record: rec, batches: selection });
  } catch (e) {
    progress.stop();
    throw new MozartError(`the run stopped: ${(e as Error).message}`, { hint: `nothing recorded as done is lost; continue with: mozart resume ${quote(id)}` });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    progress.stop();
  }
  rec.runner = null;
  await store.putJob(rec);
  await notifier.flush(5000);
  await writeStepSummary(process.env, rec, await store.listBatches(id)).catch((e: Error) => out.warn(`could not write the step summary: ${e.message}`));

  if (out.json) out.emit(await summaryJson(store, rec));
  else printSummary(out, rec, outcome);
  return outcome === "completed" ? EXIT.ok : outcome === "failed" ? EXIT.failed : EXIT.paused;
}

function forwardToNotifier(e: MozartEvent, rec: JobRecord, notify: (ev: NotificationEvent, ctx: Parameters<ReturnType<typeof createNotifier>["notify"]>[1]) => void): void {
  const base = { job_id: rec.job_id, job_name: rec.job_name, timestamp: new Date().toISOString(), total_batches: rec.total_batches };
  switch (e.type) {
    case "job_start":
      return notify("job_start", { ...base, completed: e.completed });
    case "batch_start":
      return notify("batch_start", { ...base, batch_num: e.batch_num });
    case "batch_complete":
      return notify("batch_complete", { ...base, batch_num: e.batch_num, duration_seconds: e.duration_ms / 1000, cost_usd: e.cost_usd });
    case "batch_failed":
      return notify("batch_failed", { ...base, batch_num: e.batch_num, error: e.error.message });
    case "rate_limit_hold":
      return notify("rate_limit_hold", { ...base, batch_num: e.batch_num, hold_until: new Date(e.until).toISOString(), error: e.reason });
    case "job_paused":
      return notify("job_paused", { ...base, completed: e.completed });
    case "job_complete":
      return notify("job_complete", { ...base, completed: e.completed, failed: 0, duration_seconds: e.duration_ms / 1000, cost_usd: e.cost_usd });
    case "job_failed":
      return notify("job_failed", { ...base, completed: e.completed, failed: e.failed, error: e.error, duration_seconds: e.duration_ms / 1000, cost_usd: e.cost_usd });
  }
}

async function summaryJson(store: StateStore, rec: JobRecord) {
  const { statusJson } = await import("./status-view.ts");
  return statusJson(rec, await store.listBatches(rec.job_id));
}

function printSummary(out: Output, rec: JobRecord, outcome: RunOutcome): void {
  const { c } = out;
  const id = quote(rec.job_id);
  const took = rec.started_at ? ` in ${formatDuration(Date.now() - Date.parse(rec.started_at))}` : "";
  const cost = rec.cost_usd > 0 ? `, $${rec.cost_usd.toFixed(4)}` : "";
  if (outcome === "completed") {
    out.print(`${c.green("✓")} job ${c.bold(rec.job_id)} completed: ${rec.completed_batches}/${rec.total_batches} batches${took}${cost}`);
  } else if (outcome === "failed") {
    out.print(`${c.red("✗")} job ${c.bold(rec.job_id)} failed: ${rec.error ?? "a batch failed"}`);
    out.print(`  ${rec.completed_batches}/${rec.total_batches} batches completed${cost}. Details: mozart status ${id}`);
    out.print(`  after fixing the cause: mozart resume ${id}`);
  } else {
    out.print(`${c.yellow("⏸")} job ${c.bold(rec.job_id)} paused: ${rec.completed_batches}/${rec.total_batches} batches completed; state saved.`);
    out.print(`  to continue: mozart resume ${id}`);
  }
}
