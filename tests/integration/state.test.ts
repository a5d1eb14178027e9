/**
 * The state store against real files, a real SQLite database and a real Postgres (a throw-away
 * cluster, tests/pg-cluster.ts), one suite for all three drivers: records, blobs, the event log,
 * atomic fenced steps, leases and claims, control and holds, damaged records, identity, read-only
 * opening. Races use real child processes (tests/fixtures/state-child.ts). What differs per driver
 * is only how a test reaches under the store (to damage a record, delete the state, measure it):
 * the `harness` below.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { appendFile, chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DatabaseSync } from "node:sqlite";
import { encodeJobId } from "../../src/state/keys.ts";
import { openStore } from "../../src/state/store.ts";
import type { AttemptRecord, BatchRecord, JobRecord, RemoteBatch, RunnerLease, SpendRecord, StateBackend, StateStore } from "../../src/state/types.ts";
import { startCluster, type Cluster } from "../pg-cluster.ts";

const CHILD = join(import.meta.dir, "..", "fixtures", "state-child.ts");
const ODD_IDS = ["my job", "a/b/c", "../../etc/passwd", "日本語ジョブ", "Job", "job", "con", ".", "..", "a:b", "x?y", "a_b", "acb", "%"];
const TTL = 2000;

function job(jobId: string, extra: Partial<JobRecord> = {}): JobRecord {
  return {
    job_id: jobId,
    job_name: jobId,
    status: "running",
    config_hash: "abc",
    config_blob: "c",
    source_blob: "s",
    template_blob: "t",
    config_path: "/tmp/job.yaml",
    workspace: "/tmp/ws",
    total_batches: 3,
    plan: { size: 10, start_item: 1, total_items: 30 },
    created_at: "2026-01-01T00:00:00.000Z",
    updated_at: "2026-01-01T00:00:00.000Z",
    ...extra,
  };
}

function batch(n: number, extra: Partial<BatchRecord> = {}): BatchRecord {
  return {
    batch_num: n,
    status: "completed",
    start_item: n * 10 - 9,
    end_item: n * 10,
    attempts: 1,
    completion_attempts: 0,
    rate_limit_waits: 0,
    validation_passed: true,
    validations: [],
    cost_usd: 0.01,
    token: 0,
    ...extra,
  };
}

function attempt(n: number, a: number): AttemptRecord {
  return {
    batch_num: n,
    attempt: a,
    mode: a === 1 ? "normal" : "retry",
    runner: "r1",
    started_at: "2026-01-01T00:00:00.000Z",
    ended_at: "2026-01-01T00:00:01.000Z",
    duration_ms: 1000,
    prompt_blob: "p",
    argv: ["claude", "-p"],
    cwd: "/tmp/ws",
    exit_code: 0,
    signal: null,
    timed_out: false,
    interrupted: false,
    stdout: "ok",
    stderr: "",
    decision: "success",
    reason: "",
  };
}

const zeroTokens = { input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 };
function spend(n: number, a: number, runner: string, usd: number, tokens: Partial<typeof zeroTokens> = {}): SpendRecord {
  return { batch_num: n, attempt: a, runner, at: "2026-01-01T00:00:01.000Z", backend: "anthropic_api", model: "claude-sonnet-4", usd, tokens: { ...zeroTokens, ...tokens }, priced_by: "price_table" };
}

const lease = (id: string, now = Date.now(), extra: Partial<RunnerLease> = {}): RunnerLease => ({ id, pid: process.pid, host: hostname(), started_at: new Date(now).toISOString(), until: now + TTL, renewed_at: now, ...extra });
const fresh = (n: number) => () => batch(n, { status: "pending", attempts: 0, validation_passed: null, cost_usd: 0 });

interface Child {
  proc: ChildProcess;
  line(prefix: string): Promise<string>;
  lines(): string[];
  exited: Promise<number | null>;
}

function startChild(args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, TTL_MS: String(TTL), ...env } });
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (line: string) => void }[] = [];
  let stderr = "";
  proc.stderr?.on("data", (chunk) => (stderr += String(chunk)));
  createInterface({ input: proc.stdout! }).on("line", (text) => {
    lines.push(text);
    for (const w of waiters.filter((w) => text.startsWith(w.prefix))) w.resolve(text);
  });
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  return {
    proc,
    exited,
    lines: () => lines,
    line: (prefix) =>
      new Promise((resolve, reject) => {
        const seen = lines.find((l) => l.startsWith(prefix));
        if (seen) return resolve(seen);
        waiters.push({ prefix, resolve });
        void exited.then((code) => reject(new Error(`child exited (${code}) before printing "${prefix}": ${stderr}`)));
      }),
  };
}

async function kill(child: Child): Promise<void> {
  child.proc.kill("SIGKILL");
  await child.exited; // reaped: a zombie would still answer kill(pid, 0)
}


/** How a test reaches under each driver's store. */
interface Harness {
  /** The store's location for a fresh test folder (a new database for postgres). */
  location(dir: string): Promise<string>;
  /** A location where there is no state yet, and a check that opening it read-only created nothing. */
  missing(dir: string): Promise<{ location: string; untouched(): Promise<void> }>;
  /** Nothing outside the store was written (the state folder, or the test's own database). */
  nothingOutside(dir: string, location: string): Promise<void>;
  damageBatch(location: string, jobId: string, n: number): Promise<void>;
  damageJob(location: string, jobId: string): Promise<void>;
  blobBytes(location: string, hash: string): Promise<number>;
  /** Makes the store unwritable at the storage level (folder mode, read-only database); returns the undo. */
  makeReadOnly(dir: string, location: string): Promise<() => Promise<void>>;
  deleteState(dir: string, location: string): Promise<void>;
  /** The storage's own consistency check, where it has one. */
  integrity(location: string): Promise<void>;
}

let cluster: Cluster | undefined;
const dbName = (url: string) => new URL(url).pathname.slice(1);

function harness(kind: StateBackend): Harness {
  if (kind === "postgres") {
    return {
      location: async () => (await cluster!.createDatabase("state")).url,
      missing: async () => {
        const db = await cluster!.createDatabase("missing");
        return {
          location: db.url,
          untouched: async () => expect((await cluster!.sql(db.name, "SELECT count(*)::int AS c FROM pg_namespace WHERE nspname = 'mozart'")).rows[0].c).toBe(0),
        };
      },
      nothingOutside: async (dir, location) => {
        expect(await readdir(dir)).toEqual([]);
        const r = await cluster!.sql(dbName(location), "SELECT DISTINCT table_schema AS s FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')");
        expect(r.rows.map((x) => x.s)).toEqual(["mozart"]);
      },
      damageBatch: async (location, jobId, n) => void (await cluster!.sql(dbName(location), "UPDATE mozart.batches SET data = $3::jsonb WHERE job = $1 AND n = $2", [jobId, n, '{"batch_num":2,"status":"weird"}'])),
      damageJob: async (location, jobId) => void (await cluster!.sql(dbName(location), "UPDATE mozart.jobs SET data = 'null'::jsonb WHERE job = $1", [jobId])),
      blobBytes: async (location, hash) => Number((await cluster!.sql(dbName(location), "SELECT octet_length(data) AS b FROM mozart.blobs WHERE hash = $1", [hash])).rows[0].b),
      makeReadOnly: async (_dir, location) => {
        await cluster!.sql("postgres", `ALTER DATABASE ${dbName(location)} SET default_transaction_read_only = on`);
        return async () => void (await cluster!.sql("postgres", `ALTER DATABASE ${dbName(location)} SET default_transaction_read_only = off`));
      },
      deleteState: async (_dir, location) => void (await cluster!.sql(dbName(location), "DROP SCHEMA mozart CASCADE")),
      integrity: async () => {},
    };
  }
  const sqlite = kind === "sqlite";
  return {
    location: async (dir) => (sqlite ? join(dir, "state", "state.db") : join(dir, "state")),
    missing: async (dir) => ({
      location: sqlite ? join(dir, "nope", "state.db") : join(dir, "nope"),
      untouched: async () => expect(await readdir(dir)).toEqual(["state"]),
    }),
    nothingOutside: async (dir) => expect(await readdir(dir)).toEqual(["state"]),
    damageBatch: async (location, jobId, n) => {
      if (!sqlite) await writeFile(join(location, "batches", encodeJobId(jobId), `${String(n).padStart(7, "0")}.json`), `{"batch_num": ${n}, "status": "compl`);
      else {
        const db = new DatabaseSync(location);
        db.prepare("UPDATE batches SET data = ? WHERE job = ? AND n = ?").run('{"batch_num":2,"status":"weird"}', jobId, n);
        db.close();
      }
    },
    damageJob: async (location, jobId) => {
      if (!sqlite) await writeFile(join(location, "jobs", `${encodeJobId(jobId)}.json`), "null");
      else {
        const db = new DatabaseSync(location);
        db.prepare("UPDATE jobs SET data = 'null' WHERE job = ?").run(jobId);
        db.close();
      }
    },
    blobBytes: async (location, hash) => (sqlite ? (await stat(location)).size : (await stat(join(location, "blobs", `${hash}.gz`))).size),
    makeReadOnly: async (dir) => {
      const folder = join(dir, "state");
      await chmod(folder, 0o555);
      return () => chmod(folder, 0o755);
    },
    deleteState: (dir) => rm(join(dir, "state"), { recursive: true, force: true }),
    integrity: async (location) => {
      if (!sqlite) return;
      const db = new DatabaseSync(location, { readOnly: true });
      expect(db.prepare("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
      db.close();
    },
  };
}

for (const kind of ["json", "sqlite", "postgres"] as const) {
  describe(`state store: ${kind}`, () => {
    let dir: string;
    let location: string;
    let store: StateStore;
    const children: Child[] = [];
    const h = harness(kind);
    const open = (readOnly = false) => openStore({ kind, location, readOnly });

    if (kind === "postgres") {
      beforeAll(async () => {
        cluster = await startCluster();
      }, 60_000);
      afterAll(() => cluster?.stop());
    }
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), `mozart-state-${kind}-`));
      location = await h.location(dir);
      store = await open();
    });
    afterEach(async () => {
      for (const c of children.splice(0)) await kill(c);
      await store.close();
      await chmod(dir, 0o755).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    });

    test("job, batch and attempt records round trip; batches page in batch_num order", async () => {
      expect(await store.getJob("j1")).toBeNull();
      await store.putJob(job("j1", { total_batches: 1500 }));
      expect(await store.getJob("j1")).toEqual(job("j1", { total_batches: 1500 }));
      for (const n of [3, 1, 1200, 2]) await store.putBatch("j1", batch(n));
      expect((await store.listBatches("j1")).map((b) => b.batch_num)).toEqual([1, 2, 3, 1200]);
      expect((await store.listBatches("j1", { from: 2, limit: 2 })).map((b) => b.batch_num)).toEqual([2, 3]);
      await store.putBatch("j1", batch(2, { status: "failed" }));
      expect((await store.listBatches("j1", { statuses: ["failed"] })).map((b) => b.batch_num)).toEqual([2]);
      await store.commit("j1", { attempt: attempt(2, 2) }, Date.now());
      await store.commit("j1", { attempt: attempt(2, 1) }, Date.now());
      await store.commit("j1", { attempt: attempt(1, 1) }, Date.now());
      expect((await store.listAttempts("j1", 2)).map((a) => a.attempt)).toEqual([1, 2]);
      expect(await store.listJobIds()).toEqual(["j1"]);
    });

    test("a batch's outcome and learning fields are written with its step and read back exactly, by another reader too", async () => {
      await store.putJob(job("j1", { total_batches: 2 }));
      const tokens = { input: 120, output: 40, cache_read: 7, cache_write_5m: 0, cache_write_1h: 3 };
      const outcome = {
        v: 1 as const, job_id: "j1", batch_num: 1, items: 10, at: "2026-03-01T00:00:00.000Z", runner: "r1", category: "after_completion" as const,
        attempts: 3, holds: 1, completion_attempts: 1, usd: 0.0123, tokens, duration_ms: 4200, held_ms: 1500, held_by: { reset_time: 1500 },
        failed_validations: [{ description: "has a table", attempts: [1, 2] }], backend: "anthropic_api", model: "claude-haiku-4-5", config_hash: "c".repeat(16), template_hash: "t".repeat(32),
      };
      const b1 = batch(1, { failed_validations: { "has a table": [1, 2] }, held_by: { reset_time: 1500 }, tokens, outcome });
      expect((await store.commit("j1", { batch: b1 }, Date.now())).ok).toBe(true);
      expect((await store.getBatch("j1", 1))!.outcome).toEqual(outcome);
      const reader = await open(true);
      const [read] = await reader.listBatches("j1");
      await reader.close();
      expect(read).toMatchObject({ outcome, failed_validations: { "has a table": [1, 2] }, held_by: { reset_time: 1500 }, tokens });
    });

    test("counters are derived from the batch records, only for batches in the plan", async () => {
      await store.putJob(job("j1", { total_batches: 4 }));
      await store.putBatch("j1", batch(1, { attempts: 2, cost_usd: 0.5, duration_ms: 100, rate_limit_waits: 1 }));
      await store.putBatch("j1", batch(2, { status: "failed", attempts: 3, cost_usd: 0.25 }));
      await store.putBatch("j1", batch(3, { status: "in_progress", attempts: 1, cost_usd: 0 }));
      await store.putBatch("j1", batch(9, { attempts: 7, cost_usd: 9 })); // outside the plan
      expect(await store.summary("j1", 4)).toEqual({ total: 4, completed: 1, failed: 1, in_progress: 1, conflict: 0, pending_recorded: 0, attempts: 6, rate_limit_waits: 1, cost_usd: 0.75, tokens: { input: 0, output: 0, cache_read: 0, cache_write_5m: 0, cache_write_1h: 0 }, completed_duration_ms: 100, damaged: 0 });
      // isolation: worktree — a batch that completed but could not be merged is its own count, never damaged.
      await store.putBatch("j1", batch(4, { status: "conflict", attempts: 1, cost_usd: 0, git: { branch: "b", base: "a", worktree: "/w", head: "c", merge: "conflict" } }));
      expect(await store.summary("j1", 4)).toMatchObject({ completed: 1, conflict: 1, damaged: 0, attempts: 7 });
      expect((await store.getBatch("j1", 4))?.damaged).toBeUndefined();
      expect((await store.listBatches("j1", { statuses: ["conflict"] })).map((b) => b.batch_num)).toEqual([4]);
    });

    test("odd ids are safe keys, stay inside the state folder and never collide", async () => {
      for (const [i, id] of ODD_IDS.entries()) {
        await store.putJob(job(id));
        await store.putBatch(id, batch(1, { cost_usd: i }));
        await store.commit(id, { events: [{ type: "hold_end", batch_num: i }] }, Date.now());
      }
      for (const [i, id] of ODD_IDS.entries()) {
        expect((await store.getJob(id))?.job_id).toBe(id);
        expect((await store.getBatch(id, 1))?.cost_usd).toBe(i);
        expect((await store.readEvents(id)).map((e) => (e as { batch_num: number }).batch_num)).toEqual([i]);
      }
      expect(new Set(ODD_IDS.map(encodeJobId)).size).toBe(ODD_IDS.length);
      await h.nothingOutside(dir, location);
    });

    test("blobs are stored once, large ones compressed, and read back exactly", async () => {
      const small = "prompt for batch 1";
      const large = "Process every item carefully.\n".repeat(100_000); // 3 MB
      const h1 = await store.putBlob(small);
      expect(await store.putBlob(small)).toBe(h1);
      const h2 = await store.putBlob(large);
      expect(await store.getBlob(h1)).toBe(small);
      expect(await store.getBlob(h2)).toBe(large);
      expect(await store.getBlob("0".repeat(32))).toBeNull();
      // Ten attempts with the same 3 MB prompt cost it once, compressed.
      for (let i = 0; i < 10; i++) await store.putBlob(large);
      await store.close();
      store = await open();
      expect(await h.blobBytes(location, h2)).toBeLessThan(large.length / 10);
    });

    test("the event log: seq strictly increasing, read from any seq, also by a reader in another store", async () => {
      await store.putJob(job("j1"));
      const r1 = await store.commit("j1", { events: [{ type: "hold_end", batch_num: 1 }, { type: "hold_end", batch_num: 2 }] }, Date.now());
      const r2 = await store.commit("j1", { events: [{ type: "hold_end", batch_num: 3 }] }, Date.now());
      expect(r1).toEqual({ ok: true, seq: 2 });
      expect(r2).toEqual({ ok: true, seq: 3 });
      const reader = await open(true);
      try {
        expect((await reader.readEvents("j1")).map((e) => e.seq)).toEqual([1, 2, 3]);
        expect((await reader.readEvents("j1", { after: 1 })).map((e) => e.seq)).toEqual([2, 3]);
        expect((await reader.readEvents("j1", { after: 1, limit: 1 })).map((e) => e.seq)).toEqual([2]);
        expect(await reader.lastSeq("j1")).toBe(3);
        const e = (await reader.readEvents("j1"))[0]!;
        expect(e).toMatchObject({ seq: 1, job_id: "j1", type: "hold_end", batch_num: 1 });
        expect(Date.parse(e.at)).toBeGreaterThan(0);
      } finally {
        await reader.close();
      }
    });

    test("two processes appending events get unique seqs with no gaps", async () => {
      await store.putJob(job("j1"));
      const at = String(Date.now() + 400);
      const a = startChild(["events", kind, location, "j1", "150"], { START_AT: at });
      const b = startChild(["events", kind, location, "j1", "150"], { START_AT: at });
      children.push(a, b);
      await Promise.all([a.line("done"), b.line("done")]);
      const seqs = (await store.readEvents("j1")).map((e) => e.seq);
      expect(seqs).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    }, 30_000);

    test("leases: exclusive join refused while a live runner holds the job; --join and --take-over", async () => {
      await store.putJob(job("j1"));
      const now = Date.now();
      expect(await store.join("j1", lease("a", now), { now, ttlMs: TTL, exclusive: true })).toEqual({ ok: true });
      const refused = await store.join("j1", lease("b", now), { now, ttlMs: TTL, exclusive: true });
      expect(refused.ok).toBe(false);
      expect(!refused.ok && refused.holders.map((h) => h.id)).toEqual(["a"]);
      expect(await store.join("j1", lease("b", now), { now, ttlMs: TTL, exclusive: false })).toEqual({ ok: true });
      expect((await store.runners("j1", now)).map((l) => l.id).sort()).toEqual(["a", "b"]);
      expect(await store.join("j1", lease("c", now), { now, ttlMs: TTL, exclusive: true, takeOver: true })).toEqual({ ok: true });
      expect((await store.runners("j1", now)).map((l) => l.id)).toEqual(["c"]);
      // The runners that were taken over cannot renew.
      expect(await store.heartbeat("j1", "a", now + 10, TTL)).toBe(false);
      expect(await store.heartbeat("j1", "c", now + 10, TTL)).toBe(true);
    });

    test("leases expire: a frozen runner's lease lapses on any host; a dead one on this host at once", async () => {
      await store.putJob(job("j1"));
      const now = Date.now();
      await store.join("j1", lease("far", now, { host: "another-host", pid: 1 }), { now, ttlMs: TTL, exclusive: true });
      expect((await store.join("j1", lease("me", now), { now: now + 100, ttlMs: TTL, exclusive: true })).ok).toBe(false);
      expect((await store.join("j1", lease("me", now + TTL + 1), { now: now + TTL + 1, ttlMs: TTL, exclusive: true })).ok).toBe(true);

      const holder = startChild(["hold-lease", kind, location, "j2"]);
      children.push(holder);
      await store.putJob(job("j2"));
      expect(await holder.line("joined")).toContain('"ok":true');
      expect((await store.join("j2", lease("me"), { now: Date.now(), ttlMs: TTL, exclusive: true })).ok).toBe(false);
      await kill(holder);
      children.pop();
      expect((await store.join("j2", lease("me"), { now: Date.now(), ttlMs: TTL, exclusive: true })).ok).toBe(true);
    });

    test("claims: once per batch, a fencing token per claim, taken over only from a lost runner", async () => {
      await store.putJob(job("j1"));
      const now = Date.now();
      await store.join("j1", lease("a", now), { now, ttlMs: TTL, exclusive: false });
      await store.join("j1", lease("b", now), { now, ttlMs: TTL, exclusive: false });
      const c1 = await store.claim("j1", "a", 1, { now, fresh: fresh(1) });
      expect(c1?.token).toBe(1);
      expect(c1?.batch).toMatchObject({ status: "in_progress", owner: "a" });
      expect(await store.claim("j1", "b", 1, { now, fresh: fresh(1) })).toBeNull();
      await store.putBatch("j1", batch(2));
      expect(await store.claim("j1", "b", 2, { now, fresh: fresh(2) })).toBeNull(); // completed
      // a records what runs, then is lost: b takes the batch over and learns what a left running.
      await store.commit("j1", { fence: { runner: "a", batch: 1, token: 1 }, batch: { ...c1!.batch, running: { attempt: 1, runner: "a", host: hostname(), tag: "t-a" } } }, now);
      const later = now + TTL + 10;
      expect(await store.heartbeat("j1", "b", now + TTL / 2, TTL)).toBe(true);
      const c2 = await store.claim("j1", "b", 1, { now: later, fresh: fresh(1) });
      expect(c2?.token).toBe(2);
      expect(c2?.previous).toMatchObject({ runner: "a", tag: "t-a" });
      // The fence: a's completion is refused, b's lands.
      const late = await store.commit("j1", { fence: { runner: "a", batch: 1, token: 1 }, batch: { ...c1!.batch, status: "completed" }, events: [{ type: "batch_complete", batch_num: 1, attempts: 1, duration_ms: 1, cost_usd: 0 }] }, later);
      expect(late).toEqual({ ok: false, reason: "fenced" });
      expect((await store.getBatch("j1", 1))?.status).toBe("in_progress");
      expect(await store.readEvents("j1")).toEqual([]);
      const won = await store.commit("j1", { fence: { runner: "b", batch: 1, token: 2 }, batch: { ...c2!.batch, status: "completed", owner: null } }, later);
      expect(won.ok).toBe(true);
      expect((await store.getBatch("j1", 1))?.status).toBe("completed");
    });

    test("a fenced step writes nothing at all; an expired lease fences even if nobody took over", async () => {
      await store.putJob(job("j1"));
      const now = Date.now();
      await store.join("j1", lease("a", now), { now, ttlMs: TTL, exclusive: true });
      const c = (await store.claim("j1", "a", 1, { now, fresh: fresh(1) }))!;
      const step = { fence: { runner: "a", batch: 1, token: c.token }, batch: { ...c.batch, status: "completed" as const }, attempt: attempt(1, 1), hold: { until: now + 1000, reason: "r", batch_num: 1 }, events: [{ type: "hold_end" as const, batch_num: 1 }] };
      expect(await store.commit("j1", step, now + TTL + 1)).toEqual({ ok: false, reason: "fenced" });
      expect((await store.getBatch("j1", 1))?.status).toBe("in_progress");
      expect(await store.listAttempts("j1", 1)).toEqual([]);
      expect(await store.getHold("j1")).toBeNull();
      expect(await store.lastSeq("j1")).toBe(0);
      expect((await store.commit("j1", step, now + 10)).ok).toBe(true);
      expect(await store.getHold("j1")).toMatchObject({ reason: "r" });
    });

    test("two runner processes draining one job claim every batch exactly once", async () => {
      await store.putJob(job("j1", { total_batches: 60 }));
      const at = String(Date.now() + 500);
      const a = startChild(["drain", kind, location, "j1", "60"], { START_AT: at });
      const b = startChild(["drain", kind, location, "j1", "60"], { START_AT: at });
      children.push(a, b);
      await Promise.all([a.line("done"), b.line("done")]);
      const claimed = [...a.lines(), ...b.lines()].filter((l) => l.startsWith("claimed ")).map((l) => Number(l.slice(8)));
      expect(claimed.sort((x, y) => x - y)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
      expect([...a.lines(), ...b.lines()].filter((l) => l.startsWith("fenced"))).toEqual([]);
      expect((await store.summary("j1", 60)).completed).toBe(60);
      expect((await store.readEvents("j1")).filter((e) => e.type === "batch_complete")).toHaveLength(60);
    }, 30_000);

    test("updateBatch: a compare-and-set on one batch record with its events, fenced by the runner's lease", async () => {
      await store.putJob(job("j1"));
      const now = Date.now();
      await store.join("j1", lease("r1", now), { now, ttlMs: TTL, exclusive: false });
      const git = { branch: "mozart/j1/batch-1", base: "abc", worktree: "/tmp/wt/batch-1", head: "def", merge: "ready" as const };
      await store.putBatch("j1", batch(1, { git }));
      const toMerging = (runner: string) => (cur: BatchRecord | null) =>
        cur?.git?.merge === "ready" ? { batch: { ...cur, git: { ...cur.git, merge: "merging" as const, merging_by: runner } }, events: [{ type: "hold_end" as const, batch_num: 1 }] } : null;

      // Without a live lease nothing is written.
      const ghost = await store.updateBatch("j1", 1, { now, runner: "ghost" }, toMerging("ghost"));
      expect(ghost).toMatchObject({ ok: false, reason: "fenced" });
      expect((await store.getBatch("j1", 1))?.git?.merge).toBe("ready");
      expect(await store.lastSeq("j1")).toBe(0);

      const won = await store.updateBatch("j1", 1, { now, runner: "r1" }, toMerging("r1"));
      expect(won.ok).toBe(true);
      expect(won.ok && won.seq).toBe(1);
      expect(won.batch?.git).toMatchObject({ merge: "merging", merging_by: "r1" });
      expect((await store.getBatch("j1", 1))?.git).toMatchObject({ merge: "merging", merging_by: "r1" });
      expect((await store.readEvents("j1")).map((e) => e.type)).toEqual(["hold_end"]);

      // The same change again finds the record moved on: nothing happens, the current record comes back.
      const again = await store.updateBatch("j1", 1, { now, runner: "r1" }, toMerging("r1"));
      expect(again).toMatchObject({ ok: false, reason: "unchanged", batch: { git: { merge: "merging" } } });
      expect(await store.lastSeq("j1")).toBe(1);

      // The decision sees which runners are live; a missing record comes in as null.
      const seen: boolean[] = [];
      await store.updateBatch("j1", 1, { now }, (_cur, ctx) => (seen.push(ctx.isLive("r1"), ctx.isLive("gone")), null));
      expect(seen).toEqual([true, false]);
      let missing: BatchRecord | null | undefined;
      expect((await store.updateBatch("j1", 2, { now }, (cur) => ((missing = cur), null))).ok).toBe(false);
      expect(missing).toBeNull();
      // A readonly store refuses; a merged batch record survives a reopen.
      await store.updateBatch("j1", 1, { now, runner: "r1" }, (cur) => ({ batch: { ...cur!, git: { ...cur!.git!, merge: "merged", merged_commit: "123" } } }));
      await store.close();
      store = await open();
      expect((await store.getBatch("j1", 1))?.git).toMatchObject({ merge: "merged", merged_commit: "123" });
      const reader = await open(true);
      await expect(reader.updateBatch("j1", 1, { now }, () => null)).rejects.toThrow();
      await reader.close();
    });

    test("updateBatch: of four processes racing to land one batch, exactly one wins", async () => {
      await store.putJob(job("j1"));
      await store.putBatch("j1", batch(1, { git: { branch: "b", base: "a", worktree: "/tmp/w", head: "c", merge: "ready" } }));
      const at = String(Date.now() + 1500);
      const racers = [0, 1, 2, 3].map(() => startChild(["land", kind, location, "j1", "1"], { LAND_AT: at }));
      children.push(...racers);
      const said = await Promise.all(racers.map((c) => c.line("won").catch(() => c.line("lost"))));
      await Promise.all(racers.map((c) => c.exited));
      const lines = racers.flatMap((c) => c.lines());
      expect(lines.filter((l) => l === "won")).toHaveLength(1);
      expect(lines.filter((l) => l === "lost")).toHaveLength(3);
      expect(said).toHaveLength(4);
      expect((await store.getBatch("j1", 1))?.git?.merge).toBe("merging");
      expect((await store.readEvents("j1")).filter((e) => e.type === "hold_end")).toHaveLength(1);
    }, 30_000);

    test("leave hands back the runner's batches and records the final step only as the last runner", async () => {
      await store.putJob(job("j1"));
      const now = Date.now();
      await store.join("j1", lease("a", now), { now, ttlMs: TTL, exclusive: false });
      await store.join("j1", lease("b", now), { now, ttlMs: TTL, exclusive: false });
      await store.claim("j1", "a", 1, { now, fresh: fresh(1) });
      const final = (o: { others: number }) => (o.others ? null : { job: { status: "completed" as const }, events: [{ type: "hold_end" as const, batch_num: 0 }] });
      const first = await store.leave("j1", "a", now, final);
      expect(first.others).toBe(1);
      expect(first.seq).toBeUndefined();
      expect((await store.getBatch("j1", 1))).toMatchObject({ status: "pending", owner: null });
      const last = await store.leave("j1", "b", now, final);
      expect(last.others).toBe(0);
      expect(last.seq).toBe(1);
      expect((await store.getJob("j1"))?.status).toBe("completed");
    });

    test("claimable: pending records and batches of lost runners", async () => {
      await store.putJob(job("j1", { total_batches: 10 }));
      const now = Date.now();
      await store.putBatch("j1", batch(1));
      await store.putBatch("j1", batch(2, { status: "pending" }));
      await store.putBatch("j1", batch(3, { status: "in_progress", owner: "gone" }));
      await store.join("j1", lease("live", now), { now, ttlMs: TTL, exclusive: false });
      await store.putBatch("j1", batch(4, { status: "in_progress", owner: "live" }));
      await store.putBatch("j1", batch(5, { status: "failed" }));
      expect(await store.claimable("j1", { now, from: 1, limit: 10 })).toEqual([2, 3]);
      expect(await store.claimable("j1", { now, from: 3, limit: 10 })).toEqual([3]);
    });

    test("control record and shared hold: a later hold wins, a clear only removes a hold that ended", async () => {
      await store.putJob(job("j1"));
      expect(await store.getControl("j1")).toBeNull();
      const by = { via: "cli" as const, host: "h", pid: 1 };
      await store.setControl("j1", { request: "pause", by, at: "2026-01-01T00:00:00.000Z" });
      expect(await store.getControl("j1")).toMatchObject({ request: "pause", by });
      await store.setControl("j1", null);
      expect(await store.getControl("j1")).toBeNull();
      await store.commit("j1", { hold: { until: 2000, reason: "later", batch_num: 1 } }, Date.now());
      await store.commit("j1", { hold: { until: 1000, reason: "earlier", batch_num: 2 } }, Date.now());
      expect(await store.getHold("j1")).toMatchObject({ until: 2000, reason: "later" });
      await store.commit("j1", { clearHold: 1000 }, Date.now());
      expect(await store.getHold("j1")).toMatchObject({ until: 2000 });
      await store.commit("j1", { clearHold: 2000 }, Date.now());
      expect(await store.getHold("j1")).toBeNull();
    });

    test("the cost ledger: entries land with their step, keyed by batch, attempt and runner, summed exactly; a fenced step adds none", async () => {
      await store.putJob(job("j1", { total_batches: 3 }));
      await store.putJob(job("j2"));
      const now = Date.now();
      await store.join("j1", lease("a", now), { now, ttlMs: TTL, exclusive: true });
      const c = (await store.claim("j1", "a", 1, { now, fresh: fresh(1) }))!;
      const fenceA = { runner: "a", batch: 1, token: c.token };
      // A fenced step's entry does not land either.
      expect(await store.commit("j1", { fence: { ...fenceA, token: 99 }, spend: [spend(1, 1, "a", 0.5)] }, now)).toEqual({ ok: false, reason: "fenced" });
      expect(await store.spendTotals("j1")).toEqual({ usd: 0, tokens: zeroTokens, entries: 0 });
      expect((await store.commit("j1", { fence: fenceA, attempt: attempt(1, 1), spend: [spend(1, 1, "a", 0.25, { input: 100, output: 50, cache_read: 400, cache_write_5m: 10, cache_write_1h: 20 })] }, now)).ok).toBe(true);
      // The same key again replaces (a step written twice is never counted twice); another runner's attempt 1 is another entry.
      await store.commit("j1", { spend: [spend(1, 1, "a", 0.25, { input: 100, output: 50, cache_read: 400, cache_write_5m: 10, cache_write_1h: 20 })] }, now);
      await store.commit("j1", { spend: [spend(1, 1, "b", 0.125)] }, now);
      await store.commit("j2", { spend: [spend(1, 1, "a", 7)] }, now);
      expect(await store.spendTotals("j1")).toEqual({ usd: 0.375, tokens: { input: 100, output: 50, cache_read: 400, cache_write_5m: 10, cache_write_1h: 20 }, entries: 2 });
      expect((await store.listSpend("j1")).map((e) => [e.batch_num, e.attempt, e.runner, e.usd])).toEqual([
        [1, 1, "a", 0.25],
        [1, 1, "b", 0.125],
      ]);
      expect(await store.listSpend("j1", { batch: 2 })).toEqual([]);
      // The job's cost is the ledger's, not the batch records' (which say 0.01 each).
      await store.putBatch("j1", batch(2));
      expect((await store.summary("j1", 3)).cost_usd).toBe(0.375);
      // A thousand cents of a cent add up to exactly ten cents, also for a reader in another store.
      for (let i = 0; i < 1000; i++) await store.commit("j1", { spend: [spend(3, i + 1, "c", 0.0001)] }, now);
      const reader = await open(true);
      try {
        expect((await reader.spendTotals("j1")).usd).toBe(0.475);
        expect((await reader.summary("j1", 3)).cost_usd).toBe(0.475);
      } finally {
        await reader.close();
      }
      await store.clearBatches("j1");
      expect((await store.spendTotals("j1")).entries).toBe(0);
      expect((await store.spendTotals("j2")).usd).toBe(7);
    });

    if (kind === "json") {
      test("json: a ledger line a killed writer left half-written is cut before the next entry, never glued to it", async () => {
        await store.putJob(job("j1"));
        await store.commit("j1", { spend: [spend(1, 1, "a", 0.5)] }, Date.now());
        const file = join(location, "spend", `${encodeJobId("j1")}.jsonl`);
        await appendFile(file, '{"batch_num":2,"attempt":1,"runner":"a","usd":9');
        const reader = await open(true);
        try {
          expect((await reader.spendTotals("j1")).usd).toBe(0.5);
        } finally {
          await reader.close();
        }
        await store.commit("j1", { spend: [spend(3, 1, "a", 0.25)] }, Date.now());
        expect(await store.spendTotals("j1")).toMatchObject({ usd: 0.75, entries: 2 });
        expect((await readFile(file, "utf8")).split("\n").filter(Boolean)).toHaveLength(2);
      });
    }

    test("provider batches (Message Batches): recorded by key, replaced by a later write, listed oldest first, read by another store", async () => {
      await store.putJob(job("j1"));
      const rb = (key: string, at: string, status: RemoteBatch["status"] = "submitting"): RemoteBatch => ({
        key,
        provider: "anthropic",
        status,
        runner: "a",
        submitted_at: at,
        updated_at: at,
        items: [
          { custom_id: `b1-a1-${key}`, batch_num: 1, attempt: 1 },
          { custom_id: `b2-a1-${key}`, batch_num: 2, attempt: 1 },
        ],
      });
      expect(await store.listRemoteBatches("j1")).toEqual([]);
      await store.putRemoteBatch("j1", rb("mb-2", "2026-01-01T00:00:02.000Z"));
      await store.putRemoteBatch("j1", rb("mb-1", "2026-01-01T00:00:01.000Z"));
      await store.putRemoteBatch("j1", { ...rb("mb-2", "2026-01-01T00:00:02.000Z", "in_progress"), id: "msgbatch_x", counts: { processing: 2, succeeded: 0, errored: 0, canceled: 0, expired: 0 } });
      const reader = await open(true);
      try {
        const list = await reader.listRemoteBatches("j1");
        expect(list.map((b) => [b.key, b.status, b.id ?? null])).toEqual([
          ["mb-1", "submitting", null],
          ["mb-2", "in_progress", "msgbatch_x"],
        ]);
        expect(list[1]!.items.map((i) => i.batch_num)).toEqual([1, 2]);
      } finally {
        await reader.close();
      }
      expect(await store.listRemoteBatches("j2")).toEqual([]);
      await store.clearBatches("j1");
      expect(await store.listRemoteBatches("j1")).toEqual([]);
    });

    test("clearBatches and resetBatches touch only the named job and batches", async () => {
      for (const id of ["j1", "j2"]) {
        await store.putJob(job(id));
        for (const n of [1, 2, 3]) await store.putBatch(id, batch(n, { status: n === 2 ? "failed" : "completed" }));
        await store.commit(id, { attempt: attempt(1, 1) }, Date.now());
      }
      expect(await store.resetBatches("j1", { status: "failed" })).toBe(1);
      expect((await store.listBatches("j1")).map((b) => b.status)).toEqual(["completed", "pending", "completed"]);
      expect(await store.resetBatches("j1", { from: 3 })).toBe(1);
      expect((await store.listBatches("j1")).map((b) => b.status)).toEqual(["completed", "pending", "pending"]);
      await store.clearBatches("j1");
      expect(await store.listBatches("j1")).toEqual([]);
      expect(await store.listAttempts("j1", 1)).toEqual([]);
      expect(await store.listBatches("j2")).toHaveLength(3);
      expect(await store.listAttempts("j2", 1)).toHaveLength(1);
      expect(await store.getJob("j1")).not.toBeNull();
    });

    test("a damaged batch record is reported with its batch, counted, never claimed, and repaired to pending", async () => {
      await store.putJob(job("j1", { total_batches: 3 }));
      await store.putBatch("j1", batch(1));
      await store.putBatch("j1", batch(2));
      await store.putBatch("j1", batch(3));
      await h.damageBatch(location, "j1", 2);
      const reader = await open(true);
      const listed = await reader.listBatches("j1");
      await reader.close();
      expect(listed.map((b) => b.batch_num)).toEqual([1, 2, 3]);
      expect(listed[1]!.damaged).toContain("batch 2");
      expect(listed[1]!.status).toBe("pending");
      const s = await store.summary("j1", 3);
      if (kind === "json") expect(s).toMatchObject({ completed: 2, damaged: 1 });
      const now = Date.now();
      await store.join("j1", lease("a", now), { now, ttlMs: TTL, exclusive: true });
      expect(await store.claim("j1", "a", 2, { now, fresh: fresh(2) })).toBeNull();
      expect(await store.resetBatches("j1", { damaged: true })).toBe(1);
      expect(await store.getBatch("j1", 2)).toBeNull();
      expect((await store.claim("j1", "a", 2, { now, fresh: fresh(2) }))?.token).toBe(1);
    });

    test("a damaged job record names the store and points at repair", async () => {
      await store.putJob(job("j1"));
      await h.damageJob(location, "j1");
      const err = await store.getJob("j1").catch((e: Error) => e);
      expect(String((err as Error).message)).toContain("damaged");
      expect((err as { hint?: string }).hint).toContain("mozart repair");
    });

    test("read-only: opening a missing store creates nothing; a read-only folder can be read", async () => {
      const missing = await h.missing(dir);
      const err = await openStore({ kind, location: missing.location, readOnly: true }).catch((e: Error) => e);
      expect(String((err as Error).message)).toContain("no state");
      await missing.untouched();
      await store.putJob(job("j1"));
      await store.putBatch("j1", batch(1));
      await store.close();
      const undo = await h.makeReadOnly(dir, location);
      try {
        // root ignores permissions; the read-only open must still work and change nothing.
        store = await open(true);
        expect((await store.getJob("j1"))?.job_id).toBe("j1");
        expect(await store.listBatches("j1")).toHaveLength(1);
        await expect(store.putJob(job("j2"))).rejects.toThrow(/read-only/);
      } finally {
        await undo();
      }
    });

    test("a state deleted or replaced under a writer is noticed", async () => {
      await store.putJob(job("j1"));
      await store.checkIdentity();
      await h.deleteState(dir, location);
      await expect(store.checkIdentity()).rejects.toThrow(/deleted|replaced/);
      if (kind === "json") {
        // The folder is never recreated by a write after it was deleted.
        await expect(store.putBatch("j1", batch(1))).rejects.toThrow(/deleted|replaced/);
        expect(await readdir(dir)).toEqual([]);
      }
    });

    test("readers and a writer killed with SIGKILL never see a torn record", async () => {
      const size = 2_000_000;
      await store.putJob(job("j1"));
      const expectWhole = (record: BatchRecord | null) => {
        expect(record).not.toBeNull();
        expect(record?.damaged).toBeUndefined();
        const letter = String.fromCharCode(97 + ((record?.attempts ?? 0) % 26));
        expect(record?.last_output?.length).toBe(size);
        expect(record?.last_output).toBe(letter.repeat(size));
      };
      for (const moment of [0, 15, 40, 90, 170]) {
        const child = startChild(["write-loop", kind, location, "j1", String(size)]);
        children.push(child);
        await child.line("ready");
        const until = Date.now() + moment;
        do expectWhole(await store.getBatch("j1", 1));
        while (Date.now() < until);
        await kill(child);
        children.pop();
        const reader = await open(true);
        try {
          expectWhole(await reader.getBatch("j1", 1));
          await h.integrity(location);
        } finally {
          await reader.close();
        }
      }
      if (kind === "json") {
        // Each killed writer may leave one temp file; the next runner to join the job sweeps them.
        const temps = async () => (await readdir(join(location, "batches", "j1"))).filter((n) => n.endsWith(".tmp"));
        expect((await temps()).length).toBeLessThanOrEqual(5);
        await store.join("j1", lease("sweeper"), { now: Date.now(), ttlMs: TTL, exclusive: true });
        expect(await temps()).toEqual([]);
      }
    }, 60_000);

    test("a step costs O(1): batch 2,000 writes no more than batch 1", async () => {
      await store.putJob(job("j1", { total_batches: 2000 }));
      const now = Date.now();
      await store.join("j1", lease("a", now), { now, ttlMs: 60_000, exclusive: true });
      const timeStep = async (n: number) => {
        const t0 = performance.now();
        const c = (await store.claim("j1", "a", n, { now, fresh: fresh(n) }))!;
        await store.commit("j1", { fence: { runner: "a", batch: n, token: c.token }, batch: { ...c.batch, status: "completed", owner: null }, attempt: attempt(n, 1), events: [{ type: "batch_complete", batch_num: n, attempts: 1, duration_ms: 1, cost_usd: 0 }] }, now);
        return performance.now() - t0;
      };
      const first: number[] = [];
      const last: number[] = [];
      for (let n = 1; n <= 2000; n++) {
        const ms = await timeStep(n);
        if (n <= 100) first.push(ms);
        if (n > 1900) last.push(ms);
      }
      const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      // A generous sanity bound on a noisy machine: an O(n) rewrite would be ~20x here.
      expect(median(last)).toBeLessThan(median(first) * 5 + 2);
      expect((await store.summary("j1", 2000)).completed).toBe(2000);
    }, 60_000);
  });
}

describe("state store: refusals", () => {
  test("a file that is not a SQLite database is named as such, not blamed on permissions", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mozart-state-bad-"));
    try {
      await writeFile(join(dir, "state.db"), "this is not sqlite, it is a text file that got in the way\n".repeat(200));
      const err = await openStore({ kind: "sqlite", location: join(dir, "state.db"), readOnly: true }).catch((e: Error) => e);
      expect(String((err as Error).message)).toContain("not a readable SQLite database");
      expect(String((err as Error).message)).not.toContain("writable");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("state written by Mozart 0.2 is refused with what to do", async () => {
    const dir = await mkdtemp(join(tmpdir(), "mozart-state-old-"));
    try {
      const db = new DatabaseSync(join(dir, "state.db"));
      db.exec("CREATE TABLE unstorage (key TEXT PRIMARY KEY, value TEXT)");
      db.close();
      await expect(openStore({ kind: "sqlite", location: join(dir, "state.db") })).rejects.toThrow(/0\.2/);
      await mkdir(join(dir, "json", "jobs"), { recursive: true });
      await writeFile(join(dir, "json", "jobs", "old-job"), "{}");
      await expect(openStore({ kind: "json", location: join(dir, "json") })).rejects.toThrow(/0\.2/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
