/**
 * `mozart pause` and `mozart cancel` from another process: the request reaches the runner
 * through the control record (no signal crosses processes), the job ends paused or cancelled,
 * names who asked, and `resume` completes it without running a completed batch twice.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { FIXTURES } from "../helpers.ts";
import { commandBackend, pidAlive, type Kind } from "./engine-helpers.ts";
import { waitFor, xsandbox, type XSandbox } from "./xproc-helpers.ts";

const FAKE = join(FIXTURES, "fake-claude");
const ms = (iso: string) => Date.parse(iso);

interface StatusJson {
  status: string;
  stopped_by: { via: string; host: string; pid: number } | null;
  progress: { completed: number; total: number; failed: number };
  attempts: number;
}
interface AttemptJson {
  attempt: number;
  decision: string;
  interrupted: boolean;
  ended_at?: string;
}

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`pause and cancel from another process (${kind} state)`, () => {
    let box: XSandbox;
    afterEach(async () => {
      await box?.cleanup();
    });

    const claudePids = () => box.lines("claude-calls.jsonl").map((l) => (JSON.parse(l) as { pid: number }).pid);
    const status = async (): Promise<StatusJson> => {
      const r = await box.exec(["status", "test-job", "--json"]);
      expect(r.code).toBe(0);
      return JSON.parse(r.stdout) as StatusJson;
    };
    const attempts = async (n: number): Promise<AttemptJson[]> => {
      const r = await box.exec(["status", "test-job", "--batch", String(n), "--json"]);
      expect(r.code).toBe(0);
      return (JSON.parse(r.stdout) as { attempts: AttemptJson[] }).attempts;
    };

    test(
      "pause reaches the runner within 1 s; the running attempt finishes; resume completes the job, no batch twice",
      async () => {
        box = xsandbox(kind);
        // Batch 2 runs until the test releases it, once the runner has seen the pause: the request
        // certainly arrives while an attempt runs, however slowly `mozart pause` starts here.
        const hold = `if [ "$MOZART_BATCH_NUM" = 2 ]; then i=0; while [ ! -e {job_dir}/release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi`;
        const job = box.job({
          batch: { size: 1, total_items: 5 },
          backend: commandBackend(`echo "$MOZART_BATCH_NUM start" >> {job_dir}/steps.log; ${hold}; sleep 0.3; echo "$MOZART_BATCH_NUM end" >> {job_dir}/steps.log`),
        });
        const runner = box.start(["run", job]);
        await waitFor("batch 2 to start", () => box.lines("steps.log").includes("2 start"));

        const pause = await box.exec(["pause", "test-job", "--json"]);
        expect(pause.code).toBe(0);
        const request = JSON.parse(pause.stdout) as { request: string; at: string; delivered_to: number };
        expect(request).toMatchObject({ request: "pause", delivered_to: 1 });
        await waitFor("the runner to record the pause request", async () => (await box.events("test-job")).some((e) => e.type === "control"), 30_000, 100);
        writeFileSync(join(box.dir, "release"), "");

        const r = await runner.done;
        expect(r.code).toBe(130);
        expect(r.stdout).toContain("paused by");
        expect(r.stdout).toContain("mozart resume test-job");

        const events = await box.events("test-job");
        const seen = events.find((e) => e.type === "control");
        expect(seen).toMatchObject({ request: "pause", by: { via: "cli", pid: pause.pid } });
        expect(ms(seen!.at) - ms(request.at)).toBeLessThanOrEqual(1000);
        // Nothing new started once the runner saw the request; the attempt that ran finished.
        expect(events.filter((e) => e.type === "attempt_start" && ms(e.at) > ms(seen!.at))).toEqual([]);
        expect(box.lines("steps.log")).toEqual(["1 start", "1 end", "2 start", "2 end"]);
        expect(events[events.length - 1]).toMatchObject({ type: "job_paused", completed: 2, by: { via: "cli", pid: pause.pid } });

        const s = await status();
        expect(s.status).toBe("paused");
        expect(s.stopped_by).toMatchObject({ via: "cli", pid: pause.pid, host: hostname() });
        expect(s.progress).toMatchObject({ completed: 2, total: 5 });

        const resumed = await box.exec(["resume", "test-job"]);
        expect(resumed.code).toBe(0);
        const done = await status();
        expect(done).toMatchObject({ status: "completed", stopped_by: null, attempts: 5, progress: { completed: 5, total: 5 } });
        const starts = box.lines("steps.log").filter((l) => l.endsWith(" start"));
        expect(starts).toEqual([1, 2, 3, 4, 5].map((n) => `${n} start`));
      },
      90_000,
    );

    const longBatch = {
      command: () =>
        commandBackend(`[ -e {job_dir}/fast ] && exit 0; echo $$ > {job_dir}/backend.pid; sleep 30 & echo $! > {job_dir}/grandchild.pid; wait`, { timeout_seconds: 120 }),
      "claude slow:30": () => ({ type: "claude_cli", cli_path: FAKE, skip_permissions: true, timeout_seconds: 120 }),
    } as const;

    for (const [name, backend] of Object.entries(longBatch)) {
      test(
        `cancel stops a long batch (${name}) within 2 s, leaves no process, records the attempt interrupted; resume completes the job`,
        async () => {
          box = xsandbox(kind);
          const claudeEnv = { FAKE_CLAUDE_SCENARIO: "slow:30", FAKE_CLAUDE_PRETEND_ROOT: "0" };
          const env = name === "command" ? {} : claudeEnv;
          const job = box.job({ batch: { size: 1, total_items: 3 }, retry: { max_retries: 0 }, backend: backend() });
          const runner = box.start(["run", job], env);
          const pids =
            name === "command"
              ? await waitFor("the backend and its child to write their pids", () => {
                  const p = [...box.pids("backend.pid"), ...box.pids("grandchild.pid")];
                  return p.length === 2 ? p : undefined;
                })
              : await waitFor("fake claude to start", () => (claudePids().length === 1 ? claudePids() : undefined));
          await Bun.sleep(200); // well inside the batch

          const cancel = await box.exec(["cancel", "test-job", "--json"]);
          expect(cancel.code).toBe(0);
          const request = JSON.parse(cancel.stdout) as { request: string; at: string };
          expect(request.request).toBe("cancel");
          const r = await runner.done;
          expect(r.code).toBe(130);
          expect(r.stdout).toContain("cancelled by");
          for (const pid of pids) expect(pidAlive(pid)).toBe(false);
          expect(box.alive()).toEqual([]);

          const events = await box.events("test-job");
          const end = events.find((e) => e.type === "attempt_end" && e.batch_num === 1);
          expect(end).toMatchObject({ decision: "interrupted" });
          // The attempt was over (its processes stopped) within 2 s of the request.
          expect(ms(end!.at) - ms(request.at)).toBeLessThanOrEqual(2000);
          expect(events[events.length - 1]).toMatchObject({ type: "job_cancelled", completed: 0, by: { via: "cli", pid: cancel.pid } });
          expect(events.filter((e) => e.type === "batch_start").map((e) => "batch_num" in e && e.batch_num)).toEqual([1]);

          const a = await attempts(1);
          expect(a).toHaveLength(1);
          expect(a[0]).toMatchObject({ attempt: 1, decision: "interrupted", interrupted: true });
          const s = await status();
          expect(s.status).toBe("cancelled");
          expect(s.stopped_by).toMatchObject({ via: "cli", pid: cancel.pid, host: hostname() });

          writeFileSync(join(box.dir, "fast"), "");
          const resumed = await box.exec(["resume", "test-job"], name === "command" ? {} : { ...claudeEnv, FAKE_CLAUDE_SCENARIO: "ok" });
          expect(resumed.stderr).not.toContain("error");
          expect(resumed.code).toBe(0);
          expect(await status()).toMatchObject({ status: "completed", stopped_by: null, progress: { completed: 3, total: 3 } });
          expect((await attempts(1)).map((x) => x.decision)).toEqual(["interrupted", "success"]);
        },
        90_000,
      );
    }
  });
}
