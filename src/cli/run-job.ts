/**
 * What `run` and `resume` share on the command line: open the state, start the run through the
 * engine, map signals onto its stop paths, show progress, print the outcome and return its
 * exit code. It writes no state itself; startRun() does.
 */
import { createInterface } from "node:readline/promises";
import type { PreparedJob } from "../config/check.ts";
import { MozartError } from "../errors.ts";
import { requester } from "../engine/control.ts";
import { exitCodeOf, startRun, type RunResult, type StartOptions } from "../engine/start.ts";
import { outputFolder, stateLocation } from "../state/location.ts";
import { mozartHome } from "../state/registry.ts";
import { batchRows, jobReport } from "../state/report.ts";
import { openStore } from "../state/store.ts";
import type { StateStore } from "../state/types.ts";
import { formatUsd, shellQuote } from "../text.ts";
import { formatDuration } from "../time.ts";
import { writeJsonWithArray } from "./json-stream.ts";
import type { Output } from "./output.ts";
import { createProgress } from "./progress.ts";
import { readOutcomeFigures } from "../learning/digest.ts";
import { historyEstimate } from "../learning/estimate.ts";
import { historyPath } from "../learning/history.ts";
import { blobHash } from "../state/driver.ts";
import { writeStepSummary } from "./step-summary.ts";

export type RunFlags = Pick<StartOptions, "command" | "join" | "from" | "retryFailed" | "force" | "forceConfig" | "takeOver" | "submit" | "selection" | "rerunConflicts" | "budget"> & {
  /** The store's location when it is not the job's own (a shard's state). */
  location?: string;
};

/** Signals that end a run the way Ctrl+C does: a closed terminal (HUP) or a quit request must not orphan the backend. */
const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const;

export async function openJobStore(job: Pick<PreparedJob, "config">, opts: { location?: string; warn?: (message: string) => void } = {}): Promise<StateStore> {
  const c = job.config;
  try {
    return await openStore({ kind: c.state_backend, location: opts.location ?? stateLocation(c), env: process.env, outputDir: outputFolder(c), ...(opts.warn ? { warn: opts.warn } : {}) });
  } catch (e) {
    if ((e as Error).name === "MozartError") throw e;
    throw new MozartError(`cannot open the job state at ${stateLocation(c)}: ${(e as Error).message}`, { hint: "check that the folder is writable and the disk is not full" });
  }
}

export async function runFromCli(job: PreparedJob, out: Output, flags: RunFlags): Promise<number> {
  const { location, ...start } = flags;
  const store = await openJobStore(job, { location, warn: (m) => out.warn(m) });
  try {
    if (flags.takeOver && !(await confirmTakeOver(store, job.config.name, out))) return 1;
    // A shard's state is one part of the job: the registry learns of the job from merge-state.
    const home = location ? undefined : mozartHome(process.env);
    // Everything the progress line needs is ready before the run starts: it must see the run's first event (job_start, which carries the batch count).
    const progress = createProgress(out, { ...(await historyAverage(job, home)) });
    const run = startRun({ job, store, ...start, env: process.env, home, warn: (m) => out.warn(m) });
    if (!out.json) run.events.on((e) => progress.handle(e));

    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      const by = requester("signal", sig);
      progress.stop();
      const name = sig === "SIGINT" ? "Ctrl+C" : sig;
      if (signals === 1) {
        run.stop(by);
        const again = sig === "SIGINT" ? "Press Ctrl+C again" : `Send ${sig} again`;
        out.warn(`${name}: starting no new work; letting running attempts finish and saving state. ${again} to stop them now.`);
      } else {
        run.kill(by);
        out.warn(`${name}: stopping running attempts now`);
      }
    };
    for (const s of STOP_SIGNALS) process.on(s, onSignal);
    let result: RunResult;
    try {
      result = await run.done;
    } finally {
      for (const s of STOP_SIGNALS) process.off(s, onSignal);
      progress.stop();
    }

    const report = await jobReport(store, result.job);
    if (result.outcome !== "nothing_to_do") {
      const failed = await store.listBatches(result.job.job_id, { statuses: ["failed", "conflict"], limit: 20 });
      await writeStepSummary(process.env, report, failed).catch((e: Error) => out.warn(`could not write the step summary: ${e.message}`));
    }
    if (out.json) await writeJsonWithArray({ ...report, outcome: result.outcome, ...(result.message ? { message: result.message } : {}) }, "batches", batchRows(store, result.job));
    else printOutcome(out, result, report);
    return exitCodeOf(result.outcome);
  } finally {
    await store.close().catch(() => {});
  }
}

function printOutcome(out: Output, result: RunResult, report: Awaited<ReturnType<typeof jobReport>>): void {
  const { c } = out;
  const id = shellQuote(report.job_id);
  const p = report.progress;
  const took = report.timing.started_at ? ` in ${formatDuration(Date.now() - Date.parse(report.timing.started_at))}` : "";
  const cost = report.cost_usd > 0 ? `, ${formatUsd(report.cost_usd)}${cacheNote(report)}` : "";
  switch (result.outcome) {
    case "submitted":
      out.print(`${c.green("✓")} ${result.message ?? `job ${report.job_id} submitted`}`);
      out.print(`  run it on any machine with the state's URL set: mozart worker --job ${id}`);
      out.print(`  follow it: mozart logs ${id} -f`);
      return;
    case "left":
      out.print(`${c.yellow("⏏")} this runner left job ${c.bold(report.job_id)}: ${p.completed}/${p.total} batches completed; the rest wait for other runners.`);
      return;
    case "nothing_to_do":
      out.info(result.message ?? "nothing to do");
      if (report.status === "completed") out.info(out.c.dim(`to run it again: mozart resume ${id} --force (or --from N)`));
      return;
    case "completed":
      out.print(`${c.green("✓")} job ${c.bold(report.job_id)} completed: ${p.completed}/${p.total} batches${took}${cost}`);
      return;
    case "selection_done":
      out.print(`${c.green("✓")} the batches asked for completed; job ${c.bold(report.job_id)} has ${p.completed}/${p.total} batches done${result.message ? ` (${result.message})` : ""}`);
      out.print(`  to run the rest: mozart resume ${id}`);
      return;
    case "failed":
      out.print(`${c.red("✗")} job ${c.bold(report.job_id)} failed: ${report.error ?? "a batch failed"}`);
      out.print(`  ${p.completed}/${p.total} batches completed${p.conflict ? `, ${p.conflict} could not be merged` : ""}${cost}. Details: mozart status ${id}`);
      out.print(p.conflict && !p.failed ? `  after resolving it: mozart resume ${id} (or re-run it on the new base: mozart resume ${id} --rerun-conflicts)` : `  after fixing the cause: mozart resume ${id}`);
      return;
    case "cancelled":
      out.print(`${c.yellow("■")} job ${c.bold(report.job_id)} cancelled${byText(result)}: ${p.completed}/${p.total} batches completed; state saved.`);
      out.print(`  to continue it anyway: mozart resume ${id}`);
      return;
    default:
      if (report.paused_for?.reason === "budget") {
        out.print(`${c.yellow("⏸")} job ${c.bold(report.job_id)} paused: budget reached, ${formatUsd(report.paused_for.spent_usd)} spent of ${formatUsd(report.paused_for.max_cost_usd)}; ${p.completed}/${p.total} batches completed; state saved.`);
        out.print(`  to continue with a larger budget: mozart resume ${id} --budget <USD>`);
        return;
      }
      if (report.paused_for?.reason === "low_success") {
        const f = report.paused_for;
        out.print(`${c.yellow("⏸")} job ${c.bold(report.job_id)} paused: low_success, ${Math.round(f.rate * 100)}% of the last ${f.window} batches passed at the first try (below ${Math.round(f.threshold * 100)}%); ${p.completed}/${p.total} batches completed; state saved.`);
        if (f.failing.length) out.print(`  failing validations: ${f.failing.slice(0, 5).join("; ")}`);
        out.print(`  fix the prompt or the validations, then: mozart resume ${id} (add --force-config once the job file changed)`);
        return;
      }
      out.print(`${c.yellow("⏸")} job ${c.bold(report.job_id)} paused${byText(result)}: ${p.completed}/${p.total} batches completed${cost}${result.message ? ` (${result.message})` : ""}; state saved.`);
      out.print(`  to continue: mozart resume ${id}`);
  }
}

function cacheNote(report: Awaited<ReturnType<typeof jobReport>>): string {
  const t = report.tokens;
  return t.cache_read + t.cache_write_5m + t.cache_write_1h > 0 ? ` (cache hits ${Math.round(report.cache_hit_ratio * 100)}%)` : "";
}

function byText(result: RunResult): string {
  const by = result.by;
  if (!by || by.via === "signal") return "";
  return ` by ${by.user ? `${by.user}@` : ""}${by.host} (pid ${by.pid}, ${by.via})`;
}

/** --take-over: say what is known about the holder, and on a terminal ask before fencing it out. */
async function confirmTakeOver(store: StateStore, id: string, out: Output): Promise<boolean> {
  const holders = await store.runners(id, Date.now());
  if (!holders.length) {
    out.info("no live runner holds the job: nothing to take over");
    return true;
  }
  for (const h of holders) {
    const ago = Math.round((Date.now() - h.renewed_at) / 1000);
    out.warn(`taking over from runner pid ${h.pid} on ${h.host} (started ${h.started_at}, last heartbeat ${ago}s ago); anything it records from now on is refused`);
  }
  if (!process.stdin.isTTY || !process.stderr.isTTY || out.json) return true;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question("Take the job over? [y/N] ");
    if (/^y(es)?$/i.test(answer.trim())) return true;
    out.info("not taken over");
    return false;
  } finally {
    rl.close();
  }
}

/** The mean duration of past batches of this job's prompt template, for the ETA until the run has its own. */
async function historyAverage(job: PreparedJob, home: string | undefined): Promise<{ historyAverageMs?: number }> {
  const c = job.config;
  const path = c.learning.enabled ? historyPath({ home, storePath: c.learning.outcome_store_path, jobDir: job.dir }) : undefined;
  if (!path) return {};
  const e = historyEstimate(await readOutcomeFigures(path).catch(() => []), blobHash(job.templateSource), 1, 1);
  return e ? { historyAverageMs: e.duration_ms.expected } : {};
}
