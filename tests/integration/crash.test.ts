/**
 * Crash consistency: kill -9 the runner at 20 random moments across a 50-batch job with
 * concurrency 4, resuming each time. The state must always load, every batch must end
 * completed, and no batch recorded as completed may ever run again.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { commandBackend, sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";
import { mulberry32 } from "../processes.ts";

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`crash consistency (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test(
      "kill -9 at 20 random moments, resume each time",
      async () => {
        box = sandbox(kind);
        const job = box.job({
          name: "crashy",
          concurrency: 4,
          batch: { size: 2, total_items: 100 },
          backend: commandBackend(`echo $MOZART_BATCH_NUM >> {job_dir}/exec.log; sleep 0.1; mkdir -p out; echo done > out/b$MOZART_BATCH_NUM`),
          validations: [{ type: "file_exists", path: "out/b{batch_num}" }],
        });
        const random = mulberry32(kind === "sqlite" ? 42 : 7);
        const checkpoints: Array<{ completed: Set<number>; logLength: number }> = [];

        for (let k = 0; k < 20; k++) {
          // Alternate run and resume once the job exists (a kill may land before it is first saved).
          const p = box.start(k % 2 === 0 || checkpoints.length === 0 ? ["run", job] : ["resume", "crashy"]);
          // The first kill waits for work under way, however long start-up takes on a loaded machine;
          // later ones land anywhere, start-up and recovery included.
          if (checkpoints.length === 0) for (let i = 0; i < 400 && box.lines("exec.log").length === 0; i++) await Bun.sleep(25);
          await Bun.sleep(150 + Math.floor(random() * 700));
          p.child.kill("SIGKILL");
          await p.done;
          await Bun.sleep(150); // let orphaned attempts (own process groups) finish their echo
          const s = box.run(["status", "crashy", "--json"]);
          if (checkpoints.length === 0 && s.code !== 0 && s.stderr.includes("job not found")) continue; // killed before the first save
          expect(s.stderr).toBe("");
          expect(s.code).toBe(0); // the state always loads
          const doc = JSON.parse(s.stdout) as { batches: Array<{ batch_num: number; status: string }> };
          checkpoints.push({ completed: new Set(doc.batches.filter((b) => b.status === "completed").map((b) => b.batch_num)), logLength: box.lines("exec.log").length });
        }

        const final = box.run(["resume", "crashy"]);
        expect([0, 1]).toContain(final.code === 0 ? 0 : final.code);
        if (final.code !== 0) {
          // Only "already completed" may refuse: anything else is a real failure.
          expect(final.stderr).toContain("already completed");
        }
        const s = box.status("crashy");
        expect(s.status).toBe("completed");
        expect(s.progress).toMatchObject({ completed: 50, total: 50 });

        const log = box.lines("exec.log").map(Number);
        for (const cp of checkpoints) {
          const rerun = log.slice(cp.logLength).filter((n) => cp.completed.has(n));
          expect(rerun).toEqual([]);
        }
        expect(checkpoints.length).toBeGreaterThanOrEqual(15);
        expect(checkpoints.some((cp) => cp.completed.size > 0 && cp.completed.size < 50)).toBe(true);
      },
      120_000,
    );
  });
}
