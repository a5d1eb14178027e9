/** `mozart run --dry-run`: the plan, one batch's rendered prompt, its validations and the exact invocation. */
import { createBackend } from "../backends/index.ts";
import type { Invocation } from "../backends/types.ts";
import { displayPath, type PreparedJob } from "../config/check.ts";
import { requestFor } from "../engine/job.ts";
import { MozartError } from "../errors.ts";
import { stateLocation } from "../state/location.ts";
import { table, type Output } from "./output.ts";

/** Shell-quote an argument for display, so the printed invocation can be pasted into a shell. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function describeInvocation(inv: Invocation): string {
  const env = Object.keys(inv.env).map((k) => `${k}=${shellQuote(inv.env[k]!)}`);
  return `cd ${shellQuote(inv.cwd)} && ${[...env, ...inv.argv.map(shellQuote)].join(" ")} < prompt`;
}

export function dryRun(job: PreparedJob, out: Output, showBatch?: number): void {
  const c = job.config;
  const total = job.totalBatches;
  const n = showBatch ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > total) {
    throw new MozartError(`--batch ${showBatch} is out of range: the job has ${total} batches`, { exitCode: 2 });
  }
  const backend = createBackend(c.backend, { jobDir: job.dir, workspace: c.workspace, env: process.env });
  const req = requestFor(job, n);
  const inv = backend.describe(req);
  const validations = job.validations(n).map((v) => ({ type: v.type, target: v.target, description: v.description ?? null }));

  if (out.json) {
    out.emit({
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
      batches: Array.from({ length: total }, (_, k) => {
        const b = job.batch(k + 1);
        return { batch_num: b.batch_num, start_item: b.start_item, end_item: b.end_item, prompt: job.prompt(k + 1) };
      }),
      validations,
      invocation: { ...inv, stdin: `prompt of batch ${n} (${Buffer.byteLength(req.prompt)} bytes)` },
    });
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
  for (const v of validations) out.print(`  ${cyan(v.type.padEnd(16))} ${v.target}${v.description ? dim(`  — ${v.description}`) : ""}`);
  out.print();
  out.print(bold("Backend invocation"));
  out.print(`  ${describeInvocation(inv)}`);
}
