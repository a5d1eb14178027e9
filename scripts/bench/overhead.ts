/**
 * Mozart's own overhead per batch: 1,000 batches through a no-op `command` backend at
 * concurrency 1 and 8, against `xargs -P` running the same no-op 1,000 times. Reports wall
 * time per batch, the ratio to xargs, peak memory, and the per-batch time of the first and
 * last 100 batches (flat means no O(n) state rewrites). Run by hand: bun scripts/bench/overhead.ts
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..", "..");
const N = Number(process.env.BATCHES ?? 1000);

function timed(argv: string[], env: Record<string, string> = {}): { ms: number; maxRssMB: number; code: number } {
  const t0 = performance.now();
  const p = Bun.spawnSync(argv, { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" });
  const ms = performance.now() - t0;
  if (p.exitCode !== 0) console.error(p.stderr.toString());
  return { ms, maxRssMB: (p.resourceUsage?.maxRSS ?? 0) / 1024 / 1024, code: p.exitCode ?? -1 };
}

for (const kind of ["sqlite", "json"] as const) {
  for (const concurrency of [1, 8]) {
    const dir = mkdtempSync(join(tmpdir(), "mozart-bench-"));
    const job = join(dir, "job.yaml");
    writeFileSync(
      job,
      [
        `name: bench-${kind}-${concurrency}`,
        `workspace: ./ws`,
        `state_backend: ${kind}`,
        `concurrency: ${concurrency}`,
        `pause_between_batches_seconds: 0`,
        `backend: { type: command, command: "true" }`,
        `batch: { size: 1, total_items: ${N} }`,
        `prompt: { template: "batch {{ batch_num }}" }`,
      ].join("\n"),
    );
    const env = { MOZART_HOME: join(dir, "home") };
    const m = timed([process.execPath, join(ROOT, "src/main.ts"), "-q", "run", job], env);
    const x = timed(["sh", "-c", `seq ${N} | xargs -P ${concurrency} -I{} sh -c true`]);
    const status = Bun.spawnSync([process.execPath, join(ROOT, "src/main.ts"), "status", job, "--json"], { env: { ...process.env, ...env } });
    const doc = JSON.parse(status.stdout.toString()) as { status: string; batches: Array<{ duration_ms: number }> };
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = avg(doc.batches.slice(0, 100).map((b) => b.duration_ms));
    const last = avg(doc.batches.slice(-100).map((b) => b.duration_ms));
    const overhead = (m.ms - x.ms) / N;
    console.log(
      `${kind.padEnd(6)} c=${concurrency}  mozart ${(m.ms / 1000).toFixed(2)}s (${(m.ms / N).toFixed(2)} ms/batch, status ${doc.status})  ` +
        `xargs ${(x.ms / 1000).toFixed(2)}s  ratio ${(m.ms / x.ms).toFixed(1)}x  overhead ${overhead.toFixed(2)} ms/batch  ` +
        `peak RSS ${m.maxRssMB.toFixed(0)} MB  batch time first100 ${first.toFixed(1)} ms, last100 ${last.toFixed(1)} ms`,
    );
    rmSync(dir, { recursive: true, force: true });
  }
}
