/**
 * kill -9 during `resume --force` and `resume --from`, at the worst moments: right after the
 * batch records were cleared or reset (before the job record and the registry say so), and in
 * the middle of the first new attempt. The job is never completed while batches are not, status,
 * list and the batch records never contradict, and a plain resume continues.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sandbox, type Kind, type Sandbox } from "../engine-helpers.ts";
import { CHAOS_BATCHES, chaosJob, checkRecords } from "./kill-chaos.ts";
import { KINDS, lineCount, readText, stateDir, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

/** Batch statuses as stored, read straight from the store (no CLI in between: this must be fast). */
function storedStatuses(box: Sandbox, kind: Kind, ws: string, job: string): Map<number, string> {
  const out = new Map<number, string>();
  if (kind === "json") {
    const dir = join(stateDir(box, ws), "batches", job);
    if (!existsSync(dir)) return out;
    for (const name of readdirSync(dir)) {
      if (!/^\d+\.json$/.test(name)) continue;
      try {
        out.set(Number(name.slice(0, -5)), (JSON.parse(readFileSync(join(dir, name), "utf8")) as { status: string }).status);
      } catch {
        // being replaced
      }
    }
    return out;
  }
  const db = new Database(join(stateDir(box, ws), "state.db"), { readonly: true });
  try {
    for (const r of db.query("SELECT n, status FROM batches WHERE job = ?").all(job) as Array<{ n: number; status: string }>) out.set(r.n, r.status);
  } finally {
    db.close();
  }
  return out;
}

/** Spins (no sleeping, so the kill lands within a millisecond or so) until `seen` holds, then kill -9. */
function killWhen(pid: number, seen: () => boolean, timeoutMs = 15_000): boolean {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    let hit = false;
    try {
      hit = seen();
    } catch {
      // the store is mid-write; look again
    }
    if (hit) {
      process.kill(pid, "SIGKILL");
      return true;
    }
  }
  return false;
}

for (const kind of KINDS) {
  describe(`kill -9 during resume --force / --from (${kind})`, () => {
    let box: Sandbox;
    afterEach(() => box?.cleanup());

    const setup = (name: string) => {
      box = sandbox(kind);
      const file = chaosJob(box, name);
      expect(box.run(["run", file]).code).toBe(0);
      return { file, ws: `ws-${name}`, log: `${box.dir}/exec-${name}.log` };
    };

    test("--force killed right after it cleared the batch records", async () => {
      const { ws, log } = setup("force-clear");
      const p = box.start(["resume", "force-clear", "--force"]);
      expect(killWhen(p.child.pid!, () => storedStatuses(box, kind, ws, "force-clear").size === 0)).toBe(true);
      await p.done;
      const doc = checkRecords(box, "force-clear");
      expect(doc.status).not.toBe("completed");
      expect(box.run(["resume", "force-clear"]).code).toBe(0);
      expect(checkRecords(box, "force-clear").status).toBe("completed");
      expect(lineCount(log)).toBeGreaterThanOrEqual(2 * CHAOS_BATCHES);
    });

    test("--from killed right after it reset the batches from N", async () => {
      const { log } = setup("from-reset");
      const p = box.start(["resume", "from-reset", "--from", "9"]);
      expect(killWhen(p.child.pid!, () => storedStatuses(box, kind, "ws-from-reset", "from-reset").get(9) === "pending")).toBe(true);
      await p.done;
      const doc = checkRecords(box, "from-reset");
      expect(doc.status).not.toBe("completed");
      expect(doc.batches.filter((b) => b.batch_num < 9).every((b) => b.status === "completed")).toBe(true);
      expect(box.run(["resume", "from-reset"]).code).toBe(0);
      expect(checkRecords(box, "from-reset").status).toBe("completed");
      // Batches before 9 ran once, in the first run.
      const calls = readText(log).split("\n").filter(Boolean).map(Number);
      expect(calls.slice(CHAOS_BATCHES).filter((n) => n < 9)).toEqual([]);
    });

    for (const mode of ["force", "from"] as const) {
      test(`--${mode} killed in the middle of its first attempts`, async () => {
        const name = `mid-${mode}`;
        const { log } = setup(name);
        const p = box.start(mode === "force" ? ["resume", name, "--force"] : ["resume", name, "--from", "3"]);
        await waitFor(() => lineCount(log) >= CHAOS_BATCHES + 3, "the new run's attempts");
        p.child.kill("SIGKILL");
        await p.done;
        await Bun.sleep(100);
        const doc = checkRecords(box, name);
        expect(doc.status).toBe("paused");
        expect(doc.progress.completed).toBeLessThan(CHAOS_BATCHES);
        // Resume continues: the batches the killed run completed are not run again.
        const done = new Set(doc.batches.filter((b) => b.status === "completed").map((b) => b.batch_num));
        const before = lineCount(log);
        expect(box.run(["resume", name]).code).toBe(0);
        expect(checkRecords(box, name).status).toBe("completed");
        const again = readText(log).split("\n").filter(Boolean).map(Number).slice(before);
        expect(again.filter((n) => done.has(n))).toEqual([]);
        expect(new Set(again).size + done.size).toBe(CHAOS_BATCHES);
      });
    }
  });
}
