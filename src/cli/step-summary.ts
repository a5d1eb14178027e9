/** When run as a GitHub Actions step, append a Markdown summary table to GITHUB_STEP_SUMMARY. */
import { appendFile } from "node:fs/promises";
import type { JobReport } from "../state/report.ts";
import type { BatchRecord } from "../state/types.ts";
import { formatUsd } from "../text.ts";

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");

/** `batches`: some of the failed batches, and of those in conflict (isolation: worktree). */
export function stepSummaryMarkdown(r: JobReport, batches: BatchRecord[]): string {
  const icon = r.status === "completed" ? "✅" : r.status === "failed" ? "❌" : "⏸️";
  const p = r.progress;
  const failed = batches.filter((b) => b.status === "failed");
  const conflicts = batches.filter((b) => b.status === "conflict");
  const lines = [
    `### ${icon} Mozart job \`${cell(r.job_id)}\`: ${r.status}`,
    "",
    `| Batches | Completed | Failed |${r.git ? " Conflicts |" : ""} Attempts | Rate-limit holds | Cost | Cache hits |`,
    `| ---: | ---: | ---: |${r.git ? " ---: |" : ""} ---: | ---: | ---: | ---: |`,
    `| ${p.total} | ${p.completed} | ${p.failed} |${r.git ? ` ${p.conflict} |` : ""} ${r.attempts} | ${r.rate_limit_waits} | ${formatUsd(r.cost_usd)}${r.budget ? ` of ${formatUsd(r.budget.max_cost_usd)}` : ""} | ${Math.round(r.cache_hit_ratio * 100)}% |`,
    "",
  ];
  if (r.paused_for?.reason === "budget") lines.push(`Paused: the budget was reached (${formatUsd(r.paused_for.spent_usd)} of ${formatUsd(r.paused_for.max_cost_usd)}). Continue with \`mozart resume ${cell(r.job_id)} --budget <USD>\`.`, "");
  if (r.paused_for?.reason === "low_success") lines.push(`Paused: only ${Math.round(r.paused_for.rate * 100)}% of the last ${r.paused_for.window} batches passed at the first try${r.paused_for.failing.length ? ` (failing: ${cell(r.paused_for.failing.slice(0, 5).join("; "))})` : ""}. Fix the prompt, then \`mozart resume ${cell(r.job_id)}\`.`, "");
  if (failed.length) {
    lines.push("| Failed batch | Attempts | Last error |", "| ---: | ---: | --- |");
    for (const b of failed) lines.push(`| ${b.batch_num} | ${b.attempts} | ${cell(b.error?.message ?? "")} |`);
    if (p.failed > failed.length) lines.push(`| … | | ${p.failed - failed.length} more: \`mozart status ${cell(r.job_id)}\` |`);
    lines.push("");
  }
  if (conflicts.length) {
    lines.push("| Batch in conflict | Files | Why |", "| ---: | --- | --- |");
    for (const b of conflicts) lines.push(`| ${b.batch_num} | ${cell((b.git?.conflict?.files ?? []).map((f) => `\`${f}\``).join(", "))} | ${cell(b.git?.conflict?.message ?? b.error?.message ?? "")} |`);
    if (p.conflict > conflicts.length) lines.push(`| … | | ${p.conflict - conflicts.length} more: \`mozart status ${cell(r.job_id)}\` |`);
    lines.push("");
  }
  return `${lines.join("\n")}\n`;
}

export async function writeStepSummary(env: Record<string, string | undefined>, r: JobReport, batches: BatchRecord[]): Promise<void> {
  const file = env.GITHUB_STEP_SUMMARY;
  if (!file) return;
  await appendFile(file, stepSummaryMarkdown(r, batches));
}
