/**
 * The state store against real files and a real SQLite database, one suite for both backends.
 * Locks and crash safety use real child processes (tests/fixtures/state-child.ts).
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DatabaseSync } from "node:sqlite";
import { encodeJobId } from "../../src/state/keys.ts";
import { openStore } from "../../src/state/store.ts";
import type { AttemptRecord, BatchRecord, JobRecord, StateStore } from "../../src/state/types.ts";

const CHILD = join(import.meta.dir, "..", "fixtures", "state-child.ts");
const ODD_IDS = ["my job", "a/b/c", "../../etc/passwd", "日本語ジョブ", "Job", "job", "con", ".", "..", "a:b", "x?y", "a_b", "acb", "%"];

function job(jobId: string, extra: Partial<JobRecord> = {}): JobRecord {
  return {
    job_id: jobId,
    job_name: jobId,
    status: "running",
    config_hash: "abc",
    config_snapshot: {} as JobRecord["config_snapshot"],
    config_source: "name: test\n",
    config_path: "/tmp/job.yaml",
    workspace: "/tmp/ws",
    total_batches: 3,
    created_at: "2026-01-01T00:00:00.000Z",
    updated_at: "2026-01-01T00:00:00.000Z",
    completed_batches: 0,
    failed_batches: 0,
    total_attempts: 0,
    rate_limit_waits: 0,
    cost_usd: 0,
    hold: null,
    runner: null,
    ...extra,
  };
}

function batch(batchNum: number, extra: Partial<BatchRecord> = {}): BatchRecord {
  return {
    batch_num: batchNum,
    status: "completed",
    start_item: batchNum * 10 - 9,
    end_item: batchNum * 10,
    attempts: 1,
    completion_attempts: 0,
    rate_limit_waits: 0,
    validation_passed: true,
    validations: [],
    cost_usd: 0.01,
    ...extra,
  };
}

function attempt(batchNum: number, n: number): AttemptRecord {
  return {
    batch_num: batchNum,
    attempt: n,
    mode: n === 1 ? "normal" : "retry",
    started_at: "2026-01-01T00:00:00.000Z",
    ended_at: "2026-01-01T00:00:01.000Z",
    duration_ms: 1000,
    prompt: `prompt ${batchNum}/${n}`,
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

interface Child {
  proc: ChildProcess;
  /** Resolves with the first stdout line starting with `prefix`. */
  line(prefix: string): Promise<string>;
  exited: Promise<number | null>;
}

function startChild(args: string[], env: Record<string, string> = {}): Child {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const me = () => ({ pid: process.pid, host: hostname(), started_at: new Date().toISOString() });

for (const kind of ["json", "sqlite"] as const) {
  describe(`state store: ${kind}`, () => {
    let dir: string;
    let location: string;
    let store: StateStore;
    const children: Child[] = [];
    const lockDir = () => dir;
    const open = () => openStore({ kind, location });

    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), `mozart-state-${kind}-`));
      location = kind === "json" ? dir : join(dir, "state.sqlite");
      store = await open();
    });
    afterEach(async () => {
      for (const child of children.splice(0)) if (child.proc.exitCode === null && child.proc.signalCode === null) await kill(child);
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });

    test("job round trip, missing job is null", async () => {
      expect(await store.getJob("nope")).toBeNull();
      const record = job("j1", { description: "d", hold: { until: "2026-01-01T01:00:00Z", reason: "limit", batch_num: 2 } });
      await store.putJob(record);
      expect(await store.getJob("j1")).toEqual(record);
      await store.putJob({ ...record, status: "completed" });
      expect((await store.getJob("j1"))?.status).toBe("completed");
    });

    test("batches: put, get, list in batch_num order", async () => {
      expect(await store.getBatch("j1", 1)).toBeNull();
      expect(await store.listBatches("j1")).toEqual([]);
      for (const n of [3, 10, 1, 2]) await store.putBatch("j1", batch(n));
      await store.putBatch("j1", batch(2, { status: "failed", error: { message: "boom", category: "x" } }));
      expect((await store.getBatch("j1", 2))?.error?.message).toBe("boom");
      expect((await store.listBatches("j1")).map((b) => b.batch_num)).toEqual([1, 2, 3, 10]);
    });

    test("attempts: append, list in (batch, attempt) order, filter by batch", async () => {
      for (const [b, n] of [[2, 1], [1, 2], [1, 1], [10, 1], [2, 2], [1, 10]] as const) await store.appendAttempt("j1", attempt(b, n));
      const all = await store.listAttempts("j1");
      expect(all.map((a) => [a.batch_num, a.attempt])).toEqual([[1, 1], [1, 2], [1, 10], [2, 1], [2, 2], [10, 1]]);
      expect((await store.listAttempts("j1", 1)).map((a) => a.attempt)).toEqual([1, 2, 10]);
      expect(await store.listAttempts("j1", 3)).toEqual([]);
      expect((await store.listAttempts("j1", 2))[1]).toEqual(attempt(2, 2));
    });

    test("clearBatches removes one job's batches and attempts only", async () => {
      await store.putJob(job("j1"));
      await store.putJob(job("j2"));
      for (const id of ["j1", "j2"]) {
        await store.putBatch(id, batch(1));
        await store.appendAttempt(id, attempt(1, 1));
      }
      await store.clearBatches("j1");
      expect(await store.listBatches("j1")).toEqual([]);
      expect(await store.listAttempts("j1")).toEqual([]);
      expect(await store.getJob("j1")).not.toBeNull();
      expect(await store.listBatches("j2")).toHaveLength(1);
      expect(await store.listAttempts("j2")).toHaveLength(1);
    });

    test("listJobs returns every job, sorted by id", async () => {
      expect(await store.listJobs()).toEqual([]);
      for (const id of ["b", "a", "my job"]) await store.putJob(job(id));
      await store.putBatch("a", batch(1));
      expect((await store.listJobs()).map((j) => j.job_id)).toEqual(["a", "b", "my job"]);
    });

    test("odd ids are safe keys and never collide", async () => {
      for (const [i, id] of ODD_IDS.entries()) {
        await store.putJob(job(id, { total_batches: i }));
        await store.putBatch(id, batch(1, { cost_usd: i }));
        await store.appendAttempt(id, { ...attempt(1, 1), prompt: id });
      }
      expect(new Set(ODD_IDS.map(encodeJobId)).size).toBe(ODD_IDS.length);
      for (const [i, id] of ODD_IDS.entries()) {
        expect((await store.getJob(id))?.total_batches).toBe(i);
        expect((await store.listBatches(id)).map((b) => b.cost_usd)).toEqual([i]);
        expect((await store.listAttempts(id)).map((a) => a.prompt)).toEqual([id]);
      }
      expect((await store.listJobs()).map((j) => j.job_id).sort()).toEqual([...ODD_IDS].sort());
      // Nothing escaped the state folder.
      expect(await readdir(join(dir, ".."))).not.toContain("etc");
    });

    test("ids that slug alike stay separate", async () => {
      const ids = ["My Job", "my job", "my-job!", "MY_JOB"];
      expect(new Set(ids.map(encodeJobId)).size).toBe(ids.length);
      for (const [i, id] of ids.entries()) await store.putBatch(id, batch(1, { attempts: i }));
      for (const [i, id] of ids.entries()) expect((await store.listBatches(id)).map((b) => b.attempts)).toEqual([i]);
      await store.clearBatches("My Job");
      expect(await store.listBatches("my job")).toHaveLength(1);
    });

    test("a second store on the same location sees the data", async () => {
      await store.putJob(job("j1"));
      await store.putBatch("j1", batch(1));
      const other = await open();
      try {
        expect((await other.getJob("j1"))?.job_id).toBe("j1");
        expect(await other.listBatches("j1")).toHaveLength(1);
        await other.putBatch("j1", batch(2));
      } finally {
        await other.close();
      }
      expect((await store.listBatches("j1")).map((b) => b.batch_num)).toEqual([1, 2]);
    });

    test("lock: refused while a live process holds it, taken over once it is dead", async () => {
      const child = startChild(["hold-lock", kind, location, "my job"]);
      children.push(child);
      expect(await child.line("locked")).toBe('locked {"ok":true}');
      const refused = await store.acquireLock("my job", me());
      expect(refused).toEqual({ ok: false, holder: expect.objectContaining({ pid: child.proc.pid, host: hostname() }) });
      // Releasing a lock we do not hold leaves it in place.
      await store.releaseLock("my job");
      expect((await store.acquireLock("my job", me())).ok).toBe(false);
      // Another job's lock is independent.
      expect((await store.acquireLock("other", me())).ok).toBe(true);
      await kill(child);
      expect(await store.acquireLock("my job", me())).toEqual({ ok: true });
      const holder = JSON.parse(await readFile(join(lockDir(), `${encodeJobId("my job")}.lock`), "utf8"));
      expect(holder.pid).toBe(process.pid);
    });

    test("lock: a holder that exited without releasing is taken over", async () => {
      const child = startChild(["lock-and-exit", kind, location, "j1"]);
      expect(await child.line("locked")).toBe('locked {"ok":true}');
      await child.exited;
      expect(await store.acquireLock("j1", me())).toEqual({ ok: true });
    });

    test("lock: racing takeovers of a dead holder leave exactly one winner", async () => {
      const dead = startChild(["lock-and-exit", kind, location, "j1"]);
      await dead.line("locked");
      await dead.exited;
      const startAt = String(Date.now() + 1500);
      const racers = [1, 2, 3, 4, 5, 6].map(() => startChild(["hold-lock", kind, location, "j1"], { START_AT: startAt }));
      children.push(...racers);
      const results = await Promise.all(racers.map((r) => r.line("locked")));
      expect(results.filter((r) => r === 'locked {"ok":true}')).toHaveLength(1);
    });

    test("lock: release removes our lock so another process can take it", async () => {
      expect(await store.acquireLock("j1", me())).toEqual({ ok: true });
      expect(await store.acquireLock("j1", me())).toEqual({ ok: true }); // re-entrant for the same process
      await store.releaseLock("j1");
      expect(await readdir(lockDir())).not.toContain("j1.lock");
      const child = startChild(["hold-lock", kind, location, "j1"]);
      children.push(child);
      expect(await child.line("locked")).toBe('locked {"ok":true}');
    });

    test("lock: a damaged lock file is an error naming the file", async () => {
      await writeFile(join(lockDir(), "j1.lock"), "not json");
      await expect(store.acquireLock("j1", me())).rejects.toThrow(/j1\.lock.*delete the file/);
    });

    test("putBatch is O(1): it never rewrites the job record or other batches", async () => {
      await store.putJob(job("j1", { total_batches: 2000 }));
      await store.putBatch("j1", batch(1));
      const writes = await watchWrites(kind, location);
      for (let n = 2; n <= 2000; n++) await store.putBatch("j1", batch(n));
      const touched = await writes.touched();
      expect(touched).not.toContain("jobs:j1");
      expect(touched).not.toContain("batches:j1:000001");
      expect(touched).toHaveLength(1999);
      expect(await store.listBatches("j1")).toHaveLength(2000);
    });

    test("readers and a writer killed with SIGKILL never see a torn record", async () => {
      const size = 2_000_000;
      const expectWhole = (record: BatchRecord | null) => {
        expect(record).not.toBeNull();
        const letter = String.fromCharCode(97 + ((record?.attempts ?? 0) % 26));
        expect(record?.last_output?.length).toBe(size);
        expect(record?.last_output).toBe(letter.repeat(size));
      };
      for (const moment of [0, 15, 40, 90, 170]) {
        const child = startChild(["write-loop", kind, location, "j1", String(size)]);
        children.push(child);
        await child.line("ready");
        // Read while the other process rewrites the record, then kill it at this moment.
        const until = Date.now() + moment;
        do expectWhole(await store.getBatch("j1", 1));
        while (Date.now() < until);
        await kill(child);
        const reader = await open();
        try {
          expectWhole(await reader.getBatch("j1", 1));
          if (kind === "json") {
            JSON.parse(await readFile(join(location, "batches", "j1", "000001"), "utf8"));
            expect((await readdir(join(location, "batches", "j1"))).filter((n) => n.endsWith(".tmp"))).toEqual([]);
          } else {
            const db = new DatabaseSync(location);
            expect(db.prepare("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
            db.close();
          }
        } finally {
          await reader.close();
        }
      }
    }, 60_000);
  });
}

/** Which keys get written from now on: file identities for json, triggers for sqlite. */
async function watchWrites(kind: "json" | "sqlite", location: string): Promise<{ touched(): Promise<string[]> }> {
  if (kind === "sqlite") {
    const db = new DatabaseSync(location);
    db.exec(`CREATE TABLE probe (key TEXT);
      CREATE TRIGGER probe_i AFTER INSERT ON unstorage BEGIN INSERT INTO probe VALUES (NEW.key); END;
      CREATE TRIGGER probe_u AFTER UPDATE ON unstorage BEGIN INSERT INTO probe VALUES (NEW.key); END;
      CREATE TRIGGER probe_d AFTER DELETE ON unstorage BEGIN INSERT INTO probe VALUES (OLD.key); END;`);
    return {
      async touched() {
        const rows = db.prepare("SELECT key FROM probe").all() as { key: string }[];
        db.close();
        return rows.map((r) => r.key);
      },
    };
  }
  // A rewrite through temp + rename always gives the file a new inode and mtime.
  const identity = async (key: string) => {
    const info = await stat(join(location, ...key.split(":")), { bigint: true });
    return `${info.ino}:${info.mtimeNs}`;
  };
  const watched = ["jobs:j1", "batches:j1:000001"];
  const before = await Promise.all(watched.map(identity));
  const listed = async () => new Set(await readdir(join(location, "batches", "j1")));
  const existing = await listed();
  return {
    async touched() {
      const after = await Promise.all(watched.map(identity));
      const rewritten = watched.filter((_, i) => after[i] !== before[i]);
      const created = [...(await listed())].filter((n) => !existing.has(n)).map((n) => `batches:j1:${n}`);
      return [...rewritten, ...created];
    },
  };
}
