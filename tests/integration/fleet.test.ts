/**
 * Many runners on many machines, one job, one Postgres: `mozart run --submit`, then `mozart
 * worker` processes drain it. Real processes against a throw-away cluster (tests/pg-cluster.ts),
 * one per file, each test in its own database: four workers with concurrency 2 each drain 200
 * batches exactly once while a dashboard in a fifth process shows them; a rate limit on one
 * worker holds all four; `pause` and `resume --submit` from another process steer every worker;
 * a missing or wrong URL is one clear error and the URL's password never reaches the state, the
 * logs, the registry or --json output.
 */
import { describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { testEnv, MAIN } from "../helpers.ts";
import { freePort } from "../pg-cluster.ts";
import { expectExactlyOnce, fleet, fleetSuite, waitFor } from "./fleet-helpers.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "../../src/state/drivers/postgres-schema.ts";

const pg = fleetSuite();
const { track } = pg;

describe("worker fleet on Postgres", () => {
  test("four workers, concurrency 2 each, drain a 200-batch job exactly once; a dashboard in a fifth process shows all four runners", async () => {
    const f = track(await fleet(pg.cluster, { batches: 200, concurrency: 2, sleep: 0.15 }));
    await f.submit();
    expect((await f.withStore((s) => s.getJob("fleet")))?.status).toBe("pending");

    // The dashboard runs with its own MOZART_HOME: it finds the job through the database alone.
    const port = await freePort();
    const dash = spawn(process.execPath, [MAIN, "dashboard", "--port", String(port)], { env: testEnv({ ...f.env, MOZART_HOME: join(f.box.dir, "dash-home"), MOZART_PROCESS_TAGS: f.box.tag }), stdio: ["ignore", "pipe", "pipe"] });
    try {
      const api = (path: string) => fetch(`http://127.0.0.1:${port}${path}`).then(async (r) => ({ status: r.status, body: (await r.json().catch(() => null)) as Record<string, unknown> | null }));
      await waitFor("the dashboard to answer", () => api("/health").then((r) => r.status === 200, () => false), 20_000, 100);

      const workers = [1, 2, 3, 4].map((i) => f.worker(i));
      const seen = await waitFor(
        "the dashboard to show four runners",
        async () => {
          const r = await api("/api/jobs/fleet/status");
          const runners = (r.body?.runners ?? []) as Array<{ id: string; pid: number }>;
          return runners.length === 4 ? runners : undefined;
        },
        60_000,
        100,
      );
      expect(new Set(seen.map((r) => r.pid))).toEqual(new Set(workers.map((w) => w.child.pid!)));
      const results = await Promise.all(workers.map((w) => w.done));
      for (const r of results) expect(r.code).toBe(0);
      const listed = await api("/api/jobs");
      expect(((listed.body?.jobs ?? []) as Array<{ job_id: string; status: string }>).find((j) => j.job_id === "fleet")?.status).toBe("completed");
      // The dashboard reads the database through the pool it keeps: listing and a job's status open no connection each time.
      const sessions = async () => Number((await pg.cluster.sql("postgres", "SELECT sessions FROM pg_stat_database WHERE datname = $1", [f.db])).rows[0].sessions);
      const before = await sessions();
      for (let i = 0; i < 6; i++) {
        expect((await api("/api/jobs")).status).toBe(200);
        expect((await api("/api/jobs/fleet/status")).status).toBe(200);
        await Bun.sleep(300); // past the list's 250 ms cache
      }
      await Bun.sleep(300);
      expect((await sessions()) - before).toBeLessThanOrEqual(1);
    } finally {
      dash.kill("SIGTERM");
    }

    const { events } = await expectExactlyOnce(f, 200);
    // Every worker did a share of the work, each with its own runner id.
    const byRunner = new Map<string, number>();
    for (const e of events) if (e.type === "batch_start") byRunner.set(e.runner, (byRunner.get(e.runner) ?? 0) + 1);
    expect(byRunner.size).toBe(4);
    for (const n of byRunner.values()) expect(n).toBeGreaterThan(10);
    const status = JSON.parse((await f.box.exec(["status", "fleet", "--json"], f.env)).stdout);
    expect(status).toMatchObject({ status: "completed", progress: { completed: 200, failed: 0, total: 200 }, attempts: 200 });
    expect(events.filter((e) => e.type === "job_complete")).toHaveLength(1);
    // What ran: every batch's script ran once (no lease was lost, so nothing ran twice).
    const done = f.runs().filter((r) => r.kind === "done");
    expect(done).toHaveLength(200);
    expect(new Set(done.map((r) => r.n)).size).toBe(200);
    // At most 8 batches ran at once (4 workers x 2).
    const timeline = f.runs().sort((a, b) => a.at - b.at);
    let now = 0;
    let peak = 0;
    for (const r of timeline) peak = Math.max(peak, (now += r.kind === "start" ? 1 : -1));
    expect(peak).toBeLessThanOrEqual(8);
    expect(peak).toBeGreaterThanOrEqual(4);
    // worker_setup-less workspaces land under each worker's --dir.
    expect(statSync(join(f.box.dir, "w1", "fleet", "ws")).isDirectory()).toBe(true);
  }, 180_000);

  test("a rate limit on one worker holds all four: no attempt starts inside the hold", async () => {
    const mark = "limited-once";
    const f = track(
      await fleet(pg.cluster, {
        batches: 60,
        concurrency: 2,
        config: { rate_limit: { wait_minutes: 0.06, detection_patterns: ["SIMULATED RATE LIMIT"] } },
        script: `#!/bin/sh
echo "start $MOZART_BATCH_NUM $$ $(date +%s%3N)" >> "$RUNS_LOG"
if [ "$MOZART_BATCH_NUM" -ge 20 ] && mkdir "$RUNS_LOG.${mark}" 2>/dev/null; then echo "SIMULATED RATE LIMIT, slow down" >&2; exit 1; fi
sleep 0.1
echo "done $MOZART_BATCH_NUM $(date +%s%3N)" >> "$RUNS_LOG"
`,
      }),
    );
    await f.submit();
    const workers = [1, 2, 3, 4].map((i) => f.worker(i));
    for (const r of await Promise.all(workers.map((w) => w.done))) expect(r.code).toBe(0);
    const { events } = await expectExactlyOnce(f, 60);
    const holds = events.filter((e) => e.type === "rate_limit_hold");
    expect(holds).toHaveLength(1);
    const hold = holds[0] as Extract<(typeof events)[number], { type: "rate_limit_hold" }>;
    const from = Date.parse(hold.at);
    expect(hold.until - from).toBeGreaterThan(3000);
    // The hold is read before every attempt starts; a start racing the write by a few ms is the
    // only one allowed, and it would be on another runner, not after the hold was seen.
    const starts = events.filter((e) => e.type === "attempt_start").map((e) => Date.parse((e as { at: string }).at));
    const inside = starts.filter((t) => t > from + 50 && t < hold.until);
    expect(inside).toEqual([]);
    // The scripts agree: nothing started between the hold and its end.
    expect(f.runs().filter((r) => r.kind === "start" && r.at > from + 50 && r.at < hold.until)).toEqual([]);
    // All four kept working after the hold.
    const after = new Set(events.filter((e) => e.type === "batch_start" && Date.parse(e.at) >= hold.until).map((e) => (e as { runner: string }).runner));
    expect(after.size).toBe(4);
  }, 180_000);

  test("pause from another process pauses every worker; resume --submit restarts them", async () => {
    // Batches of 0.4 s: after the resume, at least 3 s of work is left, so every worker (polling each second) gets some.
    const f = track(await fleet(pg.cluster, { batches: 80, concurrency: 2, sleep: 0.4 }));
    await f.submit();
    const workers = [1, 2, 3, 4].map((i) => f.worker(i));
    await waitFor("some batches to complete", async () => (await f.completed()) >= 8, 60_000, 100);
    // Another "machine": its own MOZART_HOME, so only the database knows the job.
    const other = { ...f.env, MOZART_HOME: join(f.box.dir, "other-home") };
    const paused = await f.box.exec(["pause", "fleet", "--wait", "--json"], other);
    expect(paused.code).toBe(0);
    expect(JSON.parse(paused.stdout)).toMatchObject({ request: "pause", delivered_to: 4, status: "paused" });
    const at = await f.completed();
    expect(at).toBeLessThan(80);
    // Workers stay, idle: nothing runs while the job is paused.
    await Bun.sleep(1500);
    expect(await f.completed()).toBe(at);
    for (const w of workers) expect(w.endedAt()).toBeUndefined();
    expect(JSON.parse((await f.box.exec(["status", "fleet", "--json"], other)).stdout)).toMatchObject({ status: "paused", stopped_by: { via: "cli" } });

    const resumed = await f.box.exec(["resume", "fleet", "--submit", "--json"], other);
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout).outcome).toBe("submitted");
    for (const r of await Promise.all(workers.map((w) => w.done))) expect(r.code).toBe(0);
    const { events } = await expectExactlyOnce(f, 80);
    // Each worker ran batches again after the resume.
    const resumeAt = events.find((e) => e.type === "job_submitted" && e.seq > 1)!.seq;
    const after = new Set(events.filter((e) => e.type === "batch_start" && e.seq > resumeAt).map((e) => (e as { runner: string }).runner));
    expect(after.size).toBe(4);
    expect(events.filter((e) => e.type === "control" && e.request === "pause").length).toBe(4);
  }, 180_000);

  test("db migrate from many machines at once applies each migration once; db status shows it; a read-only reader creates nothing", async () => {
    const f = track(await fleet(pg.cluster, { batches: 1 }));
    const before = await f.box.exec(["db", "status", "--json"], f.env);
    expect(before.code).toBe(0);
    expect(JSON.parse(before.stdout)).toMatchObject({ version: null, known: SCHEMA_VERSION, pending: MIGRATIONS.map((m) => ({ version: m.version })) });
    const status = await f.box.exec(["status", "fleet"], f.env);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain("job not found");
    expect((await pg.cluster.sql(f.db, "SELECT count(*)::int AS c FROM pg_namespace WHERE nspname = 'mozart'")).rows[0].c).toBe(0);
    const all = await Promise.all([1, 2, 3, 4].map(() => f.box.exec(["db", "migrate", "--json"], f.env)));
    for (const r of all) expect(r.code).toBe(0);
    expect(all.map((r) => JSON.parse(r.stdout).applied_now.length).sort()).toEqual([0, 0, 0, MIGRATIONS.length]);
    const after = JSON.parse((await f.box.exec(["db", "status", "--json"], f.env)).stdout);
    expect(after).toMatchObject({ version: SCHEMA_VERSION, pending: [] });
    expect(after.applied).toHaveLength(MIGRATIONS.length);
    expect(JSON.stringify(after)).not.toContain(pg.cluster.password);
    expect((await f.box.exec(["db", "vacuum"], f.env)).code).toBe(2);
  }, 60_000);

  test("a missing or wrong URL is one clear error with the password masked; the URL is never written anywhere", async () => {
    const f = track(await fleet(pg.cluster, { batches: 3, concurrency: 1, sleep: 0 }));
    const missing = await f.box.exec(["run", f.jobFile, "--json"], { MOZART_DATABASE_URL: "" });
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error.message).toContain("MOZART_DATABASE_URL is not set");

    const secret = pg.cluster.password;
    const wrongPassword = pg.cluster.url(f.db, { password: "not-the-password-42" });
    const bad = await f.box.exec(["run", f.jobFile], { MOZART_DATABASE_URL: wrongPassword });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("password authentication failed");
    expect(bad.stderr).toContain("mozart:***@127.0.0.1");
    expect(bad.stderr).not.toContain("not-the-password-42");
    expect(bad.stderr).not.toMatch(/^\s+at /m); // no stack trace

    const refused = await f.box.exec(["worker", "--job", "fleet", "--json"], { MOZART_DATABASE_URL: pg.cluster.url(f.db, { port: await freePort() }) });
    expect(refused.code).toBe(1);
    const err = JSON.parse(refused.stdout).error;
    expect(err.message).toMatch(/cannot connect to postgres:\/\/mozart:\*\*\*@127\.0\.0\.1:\d+/);
    expect(err.message).not.toContain(secret);
    expect(err.hint).toContain("host and port");

    const notUrl = await f.box.exec(["status", "fleet"], { MOZART_DATABASE_URL: `mysql://root:${secret}@db/x` });
    expect(notUrl.code).toBe(1);
    expect(notUrl.stderr).not.toContain(secret);

    // A real run: the password and the URL appear nowhere it wrote.
    const run = await f.box.exec(["run", f.jobFile, "--json"], f.env);
    expect(run.code).toBe(0);
    const doc = JSON.parse(run.stdout);
    expect(doc.status).toBe("completed");
    expect(doc.state).toEqual({ backend: "postgres", location: expect.stringMatching(/^postgres:\/\/127\.0\.0\.1:\d+\/\w+$/) });
    const logs = await f.box.exec(["logs", "fleet", "--json"], f.env);
    const status = await f.box.exec(["status", "fleet", "--json"], f.env);
    const list = await f.box.exec(["list", "--json"], f.env);
    const dump = await pg.cluster.sql(f.db, `SELECT string_agg(t, ' ') AS all FROM (
      SELECT data::text AS t FROM mozart.jobs UNION ALL SELECT data::text FROM mozart.batches UNION ALL SELECT data::text FROM mozart.attempts
      UNION ALL SELECT data::text FROM mozart.events UNION ALL SELECT data::text FROM mozart.runners UNION ALL SELECT convert_from(data, 'UTF8') FROM mozart.blobs WHERE NOT gzip) x`);
    const registry = readdirSync(join(f.box.home, "jobs")).map((n) => readFileSync(join(f.box.home, "jobs", n), "utf8"));
    expect(registry.join("")).toContain('"state_location": "$MOZART_DATABASE_URL"');
    for (const text of [run.stdout, run.stderr, logs.stdout, status.stdout, list.stdout, String(dump.rows[0].all), registry.join("\n")]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(f.url);
    }
  }, 120_000);
});
