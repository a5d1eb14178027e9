/**
 * Several runners on one job: `run --join` drains a job together with the runner that holds
 * it, a plain second `run` is refused, and a runner that freezes (SIGSTOP) past its lease loses
 * its batches to the other runner, which stops what is left of its attempts first; thawed, the
 * frozen runner records nothing and says it lost its lease.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StoredEvent } from "../../src/state/events.ts";
import { commandBackend, pidAlive, type Kind } from "./engine-helpers.ts";
import { waitFor, xsandbox, type XSandbox } from "./xproc-helpers.ts";

interface StatusJson {
  status: string;
  progress: { completed: number; failed: number; total: number };
  attempts: number;
  runners: unknown[];
}

const counts = (xs: number[]) => {
  const m = new Map<number, number>();
  for (const x of xs) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
};
const completions = (events: StoredEvent[]) => events.filter((e): e is Extract<StoredEvent, { type: "batch_complete" }> => e.type === "batch_complete").map((e) => e.batch_num);

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`runner leases across processes (${kind} state)`, () => {
    let box: XSandbox;
    afterEach(async () => {
      await box?.cleanup();
    });

    const status = async (): Promise<StatusJson> => {
      const r = await box.exec(["status", "test-job", "--json"]);
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout) as StatusJson;
    };

    test(
      "run and run --join drain a 40-batch job together: every batch once, totals right, both exit 0; a plain second run is refused",
      async () => {
        box = xsandbox(kind);
        // Every batch waits for `go`, written once both runners hold the job, so both certainly work on it.
        const job = box.job({
          concurrency: 2,
          batch: { size: 1, total_items: 40 },
          backend: commandBackend(
            `i=0; while [ ! -e {job_dir}/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo "$MOZART_BATCH_NUM $TEST_RUNNER" >> {job_dir}/batches.log; sleep 0.2`,
          ),
        });
        const first = box.start(["run", job], { TEST_RUNNER: "first" });
        await waitFor("the first runner to start two batches", () => box.lines("calls.log").length >= 2);

        const refused = await box.exec(["run", job], { TEST_RUNNER: "refused" });
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain(`job "test-job" is already running (pid ${first.child.pid} on `);
        expect(refused.stderr).toContain("--join");
        expect(refused.stderr).toContain("--take-over");

        const second = box.start(["run", "--join", job], { TEST_RUNNER: "second" });
        await waitFor("the second runner to join", async () => (await box.events("test-job")).some((e) => e.type === "job_start" && e.mode === "join"), 30_000, 200);
        writeFileSync(join(box.dir, "go"), "");

        const [a, b] = await Promise.all([first.done, second.done]);
        expect(a.stderr).not.toContain("error");
        expect(b.stderr).not.toContain("error");
        expect(a.code).toBe(0);
        expect(b.code).toBe(0);

        const log = box.lines("batches.log").map((l) => l.split(" "));
        const ran = log.map(([n]) => Number(n));
        expect([...ran].sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
        const by = counts(log.map(([, who]) => (who === "first" ? 1 : who === "second" ? 2 : 0)));
        expect(by.get(0)).toBeUndefined();
        expect(by.get(1)).toBeGreaterThan(0);
        expect(by.get(2)).toBeGreaterThan(0);
        // The refused run started nothing.
        expect(box.lines("calls.log")).toHaveLength(40);

        const s = await status();
        expect(s).toMatchObject({ status: "completed", attempts: 40, runners: [], progress: { completed: 40, failed: 0, total: 40 } });
        const events = await box.events("test-job");
        expect([...counts(completions(events)).values()].every((c) => c === 1)).toBe(true);
        expect(completions(events)).toHaveLength(40);
        expect(events.filter((e) => e.type === "job_complete")).toHaveLength(1);
        expect(events.filter((e) => e.type === "runner_left")).toHaveLength(1);
      },
      120_000,
    );

    test(
      "a runner frozen past its lease loses its batches: the other stops its leftovers, completes the job; thawed, it is fenced and says so",
      async () => {
        box = xsandbox(kind);
        const ttl = { MOZART_LEASE_TTL_SECONDS: "2" };
        // Runner A: batch 1 runs 30 s (its leftovers must be stopped before it runs again),
        // batch 2 ends (printing output) once A is frozen: A must record neither when thawed.
        // Runner B: fast, and notes any live leftover of A's attempt of the batch it starts.
        const script = [
          `echo "$MOZART_BATCH_NUM $TEST_RUNNER $MOZART_ATTEMPT" >> {job_dir}/batches.log`,
          `if [ "$TEST_RUNNER" = A ]; then`,
          `  echo $$ >> {job_dir}/a-$MOZART_BATCH_NUM.pid`,
          `  if [ "$MOZART_BATCH_NUM" = 1 ]; then sleep 30 & echo $! >> {job_dir}/a-1.pid; wait; else i=0; while [ ! -e {job_dir}/frozen ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo "A done"; fi`,
          `else`,
          `  for p in $(cat {job_dir}/a-$MOZART_BATCH_NUM.pid 2>/dev/null); do s=$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && echo "$MOZART_BATCH_NUM $p $s" >> {job_dir}/leftovers-seen.log; done`,
          `  sleep 0.2`,
          `fi`,
        ].join("\n");
        const job = box.job({ concurrency: 2, batch: { size: 1, total_items: 10 }, backend: commandBackend(script, { timeout_seconds: 120 }) });

        const a = box.start(["run", job], { TEST_RUNNER: "A", ...ttl });
        await waitFor("runner A to start batches 1 and 2", () => box.pids("a-1.pid").length === 2 && box.pids("a-2.pid").length === 1);
        // A silent attempt's start is recorded 250 ms after its spawn: frozen sooner, A's attempts
        // would be unrecorded (B would still stop their leftovers, found by tag, but count them nowhere).
        const aStarted = (events: StoredEvent[]) => [1, 2].every((n) => events.some((e) => e.type === "attempt_start" && e.batch_num === n));
        await waitFor("runner A to record both attempts' starts", async () => aStarted(await box.events("test-job")), 30_000, 50);
        const b = box.start(["run", "--join", job], { TEST_RUNNER: "B", ...ttl });
        await waitFor("runner B to start a batch", () => box.lines("batches.log").some((l) => l.includes(" B ")));
        a.child.kill("SIGSTOP");
        const frozenAt = Date.now();
        writeFileSync(join(box.dir, "frozen"), "");

        const rb = await b.done;
        expect(rb.stderr).not.toContain("error");
        expect(rb.code).toBe(0);
        // B could only finish after A's lease ran out.
        expect(Date.now() - frozenAt).toBeGreaterThanOrEqual(2000);
        // Every process of A's attempts is gone, although A itself is still frozen.
        for (const pid of [...box.pids("a-1.pid"), ...box.pids("a-2.pid")]) expect(pidAlive(pid)).toBe(false);
        expect(box.alive()).toEqual([a.child.pid!]);
        const before = await box.events("test-job");

        a.child.kill("SIGCONT");
        const ra = await Promise.race([a.done, Bun.sleep(30_000).then(() => null)]);
        expect(ra).not.toBeNull();
        expect(ra!.code).not.toBe(0);
        expect(ra!.code).not.toBe(130);
        expect(ra!.stderr).toMatch(/lost (the job's lease|its claim)/);
        expect(ra!.stderr).toContain("lease expired");

        // Records: every batch completed once; the thawed runner added nothing at all.
        const events = await box.events("test-job");
        expect(events).toEqual(before);
        expect(events[events.length - 1]!.type).toBe("job_complete");
        const done = completions(events);
        expect([...done].sort((x, y) => x - y)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
        const s = await status();
        expect(s).toMatchObject({ status: "completed", runners: [], progress: { completed: 10, failed: 0, total: 10 } });
        // Batches 1 and 2 ran twice (A's attempt, then B's), the rest once: 12 attempts.
        expect(s.attempts).toBe(12);

        // A's batch 1 leftovers were stopped before B ran it again; B saw none alive.
        const stopped = events.find((e): e is Extract<StoredEvent, { type: "leftovers_stopped" }> => e.type === "leftovers_stopped" && e.batch_num === 1);
        expect(stopped).toBeDefined();
        expect([...stopped!.pids].sort()).toEqual([...box.pids("a-1.pid")].sort());
        const rerun = events.find((e) => e.type === "attempt_start" && e.batch_num === 1 && e.attempt === 2);
        expect(rerun!.seq).toBeGreaterThan(stopped!.seq);
        expect(box.lines("leftovers-seen.log")).toEqual([]);
        // The batch log: the taken-over batches started twice, by A then by B; all others once, by B or A.
        const starts = box.lines("batches.log").map((l) => l.split(" "));
        expect(starts.filter(([n]) => n === "1").map(([, who, att]) => `${who}${att}`)).toEqual(["A1", "B2"]);
        expect(starts.filter(([n]) => n === "2").map(([, who, att]) => `${who}${att}`)).toEqual(["A1", "B2"]);
        for (let n = 3; n <= 10; n++) expect(starts.filter(([x]) => x === String(n))).toHaveLength(1);
      },
      120_000,
    );
  });
}
