/** `mozart run --dry-run`: the plan, one batch's rendered prompt, its validations and the exact invocation. */
import { createBackend } from "../backends/index.ts";
import type { Invocation } from "../backends/types.ts";
import { displayPath, type PreparedJob } from "../config/check.ts";
import type { ValidationRule } from "../config/schema.ts";
import { requestFor } from "../engine/job.ts";
import { MozartError } from "../errors.ts";
import { stateLocation } from "../state/location.ts";
import { formatTokens, formatUsd, shellQuote } from "../text.ts";
import { estimateCost, type CostEstimate } from "./estimate.ts";
import { writeJsonWithArray } from "./json-stream.ts";
import { blobHash } from "../state/driver.ts";
import { mozartHome } from "../state/registry.ts";
import { formatDuration } from "../time.ts";
import { readOutcomeFigures } from "../learning/digest.ts";
import { historyEstimate, type HistoryEstimate } from "../learning/estimate.ts";
import { historyPath } from "../learning/history.ts";
import { table, type Output } from "./output.ts";

export function describeInvocation(inv: Invocation): string {
  const env = Object.keys(inv.env).map((k) => `${k}=${shellQuote(inv.env[k]!)}`);
  return `cd ${shellQuote(inv.cwd)} && ${[...env, ...inv.argv.map(shellQuote)].join(" ")} < prompt`;
}

export async function dryRun(job: PreparedJob, out: Output, showBatch?: number): Promise<void> {
  const c = job.config;
  const total = job.totalBatches;
  const n = showBatch ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > total) {
    throw new MozartError(`--batch ${showBatch} is out of range: the job has ${total} batches`, { exitCode: 2 });
  }
  const backend = createBackend(c.backend, { jobDir: job.dir, workspace: c.workspace, env: process.env });
  const req = requestFor(job, n);
  const inv = backend.describe(req);
  const validations = job.validations(n).map((v, i) => ({ type: v.type, target: v.target, description: v.description ?? null, ...checkOf(job.config.validations[i]) }));
  const estimate = await estimateCost(job, { env: process.env });
  const fromHistory = await estimateFromHistory(job);

  if (out.json) {
    // Streamed: a million batches with their prompts must not be built in memory at once.
    function* batches() {
      for (let k = 1; k <= total; k++) {
        const b = job.batch(k);
        yield { batch_num: b.batch_num, start_item: b.start_item, end_item: b.end_item, prompt: job.prompt(k) };
      }
    }
    await writeJsonWithArray(
      {
        dry_run: true,
        job_name: c.name,
        file: job.file,
        workspace: c.workspace,
        state_backend: c.state_backend,
        state_location: stateLocation(c),
        concurrency: c.concurrency,
        backend: c.backend.type,
        total_batches: total,
        shown_batch: n,
        validations,
        invocation: { ...inv, stdin: `prompt of batch ${n} (${Buffer.byteLength(req.prompt)} bytes)` },
        cost_estimate: estimate ? { source: "prompt_tokens", ...estimate } : null,
        history_estimate: fromHistory ?? null,
      },
      "batches",
      batches(),
    );
    return;
  }

  const { bold, dim, cyan } = out.c;
  out.print(`${bold("Dry run")}: nothing will be executed.`);
  out.print();
  out.print(`Job ${bold(c.name)}${c.description ? ` — ${c.description}` : ""}`);
  out.print(`  file:      ${displayPath(job.file)}`);
  out.print(`  workspace: ${displayPath(c.workspace)}`);
  out.print(`  backend:   ${c.backend.type}, ${c.concurrency} at a time, ${c.retry.max_retries} retries per batch`);
  out.print(`  state:     ${c.state_backend} in ${displayPath(stateLocation(c))}`);
  out.print();
  out.print(bold(`Batch plan (${total} batch${total === 1 ? "" : "es"})`));
  const rows: Array<Array<string | number>> = [];
  const shown = total <= 20 ? [...Array(total).keys()].map((k) => k + 1) : [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, total - 4, total - 3, total - 2, total - 1, total];
  for (const k of shown) {
    if (k === 0) rows.push(["…", `(${total - 15} more)`, ""]);
    else {
      const b = job.batch(k);
      rows.push([k, `${b.start_item}–${b.end_item}`, b.end_item - b.start_item + 1]);
    }
  }
  for (const line of table(["Batch", "Items", "Count"], rows, ["r", "l", "r"])) out.print(`  ${line}`);
  out.print();
  out.print(bold(`Prompt for batch ${n}`) + dim(` (${Buffer.byteLength(req.prompt)} bytes; --batch N shows another)`));
  out.print(dim("─".repeat(60)));
  out.print(req.prompt.replace(/\n$/, ""));
  out.print(dim("─".repeat(60)));
  out.print();
  out.print(bold(`Validations for batch ${n}`) + (validations.length ? "" : dim(" (none: a batch counts as done when the backend succeeds)")));
  for (const v of validations) {
    const what = "assert" in v ? `: ${v.assert.join("; ")}` : "schema" in v ? dim(` (schema: ${v.schema})`) : "";
    out.print(`  ${cyan(v.type.padEnd(16))} ${v.target}${what}${v.description ? dim(`  — ${v.description}`) : ""}`);
  }
  out.print();
  out.print(bold("Backend invocation"));
  out.print(`  ${describeInvocation(inv)}`);
  if (estimate) printEstimate(out, estimate, c.budget.max_cost_usd);
  printHistoryEstimate(out, fromHistory);
}

/** The estimate of past batches with this prompt template (learning.enabled; the history under MOZART_HOME or outcome_store_path). */
async function estimateFromHistory(job: PreparedJob): Promise<HistoryEstimate | undefined> {
  const c = job.config;
  if (!c.learning.enabled) return undefined;
  const path = historyPath({ home: mozartHome(process.env), storePath: c.learning.outcome_store_path, jobDir: job.dir });
  if (!path) return undefined;
  const outcomes = await readOutcomeFigures(path).catch(() => []);
  return historyEstimate(outcomes, blobHash(job.templateSource), job.totalBatches, c.concurrency);
}

function printHistoryEstimate(out: Output, e: HistoryEstimate | undefined): void {
  const { bold, dim } = out.c;
  out.print();
  if (!e) {
    out.print(bold("Estimate from history") + dim(" (none: fewer than 3 past batches used this prompt template)"));
    return;
  }
  out.print(bold("Estimate from history") + dim(` (source: ${e.batches_seen} past batches of this prompt template, jobs ${e.jobs_seen.join(", ")})`));
  out.print(`  cost:      ${formatUsd(e.cost_usd.expected)} (range ${formatUsd(e.cost_usd.low)} – ${formatUsd(e.cost_usd.high)})`);
  out.print(`  duration:  ${formatDuration(e.duration_ms.expected)} (range ${formatDuration(e.duration_ms.low)} – ${formatDuration(e.duration_ms.high)})` + dim(" at this concurrency, pauses between batches not included"));
}

function printEstimate(out: Output, e: CostEstimate, budget: number | undefined): void {
  const { bold, dim } = out.c;
  out.print();
  out.print(bold(`Cost estimate`) + dim(` (source: prompt tokens × price table; ${e.model}${e.family ? `, ${e.family}` : ", not in the price table"})`));
  out.print(`  prompts:   ${formatTokens(e.input_tokens)} input tokens over ${e.batches} batch${e.batches === 1 ? "" : "es"}${e.static_tokens ? `, ${formatTokens(e.static_tokens)} of each the static part` : ""}` + dim(` (${e.counted_note})`));
  if (!e.backends.length) {
    out.print(dim("  the price table does not know this model: no amounts (src/backends/prices.ts)"));
    return;
  }
  const rows = e.backends.map((b) => [`${b.backend}${b.configured ? " *" : ""}`, formatUsd(b.input_usd), `≤ ${formatUsd(b.output_max_usd)}`, `≤ ${formatUsd(b.total_max_usd)}`, b.note ?? ""]);
  for (const line of table(["Backend", "Input", `Output (≤ ${e.max_tokens} each)`, "Total", ""], rows, ["l", "r", "r", "r", "l"])) out.print(`  ${line}`);
  if (e.batch_saving_usd !== null) out.print(dim(`  anthropic_batch saves up to ${formatUsd(e.batch_saving_usd)} against anthropic_api (* = this job's backend)`));
  const mine = e.backends.find((b) => b.configured);
  if (budget !== undefined && mine && mine.input_usd > budget) out.print(out.c.yellow(`  the prompts alone (${formatUsd(mine.input_usd)}) cost more than budget.max_cost_usd (${formatUsd(budget)}): the job will pause on its budget`));
}

/** What a JSON rule asks, as the job file writes it: its assertions, or where its schema is. */
function checkOf(rule: ValidationRule | undefined): { assert: string[] } | { schema: string } | Record<string, never> {
  if (rule?.type === "jsonpath") return { assert: Array.isArray(rule.assert) ? rule.assert : [rule.assert] };
  if (rule?.type === "json_schema") return { schema: typeof rule.schema === "string" ? rule.schema : "inline" };
  return {};
}
