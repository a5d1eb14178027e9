/**
 * A job record that is missing (deleted) or `null` while the batch records are there: `run`
 * refuses (running on would redo completed batches) and points at `mozart repair <job file>`;
 * repair rebuilds it from the job file; resume then continues without re-running completed
 * batches. Moving an existing job to another state backend or workspace is refused with what to do.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { sandbox, type Kind, type Sandbox } from "../engine-helpers.ts";
import { jsonJobFile, KINDS, readText, sqliteFile, statusOf } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

function damageJobRecord(box: Sandbox, kind: Kind, how: "delete" | "null"): void {
  if (kind === "json") {
    if (how === "delete") rmSync(jsonJobFile(box, "rec"));
    else writeFileSync(jsonJobFile(box, "rec"), "null");
    return;
  }
  const db = new Database(sqliteFile(box));
  try {
    if (how === "delete") db.run("DELETE FROM jobs WHERE job = 'rec'");
    else db.run("UPDATE jobs SET data = 'null' WHERE job = 'rec'");
  } finally {
    db.close();
  }
}

for (const kind of KINDS) {
  describe(`job record lost (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    const jobFile = (extra: Record<string, unknown> = {}) =>
      box.job({
        name: "rec",
        batch: { size: 1, total_items: 6 },
        retry: { max_retries: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.1 },
        backend: {
          type: "command",
          command: `echo $MOZART_BATCH_NUM >> {job_dir}/calls.log; [ "$MOZART_BATCH_NUM" != 4 ] || [ -f {job_dir}/fixed ]`,
          timeout_seconds: 20,
        },
        ...extra,
      });

    for (const how of ["delete", "null"] as const) {
      test(`job record ${how === "delete" ? "deleted" : "replaced by null"}: run refuses and names repair; repair rebuilds; resume continues`, () => {
        box = sandbox(kind);
        const file = jobFile();
        expect(box.run(["run", file]).code).toBe(1);
        expect(readText(`${box.dir}/calls.log`).trim().split("\n")).toEqual(["1", "2", "3", "4"]);
        damageJobRecord(box, kind, how);

        const r = box.run(["run", file]);
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(new RegExp(`mozart repair (${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}|<job file>)`));
        if (how === "null") expect(r.stderr).toContain("is damaged: it is not a JSON object");
        else expect(r.stderr).toContain("is missing");
        expect(r.stderr).not.toContain("unexpected error");
        // Nothing ran: a run on the orphaned batches would have redone batches 1–3.
        expect(readText(`${box.dir}/calls.log`).trim().split("\n")).toHaveLength(4);
        const rj = box.run(["run", file, "--json"]);
        expect(rj.code).toBe(r.code);
        expect((JSON.parse(rj.stdout) as { error: { hint: string } }).error.hint).toContain("mozart repair");

        // status says the same, instead of "job not found".
        const s = box.run(["status", "rec"]);
        expect(s.code).toBe(1);
        expect(s.stderr).toContain("mozart repair");
        expect(s.stderr).not.toContain("job not found");

        const fix = box.run(["repair", file]);
        expect(fix.code).toBe(0);
        expect(fix.stdout).toContain("rebuilt the job record");
        const after = statusOf(box, "rec").doc!;
        expect(after.status).not.toBe("completed");
        expect(after.progress).toMatchObject({ completed: 3, failed: 1, total: 6 });

        writeFileSync(`${box.dir}/fixed`, "");
        const resumed = box.run(["resume", "rec"]);
        expect(resumed.code).toBe(0);
        expect(readText(`${box.dir}/calls.log`).trim().split("\n")).toEqual(["1", "2", "3", "4", "4", "5", "6"]);
        expect(statusOf(box, "rec").doc!).toMatchObject({ status: "completed", progress: { completed: 6, total: 6 } });
        // A second repair finds nothing to do.
        const again = box.run(["repair", file]);
        expect(again.code).toBe(0);
        expect(again.stdout).toContain("nothing to repair");
      });
    }

    test("a completed job whose record was rebuilt: resume has nothing to do, and status says completed again", () => {
      box = sandbox(kind);
      writeFileSync(`${box.dir}/fixed`, "");
      const file = jobFile();
      expect(box.run(["run", file]).code).toBe(0);
      damageJobRecord(box, kind, "delete");
      expect(box.run(["repair", file]).code).toBe(0);
      const r = box.run(["resume", "rec"]);
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).toContain("nothing to do");
      expect(statusOf(box, "rec").doc!).toMatchObject({ status: "completed", progress: { completed: 6 } });
      expect(readText(`${box.dir}/calls.log`).trim().split("\n")).toHaveLength(6);
    });

    test("changing state_backend or workspace of an existing job is refused with what to do", () => {
      box = sandbox(kind);
      const file = jobFile();
      expect(box.run(["run", file]).code).toBe(1);
      const other: Kind = kind === "json" ? "sqlite" : "json";
      for (const change of [{ state_backend: other }, { workspace: "./elsewhere" }]) {
        jobFile(change);
        for (const args of [["run", file], ["run", file, "--force-config"]]) {
          const r = box.run(args);
          expect(r.code).toBe(2);
          expect(r.stderr).toContain("keeps its state in");
          expect(r.stderr).toMatch(/restore state_backend \/ workspace \/ state_path/);
          expect(r.stderr).toContain("mozart forget rec");
        }
        expect(readText(`${box.dir}/calls.log`).trim().split("\n")).toHaveLength(4);
      }
      // Restored: the job continues where it was.
      jobFile();
      writeFileSync(`${box.dir}/fixed`, "");
      expect(box.run(["run", file]).code).toBe(0);
      expect(readText(`${box.dir}/calls.log`).trim().split("\n")).toEqual(["1", "2", "3", "4", "4", "5", "6"]);
    });
  });
}
