/**
 * Mozart's own overhead per batch, against `xargs -P` running the same no-op, in the same run
 * (the machine is shared and noisy: each figure is a ratio of runs taken in turn, A B A B).
 *
 *   bun scripts/bench/overhead.ts            all of it (a few minutes)
 *   BATCHES=300 ROUNDS=1 bun scripts/bench/overhead.ts   quicker
 *
 * 1. 1,000 no-op `command` batches at concurrency 1, 8 and 32, sqlite and json state: wall time,
 *    ratio to xargs, overhead ms per batch, state writes per batch (syscalls, counted by strace
 *    when it is installed), and the per-batch time of the first 100 vs the last 100 batches.
 * 2. 10,000 batches at concurrency 8 on sqlite: throughput of the first vs the last 1,000.
 * 3. The cost of a `mozart logs -f` reader on the runner's wall time.
 * 4. `mozart list` with 1,000 jobs registered.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src", "main.ts");
const N = Number(process.env.BATCHES ?? 1000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const BUN = process.execPath;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (x: number, d = 2) => x.toFixed(d);

function timed(argv: string[], env: Record<string, string> = {}): number {
  const t0 = performance.now();
  const p = spawnSync(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  if (p.status !== 0) throw new Error(`${argv.join(" ")} failed (${p.status}): ${p.stderr}`);
  return ms;
}

function jobFile(dir: string, kind: string, concurrency: number, batches: number): string {
  const file = join(dir, `job-${kind}-${concurrency}.yaml`);
  writeFileSync(
    file,
    [
      `name: bench-${kind}-${concurrency}-${batches}`,
      `workspace: ./ws-${kind}-${concurrency}-${batches}`,
      `state_backend: ${kind}`,
      `concurrency: ${concurrency}`,
      `pause_between_batches_seconds: 0`,
      `backend: { type: command, command: "true" }`,
      `batch: { size: 1, total_items: ${batches} }`,
      `prompt: { template: "batch {{ batch_num }}" }`,
    ].join("\n"),
  );
  return file;
}

function fresh(dir: string, kind: string, c: number, batches: number) {
  rmSync(join(dir, `ws-${kind}-${c}-${batches}`), { recursive: true, force: true });
  rmSync(join(dir, "home"), { recursive: true, force: true });
}

function status(dir: string, job: string): { batches: Array<{ duration_ms: number }> } {
  const p = spawnSync(BUN, [MAIN, "status", job, "--json"], { env: { ...process.env, MOZART_HOME: join(dir, "home") }, maxBuffer: 1 << 30 });
  return JSON.parse(p.stdout.toString());
}

/** State writes per batch, as system calls: pwrite64 (SQLite pages) or rename (json files), plus fsyncs. */
function writesPerBatch(dir: string, kind: string, c: number): string {
  if (spawnSync("strace", ["-V"]).status !== 0) return "strace not installed";
  const job = jobFile(dir, kind, c, N);
  fresh(dir, kind, c, N);
  const out = join(dir, "strace.txt");
  spawnSync("strace", ["-f", "-c", "-o", out, "-e", "trace=pwrite64,write,rename,fsync,fdatasync,openat", BUN, MAIN, "-q", "run", job], { env: { ...process.env, MOZART_HOME: join(dir, "home") }, stdio: "ignore" });
  const text = require("node:fs").readFileSync(out, "utf8") as string;
  const count = (name: string) => Number(new RegExp(`\\s(\\d+)\\s+(?:\\d+\\s+)?${name}$`, "m").exec(text)?.[1] ?? 0);
  const per = (name: string) => fmt(count(name) / N, 1);
  return kind === "sqlite" ? `${per("pwrite64")} page writes, ${per("fdatasync")} fdatasync, ${per("fsync")} fsync` : `${per("rename")} renames, ${per("fsync")} fsync`;
}

console.log(`overhead bench: ${N} no-op batches, ${ROUNDS} round(s) each, bun ${Bun.version}, ${process.platform}-${process.arch}`);
const dir = mkdtempSync(join(tmpdir(), "mozart-bench-"));
try {
  // 1. Against xargs.
  for (const kind of ["sqlite", "json"] as const) {
    for (const c of [1, 8, 32]) {
      const job = jobFile(dir, kind, c, N);
      const ratios: number[] = [];
      const mozartMs: number[] = [];
      const xargsMs: number[] = [];
      let firstLast = "";
      for (let r = 0; r < ROUNDS; r++) {
        fresh(dir, kind, c, N);
        const m = timed([BUN, MAIN, "-q", "run", job], { MOZART_HOME: join(dir, "home") });
        const x = timed(["sh", "-c", `seq ${N} | xargs -P ${c} -I{} sh -c true`]);
        ratios.push(m / x);
        mozartMs.push(m);
        xargsMs.push(x);
        if (r === 0) {
          const d = status(dir, job).batches.map((b) => b.duration_ms);
          const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
          firstLast = `first100 ${fmt(avg(d.slice(0, 100)), 1)} ms, last100 ${fmt(avg(d.slice(-100)), 1)} ms`;
        }
      }
      const m = median(mozartMs);
      const x = median(xargsMs);
      console.log(
        `${kind.padEnd(6)} c=${String(c).padEnd(2)}  mozart ${fmt(m / 1000)}s  xargs ${fmt(x / 1000)}s  ratio ${fmt(median(ratios))}x (${ratios.map((q) => fmt(q)).join(" ")})  ` +
          `overhead ${fmt((m - x) / N)} ms/batch  batch time ${firstLast}`,
      );
    }
  }
  for (const kind of ["sqlite", "json"] as const) console.log(`${kind.padEnd(6)} c=8   writes per batch: ${writesPerBatch(dir, kind, 8)}`);

  // 2. Flat to 10,000: completions per second over the first and the last 1,000 batches.
  {
    const big = 10_000;
    const job = jobFile(dir, "sqlite", 8, big);
    fresh(dir, "sqlite", 8, big);
    timed([BUN, MAIN, "-q", "run", job], { MOZART_HOME: join(dir, "home") });
    const p = spawnSync(BUN, [MAIN, "logs", job, "--json"], { env: { ...process.env, MOZART_HOME: join(dir, "home") }, maxBuffer: 1 << 30 });
    const done = p.stdout
      .toString()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; at: string })
      .filter((e) => e.type === "batch_complete")
      .map((e) => Date.parse(e.at));
    const span = (a: number, b: number) => (done[b]! - done[a]!) / (b - a);
    console.log(`sqlite c=8   ${big} batches: ${fmt(span(0, 999))} ms/batch over the first 1,000, ${fmt(span(big - 1000, big - 1))} ms/batch over the last 1,000`);
  }

  // 3. A `logs -f` reader beside the runner.
  {
    const job = jobFile(dir, "sqlite", 8, N);
    const alone: number[] = [];
    const watched: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      fresh(dir, "sqlite", 8, N);
      alone.push(timed([BUN, MAIN, "-q", "run", job], { MOZART_HOME: join(dir, "home") }));
      fresh(dir, "sqlite", 8, N);
      const env = { ...process.env, MOZART_HOME: join(dir, "home") };
      const t0 = performance.now();
      const runner = spawn(BUN, [MAIN, "-q", "run", job], { env, stdio: "ignore" });
      // The reader starts once the job exists and follows it to the end.
      let reader: ReturnType<typeof spawn> | undefined;
      const poll = setInterval(() => {
        if (reader) return;
        const s = spawnSync(BUN, [MAIN, "status", job, "--json"], { env, stdio: ["ignore", "pipe", "ignore"] });
        if (s.status === 0) reader = spawn(BUN, [MAIN, "logs", job, "-f", "--json"], { env, stdio: "ignore" });
      }, 20);
      await new Promise((res) => runner.on("close", res));
      watched.push(performance.now() - t0);
      clearInterval(poll);
      if (reader) await new Promise((res) => reader!.on("close", res));
    }
    console.log(`sqlite c=8   with a logs -f reader: ${fmt(median(watched) / 1000)}s vs ${fmt(median(alone) / 1000)}s alone (${fmt((median(watched) / median(alone) - 1) * 100, 1)}%)`);
  }

  // 4. `mozart list` with 1,000 registered jobs (registry entries with their snapshots).
  {
    const home = join(dir, "list-home");
    mkdirSync(join(home, "jobs"), { recursive: true });
    for (let i = 0; i < 1000; i++) {
      const id = `job-${String(i).padStart(4, "0")}`;
      writeFileSync(
        join(home, "jobs", `${id}.json`),
        JSON.stringify({ job_id: id, state_backend: "sqlite", state_location: `/nowhere/${id}/state.db`, config_path: `/nowhere/${id}.yaml`, workspace: `/nowhere/${id}`, updated_at: new Date(Date.now() - i * 1000).toISOString(), snapshot: { status: "completed", completed: 10, total: 10, cost_usd: 0.5 } }),
      );
    }
    const list: number[] = [];
    const base: number[] = [];
    for (let r = 0; r < 10; r++) {
      list.push(timed([BUN, MAIN, "list", "--limit", "1000"], { MOZART_HOME: home }));
      base.push(timed([BUN, "-e", "0"]));
    }
    console.log(`list         1,000 jobs: ${fmt(median(list), 0)} ms (bun -e 0: ${fmt(median(base), 0)} ms)`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
