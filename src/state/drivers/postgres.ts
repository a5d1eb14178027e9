/**
 * The Postgres state driver: many runners on many machines drain one job through one database.
 * Same records and semantics as the SQLite driver; what Postgres adds:
 * - a step is one call of `mozart.apply_step` (postgres-schema.ts): the fence is checked and
 *   everything written in one statement, under the batch row's lock;
 * - a claim of a pending or abandoned batch takes its row `FOR UPDATE SKIP LOCKED`, so claimers
 *   never queue behind each other; a batch without a record is claimed by one INSERT … ON
 *   CONFLICT DO NOTHING, which exactly one claimer wins;
 * - lease changes (join, heartbeat, leave) hold a per-job advisory lock, so an exclusive join
 *   cannot race another;
 * - a dropped connection (a database restart, a failover) is retried with backoff for a while,
 *   said once in the log, and steps carry an id so one retried after an unknown outcome is not
 *   applied twice.
 *
 * `location` is the connection URL, or `$NAME` for the environment variable holding it. The URL
 * is never stored, logged or returned: `store.location` is `postgres://host:port/database`, and
 * errors show the URL with its password masked.
 *
 * Why `pg` directly rather than db0's postgresql connector: that connector keeps one lazily made
 * client for the life of the process and attaches no 'error' listener, so a database restart
 * either crashes the process (an unhandled 'error' event) or leaves every later query failing on
 * a dead client; it has no way to hold one connection for a transaction while other queries of
 * the same process go on, which leases and claims need. pg's Pool gives both.
 */
import { randomUUID } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { StoredEvent } from "../events.ts";
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
  leaseAlive,
  addSummaryRow,
  withLedger,
  type DriverOptions,
} from "../driver.ts";
import { checkSpend, emptyTotals, roundUsd } from "../spend.ts";
import type { BatchRecord, Claim, ControlRecord, Hold, JobRecord, JobSummary, LeaveOutcome, RemoteBatch, RunnerLease, SpendRecord, SpendTotals, StateStore, Step, UpdateResult } from "../types.ts";
import { LOCK_CLASS, MIGRATION_LOCK_KEY, MIGRATIONS, READABLE, SCHEMA_VERSION } from "./postgres-schema.ts";

type Pg = typeof import("pg");
type PoolClient = import("pg").PoolClient;
type Pool = import("pg").Pool;
type Queryable = Pick<PoolClient, "query">;

/** How long a call keeps retrying a lost connection before it gives up. */
const RECONNECT_MS = 120_000;
/** Connections one process opens at most (a runner's steps, its control tick, output). */
const POOL_SIZE = 4;

/** The URL from `$NAME` or as given; never returned, logged or stored. */
export function resolveUrl(location: string, env: Record<string, string | undefined>): string {
  const fail = (message: string, hint?: string) => createError("postgres", message, hint);
  let url = location;
  if (location.startsWith("$")) {
    const name = location.slice(1);
    url = env[name] ?? "";
    if (!url.trim()) {
      throw fail(`${name} is not set: it must hold the Postgres connection URL of the job's state`, `export ${name}=postgres://USER:PASSWORD@HOST:5432/DATABASE (or name another variable with state_url_env)`);
    }
  }
  if (!/^postgres(?:ql)?:\/\//i.test(url.trim())) {
    throw fail(`${location.startsWith("$") ? location.slice(1) : "the state URL"} is not a Postgres URL (${maskUrl(url)})`, "use postgres://USER:PASSWORD@HOST:5432/DATABASE");
  }
  return url.trim();
}

/** The URL with its password replaced by ***, for error messages. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    for (const key of [...u.searchParams.keys()]) if (/pass|secret|key/i.test(key)) u.searchParams.set(key, "***");
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]*):[^@]*@/, "//$1:***@").replace(/(password=)[^&\s]+/gi, "$1***");
  }
}

/** Where a URL points, with no user, password or parameters: what `store.location` shows. */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `postgres://${u.hostname || "localhost"}${u.port ? `:${u.port}` : ""}${u.pathname && u.pathname !== "/" ? u.pathname : "/"}`;
  } catch {
    return "postgres://(unparsable URL)";
  }
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "57P01", "57P02", "57P03", "53300"]);

/** A dropped or refused connection (worth retrying), as opposed to a query the database rejected. */
export function isConnectionError(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === "string" ? err.code : "";
  if (CONNECTION_CODES.has(code) || code.startsWith("08")) return true;
  return /Connection terminated|connection error|terminating connection|Client has encountered|timeout exceeded when trying to connect|the database system is (?:starting up|shutting down)|Client was closed/i.test(String(err?.message ?? ""));
}

async function loadPg(): Promise<Pg> {
  const mod = (await import("pg")) as Pg & { default?: Pg };
  return mod.default ?? mod;
}

function newPool(pg: Pg, url: string, max = POOL_SIZE): Pool {
  const pool = new pg.Pool({ connectionString: url, max, idleTimeoutMillis: 10_000, connectionTimeoutMillis: 10_000, application_name: "mozart" });
  // An idle connection cut by the server (a restart) must not crash the process.
  pool.on("error", () => {});
  return pool;
}

/** Per-job key of the advisory lock that lease changes hold. */
const leaseLock = "SELECT pg_advisory_xact_lock($1, hashtext($2))";

/** Applies the migrations this version knows and the database lacks, under the migration lock. */
async function migrate(client: Queryable): Promise<{ applied: number[]; version: number }> {
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1, $2)", [LOCK_CLASS, MIGRATION_LOCK_KEY]);
    await client.query("CREATE SCHEMA IF NOT EXISTS mozart");
    await client.query("CREATE TABLE IF NOT EXISTS mozart.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
    const done = new Set((await client.query("SELECT version FROM mozart.migrations")).rows.map((r: { version: number }) => Number(r.version)));
    const newest = Math.max(0, ...done);
    if (newest > SCHEMA_VERSION) {
      await client.query("ROLLBACK");
      return { applied: [], version: newest };
    }
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query("INSERT INTO mozart.migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query("COMMIT");
    return { applied, version: Math.max(newest, ...applied) };
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}

async function schemaVersion(client: Queryable): Promise<number | null> {
  const exists = (await client.query("SELECT to_regclass('mozart.migrations') IS NOT NULL AS ok")).rows[0] as { ok: boolean };
  if (!exists.ok) return null;
  const r = (await client.query("SELECT coalesce(max(version), 0) AS v FROM mozart.migrations")).rows[0] as { v: number };
  return Number(r.v);
}

export interface DbStatus {
  location: string;
  version: number | null;
  known: number;
  pending: Array<{ version: number; name: string }>;
  applied: Array<{ version: number; name: string; applied_at: string }>;
}

/** `mozart db migrate` / `mozart db status`: the schema's state, and bringing it up to date. */
export async function database(location: string, env: Record<string, string | undefined>) {
  const url = resolveUrl(location, env);
  const safe = describeUrl(url);
  const pg = await loadPg();
  const wrap = (what: string, e: unknown) => createError("postgres", `cannot ${what} ${maskUrl(url)}: ${scrub((e as Error).message, url)}`, connectHint(e));
  const withClient = async <T>(what: string, fn: (c: PoolClient) => Promise<T>): Promise<T> => {
    const pool = newPool(pg, url, 1);
    try {
      const c = await pool.connect().catch((e: unknown) => {
        throw wrap("connect to", e);
      });
      try {
        return await fn(c);
      } catch (e) {
        if ((e as Error).name === "MozartError") throw e;
        throw wrap(what, e);
      } finally {
        c.release();
      }
    } finally {
      await pool.end().catch(() => {});
    }
  };
  const status = (c: PoolClient): Promise<DbStatus> =>
    schemaVersion(c).then(async (version) => {
      const applied = version === null ? [] : ((await c.query("SELECT version, name, applied_at FROM mozart.migrations ORDER BY version")).rows as Array<{ version: number; name: string; applied_at: Date }>);
      const have = new Set(applied.map((a) => Number(a.version)));
      return {
        location: safe,
        version,
        known: SCHEMA_VERSION,
        pending: MIGRATIONS.filter((m) => !have.has(m.version)).map((m) => ({ version: m.version, name: m.name })),
        applied: applied.map((a) => ({ version: Number(a.version), name: a.name, applied_at: new Date(a.applied_at).toISOString() })),
      };
    });
  return {
    location: safe,
    status: () => withClient("read the schema of", status),
    migrate: () =>
      withClient("migrate", async (c) => {
        const r = await migrate(c);
        if (r.version > SCHEMA_VERSION) throw createError("postgres", `${safe} has schema version ${r.version}, newer than this Mozart knows (${SCHEMA_VERSION})`, "upgrade Mozart");
        return { ...(await status(c)), applied_now: r.applied };
      }),
  };
}

/** Removes the URL and its password from a message that may quote them. */
function scrub(message: string, url: string): string {
  let out = message.split(url).join(maskUrl(url));
  try {
    const pw = decodeURIComponent(new URL(url).password);
    if (pw) out = out.split(pw).join("***");
  } catch {
    // not parsable: nothing more to hide
  }
  return out;
}

function connectHint(e: unknown): string | undefined {
  const err = e as { code?: string; message?: string };
  if (err.code === "28P01" || /password authentication failed/i.test(err.message ?? "")) return "check the user name and password in the URL";
  if (err.code === "3D000") return "create the database first (createdb), or fix its name in the URL";
  if (err.code === "ECONNREFUSED" || err.code === "ENOTFOUND") return "check the host and port in the URL, and that the database server is running";
  return undefined;
}

export default defineDriver(async (opts: DriverOptions) => {
  const readOnly = Boolean(opts.readOnly);
  const env = opts.env ?? process.env;
  const url = resolveUrl(opts.location, env);
  const safe = describeUrl(url);
  const warn = opts.warn ?? (() => {});
  const fail = (message: string, hint?: string) => createError("postgres", message, hint);
  const outputDir = opts.outputDir ?? join(tmpdir(), "mozart-output");
  const pg = await loadPg();
  const pool = newPool(pg, url);

  // --- Connection and schema -------------------------------------------------------------------
  let first: PoolClient;
  try {
    first = await pool.connect();
  } catch (e) {
    await pool.end().catch(() => {});
    throw fail(`cannot connect to ${maskUrl(url)}: ${scrub((e as Error).message, url)}`, connectHint(e));
  }
  let identity = "";
  try {
    let version = await schemaVersion(first);
    if (!readOnly && (version === null || version < SCHEMA_VERSION)) version = (await migrate(first)).version;
    if (version === null) throw fail(`there is no state in ${safe}: the database has no Mozart schema`, "run a job first (mozart run <job file>), or create the schema: mozart db migrate");
    if (version > SCHEMA_VERSION) throw fail(`${safe} was written by a newer Mozart (schema ${version}, this one knows ${SCHEMA_VERSION})`, "upgrade Mozart to use it");
    identity = String((await first.query("SELECT value FROM mozart.meta WHERE key = 'id'")).rows[0]?.value ?? "");
  } catch (e) {
    first.release();
    await pool.end().catch(() => {});
    if ((e as Error).name === "MozartError") throw e;
    throw fail(`cannot open the state in ${safe}: ${scrub((e as Error).message, url)}`);
  }
  first.release();

  // --- Retries across a dropped connection ----------------------------------------------------
  let outageSince: number | undefined;
  const guard = async <T>(what: string, fn: (retry: boolean) => Promise<T>): Promise<T> => {
    const start = Date.now();
    let delay = 100;
    for (let attempt = 0; ; attempt++) {
      try {
        const out = await fn(attempt > 0);
        if (outageSince !== undefined) {
          warn(`state (postgres): reconnected to ${safe} after ${((Date.now() - outageSince) / 1000).toFixed(1)}s`);
          outageSince = undefined;
        }
        return out;
      } catch (e) {
        if ((e as Error).name === "MozartError") throw e;
        if (!isConnectionError(e) || Date.now() - start > RECONNECT_MS) {
          throw fail(`cannot ${what} in ${safe}: ${scrub((e as Error).message, url)}`, isConnectionError(e) ? "the database stayed unreachable; once it is back, `mozart resume` the job" : undefined);
        }
        if (outageSince === undefined) {
          outageSince = Date.now();
          warn(`state (postgres): lost the connection to ${safe} (${scrub((e as Error).message, url)}); reconnecting with backoff`);
        }
        await new Promise((r) => setTimeout(r, delay + Math.floor(Math.random() * delay)));
        delay = Math.min(delay * 2, 3000);
      }
    }
  };
  const q = (text: string, values: unknown[] = [], name?: string) => pool.query(name ? { name, text, values } : { text, values });
  /** One transaction on one connection; a connection that broke is destroyed, not reused. */
  const tx = async <T>(fn: (c: PoolClient) => Promise<T>): Promise<T> => {
    if (readOnly) throw fail("the store was opened read-only");
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      const out = await fn(c);
      await c.query("COMMIT");
      c.release();
      return out;
    } catch (e) {
      if (isConnectionError(e)) c.release(e as Error);
      else {
        await c.query("ROLLBACK").catch(() => {});
        c.release();
      }
      throw e;
    }
  };
  const writable = () => {
    if (readOnly) throw fail("the store was opened read-only");
  };

  /** Values pg cannot store in jsonb (NUL characters in output) are replaced, not refused. */
  const json = (value: unknown) => JSON.stringify(value, (_k, v: unknown) => (typeof v === "string" && v.includes("\u0000") ? v.replaceAll("\u0000", "\ufffd") : v));
  const parseBatch = (row: { n: number | string; data: unknown } | undefined, jobId: string): BatchRecord | null =>
    row ? checkBatch(row.data, Number(row.n), `job ${JSON.stringify(jobId)} in ${safe}`) : null;

  const liveOf = (rows: Array<{ data: unknown }>, now: number): RunnerLease[] => rows.map((r) => r.data as RunnerLease).filter((l) => l && typeof l === "object" && leaseAlive(l, now));
  const live = async (c: Queryable, jobId: string, now: number) => liveOf((await c.query({ name: "mz_runners", text: "SELECT data FROM mozart.runners WHERE job = $1", values: [jobId] })).rows, now);
  const releaseOf = (c: Queryable, jobId: string, ids: string[]) =>
    ids.length
      ? c.query(
          `UPDATE mozart.batches SET status = 'pending', owner = NULL, data = data || '{"status":"pending","owner":null}'::jsonb
           WHERE job = $1 AND status = 'in_progress' AND owner = ANY($2) AND jsonb_typeof(data) = 'object'`,
          [jobId, ids],
        )
      : Promise.resolve();
  /** Drops expired runner leases and hands their batches back (keeping `running`, for leftovers). */
  const reap = async (c: Queryable, jobId: string, now: number) => {
    const rows = (await c.query("SELECT id, data FROM mozart.runners WHERE job = $1", [jobId])).rows as Array<{ id: string; data: RunnerLease }>;
    const dead = rows.filter((r) => !r.data || !leaseAlive(r.data, now)).map((r) => r.id);
    if (!dead.length) return;
    await c.query("DELETE FROM mozart.runners WHERE job = $1 AND id = ANY($2)", [jobId, dead]);
    await releaseOf(c, jobId, dead);
  };

  const summaryOf = async (c: Queryable, jobId: string, total: number): Promise<JobSummary> => {
    const s = emptySummary(total);
    const rows = (
      await c.query({
        name: "mz_summary",
        text: `SELECT CASE WHEN ${READABLE} THEN status ELSE 'damaged' END AS st, count(*)::integer AS c, sum(attempts)::float8 AS a,
                 sum(waits)::float8 AS w, sum(cost)::float8 AS cost, sum(duration)::float8 AS d
               FROM mozart.batches WHERE job = $1 AND n BETWEEN 1 AND $2 GROUP BY st`,
        values: [jobId, total],
      })
    ).rows as Array<{ st: string; c: number; a: number; w: number; cost: number; d: number }>;
    for (const r of rows) addSummaryRow(s, r);
    return s;
  };

  const ledgerTotals = async (c: Queryable, jobId: string): Promise<SpendTotals> => {
    const r = (
      await c.query({
        name: "mz_spend",
        text: `SELECT count(*)::integer AS c, sum(usd)::float8 AS usd, sum(t_in)::float8 AS i, sum(t_out)::float8 AS o, sum(t_cr)::float8 AS cr,
                 sum(t_cw5)::float8 AS cw5, sum(t_cw1)::float8 AS cw1 FROM mozart.spend WHERE job = $1`,
        values: [jobId],
      })
    ).rows[0] as Record<string, number | null> | undefined;
    const t = emptyTotals();
    if (!r || !Number(r.c)) return t;
    t.entries = Number(r.c);
    t.usd = roundUsd(Number(r.usd ?? 0));
    t.tokens = { input: Number(r.i ?? 0), output: Number(r.o ?? 0), cache_read: Number(r.cr ?? 0), cache_write_5m: Number(r.cw5 ?? 0), cache_write_1h: Number(r.cw1 ?? 0) };
    return t;
  };

  const stepArgs = (jobId: string, step: Step, now: number, sid: string | null) => {
    const blobs = (step.blobs ?? []).map((text) => ({ hash: blobHash(text), ...encodeBlob(text) }));
    const { blobs: _texts, ...rest } = step;
    return [jobId, json(rest), now, new Date(now).toISOString(), sid, blobs.map((b) => b.hash), blobs.map((b) => b.gzip), blobs.map((b) => Buffer.from(b.data))];
  };
  const APPLY = "SELECT mozart.apply_step($1, $2::jsonb, $3, $4, $5, $6::text[], $7::boolean[], $8::bytea[]) AS seq";

  const putBlob = async (text: string): Promise<string> => {
    const hash = blobHash(text);
    if (text.length > COMPRESS_OVER && (await q("SELECT 1 FROM mozart.blobs WHERE hash = $1", [hash])).rowCount) return hash;
    const { data, gzip } = encodeBlob(text);
    await q("INSERT INTO mozart.blobs (hash, gzip, data) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING", [hash, gzip, Buffer.from(data)]);
    return hash;
  };

  const store: StateStore = {
    kind: "postgres",
    location: safe,
    readOnly,

    async getJob(jobId) {
      const row = (await guard("read the job record", () => q("SELECT data FROM mozart.jobs WHERE job = $1", [jobId], "mz_job"))).rows[0] as { data: unknown } | undefined;
      if (!row) return null;
      return checkJob(row.data, jobId, `${safe}, table mozart.jobs`, "postgres");
    },
    async putJob(job) {
      writable();
      await guard("save the job record", () => q("INSERT INTO mozart.jobs (job, data) VALUES ($1, $2::jsonb) ON CONFLICT (job) DO UPDATE SET data = EXCLUDED.data", [job.job_id, json(job)]));
    },
    async listJobIds() {
      return (await guard("list the jobs", () => q(`SELECT job FROM mozart.jobs ORDER BY job COLLATE "C"`))).rows.map((r: { job: string }) => r.job);
    },

    async getBatch(jobId, n) {
      return parseBatch((await guard("read a batch record", () => q("SELECT n, data FROM mozart.batches WHERE job = $1 AND n = $2", [jobId, n], "mz_batch"))).rows[0], jobId);
    },
    async listBatches(jobId, o = {}) {
      const statuses = o.statuses?.length ? o.statuses : null;
      const rows = (
        await guard("list batch records", () =>
          q("SELECT n, data FROM mozart.batches WHERE job = $1 AND n >= $2 AND ($3::text[] IS NULL OR status = ANY($3)) ORDER BY n LIMIT $4", [jobId, o.from ?? 0, statuses, o.limit ?? null], "mz_list"),
        )
      ).rows;
      return rows.map((r) => parseBatch(r, jobId)!);
    },
    async putBatch(jobId, batch) {
      writable();
      await guard("save a batch record", () => q("SELECT mozart.put_batch($1, $2::jsonb)", [jobId, json(batch)]));
    },
    async summary(jobId, total) {
      return guard("count the batch records", async () => withLedger(await summaryOf(pool, jobId, total), await ledgerTotals(pool, jobId)));
    },

    async listAttempts(jobId, n) {
      const rows = (await guard("list attempt records", () => q("SELECT data FROM mozart.attempts WHERE job = $1 AND n = $2 ORDER BY attempt", [jobId, n]))).rows as Array<{ data: unknown }>;
      return rows.map((r, i) => checkAttempt(r.data, n, `attempt ${i + 1} of batch ${n} of job ${JSON.stringify(jobId)} in ${safe}`));
    },

    async spendTotals(jobId) {
      return guard("sum the cost ledger", () => ledgerTotals(pool, jobId));
    },
    async listSpend(jobId, o = {}) {
      const rows = (
        await guard("read the cost ledger", () =>
          q("SELECT data FROM mozart.spend WHERE job = $1 AND ($2::integer IS NULL OR n = $2) ORDER BY n, attempt, runner", [jobId, o.batch ?? null]),
        )
      ).rows as Array<{ data: unknown }>;
      return rows.map((r) => checkSpend(r.data)).filter((e): e is SpendRecord => e !== undefined);
    },
    async putRemoteBatch(jobId, rb) {
      writable();
      await guard("save a provider batch", () =>
        q("INSERT INTO mozart.remote_batches (job, key, submitted_at, data) VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (job, key) DO UPDATE SET data = EXCLUDED.data", [jobId, rb.key, rb.submitted_at, json(rb)]),
      );
    },
    async listRemoteBatches(jobId) {
      const rows = (await guard("list provider batches", () => q("SELECT data FROM mozart.remote_batches WHERE job = $1 ORDER BY submitted_at, key", [jobId]))).rows as Array<{ data: RemoteBatch }>;
      return rows.map((r) => r.data).filter((b) => Boolean(b && typeof b === "object" && typeof b.key === "string" && Array.isArray(b.items)));
    },

    async putBlob(text) {
      writable();
      return guard("save a blob", () => putBlob(text));
    },
    async getBlob(hash) {
      const row = (await guard("read a blob", () => q("SELECT gzip, data FROM mozart.blobs WHERE hash = $1", [hash]))).rows[0] as { gzip: boolean; data: Buffer } | undefined;
      return row ? decodeBlob(row.data, row.gzip) : null;
    },

    async commit(jobId, step, now) {
      writable();
      // The id makes a retry after an unknown outcome (the connection dropped mid-call) a no-op.
      const sid = randomUUID();
      const args = stepArgs(jobId, step, now, sid);
      const seq = Number((await guard("record a step", () => q(APPLY, args, "mz_apply"))).rows[0].seq);
      return seq < 0 ? { ok: false, reason: "fenced" } : { ok: true, seq };
    },
    async readEvents(jobId, o = {}) {
      const rows = (await guard("read the event log", () => q("SELECT data FROM mozart.events WHERE job = $1 AND seq > $2 ORDER BY seq LIMIT $3", [jobId, o.after ?? 0, o.limit ?? null], "mz_events"))).rows;
      return rows.map((r: { data: StoredEvent }) => r.data);
    },
    async lastSeq(jobId) {
      return Number((await guard("read the event log", () => q("SELECT coalesce(max(seq), 0) AS s FROM mozart.events WHERE job = $1", [jobId], "mz_lastseq"))).rows[0].s);
    },

    async join(jobId, runner, o) {
      return guard("take the job's lease", () =>
        tx(async (c) => {
          await c.query(leaseLock, [LOCK_CLASS, jobId]);
          await reap(c, jobId, o.now);
          const others = (await live(c, jobId, o.now)).filter((l) => l.id !== runner.id);
          if (others.length && o.exclusive && !o.takeOver) return { ok: false as const, holders: others };
          if (o.takeOver && others.length) {
            const ids = others.map((l) => l.id);
            await c.query("DELETE FROM mozart.runners WHERE job = $1 AND id = ANY($2)", [jobId, ids]);
            await releaseOf(c, jobId, ids);
          }
          await c.query("INSERT INTO mozart.runners (job, id, until, data) VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (job, id) DO UPDATE SET until = EXCLUDED.until, data = EXCLUDED.data", [
            jobId,
            runner.id,
            runner.until,
            json(runner),
          ]);
          return { ok: true as const };
        }),
      );
    },
    async heartbeat(jobId, runnerId, now, ttlMs) {
      return guard("renew the job's lease", () =>
        tx(async (c) => {
          await c.query(leaseLock, [LOCK_CLASS, jobId]);
          const lease = (await c.query("SELECT data FROM mozart.runners WHERE job = $1 AND id = $2", [jobId, runnerId])).rows[0]?.data as RunnerLease | undefined;
          if (!lease || lease.until <= now) {
            if (lease) await c.query("DELETE FROM mozart.runners WHERE job = $1 AND id = $2", [jobId, runnerId]);
            return false;
          }
          const next = { ...lease, until: now + ttlMs, renewed_at: now };
          await c.query("UPDATE mozart.runners SET until = $3, data = $4::jsonb WHERE job = $1 AND id = $2", [jobId, runnerId, next.until, json(next)]);
          await reap(c, jobId, now);
          // Step ids are only needed while a retry of their step is possible.
          await c.query("DELETE FROM mozart.landed WHERE at < $1", [now - 15 * 60_000]);
          return true;
        }),
      );
    },
    async runners(jobId, now) {
      return guard("read the runner leases", () => live(pool, jobId, now));
    },
    async claim(jobId, runnerId, n, o) {
      writable();
      let retry = false;
      const takeable = (existing: BatchRecord, ownerLease: RunnerLease | null): boolean => {
        if (existing.damaged) return false;
        if (existing.status === "pending") return true;
        if (existing.status !== "in_progress" || !existing.owner) return false;
        // A claim whose answer was lost with the connection: this runner never started it.
        if (existing.owner === runnerId) return retry;
        return !(ownerLease && leaseAlive(ownerLease, o.now));
      };
      const claimed = (b: BatchRecord): BatchRecord => {
        b.status = "in_progress";
        b.owner = runnerId;
        b.token = (b.token ?? 0) + 1;
        if (o.running) b.running = o.running(b);
        return b;
      };
      return guard("claim a batch", async (again): Promise<Claim | null> => {
        retry = again;
        // Most claims are of batches nobody has a record of yet: one INSERT, which exactly one claimer wins.
        const fresh = claimed(o.fresh());
        const won = await q(
          `INSERT INTO mozart.batches (job, n, status, owner, token, attempts, waits, cost, duration, data)
           SELECT $1, $3, 'in_progress', $2, $4, $5, $6, $7, $8, $9::jsonb
           WHERE EXISTS (SELECT 1 FROM mozart.runners WHERE job = $1 AND id = $2 AND until > $10)
           ON CONFLICT (job, n) DO NOTHING`,
          [jobId, runnerId, n, fresh.token, fresh.attempts, fresh.rate_limit_waits, fresh.cost_usd, fresh.duration_ms ?? 0, json(fresh), o.now],
          "mz_claim_fresh",
        );
        if (won.rowCount) return { batch: fresh, token: fresh.token };
        const row = (
          await q(
            `SELECT (SELECT until FROM mozart.runners WHERE job = $1 AND id = $2) AS mine, b.n, b.status, b.owner, b.data, r.data AS owner_lease
             FROM (SELECT 1) AS one LEFT JOIN mozart.batches b ON b.job = $1 AND b.n = $3 LEFT JOIN mozart.runners r ON r.job = $1 AND r.id = b.owner`,
            [jobId, runnerId, n],
            "mz_claim_look",
          )
        ).rows[0] as { mine: number | null; n: number | null; status: string | null; owner: string | null; data: unknown; owner_lease: RunnerLease | null };
        if (row.mine === null || Number(row.mine) <= o.now || row.n === null) return null;
        if (!takeable(parseBatch({ n: row.n, data: row.data }, jobId)!, row.owner_lease)) return null;
        return tx(async (c): Promise<Claim | null> => {
          const locked = (
            await c.query(
              `SELECT b.n, b.data, r.data AS owner_lease, (SELECT until FROM mozart.runners WHERE job = $1 AND id = $2) AS mine
               FROM mozart.batches b LEFT JOIN mozart.runners r ON r.job = b.job AND r.id = b.owner
               WHERE b.job = $1 AND b.n = $3 FOR UPDATE OF b SKIP LOCKED`,
              [jobId, runnerId, n],
            )
          ).rows[0] as { n: number; data: unknown; owner_lease: RunnerLease | null; mine: number | null } | undefined;
          if (!locked || locked.mine === null || Number(locked.mine) <= o.now) return null;
          const existing = parseBatch(locked, jobId)!;
          if (!takeable(existing, locked.owner_lease)) return null;
          if (existing.status === "in_progress" && existing.owner && existing.owner !== runnerId) {
            await c.query("DELETE FROM mozart.runners WHERE job = $1 AND id = $2", [jobId, existing.owner]);
          }
          const previous = existing.running && existing.running.runner !== runnerId ? existing.running : undefined;
          const b = claimed(existing);
          await c.query("SELECT mozart.put_batch($1, $2::jsonb)", [jobId, json(b)]);
          return { batch: b, token: b.token, ...(previous ? { previous } : {}) };
        });
      });
    },
    async updateBatch(jobId, n, o, change) {
      writable();
      // Under the batch row's lock, so two runners deciding on one batch take turns. Retried after
      // a lost connection, the decision sees what the first try may have written: a compare-and-set
      // made twice finds its own result and changes nothing.
      return guard("update a batch record", () =>
        tx(async (c): Promise<UpdateResult> => {
          const row = (await c.query("SELECT n, data FROM mozart.batches WHERE job = $1 AND n = $2 FOR UPDATE", [jobId, n])).rows[0] as { n: number; data: unknown } | undefined;
          const current = parseBatch(row, jobId);
          if (o.runner !== undefined) {
            const mine = (await c.query("SELECT until FROM mozart.runners WHERE job = $1 AND id = $2", [jobId, o.runner])).rows[0] as { until: number | string } | undefined;
            if (!mine || Number(mine.until) <= o.now) return { ok: false, reason: "fenced", batch: current };
          }
          const liveIds = new Set((await live(c, jobId, o.now)).map((l) => l.id));
          const step = current?.damaged ? null : change(current, { isLive: (id) => liveIds.has(id) });
          if (!step) return { ok: false, reason: "unchanged", batch: current };
          const seq = Number((await c.query(APPLY, stepArgs(jobId, step, o.now, null))).rows[0].seq);
          return { ok: true, seq, batch: step.batch ?? current };
        }),
      );
    },
    async claimable(jobId, o) {
      return guard("look for claimable batches", async () => {
        const rows = (
          await q(
            `SELECT b.n, b.owner, b.status, r.data AS lease FROM mozart.batches b LEFT JOIN mozart.runners r ON r.job = b.job AND r.id = b.owner
             WHERE b.job = $1 AND b.status IN ('pending', 'in_progress') AND b.n >= $2 ORDER BY b.n LIMIT $3`,
            [jobId, o.from, o.limit * 4],
            "mz_claimable",
          )
        ).rows as Array<{ n: number; owner: string | null; status: string; lease: RunnerLease | null }>;
        return rows
          .filter((r) => r.status === "pending" || (typeof r.owner === "string" && !(r.lease && leaseAlive(r.lease, o.now))))
          .slice(0, o.limit)
          .map((r) => Number(r.n));
      });
    },
    async leave(jobId, runnerId, now, final) {
      writable();
      const sid = randomUUID();
      return guard("release the job's lease", () =>
        tx(async (c): Promise<LeaveOutcome> => {
          await c.query(leaseLock, [LOCK_CLASS, jobId]);
          const landed = (await c.query("SELECT seq FROM mozart.landed WHERE sid = $1", [sid])).rows[0] as { seq: number } | undefined;
          await c.query("DELETE FROM mozart.runners WHERE job = $1 AND id = $2", [jobId, runnerId]);
          await releaseOf(c, jobId, [runnerId]);
          await reap(c, jobId, now);
          const job = (await c.query("SELECT data FROM mozart.jobs WHERE job = $1", [jobId])).rows[0]?.data as JobRecord | undefined;
          const total = Number(job?.total_batches ?? 0);
          const outcome: LeaveOutcome = { others: (await live(c, jobId, now)).length, summary: withLedger(await summaryOf(c, jobId, total), await ledgerTotals(c, jobId)) };
          const step = final?.(outcome);
          if (landed) outcome.seq = Number(landed.seq);
          else if (step) outcome.seq = Number((await c.query(APPLY, stepArgs(jobId, step, now, sid))).rows[0].seq);
          else await c.query("INSERT INTO mozart.landed (sid, at, seq) VALUES ($1, $2, 0)", [sid, now]);
          return outcome;
        }),
      );
    },

    async getControl(jobId) {
      const row = (await guard("read the control record", () => q("SELECT data FROM mozart.control WHERE job = $1", [jobId], "mz_control"))).rows[0] as { data: ControlRecord } | undefined;
      return row ? row.data : null;
    },
    async setControl(jobId, control) {
      writable();
      await guard("save the control record", () =>
        control
          ? q("INSERT INTO mozart.control (job, data) VALUES ($1, $2::jsonb) ON CONFLICT (job) DO UPDATE SET data = EXCLUDED.data", [jobId, json(control)])
          : q("DELETE FROM mozart.control WHERE job = $1", [jobId]),
      );
    },
    async getHold(jobId) {
      const row = (await guard("read the shared hold", () => q("SELECT data FROM mozart.holds WHERE job = $1", [jobId], "mz_hold"))).rows[0] as { data: Hold } | undefined;
      return row ? row.data : null;
    },

    async clearBatches(jobId) {
      await guard("clear the batch records", () =>
        tx(async (c) => {
          for (const table of ["batches", "attempts", "holds", "spend", "remote_batches"]) await c.query(`DELETE FROM mozart.${table} WHERE job = $1`, [jobId]);
        }),
      );
    },
    async resetBatches(jobId, which) {
      return guard("reset batch records", () =>
        tx(async (c) => {
          const filter = "job = $1 AND n >= $2 AND ($3::text IS NULL OR status = $3)";
          const args = [jobId, which.from ?? 0, which.status ?? null];
          // A damaged record goes: the batch is then unrecorded, so pending, and gets a fresh record.
          if (which.damaged) return (await c.query(`DELETE FROM mozart.batches WHERE ${filter} AND NOT ${READABLE}`, args)).rowCount ?? 0;
          const r = await c.query(
            `UPDATE mozart.batches SET status = 'pending', owner = NULL, data = data || '{"status":"pending","owner":null,"error":null}'::jsonb
             WHERE ${filter} AND status <> 'pending' AND ${READABLE}`,
            args,
          );
          return r.rowCount ?? 0;
        }),
      );
    },

    outputPath(jobId, n, attempt, stream) {
      return join(outputDir, encodeJobId(jobId), `${String(n).padStart(6, "0")}-${String(attempt).padStart(4, "0")}.${stream === "stdout" ? "out" : "err"}`);
    },
    async checkIdentity() {
      let now: string | null;
      try {
        now = await guard("check the state's identity", async () => {
          const r = await q("SELECT value FROM mozart.meta WHERE key = 'id'", [], "mz_identity");
          return r.rows[0] ? String(r.rows[0].value) : null;
        });
      } catch (e) {
        if (!/mozart\.meta|does not exist/.test((e as Error).message)) throw e;
        now = null;
      }
      if (now !== identity) {
        throw fail(
          now === null ? `the Mozart schema in ${safe} was deleted while the job ran` : `the Mozart schema in ${safe} was replaced while the job ran`,
          "work recorded since is lost with it; the workspace keeps whatever the batches wrote. Run the job again to start it over.",
        );
      }
    },
    async close() {
      await pool.end().catch(() => {});
    },
  };
  return store;
});
