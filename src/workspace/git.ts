/**
 * Every git operation Mozart runs, in one place. Each is one `git` process through
 * runtime/process.ts (its own process group, stopped with everything it started if it overruns,
 * nothing left behind), with an environment that makes it predictable: the C locale (messages are
 * read), no prompts, no hooks, no signing, no background gc, and git's own redirections
 * (GIT_DIR, GIT_WORK_TREE, …) removed so a run started from inside a hook still acts on the
 * repository it names. Commits are made as `Mozart <mozart@localhost>`.
 *
 * Git operations are never handed an abort signal: a merge or a checkout cut short is what
 * leaves a half-merged tree or a stale index.lock behind. They are short; a stop waits for them.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { PROCESS_TAGS_ENV, runProcess } from "../runtime/process.ts";

/** Worktree repair, branch handling and `merge --ff-only` as used here need this much. */
export const MIN_GIT_VERSION = [2, 30, 0] as const;

export const MOZART_AUTHOR = { name: "Mozart", email: "mozart@localhost" };

/** A git command failed in a way its caller does not handle: names the command and what git said. */
export class GitError extends Error {
  constructor(
    message: string,
    readonly args: string[],
    readonly output: string,
  ) {
    super(message);
    this.name = "GitError";
  }
}

export interface GitOptions {
  /** The environment git runs with (the runner's), before Mozart's own settings. */
  env: Record<string, string | undefined>;
  /** Words added to every git process's MOZART_PROCESS_TAGS, so a later run finds git processes a killed one left. */
  tags?: string[];
  /** The `git` executable. Default: `git` from PATH. */
  executable?: string;
}

export interface WorktreeInfo {
  path: string;
  head: string | null;
  /** refs/heads/…, or null when detached. */
  branch: string | null;
  bare: boolean;
  locked: boolean;
  prunable: boolean;
}

export type LandResult = { ok: true } | { ok: false; reason: "moved" | "blocked" | "busy"; message: string; files: string[] };
export type MergeResult = { ok: true; commit: string } | { ok: false; files: string[]; message: string };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Settings every git process gets, whatever the user's configuration says. */
const CONFIG = ["core.hooksPath=/dev/null", "gc.auto=0", "maintenance.auto=false", "commit.gpgsign=false", "core.fsmonitor=false", "advice.detachedHead=false"];
/** Variables that point git elsewhere than the folder it runs in. */
const REDIRECTS = ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_NAMESPACE", "GIT_CEILING_DIRECTORIES"];
/** A new worktree writes every file of the repository: with one checkout worker per core, it takes half the time or less. */
const PARALLEL_CHECKOUT = ["-c", "checkout.workers=0"];
const SLOW_MS = 10 * 60_000;
const QUICK_MS = 2 * 60_000;

export interface Git {
  /** `git version`, parsed; null when git cannot be run. */
  version(): Promise<{ text: string; parts: [number, number, number] } | null>;
  /** The repository `dir` is in: its top folder and common git folder; null outside any repository. */
  inspect(dir: string): Promise<{ top: string; commonDir: string; bare: boolean } | null>;
  /** The branch checked out in `dir` (short name), or null when HEAD is detached. */
  headBranch(dir: string): Promise<string | null>;
  /** The commit a ref names, or null. */
  commitOf(dir: string, ref: string): Promise<string | null>;
  isAncestor(dir: string, ancestor: string, of: string): Promise<boolean>;
  validBranchName(dir: string, name: string): Promise<boolean>;
  /** Changed and untracked paths of the tree at `top` (`git status --porcelain`), those under `exclude` (absolute folders) left out. */
  changes(top: string, exclude?: string[]): Promise<string[]>;
  worktrees(top: string): Promise<WorktreeInfo[]>;
  /** A new worktree at `path` on `branch`, reset to `base` (the branch is created or moved). */
  addWorktree(top: string, path: string, branch: string, base: string): Promise<void>;
  /** A worktree at `path` checking out the existing `branch`. */
  checkoutWorktree(top: string, path: string, branch: string): Promise<void>;
  /** Removes the worktree at `path` whatever state it is in (locked, half created, its folder gone). */
  removeWorktree(top: string, path: string): Promise<void>;
  /**
   * Makes the existing worktree `from` the worktree at `path`, on `branch` made (again) at `base`,
   * exactly as a new one would be: moved, any merge or rebase in it ended, every tracked file as
   * at `base` and nothing else in it (untracked and ignored files removed). Only the files that
   * differ are written, so it costs a fraction of a new worktree's checkout of every file.
   */
  reuseWorktree(top: string, from: string, path: string, branch: string, base: string): Promise<void>;
  /** Leaves worktree `dir` on a detached HEAD (its branch free to be deleted), files untouched. */
  detach(dir: string): Promise<void>;
  /** Moves worktree `from` to `to`. */
  moveWorktree(top: string, from: string, to: string): Promise<void>;
  prune(top: string): Promise<void>;
  /** The worktree's own git folder (where its index.lock and MERGE_HEAD live). */
  gitDirOf(path: string): string | null;
  /** Puts worktree `dir` back on `branch`, exactly as committed (uncommitted changes are lost). */
  restore(dir: string, branch: string): Promise<void>;
  /** Ends a merge, rebase or cherry-pick left in progress in a worktree; true if there was one. */
  abortInProgress(dir: string): Promise<boolean>;
  /**
   * Commits everything in the worktree `dir` (new, changed and deleted files; `exclude` holds
   * top-relative paths that never are) on `branch`, with `message`. Returns the branch's commit,
   * and whether a commit was made (nothing changed: none).
   */
  commitAll(dir: string, branch: string, message: string, exclude?: string[]): Promise<{ head: string; committed: boolean }>;
  /** In worktree `dir`: a merge commit of `branch` onto `onto` (detached), or the conflicting files (the merge is aborted). */
  mergeOnto(dir: string, branch: string, onto: string, message: string): Promise<MergeResult>;
  /** In worktree `dir`: `branch` rebased onto `onto`, or the conflicting files (the rebase is aborted). */
  rebaseOnto(dir: string, branch: string, onto: string): Promise<MergeResult>;
  /** Moves `target` from `expected` to `commit` (a fast-forward), in the tree that has it checked out if any. */
  land(top: string, target: string, commit: string, expected: string): Promise<LandResult>;
  /** Moves a branch to a new name (replacing one there). */
  renameBranch(top: string, from: string, to: string): Promise<void>;
  deleteBranch(top: string, branch: string): Promise<void>;
  /** Branches whose name starts with `prefix` (up to the next slash), short names. */
  branches(top: string, prefix: string): Promise<string[]>;
  /** Commits of `range` (`a..b`), oldest first, as `sha subject`. */
  log(dir: string, range: string): Promise<string[]>;
}

export function createGit(opts: GitOptions): Git {
  const exe = opts.executable ?? "git";
  const env: Record<string, string | undefined> = { ...opts.env };
  for (const k of REDIRECTS) delete env[k];
  Object.assign(env, {
    LC_ALL: "C",
    LANGUAGE: "C",
    GIT_TERMINAL_PROMPT: "0",
    GIT_EDITOR: "true",
    GIT_SEQUENCE_EDITOR: "true",
    GIT_MERGE_AUTOEDIT: "no",
    GIT_AUTHOR_NAME: MOZART_AUTHOR.name,
    GIT_AUTHOR_EMAIL: MOZART_AUTHOR.email,
    GIT_COMMITTER_NAME: MOZART_AUTHOR.name,
    GIT_COMMITTER_EMAIL: MOZART_AUTHOR.email,
  });
  if (opts.tags?.length) env[PROCESS_TAGS_ENV] = [env[PROCESS_TAGS_ENV], ...opts.tags].filter(Boolean).join(" ");

  const raw = async (cwd: string, args: string[], timeoutMs = QUICK_MS): Promise<Run> => {
    const argv = [exe, ...CONFIG.flatMap((c) => ["-c", c]), ...args];
    const p = await runProcess({ argv, cwd, env, timeoutMs, maxCapture: { head: 8 << 20, tail: 64 << 10 } });
    if (p.spawn_error) throw new GitError(`cannot run git: ${p.spawn_error.message}`, args, "");
    if (p.timed_out) throw new GitError(`git ${args[0]} did not finish within ${Math.round(timeoutMs / 1000)} s (in ${cwd})`, args, p.stderr);
    return { code: p.exit_code, stdout: p.stdout, stderr: p.stderr };
  };
  /** Runs git and wants exit 0; anything else is a GitError naming the command and git's message. */
  const must = async (cwd: string, args: string[], timeoutMs?: number): Promise<string> => {
    const r = await raw(cwd, args, timeoutMs);
    if (r.code !== 0) throw failure(args, cwd, r);
    return r.stdout;
  };
  const commitOf = async (dir: string, ref: string) => {
    const r = await raw(dir, ["rev-parse", "--verify", "-q", `${ref}^{commit}`]);
    return r.code === 0 ? r.stdout.trim() || null : null;
  };
  const inProgress = (dir: string): "merge" | "rebase" | "cherry-pick" | null => {
    const gitDir = gitDirOf(dir);
    if (!gitDir) return null;
    if (existsSync(join(gitDir, "rebase-merge")) || existsSync(join(gitDir, "rebase-apply"))) return "rebase";
    if (existsSync(join(gitDir, "MERGE_HEAD"))) return "merge";
    if (existsSync(join(gitDir, "CHERRY_PICK_HEAD"))) return "cherry-pick";
    return null;
  };
  const unmerged = async (dir: string) => lines(await must(dir, ["diff", "--name-only", "--diff-filter=U"]));

  const git: Git = {
    async version() {
      const r = await raw(process.cwd(), ["version"]).catch(() => null);
      const m = r && r.code === 0 ? /(\d+)\.(\d+)(?:\.(\d+))?/.exec(r.stdout) : null;
      return m ? { text: r!.stdout.trim(), parts: [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] } : null;
    },
    async inspect(dir) {
      const r = await raw(dir, ["rev-parse", "--is-bare-repository", "--show-toplevel", "--git-common-dir"]);
      if (r.code !== 0) return null;
      const [bare, ...rest] = lines(r.stdout);
      if (bare === "true") return { top: dir, commonDir: resolve(dir, rest[rest.length - 1] ?? "."), bare: true };
      const [top, common] = rest;
      if (!top || !common) return null;
      return { top, commonDir: isAbsolute(common) ? common : resolve(dir, common), bare: false };
    },
    async headBranch(dir) {
      const r = await raw(dir, ["symbolic-ref", "-q", "--short", "HEAD"]);
      return r.code === 0 ? r.stdout.trim() || null : null;
    },
    commitOf,
    async isAncestor(dir, ancestor, of) {
      const r = await raw(dir, ["merge-base", "--is-ancestor", ancestor, of]);
      if (r.code === 0) return true;
      if (r.code === 1) return false;
      throw failure(["merge-base", "--is-ancestor", ancestor, of], dir, r);
    },
    async validBranchName(dir, name) {
      return (await raw(dir, ["check-ref-format", "--branch", name])).code === 0;
    },
    async changes(top, exclude = []) {
      const out = await must(top, ["status", "--porcelain=v1", "-z", "--untracked-files=normal", "--ignore-submodules=dirty"]);
      const entries: string[] = [];
      const parts = out.split("\0");
      for (let i = 0; i < parts.length; i++) {
        const e = parts[i]!;
        if (e.length < 4) continue;
        entries.push(e.slice(3));
        if (e[0] === "R" || e[0] === "C") i++; // the rename's source follows
      }
      // Porcelain paths are relative to the top: leave out our own folders (the state, the worktrees).
      return entries.filter((p) => {
        const abs = resolve(top, p.replace(/\/$/, ""));
        return !exclude.some((x) => abs === x || abs.startsWith(`${x}/`) || (p.endsWith("/") && x.startsWith(`${abs}/`) && onlyHolds(abs, x)));
      });
    },
    async worktrees(top) {
      const out = await must(top, ["worktree", "list", "--porcelain"]);
      const list: WorktreeInfo[] = [];
      for (const block of out.split(/\n\n+/)) {
        const fields = lines(block);
        const path = fields.find((f) => f.startsWith("worktree "))?.slice(9);
        if (!path) continue;
        const value = (key: string) => fields.find((f) => f === key || f.startsWith(`${key} `))?.slice(key.length + 1) ?? null;
        list.push({
          path,
          head: value("HEAD"),
          branch: value("branch"),
          bare: fields.includes("bare"),
          locked: fields.some((f) => f === "locked" || f.startsWith("locked ")),
          prunable: fields.some((f) => f === "prunable" || f.startsWith("prunable ")),
        });
      }
      return list;
    },
    async addWorktree(top, path, branch, base) {
      await must(top, [...PARALLEL_CHECKOUT, "worktree", "add", "-q", "-f", "-B", branch, path, base], SLOW_MS);
    },
    async checkoutWorktree(top, path, branch) {
      await must(top, [...PARALLEL_CHECKOUT, "worktree", "add", "-q", "-f", path, branch], SLOW_MS);
    },
    async reuseWorktree(top, from, path, branch, base) {
      await git.moveWorktree(top, from, path);
      await git.abortInProgress(path);
      await must(path, [...PARALLEL_CHECKOUT, "checkout", "-q", "-f", "-B", branch, base], SLOW_MS);
      await must(path, ["clean", "-q", "-ffdx"], SLOW_MS);
    },
    async detach(dir) {
      await must(dir, ["checkout", "-q", "--detach"]);
    },
    async moveWorktree(top, from, to) {
      await must(top, ["worktree", "move", from, to]);
    },
    async removeWorktree(top, path) {
      const r = await raw(top, ["worktree", "remove", "--force", "--force", path], SLOW_MS);
      if (r.code === 0 && !existsSync(path)) return;
      // Not a worktree git can remove (half created, its .git file or folder gone): by hand, then
      // the admin entry, unlocked first (a creation cut short leaves it locked "initializing").
      rmSync(path, { recursive: true, force: true });
      const common = (await git.inspect(top))?.commonDir;
      if (common) {
        for (const name of safeList(join(common, "worktrees"))) {
          const admin = join(common, "worktrees", name);
          const gitdir = readText(join(admin, "gitdir"))?.trim();
          if (gitdir && (gitdir === join(path, ".git") || gitdir.startsWith(`${path}/`))) rmSync(join(admin, "locked"), { force: true });
        }
      }
      await git.prune(top);
    },
    async prune(top) {
      await must(top, ["worktree", "prune"]);
    },
    gitDirOf,
    async restore(dir, branch) {
      await must(dir, ["checkout", "-q", "-f", branch]);
      await must(dir, ["reset", "-q", "--hard"]);
    },
    async abortInProgress(dir) {
      const what = inProgress(dir);
      if (!what) return false;
      const r = await raw(dir, [what, "--abort"]);
      if (r.code !== 0 && what === "merge") await raw(dir, ["reset", "-q", "--merge"]);
      if (r.code !== 0 && what === "rebase") await raw(dir, ["rebase", "--quit"]);
      return true;
    },
    async commitAll(dir, branch, message, exclude = []) {
      const spec = exclude.length ? ["--", ":/", ...exclude.map((p) => `:(top,exclude)${p}`)] : [];
      await must(dir, ["add", "-A", ...spec], SLOW_MS);
      // The shared folders are links to the main tree: never part of a batch's commit, even if
      // the batch staged them itself.
      if (exclude.length) await raw(dir, ["rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", ...exclude.map((p) => `:(top)${p}`)]);
      const staged = await raw(dir, ["diff", "--cached", "--quiet"]);
      let committed = false;
      if (staged.code === 1) {
        await must(dir, ["commit", "-q", "--no-verify", "--allow-empty-message", "-m", message], SLOW_MS);
        committed = true;
      } else if (staged.code !== 0) throw failure(["diff", "--cached", "--quiet"], dir, staged);
      const head = (await commitOf(dir, "HEAD"))!;
      // A batch that switched branches in its worktree: its branch still ends where it ended.
      if ((await git.headBranch(dir)) !== branch) {
        await must(dir, ["update-ref", `refs/heads/${branch}`, head]);
        await must(dir, ["checkout", "-q", branch]);
      }
      return { head, committed };
    },
    async mergeOnto(dir, branch, onto, message) {
      await must(dir, ["checkout", "-q", "--detach", onto]);
      const r = await raw(dir, ["merge", "-q", "--no-ff", "--no-edit", "-m", message, `refs/heads/${branch}`], SLOW_MS);
      if (r.code === 0) return { ok: true, commit: (await commitOf(dir, "HEAD"))! };
      const files = inProgress(dir) === "merge" ? await unmerged(dir) : [];
      await git.abortInProgress(dir);
      await raw(dir, ["checkout", "-q", "-f", branch]);
      if (!files.length) throw failure(["merge", branch], dir, r);
      return { ok: false, files, message: conflictText(r) };
    },
    async rebaseOnto(dir, branch, onto) {
      if ((await git.headBranch(dir)) !== branch) await must(dir, ["checkout", "-q", "-f", branch]);
      const r = await raw(dir, ["rebase", "-q", onto], SLOW_MS);
      if (r.code === 0) return { ok: true, commit: (await commitOf(dir, "HEAD"))! };
      const files = inProgress(dir) === "rebase" ? await unmerged(dir) : [];
      await git.abortInProgress(dir);
      if (!files.length) throw failure(["rebase", onto], dir, r);
      return { ok: false, files, message: conflictText(r) };
    },
    async land(top, target, commit, expected) {
      const ref = `refs/heads/${target}`;
      const holder = (await git.worktrees(top)).find((w) => w.branch === ref && !w.prunable && existsSync(w.path));
      if (!holder) {
        const r = await raw(top, ["update-ref", "-m", `mozart: land ${commit.slice(0, 12)}`, ref, commit, expected]);
        if (r.code === 0) return { ok: true };
        if ((await commitOf(top, ref)) !== expected) return { ok: false, reason: "moved", message: `${target} moved while the batch was being landed`, files: [] };
        throw failure(["update-ref", ref], top, r);
      }
      // Checked out: a fast-forward in that tree updates its files and index with the branch, and
      // refuses (changing nothing) when local changes are in the way.
      if ((await commitOf(holder.path, "HEAD")) !== expected) return { ok: false, reason: "moved", message: `${target} moved while the batch was being landed`, files: [] };
      const r = await raw(holder.path, ["merge", "-q", "--ff-only", commit], SLOW_MS);
      if (r.code === 0) return { ok: true };
      if ((await commitOf(top, ref)) !== expected) return { ok: false, reason: "moved", message: `${target} moved while the batch was being landed`, files: [] };
      const text = `${r.stderr}\n${r.stdout}`;
      if (/index\.lock/.test(text)) return { ok: false, reason: "busy", message: `another git command holds ${holder.path}'s index (index.lock)`, files: [] };
      const files = text
        .split("\n")
        .filter((l) => l.startsWith("\t"))
        .map((l) => l.trim());
      return { ok: false, reason: "blocked", message: `local changes in ${holder.path} are in the way: ${firstLine(text)}`, files };
    },
    async renameBranch(top, from, to) {
      await must(top, ["branch", "-M", from, to]);
    },
    async deleteBranch(top, branch) {
      const r = await raw(top, ["branch", "-D", "-q", branch]);
      if (r.code !== 0 && (await commitOf(top, `refs/heads/${branch}`))) throw failure(["branch", "-D", branch], top, r);
    },
    async branches(top, prefix) {
      const out = await must(top, ["for-each-ref", "--format=%(refname:short)", `refs/heads/${prefix}*`]);
      return lines(out);
    },
    async log(dir, range) {
      return lines(await must(dir, ["log", "--reverse", "--format=%H %s", range]));
    },
  };
  return git;
}

function gitDirOf(path: string): string | null {
  const dotGit = join(path, ".git");
  const text = readText(dotGit);
  if (text === null) return existsSync(dotGit) ? dotGit : null;
  const m = /^gitdir:\s*(.+)$/m.exec(text);
  return m ? resolve(path, m[1]!.trim()) : null;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** An untracked folder porcelain shows whole (`a/`) is ours only if nothing else is in it. */
function onlyHolds(folder: string, ours: string): boolean {
  const rel = ours.slice(folder.length + 1).split("/");
  let dir = folder;
  for (const part of rel) {
    if (safeList(dir).some((name) => name !== part)) return false;
    dir = join(dir, part);
  }
  return true;
}

const lines = (s: string) => s.split("\n").map((l) => l.replace(/\r$/, "")).filter(Boolean);
const firstLine = (s: string) => lines(s).find((l) => !l.startsWith("\t") && !/^hint:/.test(l))?.replace(/^(error|fatal): /, "") ?? "git refused";

/** The kinds of conflict git reported besides plain content ones (modify/delete, rename/rename, …). */
function conflictText(r: Run): string {
  const kinds = new Set(lines(`${r.stdout}\n${r.stderr}`).flatMap((l) => /^CONFLICT \(([^)]+)\)/.exec(l)?.[1] ?? []));
  kinds.delete("content");
  return [...kinds].join(", ");
}

function failure(args: string[], cwd: string, r: Run): GitError {
  const said = lines(`${r.stderr}\n${r.stdout}`).slice(0, 6).join(" / ");
  return new GitError(`git ${args.slice(0, 3).join(" ")} failed in ${cwd} (exit ${r.code ?? "signal"}): ${said || "no output"}`, args, `${r.stderr}${r.stdout}`);
}
