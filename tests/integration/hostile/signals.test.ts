/**
 * Signals against a runner: a second Ctrl+C during a long validation, SIGHUP / SIGQUIT mid-batch,
 * and backend processes that ignore SIGTERM. Nothing the run started outlives it, the job ends
 * paused (resumable), and an interrupted attempt burns no retry.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { commandBackend, pidAlive, sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, processesWithEnv, readText, statusOf, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

const pidIn = (path: string) => Number(readText(path).trim());

for (const kind of KINDS) {
  describe(`signals (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("a second Ctrl+C during a long command_succeeds: interrupted, pending, exit 130, no retry burned", async () => {
      box = sandbox(kind);
      const file = box.job({
        name: "val",
        batch: { size: 1, total_items: 2 },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        backend: commandBackend("true"),
        validations: [{ type: "command_succeeds", command: "[ -f {job_dir}/ok ] || { echo $$ > {job_dir}/vpid; exec sleep 30; }" }],
      });
      const p = box.start(["run", file]);
      await waitFor(() => pidIn(`${box.dir}/vpid`), "the validation to start");
      const vpid = pidIn(`${box.dir}/vpid`);
      p.child.kill("SIGINT");
      await Bun.sleep(300);
      p.child.kill("SIGINT");
      const started = Date.now();
      const r = await p.done;
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(r.code).toBe(130);
      expect(pidAlive(vpid)).toBe(false);
      expect(lineCount(`${box.dir}/calls.log`)).toBe(1); // no second attempt was started
      const doc = statusOf(box, "val").doc!;
      expect(doc.status).toBe("paused");
      expect(doc.batches[0]).toMatchObject({ status: "pending", attempts: 1 });
      const attempts = JSON.parse(box.run(["status", "val", "--batch", "1", "--json"]).stdout) as { attempts: Array<{ decision: string; interrupted: boolean }> };
      expect(attempts.attempts).toHaveLength(1);
      expect(attempts.attempts[0]).toMatchObject({ decision: "interrupted", interrupted: true });

      // max_retries is 0: had the interrupted attempt counted, the batch would fail now.
      writeFileSync(`${box.dir}/ok`, "");
      const resumed = box.run(["resume", "val"]);
      expect(resumed.code).toBe(0);
      expect(statusOf(box, "val").doc!.status).toBe("completed");
    });

    for (const sig of ["SIGHUP", "SIGQUIT"] as const) {
      test(`${sig} mid-batch: the attempt finishes, no backend process is left, the job is paused, resume completes it`, async () => {
        box = sandbox(kind);
        const file = box.job({
          name: "hup",
          batch: { size: 1, total_items: 2 },
          backend: commandBackend("echo $$ >> {job_dir}/pids; sleep 1"),
        });
        const p = box.start(["run", file]);
        await waitFor(() => lineCount(`${box.dir}/pids`) >= 1, "the first attempt");
        p.child.kill(sig);
        const r = await p.done;
        expect(r.code).toBe(130);
        expect(r.stderr).toContain(`${sig}: starting no new work`);
        for (const pid of readText(`${box.dir}/pids`).split("\n").filter(Boolean).map(Number)) expect(pidAlive(pid)).toBe(false);
        expect(processesWithEnv(box.dir)).toEqual([]);
        const doc = statusOf(box, "hup").doc!;
        expect(doc.status).toBe("paused");
        expect(doc.progress.completed).toBe(1); // drained: the running attempt finished
        expect(box.run(["resume", "hup"]).code).toBe(0);
        expect(statusOf(box, "hup").doc!.status).toBe("completed");
        expect(lineCount(`${box.dir}/calls.log`)).toBe(2);
      });

      test(`${sig} twice: the running attempt is stopped at once, interrupted, nothing left running`, async () => {
        box = sandbox(kind);
        const file = box.job({ name: "hup2", batch: { size: 1, total_items: 2 }, backend: commandBackend("echo $$ >> {job_dir}/pids; exec sleep 30") });
        const p = box.start(["run", file]);
        await waitFor(() => lineCount(`${box.dir}/pids`) >= 1, "the first attempt");
        p.child.kill(sig);
        await Bun.sleep(200);
        p.child.kill(sig);
        const r = await p.done;
        expect(r.code).toBe(130);
        expect(pidAlive(pidIn(`${box.dir}/pids`))).toBe(false);
        expect(processesWithEnv(box.dir)).toEqual([]);
        const doc = statusOf(box, "hup2").doc!;
        expect(doc.status).toBe("paused");
        expect(doc.batches[0]!.status).toBe("pending");
      });
    }

    // The process tree does not depend on the state backend: once is enough for these two slow ones.
    // Once is enough: what it checks does not depend on the state backend.
    if (kind === "sqlite") test("a backend child that ignores SIGTERM (and SIGINT) does not outlive the run", async () => {
      box = sandbox(kind);
      const file = box.job({
        name: "stubborn",
        batch: { size: 1, total_items: 1 },
        // Leaves a process in a session of its own that ignores TERM, INT and HUP, then succeeds.
        backend: commandBackend(`setsid sh -c 'trap "" TERM INT HUP; echo $$ > {job_dir}/child.pid; sleep 60' </dev/null >/dev/null 2>&1 & sleep 0.3`),
      });
      const started = Date.now();
      const r = box.run(["run", file]);
      expect(r.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);
      const child = pidIn(`${box.dir}/child.pid`);
      expect(child).toBeGreaterThan(0);
      await waitFor(() => !pidAlive(child), "the stubborn child to be gone", 3000);
      expect(processesWithEnv(box.dir)).toEqual([]);
    });

    // Once is enough: what it checks does not depend on the state backend.
    if (kind === "sqlite") test("a claude that ignores SIGTERM and SIGINT past its timeout is stopped, and so is its tool", async () => {
      box = sandbox(kind);
      const file = box.job({
        name: "deaf",
        batch: { size: 1, total_items: 1 },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        backend: { type: "claude_cli", timeout_seconds: 1 },
      });
      const r = box.run(["run", file], { FAKE_CLAUDE_SCENARIO: "tool-sleep:60", FAKE_CLAUDE_IGNORE_TERM: "1", FAKE_CLAUDE_IGNORE_INT: "1" });
      expect(r.code).toBe(1);
      const tool = pidIn(`${box.env.FAKE_CLAUDE_STATE_DIR!}/grandchild.pid`);
      expect(tool).toBeGreaterThan(0);
      await waitFor(() => !pidAlive(tool), "the tool's sleep to be gone", 3000);
      const claude = (readText(box.env.FAKE_CLAUDE_LOG!).split("\n").filter(Boolean).map((l) => JSON.parse(l) as { pid: number }))[0]!.pid;
      expect(pidAlive(claude)).toBe(false);
      expect(processesWithEnv(box.dir)).toEqual([]);
    });
  });
}
