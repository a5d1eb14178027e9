/**
 * A throw-away Postgres for tests and benchmarks: initdb and pg_ctl from Debian's `postgresql`
 * package, in a temp folder, on a free loopback port, as a non-root user (Postgres refuses to run
 * as root; as root the cluster runs as the `postgres` user through runuser). Password auth over
 * TCP, so the tests can check what a wrong password says. The cluster is stopped when the test
 * file ends, and by an exit hook if the file crashed first. Nothing here talks to a Postgres it
 * did not start.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

export interface Cluster {
  port: number;
  user: string;
  password: string;
  /** Connection URL of a database (created by createDatabase). */
  url(db: string, extra?: { password?: string; port?: number }): string;
  /** A new empty database; names are made unique per cluster. */
  createDatabase(prefix?: string): Promise<{ name: string; url: string }>;
  /** Runs SQL as the superuser against a database. */
  sql(db: string, text: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** Connections open to the cluster now, per database (pg_stat_activity). */
  connections(db?: string): Promise<number>;
  /** Stops the server (fast shutdown: every connection is cut), optionally waits, starts it again on the same port. */
  restart(opts?: { downMs?: number }): Promise<void>;
  stop(): void;
}

/** The folder holding initdb/pg_ctl: $PG_BIN, then the newest /usr/lib/postgresql/<v>/bin, then PATH. */
export function pgBin(): string | undefined {
  if (process.env.PG_BIN && existsSync(join(process.env.PG_BIN, "pg_ctl"))) return process.env.PG_BIN;
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, "bin", "pg_ctl")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(base, versions[0], "bin");
  }
  const found = spawnSync("sh", ["-c", "command -v pg_ctl"], { encoding: "utf8" }).stdout.trim();
  return found ? join(found, "..") : undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

const RUN_AS = "postgres";

export async function startCluster(): Promise<Cluster> {
  const bin = pgBin();
  if (!bin) throw new Error("Postgres binaries not found: install Debian's postgresql package (apt-get install -y postgresql), or set PG_BIN");
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "mozart-pg-"));
  const data = join(dir, "data");
  const user = "mozart";
  const password = `pw-${randomBytes(6).toString("hex")}`;
  let uid = -1;
  let gid = -1;
  if (root) {
    const id = spawnSync("id", ["-u", RUN_AS], { encoding: "utf8" });
    if (id.status !== 0) throw new Error(`there is no "${RUN_AS}" user to run Postgres as (Postgres refuses root): useradd --system ${RUN_AS}`);
    uid = Number(id.stdout.trim());
    gid = Number(spawnSync("id", ["-g", RUN_AS], { encoding: "utf8" }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  chmodSync(dir, 0o700);
  const pwfile = join(dir, "pw");
  writeFileSync(pwfile, `${password}\n`);
  if (root) chownSync(pwfile, uid, gid);
  const as = (cmd: string, args: string[]) => (root ? execFileSync("runuser", ["-u", RUN_AS, "--", join(bin, cmd), ...args], { stdio: "pipe" }) : execFileSync(join(bin, cmd), args, { stdio: "pipe" }));

  as("initdb", ["-D", data, "-U", user, `--pwfile=${pwfile}`, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C"]);
  const port = await freePort();
  const options = [`-p ${port}`, `-k ${dir}`, "-c listen_addresses=127.0.0.1", "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=300", "-c shared_buffers=64MB"].join(" ");
  const start = () => as("pg_ctl", ["-D", data, "-o", options, "-l", join(dir, "log"), "-w", "-t", "60", "start"]);
  let running = false;
  const stop = (mode = "immediate") => {
    if (!running) return;
    running = false;
    try {
      as("pg_ctl", ["-D", data, "-m", mode, "-w", "-t", "30", "stop"]);
    } catch {
      // already stopped
    }
  };
  start();
  running = true;
  const onExit = () => {
    stop();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);

  const url = (db: string, extra: { password?: string; port?: number } = {}) => `postgres://${user}:${encodeURIComponent(extra.password ?? password)}@127.0.0.1:${extra.port ?? port}/${db}`;
  const sql = async (db: string, text: string, params: unknown[] = []) => {
    const client = new pg.Client({ connectionString: url(db) });
    client.on("error", () => {});
    await client.connect();
    try {
      return await client.query(text, params);
    } finally {
      await client.end().catch(() => {});
    }
  };
  let n = 0;
  return {
    port,
    user,
    password,
    url,
    sql,
    async createDatabase(prefix = "t") {
      const name = `${prefix}_${process.pid}_${++n}`.toLowerCase().replace(/[^a-z0-9_]/g, "_");
      await sql("postgres", `CREATE DATABASE ${name}`);
      return { name, url: url(name) };
    },
    async connections(db) {
      const r = await sql("postgres", "SELECT count(*)::int AS c FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND ($1::text IS NULL OR datname = $1)", [db ?? null]);
      // This query's own connection is excluded by pid; the sql() helper opened it.
      return Number(r.rows[0].c);
    },
    async restart(opts = {}) {
      stop("fast");
      if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
      start();
      running = true;
    },
    stop() {
      process.off("exit", onExit);
      onExit();
    },
  };
}
