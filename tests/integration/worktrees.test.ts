/**
 * isolation: worktree end to end: real git repositories in temp folders, the real CLI, the
 * `command` backend and the fake `claude` editing files. Each batch works in a worktree of its
 * own; completed batches land on the target branch in batch order; conflicts, failures, shared
 * folders, setup, the reaper, `mozart clean` and the refusals.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES } from "../helpers.ts";
import { commandBackend, sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";
import { branches, dirtyFiles, git, gitCode, makeRepo, subjects, worktrees, writeFiles } from "./worktree-helpers.ts";

const FAKE = join(FIXTURES, "fake-claude");

interface GitRow {
  branch: string;
  merge: string;
  commit: string | null;
  conflict_files: string[];
  resolve: string[];
  kept_branch: string | null;
}
interface Doc {
  status: string;
  error: string | null;
  progress: { completed: number; failed: number; conflict: number; total: number };
  git: { target: string | null; merge: string; strategy: string; worktrees: { count: number; disk_bytes: number; folder: string } } | null;
  batches: Array<{ batch_num: number; status: string; error: string | null; last_output: string | null; git: GitRow | null }>;
}

let box: Sandbox;
afterEach(() => box?.cleanup());

const statusDoc = (): Doc => JSON.parse(box.run(["status", "test-job", "--json"]).stdout) as Doc;
const repoOf = (b: Sandbox) => join(b.dir, "ws");
const wtPath = (b: Sandbox, n: number) => join(realpathSync(repoOf(b)), ".mozart", "worktrees", "test-job", `batch-${n}`);
const onlyMain = (b: Sandbox) => expect(worktrees(repoOf(b))).toEqual([realpathSync(repoOf(b))]);

describe("isolation: worktree", () => {
  test("concurrency 4, one file: eight batches each append their line in their own worktree; all land in batch order, none lost", () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { ".gitattributes": "log.txt merge=union\n", "log.txt": "", "README.md": "hello\n" });
    const job = box.job({
      isolation: "worktree",
      concurrency: 4,
      batch: { size: 1, total_items: 8 },
      prompt: { template: "Batch {{ batch_num }} works in {{ workspace }}\n" },
      backend: commandBackend(
        `echo "start $MOZART_BATCH_NUM" >> {job_dir}/order.log; cat > {job_dir}/prompt-$MOZART_BATCH_NUM.txt; echo "$MOZART_WORKTREE|$(pwd)" > {job_dir}/where-$MOZART_BATCH_NUM.txt;` +
          ` sleep 0.3; echo "line $MOZART_BATCH_NUM" >> log.txt; echo done > b$MOZART_BATCH_NUM.txt; echo "end $MOZART_BATCH_NUM" >> {job_dir}/order.log`,
      ),
      validations: [
        // Validations run in the batch's worktree: its file is there, and only its own line (no other batch's work).
        { type: "file_exists", path: "b{batch_num}.txt" },
        { type: "command_succeeds", command: 'test "$(pwd)" = "$MOZART_WORKTREE" && grep -qx "line {batch_num}" log.txt && test "$(wc -l < log.txt)" -eq 1' },
      ],
    });
    const r = box.run(["run", job]);
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);

    expect(box.lines("ws/log.txt")).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((n) => `line ${n}`));
    expect(subjects(repo)).toEqual(["initial", ...[1, 2, 3, 4, 5, 6, 7, 8].map((n) => `Mozart: merge test-job batch ${n} (items ${n}–${n})`)]);
    // Every commit but the initial one (by range, not by count: commit times have whole seconds, so the initial commit can sort among the batches').
    const initial = git(repo, "rev-list", "--max-parents=0", "main").trim();
    expect(git(repo, "log", "--format=%an", "--no-merges", "main", "--not", initial).split("\n")).toEqual(Array(8).fill("Mozart"));
    // Eight worktrees, each the batch's own; the template's {{ workspace }} is it too.
    const where = [1, 2, 3, 4, 5, 6, 7, 8].map((n) => box.read(`where-${n}.txt`).trim().split("|"));
    for (const [i, [wt, pwd]] of where.entries()) {
      expect(wt).toBe(wtPath(box, i + 1));
      expect(pwd).toBe(wt!);
      expect(box.read(`prompt-${i + 1}.txt`)).toBe(`Batch ${i + 1} works in ${wt}\n`);
    }
    // They ran at once: a batch started before an earlier one ended.
    const order = box.lines("order.log");
    let running = 0;
    let most = 0;
    for (const l of order) {
      running += l.startsWith("start") ? 1 : -1;
      most = Math.max(most, running);
    }
    expect(most).toBeGreaterThan(1);
    // Nothing left behind: no worktree, no batch branch, a clean main tree.
    onlyMain(box);
    expect(branches(repo)).toEqual(["main"]);
    expect(dirtyFiles(repo)).toEqual([]);
    const doc = statusDoc();
    expect(doc.git).toMatchObject({ target: "main", merge: "ordered", strategy: "merge", worktrees: { count: 0, disk_bytes: 0 } });
    expect(doc.batches.map((b) => [b.status, b.git?.merge])).toEqual(Array(8).fill(["completed", "merged"]));
  });

  for (const kind of ["sqlite", "json"] as Kind[]) {
    test(`a conflict (${kind} state): the second batch gets status conflict with the file named; the target stays clean; resolving it and resume lands it`, () => {
      box = sandbox(kind);
      const repo = repoOf(box);
      makeRepo(repo, { "doc.txt": "title: original\nbody\n" });
      const job = box.job({
        isolation: "worktree",
        retry: { max_retries: 0 },
        backend: commandBackend(
          `if [ $MOZART_BATCH_NUM -le 2 ]; then sed "s/^title: .*/title: by batch $MOZART_BATCH_NUM/" doc.txt > doc.new && mv doc.new doc.txt; else echo three > three.txt; fi`,
        ),
      });
      const summary = join(box.dir, "step-summary.md");
      const r = box.run(["run", job], { GITHUB_STEP_SUMMARY: summary });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("batch 2 could not be merged: merge conflict in doc.txt");
      expect(r.stdout).toContain("could not be merged");
      expect(readFileSync(summary, "utf8")).toContain("| 2 | `doc.txt` | merge conflict in doc.txt |");
      expect(box.run(["list"]).stdout).toContain("test-job: 1 batch could not be merged (conflict)");

      const doc = statusDoc();
      expect(doc.status).toBe("failed");
      expect(doc.progress).toMatchObject({ completed: 2, conflict: 1, failed: 0 });
      const b2 = doc.batches[1]!;
      expect(b2.status).toBe("conflict");
      expect(b2.git!.conflict_files).toEqual(["doc.txt"]);
      expect(b2.git!.resolve).toEqual([`cd ${wtPath(box, 2)}`, expect.stringContaining("git merge main"), expect.stringContaining("mozart resume test-job")]);
      // Batch 3 completed, but lands only after batch 2, in batch order.
      expect(doc.batches[2]).toMatchObject({ status: "completed", git: { merge: "ready" } });
      // The conflict's worktree is there for the resolution, and status says what it takes on disk.
      expect(doc.git!.worktrees.count).toBe(1);
      expect(doc.git!.worktrees.disk_bytes).toBeGreaterThan(0);
      const human = box.run(["status", "test-job"]).stdout;
      expect(human).toMatch(/worktrees {2}1 in \S+, [\d.]+ KB on disk/);
      expect(human).toContain("batch 2 could not be merged");
      expect(human).toContain("files: doc.txt");
      expect(human).toContain("git merge main");

      // The target branch and the main tree are clean: batch 1's change only, no merge in progress.
      expect(box.read("ws/doc.txt")).toBe("title: by batch 1\nbody\n");
      expect(existsSync(join(repo, ".git", "MERGE_HEAD"))).toBe(false);
      expect(git(repo, "diff", "--name-only", "--diff-filter=U")).toBe("");
      expect(dirtyFiles(repo)).toEqual([]);
      expect(existsSync(join(repo, "three.txt"))).toBe(false);

      // Resolve it where the status says, then resume.
      const wt = wtPath(box, 2);
      expect(gitCode(wt, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "merge", "main")).toBe(1);
      writeFileSync(join(wt, "doc.txt"), "title: by batch 1 and 2\nbody\n");
      git(wt, "add", "doc.txt");
      git(wt, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", "resolve batch 2");
      const again = box.run(["resume", "test-job"]);
      expect(again.stderr).not.toContain("error:");
      expect(again.code).toBe(0);
      expect(box.read("ws/doc.txt")).toBe("title: by batch 1 and 2\nbody\n");
      expect(box.read("ws/three.txt")).toBe("three\n");
      expect(subjects(repo).slice(1)).toEqual([1, 2, 3].map((n) => `Mozart: merge test-job batch ${n} (items ${n}–${n})`));
      // The resolution did not run the batch again.
      expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "3 1"]);
      expect(statusDoc().batches.map((b) => b.git?.merge)).toEqual(["merged", "merged", "merged"]);
      onlyMain(box);
      const logs = box.run(["logs", "test-job"]).stdout;
      expect(logs).toContain("batch 2 could not be merged");
      expect(logs).toContain("batch 2 landed on main");
    });
  }

  test("resume --rerun-conflicts runs the batch again on the new base, and it lands", () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { "doc.txt": "title: original\nbody\n" });
    const job = box.job({
      isolation: "worktree",
      merge_strategy: "rebase",
      retry: { max_retries: 0 },
      backend: commandBackend(
        `grep title doc.txt > {job_dir}/saw-$MOZART_BATCH_NUM-$MOZART_ATTEMPT.txt; if [ $MOZART_BATCH_NUM -le 2 ]; then sed "s/^title: .*/title: by batch $MOZART_BATCH_NUM/" doc.txt > doc.new && mv doc.new doc.txt; else echo three > three.txt; fi`,
      ),
    });
    expect(box.run(["run", job]).code).toBe(1);
    expect(statusDoc().batches.map((b) => b.status)).toEqual(["completed", "conflict", "completed"]);
    expect(box.read("saw-2-1.txt")).toBe("title: original\n");
    const r = box.run(["resume", "test-job", "--rerun-conflicts"]);
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    // The re-run started from what is on the target now: batch 1's title.
    expect(box.read("saw-2-2.txt")).toBe("title: by batch 1\n");
    expect(box.lines("calls.log")).toEqual(["1 1", "2 1", "3 1", "2 2"]);
    expect(box.read("ws/doc.txt")).toBe("title: by batch 2\nbody\n");
    expect(box.read("ws/three.txt")).toBe("three\n");
    // rebase: a linear history, one commit per batch, in batch order.
    expect(git(repo, "rev-list", "--merges", "main")).toBe("");
    expect(subjects(repo).slice(1)).toEqual([1, 2, 3].map((n) => `Mozart: test-job batch ${n} of 3 (items ${n}–${n})`));
  });

  for (const kind of ["sqlite", "json"] as Kind[]) {
    const keep = kind === "sqlite";
    test(`a failed batch (${kind}, keep_failed: ${keep}): its edits never reach the target${keep ? "; its branch is kept" : ""}`, () => {
      box = sandbox(kind);
      const repo = repoOf(box);
      makeRepo(repo, { "a.txt": "a\n" });
      const flag = join(box.dir, "broken");
      writeFileSync(flag, "");
      const job = box.job({
        isolation: "worktree",
        keep_failed: keep,
        retry: { max_retries: 0 },
        backend: commandBackend(`echo edit > edit-$MOZART_BATCH_NUM.txt; if [ $MOZART_BATCH_NUM = 2 ] && [ -f ${flag} ]; then echo poison > poison.txt; exit 3; fi`),
      });
      expect(box.run(["run", job]).code).toBe(1);
      expect(existsSync(join(repo, "edit-1.txt"))).toBe(true);
      expect(existsSync(join(repo, "poison.txt"))).toBe(false);
      expect(existsSync(join(repo, "edit-2.txt"))).toBe(false);
      expect(git(repo, "log", "--format=%s", "main")).not.toContain("batch 2");
      onlyMain(box);
      const failedBranch = "mozart/test-job/failed/batch-2";
      if (keep) {
        expect(branches(repo)).toEqual(["main", failedBranch]);
        expect(git(repo, "show", `${failedBranch}:poison.txt`)).toBe("poison");
        expect(gitCode(repo, "merge-base", "--is-ancestor", failedBranch, "main")).toBe(1);
        expect(statusDoc().batches[1]!.git).toMatchObject({ merge: "discarded", kept_branch: failedBranch });
        expect(box.run(["status", "test-job"]).stdout).toContain(failedBranch);
      } else {
        expect(branches(repo)).toEqual(["main"]);
      }
      // Fixed, the batch runs again in a fresh worktree: the failed attempt's files are not there.
      rmSync(flag);
      expect(box.run(["resume", "test-job"]).code).toBe(0);
      expect(existsSync(join(repo, "edit-2.txt"))).toBe(true);
      expect(existsSync(join(repo, "edit-3.txt"))).toBe(true);
      expect(existsSync(join(repo, "poison.txt"))).toBe(false);
      onlyMain(box);
    });
  }

  test("merge: none leaves one branch per completed batch with the right commit (the fake claude edits files); status lists them", () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { "README.md": "hello\n" });
    const base = git(repo, "rev-parse", "main");
    const job = box.job({
      isolation: "worktree",
      merge: "none",
      concurrency: 2,
      backend: { type: "claude_cli", cli_path: FAKE, skip_permissions: true, timeout_seconds: 30 },
      prompt: { template: "Do batch {{ batch_num }}.\nWRITE: out/b{{ batch_num }}.md :: done {{ batch_num }}\n" },
      validations: [{ type: "file_exists", path: "out/b{batch_num}.md" }],
    });
    const r = box.run(["run", job], { FAKE_CLAUDE_SCENARIO: "write-files", FAKE_CLAUDE_PRETEND_ROOT: "0" });
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    expect(git(repo, "rev-parse", "main")).toBe(base);
    expect(existsSync(join(repo, "out"))).toBe(false);
    expect(branches(repo)).toEqual(["main", "mozart/test-job/batch-1", "mozart/test-job/batch-2", "mozart/test-job/batch-3"]);
    for (const n of [1, 2, 3]) {
      const branch = `mozart/test-job/batch-${n}`;
      expect(git(repo, "log", "--format=%an|%s", `main..${branch}`)).toBe(`Mozart|Mozart: test-job batch ${n} of 3 (items ${n}–${n})`);
      expect(git(repo, "diff", "--name-only", "main", branch)).toBe(`out/b${n}.md`);
      expect(git(repo, "show", `${branch}:out/b${n}.md`)).toBe(`done ${n}`);
    }
    // claude ran in each batch's worktree.
    const cwds = box.lines("claude-calls.jsonl").map((l) => (JSON.parse(l) as { cwd: string }).cwd).sort();
    expect(cwds).toEqual([1, 2, 3].map((n) => wtPath(box, n)));
    onlyMain(box);
    const human = box.run(["status", "test-job"]).stdout;
    expect(human).toContain("one branch per batch (merge: none)");
    for (const n of [1, 2, 3]) expect(human).toContain(`batch ${n}: mozart/test-job/batch-${n}`);
    expect(statusDoc().batches.map((b) => b.git?.merge)).toEqual(["branch", "branch", "branch"]);
  });

  test("share links the folder from the main tree (never committed); setup runs once per worktree", () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { ".gitignore": "node_modules/\n", "src.txt": "x\n" });
    writeFiles(repo, { "node_modules/dep/index.js": "module.exports = 42;\n" });
    const setupLog = join(box.dir, "setup.log");
    const job = box.job({
      isolation: "worktree",
      concurrency: 3,
      worktree: { share: ["node_modules"], setup: 'test -L node_modules && echo "$MOZART_WORKTREE" >> "$SETUP_LOG"' },
      backend: commandBackend(`readlink node_modules > {job_dir}/link-$MOZART_BATCH_NUM.txt; cat node_modules/dep/index.js > used-$MOZART_BATCH_NUM.txt`),
      validations: [{ type: "file_exists", path: "used-{batch_num}.txt" }],
    });
    const r = box.run(["run", job], { SETUP_LOG: setupLog });
    expect(r.stderr).not.toContain("error:");
    expect(r.code).toBe(0);
    for (const n of [1, 2, 3]) {
      expect(box.read(`link-${n}.txt`).trim()).toBe(join(repo, "node_modules"));
      expect(box.read(`ws/used-${n}.txt`)).toBe("module.exports = 42;\n");
    }
    expect(box.lines("setup.log").sort()).toEqual([1, 2, 3].map((n) => wtPath(box, n)));
    expect(git(repo, "ls-tree", "-r", "--name-only", "main").split("\n")).not.toContain("node_modules");
    expect(lstatSync(join(repo, "node_modules")).isDirectory()).toBe(true);
    expect(readFileSync(join(repo, "node_modules/dep/index.js"), "utf8")).toBe("module.exports = 42;\n");
    onlyMain(box);
  });

  test("a finished batch's worktree is made the next batch's (the same worktree, moved), exactly as a new one: the base's files, nothing left of the batch before, shared links and setup again", () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { ".gitignore": "node_modules/\n*.tmp\n", "notes.txt": "base\n", "keep.txt": "tracked\n" });
    writeFiles(repo, { "node_modules/dep/index.js": "module.exports = 1;\n" });
    const setupLog = join(box.dir, "setup.log");
    // Each batch notes its worktree's admin folder (named after the worktree it was made as: a moved
    // worktree keeps it) and what it finds, then leaves debris of every kind: a new file that lands,
    // an edit, an ignored file, a folder, a deleted tracked file. Batch 4 fails its validation, so
    // its edits are discarded, not landed.
    const job = box.job({
      isolation: "worktree",
      concurrency: 1,
      retry: { max_retries: 0 },
      worktree: { share: ["node_modules"], setup: 'echo "$MOZART_BATCH_NUM" >> "$SETUP_LOG"' },
      batch: { size: 1, total_items: 4 },
      backend: commandBackend(
        `n=$MOZART_BATCH_NUM; echo "$n $(basename "$(git rev-parse --git-dir)") $(cat notes.txt | tr '\\n' ,) $(ls -A | grep -v '^.git$' | sort | tr '\\n' ,) $(readlink node_modules)" >> {job_dir}/seen.log;` +
          ` echo "batch $n" > b-$n.txt; echo "edit $n" >> notes.txt; echo junk > junk-$n.tmp; rm keep.txt; mkdir -p dir-$n; echo x > dir-$n/f; git checkout -q notes.txt; [ "$n" != 4 ]`,
      ),
    });
    const r = box.run(["run", job], { SETUP_LOG: setupLog });
    expect(r.code).toBe(1); // batch 4 failed
    const seen = box.lines("seen.log").map((l) => l.split(" "));
    expect(seen.map(([n]) => n)).toEqual(["1", "2", "3", "4"]);
    // One worktree throughout: batches 2-4 each got the worktree of the batch before, moved.
    expect(seen.map(([, admin]) => admin)).toEqual(["batch-1", "batch-1", "batch-1", "batch-1"]);
    for (const [, , notes, files, link] of seen) {
      // Every batch starts from the job's base: landed work, ignored files, folders and deletions of the batch before are gone.
      expect(notes).toBe("base,");
      expect(files).toBe(".gitignore,keep.txt,node_modules,notes.txt,");
      expect(link).toBe(join(repo, "node_modules"));
    }
    expect(box.lines("setup.log")).toEqual(["1", "2", "3", "4"]);
    // Batches 1-3 landed in order; batch 4's edits never reached the target.
    expect(git(repo, "ls-tree", "-r", "--name-only", "main").split("\n").sort()).toEqual([".gitignore", "b-1.txt", "b-2.txt", "b-3.txt", "dir-1/f", "dir-2/f", "dir-3/f", "notes.txt"]);
    const doc = statusDoc();
    expect(doc.batches.map((b) => [b.status, b.git?.merge])).toEqual([["completed", "merged"], ["completed", "merged"], ["completed", "merged"], ["failed", "discarded"]]);
    // The spare went with the run.
    onlyMain(box);
    const root = join(repo, ".mozart", "worktrees", "test-job");
    expect(existsSync(root) ? readdirSync(root) : []).toEqual([]);
  });

  test("a setup failure fails the batch with its output; no attempt runs", () => {
    box = sandbox("json");
    makeRepo(repoOf(box), { "a.txt": "a\n" });
    const job = box.job({ isolation: "worktree", worktree: { setup: 'echo "npm ERR! could not resolve left-pad" >&2; exit 7' }, backend: commandBackend("true") });
    const r = box.run(["run", job]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("worktree.setup failed (exit code 7)");
    const b = statusDoc().batches[0]!;
    expect(b.status).toBe("failed");
    expect(b.error).toContain("worktree.setup failed (exit code 7)");
    expect(b.last_output).toContain("npm ERR! could not resolve left-pad");
    expect(box.run(["status", "test-job"]).stdout).toContain("npm ERR! could not resolve left-pad");
    expect(box.lines("calls.log")).toEqual([]);
    onlyMain(box);
  });

  test("reaper: an interrupted batch's worktree is gone after the run; mozart clean removes every worktree and keeps unmerged branches", async () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { "doc.txt": "title: original\n" });
    const started = join(box.dir, "started");
    const job = box.job({
      isolation: "worktree",
      retry: { max_retries: 0 },
      backend: commandBackend(
        `if [ $MOZART_BATCH_NUM -le 2 ]; then sed "s/^title: .*/title: $MOZART_BATCH_NUM/" doc.txt > d && mv d doc.txt; else echo three > three.txt; fi; if [ ! -f {job_dir}/slow-done ]; then touch {job_dir}/slow-done ${started}; sleep 30; fi`,
      ),
    });
    // Stopped at once (two Ctrl+C) in the middle of batch 1: its worktree goes with the run.
    const p = box.start(["run", job]);
    for (let i = 0; i < 400 && !existsSync(started); i++) await Bun.sleep(25);
    p.child.kill("SIGINT");
    await Bun.sleep(200);
    p.child.kill("SIGINT");
    const stopped = await p.done;
    expect(stopped.code).toBe(130);
    onlyMain(box);
    expect(branches(repo)).toEqual(["main"]);

    // Batch 2 conflicts with batch 1: its worktree stays for the resolution. Batch 3, waiting
    // behind it, keeps its work on its branch, not in a worktree.
    expect(box.run(["resume", "test-job"]).code).toBe(1);
    expect(worktrees(repo)).toEqual([realpathSync(repo), wtPath(box, 2)]);
    expect(statusDoc().batches[2]).toMatchObject({ status: "completed", git: { merge: "ready" } });
    const cleaned = box.run(["clean", "test-job", "--json"]);
    expect(cleaned.code).toBe(0);
    const out = JSON.parse(cleaned.stdout) as { removed: string[]; kept_branches: string[] };
    expect(out.removed).toEqual([wtPath(box, 2)]);
    expect(out.kept_branches.sort()).toEqual(["mozart/test-job/batch-2", "mozart/test-job/batch-3"]);
    onlyMain(box);
    expect(git(repo, "worktree", "prune", "--dry-run", "-v")).toBe("");
    expect(existsSync(wtPath(box, 2))).toBe(false);
    // The work is still on its branches: re-run the conflict, and batch 3 lands from its branch.
    const r = box.run(["resume", "test-job", "--rerun-conflicts"]);
    expect(r.code).toBe(0);
    expect(subjects(repo).slice(1)).toEqual([1, 2, 3].map((n) => `Mozart: merge test-job batch ${n} (items ${n}–${n})`));
    onlyMain(box);
    expect(branches(repo)).toEqual(["main"]);
  });

  test("a shard (run --shard) lands its own batches in order, never waiting for another shard's", () => {
    box = sandbox("sqlite");
    const repo = repoOf(box);
    makeRepo(repo, { "a.txt": "a\n" });
    const job = box.job({ isolation: "worktree", batch: { size: 1, total_items: 4 }, backend: commandBackend("echo $MOZART_BATCH_NUM > b$MOZART_BATCH_NUM.txt") });
    expect(box.run(["run", job, "--shard", "2/2"]).code).toBe(0);
    expect(box.run(["run", job, "--shard", "1/2"]).code).toBe(0);
    expect(subjects(repo).slice(1)).toEqual([2, 4, 1, 3].map((n) => `Mozart: merge test-job batch ${n} (items ${n}–${n})`));
    for (const n of [1, 2, 3, 4]) expect(box.read(`ws/b${n}.txt`)).toBe(`${n}\n`);
    onlyMain(box);
  });

  test("mozart clean refuses a job that does not use worktrees", () => {
    box = sandbox("sqlite");
    const job = box.job({ backend: commandBackend("true") });
    expect(box.run(["run", job]).code).toBe(0);
    const r = box.run(["clean", "test-job"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("does not run in worktrees");
  });

  describe("refusals", () => {
    test("a dirty main tree is refused with what is dirty and what to do; nothing is recorded; allow_dirty runs without it", () => {
      box = sandbox("sqlite");
      const repo = repoOf(box);
      makeRepo(repo, { "a.txt": "a\n" });
      writeFileSync(join(repo, "a.txt"), "a\nlocal edit\n");
      writeFileSync(join(repo, "notes.txt"), "scratch\n");
      const job = box.job({ isolation: "worktree", backend: commandBackend(`grep -q "local edit" a.txt && exit 9; echo $MOZART_BATCH_NUM > b$MOZART_BATCH_NUM.txt`) });
      const r = box.run(["run", job]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`the main tree ${realpathSync(repo)} has uncommitted changes: a.txt, notes.txt`);
      expect(r.stderr).toContain("allow_dirty: true");
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const json = box.run(["run", job, "--json"]);
      expect(json.code).toBe(2);
      expect((JSON.parse(json.stdout) as { error: { message: string } }).error.message).toContain("uncommitted changes");
      expect(box.run(["status", "test-job"]).code).toBe(1);

      const allowed = box.job({ isolation: "worktree", allow_dirty: true, backend: commandBackend(`grep -q "local edit" a.txt && exit 9; echo $MOZART_BATCH_NUM > b$MOZART_BATCH_NUM.txt`) });
      expect(box.run(["run", allowed]).code).toBe(0);
      // Batches started from the last commit; the local edit is still there, untouched.
      expect(box.read("ws/a.txt")).toBe("a\nlocal edit\n");
      expect(box.read("ws/b3.txt")).toBe("3\n");
    });

    test("git older than 2.30 is refused", () => {
      box = sandbox("sqlite");
      makeRepo(repoOf(box), { "a.txt": "a\n" });
      const real = spawnSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).stdout.trim();
      writeFiles(box.dir, { "old-git/git": `#!/bin/sh\nfor a in "$@"; do [ "$a" = version ] && { echo "git version 2.20.1"; exit 0; }; done\nexec ${real} "$@"\n` });
      spawnSync("chmod", ["+x", join(box.dir, "old-git", "git")]);
      const r = box.run(["run", box.job({ isolation: "worktree", backend: commandBackend("true") })], { PATH: `${join(box.dir, "old-git")}:${process.env.PATH}` });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("isolation: worktree needs git 2.30.0 or newer; this is git version 2.20.1");
      expect(r.stderr).toContain("upgrade git");
    });

    test("a workspace outside git is refused with how to make it one", () => {
      box = sandbox("sqlite");
      writeFiles(repoOf(box), { "a.txt": "a\n" });
      const r = box.run(["run", box.job({ isolation: "worktree", backend: commandBackend("true") })]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("is not inside a git repository");
      expect(r.stderr).toContain("git init");
      expect(r.stderr).toContain("isolation: none");
    });

    test("a detached HEAD is refused with merge: ordered, and runs with merge: none", () => {
      box = sandbox("sqlite");
      const repo = repoOf(box);
      makeRepo(repo, { "a.txt": "a\n" });
      git(repo, "checkout", "-q", "--detach");
      const r = box.run(["run", box.job({ isolation: "worktree", backend: commandBackend("echo x > x$MOZART_BATCH_NUM") })]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("HEAD is detached");
      expect(r.stderr).toContain("merge_into");
      expect(box.run(["run", box.job({ isolation: "worktree", merge: "none", backend: commandBackend("echo x > x$MOZART_BATCH_NUM") })]).code).toBe(0);
      expect(branches(repo)).toEqual(["main", "mozart/test-job/batch-1", "mozart/test-job/batch-2", "mozart/test-job/batch-3"]);
    });
  });
});
