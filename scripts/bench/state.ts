/**
 * State store step throughput: 1,000 and 10,000 batches per backend, each a claim plus one fenced
 * step (batch record + attempt record + event), as the runner records a batch. Prints steps/s and
 * the time of the first vs the last 1,000, which should match if a step is O(1).
 * Usage: bun scripts/bench/state.ts [--keep]   (state goes to a temp folder, removed unless --keep)
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../../src/state/store.ts";
import type { BatchRecord, JobRecord } from "../../src/state/types.ts";

const CHUNK = 1000;

const batch = (n: number): BatchRecord => ({
  batch_num: n,
  status: "completed",
  start_item: n * 10 - 9,
  end_item: n * 10,
  attempts: 1,
  completion_attempts: 0,
  rate_limit_waits: 0,
  validation_passed: true,
  validations: [{ type: "file_exists", description: "out", target: `/ws/out/${n}.md`, passed: true, detail: "" }],
  last_output: "Done. Wrote the batch summary.",
  cost_usd: 0.0123,
  started_at: "2026-01-01T00:00:00.000Z",
  completed_at: "2026-01-01T00:00:10.000Z",
  duration_ms: 10_000,
  token: 0,
});

const job = (total: number): JobRecord => ({
  job_id: "bench",
  job_name: "bench",
  status: "running",
  config_hash: "0".repeat(64),
  config_blob: "c",
  source_blob: "s",
  template_blob: "t",
  config_path: "/ws/job.yaml",
  workspace: "/ws",
  total_batches: total,
  plan: { size: 10, start_item: 1, total_items: total * 10 },
  created_at: "2026-01-01T00:00:00.000Z",
  updated_at: "2026-01-01T00:00:00.000Z",
});

async function run(kind: "json" | "sqlite", total: number, keep: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `mozart-bench-${kind}-`));
  const store = await openStore({ kind, location: kind === "json" ? dir : join(dir, "state.sqlite") });
  try {
    await store.putJob(job(total));
    const t0 = Date.now();
    await store.join("bench", { id: "r", pid: process.pid, host: "bench", started_at: "", until: t0 + 3_600_000, renewed_at: t0 }, { now: t0, ttlMs: 3_600_000, exclusive: true });
    const chunks: number[] = [];
    const start = performance.now();
    let chunkStart = start;
    for (let n = 1; n <= total; n++) {
      const claim = await store.claim("bench", "r", n, { now: t0, fresh: () => ({ ...batch(n), status: "pending" }) });
      if (!claim) throw new Error(`bench: batch ${n} could not be claimed`);
      const attempt = { batch_num: n, attempt: 1, mode: "normal" as const, runner: "r", started_at: "", duration_ms: 10, prompt_blob: "p", argv: ["true"], cwd: "/ws", exit_code: 0, signal: null, timed_out: false, interrupted: false, stdout: "", stderr: "", decision: "success" as const, reason: "" };
      await store.commit("bench", { fence: { runner: "r", batch: n, token: claim.token }, batch: { ...batch(n), token: claim.token }, attempt, events: [{ type: "batch_complete", batch_num: n, attempts: 1, duration_ms: 10, cost_usd: 0 }] }, t0);
      if (n % CHUNK === 0) {
        const now = performance.now();
        chunks.push(now - chunkStart);
        chunkStart = now;
      }
    }
    const elapsed = performance.now() - start;
    const listStart = performance.now();
    const listed = await store.listBatches("bench");
    const listMs = performance.now() - listStart;
    if (listed.length !== total) throw new Error(`bench: listed ${listed.length} batches, wrote ${total}`);
    const ms = (v: number | undefined) => `${(v ?? 0).toFixed(0)} ms`;
    return [
      kind.padEnd(6),
      String(total).padStart(6),
      `${(total / (elapsed / 1000)).toFixed(0).padStart(7)} steps/s`,
      `total ${ms(elapsed).padStart(9)}`,
      `first 1k ${ms(chunks[0]).padStart(8)}`,
      `last 1k ${ms(chunks.at(-1)).padStart(8)}`,
      `listBatches ${ms(listMs).padStart(7)}`,
      total > CHUNK ? `\n        every 1k (ms): ${chunks.map((c) => c.toFixed(0)).join(" ")}` : "",
    ].join("  ");
  } finally {
    await store.close();
    if (keep) console.error(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  }
}

const keep = process.argv.includes("--keep");
console.log(`state store bench: ${process.platform} ${process.arch}, ${typeof Bun === "undefined" ? `node ${process.version}` : `bun ${Bun.version}`}`);
for (const kind of ["json", "sqlite"] as const) {
  for (const total of [1_000, 10_000]) console.log(await run(kind, total, keep));
}
