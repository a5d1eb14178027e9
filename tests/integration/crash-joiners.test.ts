/**
 * Crash consistency with several runners: as crash.test.ts, kill -9 at random moments and
 * continue each time, but in every other round two runners work on the job at once (the second
 * with `run --join`, started a random moment after the first), each killed at its own random
 * moment. The state must always load, the job must end completed, and no batch recorded as
 * completed may ever run again.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { commandBackend, type Kind } from "./engine-helpers.ts";
import { xsandbox, type Started, type XSandbox } from "./xproc-helpers.ts";
import { mulberry32 } from "../processes.ts";

const ROUNDS = 16;
const BATCHES = 100;
/** A runner lives this long plus up to LIFE_SPREAD_MS: long enough to take the lease (start-up is slow on a loaded machine), short enough to die mid-run. */
const LIFE_MS = 300;
const LIFE_SPREAD_MS = 1200;

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`crash consistency with joined runners (${kind})`, () => {
    let box: XSandbox;
    afterEach(async () => {
      await box?.cleanup();
    });

    test(
      `kill -9 one or two runners at random moments, ${ROUNDS} rounds`,
      async () => {
        box = xsandbox(kind);
        const job = box.job({
          name: "crashy",
          concurrency: 4,
          batch: { size: 2, total_items: BATCHES * 2 },
          backend: commandBackend(`echo $MOZART_BATCH_NUM >> {job_dir}/exec.log; sleep 0.3; mkdir -p out; echo done > out/b$MOZART_BATCH_NUM`),
          validations: [{ type: "file_exists", path: "out/b{batch_num}" }],
        });
        const random = mulberry32(kind === "sqlite" ? 4242 : 77);
        const checkpoints: Array<{ completed: Set<number>; logLength: number }> = [];
        let joinedRounds = 0;

        const killAfter = async (p: Started, ms: number) => {
          await Bun.sleep(ms);
          p.child.kill("SIGKILL");
          return p.done;
        };

        const lastSeq = async () => (await box.events("crashy").catch(() => [])).reduce((m, e) => Math.max(m, e.seq), 0);
        /** Until a job_start after `after` (of `mode`, if given) is recorded, or the runner is gone (killed or finished before it started). */
        const waitForStart = async (after: number, runner: Started, mode?: string) => {
          let exited = false;
          void runner.done.then(() => (exited = true));
          while (!exited) {
            const events = await box.events("crashy").catch(() => []);
            if (events.some((e) => e.seq > after && e.type === "job_start" && (mode === undefined || e.mode === mode))) return;
            await Bun.sleep(50);
          }
        };

        for (let k = 0; k < ROUNDS; k++) {
          const seqBefore = k % 2 === 1 ? await lastSeq() : 0;
          const first = box.start(k % 4 < 2 || checkpoints.length === 0 ? ["run", job] : ["resume", "crashy"]);
          const firstLife = LIFE_MS + Math.floor(random() * LIFE_SPREAD_MS);
          const runs: Array<Promise<unknown>> = [];
          if (k % 2 === 0) runs.push(killAfter(first, firstLife));
          else {
            joinedRounds++;
            const delay = Math.floor(random() * 400);
            const life = LIFE_MS + Math.floor(random() * LIFE_SPREAD_MS);
            // Start-up is slow on a loaded machine, so the clocks start only once the runners are
            // in: the joiner starts a random moment after this round's first runner holds the job,
            // and both lives count from the moment the joiner has joined, so the round really has
            // two runners at once, each then killed at its own random moment.
            await waitForStart(seqBefore, first);
            await Bun.sleep(delay);
            const joiner = box.start(["run", "--join", job]);
            await waitForStart(seqBefore, joiner, "join");
            runs.push(killAfter(first, firstLife), killAfter(joiner, life));
          }
          await Promise.all(runs);
          await Bun.sleep(400); // let orphaned attempts (own process groups) finish their echo
          const s = await box.exec(["status", "crashy", "--json"]);
          if (checkpoints.length === 0 && s.code !== 0 && s.stdout.includes("job not found")) continue; // killed before the first save
          expect(s.stderr).toBe("");
          expect(s.code).toBe(0); // the state always loads
          const doc = JSON.parse(s.stdout) as { runners: unknown[]; batches: Array<{ batch_num: number; status: string }> };
          expect(doc.runners).toEqual([]); // a killed runner holds nothing
          checkpoints.push({ completed: new Set(doc.batches.filter((b) => b.status === "completed").map((b) => b.batch_num)), logLength: box.lines("exec.log").length });
        }

        const final = await box.exec(["resume", "crashy"]);
        if (final.code !== 0) {
          // Only "already completed" may refuse: anything else is a real failure.
          expect(final.stderr).toContain("already completed");
        }
        const s = box.status("crashy");
        expect(s.status).toBe("completed");
        expect(s.progress).toMatchObject({ completed: BATCHES, total: BATCHES });

        const log = box.lines("exec.log").map(Number);
        for (const cp of checkpoints) {
          const rerun = log.slice(cp.logLength).filter((n) => cp.completed.has(n));
          expect(rerun).toEqual([]);
        }
        expect(joinedRounds).toBe(ROUNDS / 2);
        expect(checkpoints.length).toBeGreaterThanOrEqual(ROUNDS - 3);
        expect(checkpoints.some((cp) => cp.completed.size > 0 && cp.completed.size < BATCHES)).toBe(true);
        expect(box.alive()).toEqual([]);
        // The joined rounds really had two runners on the job at once.
        const events = await box.events("crashy");
        expect(events.filter((e) => e.type === "job_start" && e.mode === "join").length).toBeGreaterThan(0);
      },
      150_000,
    );
  });
}
