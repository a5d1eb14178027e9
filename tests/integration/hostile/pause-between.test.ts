/**
 * pause_between_batches_seconds spaces batch starts; it is never waited out after the last batch:
 * a run whose work is done ends at once (it used to sit the whole pause before completing).
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, statusOf, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

for (const kind of KINDS) {
  describe(`the pause between batches (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    test("a one-batch job with a 30 s pause ends at once", () => {
      box = sandbox(kind);
      const file = box.job({ name: "one", batch: { size: 1, total_items: 1 }, pause_between_batches_seconds: 30, backend: { type: "command", command: "true", timeout_seconds: 20 } });
      const started = Date.now();
      expect(box.run(["run", file]).code).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    test("the pause holds between batches, and a resume of the last batch ends at once", async () => {
      box = sandbox(kind);
      const file = box.job({ name: "two", batch: { size: 1, total_items: 2 }, pause_between_batches_seconds: 30, backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log", timeout_seconds: 20 } });
      const p = box.start(["run", file]);
      await waitFor(() => p.output().stderr.includes("✓ batch 1/2 completed"), "batch 1");
      await Bun.sleep(1500);
      expect(lineCount(`${box.dir}/calls.log`)).toBe(1); // batch 2 waits for the pause
      p.child.kill("SIGINT");
      expect((await p.done).code).toBe(130);
      const started = Date.now();
      expect(box.run(["resume", "two"]).code).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(statusOf(box, "two").doc!.status).toBe("completed");
    });
  });
}
