/**
 * `mozart logs` from other processes while a job runs: the persisted event log is complete,
 * ordered and live, and a follower ends by itself when the job does.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { FINAL_EVENTS, type StoredEvent } from "../../src/state/events.ts";
import { openStore } from "../../src/state/store.ts";
import type { BatchRecord, JobRecord } from "../../src/state/types.ts";
import { tempDir } from "../helpers.ts";
import { commandBackend, type Kind } from "./engine-helpers.ts";
import { parseEvents, waitFor, xsandbox, type Started, type XSandbox } from "./xproc-helpers.ts";

const BATCHES = 12;

/** Lines of a follower's stdout with the time each arrived, so a test can tell live from after the fact. */
function lineTimes(p: Started): Array<{ at: number; event: StoredEvent }> {
  const out: Array<{ at: number; event: StoredEvent }> = [];
  let buffer = "";
  p.child.stdout!.on("data", (d: Buffer) => {
    buffer += d.toString();
    const lines = buffer.split("\n");
    buffer = lines.pop()!;
    for (const l of lines) if (l.trim()) out.push({ at: Date.now(), event: JSON.parse(l) as StoredEvent });
  });
  return out;
}

const seqs = (events: StoredEvent[]) => events.map((e) => e.seq);
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`mozart logs from another process (${kind} state)`, () => {
    let box: XSandbox;
    afterEach(async () => {
      await box?.cleanup();
    });

    /**
     * Batch 1 waits for a `go` file the test writes once the followers are reading, so they
     * certainly follow a running job however slowly this machine starts processes.
     */
    const jobFile = () =>
      box.job({
        batch: { size: 1, total_items: BATCHES },
        backend: commandBackend(
          `if [ "$MOZART_BATCH_NUM" = 1 ]; then i=0; while [ ! -e {job_dir}/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi; ` +
            `echo "out $MOZART_BATCH_NUM"; sleep 0.2; echo "err $MOZART_BATCH_NUM" >&2`,
        ),
      });

    test(
      "logs -f prints every event of the run in order, live output included, and exits 0 when the job ends; --batch -f only that batch's",
      async () => {
        box = xsandbox(kind);
        const job = jobFile();
        const runner = box.start(["run", job]);
        await waitFor("the runner to start batch 1", () => box.lines("calls.log").length > 0);

        const follower = box.start(["logs", "test-job", "-f", "--json"]);
        const followed = lineTimes(follower);
        const batchFollower = box.start(["logs", "test-job", "-f", "--json", "--batch", "5"]);
        await waitFor("the follower to print job_start", () => followed.some((l) => l.event.type === "job_start"));
        // The batch follower prints nothing before batch 5; give it the time to open the store.
        await Bun.sleep(500);
        writeFileSync(join(box.dir, "go"), "");

        const ran = await runner.done;
        expect(ran.stderr).not.toContain("error");
        expect(ran.code).toBe(0);
        const runnerEnded = runner.endedAt()!;
        // It ends by itself: nobody signals it.
        const f = await Promise.race([follower.done, Bun.sleep(30_000).then(() => null)]);
        expect(f).not.toBeNull();
        expect(f!.code).toBe(0);
        expect(f!.stderr).toBe("");
        const bf = await Promise.race([batchFollower.done, Bun.sleep(30_000).then(() => null)]);
        expect(bf).not.toBeNull();
        expect(bf!.code).toBe(0);

        const live = parseEvents(f!.stdout);
        const all = await box.events("test-job");
        // Every event, in order, no gap, the same as read after the fact.
        expect(seqs(live)).toEqual(range(all.length));
        expect(live).toEqual(all);
        expect(all[0]!.type).toBe("job_start");
        expect(all[all.length - 1]!.type).toBe("job_complete");
        for (let n = 1; n <= BATCHES; n++) {
          expect(all.filter((e) => e.type === "batch_complete" && e.batch_num === n)).toHaveLength(1);
          const output = all.filter((e): e is Extract<StoredEvent, { type: "output" }> => e.type === "output" && e.batch_num === n);
          expect(output.filter((e) => e.stream === "stdout").map((e) => e.text).join("")).toBe(`out ${n}\n`);
          expect(output.filter((e) => e.stream === "stderr").map((e) => e.text).join("")).toBe(`err ${n}\n`);
        }
        // Live: output of the first batches reached the follower while the job still ran.
        const firstOutput = followed.find((l) => l.event.type === "output");
        expect(firstOutput).toBeDefined();
        expect(firstOutput!.at).toBeLessThan(runnerEnded);

        // --batch 5 -f: that batch's events (its output included) and the job's final event, nothing else.
        const five = parseEvents(bf!.stdout);
        expect(five).toEqual(all.filter((e) => ("batch_num" in e && e.batch_num === 5) || (!("batch_num" in e) && FINAL_EVENTS.has(e.type))));
        expect(five.some((e) => e.type === "output")).toBe(true);
        expect(five[five.length - 1]!.type).toBe("job_complete");
      },
      120_000,
    );

    test(
      "a follower stopped with Ctrl+C resumes with --since its last seq: nothing twice, nothing missing",
      async () => {
        box = xsandbox(kind);
        const job = jobFile();
        const runner = box.start(["run", job]);
        await waitFor("the runner to start batch 1", () => box.lines("calls.log").length > 0);
        const first = box.start(["logs", "test-job", "-f", "--json"]);
        const firstLines = lineTimes(first);
        await waitFor("the follower to print job_start", () => firstLines.length > 0);
        writeFileSync(join(box.dir, "go"), "");
        await waitFor("batch 3 to complete in the follower's output", () => firstLines.some((l) => l.event.type === "batch_complete" && l.event.batch_num === 3));
        first.child.kill("SIGINT");
        const stopped = await first.done;
        expect(stopped.code).toBe(0);
        const part1 = parseEvents(stopped.stdout);
        const last = part1[part1.length - 1]!.seq;
        expect(seqs(part1)).toEqual(range(last));

        const second = box.start(["logs", "test-job", "-f", "--json", "--since", String(last)]);
        expect((await runner.done).code).toBe(0);
        const rest = await Promise.race([second.done, Bun.sleep(30_000).then(() => null)]);
        expect(rest).not.toBeNull();
        expect(rest!.code).toBe(0);
        const part2 = parseEvents(rest!.stdout);
        expect(part2[0]!.seq).toBe(last + 1);
        const all = await box.events("test-job");
        expect([...part1, ...part2]).toEqual(all);

        // After the fact too: --since N is exactly what follows N, and --since the last seq is empty.
        const mid = Math.floor(all.length / 2);
        expect(await box.events("test-job", ["--since", String(mid)])).toEqual(all.slice(mid));
        expect(await box.events("test-job", ["--since", String(all.length)])).toEqual([]);
        // --batch N after the fact, and the human form shows the batch's output marked with its number.
        const three = await box.events("test-job", ["--batch", "3"]);
        expect(three.length).toBeGreaterThan(0);
        expect(three.every((e) => ("batch_num" in e ? e.batch_num === 3 : FINAL_EVENTS.has(e.type)))).toBe(true);
        const human = await box.exec(["logs", "test-job", "--batch", "3"]);
        expect(human.code).toBe(0);
        expect(human.stdout).toContain("batch 3 started");
        expect(human.stdout).toContain("3│ out 3");
        expect(human.stdout).toContain("3! err 3");
        expect(human.stdout).not.toContain("batch 4 started");
      },
      120_000,
    );
  });
}

/**
 * What `logs -f` and `pause --wait` rely on to stop: a job with no live runner has recorded all
 * it will record. So the run's final status and events must be readable before its lease goes,
 * checked here by a reader polling while a runner leaves a job of many batches.
 */
for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`the end of a run as another reader sees it (${kind} state)`, () => {
    test(
      "once no runner is listed, the run's final events are already in the log",
      async () => {
        const t = tempDir();
        try {
          const location = kind === "sqlite" ? join(t.path, "state.db") : join(t.path, "state");
          const store = await openStore({ kind, location });
          const total = 300;
          const now = Date.now();
          const rec: JobRecord = {
            job_id: "j",
            job_name: "j",
            status: "running",
            config_hash: "h",
            config_blob: "c",
            source_blob: "s",
            template_blob: "t",
            config_path: "/tmp/job.yaml",
            workspace: "/tmp/ws",
            total_batches: total,
            plan: { size: 1, start_item: 1, total_items: total },
            created_at: new Date(now).toISOString(),
            updated_at: new Date(now).toISOString(),
          };
          await store.putJob(rec);
          const done = (n: number): BatchRecord => ({ batch_num: n, status: "completed", start_item: n, end_item: n, attempts: 1, completion_attempts: 0, rate_limit_waits: 0, validation_passed: true, validations: [], cost_usd: 0, token: 1 });
          for (let n = 1; n <= total; n++) await store.putBatch("j", done(n));
          const lease = { id: "r1", pid: process.pid, host: hostname(), started_at: new Date(now).toISOString(), until: now + 60_000, renewed_at: now };
          expect(await store.join("j", lease, { now, ttlMs: 60_000, exclusive: true })).toEqual({ ok: true });
          const before = await store.lastSeq("j");

          const reader = await openStore({ kind, location, readOnly: true });
          let leaving = true;
          const left = store
            .leave("j", "r1", Date.now(), (o) => ({
              job: { status: "completed" },
              events: [{ type: "job_complete", completed: o.summary.completed, total_batches: total, duration_ms: 1, cost_usd: 0 }],
            }))
            .finally(() => (leaving = false));
          const seen: Array<{ runners: number; seq: number; status: string | undefined }> = [];
          while (leaving) {
            const runners = (await reader.runners("j", Date.now())).length;
            const seq = await reader.lastSeq("j");
            const status = (await reader.getJob("j"))?.status;
            seen.push({ runners, seq, status });
          }
          const outcome = await left;
          expect(outcome).toMatchObject({ others: 0, seq: before + 1 });
          // Every look that found no runner found the final event and status too.
          expect(seen.filter((x) => x.runners === 0 && (x.seq < before + 1 || x.status !== "completed")).slice(0, 3)).toEqual([]);
          expect(await reader.runners("j", Date.now())).toEqual([]);
          await reader.close();
          await store.close();
        } finally {
          t.cleanup();
        }
      },
      60_000,
    );
  });
}
