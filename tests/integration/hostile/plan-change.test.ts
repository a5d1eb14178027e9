/**
 * A changed batch plan must never let a job report completed while items were not processed:
 * `--force-config` is refused when a recorded batch would cover other items under the new plan,
 * and accepted when every recorded range still holds (total_items grown).
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, readText, statusOf } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

for (const kind of KINDS) {
  describe(`changed batch plan (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    const jobOf = (size: number, total: number) =>
      box.job({
        name: "plan",
        batch: { size, total_items: total },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        // Item 4 fails until the file `fixed` exists; every call logs the items it got.
        backend: {
          type: "command",
          command: `echo "$MOZART_START_ITEM-$MOZART_END_ITEM" >> {job_dir}/items.log; if [ "$MOZART_START_ITEM" -le 4 ] && [ "$MOZART_END_ITEM" -ge 4 ] && [ ! -f {job_dir}/fixed ]; then exit 1; fi`,
          timeout_seconds: 20,
        },
      });

    test("size 1 → 2 after batch 4 failed: --force-config is refused with the item ranges, nothing runs, never completed", () => {
      box = sandbox(kind);
      const file = jobOf(1, 6);
      const first = box.run(["run", file]);
      expect(first.code).toBe(1);
      expect(readText(`${box.dir}/items.log`).trim().split("\n")).toEqual(["1-1", "2-2", "3-3", "4-4"]);

      jobOf(2, 6);
      Bun.write(`${box.dir}/fixed`, "");
      for (const args of [["resume", "plan", "--force-config"], ["run", file, "--force-config"], ["resume", "plan", "--force-config", "--retry-failed"]]) {
        const r = box.run(args);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("batch plan changed");
        // The explanation names the recorded range and the one the new plan would give it.
        expect(r.stderr).toMatch(/covered items 1–1; with the new batch plan it would cover items 1–2/);
        expect(r.stderr).not.toContain("completed:");
      }
      // Nothing ran under the refused plan.
      expect(readText(`${box.dir}/items.log`).trim().split("\n")).toHaveLength(4);
      const { doc } = statusOf(box, "plan");
      expect(doc!.status).not.toBe("completed");
      expect(doc!.progress.completed).toBe(3);
      expect(doc!.batches.find((b) => b.batch_num === 4)!.status).toBe("failed");

      // --json: the refusal is one document with exit code 2.
      const j = box.run(["resume", "plan", "--force-config", "--json"]);
      expect(j.code).toBe(2);
      const err = JSON.parse(j.stdout) as { error: { message: string; exit_code: number } };
      expect(err.error.exit_code).toBe(2);
      expect(err.error.message).toContain("items 1–1");
    });

    test("growing total_items while the recorded ranges hold is accepted and runs exactly the new and unfinished items", () => {
      box = sandbox(kind);
      const file = jobOf(1, 6);
      expect(box.run(["run", file]).code).toBe(1);
      Bun.write(`${box.dir}/fixed`, "");
      jobOf(1, 9);
      const plain = box.run(["resume", "plan"]);
      expect(plain.code).toBe(2); // changed without --force-config
      const r = box.run(["resume", "plan", "--force-config"]);
      expect(r.stderr).not.toContain("batch plan changed");
      expect(r.code).toBe(0);
      const calls = readText(`${box.dir}/items.log`).trim().split("\n");
      // 1–3 never again; 4 once more; 5–9 once each.
      expect(calls).toEqual(["1-1", "2-2", "3-3", "4-4", "4-4", "5-5", "6-6", "7-7", "8-8", "9-9"]);
      const { doc } = statusOf(box, "plan");
      expect(doc!.status).toBe("completed");
      expect(doc!.progress).toMatchObject({ completed: 9, total: 9 });
      expect(doc!.batches.map((b) => `${b.start_item}-${b.end_item}`)).toEqual(calls.slice(0, 3).concat(calls.slice(4)));
    });
  });
}
