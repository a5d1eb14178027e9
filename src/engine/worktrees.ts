/**
 * `isolation: worktree`: every batch works in a git worktree of its own, on branch
 * `mozart/<job>/batch-<n>` created from the job's base commit, so batches running at once never
 * edit the same files, validations see only their batch's work, and a failed batch's edits are
 * thrown away with its worktree. A completed batch's changes are committed on its branch (in
 * the same record that says it completed) and then, with `merge: ordered`, landed on the target
 * branch in batch order — a real merge or rebase done inside the batch's worktree, then a
 * fast-forward of the target, so the main tree is never left half-merged.
 *
 * Landing is recorded in the batch record through the store's compare-and-set (updateBatch):
 * ready → merging (by one runner) → merged. Before merging again, a batch whose commit is already
 * on the target (a crash between the fast-forward and its record, or a resolution by hand) is
 * recorded as merged: a merged batch is never merged twice.
 *
 * The engine calls: openIsolation (refusals, before anything is recorded) → prepare (after the
 * lease: the base, repairs after a crash, retried merges) → enter / seal / settle per batch →
 * finish. Every git command goes through workspace/git.ts.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { PreparedJob } from "../config/check.ts";
import { EXIT, MozartError } from "../errors.ts";
import { defaultStopSequence, findTagged, runProcess, stopTree } from "../runtime/process.ts";
import { encodeJobId } from "../state/keys.ts";
import { stateFolder } from "../state/location.ts";
import { hasUnlanded } from "../state/report.ts";
import { inSelection, type BatchGit, type BatchRecord, type JobGit, type JobRecord, type RunningProcess, type Selection, type StateStore, type Step, type UpdateContext } from "../state/types.ts";
import { clip, shellQuote } from "../text.ts";
import { sleep } from "../time.ts";
import { createGit, GitError, MIN_GIT_VERSION, type Git } from "../workspace/git.ts";
import type { Recorder } from "./recorder.ts";

export interface IsolationOptions {
  job: PreparedJob;
  store: StateStore;
  /** The job record before this run (null: a new job). */
  existing: JobRecord | null;
  /** `resume --force`: what the job recorded of the repository no longer counts. */
  force?: boolean;
  /** The environment of the runner's child processes. */
  env: Record<string, string | undefined>;
  runnerId: string;
  warn: (message: string) => void;
  wallNow: () => number;
}

export interface BatchWorkspace {
  /** The job as the batch sees it: workspace, paths and the backend's folder inside its worktree. */
  job: PreparedJob;
  git: BatchGit;
  /** The worktree's top folder (MOZART_WORKTREE). */
  worktree: string;
}

export interface PrepareOptions {
  recorder: Recorder;
  /** The run's batches: a shard (`run --shard`) keeps records of its own batches only, and lands them in order among themselves. */
  selection: Selection;
  /** `resume --force`: a new base, every worktree and batch branch of the job removed. */
  force?: boolean;
  /** `resume --rerun-conflicts`: batches in conflict run again on the target's latest commit. */
  rerunConflicts?: boolean;
  /** A runner joining a running job repairs nothing: the first runner did. */
  joining: boolean;
  /** True once the run lost its lease or its state: nothing more is landed. */
  stopped: () => boolean;
}

export interface Isolation {
  readonly git: JobGit;
  prepare(rec: JobRecord, o: PrepareOptions): Promise<JobRecord>;
  /** Completed batches whose changes have not landed yet: the job is not done while there are any. */
  unlanded(): Promise<boolean>;
  /** Before a batch's first attempt: a fresh worktree (shared folders linked, setup run). */
  enter(b: BatchRecord, o: { previous?: RunningProcess; signal: AbortSignal; tag: string }): Promise<BatchWorkspace | { error: string; output: string }>;
  /** Before a batch is recorded completed: its changes committed on its branch. */
  seal(b: BatchRecord): Promise<BatchGit | { error: string }>;
  /** After a batch's final record: land it (merge: ordered), or let its worktree go. */
  settle(b: BatchRecord): Promise<void>;
  /** At the end of the run: land what became mergeable, remove worktrees no longer needed. */
  finish(): Promise<void>;
}

const SETUP_OUTPUT_CHARS = 4000;
/** How long a run waits for git processes a killed run left (they finish on their own) before stopping them. */
const LEFTOVER_GIT_WAIT_MS = 30_000;
const LAND_TRIES = 8;

/** Checks git and the repository and refuses what cannot work, before anything of the run is recorded. */
export async function openIsolation(o: IsolationOptions): Promise<Isolation> {
  const { job, store } = o;
  const c = job.config;
  const id = c.name;
  const jobTag = `mzgit-${hash(`${id}\0${stateFolder(c)}`)}`;
  const git = createGit({ env: o.env, tags: [jobTag, gitTagOf(o.runnerId)] });
  const hint = (fix: string) => `${fix}; or set isolation: none`;

  const v = await git.version();
  if (!v) throw new MozartError("isolation: worktree needs git, and `git` cannot be run here", { hint: hint(`install git ${MIN_GIT_VERSION.join(".")} or newer`) });
  if (older(v.parts, MIN_GIT_VERSION)) throw new MozartError(`isolation: worktree needs git ${MIN_GIT_VERSION.join(".")} or newer; this is ${v.text}`, { hint: hint("upgrade git") });
  const repo = await git.inspect(c.workspace);
  if (!repo) {
    throw new MozartError(`the workspace ${c.workspace} is not inside a git repository, and isolation: worktree runs each batch in a git worktree`, {
      exitCode: EXIT.usage,
      hint: hint(`make it one: cd ${shellQuote(c.workspace)} && git init && git add -A && git commit -m "initial"`),
    });
  }
  if (repo.bare) throw new MozartError(`the workspace ${c.workspace} is inside a bare git repository`, { exitCode: EXIT.usage, hint: hint("use a checkout of it as the workspace") });
  const top = repo.top;
  const previous = o.force ? undefined : o.existing?.git;
  if (previous && previous.top !== top) {
    throw new MozartError(`job "${id}" keeps its worktrees for the repository in ${previous.top}, but its workspace is now in ${top}`, {
      exitCode: EXIT.usage,
      hint: "restore the workspace setting; or start the job over with `mozart resume <job> --force`",
    });
  }
  const headCommit = await git.commitOf(top, "HEAD");
  if (!headCommit) throw new MozartError(`the repository ${top} has no commit yet: worktrees start from one`, { exitCode: EXIT.usage, hint: 'commit something first: git add -A && git commit -m "initial"' });

  const ordered = c.merge === "ordered";
  let target: string | null = null;
  if (ordered) {
    if (c.merge_into !== undefined) {
      if (!(await git.validBranchName(top, c.merge_into))) throw new MozartError(`merge_into: "${c.merge_into}" is not a valid branch name`, { exitCode: EXIT.usage });
      if (!(await git.commitOf(top, `refs/heads/${c.merge_into}`))) {
        throw new MozartError(`merge_into: the branch "${c.merge_into}" does not exist in ${top}`, { exitCode: EXIT.usage, hint: `create it: git branch ${shellQuote(c.merge_into)}; or leave merge_into out to land on the branch checked out` });
      }
    }
    target = c.merge_into ?? previous?.target ?? (await git.headBranch(top));
    if (!target) {
      throw new MozartError(`HEAD is detached in ${top}: merge: ordered lands batches on a branch, and none is checked out`, {
        exitCode: EXIT.usage,
        hint: "check out a branch (git switch <branch>), name one with merge_into: <branch>, or set merge: none to leave one branch per batch",
      });
    }
  }

  const wd = c.backend.type === "claude_cli" || c.backend.type === "command" ? c.backend.working_directory : undefined;
  if (wd && !under(realish(wd), top)) o.warn(`backend.working_directory ${wd} is outside the repository ${top}: batches run there, not in their worktrees`);
  const state = realish(stateFolder(c));
  const root = join(stateFolder(c), "worktrees", encodeJobId(id));
  // The main tree must hold exactly what batches start from, unless the user says otherwise; with
  // merge: none it matters only when the base is taken (the job's first start).
  if (!c.allow_dirty && (ordered || !previous)) {
    const ours = [state, realish(job.file), ...(c.prompt.template_file ? [realish(c.prompt.template_file)] : [])];
    const changed = await git.changes(top, ours);
    if (changed.length) {
      const shown = changed.slice(0, 5).join(", ") + (changed.length > 5 ? `, … (${changed.length} in all)` : "");
      throw new MozartError(`the main tree ${top} has uncommitted changes: ${shown}`, {
        exitCode: EXIT.usage,
        hint: "batches start from the last commit and would not see them, and landing batches needs a clean tree: commit or stash them; or set allow_dirty: true",
      });
    }
  }

  const prefix = await branchPrefix(git, top, id);
  let jg: JobGit = {
    top,
    base: previous?.base ?? (target ? ((await git.commitOf(top, `refs/heads/${target}`)) ?? headCommit) : headCommit),
    target,
    merge: c.merge,
    strategy: c.merge_strategy,
    prefix,
    root,
  };

  const wsReal = realish(c.workspace);
  const relWs = relative(top, wsReal);
  const shareRel = c.worktree.share.map((s) => toPosix(join(relWs, s)));
  const pathOf = (n: number) => join(root, `batch-${n}`);
  const branchOf = (n: number) => `${prefix}batch-${n}`;
  /** Paths of the main tree → the same paths in worktree `wt`; the state folder and what lies outside the repository stay. */
  const mapInto = (wt: string) => (p: string) => {
    if (!isAbsolute(p)) return p;
    if (under(p, c.workspace) && !under(p, stateFolder(c))) return join(wt, relWs, relative(c.workspace, p));
    const r = realish(p);
    if (under(r, state) || !under(r, top)) return p;
    return join(wt, relative(top, r));
  };
  const warned = new Set<string>();
  const warnOnce = (key: string, message: string) => {
    if (warned.has(key)) return;
    warned.add(key);
    o.warn(message);
  };

  // Repository-wide operations (worktrees added and removed, branches, landing) one at a time.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const r = chain.then(fn, fn);
    chain = r.catch(() => {});
    return r;
  };

  let recorder: Recorder | undefined;
  let stopped = () => false;
  /** Batches another shard runs: not in this state, so never waited for. */
  let elsewhere = (_n: number) => false;
  /** Compare-and-set on batch n (fenced by this runner's lease); its events reach the run's listeners once recorded. */
  const update = async (n: number, change: (cur: BatchRecord, ctx: UpdateContext) => Omit<Step, "fence"> | null) => {
    const now = o.wallNow();
    let step = null as Omit<Step, "fence"> | null;
    const r = await store.updateBatch(id, n, { now, runner: o.runnerId }, (cur, ctx) => (step = cur ? change(cur, ctx) : null));
    if (r.ok && r.seq !== undefined && step?.events?.length) recorder?.announce(step.events, r.seq, now);
    return r;
  };
  /** Untracked or changed files in a worktree, its shared links left out. */
  const changesIn = (wt: string) => git.changes(wt, shareRel.map((s) => join(wt, s)));
  /** A worktree with a resolution under way in it: a merge or rebase started, or changes not committed. */
  const resolving = async (wt: string | undefined) => {
    if (!wt || !existsSync(join(wt, ".git"))) return false;
    const dir = git.gitDirOf(wt);
    if (dir && hasOperation(dir)) return true;
    return (await changesIn(wt).catch(() => [] as string[])).length > 0;
  };

  const alone = async () => (await store.runners(id, o.wallNow())).every((l) => l.id === o.runnerId);

  const message = (b: BatchRecord, kind: "batch" | "merge" | "failed") => {
    const items = `items ${b.start_item}–${b.end_item}`;
    const head =
      kind === "merge" ? `Mozart: merge ${id} batch ${b.batch_num} (${items})` : `Mozart: ${id} batch ${b.batch_num} of ${job.totalBatches}${kind === "failed" ? " (failed)" : ""} (${items})`;
    return `${head}\n\nJob: ${id}\nBatch: ${b.batch_num} of ${job.totalBatches}\nItems: ${b.start_item}–${b.end_item}\n`;
  };

  const resolveSteps = (b: BatchRecord, files: string[], blocked: boolean): string[] => {
    if (blocked) return [`cd ${shellQuote(top)}`, `git stash    # or commit the local changes to ${files.slice(0, 3).join(", ") || "the files above"}`, `mozart resume ${shellQuote(id)}`];
    const wt = b.git?.worktree ?? pathOf(b.batch_num);
    const t = shellQuote(jg.target ?? "");
    return jg.strategy === "rebase"
      ? [`cd ${shellQuote(wt)}`, `git rebase ${t}    # fix the conflicts, git add them, git rebase --continue`, `mozart resume ${shellQuote(id)}    # or: mozart resume ${shellQuote(id)} --rerun-conflicts`]
      : [`cd ${shellQuote(wt)}`, `git merge ${t}    # fix the conflicts, git add them, git commit`, `mozart resume ${shellQuote(id)}    # or: mozart resume ${shellQuote(id)} --rerun-conflicts`];
  };

  /** Waits for git processes a killed runner left (identified by `tag`) to end; stops them after a while. */
  const waitForGit = async (tag: string) => {
    const until = Date.now() + LEFTOVER_GIT_WAIT_MS;
    while (findTagged(tag).length && Date.now() < until) await sleep(100);
    if (findTagged(tag).length) await stopTree({ tag }, defaultStopSequence(2000)).catch(() => []);
  };

  /** A worktree git no longer knows, or knows in a state it cannot use: removed, quietly. */
  const removeQuietly = async (path: string) => {
    try {
      await git.removeWorktree(top, path);
    } catch (e) {
      warnOnce(`remove:${path}`, `could not remove the worktree ${path}: ${(e as Error).message}`);
    }
  };

  // ---- Spares -------------------------------------------------------------------------------
  // A worktree whose batch no longer needs it is kept as a spare (up to `concurrency` of them) and
  // made the next batch's worktree: moved, reset to the new branch at its base and cleaned of
  // everything else, which writes only the files that differ instead of checking out every file.
  // The reaper removes the spares when the run ends (or at the next start, after a kill).
  let spares: string[] = [];
  let spareCount = 0;
  /** Keeps the worktree at `path` as a spare, or removes it; inside `serial`. */
  const keepSpare = async (path: string) => {
    if (spares.length >= Math.max(1, c.concurrency) || !existsSync(join(path, ".git"))) return removeQuietly(path);
    const spare = join(root, `spare-${process.pid}-${++spareCount}`);
    try {
      await git.abortInProgress(path);
      // Its branch must not stay checked out here: it is deleted or renamed next.
      await git.detach(path);
      await git.moveWorktree(top, path, spare);
      spares.push(spare);
    } catch {
      await removeQuietly(existsSync(spare) ? spare : path);
    }
  };
  /** A worktree for `branch` at `base` in `path`: a spare made into it when there is one, else a new one; inside `serial`. */
  const makeWorktree = async (path: string, branch: string, base: string) => {
    for (let spare = spares.pop(); spare; spare = spares.pop()) {
      try {
        await git.reuseWorktree(top, spare, path, branch, base);
        return;
      } catch (e) {
        warnOnce(`reuse:${spare}`, `could not reuse the worktree ${spare} (${(e as Error).message.split("\n")[0]}); making a new one`);
        if (existsSync(spare)) await removeQuietly(spare);
        if (existsSync(path)) await removeQuietly(path);
      }
    }
    await git.addWorktree(top, path, branch, base);
  };

  // ---- Landing ------------------------------------------------------------------------------
  /** Batches 1..landed are on the target. */
  let landed = -1;
  const isLanded = (b: BatchRecord | null) => Boolean(b && b.status === "completed" && b.git?.merge === "merged");

  type Outcome = { kind: "merged"; commit: string; already: boolean } | { kind: "conflict"; files: string[]; message: string; blocked: boolean };

  /** The git side of landing one batch: merge or rebase in its worktree, then fast-forward the target. */
  const landOne = async (b: BatchRecord): Promise<Outcome> => {
    const g = b.git!;
    const target = jg.target!;
    const ref = `refs/heads/${target}`;
    let head = await git.commitOf(top, `refs/heads/${g.branch}`);
    if (!head) return { kind: "conflict", files: [], message: `the batch's branch ${g.branch} is gone, and with it its changes`, blocked: false };
    const tip0 = await git.commitOf(top, ref);
    if (!tip0) return { kind: "conflict", files: [], message: `the target branch ${target} is gone`, blocked: false };
    if (await git.isAncestor(top, head, tip0)) return { kind: "merged", commit: tip0, already: true };
    const wt = g.worktree;
    if (!existsSync(join(wt, ".git"))) {
      await serial(async () => {
        await removeQuietly(wt);
        await git.checkoutWorktree(top, wt, g.branch);
      });
    } else {
      // What a run killed while landing left in the worktree: its own merge or rebase, half done.
      // The batch's work is committed on its branch, so the worktree goes back to exactly that.
      await git.abortInProgress(wt);
      if ((await git.headBranch(wt)) !== g.branch || (await changesIn(wt)).length) await git.restore(wt, g.branch);
    }
    for (let i = 0, busy = 0; i < LAND_TRIES; i++) {
      const tip = (await git.commitOf(top, ref))!;
      if (await git.isAncestor(top, head, tip)) return { kind: "merged", commit: tip, already: i === 0 };
      const merged = jg.strategy === "rebase" ? await git.rebaseOnto(wt, g.branch, tip) : await git.mergeOnto(wt, g.branch, tip, message(b, "merge"));
      if (!merged.ok) return { kind: "conflict", files: merged.files, message: `merge conflict in ${merged.files.join(", ")}${merged.message ? ` (${merged.message})` : ""}`, blocked: false };
      if (jg.strategy === "rebase") head = merged.commit;
      const r = await serial(() => git.land(top, target, merged.commit, tip));
      if (r.ok) return { kind: "merged", commit: merged.commit, already: false };
      if (r.reason === "busy" && busy++ < 20) {
        i--;
        await sleep(500);
        continue;
      }
      if (r.reason === "blocked" || r.reason === "busy") return { kind: "conflict", files: r.files, message: r.message, blocked: true };
      // moved: the target got a commit meanwhile; merge again on top of it.
    }
    return { kind: "conflict", files: [], message: `${target} kept moving while batch ${b.batch_num} was being landed`, blocked: false };
  };

  /** Lands batch n if it is its turn; false when the chain stops here. */
  const landBatch = async (n: number): Promise<boolean> => {
    const mine = (cur: BatchRecord, ctx: UpdateContext) =>
      cur.status === "completed" &&
      cur.git &&
      (cur.git.merge === "ready" || cur.git.merge === "branch" || (cur.git.merge === "merging" && (cur.git.merging_by === o.runnerId || !ctx.isLive(cur.git.merging_by ?? ""))));
    const claimed = await update(n, (cur, ctx) => (mine(cur, ctx) ? { batch: { ...cur, git: { ...cur.git!, merge: "merging", merging_by: o.runnerId } } } : null));
    if (!claimed.ok) return isLanded(claimed.batch);
    const b = claimed.batch!;
    let outcome: Outcome;
    try {
      outcome = await landOne(b);
    } catch (e) {
      outcome = { kind: "conflict", files: [], message: `git failed while landing it: ${(e as Error).message}`, blocked: false };
    }
    const at = new Date(o.wallNow()).toISOString();
    const ours = (cur: BatchRecord) => cur.status === "completed" && cur.git?.merge === "merging" && cur.git.merging_by === o.runnerId;
    if (outcome.kind === "merged") {
      const { commit, already } = outcome;
      const done = await update(n, (cur) =>
        ours(cur)
          ? {
              batch: { ...cur, git: { ...cur.git!, merge: "merged", merged_commit: commit, merged_at: at, merging_by: undefined, conflict: undefined } },
              events: [{ type: "batch_merged", batch_num: n, commit, target: jg.target!, strategy: jg.strategy, ...(already ? { already: true } : {}) }],
            }
          : null,
      );
      if (!done.ok) return isLanded(done.batch);
      // Its work is on the target now: the worktree (kept as a spare) and the branch go.
      await serial(async () => {
        await keepSpare(b.git!.worktree);
        await git.deleteBranch(top, b.git!.branch).catch(() => {});
      });
      return true;
    }
    const resolve = resolveSteps(b, outcome.files, outcome.blocked);
    const files = outcome.files;
    await update(n, (cur) =>
      ours(cur)
        ? {
            batch: { ...cur, status: "conflict", error: { message: outcome.message, category: "conflict" }, git: { ...cur.git!, merge: "conflict", merging_by: undefined, conflict: { files, message: outcome.message, resolve } } },
            events: [{ type: "batch_conflict", batch_num: n, files, message: outcome.message, resolve }],
          }
        : null,
    );
    return false;
  };

  /** Set when the chain of landings stops at a batch that needs someone (a conflict, a failure), not at one still to run. */
  let stuck = false;
  const pass = async () => {
    if (!jg.target) return;
    if (landed < 0) {
      landed = 0;
      for (let from = 1; ; ) {
        const page = await store.listBatches(id, { from, limit: 500 });
        let broke = false;
        for (const b of page) {
          while (landed + 1 < b.batch_num && elsewhere(landed + 1)) landed++;
          if (b.batch_num !== landed + 1 || !isLanded(b)) {
            broke = true;
            break;
          }
          landed = b.batch_num;
        }
        if (broke || page.length < 500) break;
        from = page[page.length - 1]!.batch_num + 1;
      }
    }
    while (landed < job.totalBatches && !stopped()) {
      const n = landed + 1;
      if (elsewhere(n)) {
        landed = n;
        continue;
      }
      const b = await store.getBatch(id, n);
      if (isLanded(b)) {
        landed = n;
        continue;
      }
      stuck = Boolean(b && (b.status === "failed" || b.status === "conflict" || b.damaged));
      if (!b || b.status !== "completed" || !b.git) return;
      if (!(await landBatch(n))) {
        stuck = true;
        return;
      }
      landed = n;
    }
    stuck = false;
  };
  let passing: Promise<void> | null = null;
  let again = false;
  const landReady = (): Promise<void> => {
    if (passing) {
      again = true;
      return passing;
    }
    passing = (async () => {
      do {
        again = false;
        await pass();
      } while (again && !stopped());
    })().finally(() => (passing = null));
    return passing;
  };

  // ---- Reaping ------------------------------------------------------------------------------
  /** Removes worktrees no batch needs (all of them with `all`); only while no other runner works on the job. */
  const reap = async (all = false) => {
    if (!(await alone())) return;
    await serial(async () => {
      await git.prune(top).catch(() => {});
      const known = (await git.worktrees(top)).filter((w) => under(w.path, root) || under(realish(w.path), realish(root)));
      const dirs = safeList(root)
        .filter((d) => /^(batch-\d+|spare-[\d-]+)$/.test(d))
        .map((d) => join(root, d));
      const paths = [...new Set([...known.map((w) => w.path), ...dirs])];
      for (const path of paths) {
        const n = Number(/batch-(\d+)$/.exec(path)?.[1]);
        const b = Number.isInteger(n) ? await store.getBatch(id, n) : null;
        // A batch waiting to land keeps its work on its branch; its worktree is made again when its turn comes.
        const needed = b && (b.status === "conflict" || b.status === "in_progress");
        if (needed && !all) continue;
        await removeQuietly(path);
        // A pending batch's branch is re-made from the base when it runs again.
        if (b && b.status === "pending" && b.git) await git.deleteBranch(top, b.git.branch).catch(() => {});
      }
      spares = spares.filter((p) => existsSync(p));
    });
  };

  const discard = async (b: BatchRecord) => {
    const g = b.git;
    if (!g) return;
    let kept: string | undefined;
    await serial(async () => {
      if (c.keep_failed && existsSync(join(g.worktree, ".git"))) {
        try {
          await git.abortInProgress(g.worktree);
          await git.commitAll(g.worktree, g.branch, message(b, "failed"), shareRel);
          kept = `${prefix}failed/batch-${b.batch_num}`;
          await git.renameBranch(top, g.branch, kept);
        } catch (e) {
          kept = undefined;
          o.warn(`batch ${b.batch_num}: could not keep its edits on a branch (${(e as Error).message})`);
        }
      }
      await keepSpare(g.worktree);
      if (!kept) await git.deleteBranch(top, g.branch).catch(() => {});
    });
    await update(b.batch_num, (cur) =>
      cur.status === "failed" && cur.token === b.token ? { batch: { ...cur, git: { ...cur.git!, merge: "discarded", ...(kept ? { kept_branch: kept } : {}) } } } : null,
    );
  };

  const isolation: Isolation = {
    get git() {
      return jg;
    },

    async prepare(rec, p) {
      recorder = p.recorder;
      stopped = p.stopped;
      const selection = p.selection;
      if (selection.kind === "shard") elsewhere = (n) => !inSelection(selection, n);
      if (p.joining) {
        if (rec.git) jg = rec.git;
        return rec;
      }
      await waitForGit(jobTag);
      if (p.force) {
        // Starting over: a new base, and nothing of the old batches' worktrees and branches.
        jg = { ...jg, base: target ? ((await git.commitOf(top, `refs/heads/${target}`)) ?? headCommit) : headCommit };
        await reap(true);
        for (const br of await git.branches(top, `${prefix}batch-`).catch(() => [] as string[])) await git.deleteBranch(top, br).catch(() => {});
      }
      mkdirSync(join(stateFolder(c), "worktrees"), { recursive: true });
      const ignore = join(stateFolder(c), "worktrees", ".gitignore");
      if (!existsSync(ignore)) writeFileSync(ignore, "# Mozart's batch worktrees: never part of the repository\n*\n");
      const next = { ...rec, git: jg };
      await store.putJob(next);

      // Repairs: locks a killed git left in kept worktrees, then conflicts go back to their merge.
      await git.prune(top).catch(() => {});
      for (const w of await git.worktrees(top)) {
        if (!under(w.path, root)) continue;
        const dir = git.gitDirOf(w.path);
        if (dir) rmSync(join(dir, "index.lock"), { force: true });
      }
      if (p.rerunConflicts) await store.resetBatches(id, { status: "conflict" });
      else {
        for (const b of await store.listBatches(id, { statuses: ["conflict"] })) {
          if (await resolving(b.git?.worktree)) {
            o.warn(`batch ${b.batch_num}: its worktree ${b.git?.worktree} has a resolution in progress (a merge or rebase started, or changes not committed); finish and commit it there, then resume again`);
            continue;
          }
          await update(b.batch_num, (cur) => (cur.status === "conflict" ? { batch: { ...cur, status: "completed", error: null, git: { ...cur.git!, merge: "ready" } } } : null));
        }
      }
      await reap();
      await landReady();
      return next;
    },

    async unlanded() {
      return jg.target ? hasUnlanded(store, id) : false;
    },

    async enter(b, e) {
      const n = b.batch_num;
      const path = pathOf(n);
      const branch = branchOf(n);
      if (e.previous) await waitForGit(gitTagOf(e.previous.runner));
      // A batch run again after its work reached (or clashed with) the target starts from the target's latest commit.
      const rerun = b.git && (b.git.merge === "merged" || b.git.merge === "conflict") && jg.target;
      const base = (rerun ? await git.commitOf(top, `refs/heads/${jg.target}`) : null) ?? jg.base;
      try {
        await serial(async () => {
          if (existsSync(path) || (await git.worktrees(top)).some((w) => w.path === path)) await git.removeWorktree(top, path);
          mkdirSync(dirname(path), { recursive: true });
          await makeWorktree(path, branch, base);
        });
      } catch (err) {
        return { error: `could not create the batch's worktree ${path}: ${(err as Error).message}`, output: err instanceof GitError ? err.output : "" };
      }
      const ws = join(path, relWs);
      mkdirSync(ws, { recursive: true });
      for (const s of c.worktree.share) {
        const from = resolve(c.workspace, s);
        const to = join(ws, s);
        if (!existsSync(from)) {
          warnOnce(`share:${s}`, `worktree.share: ${from} does not exist in the main tree; not linked`);
          continue;
        }
        if (lexists(to)) {
          warnOnce(`tracked:${s}`, `worktree.share: ${s} is part of the repository's files, so each worktree has its own copy; not linked`);
          continue;
        }
        mkdirSync(dirname(to), { recursive: true });
        symlinkSync(from, to, "dir");
      }
      const view = job.relocated(mapInto(path));
      if (c.worktree.setup?.trim()) {
        let output = "";
        const r = await runProcess({
          shell: c.worktree.setup,
          cwd: ws,
          env: { ...o.env, ...c.backend.env, MOZART_WORKTREE: path, MOZART_WORKSPACE: ws, MOZART_BATCH_NUM: String(n), MOZART_JOB_NAME: id },
          timeoutMs: c.worktree.setup_timeout_seconds * 1000,
          signal: e.signal,
          tag: e.tag,
          maxCapture: { head: 0, tail: SETUP_OUTPUT_CHARS },
          onOutput: (_s, chunk) => (output = (output + chunk).slice(-SETUP_OUTPUT_CHARS)),
        });
        if (r.exit_code !== 0) {
          const why = r.spawn_error ? r.spawn_error.message : r.timed_out ? `timed out after ${c.worktree.setup_timeout_seconds} s` : r.interrupted ? "interrupted" : r.exit_code === null ? `killed by ${r.signal}` : `exit code ${r.exit_code}`;
          return { error: `worktree.setup failed (${why}): ${clip(c.worktree.setup, 120)}`, output: output.trim() || "(no output)" };
        }
      }
      return { job: view, worktree: path, git: { branch, base, worktree: path, merge: "open" } };
    },

    async seal(b) {
      const g = b.git;
      if (!g) return { error: "the batch has no worktree record" };
      try {
        const { head } = await git.commitAll(g.worktree, g.branch, message(b, "batch"), shareRel);
        return { ...g, head, merge: jg.target ? "ready" : "branch" };
      } catch (e) {
        return { error: `could not commit the batch's changes on ${g.branch}: ${(e as Error).message}` };
      }
    },

    async settle(b) {
      try {
        if (b.status === "completed" && b.git) {
          if (jg.target) await landReady();
          // Not landed and not about to be (an earlier batch needs a resolution first): its
          // branch holds its work, and its worktree need not take disk space meanwhile.
          const now = jg.target ? await store.getBatch(id, b.batch_num) : null;
          if (!jg.target || (stuck && now?.status === "completed" && now.git?.merge === "ready")) await serial(() => keepSpare(b.git!.worktree));
        } else if (b.status === "failed") await discard(b);
        // Pending (stopped, handed back): the next claim makes a fresh worktree; the reaper removes it meanwhile.
      } catch (e) {
        o.warn(`batch ${b.batch_num}: ${(e as Error).message}`);
      }
    },

    async finish() {
      try {
        await landReady();
        await reap();
      } catch (e) {
        o.warn(`worktrees: ${(e as Error).message}`);
      }
    },
  };
  return isolation;
}

/** `mozart clean`: every worktree of the job removed; branches that hold work not on the target are kept. */
export async function cleanWorktrees(rec: JobRecord, store: StateStore, env: Record<string, string | undefined>): Promise<{ removed: string[]; deleted_branches: string[]; kept_branches: string[] }> {
  const g = rec.git!;
  const git = createGit({ env });
  await git.prune(g.top);
  const removed: string[] = [];
  const listed = (await git.worktrees(g.top)).filter((w) => under(w.path, g.root)).map((w) => w.path);
  const dirs = safeList(g.root).map((d) => join(g.root, d));
  for (const path of [...new Set([...listed, ...dirs])]) {
    await git.removeWorktree(g.top, path);
    removed.push(path);
  }
  await git.prune(g.top);
  const deleted: string[] = [];
  const kept: string[] = [];
  for (const branch of await git.branches(g.top, `${g.prefix}batch-`)) {
    const n = Number(/batch-(\d+)$/.exec(branch)?.[1]);
    const b = Number.isInteger(n) ? await store.getBatch(rec.job_id, n) : null;
    const work = b && ((b.status === "completed" && b.git?.merge !== "merged") || b.status === "conflict");
    if (work) kept.push(branch);
    else {
      await git.deleteBranch(g.top, branch);
      deleted.push(branch);
    }
  }
  return { removed, deleted_branches: deleted, kept_branches: kept };
}

/** A runner's own tag on its git processes: a runner that takes over a batch waits for them. */
const gitTagOf = (runnerId: string) => `mzgit-${runnerId}`;

function hash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

function older(v: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    if ((v[i] ?? 0) !== min[i]) return (v[i] ?? 0) < min[i]!;
  }
  return false;
}

/** `mozart/<job>/`: the job name when it is a valid ref component, else a slug with a hash. */
async function branchPrefix(git: Git, top: string, id: string): Promise<string> {
  const plain = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(id) && !id.includes("..") && !id.endsWith(".lock") && !id.endsWith(".");
  const slug = plain ? id : `${id.normalize("NFKD").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/\.{2,}/g, ".").replace(/^[-.]+|[-.]+$/g, "").slice(0, 40) || "job"}-${hash(id).slice(0, 8)}`;
  const prefix = `mozart/${slug}/`;
  return (await git.validBranchName(top, `${prefix}batch-1`)) ? prefix : `mozart/job-${hash(id)}/`;
}

/** The real path of `p`, or of its nearest existing folder with the rest appended. */
function realish(p: string): string {
  const abs = resolve(p);
  const rest: string[] = [];
  for (let dir = abs; ; dir = dirname(dir)) {
    try {
      return join(realpathSync(dir), ...rest.reverse());
    } catch {
      if (dirname(dir) === dir) return abs;
      rest.push(dir.slice(dirname(dir).length + 1));
    }
  }
}

function under(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function hasOperation(gitDir: string): boolean {
  return ["MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD"].some((f) => existsSync(join(gitDir, f)));
}

const toPosix = (p: string) => p.split("\\").join("/");
