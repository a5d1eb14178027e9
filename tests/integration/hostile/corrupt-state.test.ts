/**
 * Corrupt state: a truncated batch record, valid JSON of the wrong shape, garbage in a SQLite row.
 * `status` names each damaged batch and where it is, and shows the rest; `run` refuses and points
 * at `mozart repair`; repair marks them pending and a resume re-runs only those. `list` shows
 * unreadable jobs with a reason; a 0-byte state.db is reported as lost (never "job not found"),
 * and `run` does not silently start the job over on it.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sandbox, type Kind, type Sandbox } from "../engine-helpers.ts";
import { jsonBatchFile, jsonJobFile, KINDS, readText, sqliteFile, statusOf } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

/** Batch 2 unreadable (truncated / garbage), batch 3 readable JSON of the wrong shape. */
function damage(box: Sandbox, kind: Kind, shape: string): void {
  if (kind === "json") {
    const f2 = jsonBatchFile(box, "corrupt", 2);
    writeFileSync(f2, readFileSync(f2, "utf8").slice(0, 37));
    writeFileSync(jsonBatchFile(box, "corrupt", 3), shape);
    return;
  }
  const db = new Database(sqliteFile(box));
  try {
    db.run("UPDATE batches SET data = ? WHERE job = 'corrupt' AND n = 2", ["\x00\x01garbage{{{"]);
    db.run("UPDATE batches SET data = ? WHERE job = 'corrupt' AND n = 3", [shape]);
  } finally {
    db.close();
  }
}

const calls = (box: Sandbox) => readText(`${box.dir}/calls.log`).split("\n").filter(Boolean).map(Number);

for (const kind of KINDS) {
  describe(`corrupt batch records (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    for (const shape of ['{"batch_num": 3, "status": "done"}', "[1, 2, 3]", "null", '{"batch_num": 7, "status": "completed", "start_item": 1, "end_item": 1, "attempts": 1, "cost_usd": 0, "validations": []}']) {
      test(`truncated / garbage batch 2, batch 3 = ${shape}: status names them, run refuses, repair + resume re-run only them`, () => {
        box = sandbox(kind);
        const file = box.job({ name: "corrupt", batch: { size: 1, total_items: 5 }, backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log", timeout_seconds: 20 } });
        expect(box.run(["run", file]).code).toBe(0);
        damage(box, kind, shape);

        const s = box.run(["status", "corrupt"]);
        expect(s.code).toBe(0);
        expect(s.stdout).toContain("2 damaged");
        expect(s.stdout).toMatch(/batch 2 \(/);
        expect(s.stdout).toMatch(/batch 3 \(/);
        // Each damaged record's reason is shown whole: where it is and what is wrong with it.
        if (kind === "json") expect(s.stdout).toContain("0000002.json): not valid JSON");
        else expect(s.stdout).toMatch(/damaged: batch 2 \(job "corrupt" in .*state\.db\): not valid JSON/);
        if (shape.includes('"done"')) expect(s.stdout).toContain('status is "done"');
        expect(s.stdout).toContain("mozart repair");
        expect(s.stdout.match(/completed/g)!.length).toBeGreaterThanOrEqual(3);
        const doc = statusOf(box, "corrupt").doc!;
        expect(doc.status).not.toBe("completed");
        expect(doc.progress).toMatchObject({ completed: 3, damaged: 2, total: 5 });
        expect(doc.batches.filter((b) => b.damaged).map((b) => b.batch_num)).toEqual([2, 3]);

        for (const args of [["run", file], ["resume", "corrupt"]]) {
          const r = box.run(args);
          expect(r.code).toBe(1);
          expect(r.stderr).toContain("2 batch records are damaged");
          expect(r.stderr).toContain("mozart repair corrupt");
        }
        expect(calls(box)).toEqual([1, 2, 3, 4, 5]);

        const fix = box.run(["repair", "corrupt"]);
        expect(fix.code).toBe(0);
        expect(fix.stdout).toContain("2 unreadable batch records were reset to pending");
        expect(box.run(["resume", "corrupt"]).code).toBe(0);
        expect(calls(box)).toEqual([1, 2, 3, 4, 5, 2, 3]);
        expect(statusOf(box, "corrupt").doc!).toMatchObject({ status: "completed", progress: { completed: 5, damaged: 0 } });
      });
    }

    test("list shows unreadable jobs with a reason, never 'No jobs found'", () => {
      box = sandbox(kind);
      const file = box.job({ name: "corrupt", batch: { size: 1, total_items: 2 }, backend: { type: "command", command: "true", timeout_seconds: 20 } });
      expect(box.run(["run", file]).code).toBe(0);
      const entry = join(box.home, "jobs", "corrupt.json");

      // An entry without its snapshot makes list read the store, whose job record is damaged.
      const e = JSON.parse(readFileSync(entry, "utf8")) as Record<string, unknown>;
      delete e.snapshot;
      writeFileSync(entry, JSON.stringify(e));
      if (kind === "json") writeFileSync(jsonJobFile(box, "corrupt"), "{ truncated");
      else writeFileSync(sqliteFile(box), "garbage, not a database".repeat(100));
      let l = box.run(["list"]);
      expect(l.code).toBe(0);
      expect(l.stdout).not.toContain("No jobs found");
      expect(l.stdout).toMatch(/corrupt\s+unreadable/);
      expect(l.stdout).toMatch(/corrupt: .*(damaged|not a readable SQLite database)/);

      // A registry entry that is itself garbage.
      writeFileSync(entry, "{ not json");
      l = box.run(["list"]);
      expect(l.code).toBe(0);
      expect(l.stdout).not.toContain("No jobs found");
      expect(l.stdout).toContain("unreadable");
      expect(l.stdout).toContain("is damaged");
      const j = JSON.parse(box.run(["list", "--json"]).stdout) as { jobs: Array<{ status: string; error?: string }> };
      expect(j.jobs).toHaveLength(1);
      expect(j.jobs[0]!.status).toBe("unreadable");
      expect(j.jobs[0]!.error).toBeTruthy();
    });
  });
}

describe("a 0-byte state.db", () => {
  let box: Sandbox;
  afterEach(() => box?.cleanup());

  test("is reported as empty / lost, not 'job not found', and run does not start the job over on it", () => {
    box = sandbox("sqlite");
    const file = box.job({ name: "zero", batch: { size: 1, total_items: 3 }, backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log", timeout_seconds: 20 } });
    expect(box.run(["run", file]).code).toBe(0);
    writeFileSync(sqliteFile(box), "");
    for (const f of ["-wal", "-shm"]) rmSync(sqliteFile(box) + f, { force: true });
    for (const args of [["status", "zero"], ["status", file], ["logs", "zero"], ["resume", "zero"], ["run", file], ["repair", file]]) {
      const r = box.run(args);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("is empty (0 bytes)");
      expect(r.stderr).not.toContain("job not found");
    }
    expect(calls(box)).toEqual([1, 2, 3]);
    expect(statSync(sqliteFile(box)).size).toBe(0);
  });
});
