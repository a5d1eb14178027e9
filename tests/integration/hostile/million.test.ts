/**
 * A job of 1,000,000 batches (size 1, a command backend): `status --all`, `status --json` and
 * `run --dry-run --json` finish, in bounded memory (the child's peak RSS well under 1 GB), and
 * their JSON parses: it is checked as it streams, one batch row at a time, never held whole.
 * This file takes about 40 s on a 2-core machine.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, streamRun, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(120_000);

const N = 1_000_000;
const GB = 1024 ** 3;

for (const kind of KINDS) {
  describe(`a job of a million batches (${kind})`, () => {
    let box: Sandbox;
    let file: string;
    beforeAll(async () => {
      box = sandbox(kind);
      file = box.job({
        name: "million",
        batch: { size: 1, total_items: N },
        backend: { type: "command", command: "echo $MOZART_BATCH_NUM >> {job_dir}/calls.log; sleep 0.05", timeout_seconds: 20 },
      });
      // A few batches run, then Ctrl+C: the job exists with a few records and 999,99x pending.
      const p = box.start(["run", file]);
      await waitFor(() => lineCount(`${box.dir}/calls.log`) >= 3, "three batches", 30_000);
      p.child.kill("SIGINT");
      expect((await p.done).code).toBe(130);
    });
    afterAll(() => box?.cleanup());

    test("status --all prints every batch", async () => {
      const r = await streamRun(["status", "million", "--all"], { cwd: box.dir, env: box.env });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.lines).toBeGreaterThan(N);
      expect(r.maxRss).toBeGreaterThan(0);
      expect(r.maxRss).toBeLessThan(GB / 2);
    });

    test("status --json is one document with a million batch rows", async () => {
      let next = 1;
      let inOrder = true;
      const r = await streamRun(["status", "million", "--json"], {
        cwd: box.dir,
        env: box.env,
        arrayKey: "batches",
        onElement: (e) => {
          if ((e as { batch_num: number }).batch_num !== next++) inOrder = false;
        },
      });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.elements).toBe(N);
      expect(inOrder).toBe(true);
      expect(r.envelope).toMatchObject({ job_id: "million", status: "paused", progress: { total: N }, batches: [] });
      expect(r.maxRss).toBeLessThan(GB / 2);
    });

    // The dry run reads no state: once is enough.
    // Once is enough: what it checks does not depend on the state backend.
    if (kind === "sqlite") test("run --dry-run --json is one document with a million batches", async () => {
      const r = await streamRun(["run", file, "--dry-run", "--json"], { cwd: box.dir, env: box.env, arrayKey: "batches" });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.elements).toBe(N);
      expect(r.maxRss).toBeLessThan(GB / 2);
    });
  });
}
