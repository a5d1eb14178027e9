/**
 * isolation: worktree under kill -9: ten kills at seeded random moments, half while a batch's
 * worktree is being created, half while batches are being landed, each followed by a resume
 * that is itself killed, then a resume to the end. The repository stays usable throughout
 * (`git fsck` clean, no index.lock left), every batch lands exactly once, and with
 * merge_strategy: rebase the history stays linear.
 */
import { afterEach, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../processes.ts";
import { commandBackend, sandbox, type Sandbox } from "./engine-helpers.ts";
import { git, makeRepo, subjects, worktrees } from "./worktree-helpers.ts";

const BATCHES = 10;
let box: Sandbox;
afterEach(() => box?.cleanup());

/** index.lock files anywhere under the repository's git folder (its worktrees' included). */
function locks(gitDir: string): string[] {
  return (readdirSync(gitDir, { recursive: true }) as string[]).filter((p) => p.endsWith("index.lock") || p.endsWith("HEAD.lock"));
}

/** Live processes started for this sandbox (they carry its MOZART_HOME): the killed run's git processes finish on their own. */
function leftovers(home: string): number[] {
  const mark = Buffer.from(`MOZART_HOME=${home}\0`);
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]?.startsWith("Z")) continue;
      if (readFileSync(`/proc/${name}/environ`).includes(mark)) pids.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

function fsck(repo: string): { code: number; text: string } {
  const r = spawnSync("git", ["fsck", "--full", "--no-dangling", "--no-progress"], { cwd: repo, encoding: "utf8" });
  return { code: r.status ?? -1, text: `${r.stdout}${r.stderr}` };
}

test("kill -9 ten times while worktrees are created and batches land, then resume: fsck clean, each batch landed once, linear history", async () => {
  box = sandbox("sqlite");
  const repo = join(box.dir, "ws");
  // Enough files that a checkout takes a moment, so kills land inside worktree creation.
  const files: Record<string, string> = { ".gitattributes": "log.txt merge=union\n", "log.txt": "" };
  for (let i = 0; i < 400; i++) files[`src/d${i % 20}/f${i}.txt`] = `file ${i}\n`.repeat(20);
  makeRepo(repo, files);
  const job = box.job({
    name: "kill-job",
    isolation: "worktree",
    merge_strategy: "rebase",
    concurrency: 2,
    batch: { size: 1, total_items: BATCHES },
    backend: commandBackend(`sleep 0.1; echo "line $MOZART_BATCH_NUM" >> log.txt; echo "$MOZART_BATCH_NUM" > b$MOZART_BATCH_NUM.txt`),
    validations: [{ type: "file_exists", path: "b{batch_num}.txt" }],
  });
  const root = join(repo, ".mozart", "worktrees", "kill-job");
  const random = mulberry32(1207);
  const landedCount = () => Number(git(repo, "rev-list", "--count", "main"));
  // git checks files out in path order: a batch folder without the last path is being created.
  const lastPath = Object.keys(files).sort().at(-1)!;
  const creating = () => readdirSync(root, { withFileTypes: true }).some((d) => d.isDirectory() && d.name.startsWith("batch-") && !existsSync(join(root, d.name, lastPath)));
  let midCreation = 0;
  let midLanding = 0;

  for (let k = 0; k < 10; k++) {
    const p = box.start(k === 0 ? ["run", job] : ["resume", "kill-job"]);
    const before = landedCount();
    if (k % 2 === 0) {
      // During worktree creation: as soon as a batch folder appears, within a few ms.
      for (let t = 0; t < 15_000 && p.child.exitCode === null && !(existsSync(root) && creating()); t += 5) await Bun.sleep(5);
      await Bun.sleep(Math.floor(random() * 30));
      midCreation++;
    } else {
      // During landing: once a batch has landed in this round, at a random moment after (the next is on its way).
      for (let t = 0; t < 15_000 && p.child.exitCode === null && landedCount() === before; t += 5) await Bun.sleep(5);
      await Bun.sleep(Math.floor(random() * 150));
      midLanding++;
    }
    p.child.kill("SIGKILL");
    await p.done;
    // git processes of the killed run (their own process groups) finish on their own; then nothing may be left.
    for (let t = 0; t < 30_000 && leftovers(box.home).length; t += 20) await Bun.sleep(20);
    expect(leftovers(box.home)).toEqual([]);
    const f = fsck(repo);
    expect(f.text).not.toMatch(/error|missing|broken|corrupt/i);
    expect(f.code).toBe(0);
    expect(locks(join(repo, ".git"))).toEqual([]);
    // Every worktree left is one git can use or prune: none stays locked by a creation cut short.
    expect(git(repo, "worktree", "list", "--porcelain")).not.toMatch(/^locked/m);
    expect(git(repo, "rev-list", "--merges", "main")).toBe("");
  }
  expect(midCreation).toBe(5);
  expect(midLanding).toBe(5);

  const last = box.run(["resume", "kill-job"]);
  expect(last.stderr).not.toContain("error:");
  expect(last.code).toBe(0);

  const f = fsck(repo);
  expect(f.code).toBe(0);
  expect(f.text).not.toMatch(/error|missing|broken|corrupt/i);
  expect(locks(join(repo, ".git"))).toEqual([]);
  // Every batch landed exactly once, in batch order, one commit each, on a linear history.
  const all = [...Array(BATCHES).keys()].map((i) => i + 1);
  expect(subjects(repo).slice(1)).toEqual(all.map((n) => `Mozart: kill-job batch ${n} of ${BATCHES} (items ${n}–${n})`));
  expect(git(repo, "rev-list", "--merges", "main")).toBe("");
  expect(box.lines("ws/log.txt")).toEqual(all.map((n) => `line ${n}`));
  // The state agrees: one batch_merged event per batch, every batch merged.
  const events = box
    .run(["logs", "kill-job", "--json"])
    .stdout.split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; batch_num?: number });
  const merged = events.filter((e) => e.type === "batch_merged").map((e) => e.batch_num);
  expect(merged).toEqual(all);
  const doc = JSON.parse(box.run(["status", "kill-job", "--json"]).stdout) as { status: string; batches: Array<{ status: string; git: { merge: string } | null }> };
  expect(doc.status).toBe("completed");
  expect(doc.batches.map((b) => b.git?.merge)).toEqual(all.map(() => "merged"));
  // Nothing left: no worktree git knows of, none on disk.
  expect(worktrees(repo)).toEqual([repo]);
  expect(existsSync(root) ? readdirSync(root) : []).toEqual([]);
}, 240_000);
