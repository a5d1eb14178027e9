/** The job status as JSON (`status --json`, `run --json`) and as text, from state records alone. */
import { hostname } from "node:os";
import { batchAt } from "../plan/batches.ts";
import type { AttemptRecord, BatchRecord, JobRecord, JobStatus } from "../state/types.ts";
import { formatDuration } from "./progress.ts";
import { table, type Output } from "./output.ts";

/** A `running` job whose runner process is gone (same host) was killed: it is resumable. */
export function runnerAlive(rec: JobRecord): boolean | null {
  const r = rec.runner;
  if (!r) return null;
  if (r.host !== hostname()) return null;
  try {
    process.kill(r.pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function effectiveStatus(rec: JobRecord): JobStatus {
  return rec.status === "running" && runnerAlive(rec) === false ? "paused" : rec.status;
}

export function allBatches(rec: JobRecord, batches: BatchRecord[]): BatchRecord[] {
  const byNum = new Map(batches.map((b) => [b.batch_num, b]));
  const out: BatchRecord[] = [];
  for (let n = 1; n <= rec.total_batches; n++) {
    const b = byNum.get(n);
    if (b) out.push(b);
    else {
      const r = batchAt(rec.config_snapshot.batch, n);
      out.push({ batch_num: n, status: "pending", start_item: r.start_item, end_item: r.end_item, attempts: 0, completion_attempts: 0, rate_limit_waits: 0, validation_passed: null, validations: [], cost_usd: 0 });
    }
  }
  return out;
}

export function statusJson(rec: JobRecord, batches: BatchRecord[]) {
  const all = allBatches(rec, batches);
  const completed = all.filter((b) => b.status === "completed").length;
  const failed = all.filter((b) => b.status === "failed").length;
  return {
    job_id: rec.job_id,
    job_name: rec.job_name,
    description: rec.description ?? null,
    status: effectiveStatus(rec),
    runner: rec.runner ? { ...rec.runner, alive: runnerAlive(rec) } : null,
    config_path: rec.config_path,
    workspace: rec.workspace,
    progress: { completed, failed, total: rec.total_batches, percent: rec.total_batches ? Math.round((completed / rec.total_batches) * 1000) / 10 : 0 },
    cost_usd: Math.round(rec.cost_usd * 1e6) / 1e6,
    attempts: rec.total_attempts,
    rate_limit_waits: rec.rate_limit_waits,
    hold: rec.hold ?? null,
    error: rec.error ?? null,
    timing: { created_at: rec.created_at, started_at: rec.started_at ?? null, updated_at: rec.updated_at, completed_at: rec.completed_at ?? null },
    batches: all.map((b) => ({
      batch_num: b.batch_num,
      status: b.status,
      start_item: b.start_item,
      end_item: b.end_item,
      attempts: b.attempts,
      completion_attempts: b.completion_attempts,
      rate_limit_waits: b.rate_limit_waits,
      validation_passed: b.validation_passed,
      validations: b.validations,
      error: b.error?.message ?? null,
      error_category: b.error?.category ?? null,
      cost_usd: b.cost_usd,
      duration_ms: b.duration_ms ?? null,
      permission_denials: b.permission_denials ?? [],
      last_output: b.status === "completed" ? null : (b.last_output ?? null),
    })),
  };
}

const STATUS_COLOR = { completed: "green", failed: "red", running: "cyan", in_progress: "cyan", paused: "yellow", pending: "dim", cancelled: "dim" } as const;

export function paintStatus(out: Output, s: string): string {
  const color = STATUS_COLOR[s as keyof typeof STATUS_COLOR] ?? "bold";
  return out.c[color](s);
}

export function printStatus(out: Output, rec: JobRecord, batches: BatchRecord[], opts: { all?: boolean } = {}): void {
  const j = statusJson(rec, batches);
  const p = j.progress;
  out.print(`job ${out.c.bold(rec.job_id)}  ${paintStatus(out, j.status)}${rec.description ? out.c.dim(`  — ${rec.description}`) : ""}`);
  out.print(`  progress   ${p.completed}/${p.total} batches (${p.percent}%)${p.failed ? out.c.red(`, ${p.failed} failed`) : ""}`);
  out.print(`  attempts   ${j.attempts}   cost $${j.cost_usd.toFixed(4)}   rate-limit holds ${j.rate_limit_waits}`);
  const t = j.timing;
  const elapsed = t.started_at ? formatDuration(Date.parse(t.completed_at ?? t.updated_at) - Date.parse(t.started_at)) : "—";
  out.print(`  started    ${t.started_at ?? "—"}   updated ${t.updated_at}   elapsed ${elapsed}`);
  if (j.runner) out.print(`  runner     pid ${j.runner.pid} on ${j.runner.host}${j.runner.alive === false ? out.c.yellow(" (gone: the run was killed; `mozart resume` continues it)") : ""}`);
  if (j.hold && Date.parse(j.hold.until) > Date.now()) out.print(out.c.yellow(`  hold       until ${j.hold.until} (batch ${j.hold.batch_num}: ${j.hold.reason})`));
  if (j.error) out.print(`  ${out.c.red("error")}      ${j.error}`);
  out.print(`  job file   ${j.config_path}`);
  out.print();
  const rows = j.batches.filter((b) => opts.all || j.batches.length <= 30 || b.status !== "pending" || b.batch_num <= 3);
  const shown = opts.all ? rows : rows.slice(0, 60);
  const lines = table(
    ["Batch", "Items", "Status", "Attempts", "Valid", "Time", "Cost", "Error"],
    shown.map((b) => [
      b.batch_num,
      `${b.start_item}–${b.end_item}`,
      paintStatus(out, b.status),
      b.attempts,
      b.validation_passed === null ? "-" : b.validation_passed ? "✓" : "✗",
      b.duration_ms === null ? "-" : formatDuration(b.duration_ms),
      b.cost_usd ? `$${b.cost_usd.toFixed(4)}` : "-",
      b.error ? (b.error.length > 70 ? `${b.error.slice(0, 69)}…` : b.error) : "",
    ]),
    ["r", "l", "l", "r", "l", "r", "r", "l"],
  );
  for (const l of lines) out.print(`  ${l}`);
  if (shown.length < j.batches.length) out.print(out.c.dim(`  … ${j.batches.length - shown.length} more (pending) batches; --all shows every batch`));
  for (const b of j.batches) {
    if (b.permission_denials.length) out.print(out.c.yellow(`  batch ${b.batch_num}: claude was denied ${b.permission_denials.length} tool call(s): ${b.permission_denials.slice(0, 3).join("; ")} — set backend.skip_permissions or allowed_tools`));
  }
  const failedBatch = j.batches.find((b) => b.status === "failed");
  if (failedBatch) {
    out.print();
    out.print(out.c.bold(`batch ${failedBatch.batch_num} failed: ${failedBatch.error}`));
    for (const v of failedBatch.validations.filter((v) => !v.passed)) out.print(`  ✗ ${v.description}: ${v.detail}`);
    if (failedBatch.last_output) {
      out.print(out.c.dim("  last output:"));
      for (const l of failedBatch.last_output.trim().split("\n").slice(-15)) out.print(out.c.dim(`    ${l}`));
    }
  }
}

/** One batch's attempt log: what ran, what came back, what Mozart decided. */
export function printAttempts(out: Output, n: number, attempts: AttemptRecord[]): void {
  if (!attempts.length) {
    out.print(`batch ${n} has no attempts yet`);
    return;
  }
  for (const a of attempts) {
    const ended = a.signal ? `signal ${a.signal}` : `exit ${a.exit_code ?? "-"}`;
    const flags = [a.timed_out && "timed out", a.interrupted && "interrupted"].filter(Boolean).join(", ");
    out.print(out.c.bold(`batch ${n} attempt ${a.attempt} (${a.mode})  ${a.started_at}  ${formatDuration(a.duration_ms)}  ${ended}${flags ? ` (${flags})` : ""}`));
    out.print(`  decision  ${a.decision}: ${a.reason}${a.cost_usd ? `   cost $${a.cost_usd.toFixed(4)}` : ""}`);
    out.print(`  command   cd ${a.cwd} && ${a.argv.join(" ")}`);
    if (out.verbose) {
      out.print("  prompt:");
      for (const l of a.prompt.split("\n")) out.print(out.c.dim(`    ${l}`));
    }
    for (const [name, text] of [["stdout", a.stdout], ["stderr", a.stderr]] as const) {
      if (!text.trim()) continue;
      const lines = text.trimEnd().split("\n");
      const shown = out.verbose ? lines : lines.slice(-12);
      out.print(`  ${name}${shown.length < lines.length ? ` (last ${shown.length} of ${lines.length} lines; -v for all)` : ""}:`);
      for (const l of shown) out.print(out.c.dim(`    ${l}`));
    }
    out.print();
  }
}
