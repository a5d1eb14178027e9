/**
 * A worker fleet under failure, against a throw-away Postgres (one per file): workers killed
 * with SIGKILL and replaced, a worker frozen past its lease and thawed, the database restarted
 * under the fleet, and a worker stopped with SIGTERM. Nothing is lost, no completed batch runs
 * again, and a batch is recorded completed exactly once, whatever ran twice.
 */
import { describe, expect, test } from "bun:test";
import { mulberry32 } from "../processes.ts";
import { expectExactlyOnce, fleet, fleetSuite, waitFor } from "./fleet-helpers.ts";
import type { Started } from "./xproc-helpers.ts";

const pg = fleetSuite();
const { track } = pg;

describe("worker fleet under failure", () => {
  test("kill -9 a random worker 10 times and start a new one each time: nothing lost, nothing completed runs again, leases taken over within TTL + 2 s", async () => {
    const seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);
    const random = mulberry32(seed);
    const ttl = 3;
    // Batches long enough that a killed worker almost always dies with a recorded start (starts are written within 250 ms).
    const f = track(await fleet(pg.cluster, { batches: 150, concurrency: 2, sleep: 0.8, ttlSeconds: ttl }));
    await f.submit();
    let next = 1;
    const live: Started[] = [1, 2, 3, 4].map(() => f.worker(next++));
    const kills: Array<{ at: number; runnerPid: number }> = [];
    for (let k = 0; k < 10; k++) {
      // Let work get under way between kills.
      const before = await f.completed();
      await waitFor("progress between kills", async () => (await f.completed()) >= before + 3, 60_000, 50);
      const victim = live.splice(Math.floor(random() * live.length), 1)[0]!;
      victim.child.kill("SIGKILL");
      kills.push({ at: Date.now(), runnerPid: victim.child.pid! });
      await victim.done;
      live.push(f.worker(next++));
    }
    const results = await Promise.all(live.map((w) => w.done));
    for (const r of results) expect(r.code).toBe(0);
    const { events, completeSeq } = await expectExactlyOnce(f, 150);

    // Every batch a killed worker held was started again by another runner within TTL + 2 s.
    const runnerOfPid = new Map<number, string>();
    for (const e of events) if (e.type === "job_start") runnerOfPid.set(Number(e.runner.split("-").at(-2)), e.runner);
    let takenOver = 0;
    for (const kill of kills) {
      const runner = runnerOfPid.get(kill.runnerPid);
      if (!runner) continue;
      // A batch the killed runner started whose next event is another runner's start: it held it when it died.
      for (const start of events.filter((e) => e.type === "batch_start" && e.runner === runner)) {
        const next = events.find((e) => e.seq > start.seq && (e.type === "batch_start" || e.type === "batch_complete" || e.type === "batch_released") && (e as { batch_num: number }).batch_num === (start as { batch_num: number }).batch_num);
        if (next?.type !== "batch_start") continue;
        expect(next.runner).not.toBe(runner);
        expect(Date.parse(next.at) - kill.at).toBeLessThan((ttl + 2) * 1000);
        takenOver++;
      }
    }
    expect(takenOver).toBeGreaterThan(0);

    // What the scripts saw: every batch finished at least once, and none started after it was recorded completed.
    const runs = f.runs();
    expect(new Set(runs.filter((r) => r.kind === "done").map((r) => r.n)).size).toBe(150);
    const completedAt = new Map<number, number>();
    for (const e of events) if (e.type === "batch_complete") completedAt.set(e.batch_num, Date.parse(e.at));
    expect(runs.filter((r) => r.kind === "start" && r.at > completedAt.get(r.n)! + 5)).toEqual([]);
    expect(completeSeq.size).toBe(150);
  }, 300_000);

  test("a worker frozen past its lease: its late completion is refused by the fencing token, and the batch is recorded once", async () => {
    const ttl = 2;
    const f = track(
      await fleet(pg.cluster, {
        batches: 12,
        concurrency: 1,
        ttlSeconds: ttl,
        // Batch 1 is short, so the frozen worker's attempt has finished (unrecorded) when it thaws.
        script: `#!/bin/sh
echo "start $MOZART_BATCH_NUM $$ $(date +%s%3N)" >> "$RUNS_LOG"
if [ "$MOZART_BATCH_NUM" = 1 ]; then sleep 0.8; else sleep 0.3; fi
echo "done $MOZART_BATCH_NUM $(date +%s%3N)" >> "$RUNS_LOG"
`,
      }),
    );
    await f.submit();
    const frozen = f.worker(1);
    // Frozen once its attempt's start is recorded (and before the attempt ends).
    await waitFor("worker 1's attempt on batch 1 to be recorded", async () => (await f.events()).some((e) => e.type === "attempt_start" && e.batch_num === 1), 30_000, 20);
    frozen.child.kill("SIGSTOP");
    const stoppedAt = Date.now();
    const other = f.worker(2);
    // The other worker takes batch 1 over once the frozen one's lease lapsed, and completes it.
    await waitFor("batch 1 to be completed by the other worker", async () => (await f.events()).some((e) => e.type === "batch_complete" && e.batch_num === 1), 30_000, 100);
    expect(Date.now() - stoppedAt).toBeGreaterThan(ttl * 1000 - 200);
    frozen.child.kill("SIGCONT");
    const [a, b] = await Promise.all([frozen.done, other.done]);
    expect(b.code).toBe(0);
    expect(a.code).toBe(0);
    // The thawed worker was told its claim was gone, recorded nothing for batch 1, and went on.
    expect(a.stderr).toMatch(/lost (its claim on batch 1|the job's lease)/);
    const { events } = await expectExactlyOnce(f, 12);
    const starts1 = events.filter((e) => e.type === "batch_start" && e.batch_num === 1) as Array<{ runner: string; seq: number }>;
    expect(new Set(starts1.map((e) => e.runner)).size).toBe(2);
    const frozenRunner = starts1[0]!.runner;
    const ends1 = events.filter((e) => e.type === "attempt_end" && e.batch_num === 1);
    expect(ends1).toHaveLength(1);
    expect(events.filter((e) => e.type === "batch_complete" && e.batch_num === 1)).toHaveLength(1);
    // The frozen worker's attempt did finish (its script wrote "done"): it was the completion refused.
    const done1 = f.runs().filter((r) => r.kind === "done" && r.n === 1);
    expect(done1.length).toBe(2);
    const batch1 = await f.withStore((s) => s.getBatch("fleet", 1));
    expect(batch1).toMatchObject({ status: "completed", attempts: 2 });
    const attempts = await f.withStore((s) => s.listAttempts("fleet", 1));
    expect(attempts.filter((x) => x.runner === frozenRunner && x.decision === "success")).toEqual([]);
  }, 120_000);

  test("Postgres restarts mid-run: workers reconnect with backoff and say so; no batch lost or recorded twice", async () => {
    const f = track(await fleet(pg.cluster, { batches: 80, concurrency: 2, sleep: 0.2, ttlSeconds: 10 }));
    await f.submit();
    const workers = [1, 2, 3].map((i) => f.worker(i));
    await waitFor("work under way", async () => (await f.completed()) >= 10, 60_000, 100);
    await pg.cluster.restart({ downMs: 1500 });
    const results = await Promise.all(workers.map((w) => w.done));
    for (const r of results) expect(r.code).toBe(0);
    await expectExactlyOnce(f, 80);
    const logs = results.map((r) => r.stderr).join("\n");
    expect(logs).toMatch(/lost the connection to postgres:\/\/127\.0\.0\.1:\d+\/\w+ \(.+\); reconnecting with backoff/);
    expect(logs).toMatch(/reconnected to postgres:\/\/127\.0\.0\.1:\d+\/\w+ after \d+\.\ds/);
    expect(logs).not.toContain(pg.cluster.password);
    expect(new Set(f.runs().filter((r) => r.kind === "done").map((r) => r.n)).size).toBe(80);
  }, 180_000);

  test("SIGTERM: a worker finishes its running batches, hands nothing half-done to the state, and exits 0; the job stays queued", async () => {
    const f = track(await fleet(pg.cluster, { batches: 40, concurrency: 2, sleep: 0.6 }));
    await f.submit();
    const w = f.worker(1, ["--grace-seconds", "10"]);
    await waitFor("two batches running", () => f.runs().filter((r) => r.kind === "start").length >= 2, 30_000, 20);
    w.child.kill("SIGTERM");
    const r = await w.done;
    expect(r.code).toBe(0);
    const job = await f.withStore((s) => s.getJob("fleet"));
    expect(job?.status).toBe("pending");
    const summary = await f.withStore((s) => s.summary("fleet", 40));
    expect(summary.in_progress).toBe(0);
    expect(summary.completed).toBeGreaterThanOrEqual(2);
    // What was running finished within the grace period.
    const runs = f.runs();
    expect(runs.filter((x) => x.kind === "done").length).toBe(runs.filter((x) => x.kind === "start").length);
    // A grace of 0 hands running batches back at once instead.
    const quick = f.worker(2, ["--grace-seconds", "0"]);
    await waitFor("a batch running again", () => f.runs().filter((x) => x.kind === "start").length > runs.length, 30_000, 20);
    quick.child.kill("SIGTERM");
    expect((await quick.done).code).toBe(0);
    const after = await f.withStore((s) => s.summary("fleet", 40));
    expect(after.in_progress).toBe(0);
    const events = await f.events();
    expect(events.some((e) => e.type === "batch_released")).toBe(true);
    // And a new worker finishes the job.
    const last = f.worker(3);
    expect((await last.done).code).toBe(0);
    await expectExactlyOnce(f, 40);
  }, 180_000);
});
