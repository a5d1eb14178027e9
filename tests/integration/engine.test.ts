/**
 * The engine end to end through the real CLI, with real processes (the `command` backend runs
 * sh scripts), against both state backends.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commandBackend, pidAlive, sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";

const writeOutput = `mkdir -p out && echo "## Summary batch $MOZART_BATCH_NUM" > out/b$MOZART_BATCH_NUM.md`;
const validations = [
  { type: "file_exists", path: "out/b{batch_num}.md" },
  { type: "content_contains", path: "out/b{{ batch_num }}.md", pattern: "## Summary" },
];

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`engine (${kind} state)`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("a job runs to completion, and a second run does nothing", () => {
      box = sandbox(kind);
      const job = box.job({ backend: commandBackend(writeOutput), validations });
      const first = box.run(["run", job]);
      expect(first.stderr).not.toContain("error");
      expect(first.code).toBe(0);
      expect(first.stdout).toContain("completed: 3/3 batches");
      expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "3 1"]);
      const s = box.status("test-job");
      expect(s.status).toBe("completed");
      expect(s.progress).toMatchObject({ completed: 3, total: 3 });
      expect(s.batches.map((b) => [b.status, b.attempts, b.validation_passed])).toEqual([
        ["completed", 1, true],
        ["completed", 1, true],
        ["completed", 1, true],
      ]);
      const second = box.run(["run", job]);
      expect(second.code).toBe(0);
      expect(second.stderr).toContain("already completed");
      expect(box.lines("calls.log")).toHaveLength(3);
      // Even a run with nothing to do registers the job, so another MOZART_HOME finds it by name.
      const otherHome = { MOZART_HOME: join(box.dir, "other-home") };
      expect(box.run(["run", job], otherHome).code).toBe(0);
      expect(JSON.parse(box.run(["status", "test-job", "--json"], otherHome).stdout).status).toBe("completed");
    });

    test("validations decide, not the exit code: exit 0 without the file is retried", () => {
      box = sandbox(kind);
      // First attempt of each batch writes nothing; the retry writes the file.
      const job = box.job({ backend: commandBackend(`[ "$MOZART_ATTEMPT" -ge 2 ] && ${writeOutput}; true`), validations });
      const r = box.run(["run", job]);
      expect(r.code).toBe(0);
      expect(box.status("test-job").batches.map((b) => b.attempts)).toEqual([2, 2, 2]);
    });

    test("partial validation → completion prompt → success", () => {
      box = sandbox(kind);
      // Attempt 1 writes 2 of 3 files (67% > 50%); a completion prompt writes the rest.
      const body = `prompt=$(cat); mkdir -p out; echo a > out/a$MOZART_BATCH_NUM; echo b > out/b$MOZART_BATCH_NUM;
        case "$prompt" in *"COMPLETION MODE"*) echo "$prompt" > out/completion-prompt-$MOZART_BATCH_NUM.txt; echo c > out/c$MOZART_BATCH_NUM;; esac`;
      const job = box.job({
        batch: { size: 1, total_items: 1 },
        backend: commandBackend(body),
        validations: ["a", "b", "c"].map((x) => ({ type: "file_exists", path: `out/${x}{batch_num}`, description: `file ${x}` })),
      });
      const r = box.run(["run", job]);
      expect(r.code).toBe(0);
      const b = box.status("test-job").batches[0]!;
      expect(b).toMatchObject({ status: "completed", attempts: 2, completion_attempts: 1 });
      const prompt = box.read("ws/out/completion-prompt-1.txt");
      expect(prompt).toContain("file a");
      expect(prompt).toContain("file c");
      expect(prompt).toContain("Batch 1 items 1-1");
    });

    test("retries exhausted → job failed (exit 1), error and output visible in status", () => {
      box = sandbox(kind);
      const job = box.job({ backend: commandBackend(`echo "something broke in batch $MOZART_BATCH_NUM" >&2; exit 3`), retry: { max_retries: 2, base_delay_seconds: 0.01, max_delay_seconds: 0.02 } });
      const r = box.run(["run", job]);
      expect(r.code).toBe(1);
      expect(r.stdout).toContain("failed");
      // max_retries: 2 means 3 attempts, then the job stops before batch 2.
      expect(box.lines("calls.log")).toEqual(["1 1", "1 2", "1 3"]);
      const s = box.status("test-job");
      expect(s.status).toBe("failed");
      expect(s.error).toContain("batch 1");
      expect(s.batches[0]).toMatchObject({ status: "failed", attempts: 3 });
      expect(s.batches[0]!.error).toContain("failed after 3 attempts");
      expect(s.batches[0]!.last_output).toContain("something broke in batch 1");
      const human = box.run(["status", "test-job"]);
      expect(human.stdout).toContain("something broke in batch 1");
      // The attempt log keeps every attempt's command and output.
      const log = JSON.parse(box.run(["status", "test-job", "--batch", "1", "--json"]).stdout);
      expect(log.attempts.map((a: { attempt: number; exit_code: number }) => [a.attempt, a.exit_code])).toEqual([[1, 3], [2, 3], [3, 3]]);
      expect(log.attempts[0].prompt).toBe("Batch 1 items 1-1\n");
      expect(box.run(["status", "test-job", "--batch", "1"]).stdout).toContain("batch 1 attempt 3 (retry)");
      expect(box.run(["status", "test-job", "--batch", "9"]).code).toBe(2);
    });

    test("resume after a failure re-runs only what is not completed", () => {
      box = sandbox(kind);
      const flag = join(box.dir, "broken");
      writeFileSync(flag, "");
      const job = box.job({ backend: commandBackend(`[ "$MOZART_BATCH_NUM" = 2 ] && [ -f ${flag} ] && exit 1; ${writeOutput}`), retry: { max_retries: 0 }, validations });
      expect(box.run(["run", job]).code).toBe(1);
      expect(box.status("test-job").batches.map((b) => b.status)).toEqual(["completed", "failed", "pending"]);
      require("node:fs").rmSync(flag);
      const r = box.run(["resume", "test-job"]);
      expect(r.code).toBe(0);
      expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "2 2", "3 1"]);
    });

    test("resume --retry-failed, --from and --force", () => {
      box = sandbox(kind);
      const job = box.job({ backend: commandBackend(writeOutput), validations });
      expect(box.run(["run", job]).code).toBe(0);
      // run and resume of a completed job follow one rule: nothing to do, exit 0.
      const noop = box.run(["resume", "test-job"]);
      expect(noop.code).toBe(0);
      expect(noop.stderr).toContain("already completed");
      expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "3 1"]);
      expect(box.run(["resume", "test-job", "--from", "2"]).code).toBe(0);
      expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "3 1", "2 2", "3 2"]);
      expect(box.run(["resume", "test-job", "--force"]).code).toBe(0);
      expect(box.lines("calls.log").slice(5)).toEqual(["1 1", "2 1", "3 1"]);
      expect(box.status("test-job").status).toBe("completed");
    });

    test("a changed job file is refused unless --force-config", () => {
      box = sandbox(kind);
      const job = box.job({ backend: commandBackend(writeOutput), validations, batch: { size: 1, total_items: 2 } });
      expect(box.run(["run", job]).code).toBe(0);
      box.job({ backend: commandBackend(writeOutput), validations, batch: { size: 1, total_items: 4 } });
      const refused = box.run(["run", job]);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain("the job file changed");
      expect(refused.stderr).toContain("--force-config");
      const forced = box.run(["run", job, "--force-config"]);
      expect(forced.code).toBe(0);
      expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "3 1", "4 1"]);
      expect(box.status("test-job").progress).toMatchObject({ completed: 4, total: 4 });
    });

    test("a hang times out and leaves no child process", () => {
      box = sandbox(kind);
      const job = box.job({
        batch: { size: 1, total_items: 1 },
        retry: { max_retries: 0 },
        backend: commandBackend(`sleep 60 & echo $! > {job_dir}/grandchild.pid; wait`, { timeout_seconds: 1 }),
      });
      const r = box.run(["run", job]);
      expect(r.code).toBe(1);
      const pid = Number(box.read("grandchild.pid").trim());
      expect(pid).toBeGreaterThan(0);
      expect(pidAlive(pid)).toBe(false);
      expect(box.status("test-job").batches[0]!.error).toContain("backend.timeout_seconds");
    });

    test("two runners on one job: the second is refused", async () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 1 }, backend: commandBackend(`sleep 3; ${writeOutput}`), validations });
      const first = box.start(["run", job]);
      for (let i = 0; i < 100 && box.lines("calls.log").length === 0; i++) await Bun.sleep(50);
      const second = box.run(["run", job]);
      expect(second.code).toBe(1);
      expect(second.stderr).toContain("is already running");
      expect((await first.done).code).toBe(0);
    });

    test("SIGINT mid-batch → paused, exit 130, no orphans, and resume completes the job", async () => {
      box = sandbox(kind);
      const job = box.job({
        batch: { size: 1, total_items: 3 },
        backend: commandBackend(`sleep 30 & echo $! >> {job_dir}/children.pid; wait; ${writeOutput}`),
        validations,
      });
      const p = box.start(["run", job]);
      for (let i = 0; i < 100 && box.lines("children.pid").length === 0; i++) await Bun.sleep(50);
      p.child.kill("SIGINT");
      await Bun.sleep(300);
      p.child.kill("SIGINT"); // second Ctrl+C: kill the running attempt now
      const r = await p.done;
      expect(r.code).toBe(130);
      expect(r.stdout).toContain("mozart resume test-job");
      for (const pid of box.lines("children.pid").map(Number)) expect(pidAlive(pid)).toBe(false);
      const s = box.status("test-job");
      expect(s.status).toBe("paused");
      expect(s.batches[0]!.status).toBe("pending");
      box.job({ batch: { size: 1, total_items: 3 }, backend: commandBackend(writeOutput), validations });
      const resumed = box.run(["resume", "test-job", "--force-config"]);
      expect(resumed.code).toBe(0);
      expect(box.status("test-job").progress.completed).toBe(3);
    });

    test("the first SIGTERM lets the running attempt finish and pauses", async () => {
      box = sandbox(kind);
      const job = box.job({ batch: { size: 1, total_items: 3 }, backend: commandBackend(`sleep 1; ${writeOutput}`), validations });
      const p = box.start(["run", job]);
      for (let i = 0; i < 100 && box.lines("calls.log").length === 0; i++) await Bun.sleep(50);
      p.child.kill("SIGTERM");
      const r = await p.done;
      expect(r.code).toBe(130);
      const s = box.status("test-job");
      expect(s.status).toBe("paused");
      expect(s.batches[0]!.status).toBe("completed"); // the running attempt finished
      expect(s.batches[1]!.status).toBe("pending");
      expect(box.lines("calls.log")).toEqual(["1 1"]);
    });

    test("concurrency runs batches in parallel and -q prints only the result", () => {
      box = sandbox(kind);
      const job = box.job({ concurrency: 4, batch: { size: 1, total_items: 8 }, backend: commandBackend(`sleep 0.5; ${writeOutput}`), validations });
      const started = Date.now();
      const r = box.run(["-q", "run", job]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      expect(Date.now() - started).toBeLessThan(8 * 500); // serial would take at least 4 s
      expect(box.status("test-job").progress.completed).toBe(8);
    });

    test("run --json writes one status document; plain output has one line per event", () => {
      box = sandbox(kind);
      const job = box.job({ backend: commandBackend(writeOutput), validations });
      const r = box.run(["run", job, "--json"]);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ job_id: "test-job", status: "completed", progress: { completed: 3, total: 3 } });
      const again = box.run(["resume", "test-job", "--force"]);
      expect(again.stderr).toMatch(/\[\d\d:\d\d:\d\d\] batch 1\/3 started/);
      expect(again.stderr).not.toContain("\x1b[");
    });

    test("status and list find jobs from any directory; list filters", () => {
      box = sandbox(kind);
      const job = box.job({ backend: commandBackend(writeOutput), validations });
      expect(box.run(["run", job]).code).toBe(0);
      const s = box.status("test-job");
      expect(s.job_id).toBe("test-job");
      const list = JSON.parse(box.run(["list", "--json"]).stdout);
      expect(list.jobs.map((j: { job_id: string }) => j.job_id)).toEqual(["test-job"]);
      expect(JSON.parse(box.run(["list", "--json", "--status", "failed"]).stdout).jobs).toEqual([]);
      expect(box.run(["list", "--status", "bogus"]).code).toBe(2);
      const missing = box.run(["status", "nope", "--json"]);
      expect(missing.code).toBe(1);
      expect(JSON.parse(missing.stdout).error.message).toContain("job not found: nope");
      // By job file too, with no registry at all.
      const viaFile = box.run(["status", job, "--json"], { MOZART_HOME: join(box.dir, "empty-home") });
      expect(JSON.parse(viaFile.stdout).status).toBe("completed");
    });

    test("GITHUB_STEP_SUMMARY gets a Markdown table", () => {
      box = sandbox(kind);
      const summary = join(box.dir, "summary.md");
      const job = box.job({ backend: commandBackend(`[ "$MOZART_BATCH_NUM" = 3 ] && { echo "no output for 3" >&2; exit 1; }; ${writeOutput}`), retry: { max_retries: 0 }, validations });
      expect(box.run(["run", job], { GITHUB_STEP_SUMMARY: summary }).code).toBe(1);
      const md = readFileSync(summary, "utf8");
      expect(md).toContain("Mozart job `test-job`: failed");
      expect(md).toContain("| 3 | 2 | 1 | 3 | 0 |");
      expect(md).toMatch(/\| 3 \| 1 \| .*failed after 1 attempt/);
      expect(existsSync(summary)).toBe(true);
    });
  });
}
