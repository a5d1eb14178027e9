/**
 * isolation: worktree costs, on a repository of 5,000 files (a temp folder, removed unless --keep),
 * through the same git calls the engine makes (src/workspace/git.ts):
 *
 * 1. creating and tearing down a batch's worktree, against copying and deleting the same files
 *    (the baseline an isolation by copy would pay) and against a plain `git worktree add` (git's
 *    own floor: the checkout of every file), median of --rounds;
 * 2. the disk a worktree adds with `worktree.share` of a 200 MB dependency folder (links) and
 *    without it (the folder copied into the worktree, as an install would leave it);
 * 3. the time to land one batch at --batches batches (merge in the batch's worktree, then a
 *    fast-forward of the target checked out in the main tree), for merge and rebase, against a
 *    plain `git merge --no-ff` of the same branch in the main tree.
 *
 * A finished batch's worktree is reused for the next batch (git.reuseWorktree), timed beside it.
 * Targets: under 300 ms to create a worktree, under 5 MB of extra disk per worktree with share.
 * Usage: bun scripts/bench/worktrees.ts [--files 5000] [--deps-mb 200] [--batches 100] [--rounds 5] [--keep]
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diskUsage } from "../../src/workspace/disk.ts";
import { createGit } from "../../src/workspace/git.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const FILES = arg("files", 5000);
const DEPS_MB = arg("deps-mb", 200);
const BATCHES = arg("batches", 100);
const ROUNDS = arg("rounds", 5);
const KEEP = process.argv.includes("--keep");

const sh = (cwd: string, ...argv: string[]) => {
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, encoding: "utf8", env: { ...process.env, GIT_AUTHOR_NAME: "b", GIT_AUTHOR_EMAIL: "b@b", GIT_COMMITTER_NAME: "b", GIT_COMMITTER_EMAIL: "b@b" } });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
};
const time = async (fn: () => unknown) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

const dir = mkdtempSync(join(tmpdir(), "mozart-bench-worktrees-"));
const repo = join(dir, "repo");
const git = createGit({ env: process.env });
try {
  // --- The repository: FILES small source files in 50 folders, a DEPS_MB folder git ignores.
  console.log(`building a repository of ${FILES} files and a ${DEPS_MB} MB dependency folder in ${dir}…`);
  mkdirSync(repo, { recursive: true });
  for (let i = 0; i < FILES; i++) {
    mkdirSync(join(repo, "src", `m${i % 50}`), { recursive: true });
    writeFileSync(join(repo, "src", `m${i % 50}`, `f${i}.ts`), `export const v${i} = ${i};\n`);
  }
  writeFileSync(join(repo, ".gitignore"), "node_modules/\n");
  for (let i = 0; i < DEPS_MB; i++) {
    mkdirSync(join(repo, "node_modules", `pkg${i % 20}`), { recursive: true });
    writeFileSync(join(repo, "node_modules", `pkg${i % 20}`, `blob${i}.bin`), randomBytes(1 << 20));
  }
  sh(repo, "git", "init", "-q", "-b", "main");
  sh(repo, "git", "add", "-A");
  sh(repo, "git", "commit", "-q", "-m", "initial");
  const base = sh(repo, "git", "rev-parse", "HEAD");
  const wtRoot = join(repo, ".mozart", "worktrees", "bench");
  mkdirSync(wtRoot, { recursive: true });

  // --- 1. Create and tear down a worktree; baseline: copy and delete the same files.
  const create: number[] = [];
  const teardown: number[] = [];
  const copy: number[] = [];
  const remove: number[] = [];
  const plainAdd: number[] = [];
  const reuse: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const wt = join(wtRoot, `batch-${r + 1}`);
    create.push(await time(() => git.addWorktree(repo, wt, `mozart/bench/batch-${r + 1}`, base)));
    // What the engine does instead once a batch has finished: its worktree (after a batch's
    // edits: 20 files changed, 20 new, an untracked build folder) made the next batch's, from the base.
    for (let f = 1; f <= 20; f++) {
      writeFileSync(join(wt, "src", "m1", `f${1 + 50 * (f - 1)}.ts`), `changed ${r} ${f}\n`);
      writeFileSync(join(wt, "src", "m2", `new-${f}.ts`), `new ${f}\n`);
    }
    mkdirSync(join(wt, "build"), { recursive: true });
    writeFileSync(join(wt, "build", "out.js"), "x".repeat(100_000));
    const next = join(wtRoot, `batch-${r + 1}-next`);
    await git.detach(wt);
    reuse.push(await time(() => git.reuseWorktree(repo, wt, next, `mozart/bench/batch-${r + 1}-next`, base)));
    teardown.push(await time(() => git.removeWorktree(repo, next)));
    const target = join(dir, `copy-${r}`);
    copy.push(await time(() => sh(dir, "cp", "-a", join(repo, "src"), target)));
    remove.push(await time(() => rmSync(target, { recursive: true, force: true })));
    // git's own floor: one plain `git worktree add` of the same commit, nothing of ours around it.
    const bare = join(dir, `plain-${r}`);
    plainAdd.push(await time(() => sh(repo, "git", "worktree", "add", "-q", "--detach", bare, base)));
    sh(repo, "git", "worktree", "remove", "--force", bare);
  }
  console.log("\n1. a worktree of the repository (median of %d)", ROUNDS);
  console.log(`   create ${ms(median(create))}, tear down ${ms(median(teardown))}   (target: create under 300 ms)`);
  console.log(`   reuse a finished batch's worktree for the next batch (every batch but the first of each slot): ${ms(median(reuse))}   (target: under 300 ms)`);
  console.log(`   baseline, copying the same files: ${ms(median(copy))}, deleting them: ${ms(median(remove))}`);
  console.log(`   baseline, a plain git worktree add: ${ms(median(plainAdd))}`);
  console.log(`   ratio: reuse / plain git = ${(median(reuse) / median(plainAdd)).toFixed(2)}, create / plain git = ${(median(create) / median(plainAdd)).toFixed(2)}, create / copy = ${(median(create) / median(copy)).toFixed(2)}, tear down / delete = ${(median(teardown) / median(remove)).toFixed(2)}`);

  // --- 2. Disk per worktree, with and without share.
  const source = diskUsage(join(repo, "src")).bytes;
  const admin = (name: string) => diskUsage(join(repo, ".git", "worktrees", name)).bytes;
  const shared = join(wtRoot, "batch-shared");
  await git.addWorktree(repo, shared, "mozart/bench/shared", base);
  symlinkSync(join(repo, "node_modules"), join(shared, "node_modules"), "dir");
  const withShare = diskUsage(shared).bytes + admin("batch-shared");
  const copied = join(wtRoot, "batch-copied");
  await git.addWorktree(repo, copied, "mozart/bench/copied", base);
  sh(repo, "cp", "-a", join(repo, "node_modules"), join(copied, "node_modules"));
  const withoutShare = diskUsage(copied).bytes + admin("batch-copied");
  console.log("\n2. disk per worktree (allocated blocks; the main tree's source files take %s)", mb(source));
  console.log(`   with share of node_modules:    ${mb(withShare)} in all, ${mb(withShare - source)} beyond the checked-out files   (target: under 5 MB extra)`);
  console.log(`   without share (folder copied): ${mb(withoutShare)} in all, ${mb(withoutShare - source)} beyond the checked-out files`);
  console.log(`   ratio of the extra: with / without = ${((withShare - source) / (withoutShare - source)).toFixed(3)}`);
  await git.removeWorktree(repo, shared);
  await git.removeWorktree(repo, copied);

  // --- 3. Landing BATCHES batches, each one file on its own branch, through a pool of 4
  // worktrees (each batch checks its branch out in one, as if its worktree had just finished).
  const land = async (strategy: "merge" | "rebase"): Promise<number[]> => {
    const pool = [1, 2, 3, 4].map((i) => join(wtRoot, `${strategy}-${i}`));
    for (const [i, wt] of pool.entries()) await git.addWorktree(repo, wt, `mozart/bench/${strategy}-pool-${i}`, base);
    const times: number[] = [];
    for (let n = 1; n <= BATCHES; n++) {
      const wt = pool[n % pool.length]!;
      const branch = `mozart/bench/${strategy}-batch-${n}`;
      sh(wt, "git", "checkout", "-q", "-f", "-B", branch, base);
      writeFileSync(join(wt, `batch-${strategy}-${n}.txt`), `batch ${n}\n`);
      await git.commitAll(wt, branch, `batch ${n}`);
      times.push(
        await time(async () => {
          const tip = (await git.commitOf(repo, "refs/heads/main"))!;
          const head = (await git.commitOf(repo, `refs/heads/${branch}`))!;
          if (await git.isAncestor(repo, head, tip)) return;
          const r = strategy === "rebase" ? await git.rebaseOnto(wt, branch, tip) : await git.mergeOnto(wt, branch, tip, `merge batch ${n}`);
          if (!r.ok) throw new Error(`batch ${n}: conflict in ${r.files.join(", ")}`);
          const landed = await git.land(repo, "main", r.commit, tip);
          if (!landed.ok) throw new Error(`batch ${n}: ${landed.message}`);
        }),
      );
    }
    for (const wt of pool) await git.removeWorktree(repo, wt);
    return times;
  };
  const plain = async (): Promise<number[]> => {
    const times: number[] = [];
    for (let n = 1; n <= BATCHES; n++) {
      const branch = `plain-${n}`;
      const tree = sh(repo, "git", "write-tree");
      // A branch with one more file, made with plumbing so only the merge is timed.
      const blob = spawnSync("git", ["hash-object", "-w", "--stdin"], { cwd: repo, input: `plain ${n}\n`, encoding: "utf8" }).stdout.trim();
      const idx = join(dir, "plain.index");
      const env = { ...process.env, GIT_INDEX_FILE: idx };
      spawnSync("git", ["read-tree", tree], { cwd: repo, env });
      spawnSync("git", ["update-index", "--add", "--cacheinfo", `100644,${blob},plain-${n}.txt`], { cwd: repo, env });
      const t2 = spawnSync("git", ["write-tree"], { cwd: repo, env, encoding: "utf8" }).stdout.trim();
      const c = spawnSync("git", ["commit-tree", t2, "-p", "HEAD", "-m", `plain ${n}`], { cwd: repo, encoding: "utf8", env: { ...process.env, GIT_AUTHOR_NAME: "b", GIT_AUTHOR_EMAIL: "b@b", GIT_COMMITTER_NAME: "b", GIT_COMMITTER_EMAIL: "b@b" } }).stdout.trim();
      sh(repo, "git", "branch", "-f", branch, c);
      times.push(await time(() => sh(repo, "git", "-c", "user.name=b", "-c", "user.email=b@b", "merge", "-q", "--no-ff", "-m", `plain ${n}`, branch)));
    }
    return times;
  };
  const merged = await land("merge");
  const rebased = await land("rebase");
  const baseline = await plain();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(`\n3. landing one batch, at ${BATCHES} batches (mean; median)`);
  console.log(`   merge:  ${ms(mean(merged))}; ${ms(median(merged))}`);
  console.log(`   rebase: ${ms(mean(rebased))}; ${ms(median(rebased))}`);
  console.log(`   baseline, git merge --no-ff in the main tree: ${ms(mean(baseline))}; ${ms(median(baseline))}`);
  console.log(`   ratio: merge / baseline = ${(mean(merged) / mean(baseline)).toFixed(2)}, rebase / baseline = ${(mean(rebased) / mean(baseline)).toFixed(2)}`);
  console.log(`   first 10 vs last 10 batches (merge): ${ms(mean(merged.slice(0, 10)))} vs ${ms(mean(merged.slice(-10)))}`);
} finally {
  if (KEEP) console.log(`\nkept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
