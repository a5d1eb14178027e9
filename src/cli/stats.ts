/** `mozart stats [job] [--since DATE] [--json]`: what the outcome history says, per job or across all jobs. */
import { defineCommand } from "citty";
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { EXIT, MozartError } from "../errors.ts";
import { readOutcomeFigures } from "../learning/digest.ts";
import { historyPath } from "../learning/history.ts";
import { computeStats, type Figures } from "../learning/stats.ts";
import { mozartHome } from "../state/registry.ts";
import { formatUsd } from "../text.ts";
import { formatDuration } from "../time.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput, table, type Output } from "./output.ts";

/** A date (`2026-01-31`) or a moment (`2026-01-31T12:00:00Z`); a bare date is midnight UTC. */
export function parseSince(value: string): number {
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(value) ? Date.parse(`${value}T00:00:00Z`) : /^\d{4}-\d{2}-\d{2}T/.test(value) ? Date.parse(value) : NaN;
  if (!Number.isFinite(ms)) throw new MozartError(`--since expects a date such as 2026-01-31 or 2026-01-31T12:00:00Z, got "${value}"`, { exitCode: EXIT.usage });
  return ms;
}

const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)}%`);

export default defineCommand({
  meta: { name: "stats", description: "Outcome statistics from the history: first-try success, attempts, failing validations, cost and duration per batch, time held, by model" },
  args: {
    job: { type: "positional", required: false, description: "Job id (its name) or job file; all jobs when left out" },
    since: { type: "string", description: "Only outcomes from this date or moment on (2026-01-31, 2026-01-31T12:00:00Z)", valueHint: "DATE" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    const since = args.since !== undefined ? parseSince(args.since) : undefined;
    let job = args.job as string | undefined;
    let path = historyPath({ home: mozartHome(process.env), jobDir: process.cwd() })!;
    // A job file names its job, and its own history file when learning.outcome_store_path is set.
    if (job && /\.(ya?ml|json|toml)$/i.test(job) && (await stat(job).then((s) => s.isFile(), () => false))) {
      // Loaded only for a job file: the config schema is most of a command's start-up.
      const { loadJobFile } = await import("../config/load.ts");
      const loaded = await loadJobFile(job);
      job = loaded.config.name;
      path = historyPath({ home: mozartHome(process.env), storePath: loaded.config.learning.outcome_store_path, jobDir: dirname(loaded.file) })!;
    }
    const history = await readOutcomeFigures(path).catch((e: Error) => {
      throw new MozartError(`cannot read the outcome history ${path}: ${e.message}`);
    });
    const stats = computeStats(history, { ...(job ? { job } : {}), ...(since !== undefined ? { since } : {}) });
    if (out.json) {
      out.emit({ history: path, job: job ?? null, ...stats });
      return EXIT.ok;
    }
    if (!stats.outcomes) {
      out.print(job ? `No outcomes recorded for job "${job}"${args.since ? ` since ${args.since}` : ""}.` : "No outcomes recorded yet.");
      out.info(out.c.dim(`outcomes are appended to ${path} as batches finish`));
      return EXIT.ok;
    }
    const { bold, dim } = out.c;
    out.print(`${bold("Outcomes")} ${job ? `of job ${bold(job)}` : `of ${stats.jobs.length} job${stats.jobs.length === 1 ? "" : "s"}`}${stats.since ? ` since ${stats.since}` : ""}` + dim(` (${path})`));
    printFigures(out, stats);
    const models = Object.entries(stats.by_model);
    if (models.length > 1 || (models.length === 1 && models[0]![0] !== "(unknown)")) {
      out.print();
      out.print(bold("By model"));
      const rows = models.map(([m, f]) => [m, f.finished, pct(f.first_try_rate), formatUsd(f.cost_usd.p50), formatUsd(f.cost_usd.p90), formatDuration(f.duration_ms.p50), formatDuration(f.duration_ms.p90), f.cost_per_successful_item === null ? "-" : formatUsd(f.cost_per_successful_item), pct(f.held.share)]);
      for (const l of table(["Model", "Batches", "First try", "Cost p50", "Cost p90", "Time p50", "Time p90", "Per item", "Held"], rows, ["l", "r", "r", "r", "r", "r", "r", "r", "r"])) out.print(`  ${l}`);
    }
    return EXIT.ok;
  },
});

function printFigures(out: Output, f: Figures): void {
  const { bold, dim } = out.c;
  const c = f.categories;
  out.print(`  batches:      ${f.finished} finished${c.cancelled ? `, ${c.cancelled} cancelled` : ""} — ${c.first_try} at the first try, ${c.after_retry} after retries, ${c.after_completion} after completion, ${c.failed} failed`);
  out.print(`  first try:    ${pct(f.first_try_rate)}`);
  out.print(`  attempts:     ${f.attempts.map((a) => `${a.attempts}: ${a.batches}`).join(", ") || "-"}` + dim("  (attempts: batches)"));
  out.print(`  cost:         p50 ${formatUsd(f.cost_usd.p50)}, p90 ${formatUsd(f.cost_usd.p90)} per batch; ${formatUsd(f.cost_usd.total)} in all; ${f.cost_per_successful_item === null ? "-" : formatUsd(f.cost_per_successful_item)} per successful item (${f.successful_items} items)`);
  out.print(`  duration:     p50 ${formatDuration(f.duration_ms.p50)}, p90 ${formatDuration(f.duration_ms.p90)} per batch`);
  const kinds = Object.entries(f.held.by_kind);
  out.print(`  held:         ${pct(f.held.share)} of the time${kinds.length ? ` (${kinds.map(([k, v]) => `${k} ${pct(v.share)}`).join(", ")})` : ""}`);
  if (f.failing_validations.length) {
    out.print();
    out.print(bold("Validations that fail most"));
    const rows = f.failing_validations.slice(0, 10).map((v) => [v.description, v.failures, v.batches, `${v.example.job_id} batch ${v.example.batch_num}`]);
    for (const l of table(["Validation", "Failures", "Batches", "Example"], rows, ["l", "r", "r", "l"])) out.print(`  ${l}`);
  }
}
