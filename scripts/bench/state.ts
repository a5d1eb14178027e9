/**
 * State store write throughput: 1,000 and 10,000 batch records per backend. Prints writes/s and
 * the time of the first vs the last 1,000 writes, which should match if putBatch is O(1).
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
});

const job = (total: number): JobRecord => ({
  job_id: "bench",
  job_name: "bench",
  status: "running",
  config_hash: "0".repeat(64),
  config_snapshot: {} as JobRecord["config_snapshot"],
  config_source: "name: bench\n",
  config_path: "/ws/job.yaml",
  workspace: "/ws",
  total_batches: total,
  created_at: "2026-01-01T00:00:00.000Z",
  updated_at: "2026-01-01T00:00:00.000Z",
  completed_batches: 0,
  failed_batches: 0,
  total_attempts: 0,
  rate_limit_waits: 0,
  cost_usd: 0,
});

async function run(kind: "json" | "sqlite", total: number, keep: boolean): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `mozart-bench-${kind}-`));
  const store = await openStore({ kind, location: kind === "json" ? dir : join(dir, "state.sqlite") });
  try {
    await store.putJob(job(total));
    const chunks: number[] = [];
    const start = performance.now();
    let chunkStart = start;
    for (let n = 1; n <= total; n++) {
      await store.putBatch("bench", batch(n));
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
      `${(total / (elapsed / 1000)).toFixed(0).padStart(7)} writes/s`,
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
