/**
 * `run --shard K/N` for CI matrices without a database: each shard runs batches b with
 * ((b-1) mod N) + 1 = K, with its own state, and `merge-state` combines the shards into one job
 * that `status` and `list` show whole. Real CLI processes, SQLite and JSON state.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sandbox, type Sandbox } from "./engine-helpers.ts";

const boxes: Sandbox[] = [];
afterEach(() => {
  for (const b of boxes.splice(0)) b.cleanup();
});

function shardBox(kind: "sqlite" | "json", total = 10) {
  const box = sandbox(kind);
  boxes.push(box);
  const file = box.job({
    name: "sharded",
    batch: { size: 1, total_items: total },
    backend: { type: "command", command: `echo "{batch_num}" >> ${join(box.dir, "ran.log")}; echo ok` },
  });
  const ran = () => readFileSync(join(box.dir, "ran.log"), "utf8").split("\n").filter(Boolean).map(Number);
  return { box, file, ran };
}

describe("shards", () => {
  for (const kind of ["sqlite", "json"] as const) {
    test(`${kind}: --shard 1/3, 2/3 and 3/3 cover every batch exactly once, and merge-state gives a complete job`, () => {
      const { box, file, ran } = shardBox(kind, 10);
      const shards = [1, 2, 3].map((k) => {
        const r = box.run(["run", file, "--shard", `${k}/3`, "--json"]);
        expect(r.code).toBe(0);
        const doc = JSON.parse(r.stdout);
        expect(doc.outcome).toBe("selection_done");
        return doc.batches.filter((b: { status: string }) => b.status === "completed").map((b: { batch_num: number }) => b.batch_num);
      });
      expect(shards).toEqual([
        [1, 4, 7, 10],
        [2, 5, 8],
        [3, 6, 9],
      ]);
      expect(ran().sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // A shard that already finished its share has nothing to do.
      expect(box.run(["run", file, "--shard", "2/3"]).code).toBe(0);
      expect(ran()).toHaveLength(10);

      const dirs = [1, 2, 3].map((k) => join(box.dir, "ws", ".mozart", "shards", `${k}-of-3`));
      const merged = box.run(["merge-state", ...dirs, "--json"]);
      expect(merged.code).toBe(0);
      expect(JSON.parse(merged.stdout)).toMatchObject({ job_id: "sharded", shards: 3, status: "completed", progress: { completed: 10, total: 10 } });
      const status = box.status("sharded");
      expect(status).toMatchObject({ status: "completed", progress: { completed: 10, failed: 0, total: 10 } });
      expect(status.batches.every((b) => b.status === "completed" && b.attempts === 1)).toBe(true);
      const list = JSON.parse(box.run(["list", "--json"]).stdout);
      expect(list.jobs.find((j: { job_id: string }) => j.job_id === "sharded")).toMatchObject({ status: "completed", completed: 10, total: 10 });
      // The merged log has every shard's events, in time order, numbered afresh.
      const events = box.run(["logs", "sharded", "--json"]).stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l));
      expect(events.map((e: { seq: number }) => e.seq)).toEqual(events.map((_: unknown, i: number) => i + 1));
      expect(events.filter((e: { type: string }) => e.type === "batch_complete")).toHaveLength(10);
      // An attempt's record and output survive the merge.
      const batch = JSON.parse(box.run(["status", "sharded", "--batch", "7", "--json"]).stdout);
      expect(batch.attempts).toHaveLength(1);
      expect(batch.attempts[0].stdout).toContain("ok");
      // The merged job continues like any other: nothing to do.
      expect(box.run(["run", file]).code).toBe(0);
      expect(ran()).toHaveLength(10);
    }, 60_000);
  }

  test("a shard with a failed batch exits 1; merge-state of partial shards says what is left", () => {
    const { box, file } = shardBox("sqlite", 6);
    const failing = box.job({ name: "sharded", batch: { size: 1, total_items: 6 }, retry: { max_retries: 0 }, backend: { type: "command", command: `[ {batch_num} != 6 ] && echo ok` } });
    expect(failing).toBe(file);
    // Shard 2/2 is batches 2, 4 and 6; batch 6 fails.
    expect(box.run(["run", file, "--shard", "2/2"]).code).toBe(1);
    const merged = box.run(["merge-state", join(box.dir, "ws", ".mozart", "shards", "2-of-2"), "--json"]);
    expect(merged.code).toBe(1);
    expect(JSON.parse(merged.stdout)).toMatchObject({ status: "failed", progress: { completed: 2, failed: 1, total: 6 } });
    // Merged twice into the same place is refused, not doubled.
    const again = box.run(["merge-state", join(box.dir, "ws", ".mozart", "shards", "2-of-2")]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("already holds job");
  }, 60_000);

  test("bad --shard values and combinations are usage errors", () => {
    const { box, file } = shardBox("sqlite", 3);
    for (const bad of ["0/3", "4/3", "1/0", "a/b", "3", "1/3/4"]) {
      const r = box.run(["run", file, "--shard", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("--shard expects K/N");
    }
    expect(box.run(["run", file, "--shard", "1/2", "--join"]).code).toBe(2);
    const pg = box.job({ name: "pg", state_backend: "postgres", batch: { size: 1, total_items: 3 } }, "pg.yaml");
    const r = box.run(["run", pg, "--shard", "1/2"], { MOZART_DATABASE_URL: "postgres://x@127.0.0.1:1/x" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("mozart worker");
    expect(box.run(["merge-state", join(box.dir, "nowhere")]).code).toBe(2);
  }, 60_000);
});
