/** The job status as text, from the one status model (state/report.ts). */
import type { AccountHold } from "../state/accounts.ts";
import type { BatchRow, JobReport } from "../state/report.ts";
import type { AttemptRecord, Requester } from "../state/types.ts";
import { clean, clip, formatTokens, formatUsd } from "../text.ts";
import { formatDuration, formatTime } from "../time.ts";
import { table, type Output } from "./output.ts";

const STATUS_COLOR = { completed: "green", failed: "red", conflict: "red", running: "cyan", in_progress: "cyan", paused: "yellow", pending: "dim", cancelled: "dim" } as const;

export function paintStatus(out: Output, s: string): string {
  const color = STATUS_COLOR[s as keyof typeof STATUS_COLOR] ?? "bold";
  return out.c[color](s);
}

export function describeRequester(by: Requester): string {
  const who = `${by.user ? `${by.user}@` : ""}${by.host}`;
  return by.via === "signal" ? `${by.signal ?? "a signal"} to pid ${by.pid} on ${by.host}` : `${who} (pid ${by.pid}, via ${by.via})`;
}

/** One line for an account's hold: whose limit, until when, and that it holds every job on the account. */
export function describeAccountHold(h: AccountHold, now = Date.now()): string {
  const kind = h.limit === "admission" ? "quota nearly used (admission)" : h.limit ? `${h.limit} limit` : "limit";
  return `account ${h.account} on hold until ${formatTime(h.until)} (${formatDuration(h.until - now)} from now): ${kind} met by job ${h.job_id}: ${clip(clean(h.reason), 100)}; no job on this account starts a batch before then`;
}

export function printReport(out: Output, j: JobReport, accountHold?: AccountHold | null): void {
  const p = j.progress;
  out.print(`job ${out.c.bold(j.job_id)}  ${paintStatus(out, j.status)}${j.description ? out.c.dim(`  — ${j.description}`) : ""}`);
  const extra = [p.failed ? out.c.red(`${p.failed} failed`) : "", p.conflict ? out.c.red(`${p.conflict} in conflict`) : "", p.in_progress ? `${p.in_progress} running` : "", p.damaged ? out.c.red(`${p.damaged} damaged`) : ""].filter(Boolean);
  out.print(`  progress   ${p.completed}/${p.total} batches (${p.percent}%)${extra.length ? `, ${extra.join(", ")}` : ""}`);
  out.print(`  attempts   ${j.attempts}   cost ${formatUsd(j.cost_usd)}${j.budget ? ` of ${formatUsd(j.budget.max_cost_usd)} budget${j.budget.source === "resume" ? " (set by resume --budget)" : ""}` : ""}   rate-limit holds ${j.rate_limit_waits}`);
  const tk = j.tokens;
  if (tk.input || tk.output || tk.cache_read || tk.cache_write_5m || tk.cache_write_1h) {
    const writes = tk.cache_write_5m + tk.cache_write_1h;
    const byTtl = [tk.cache_write_5m ? `${formatTokens(tk.cache_write_5m)} 5m` : "", tk.cache_write_1h ? `${formatTokens(tk.cache_write_1h)} 1h` : ""].filter(Boolean).join(", ");
    out.print(`  tokens     ${formatTokens(tk.input)} in, ${formatTokens(tk.output)} out, cache ${formatTokens(tk.cache_read)} read / ${formatTokens(writes)} written${writes ? ` (${byTtl})` : ""}; cache hits ${Math.round(j.cache_hit_ratio * 100)}%`);
  }
  if (j.paused_for?.reason === "budget") {
    out.print(out.c.yellow(`  budget     reached: ${formatUsd(j.paused_for.spent_usd)} spent of ${formatUsd(j.paused_for.max_cost_usd)}; raise it with: mozart resume ${j.job_id} --budget <USD>`));
  }
  if (j.paused_for?.reason === "low_success") {
    const f = j.paused_for;
    out.print(out.c.yellow(`  low_success ${Math.round(f.rate * 100)}% of the last ${f.window} batches passed at the first try (learning.min_confidence_threshold ${Math.round(f.threshold * 100)}%)${f.failing.length ? `; failing: ${f.failing.slice(0, 5).join("; ")}` : ""}`));
  }
  for (const rb of j.remote_batches) {
    const c = rb.counts;
    const done = c ? c.succeeded + c.errored + c.canceled + c.expired : 0;
    const detail = c ? `${done}/${rb.requests} done${c.errored ? `, ${c.errored} errored` : ""}${c.expired ? `, ${c.expired} expired` : ""}${c.canceled ? `, ${c.canceled} canceled` : ""}` : `${rb.requests} requests`;
    out.print(`  msg batch  ${rb.id ?? rb.key} ${rb.status}: ${detail}${rb.expires_at && rb.status === "in_progress" ? `, expires ${formatTime(Date.parse(rb.expires_at))}` : ""}${rb.error ? ` (${rb.error})` : ""}`);
  }
  const t = j.timing;
  const elapsed = t.started_at ? formatDuration(Date.parse(t.completed_at ?? t.updated_at) - Date.parse(t.started_at)) : "—";
  const when = (iso: string | null) => (iso ? formatTime(Date.parse(iso)) : "—");
  out.print(`  started    ${when(t.started_at)}   updated ${when(t.updated_at)}   elapsed ${elapsed}`);
  for (const r of j.runners) out.print(`  runner     pid ${r.pid} on ${r.host}, since ${when(r.started_at)}, last heartbeat ${formatDuration(Date.now() - Date.parse(r.renewed_at))} ago`);
  if ((j.status === "paused" || j.status === "cancelled") && j.stopped_by) out.print(`  ${j.status} by  ${describeRequester(j.stopped_by)}`);
  if (accountHold) {
    const met = accountHold.job_id === j.job_id ? "met by this job" : `met by job ${accountHold.job_id}`;
    out.print(out.c.yellow(`  account    on hold until ${formatTime(accountHold.until)}, ${formatDuration(accountHold.until - Date.now())} from now (${accountHold.limit ? `${accountHold.limit} limit, ` : ""}${met}: ${clip(clean(accountHold.reason), 100)}): no batch of this job starts before then`));
  }
  if (j.hold) out.print(out.c.yellow(`  hold       until ${when(j.hold.until)}, ${formatDuration(Date.parse(j.hold.until) - Date.now())} from now (batch ${j.hold.batch_num}: ${j.hold.reason})`));
  if (j.error) out.print(`  ${out.c.red("error")}      ${j.error}`);
  if (j.git) {
    const g = j.git;
    const where = g.merge === "ordered" ? `lands on ${out.c.bold(g.target ?? "?")} in batch order (${g.strategy})` : "one branch per batch (merge: none)";
    out.print(`  git        ${where}, from ${g.base.slice(0, 12)} in ${g.repository}`);
    out.print(`  worktrees  ${g.worktrees.count} in ${g.worktrees.folder}, ${formatBytes(g.worktrees.disk_bytes)} on disk`);
  }
  out.print(`  job file   ${j.config_path}`);
  out.print(`  state      ${j.state.backend} in ${j.state.location}`);
}

export function printBatchTable(out: Output, rows: BatchRow[]): void {
  // isolation: worktree adds what became of each batch's branch.
  const git = rows.some((b) => b.git);
  const lines = table(
    ["Batch", "Items", "Status", "Attempts", "Valid", "Time", "Cost", ...(git ? ["Merge"] : []), "Error"],
    rows.map((b) => [
      b.batch_num,
      `${b.start_item}–${b.end_item}`,
      paintStatus(out, b.damaged ? "damaged" : b.status),
      b.attempts,
      b.validation_passed === null ? "-" : b.validation_passed ? "✓" : "✗",
      b.duration_ms === null ? "-" : formatDuration(b.duration_ms),
      b.cost_usd ? formatUsd(b.cost_usd) : "-",
      ...(git ? [b.git ? `${b.git.merge}${b.git.commit && b.git.merge !== "open" ? ` ${b.git.commit.slice(0, 8)}` : ""}` : "-"] : []),
      clip(b.damaged ?? b.error ?? "", 70),
    ]),
    ["r", "l", "l", "r", "l", "r", "r", ...(git ? ["l" as const] : []), "l"],
  );
  for (const l of lines) out.print(`  ${l}`);
}

export function printBatchDetails(out: Output, rows: BatchRow[]): void {
  // The table cuts a damaged record's reason; it names the file and the problem, so it is shown whole.
  const damaged = rows.filter((b) => b.damaged);
  for (const b of damaged.slice(0, 5)) out.print(out.c.red(`  damaged: ${clean(b.damaged!)}`));
  if (damaged.length) out.print(out.c.dim("  `mozart repair <job>` resets damaged batch records to pending (those batches run again)"));
  for (const b of rows) {
    if (b.permission_denials.length) out.print(out.c.yellow(`  batch ${b.batch_num}: claude was denied ${b.permission_denials.length} tool call(s): ${b.permission_denials.slice(0, 3).join("; ")} — set backend.skip_permissions or allowed_tools`));
  }
  const branches = rows.filter((b) => b.git && (b.git.merge === "branch" || b.git.kept_branch));
  if (branches.length) {
    out.print();
    out.print(out.c.bold("branches:"));
    for (const b of branches) out.print(`  batch ${b.batch_num}: ${b.git!.branch}${b.git!.commit ? ` (${b.git!.commit.slice(0, 12)})` : ""}${b.git!.kept_branch ? out.c.dim("  — the failed batch's edits, never merged") : ""}`);
  }
  const conflict = rows.find((b) => b.status === "conflict");
  if (conflict?.git) {
    out.print();
    out.print(out.c.bold(`batch ${conflict.batch_num} could not be merged: ${conflict.error}`));
    if (conflict.git.conflict_files.length) out.print(`  files: ${conflict.git.conflict_files.join(", ")}`);
    out.print("  to resolve it:");
    for (const l of conflict.git.resolve) out.print(`    ${l}`);
  }
  const failedBatch = rows.find((b) => b.status === "failed");
  if (!failedBatch) return;
  out.print();
  out.print(out.c.bold(`batch ${failedBatch.batch_num} failed: ${failedBatch.error}`));
  for (const v of failedBatch.validations.filter((v) => !v.passed)) out.print(`  ✗ ${v.description}: ${v.detail}`);
  if (failedBatch.last_output) {
    out.print(out.c.dim("  last output:"));
    for (const l of failedBatch.last_output.trim().split("\n").slice(-15)) out.print(out.c.dim(`    ${l}`));
  }
}


/** One batch's attempt log: what ran, what came back, what Mozart decided. */
export function printAttempts(out: Output, n: number, attempts: Array<AttemptRecord & { prompt?: string | null }>): void {
  if (!attempts.length) {
    out.print(`batch ${n} has no attempts yet`);
    return;
  }
  for (const a of attempts) {
    const ended = a.decision === "running" ? "running" : a.signal ? `signal ${a.signal}` : `exit ${a.exit_code ?? "-"}`;
    const flags = [a.timed_out && "timed out", a.interrupted && "interrupted"].filter(Boolean).join(", ");
    out.print(out.c.bold(`batch ${n} attempt ${a.attempt} (${a.mode})  ${a.started_at ? formatTime(Date.parse(a.started_at)) : "—"}  ${formatDuration(a.duration_ms)}  ${ended}${flags ? ` (${flags})` : ""}`));
    out.print(`  decision  ${a.decision}${a.reason ? `: ${a.reason}` : ""}${a.cost_usd ? `   cost ${formatUsd(a.cost_usd)}` : ""}`);
    if (a.tokens) out.print(`  tokens    ${formatTokens(a.tokens.input)} in, ${formatTokens(a.tokens.output)} out, cache ${formatTokens(a.tokens.cache_read)} read, ${formatTokens(a.tokens.cache_write_5m + a.tokens.cache_write_1h)} written`);
    if (a.remote) out.print(`  request   ${a.remote.custom_id} in Message Batch ${a.remote.id ?? a.remote.key}`);
    if (a.model) out.print(`  model     ${a.model} (a fallback: backend.fallback_models)`);
    out.print(`  command   cd ${a.cwd} && ${a.argv.join(" ")}`);
    if (a.process?.pid) out.print(`  process   pid ${a.process.pid} (group ${a.process.pgid ?? a.process.pid}) on ${a.process.host}`);
    if (out.verbose && a.prompt) {
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
    // Say what is kept, never promise a log that does not exist.
    if (a.output_file) out.print(out.c.dim(`  full output: ${a.output_file}${/\.out$/.test(a.output_file) ? " (stderr: .err)" : ""}; mozart logs <job> --batch ${n}`));
    else if (a.decision !== "running") out.print(out.c.dim("  (the output above is all there was)"));
    out.print();
  }
}

/** 1536 → "1.5 KB". */
export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
