/**
 * Scaling past one machine: one job drained by 1, 2, 4 and 8 `mozart worker` processes against a
 * throw-away local Postgres (tests/pg-cluster.ts), and the same job on SQLite with one runner as
 * the baseline, all measured in this run.
 *
 *   A. 2,000 no-op batches (`command: true`): what the machinery costs per batch.
 *   B. 200 batches that take 200 ms (`sleep 0.2`), 1 and 4 workers: how throughput scales when
 *      the work, not the state, is the bottleneck. Target: 4 workers >= 3.5x one worker.
 *
 * Every worker runs one batch at a time. Reported per run: throughput (batches/s from the first
 * batch start to the last completion, from the event log), the claim latency (on each runner,
 * from a batch's recorded completion to the start of its next batch: the claim and the
 * scheduler's turn; target p99 < 5 ms), and the most Postgres connections open at once.
 *
 * Usage: bun scripts/bench/scale.ts [--quick]   (--quick: 500 no-op batches, 80 sleeping ones)
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { stringify } from "yaml";
import { openStore } from "../../src/state/store.ts";
import type { StoredEvent } from "../../src/state/events.ts";
import { startCluster, type Cluster } from "../../tests/pg-cluster.ts";

const ROOT = resolve(import.meta.dir, "../..");
const MAIN = join(ROOT, "src", "main.ts");
const quick = process.argv.includes("--quick");
const NOOP = quick ? 500 : 2000;
const SLOW = quick ? 80 : 200;

interface Result {
  label: string;
  batches: number;
  seconds: number;
  throughput: number;
  p50: number;
  p99: number;
  connections: number | null;
}

function exec(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd, env: { ...process.env, NO_COLOR: "1", CI: "1", ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => done({ code: code ?? -1, stderr }));
  });
}

function jobFile(dir: string, backend: "postgres" | "sqlite", batches: number, command: string): string {
  const file = join(dir, `job-${backend}-${batches}.yaml`);
  writeFileSync(
    file,
    stringify({
      name: "scale",
      workspace: "./ws",
      state_backend: backend,
      pause_between_batches_seconds: 0,
      concurrency: 1,
      batch: { size: 1, total_items: batches },
      prompt: { template: "batch {{ batch_num }}" },
      backend: { type: "command", command },
    }),
  );
  return file;
}

const quantile = (xs: number[], q: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/** Throughput and claim latency from the job's event log. */
function measure(events: StoredEvent[], batches: number): { seconds: number; p50: number; p99: number } {
  const starts = events.filter((e) => e.type === "batch_start") as Array<Extract<StoredEvent, { type: "batch_start" }>>;
  const ends = events.filter((e) => e.type === "batch_complete");
  if (ends.length !== batches) throw new Error(`${ends.length} of ${batches} batches completed`);
  const first = Math.min(...starts.map((e) => Date.parse(e.at)));
  const last = Math.max(...ends.map((e) => Date.parse(e.at)));
  // Per runner: completion of one batch → start of its next.
  const runnerOf = new Map<number, string>();
  for (const s of starts) runnerOf.set(s.batch_num, s.runner);
  const byRunner = new Map<string, Array<{ kind: "start" | "end"; at: number }>>();
  for (const e of [...starts, ...ends]) {
    const runner = runnerOf.get((e as { batch_num: number }).batch_num)!;
    if (!byRunner.has(runner)) byRunner.set(runner, []);
    byRunner.get(runner)!.push({ kind: e.type === "batch_start" ? "start" : "end", at: Date.parse(e.at) });
  }
  const gaps: number[] = [];
  for (const list of byRunner.values()) {
    list.sort((a, b) => a.at - b.at || (a.kind === "end" ? -1 : 1));
    for (let i = 1; i < list.length; i++) if (list[i - 1]!.kind === "end" && list[i]!.kind === "start") gaps.push(list[i]!.at - list[i - 1]!.at);
  }
  return { seconds: (last - first) / 1000, p50: quantile(gaps, 0.5), p99: quantile(gaps, 0.99) };
}

async function postgresRun(cluster: Cluster, dir: string, workers: number, batches: number, command: string): Promise<Result> {
  const db = await cluster.createDatabase("scale");
  const env = { MOZART_DATABASE_URL: db.url, MOZART_HOME: join(dir, `home-${db.name}`) };
  const file = jobFile(dir, "postgres", batches, command);
  const submitted = await exec(["run", "--submit", file], env, dir);
  if (submitted.code !== 0) throw new Error(`submit failed: ${submitted.stderr}`);
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await cluster.connections(db.name));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const runs = await Promise.all(Array.from({ length: workers }, (_, i) => exec(["worker", "--job", "scale", "--dir", join(dir, `w-${db.name}-${i}`)], env, dir)));
  sampling = false;
  await sampler;
  for (const r of runs) if (r.code !== 0) throw new Error(`a worker failed: ${r.stderr.slice(-2000)}`);
  const store = await openStore({ kind: "postgres", location: db.url, readOnly: true });
  const events = await store.readEvents("scale");
  await store.close();
  const m = measure(events, batches);
  return { label: `postgres, ${workers} worker${workers === 1 ? "" : "s"}`, batches, ...m, throughput: batches / m.seconds, connections: peak };
}

async function sqliteRun(dir: string, batches: number, command: string): Promise<Result> {
  const sub = mkdtempSync(join(dir, "sqlite-"));
  const file = jobFile(sub, "sqlite", batches, command);
  const r = await exec(["run", file], { MOZART_HOME: join(sub, "home") }, sub);
  if (r.code !== 0) throw new Error(`sqlite run failed: ${r.stderr.slice(-2000)}`);
  const store = await openStore({ kind: "sqlite", location: join(sub, "ws", ".mozart", "state.db"), readOnly: true });
  const events = await store.readEvents("scale");
  await store.close();
  const m = measure(events, batches);
  return { label: "sqlite, 1 runner", batches, ...m, throughput: batches / m.seconds, connections: null };
}

const print = (rows: Result[], base: Result) => {
  console.log(`${"run".padEnd(24)}${"batches".padStart(8)}${"seconds".padStart(9)}${"batches/s".padStart(11)}${"vs base".padStart(9)}${"claim p50".padStart(11)}${"claim p99".padStart(11)}${"pg conns".padStart(10)}`);
  for (const r of rows) {
    console.log(
      `${r.label.padEnd(24)}${String(r.batches).padStart(8)}${r.seconds.toFixed(1).padStart(9)}${r.throughput.toFixed(1).padStart(11)}${`${(r.throughput / base.throughput).toFixed(2)}x`.padStart(9)}${`${r.p50} ms`.padStart(11)}${`${r.p99} ms`.padStart(11)}${String(r.connections ?? "-").padStart(10)}`,
    );
  }
};

const dir = mkdtempSync(join(tmpdir(), "mozart-scale-"));
const cluster = await startCluster();
try {
  console.log(`A. ${NOOP} no-op batches (command: true), one batch at a time per runner; base: SQLite, one runner`);
  const sqlite = await sqliteRun(dir, NOOP, "true");
  const a: Result[] = [sqlite];
  for (const n of [1, 2, 4, 8]) a.push(await postgresRun(cluster, dir, n, NOOP, "true"));
  print(a, sqlite);
  console.log();
  console.log(`B. ${SLOW} batches of 200 ms (command: sleep 0.2); base: one worker`);
  const one = await postgresRun(cluster, dir, 1, SLOW, "sleep 0.2");
  const four = await postgresRun(cluster, dir, 4, SLOW, "sleep 0.2");
  print([one, four], one);
  const ratio = four.throughput / one.throughput;
  const p99 = Math.max(one.p99, four.p99);
  console.log();
  console.log(`4 workers / 1 worker on 200 ms batches: ${ratio.toFixed(2)}x (target >= 3.5x) ${ratio >= 3.5 ? "ok" : "MISSED"}`);
  console.log(`claim latency p99 on 200 ms batches: ${p99} ms (target < 5 ms) ${p99 < 5 ? "ok" : "MISSED"}`);
} finally {
  cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
