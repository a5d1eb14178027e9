/**
 * `mozart stats` on a large history: N outcomes (default 100,000) in one JSON Lines file.
 * Timed in-process (read + every figure; the bound is 200 ms) with the digest
 * (learning/digest.ts) up to date, and cold (no digest: the whole history parsed, the digest
 * written), against a baseline measured in the same run: reading the file and JSON-parsing every
 * line, which is what stats would do without a digest. Then the whole `mozart stats --json`
 * process, against `mozart --version` (process start-up) as its baseline.
 *
 *   bun scripts/bench/stats.ts
 *   OUTCOMES=1000000 bun scripts/bench/stats.ts
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { digestPath, readOutcomeFigures } from "../../src/learning/digest.ts";
import { HISTORY_FILE, readHistory } from "../../src/learning/history.ts";
import { computeStats } from "../../src/learning/stats.ts";
import { manyOutcomes } from "../../tests/fixtures/outcomes.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src", "main.ts");
const N = Number(process.env.OUTCOMES ?? 100_000);
const RUNS = 7;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function time(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}
async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const dir = mkdtempSync(join(tmpdir(), "mozart-bench-stats-"));
try {
  const home = join(dir, "home");
  mkdirSync(home);
  const path = join(home, HISTORY_FILE);
  writeFileSync(path, `${manyOutcomes(N).map((o) => JSON.stringify(o)).join("\n")}\n`);
  console.log(`${N} outcomes, ${(statSync(path).size / 1e6).toFixed(1)} MB`);

  const base: number[] = [];
  const cold: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    base.push(time(() => readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l))));
    rmSync(digestPath(path), { force: true });
    cold.push(await timeAsync(async () => computeStats(await readOutcomeFigures(path))));
    warm.push(await timeAsync(async () => computeStats(await readOutcomeFigures(path))));
  }
  const b = median(base);
  const w = median(warm);
  const c = median(cold);
  console.log(`in-process, median of ${RUNS}: stats ${w.toFixed(1)} ms with the digest (bound 200 ms: ${w < 200 ? "met" : "NOT met"}), ${c.toFixed(1)} ms cold; baseline read + parse every line ${b.toFixed(1)} ms; ratios ${(w / b).toFixed(2)} warm, ${(c / b).toFixed(2)} cold`);
  void readHistory;

  const cli = (args: string[]) => time(() => spawnSync(process.execPath, [MAIN, ...args], { env: { ...process.env, MOZART_HOME: home }, encoding: "utf8", maxBuffer: 64 << 20 }));
  const startup = median(Array.from({ length: RUNS }, () => cli(["--version"])));
  const whole = median(Array.from({ length: RUNS }, () => cli(["stats", "--json"])));
  console.log(`process: mozart stats --json ${whole.toFixed(0)} ms; baseline mozart --version ${startup.toFixed(0)} ms; stats beyond start-up ${(whole - startup).toFixed(0)} ms`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
