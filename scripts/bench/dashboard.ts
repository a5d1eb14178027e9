/**
 * The dashboard under load, beside a real run (the machine is shared and noisy: the run's cost is a
 * ratio of runs taken in turn, alone and under load, medians of several).
 *
 *   bun scripts/bench/dashboard.ts [--jobs 1000] [--batches 100] [--clients 50] [--seconds 10]
 *                                  [--rounds 3] [--run-batches 200] [--think 0] [--keep] [--profile DIR]
 *
 * 1. Loads --jobs finished jobs of --batches batches each into a temp MOZART_HOME, through the
 *    StateStore API (no process per batch): 10 jobs per SQLite database, every fifth job in a JSON
 *    store of its own; each batch recorded by one commit with its attempt and events, each job
 *    registered with a snapshot as a runner leaves it.
 * 2. Serves `mozart dashboard --port 0 --json` from that home, in a process of its own (its RSS is
 *    read from /proc; it does not share an event loop with the clients).
 * 3. Runs a real `mozart run` of --run-batches `true` batches at concurrency 4, alone and with
 *    --clients clients on the dashboard, in turn (A B, B A, ...), --rounds times each.
 * 4. Each client loops over `GET /api/jobs` and `GET /api/jobs/{random id}/status` (pausing
 *    --think ms after each answer) while holding one SSE stream open: half on the running job,
 *    half on a random job. The load lasts at least --seconds per round, the run starts 1 s in.
 * Prints latency per route (p50, p99, max), requests per second, the dashboard's RSS (start and
 * peak), the run's slowdown, and a one-line JSON summary. Targets: p99 < 20 ms, slowdown < 5 %.
 * --profile DIR writes the dashboard's CPU profile (.cpuprofile, for Chrome DevTools) there.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { registerJob } from "../../src/state/registry.ts";
import { openStore } from "../../src/state/store.ts";
import type { AttemptRecord, BatchRecord, JobRecord, StateStore } from "../../src/state/types.ts";

const ROOT = resolve(import.meta.dir, "..", "..");
const MAIN = join(ROOT, "src", "main.ts");
const BUN = process.execPath;

const { values: args } = parseArgs({
  options: {
    jobs: { type: "string", default: "1000" },
    batches: { type: "string", default: "100" },
    clients: { type: "string", default: "50" },
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    "run-batches": { type: "string", default: "200" },
    think: { type: "string", default: "0" },
    keep: { type: "boolean", default: false },
    profile: { type: "string" },
  },
});
const JOBS = Number(args.jobs);
const BATCHES = Number(args.batches);
const CLIENTS = Number(args.clients);
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const RUN_BATCHES = Number(args["run-batches"]);
const THINK_MS = Number(args.think);
const JOBS_PER_DB = 10;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const quantile = (sorted: number[], q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : NaN);
const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "-");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const jobId = (i: number) => `bench-${String(i).padStart(4, "0")}`;

// --- Everything this run started, stopped on every way out ----------------------------------------
const dir = mkdtempSync(join(tmpdir(), "mozart-bench-dashboard-"));
const home = join(dir, "home");
const children = new Set<ChildProcess>();
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (args.keep) console.error(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping`);
    cleanup();
    process.exit(130);
  });
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

// --- 1. The jobs ----------------------------------------------------------------------------------
type Ending = "completed" | "failed" | "paused";
const endingOf = (i: number): Ending => (i % 20 === 7 ? "failed" : i % 20 === 13 ? "paused" : "completed");

function batchRecord(n: number, status: BatchRecord["status"]): BatchRecord {
  return {
    batch_num: n,
    status,
    start_item: n * 10 - 9,
    end_item: n * 10,
    attempts: status === "failed" ? 3 : 1,
    completion_attempts: 0,
    rate_limit_waits: 0,
    validation_passed: status === "completed",
    validations: [{ type: "file_exists", description: "summary written", target: `/ws/out/${n}.md`, passed: status === "completed", detail: "" }],
    error: status === "failed" ? { message: "exit code 1", category: "backend_error" } : null,
    last_output: "Done. Wrote the batch summary.",
    cost_usd: 0.0123,
    started_at: "2026-01-01T00:00:00.000Z",
    completed_at: "2026-01-01T00:00:10.000Z",
    duration_ms: 10_000,
    token: 1,
  };
}

function attemptRecord(n: number, status: BatchRecord["status"]): AttemptRecord {
  return {
    batch_num: n,
    attempt: 1,
    mode: "normal",
    runner: "bench-runner",
    started_at: "2026-01-01T00:00:00.000Z",
    ended_at: "2026-01-01T00:00:10.000Z",
    duration_ms: 10_000,
    prompt_blob: "p",
    argv: ["claude", "-p"],
    cwd: "/ws",
    exit_code: status === "failed" ? 1 : 0,
    signal: null,
    timed_out: false,
    interrupted: false,
    stdout: "Done. Wrote the batch summary.",
    stderr: "",
    decision: status === "failed" ? "fail_job" : "success",
    reason: "",
  };
}

/** One job as a finished run leaves it: the job record, each batch as one step, the registry entry. */
async function loadJob(store: StateStore, i: number): Promise<void> {
  const id = jobId(i);
  const ending = endingOf(i);
  const workspace = join(dir, "workspaces", id);
  const config = { name: id, workspace, state_backend: store.kind, concurrency: 1 + (i % 8), backend: { type: "claude_cli" }, batch: { size: 10, start_item: 1, total_items: BATCHES * 10 } };
  const created = new Date(Date.UTC(2026, 0, 1) + i * 60_000).toISOString();
  const record: JobRecord = {
    job_id: id,
    job_name: id,
    status: "running",
    config_hash: id.padEnd(16, "0").slice(-16),
    config_blob: await store.putBlob(JSON.stringify(config)),
    source_blob: await store.putBlob(`name: ${id}\n`),
    template_blob: await store.putBlob("Summarise items {{ start_item }}-{{ end_item }}\n"),
    config_path: join(dir, "jobs", `${id}.yaml`),
    workspace,
    total_batches: BATCHES,
    plan: { size: 10, start_item: 1, total_items: BATCHES * 10 },
    created_at: created,
    updated_at: created,
    started_at: created,
  };
  await store.putJob(record);
  const now = Date.now();
  await store.commit(id, { events: [{ type: "job_start", runner: "bench-runner", mode: "run", total_batches: BATCHES, to_run: BATCHES, completed: 0, resumed: false, concurrency: config.concurrency, pause_between_ms: 0 }] }, now);
  const done = ending === "paused" ? Math.floor(BATCHES * 0.6) : BATCHES;
  let cost = 0;
  for (let n = 1; n <= done; n++) {
    const status = ending === "failed" && n === done ? "failed" : "completed";
    const batch = batchRecord(n, status);
    cost += batch.cost_usd;
    await store.commit(
      id,
      {
        batch,
        attempt: attemptRecord(n, status),
        events: [
          { type: "batch_start", batch_num: n, start_item: batch.start_item, end_item: batch.end_item, runner: "bench-runner" },
          { type: "attempt_end", batch_num: n, attempt: 1, decision: status === "completed" ? "success" : "fail_job", reason: "", duration_ms: 10_000, exit_code: status === "completed" ? 0 : 1, output_tail: "Done." },
          status === "completed"
            ? { type: "batch_complete", batch_num: n, attempts: 1, duration_ms: 10_000, cost_usd: batch.cost_usd }
            : { type: "batch_failed", batch_num: n, attempts: 3, error: batch.error! },
        ],
      },
      now,
    );
  }
  const completed = ending === "failed" ? done - 1 : done;
  const finished = new Date(Date.parse(created) + 3_600_000).toISOString();
  const last =
    ending === "completed"
      ? { type: "job_complete" as const, completed, total_batches: BATCHES, duration_ms: 3_600_000, cost_usd: cost }
      : ending === "failed"
        ? { type: "job_failed" as const, completed, failed: 1, total_batches: BATCHES, error: `batch ${done} failed`, duration_ms: 3_600_000, cost_usd: cost }
        : { type: "job_paused" as const, completed, total_batches: BATCHES, reason: "Ctrl+C" };
  await store.commit(id, { events: [last], job: { status: ending, ...(ending === "completed" ? { completed_at: finished } : {}), ...(ending === "failed" ? { error: `batch ${done} failed` } : {}) } }, now);
  await registerJob(home, {
    job_id: id,
    state_backend: store.kind,
    state_location: store.location,
    config_path: record.config_path,
    workspace,
    updated_at: finished,
    snapshot: { status: ending, completed, total: BATCHES, cost_usd: cost },
  });
}

async function loadJobs(): Promise<{ sqlite: number; json: number; databases: number; ms: number }> {
  const t0 = performance.now();
  // Stores: every fifth job in a JSON folder of its own, the others 10 to a SQLite database.
  const groups = new Map<string, { kind: "json" | "sqlite"; location: string; jobs: number[] }>();
  let sqliteJobs = 0;
  for (let i = 1; i <= JOBS; i++) {
    if (i % 5 === 0) {
      groups.set(`json-${i}`, { kind: "json", location: join(dir, "state", `json-${jobId(i)}`), jobs: [i] });
      continue;
    }
    const db = Math.floor(sqliteJobs++ / JOBS_PER_DB);
    const key = `sqlite-${db}`;
    const group = groups.get(key) ?? { kind: "sqlite" as const, location: join(dir, "state", `db-${String(db).padStart(3, "0")}`, "state.db"), jobs: [] };
    group.jobs.push(i);
    groups.set(key, group);
  }
  const queue = [...groups.values()];
  let loaded = 0;
  const worker = async () => {
    for (let g = queue.shift(); g; g = queue.shift()) {
      if (g.kind === "sqlite") mkdirSync(join(g.location, ".."), { recursive: true });
      const store = await openStore({ kind: g.kind, location: g.location });
      try {
        for (const i of g.jobs) {
          await loadJob(store, i);
          if (++loaded % 100 === 0 && process.stderr.isTTY) process.stderr.write(`\r  loaded ${loaded}/${JOBS} jobs`);
        }
      } finally {
        await store.close();
      }
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
  const json = [...groups.values()].filter((g) => g.kind === "json").length;
  return { sqlite: sqliteJobs, json, databases: groups.size - json, ms: performance.now() - t0 };
}

// --- 2. The dashboard -----------------------------------------------------------------------------
const env = { ...process.env, MOZART_HOME: home, NO_COLOR: "1" };

async function startDashboard(): Promise<{ url: string; pid: number; child: ChildProcess }> {
  const prof = args.profile ? ["--cpu-prof", `--cpu-prof-dir=${resolve(args.profile)}`] : [];
  const child = track(spawn(BUN, [...prof, MAIN, "dashboard", "--port", "0", "--json"], { env, stdio: ["ignore", "pipe", "pipe"] }));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  // `--json` prints one document (over several lines) once it serves.
  const info = await new Promise<{ url: string; pid: number }>((res, rej) => {
    let text = "";
    const rl = createInterface({ input: child.stdout! });
    rl.on("line", (line) => {
      text += `${line}\n`;
      try {
        res(JSON.parse(text));
        rl.close();
      } catch {
        // Not the whole document yet.
      }
    });
    child.once("exit", (code) => rej(new Error(`the dashboard exited (${code}) before it served: ${stderr}`)));
  });
  return { url: info.url, pid: child.pid!, child };
}

/** kB from /proc/<pid>/status: VmRSS now, VmHWM the peak so far. */
function memory(pid: number): { rss: number; hwm: number } {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/** CPU seconds (user + system) a process used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

// --- 3. The real run ------------------------------------------------------------------------------
function liveJobFile(round: number, loaded: boolean): { file: string; id: string } {
  const id = `live-${loaded ? "load" : "alone"}-${round}`;
  const file = join(dir, "live", `${id}.yaml`);
  mkdirSync(join(dir, "live"), { recursive: true });
  writeFileSync(
    file,
    [
      `name: ${id}`,
      `workspace: ./ws-${id}`,
      `state_backend: sqlite`,
      `concurrency: 4`,
      `pause_between_batches_seconds: 0`,
      `backend: { type: command, command: "true" }`,
      `batch: { size: 1, total_items: ${RUN_BATCHES} }`,
      `prompt: { template: "batch {{ batch_num }}" }`,
    ].join("\n"),
  );
  return { file, id };
}

async function runJob(file: string): Promise<number> {
  const t0 = performance.now();
  const child = track(spawn(BUN, [MAIN, "-q", "run", file], { env, stdio: ["ignore", "ignore", "pipe"] }));
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((res) => child.once("exit", res));
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`mozart run ${file} failed (${code}): ${stderr}`);
  return ms;
}

// --- 4. The clients -------------------------------------------------------------------------------
type Route = "list" | "status";
interface Load {
  latencies: Record<Route, number[]>;
  errors: Record<string, number>;
  sse: { opened: number; messages: number; firstByte: number[] };
  stop(): Promise<void>;
}

function startClients(base: string, liveId: () => string | undefined): Load {
  const latencies: Record<Route, number[]> = { list: [], status: [] };
  const errors: Record<string, number> = {};
  const sse = { opened: 0, messages: 0, firstByte: [] as number[] };
  const stopping = new AbortController();
  const fail = (what: string) => (errors[what] = (errors[what] ?? 0) + 1);
  const randomJob = () => jobId(1 + Math.floor(Math.random() * JOBS));

  async function timedGet(route: Route, path: string): Promise<void> {
    const t0 = performance.now();
    try {
      const res = await fetch(base + path, { signal: stopping.signal });
      await res.arrayBuffer();
      if (res.status !== 200) return void fail(`${route} ${res.status}`);
      latencies[route].push(performance.now() - t0);
    } catch (e) {
      if (!stopping.signal.aborted) fail(`${route} ${(e as Error).name}`);
    }
  }

  async function requests(): Promise<void> {
    while (!stopping.signal.aborted) {
      await timedGet("list", "/api/jobs");
      if (THINK_MS) await sleep(THINK_MS);
      await timedGet("status", `/api/jobs/${randomJob()}/status`);
      if (THINK_MS) await sleep(THINK_MS);
    }
  }

  /** One SSE stream, reopened when it ends; the live half follows the running job once it is registered. */
  async function stream(onLive: boolean): Promise<void> {
    while (!stopping.signal.aborted) {
      const id = onLive ? liveId() : randomJob();
      if (!id) {
        await sleep(50);
        continue;
      }
      const t0 = performance.now();
      try {
        const res = await fetch(`${base}/api/jobs/${encodeURIComponent(id)}/events`, { signal: stopping.signal });
        if (res.status !== 200) {
          await res.arrayBuffer();
          if (res.status !== 404 || !onLive) fail(`sse ${res.status}`);
          await sleep(50);
          continue;
        }
        sse.opened++;
        const reader = res.body!.getReader();
        let first = true;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (first) sse.firstByte.push(performance.now() - t0);
          first = false;
          for (const byte of value) if (byte === 10) sse.messages++;
          // The live half moves to the next round's job.
          if (onLive && liveId() !== id) {
            await reader.cancel();
            break;
          }
        }
      } catch (e) {
        if (!stopping.signal.aborted) fail(`sse ${(e as Error).name}`);
      }
    }
  }

  const loops = Array.from({ length: CLIENTS }, (_, i) => Promise.all([requests(), stream(i % 2 === 0)]));
  return {
    latencies,
    errors,
    sse,
    async stop() {
      stopping.abort();
      await Promise.all(loops);
    },
  };
}

// --- The run --------------------------------------------------------------------------------------
console.log(
  `dashboard bench: ${JOBS} jobs x ${BATCHES} batches, ${CLIENTS} clients (think ${THINK_MS} ms), ${SECONDS} s of load per round, ` +
    `${ROUNDS} round(s) of a ${RUN_BATCHES}-batch run, bun ${Bun.version}, ${process.platform}-${process.arch}, ${cpus().length} CPUs`,
);
try {
  const load = await loadJobs();
  console.log(`loaded       ${JOBS} jobs (${load.sqlite} in ${load.databases} SQLite databases, ${load.json} in JSON stores), ${JOBS * BATCHES} batches, in ${fmt(load.ms / 1000)} s`);

  const dash = await startDashboard();
  await fetch(`${dash.url}/health`).then((r) => r.arrayBuffer());
  const rssStart = memory(dash.pid).rss;

  const alone: number[] = [];
  const loaded: number[] = [];
  const all: Record<Route, number[]> = { list: [], status: [] };
  const errors: Record<string, number> = {};
  const sse = { opened: 0, messages: 0, firstByte: [] as number[] };
  let loadMs = 0;
  let dashCpu = 0;
  let benchCpu = 0;
  let rssPeakSampled = rssStart;
  let live: string | undefined;
  let roundLoad = "";

  for (let r = 1; r <= ROUNDS; r++) {
    const order = r % 2 === 1 ? (["alone", "loaded"] as const) : (["loaded", "alone"] as const);
    for (const mode of order) {
      const job = liveJobFile(r, mode === "loaded");
      if (mode === "alone") {
        alone.push(await runJob(job.file));
        continue;
      }
      live = undefined;
      const clients = startClients(dash.url, () => live);
      const cpu0 = cpuSeconds(dash.pid);
      const bench0 = process.cpuUsage();
      const t0 = performance.now();
      const sampler = setInterval(() => (rssPeakSampled = Math.max(rssPeakSampled, memory(dash.pid).rss)), 200);
      await sleep(1000);
      // The live half of the streams joins once the runner has registered the job.
      const registered = setInterval(() => {
        try {
          readFileSync(join(home, "jobs", `${job.id}.json`));
          live = job.id;
          clearInterval(registered);
        } catch {}
      }, 20);
      const ran = runJob(job.file);
      loaded.push(await ran);
      clearInterval(registered);
      const rest = SECONDS * 1000 - (performance.now() - t0);
      if (rest > 0) await sleep(rest);
      await clients.stop();
      clearInterval(sampler);
      loadMs += performance.now() - t0;
      dashCpu += cpuSeconds(dash.pid) - cpu0;
      const b = process.cpuUsage(bench0);
      benchCpu += (b.user + b.system) / 1e6;
      for (const route of ["list", "status"] as const) all[route].push(...clients.latencies[route]);
      for (const [k, v] of Object.entries(clients.errors)) errors[k] = (errors[k] ?? 0) + v;
      sse.opened += clients.sse.opened;
      sse.messages += clients.sse.messages;
      sse.firstByte.push(...clients.sse.firstByte);
      const sorted = [...clients.latencies.list, ...clients.latencies.status].sort((a, b) => a - b);
      roundLoad = `${sorted.length} requests, p50 ${fmt(quantile(sorted, 0.5))} ms, p99 ${fmt(quantile(sorted, 0.99))} ms`;
    }
    console.log(`round ${r}      ${order.join(" then ")}: alone ${fmt(alone.at(-1)!, 0)} ms, under load ${fmt(loaded.at(-1)!, 0)} ms; ${roundLoad}`);
  }
  const mem = memory(dash.pid);
  const rssPeak = Math.max(rssPeakSampled, mem.hwm);

  const both = [...all.list, ...all.status].sort((a, b) => a - b);
  const rps = both.length / (loadMs / 1000);
  const slowdown = (median(loaded) / median(alone) - 1) * 100;
  const row = (name: string, xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `${name.padEnd(26)} ${String(s.length).padStart(8)} ${fmt(quantile(s, 0.5)).padStart(8)} ${fmt(quantile(s, 0.99)).padStart(8)} ${fmt(s.at(-1) ?? NaN).padStart(8)} ${fmt(s.length / (loadMs / 1000), 0).padStart(8)}`;
  };
  console.log("");
  console.log(`${"route".padEnd(26)} ${"requests".padStart(8)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)} ${"req/s".padStart(8)}`);
  console.log(row("GET /api/jobs", all.list));
  console.log(row("GET /api/jobs/{id}/status", all.status));
  console.log(row("both", both));
  console.log(row("SSE open, first byte", sse.firstByte));
  console.log("");
  const target = (ok: boolean) => (ok ? "met" : "MISSED");
  console.log(`p99                  ${fmt(quantile(both, 0.99))} ms (target < 20 ms: ${target(quantile(both, 0.99) < 20)})`);
  console.log(`run slowdown         ${fmt(slowdown)} % (target < 5 %: ${target(slowdown < 5)}): under load ${fmt(median(loaded), 0)} ms [${loaded.map((x) => fmt(x, 0)).join(" ")}], alone ${fmt(median(alone), 0)} ms [${alone.map((x) => fmt(x, 0)).join(" ")}]`);
  console.log(`dashboard RSS        ${fmt(rssStart / 1024)} MiB at start, ${fmt(rssPeak / 1024)} MiB peak, ${fmt(mem.rss / 1024)} MiB at the end`);
  console.log(`CPU under load       dashboard ${fmt((dashCpu / (loadMs / 1000)) * 100, 0)} %, clients ${fmt((benchCpu / (loadMs / 1000)) * 100, 0)} % (of one CPU)`);
  console.log(`SSE                  ${sse.opened} streams opened, ${sse.messages} lines received`);
  console.log(`errors               ${Object.keys(errors).length ? Object.entries(errors).map(([k, v]) => `${k}: ${v}`).join(", ") : "none"}`);
  console.log(
    JSON.stringify({
      jobs: JOBS,
      batches: BATCHES,
      clients: CLIENTS,
      think_ms: THINK_MS,
      requests: both.length,
      rps: Math.round(rps),
      p50_ms: Number(fmt(quantile(both, 0.5), 2)),
      p99_ms: Number(fmt(quantile(both, 0.99), 2)),
      list_p99_ms: Number(fmt(quantile([...all.list].sort((a, b) => a - b), 0.99), 2)),
      status_p99_ms: Number(fmt(quantile([...all.status].sort((a, b) => a - b), 0.99), 2)),
      rss_start_mib: Number(fmt(rssStart / 1024)),
      rss_peak_mib: Number(fmt(rssPeak / 1024)),
      run_alone_ms: Math.round(median(alone)),
      run_loaded_ms: Math.round(median(loaded)),
      slowdown_pct: Number(fmt(slowdown)),
      errors: Object.values(errors).reduce((a, b) => a + b, 0),
    }),
  );
  dash.child.kill("SIGTERM");
  await new Promise((res) => (dash.child.exitCode !== null ? res(null) : dash.child.once("exit", res)));
} finally {
  cleanup();
}
