/**
 * The SQLite state driver (the default): one database file per state folder, WAL mode so any
 * process reads while a runner writes. Every step is one `BEGIN IMMEDIATE` transaction with
 * cached statements; several runner processes serialise on SQLite's write lock. Batch records
 * keep the columns the engine queries (status, owner, token, counters) beside the full record.
 */
import { mkdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { openSqlite, SqliteOpenError, type SqliteDatabase } from "../../runtime/sqlite.ts";
import type { EventPayload, StoredEvent } from "../events.ts";
import { encodeJobId } from "../keys.ts";
import {
  blobHash,
  COMPRESS_OVER,
  checkAttempt,
  checkBatch,
  checkJob,
  createError,
  decodeBlob,
  defineDriver,
  emptySummary,
  encodeBlob,
  laterHold,
  leaseAlive,
  parseJson,
  addSummaryRow,
  withLedger,
  type DriverOptions,
  type SummaryRow,
} from "../driver.ts";
import { checkSpend, emptyTotals, roundUsd } from "../spend.ts";
import type { BatchRecord, Claim, ControlRecord, Hold, JobRecord, JobSummary, LeaveOutcome, RemoteBatch, RunnerLease, SpendRecord, SpendTotals, StateStore, Step, UpdateResult } from "../types.ts";

/** 2 added the cost ledger (spend) and the provider batches (remote_batches). */
const SCHEMA_VERSION = 2;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (job TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
  job TEXT NOT NULL, n INTEGER NOT NULL, status TEXT NOT NULL, owner TEXT, token INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0, waits INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0, duration INTEGER NOT NULL DEFAULT 0,
  data TEXT NOT NULL, PRIMARY KEY (job, n)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_by_status ON batches (job, status, n);
CREATE TABLE IF NOT EXISTS attempts (job TEXT NOT NULL, n INTEGER NOT NULL, attempt INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, n, attempt)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (job TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runners (job TEXT NOT NULL, id TEXT NOT NULL, until INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS control (job TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (job TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, gzip INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spend (
  job TEXT NOT NULL, n INTEGER NOT NULL, attempt INTEGER NOT NULL, runner TEXT NOT NULL, usd REAL NOT NULL,
  t_in INTEGER NOT NULL, t_out INTEGER NOT NULL, t_cr INTEGER NOT NULL, t_cw5 INTEGER NOT NULL, t_cw1 INTEGER NOT NULL,
  data TEXT NOT NULL, PRIMARY KEY (job, n, attempt, runner)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remote_batches (job TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (job, key)) WITHOUT ROWID;
`;

type Row = Record<string, unknown>;

/**
 * SQL: the batch row's record reads back as this row's batch with this row's status (garbage,
 * a truncated record or another batch's record does not). One JSON parse per row: a summary of
 * a million recorded batches stays a few seconds. listBatches() checks the rest (checkBatch).
 */
const READABLE_ROW = "(CASE WHEN json_valid(data) THEN json_extract(data, '$.batch_num', '$.status') = json_array(n, status) ELSE 0 END)";

/** Connections opened by this process, to tell them apart. */
let connections = 0;

export default defineDriver(async (opts: DriverOptions) => {
  const file = resolve(opts.location);
  const readOnly = Boolean(opts.readOnly);
  const fail = (message: string, hint?: string) => createError("sqlite", message, hint);

  if (!readOnly) {
    try {
      mkdirSync(dirname(file), { recursive: true });
    } catch (e) {
      throw fail(`cannot create the state folder ${dirname(file)}: ${(e as Error).message}`, "check that the folder is writable and the disk is not full");
    }
  }
  // An empty file with no write-ahead log beside it is not a new database: a database is never
  // left empty once its tables exist, so its contents were lost (truncated, or copied without
  // its -wal file). Starting the job over on it would silently redo every completed batch.
  const size = statSync(file, { throwIfNoEntry: false })?.size;
  if (size === 0 && !statSync(`${file}-wal`, { throwIfNoEntry: false })?.size) {
    throw fail(`the state database ${file} is empty (0 bytes): the job's records in it were lost`, "restore it from a backup (with its -wal file, if there was one); or move it aside to start the job over");
  }
  let db: SqliteDatabase;
  try {
    db = openSqlite(file, { readOnly });
  } catch (e) {
    if (e instanceof SqliteOpenError && e.reason === "not_a_database") {
      throw fail(`${file} is not a readable SQLite database: it is damaged or was overwritten`, `restore it from a backup, or move it aside to start the job over`);
    }
    if (e instanceof SqliteOpenError && e.reason === "missing") throw fail(`there is no state database at ${file}`, "run the job first: mozart run <job file>");
    throw fail((e as Error).message, readOnly ? undefined : "check that the folder is writable and the disk is not full");
  }

  const hasTable = (name: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(name) !== undefined;
  if (hasTable("unstorage") && !hasTable("jobs")) {
    throw fail(`${file} holds state written by Mozart 0.2, which this version cannot continue`, "finish or abandon that job with Mozart 0.2, or move the file aside to start over");
  }
  if (!readOnly) {
    db.exec(SCHEMA);
    const version = (db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as Row | undefined)?.value;
    if (Number(version) > SCHEMA_VERSION) throw fail(`${file} was written by a newer Mozart (schema ${version})`, "upgrade Mozart to read it");
    // Older databases got the new tables from SCHEMA above.
    if (version === undefined || Number(version) < SCHEMA_VERSION) db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
  }
  const empty = !hasTable("jobs");
  // A reader of a database written before the ledger existed (schema 1) finds no such tables,
  // until a writer of this version opens it.
  let ledgerTables = hasTable("spend");
  const hasLedger = () => ledgerTables || (ledgerTables = hasTable("spend"));
  const identity = (() => {
    const s = statSync(file, { throwIfNoEntry: false });
    return s ? `${s.dev}:${s.ino}` : "";
  })();

  const connection = `${identity}:${++connections}`;
  // Statements are prepared once; a reader of an empty (never written) database answers "nothing".
  const cache = new Map<string, ReturnType<SqliteDatabase["prepare"]>>();
  const q = (sql: string) => {
    let st = cache.get(sql);
    if (!st) {
      st = db.prepare(sql);
      cache.set(sql, st);
    }
    return st;
  };
  const get = (sql: string, ...params: Array<string | number | null | Uint8Array>): Row | undefined => (empty ? undefined : (q(sql).get(...params) as Row | undefined));
  const all = (sql: string, ...params: Array<string | number | null | Uint8Array>): Row[] => (empty ? [] : (q(sql).all(...params) as Row[]));
  const run = (sql: string, ...params: Array<string | number | null | Uint8Array>) => {
    if (readOnly) throw fail("the store was opened read-only");
    return q(sql).run(...params);
  };
  const tx = <T>(fn: () => T): T => {
    if (readOnly) throw fail("the store was opened read-only");
    q("BEGIN IMMEDIATE").run();
    try {
      const out = fn();
      q("COMMIT").run();
      return out;
    } catch (e) {
      try {
        db.exec("ROLLBACK");
      } catch {
        // the transaction is already gone (e.g. the disk filled up)
      }
      throw e;
    }
  };
  /** Driver errors (disk full, locked past the timeout) name the database. */
  const guard = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if ((e as { name?: string }).name === "MozartError") throw e;
      throw fail(`cannot ${what} in ${file}: ${(e as Error).message}`);
    }
  };

  const jobWhere = (jobId: string) => `jobs/${encodeJobId(jobId)}`;
  const parseBatch = (row: Row | undefined, jobId: string): BatchRecord | null => {
    if (!row) return null;
    const n = Number(row.n);
    return checkBatch(parseJson(String(row.data)) ?? { __unreadable: true }, n, `job ${JSON.stringify(jobId)} in ${file}`);
  };

  const writeBatch = (jobId: string, b: BatchRecord) => {
    run(
      "INSERT OR REPLACE INTO batches (job, n, status, owner, token, attempts, waits, cost, duration, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      jobId,
      b.batch_num,
      b.status,
      b.owner ?? null,
      b.token ?? 0,
      b.attempts,
      b.rate_limit_waits,
      b.cost_usd,
      b.duration_ms ?? 0,
      JSON.stringify(b),
    );
  };

  const live = (jobId: string, now: number): RunnerLease[] =>
    all("SELECT data FROM runners WHERE job = ?", jobId)
      .map((r) => parseJson(String(r.data)) as RunnerLease)
      .filter((l) => l && leaseAlive(l, now));

  /** Drops expired runner leases and hands their batches back to pending (keeping `running`, for leftovers). */
  const reap = (jobId: string, now: number): string[] => {
    const dead = all("SELECT id, until, data FROM runners WHERE job = ?", jobId)
      .map((r) => parseJson(String(r.data)) as RunnerLease)
      .filter((l) => !l || !leaseAlive(l, now))
      .map((l) => l?.id)
      .filter((id): id is string => typeof id === "string");
    for (const id of dead) {
      run("DELETE FROM runners WHERE job = ? AND id = ?", jobId, id);
      for (const row of all("SELECT n, data FROM batches WHERE job = ? AND status = 'in_progress' AND owner = ?", jobId, id)) {
        const b = parseBatch(row, jobId);
        if (!b) continue;
        b.status = "pending";
        b.owner = null;
        writeBatch(jobId, b);
      }
    }
    return dead;
  };

  const nextSeq = (jobId: string): number => Number(get("SELECT coalesce(max(seq), 0) AS s FROM events WHERE job = ?", jobId)?.s ?? 0) + 1;
  const appendEvents = (jobId: string, events: EventPayload[], now: number): number => {
    let seq = nextSeq(jobId) - 1;
    const at = new Date(now).toISOString();
    for (const e of events) {
      seq++;
      run("INSERT INTO events (job, seq, data) VALUES (?, ?, ?)", jobId, seq, JSON.stringify({ seq, at, job_id: jobId, ...e }));
    }
    return seq;
  };

  const summaryOf = (jobId: string, total: number): JobSummary => {
    const s = emptySummary(total);
    // A row whose record does not read back (garbage, truncated, another batch's) counts as
    // damaged, whatever its status column says: never as completed.
    for (const r of all(
      `SELECT CASE WHEN ${READABLE_ROW} THEN status ELSE 'damaged' END AS st, count(*) AS c, sum(attempts) AS a, sum(waits) AS w, sum(cost) AS cost, sum(duration) AS d FROM batches WHERE job = ? AND n BETWEEN 1 AND ? GROUP BY st`,
      jobId,
      total,
    ))
      addSummaryRow(s, r as unknown as SummaryRow);
    return s;
  };

  const ledgerTotals = (jobId: string): SpendTotals => {
    const t = emptyTotals();
    if (!hasLedger()) return t;
    const r = get("SELECT count(*) AS c, sum(usd) AS usd, sum(t_in) AS i, sum(t_out) AS o, sum(t_cr) AS cr, sum(t_cw5) AS cw5, sum(t_cw1) AS cw1 FROM spend WHERE job = ?", jobId);
    if (!r || !Number(r.c)) return t;
    t.entries = Number(r.c);
    t.usd = roundUsd(Number(r.usd ?? 0));
    t.tokens = { input: Number(r.i ?? 0), output: Number(r.o ?? 0), cache_read: Number(r.cr ?? 0), cache_write_5m: Number(r.cw5 ?? 0), cache_write_1h: Number(r.cw1 ?? 0) };
    return t;
  };
  const writeSpend = (jobId: string, e: SpendRecord) => {
    const t = e.tokens;
    run(
      "INSERT OR REPLACE INTO spend (job, n, attempt, runner, usd, t_in, t_out, t_cr, t_cw5, t_cw1, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      jobId,
      e.batch_num,
      e.attempt,
      e.runner,
      e.usd,
      t.input,
      t.output,
      t.cache_read,
      t.cache_write_5m,
      t.cache_write_1h,
      JSON.stringify(e),
    );
  };

  const putBlob = (text: string): string => {
    const hash = blobHash(text);
    // Looked up first only when compressing it would cost something.
    if (text.length > COMPRESS_OVER && get("SELECT 1 AS x FROM blobs WHERE hash = ?", hash)) return hash;
    const { data, gzip } = encodeBlob(text);
    run("INSERT OR IGNORE INTO blobs (hash, gzip, data) VALUES (?, ?, ?)", hash, gzip ? 1 : 0, data);
    return hash;
  };

  const applyStep = (jobId: string, step: Step, now: number): number => {
    for (const text of step.blobs ?? []) putBlob(text);
    if (step.batch) writeBatch(jobId, step.batch);
    for (const e of step.spend ?? []) writeSpend(jobId, e);
    if (step.attempt) run("INSERT OR REPLACE INTO attempts (job, n, attempt, data) VALUES (?, ?, ?, ?)", jobId, step.attempt.batch_num, step.attempt.attempt, JSON.stringify(step.attempt));
    if (step.clearHold !== undefined) {
      const current = get("SELECT data FROM holds WHERE job = ?", jobId);
      const hold = current ? (parseJson(String(current.data)) as Hold) : null;
      if (hold && !(hold.until > step.clearHold)) run("DELETE FROM holds WHERE job = ?", jobId);
    }
    if (step.hold) {
      const current = get("SELECT data FROM holds WHERE job = ?", jobId);
      const hold = laterHold(current ? (parseJson(String(current.data)) as Hold) : null, step.hold);
      run("INSERT OR REPLACE INTO holds (job, data) VALUES (?, ?)", jobId, JSON.stringify(hold));
    }
    if (step.job) {
      const row = get("SELECT data FROM jobs WHERE job = ?", jobId);
      const current = row ? parseJson(String(row.data)) : undefined;
      // A damaged record is left as it is for repair, not half-overwritten.
      if (current && typeof current === "object" && !Array.isArray(current)) {
        const job = { ...(current as JobRecord), ...step.job, updated_at: new Date(now).toISOString() };
        run("INSERT OR REPLACE INTO jobs (job, data) VALUES (?, ?)", jobId, JSON.stringify(job));
      }
    }
    return step.events?.length ? appendEvents(jobId, step.events, now) : nextSeq(jobId) - 1;
  };

  const store: StateStore = {
    kind: "sqlite",
    location: file,
    readOnly,

    async getJob(jobId) {
      const row = get("SELECT data FROM jobs WHERE job = ?", jobId);
      if (!row) return null;
      const value = parseJson(String(row.data));
      return checkJob(value === undefined ? { __unreadable: true } : value, jobId, `${file}, table jobs`, "sqlite");
    },
    async putJob(job) {
      guard("save the job record", () => run("INSERT OR REPLACE INTO jobs (job, data) VALUES (?, ?)", job.job_id, JSON.stringify(job)));
    },
    async listJobIds() {
      return all("SELECT job FROM jobs ORDER BY job").map((r) => String(r.job));
    },

    async getBatch(jobId, n) {
      return parseBatch(get("SELECT n, data FROM batches WHERE job = ? AND n = ?", jobId, n), jobId);
    },
    async listBatches(jobId, opts = {}) {
      const statuses = opts.statuses ?? [];
      const filter = statuses.length ? ` AND status IN (${statuses.map(() => "?").join(", ")})` : "";
      const rows = all(`SELECT n, data FROM batches WHERE job = ? AND n >= ?${filter} ORDER BY n LIMIT ?`, jobId, opts.from ?? 0, ...statuses, opts.limit ?? -1);
      return rows.map((r) => parseBatch(r, jobId)!);
    },
    async putBatch(jobId, batch) {
      guard("save a batch record", () => writeBatch(jobId, batch));
    },
    async summary(jobId, total) {
      return withLedger(summaryOf(jobId, total), ledgerTotals(jobId));
    },

    async listAttempts(jobId, n) {
      return all("SELECT data FROM attempts WHERE job = ? AND n = ? ORDER BY attempt", jobId, n).map((r, i) =>
        checkAttempt(parseJson(String(r.data)), n, `attempt ${i + 1} of batch ${n} of ${jobWhere(jobId)} in ${file}`),
      );
    },

    async spendTotals(jobId) {
      return ledgerTotals(jobId);
    },
    async listSpend(jobId, opts = {}) {
      if (!hasLedger()) return [];
      const rows =
        opts.batch === undefined
          ? all("SELECT data FROM spend WHERE job = ? ORDER BY n, attempt", jobId)
          : all("SELECT data FROM spend WHERE job = ? AND n = ? ORDER BY attempt", jobId, opts.batch);
      return rows.map((r) => checkSpend(parseJson(String(r.data)))).filter((e): e is SpendRecord => e !== undefined);
    },
    async putRemoteBatch(jobId, rb) {
      guard("save a provider batch", () => run("INSERT OR REPLACE INTO remote_batches (job, key, data) VALUES (?, ?, ?)", jobId, rb.key, JSON.stringify(rb)));
    },
    async listRemoteBatches(jobId) {
      if (!hasLedger()) return [];
      return all("SELECT data FROM remote_batches WHERE job = ?", jobId)
        .map((r) => parseJson(String(r.data)) as RemoteBatch | undefined)
        .filter((b): b is RemoteBatch => Boolean(b && typeof b === "object" && typeof b.key === "string" && Array.isArray(b.items)))
        .sort((a, b) => (a.submitted_at < b.submitted_at ? -1 : a.submitted_at > b.submitted_at ? 1 : 0));
    },

    async putBlob(text) {
      return guard("save a blob", () => putBlob(text));
    },
    async getBlob(hash) {
      const row = get("SELECT gzip, data FROM blobs WHERE hash = ?", hash);
      return row ? decodeBlob(row.data as Uint8Array, Number(row.gzip) === 1) : null;
    },

    async commit(jobId, step, now) {
      return guard("record a step", () =>
        tx(() => {
          if (step.fence) {
            const f = step.fence;
            const row = get("SELECT b.owner, b.token, r.until FROM batches b LEFT JOIN runners r ON r.job = b.job AND r.id = ? WHERE b.job = ? AND b.n = ?", f.runner, jobId, f.batch);
            if (!row || row.owner !== f.runner || Number(row.token) !== f.token || row.until === null || Number(row.until) <= now) {
              return { ok: false as const, reason: "fenced" as const };
            }
          }
          return { ok: true as const, seq: applyStep(jobId, step, now) };
        }),
      );
    },
    async readEvents(jobId, opts = {}) {
      return all("SELECT data FROM events WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?", jobId, opts.after ?? 0, opts.limit ?? -1).map(
        (r) => parseJson(String(r.data)) as StoredEvent,
      );
    },
    async lastSeq(jobId) {
      return Number(get("SELECT coalesce(max(seq), 0) AS s FROM events WHERE job = ?", jobId)?.s ?? 0);
    },

    async join(jobId, runner, o) {
      return guard("take the job's lease", () =>
        tx(() => {
          reap(jobId, o.now);
          const others = live(jobId, o.now).filter((l) => l.id !== runner.id);
          if (others.length && o.exclusive && !o.takeOver) return { ok: false as const, holders: others };
          if (o.takeOver) {
            for (const other of others) {
              run("DELETE FROM runners WHERE job = ? AND id = ?", jobId, other.id);
            }
            reapBatchesOf(jobId, others.map((l) => l.id));
          }
          run("INSERT OR REPLACE INTO runners (job, id, until, data) VALUES (?, ?, ?, ?)", jobId, runner.id, runner.until, JSON.stringify(runner));
          return { ok: true as const };
        }),
      );
    },
    async heartbeat(jobId, runnerId, now, ttlMs) {
      return guard("renew the job's lease", () =>
        tx(() => {
          const row = get("SELECT data FROM runners WHERE job = ? AND id = ?", jobId, runnerId);
          const lease = row ? (parseJson(String(row.data)) as RunnerLease) : undefined;
          if (!lease || lease.until <= now) {
            if (lease) run("DELETE FROM runners WHERE job = ? AND id = ?", jobId, runnerId);
            return false;
          }
          const next = { ...lease, until: now + ttlMs, renewed_at: now };
          run("UPDATE runners SET until = ?, data = ? WHERE job = ? AND id = ?", next.until, JSON.stringify(next), jobId, runnerId);
          reap(jobId, now);
          return true;
        }),
      );
    },
    async runners(jobId, now) {
      return live(jobId, now);
    },
    async claim(jobId, runnerId, n, o) {
      return guard("claim a batch", () =>
        tx((): Claim | null => {
          const lease = get("SELECT until FROM runners WHERE job = ? AND id = ?", jobId, runnerId);
          if (!lease || Number(lease.until) <= o.now) return null;
          const existing = parseBatch(get("SELECT n, data FROM batches WHERE job = ? AND n = ?", jobId, n), jobId);
          let b: BatchRecord;
          if (!existing) b = o.fresh();
          else if (existing.damaged) return null;
          else if (existing.status === "pending") b = existing;
          else if (existing.status === "in_progress" && existing.owner && existing.owner !== runnerId) {
            const owner = get("SELECT data FROM runners WHERE job = ? AND id = ?", jobId, existing.owner);
            const ownerLease = owner ? (parseJson(String(owner.data)) as RunnerLease) : undefined;
            if (ownerLease && leaseAlive(ownerLease, o.now)) return null;
            if (owner) run("DELETE FROM runners WHERE job = ? AND id = ?", jobId, existing.owner);
            b = existing;
          } else return null;
          const previous = b.running && b.running.runner !== runnerId ? b.running : undefined;
          b.status = "in_progress";
          b.owner = runnerId;
          b.token = (b.token ?? 0) + 1;
          if (o.running) b.running = o.running(b);
          writeBatch(jobId, b);
          return { batch: b, token: b.token, ...(previous ? { previous } : {}) };
        }),
      );
    },
    async updateBatch(jobId, n, o, change) {
      return guard("update a batch record", () =>
        tx((): UpdateResult => {
          const current = parseBatch(get("SELECT n, data FROM batches WHERE job = ? AND n = ?", jobId, n), jobId);
          if (o.runner !== undefined) {
            const lease = get("SELECT until FROM runners WHERE job = ? AND id = ?", jobId, o.runner);
            if (!lease || Number(lease.until) <= o.now) return { ok: false, reason: "fenced", batch: current };
          }
          const liveIds = new Set(live(jobId, o.now).map((l) => l.id));
          const step = current?.damaged ? null : change(current, { isLive: (id) => liveIds.has(id) });
          if (!step) return { ok: false, reason: "unchanged", batch: current };
          const seq = applyStep(jobId, step, o.now);
          return { ok: true, seq, batch: step.batch ?? current };
        }),
      );
    },
    async claimable(jobId, o) {
      const rows = all("SELECT n, owner, status FROM batches WHERE job = ? AND status IN ('pending', 'in_progress') AND n >= ? ORDER BY n LIMIT ?", jobId, o.from, o.limit * 4);
      const liveIds = new Set(live(jobId, o.now).map((l) => l.id));
      return rows
        .filter((r) => r.status === "pending" || (typeof r.owner === "string" && !liveIds.has(r.owner)))
        .slice(0, o.limit)
        .map((r) => Number(r.n));
    },
    async leave(jobId, runnerId, now, final) {
      return guard("release the job's lease", () =>
        tx((): LeaveOutcome => {
          run("DELETE FROM runners WHERE job = ? AND id = ?", jobId, runnerId);
          reapBatchesOf(jobId, [runnerId]);
          reap(jobId, now);
          const job = get("SELECT data FROM jobs WHERE job = ?", jobId);
          const total = job ? Number((parseJson(String(job.data)) as JobRecord).total_batches ?? 0) : 0;
          const outcome: LeaveOutcome = { others: live(jobId, now).length, summary: withLedger(summaryOf(jobId, total), ledgerTotals(jobId)) };
          const step = final?.(outcome);
          if (step) outcome.seq = applyStep(jobId, step, now);
          return outcome;
        }),
      );
    },

    async getControl(jobId) {
      const row = get("SELECT data FROM control WHERE job = ?", jobId);
      return row ? (parseJson(String(row.data)) as ControlRecord) : null;
    },
    async setControl(jobId, control) {
      guard("save the control record", () => {
        if (control) run("INSERT OR REPLACE INTO control (job, data) VALUES (?, ?)", jobId, JSON.stringify(control));
        else run("DELETE FROM control WHERE job = ?", jobId);
      });
    },
    async getHold(jobId) {
      const row = get("SELECT data FROM holds WHERE job = ?", jobId);
      return row ? (parseJson(String(row.data)) as Hold) : null;
    },

    async clearBatches(jobId) {
      guard("clear the batch records", () =>
        tx(() => {
          run("DELETE FROM batches WHERE job = ?", jobId);
          run("DELETE FROM attempts WHERE job = ?", jobId);
          run("DELETE FROM holds WHERE job = ?", jobId);
          run("DELETE FROM spend WHERE job = ?", jobId);
          run("DELETE FROM remote_batches WHERE job = ?", jobId);
        }),
      );
    },
    async resetBatches(jobId, which) {
      return guard("reset batch records", () =>
        tx(() => {
          const rows = which.status
            ? all("SELECT n, data FROM batches WHERE job = ? AND status = ? AND n >= ?", jobId, which.status, which.from ?? 0)
            : all("SELECT n, data FROM batches WHERE job = ? AND n >= ?", jobId, which.from ?? 0);
          let count = 0;
          for (const row of rows) {
            const b = parseBatch(row, jobId)!;
            if (which.damaged && !b.damaged) continue;
            if (!which.damaged && b.damaged) continue;
            if (b.status === "pending" && !b.damaged) continue;
            count++;
            // A damaged record goes: the batch is then unrecorded, so pending, and gets a fresh record.
            if (b.damaged) run("DELETE FROM batches WHERE job = ? AND n = ?", jobId, b.batch_num);
            else writeBatch(jobId, { ...b, status: "pending", owner: null, error: null });
          }
          return count;
        }),
      );
    },

    outputPath(jobId, n, attempt, stream) {
      return join(dirname(file), "output", encodeJobId(jobId), `${String(n).padStart(6, "0")}-${String(attempt).padStart(4, "0")}.${stream === "stdout" ? "out" : "err"}`);
    },
    async checkIdentity() {
      const s = statSync(file, { throwIfNoEntry: false });
      const now = s ? `${s.dev}:${s.ino}` : "";
      if (now !== identity) {
        throw fail(
          s ? `the state database ${file} was replaced while the job ran` : `the state database ${file} was deleted while the job ran`,
          "work recorded since is lost with it; the workspace keeps whatever the batches wrote. Run the job again to start it over.",
        );
      }
    },
    // SQLite's data_version changes on this connection whenever another connection commits; it is
    // this connection's count, so the stamp names the connection too.
    changeStamp() {
      return `${connection}:${String((q("PRAGMA data_version").get() as Row | undefined)?.data_version ?? "")}`;
    },
    async close() {
      cache.clear();
      try {
        db.close();
      } catch {
        // already closed
      }
    },
  };

  /** Hands back the in-progress batches of runners that are gone. */
  function reapBatchesOf(jobId: string, ids: string[]): void {
    for (const id of ids) {
      for (const row of all("SELECT n, data FROM batches WHERE job = ? AND status = 'in_progress' AND owner = ?", jobId, id)) {
        const b = parseBatch(row, jobId)!;
        b.status = "pending";
        b.owner = null;
        writeBatch(jobId, b);
      }
    }
  }

  return store;
});
