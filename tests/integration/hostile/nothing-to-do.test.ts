/**
 * Nothing to do is a success, not a pause: `resume --retry-failed` with nothing failed, and
 * `resume` / `run` of a completed job, exit 0, say so, record no job_paused (nor any other
 * event), run nothing and leave the job's status as it was.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, statusOf, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

function events(box: Sandbox, job: string): Array<{ seq: number; type: string }> {
  return box
    .run(["logs", job, "--json"])
    .stdout.split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { seq: number; type: string });
}

for (const kind of KINDS) {
  describe(`nothing to do (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("a completed job: run, resume and resume --retry-failed exit 0 with nothing to do", () => {
      box = sandbox(kind);
      const file = box.job({ name: "idle", backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log", timeout_seconds: 20 } });
      expect(box.run(["run", file]).code).toBe(0);
      const before = events(box, "idle");
      for (const args of [["run", file], ["resume", "idle"], ["resume", "idle", "--retry-failed"], ["run", file, "--json"]]) {
        const r = box.run(args);
        expect(r.code).toBe(0);
        expect(r.stdout + r.stderr).toMatch(/nothing to do|no failed batches/);
        expect(r.stderr).not.toMatch(/paused|⏸/);
      }
      expect(events(box, "idle")).toEqual(before);
      expect(lineCount(`${box.dir}/calls.log`)).toBe(3);
      expect(statusOf(box, "idle").doc!.status).toBe("completed");
    });

    test("a paused job with no failed batch: resume --retry-failed exits 0, fires no job_paused, stays paused", async () => {
      box = sandbox(kind);
      const file = box.job({
        name: "half",
        batch: { size: 1, total_items: 4 },
        backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log; sleep 0.5", timeout_seconds: 20 },
      });
      const p = box.start(["run", file]);
      await waitFor(() => lineCount(`${box.dir}/calls.log`) >= 1, "the first batch");
      p.child.kill("SIGINT");
      expect((await p.done).code).toBe(130);
      const before = events(box, "half");
      const calls = lineCount(`${box.dir}/calls.log`);
      const r = box.run(["resume", "half", "--retry-failed"]);
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).toContain("no failed batches to retry");
      expect(r.stderr).not.toMatch(/paused|⏸/);
      const after = events(box, "half");
      expect(after.filter((e) => e.type === "job_paused")).toHaveLength(before.filter((e) => e.type === "job_paused").length);
      expect(after).toEqual(before);
      expect(lineCount(`${box.dir}/calls.log`)).toBe(calls);
      const doc = statusOf(box, "half").doc!;
      expect(doc.status).toBe("paused");
      // A plain resume then finishes it.
      expect(box.run(["resume", "half"]).code).toBe(0);
      expect(statusOf(box, "half").doc!.status).toBe("completed");
    });
  });
}
