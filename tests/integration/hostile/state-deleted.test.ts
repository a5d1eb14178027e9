/**
 * `rm -rf <workspace>/.mozart` under a running job: the runner stops with an error that names
 * the state, exits non-zero, never reports the job completed, and (json) does not recreate the
 * folder it lost. Looking at the job afterwards creates nothing either.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, rmSync } from "node:fs";
import { commandBackend, sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, stateDir, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

for (const kind of KINDS) {
  describe(`state deleted while the job runs (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    for (const when of ["between batches", "mid-attempt"] as const) {
      test(`rm -rf .mozart ${when}: a clear error, exit 1, not completed, nothing recreated`, async () => {
        box = sandbox(kind);
        const file = box.job({
          name: "gone",
          batch: { size: 1, total_items: 30 },
          backend: commandBackend(when === "mid-attempt" ? "echo started >> {job_dir}/started.log; sleep 1.5; echo $MOZART_BATCH_NUM >> {job_dir}/done.log" : "sleep 0.15; echo $MOZART_BATCH_NUM >> {job_dir}/done.log"),
        });
        const p = box.start(["run", file]);
        if (when === "mid-attempt") await waitFor(() => lineCount(`${box.dir}/started.log`) >= 2, "the second attempt to start");
        else await waitFor(() => lineCount(`${box.dir}/done.log`) >= 3, "three batches done");
        // rm -rf races with the runner's own writes ("Directory not empty"); a user runs it again.
        await waitFor(() => {
          try {
            rmSync(stateDir(box), { recursive: true, force: true });
          } catch {
            // a file appeared while rm walked the folder
          }
          return !existsSync(stateDir(box));
        }, "the state folder to be gone", 5000, 5);
        const r = await p.done;
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/state \((json|sqlite)\)/);
        expect(r.stderr).toContain(stateDir(box));
        expect(r.stderr).toMatch(/was deleted or replaced while the job ran|was deleted while the job ran/);
        expect(r.stderr).not.toMatch(/lost its (claim|lease)|nothing recorded as done is lost/);
        expect(r.stderr).not.toContain("unexpected error");
        expect(r.stderr).not.toMatch(/job gone completed|✓ job/);
        expect(r.stdout).not.toMatch(/completed: \d+\/\d+/);
        // The runner did not stop short of telling the truth and then carry on working.
        const done = lineCount(`${box.dir}/done.log`);
        await Bun.sleep(400);
        expect(lineCount(`${box.dir}/done.log`)).toBeLessThanOrEqual(done + 1);
        expect(done).toBeLessThan(30);
        if (kind === "json") expect(existsSync(stateDir(box))).toBe(false);
        else expect(existsSync(`${stateDir(box)}/state.db`)).toBe(false);

        // Looking at the job afterwards reports it missing, and creates nothing.
        const s = box.run(["status", "gone"]);
        expect(s.code).toBe(1);
        expect(s.stderr).toMatch(/no state|not found/);
        expect(existsSync(`${stateDir(box)}/state.db`)).toBe(false);
        if (kind === "json") expect(existsSync(stateDir(box))).toBe(false);
      });
    }
  });
}
