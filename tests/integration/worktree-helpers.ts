/** Real git repositories in temp folders for the isolation: worktree tests. */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Runs git in `cwd`; throws with git's output when it fails. */
export function git(cwd: string, ...args: string[]): string {
  const r = spawnSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, LC_ALL: "C", GIT_TERMINAL_PROMPT: "0" } });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")} failed in ${cwd} (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout.trim();
}

/** Exit code of a git command, for checks that expect failure. */
export function gitCode(cwd: string, ...args: string[]): number {
  return spawnSync("git", args, { cwd, encoding: "utf8" }).status ?? -1;
}

/** A repository at `dir` on branch main with `files` committed. */
export function makeRepo(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q", "-b", "main");
  git(dir, "config", "user.name", "Test User");
  git(dir, "config", "user.email", "test@example.com");
  git(dir, "config", "commit.gpgsign", "false");
  writeFiles(dir, files);
  git(dir, "add", "-A");
  git(dir, "commit", "-q", "-m", "initial");
}

export function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
}

/** `git worktree list` paths. */
export function worktrees(repo: string): string[] {
  return git(repo, "worktree", "list", "--porcelain")
    .split("\n")
    .filter((l) => l.startsWith("worktree "))
    .map((l) => l.slice(9));
}

/** Subjects along the first-parent history of `ref`, oldest first. */
export function subjects(repo: string, ref = "main", firstParent = true): string[] {
  return git(repo, "log", "--reverse", "--format=%s", ...(firstParent ? ["--first-parent"] : []), ref).split("\n").filter(Boolean);
}

/** Local branches, short names. */
export function branches(repo: string): string[] {
  return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split("\n").filter(Boolean).sort();
}

/** `git status --porcelain` of the main tree, Mozart's state folder left out. */
export function dirtyFiles(repo: string): string[] {
  return git(repo, "status", "--porcelain")
    .split("\n")
    .filter((l) => l && !l.endsWith(".mozart/"));
}
