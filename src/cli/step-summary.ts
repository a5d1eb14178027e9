/** When run as a GitHub Actions step, append a Markdown summary table to GITHUB_STEP_SUMMARY. */
import { appendFile } from "node:fs/promises";
import type { BatchRecord, JobRecord } from "../state/types.ts";
import { allBatches } from "./status-view.ts";

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");

export function stepSummaryMarkdown(rec: JobRecord, batches: BatchRecord[]): string {
  const all = allBatches(rec, batches);
  const completed = all.filter((b) => b.status === "completed").length;
  const failed = all.filter((b) => b.status === "failed");
  const icon = rec.status === "completed" ? "✅" : rec.status === "failed" ? "❌" : "⏸️";
  const lines = [
    `### ${icon} Mozart job \`${cell(rec.job_id)}\`: ${rec.status}`,
    "",
    "| Batches | Completed | Failed | Attempts | Rate-limit holds | Cost |",
    "| ---: | ---: | ---: | ---: | ---: | ---: |",
    `| ${rec.total_batches} | ${completed} | ${failed.length} | ${rec.total_attempts} | ${rec.rate_limit_waits} | $${rec.cost_usd.toFixed(4)} |`,
    "",
  ];
  if (failed.length) {
    lines.push("| Failed batch | Attempts | Last error |", "| ---: | ---: | --- |");
    for (const b of failed) lines.push(`| ${b.batch_num} | ${b.attempts} | ${cell(b.error?.message ?? "")} |`);
    lines.push("");
  }
  return `${lines.join("\n")}\n`;
}

export async function writeStepSummary(env: Record<string, string | undefined>, rec: JobRecord, batches: BatchRecord[]): Promise<void> {
  const file = env.GITHUB_STEP_SUMMARY;
  if (!file) return;
  await appendFile(file, stepSummaryMarkdown(rec, batches));
}
