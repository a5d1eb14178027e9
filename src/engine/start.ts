/**
 * The one way a run begins: `mozart run`, `resume`, `run --join`, and later the dashboard and
 * workers all call startRun(). It checks the job file against the job's records, takes the
 * runner's lease, makes the state rewrites a selection needs (--from, --retry-failed, --force),
 * and drives the scheduler; every step of every batch is recorded through the recorder as one
 * atomic, fenced write, and only then reaches the run's listeners and notifications.
 *
 *   const run = startRun({ job, store, command: "run", env: process.env });
 *   run.events.on((e) => …);            // recorded events of this run, with their seq
 *   run.stop(); run.kill();              // drain (pause) / stop running attempts now
 *   const result = await run.done;       // outcome, final job record, summary
 */
import { randomBytes } from "node:crypto";
import { access, mkdir } from "node:fs/promises";
import { createBackend } from "../backends/index.ts";
import type { Activity, Backend, ExecutionResult, RemoteCheckpoints } from "../backends/types.ts";
import type { PreparedJob } from "../config/check.ts";
import { EXIT, MozartError } from "../errors.ts";
import { createNotificationFeed, createNotifier, FLUSH_TIMEOUT_MS, type NotifierOptions } from "../notify/index.ts";
import { completionPrompt } from "../prompts/completion.ts";
import { PROCESS_TAGS_ENV, stopTree } from "../runtime/process.ts";
import { blobHash, myHost } from "../state/driver.ts";
import type { EventPayload } from "../state/events.ts";
import { heartbeatMs, leaseTtlMs } from "../state/lease.ts";
import { stateLocation } from "../state/location.ts";
import { findJob, registerJob } from "../state/registry.ts";
import { jobAccount, readAccountHold, writeAccountHold } from "../state/accounts.ts";
import { roundUsd } from "../state/spend.ts";
import { inSelection, type AttemptRecord, type BatchRecord, type Claim, type Hold, type JobRecord, type JobSummary, type LeaveOutcome, type Requester, type RunningProcess, type Selection, type SpendRecord, type StateStore, type Step } from "../state/types.ts";
import { shellQuote } from "../text.ts";
import { runAttempt } from "./attempt.ts";
import { spendEntry } from "./spend.ts";
import { createLearner } from "../learning/learner.ts";
import { historyPath } from "../learning/history.ts";
import { buildOutcome, type Outcome } from "../learning/outcome.ts";
import { addTokens, noTokens } from "../state/spend.ts";
import { isZone } from "./limits.ts";
import { systemClock, type Clock } from "./clock.ts";
import { CONTROL_TICK_MS, watchRun } from "./control.ts";
import { createEmitter, type Emitter } from "./events.ts";
import { configHash, freshBatch, jobFields, newJobRecord, planConflict, requestFor, sameJobFile } from "./job.ts";
import { createRecorder, LeaseLostError } from "./recorder.ts";
import { createScheduler } from "./scheduler.ts";
import { initialProgress, step, type StepPolicy, type ValidationOutcome } from "./step.ts";
import { snapshotMtimes, summarize } from "./validate.ts";
import { openIsolation } from "./worktrees.ts";

export interface StartOptions {
  job: PreparedJob;
  store: StateStore;
  command: "run" | "resume";
  /** Add this runner to a running job (`run --join`); without a running job it simply runs it. */
  join?: boolean;
  /** resume: re-run from batch N onwards, completed or not. */
  from?: number;
  /** resume: re-run only the failed batches. */
  retryFailed?: boolean;
  /** resume: start the job over. */
  force?: boolean;
  /** resume (isolation: worktree): run batches in conflict again on the target's latest commit. */
  rerunConflicts?: boolean;
  /** Continue although the job file changed. */
  forceConfig?: boolean;
  /** Expire the lease of the runner that holds the job (`--take-over`). */
  takeOver?: boolean;
  /** resume --budget: the job's new budget.max_cost_usd, kept in the job record for later runs. */
  budget?: number;
  /** Record the job for runners elsewhere (`run --submit`): its state is set up as for a run, nothing runs here. */
  submit?: boolean;
  /**
   * Run the job as it was submitted (`mozart worker`): the job record is the truth, whatever this
   * machine's copy of the paths says; no config check, no state rewrites, no registry.
   */
  submitted?: boolean;
  /** Only these batches (`run --shard k/n`); other selections come from the flags. */
  selection?: Selection;
  env: Record<string, string | undefined>;
  /** MOZART_HOME: the run registers the job there, so it is found from any folder. */
  home?: string;
  /** Injected in tests; default: the backend the job file names. */
  backend?: Backend;
  clock?: Clock;
  random?: () => number;
  /** Notification channel dependencies (fetch, platform) for tests; false turns notifications off. */
  notify?: Partial<NotifierOptions> | false;
  ttlMs?: number;
  tickMs?: number;
  /** Problems that do not stop the run (a notification or registry write failed). */
  warn?: (message: string) => void;
}

/**
 * selection_done: a run limited to some batches (--retry-failed) finished them all, while other
 * batches of the job are still pending; the job stays paused, the command succeeded.
 */
export type RunOutcome = "completed" | "failed" | "paused" | "cancelled" | "lost" | "nothing_to_do" | "selection_done" | "submitted" | "left";

export interface RunResult {
  outcome: RunOutcome;
  job: JobRecord;
  summary: JobSummary;
  /** Why a run ended early or did nothing, in the user's words. */
  message?: string;
  by?: Requester;
  /** Batches this runner ran to an end. */
  ran: number;
}

export interface RunHandle {
  readonly events: Emitter;
  readonly runnerId: string;
  /** Start no new attempts; running ones finish; the job ends paused (first Ctrl+C, `mozart pause`). */
  stop(by?: Requester): void;
  /** Stop the running attempts now and record them as interrupted; the job ends paused, resumable (second Ctrl+C). */
  kill(by?: Requester): void;
  /**
   * This runner leaves and the job stays queued for the others (a worker's SIGTERM): nothing new
   * starts; running attempts finish, or with `now` are stopped and handed back at once.
   */
  leave(now?: boolean): void;
  done: Promise<RunResult>;
}

/** Exit code of a run's outcome. */
export function exitCodeOf(outcome: RunOutcome): number {
  switch (outcome) {
    case "completed":
    case "nothing_to_do":
    case "selection_done":
    case "submitted":
    case "left":
      return EXIT.ok;
    case "paused":
    case "cancelled":
      return EXIT.paused;
    default:
      return EXIT.failed;
  }
}

type Stopping =
  | { kind: "pause"; by?: Requester }
  | { kind: "budget"; spent: number; max: number }
  | { kind: "low_success"; rate: number; window: number; threshold: number; failing: string[] }
  | { kind: "leave"; now?: boolean }
  | { kind: "kill"; by?: Requester }
  | { kind: "cancel"; by?: Requester }
  | { kind: "fail"; message: string }
  | { kind: "lost"; message: string }
  | { kind: "broken"; error: Error }
  | { kind: "error"; error: unknown };

const iso = (ms: number) => new Date(ms).toISOString();

export function startRun(opts: StartOptions): RunHandle {
  const events = createEmitter((e) => opts.warn?.(`a listener failed: ${(e as Error).message}`));
  const runnerId = `${myHost().replace(/[^\w.-]/g, "").slice(0, 24) || "host"}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const killCtl = new AbortController();
  const stopCtl = new AbortController();
  let stopping: Stopping | undefined;
  let onStopping: (() => void) | undefined;

  const setStopping = (s: Stopping) => {
    // A stronger request wins: kill/cancel over pause; errors and lost leases over everything.
    const rank = { pause: 1, budget: 1, low_success: 1, leave: 1, fail: 1, kill: 2, cancel: 2, lost: 3, broken: 3, error: 3 } as const;
    const level = (x: Stopping) => (x.kind === "leave" && x.now ? 2 : rank[x.kind]);
    if (stopping && level(stopping) > level(s)) return;
    if (stopping && stopping.kind === s.kind && level(stopping) === level(s)) return;
    if (stopping?.kind === "cancel" && s.kind === "kill") return;
    // A runner leaving stays a leave when asked to hurry: the job is not paused for the others.
    if (stopping?.kind === "leave" && s.kind === "kill") s = { kind: "leave", now: true };
    stopping = s;
    stopCtl.abort();
    if (s.kind !== "pause" && s.kind !== "fail" && s.kind !== "budget" && s.kind !== "low_success" && !(s.kind === "leave" && !s.now)) killCtl.abort();
    onStopping?.();
  };

  const handle: RunHandle = {
    events,
    runnerId,
    stop: (by) => setStopping({ kind: "pause", by }),
    kill: (by) => setStopping({ kind: "kill", by }),
    leave: (now) => setStopping({ kind: "leave", now }),
    done: Promise.resolve().then(() => execute(opts, { events, runnerId, killCtl, stopCtl, get: () => stopping, set: setStopping, onChange: (fn) => (onStopping = fn) })),
  };
  return handle;
}

interface RunState {
  events: Emitter;
  runnerId: string;
  killCtl: AbortController;
  stopCtl: AbortController;
  get(): Stopping | undefined;
  set(s: Stopping): void;
  onChange(fn: () => void): void;
}

/** The budget in force: one raised by `resume --budget` (kept in the job record) wins over the job file's. */
export function budgetOf(job: PreparedJob, rec: Pick<JobRecord, "budget"> | null | undefined): number | undefined {
  return rec?.budget?.max_cost_usd ?? job.config.budget.max_cost_usd;
}

const usd = (x: number) => `$${x.toFixed(x < 1 ? 4 : 2)}`;

async function execute(opts: StartOptions, st: RunState): Promise<RunResult> {
  const { job, store, env } = opts;
  const c = job.config;
  const id = c.name;
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? Math.random;
  const wallNow = () => Date.now();
  const warn = opts.warn ?? (() => {});
  const ttlMs = opts.ttlMs ?? leaseTtlMs(env);

  // The context a batch-API backend records its submissions through; bound to the store and
  // the recorder once the run has them.
  let recordRemote: RemoteCheckpoints["event"] = async () => {};
  const remote: RemoteCheckpoints = { store, jobId: id, runnerId: st.runnerId, event: (e) => recordRemote(e), warn };
  const killGraceMs = c.backend.type === "claude_cli" || c.backend.type === "command" ? c.backend.stop_grace_seconds * 1000 : undefined;
  // Every process this runner starts carries the runner's tag (its attempts add their own), so
  // what left its process group is still found: by a takeover after a crash, and by the sweep at exit.
  const runnerTag = `mz-${st.runnerId}`;
  const childEnv = { ...env, [PROCESS_TAGS_ENV]: [env[PROCESS_TAGS_ENV], runnerTag].filter(Boolean).join(" ") };
  const backend = opts.backend ?? createBackend(c.backend, { jobDir: job.dir, workspace: c.workspace, env: childEnv, ...(killGraceMs !== undefined ? { killGraceMs } : {}), remote });
  // A problem no attempt can get past (a missing API key) stops the run here: nothing is sent, nothing recorded.
  const unfit = backend.preflight?.();
  if (unfit) throw new MozartError(unfit.message, { exitCode: EXIT.usage, hint: unfit.hint });
  if (opts.budget !== undefined && !(Number.isFinite(opts.budget) && opts.budget > 0)) throw new MozartError(`--budget expects an amount in USD above 0, got ${opts.budget}`, { exitCode: EXIT.usage });

  if (env.TZ && !env.TZ.startsWith(":") && !isZone(env.TZ)) warn(`TZ=${env.TZ} is not a known IANA time zone (e.g. Europe/Lisbon): reset times printed without a zone are read in UTC`);
  // A submission runs nothing here: the workspace is the runners' business.
  if (!opts.submit) {
    await mkdir(c.workspace, { recursive: true }).catch((e: Error) => {
      throw new MozartError(`cannot create the workspace ${c.workspace}: ${e.message}`);
    });
  }
  if (opts.home && !opts.submitted) await checkRegistry(opts.home, job);

  // --- The job record and what the job file may change ---------------------------------------
  let rec = await store.getJob(id).catch((e: MozartError) => {
    // The store cannot know the job file; here it is known, so the hint names it.
    throw e.name === "MozartError" && e.hint?.includes("<job file>") ? new MozartError(e.message, { hint: e.hint.replace("<job file>", shellQuote(job.file)) }) : e;
  });
  // isolation: worktree refuses what cannot work (no git, a dirty tree, …) before anything is recorded.
  const isolation = c.isolation === "worktree" ? await openIsolation({ job, store, existing: rec, force: opts.force, env: childEnv, runnerId: st.runnerId, warn, wallNow }) : undefined;
  // Whether the job file still describes the recorded job (a new record is its own).
  let unchanged = true;
  if (!rec) {
    const orphans = await store.listBatches(id, { limit: 1 });
    if (orphans.length) {
      throw new MozartError(`the job record of "${id}" is missing from ${store.location}, but its batch records are there`, {
        hint: `rebuild it from the job file: mozart repair ${shellQuote(job.file)} (running it again now would redo completed batches)`,
      });
    }
    if (opts.command === "resume") throw new MozartError(`job "${id}" has no state yet`, { hint: `start it with: mozart run ${shellQuote(job.file)}` });
    rec = await newJobRecord(job, store, wallNow());
    await store.putJob(rec);
  } else if (!opts.submitted) {
    unchanged = await sameJobFile(job, rec, store);
    if (!unchanged) {
      if (!opts.forceConfig) {
        throw new MozartError(`the job file changed since job "${id}" started (config ${rec.config_hash} → ${configHash(job)})`, {
          exitCode: EXIT.usage,
          hint: "continue with the new job file: --force-config; or give the job a new name to start it over",
        });
      }
      const conflict = await planConflict(job, store, id);
      if (conflict && !opts.force) {
        throw new MozartError(`the batch plan changed (batch.size, start_item or total_items) and no longer matches the recorded batches: ${conflict}`, {
          exitCode: EXIT.usage,
          hint: "restore the batch settings to continue; or start over with `mozart resume <job> --force` (completed batches run again); or give the job a new name",
        });
      }
    }
  }

  const before = await store.summary(id, job.totalBatches);
  if (before.damaged && !opts.force) {
    const damaged = (await store.listBatches(id, { limit: 5000 })).filter((b) => b.damaged).slice(0, 3);
    throw new MozartError(`${before.damaged} batch record${before.damaged === 1 ? " is" : "s are"} damaged, e.g. ${damaged.map((b) => b.damaged).join("; ")}`, {
      hint: `mozart repair ${shellQuote(id)} marks them pending (their batches run again) and keeps everything else`,
    });
  }

  // The quota guard's account (claude_cli): registered with the job, so `list` can show its hold.
  const accountId = jobAccount(c, env);
  const register = (status: string, s: JobSummary, runner: boolean, stoppedBy?: Requester) =>
    opts.home && !opts.submitted
      ? registerJob(opts.home, {
          job_id: id,
          state_backend: c.state_backend,
          state_location: stateLocation(c),
          config_path: job.file,
          workspace: c.workspace,
          updated_at: iso(wallNow()),
          ...(accountId ? { account: accountId } : {}),
          snapshot: { status, completed: s.completed, total: job.totalBatches, cost_usd: s.cost_usd, ...(s.conflict ? { conflict: s.conflict } : {}), ...(runner ? { runner: { pid: process.pid, host: myHost() } } : {}), ...(stoppedBy ? { stopped_by: stoppedBy } : {}) },
        }).then(
          () => {},
          (e: Error) => warn(`could not register the job under ${opts.home} (${e.message}); status and resume will need the job file`),
        )
      : Promise.resolve();
  // --- The lease ------------------------------------------------------------------------------
  const now0 = wallNow();
  const lease = { id: st.runnerId, pid: process.pid, host: myHost(), started_at: iso(now0), until: now0 + ttlMs, renewed_at: now0 };
  const joined = await store.join(id, lease, { now: now0, ttlMs, exclusive: !opts.join && !opts.submitted && !opts.submit, takeOver: opts.takeOver });
  if (!joined.ok) throw heldError(id, joined.holders, now0);
  const others = (await store.runners(id, now0)).filter((l) => l.id !== st.runnerId);
  const joining = Boolean(opts.join || opts.submitted || opts.submit) && others.length > 0;
  let leaseHeld = true;

  const release = async () => {
    if (!leaseHeld) return;
    leaseHeld = false;
    await store.leave(id, st.runnerId, wallNow()).catch(() => {});
  };

  let selection: Selection = { kind: "all" };
  let toRun: number[] | undefined;
  try {
    // --- Nothing to do? -----------------------------------------------------------------------
    const current = await store.summary(id, job.totalBatches);
    const completedAlready = current.completed >= job.totalBatches && (opts.submitted || unchanged) && !(await isolation?.unlanded());
    if (!joining && !opts.force && opts.from === undefined && completedAlready) {
      // Every batch is done: a record that says otherwise (rebuilt by repair, a run killed at its
      // very end) is brought in line, so status does not go on calling the job paused.
      if (rec.status !== "completed" && current.damaged === 0) {
        rec = { ...rec, status: "completed", updated_at: iso(wallNow()), completed_at: rec.completed_at ?? iso(wallNow()) };
        await store.putJob(rec);
      }
      await release();
      await register(rec.status, current, false);
      return { outcome: "nothing_to_do", job: rec, summary: current, message: `job "${id}" is already completed (${current.completed}/${job.totalBatches} batches): nothing to do`, ran: 0 };
    }
    if (!joining && opts.retryFailed && current.failed === 0) {
      await release();
      await register(rec.status, current, false);
      return { outcome: "nothing_to_do", job: rec, summary: current, message: "no failed batches to retry", ran: 0 };
    }

    // --- Selection and the state rewrites it needs (only the runner that starts the run) -----
    if (joining && opts.submit) {
      await release();
      return { outcome: "submitted", job: rec, summary: current, message: `job "${id}" is already running on ${others.length} runner${others.length === 1 ? "" : "s"}`, ran: 0 };
    }
    if (joining || opts.submitted) {
      selection = rec.run?.selection ?? { kind: "all" };
      if (!joining && rec.status !== "running") {
        // The first runner of a submitted job: it is running now; its records stay as submitted.
        rec = { ...rec, status: "running", updated_at: iso(wallNow()), started_at: rec.started_at ?? iso(wallNow()), run: rec.run ?? { id: st.runnerId, started_at: iso(wallNow()), selection } };
        await store.putJob(rec);
      }
    } else {
      // The registry's snapshot (what `list` shows) must not go on saying "completed" if this
      // runner dies between the rewrites below and its registration as running.
      if (opts.force || opts.from !== undefined) await register("running", current, true);
      if (opts.force) {
        // Starting over throws away what Message Batches still being processed would bring back: cancel them at the API.
        await backend.cancelRemote?.().catch((e: Error) => warn(`cannot cancel the job's Message Batches at the API: ${e.message}`));
        await store.clearBatches(id);
      } else if (opts.from !== undefined) {
        if (!Number.isInteger(opts.from) || opts.from < 1 || opts.from > job.totalBatches) {
          throw new MozartError(`--from ${opts.from} is out of range: the job has ${job.totalBatches} batches`, { exitCode: EXIT.usage });
        }
        await store.resetBatches(id, { from: opts.from });
      } else if (opts.retryFailed) {
        toRun = (await store.listBatches(id, { statuses: ["failed"] })).map((b) => b.batch_num).filter((n) => n <= job.totalBatches);
        selection = { kind: "only", batches: toRun };
        await store.resetBatches(id, { status: "failed" });
      } else if (opts.selection) {
        selection = opts.selection;
        await store.resetBatches(id, { status: "failed" });
      } else {
        // A plain run or resume re-runs failed batches too.
        await store.resetBatches(id, { status: "failed" });
      }
      await store.setControl(id, null);
      if (opts.budget !== undefined && !opts.force) {
        const spent = (await store.spendTotals(id)).usd;
        if (opts.budget <= spent) {
          throw new MozartError(`--budget ${usd(opts.budget)} is not above the ${usd(spent)} the job has already cost`, { exitCode: EXIT.usage, hint: `give a larger amount: mozart resume ${shellQuote(id)} --budget ${Math.ceil(spent * 2 + 1)}` });
        }
      }
      const fields = await jobFields(job, store);
      rec = {
        ...rec,
        ...fields,
        ...(c.description ? { description: c.description } : {}),
        // Submitted: queued for runners elsewhere (workers take `pending` and `running` jobs).
        status: opts.submit ? "pending" : "running",
        updated_at: iso(wallNow()),
        started_at: opts.force || !rec.started_at ? iso(wallNow()) : rec.started_at,
        run: { id: st.runnerId, started_at: iso(wallNow()), selection },
      };
      delete rec.error;
      delete rec.completed_at;
      delete rec.stopped_by;
      delete rec.paused_for;
      // Starting over drops a budget raised for the earlier run; --budget sets one for this run and the ones after.
      if (opts.force) delete rec.budget;
      if (opts.budget !== undefined) rec.budget = { max_cost_usd: opts.budget, set_at: iso(wallNow()) };
      await store.putJob(rec);
      if (opts.submit) {
        await release();
        const s = await store.summary(id, job.totalBatches);
        await register("pending", s, false);
        await store.commit(id, { events: [{ type: "job_submitted", total_batches: job.totalBatches, completed: s.completed }] }, wallNow());
        return { outcome: "submitted", job: rec, summary: s, message: `job "${id}" is submitted: ${job.totalBatches - s.completed} of ${job.totalBatches} batches wait for workers`, ran: 0 };
      }
    }
  } catch (e) {
    await release();
    throw e;
  }
  const record: JobRecord = rec;

  await register("running", await store.summary(id, job.totalBatches), true);
  // `mozart list` reads the registry's snapshot: keep it a few seconds fresh while batches complete.
  let snapshotAt = wallNow();
  st.events.on((e) => {
    if (e.type !== "batch_complete" || wallNow() - snapshotAt < 5000) return;
    snapshotAt = wallNow();
    void store.summary(id, job.totalBatches).then((s) => register("running", s, true), () => {});
  });

  // --- Wiring ---------------------------------------------------------------------------------
  // Every process this runner starts carries the runner's tag (its attempts add their own, see
  // childEnv above), so what left its process group is still found: by a takeover after a crash,
  // and by the sweep at exit.
  const recorder = createRecorder({ store, jobId: id, emitter: st.events, wallNow, warn });
  recordRemote = async (e) => {
    await recorder.commit({ events: [e] });
  };
  let flushNotifications = async () => {};
  if (opts.notify !== false && c.notifications.length) {
    const notifier = createNotifier(c.notifications, { env, log: warn, ...(opts.notify || {}) });
    // After the selection's rewrites: what this run starts from is what its notifications count
    // on. Notifications never break a run: an unreadable summary falls back to the one read before.
    const now = await store.summary(id, job.totalBatches).catch(() => before);
    const feed = createNotificationFeed({ job_id: id, job_name: record.job_name, total_batches: job.totalBatches, completed: now.completed, failed: now.failed, cost_usd: now.cost_usd });
    st.events.on((e) => {
      const n = feed(e);
      if (n) notifier.notify(n[0], n[1]);
    });
    flushNotifications = () => notifier.flush(FLUSH_TIMEOUT_MS);
  }
  const policy: StepPolicy = { retry: c.retry, rate_limit: c.rate_limit };
  // Outcomes, the history and the breaker; a batch-API backend submits everything at once, so its concurrency is not stepped.
  const learner = createLearner({
    learning: backend.inFlight ? { ...c.learning, escalation_enabled: false } : c.learning,
    historyPath: historyPath({ home: opts.home, storePath: c.learning.outcome_store_path, jobDir: job.dir }),
    concurrency: backend.inFlight ?? c.concurrency,
    warn,
  });
  const configuredModel = "model" in c.backend ? c.backend.model : undefined;
  /** A batch finished (or was cancelled while it ran): its outcome goes to the history and the breaker judges. */
  const learnFrom = async (o: Outcome | undefined) => {
    if (!o) return;
    const v = await learner.finished(o);
    scheduler.setConcurrency(v.concurrency);
    if (v.pause) st.set({ kind: "low_success", ...v.pause });
  };
  // The quota guard: a subscription limit holds every job on this machine that uses the same account.
  const account = opts.home && accountId ? { home: opts.home, id: accountId } : undefined;
  let holdUntil = 0;
  let hold: Hold | null = null;
  /** backend.fallback_models: the model every batch of this run starts on while a per-model limit lasts. */
  let modelFallback: { level: number; until: number } | undefined;
  let ran = 0;
  const mine = new Map<number, { tag: string; pid?: number; pgid?: number }>();

  const applyHold = (h: Hold | null) => {
    hold = h && (!hold || h.until >= hold.until) ? h : hold;
    holdUntil = Math.max(holdUntil, h?.until ?? 0);
  };
  applyHold(await store.getHold(id));
  /**
   * Called by HTTP backends right before every request: waits out the shared hold, so no worker
   * (of this runner, or of another through the hold record) sends a request inside it. False
   * when the run stopped during the wait: then the attempt sends nothing.
   */
  const beforeRequest = async (signal: AbortSignal): Promise<boolean> => {
    if (holdUntil <= clock.now()) return true;
    while (holdUntil > clock.now()) {
      if (st.get() || signal.aborted) return false;
      await clock.sleep(Math.min(holdUntil - clock.now(), 1000), st.stopCtl.signal);
    }
    return !st.get();
  };

  // --- The cost ledger and the budget ---------------------------------------------------------
  // What the job has cost is the ledger's sum in the store (every runner's attempts); this
  // runner adds its own as they are recorded and re-reads the sum at most once a second.
  const budget = budgetOf(job, record);
  let spent = (await store.spendTotals(id)).usd;
  let spentReadAt = wallNow();
  const refreshSpent = async () => {
    if (budget === undefined || wallNow() - spentReadAt < 1000) return;
    spentReadAt = wallNow();
    spent = (await store.spendTotals(id)).usd;
  };
  const checkBudget = () => {
    if (budget !== undefined && spent >= budget - 1e-9) st.set({ kind: "budget", spent, max: budget });
  };

  // --- Message Batches of earlier runs --------------------------------------------------------
  // For a batch-API backend: which attempt of each batch is still with the provider, so its
  // batch re-attaches to it instead of submitting it again.
  const submitted = new Map<number, { key: string; custom_id: string; attempt: number }>();
  if (backend.inFlight) {
    for (const rb of await store.listRemoteBatches(id)) {
      if (rb.status === "failed") continue;
      for (const item of rb.items) {
        const seen = submitted.get(item.batch_num);
        if (!seen || item.attempt >= seen.attempt) submitted.set(item.batch_num, { key: rb.key, custom_id: item.custom_id, attempt: item.attempt });
      }
    }
  }
  const detachedAttempt = async (b: BatchRecord) => {
    const item = submitted.get(b.batch_num);
    if (!item || item.attempt !== b.attempts) return undefined;
    const rec = (await store.listAttempts(id, b.batch_num)).find((a) => a.attempt === item.attempt);
    if (!rec || (rec.decision !== "running" && rec.decision !== "detached")) return undefined;
    const prompt = await store.getBlob(rec.prompt_blob);
    return prompt === null ? undefined : { ...item, mode: rec.mode, prompt };
  };

  const watcher = watchRun({
    store,
    jobId: id,
    runnerId: st.runnerId,
    ttlMs,
    heartbeatMs: heartbeatMs(ttlMs),
    tickMs: opts.tickMs ?? CONTROL_TICK_MS,
    handlers: {
      control: (ctl) => {
        void recorder.commit({ events: [{ type: "control", request: ctl.request, by: ctl.by }] }).catch(() => {});
        st.set(ctl.request === "cancel" ? { kind: "cancel", by: ctl.by } : { kind: "pause", by: ctl.by });
      },
      hold: (h) => applyHold(h),
      jobFailed: (j) => st.set({ kind: "fail", message: j.error ?? "another runner failed the job" }),
      lost: (reason) => st.set({ kind: "lost", message: `this runner lost the job's lease: ${reason}` }),
      broken: (error) => st.set({ kind: "broken", error }),
    },
  });

  await recorder.commit({
    events: [
      {
        type: "job_start",
        runner: st.runnerId,
        mode: joining ? "join" : opts.command,
        total_batches: job.totalBatches,
        to_run: toRun ? toRun.length : selection.kind === "shard" ? await shardToRun(store, id, job.totalBatches, selection) : job.totalBatches - (await store.summary(id, job.totalBatches)).completed,
        completed: before.completed,
        resumed: before.attempts > 0,
        // What the run starts with: 1 under learning.escalation_enabled, rising as batches pass.
        concurrency: backend.inFlight ?? learner.concurrency,
        pause_between_ms: backend.inFlight ? 0 : c.pause_between_batches_seconds * 1000,
        cost_usd: spent,
        ...(budget !== undefined ? { budget_usd: budget } : {}),
        ...(hold && holdUntil > clock.now() ? { hold: { until: holdUntil, reason: (hold as Hold).reason, batch_num: (hold as Hold).batch_num } } : {}),
      },
    ],
  });
  // isolation: worktree — the base commit, repairs after a crash, merges left to land.
  const halted = () => ["lost", "broken", "error"].includes(st.get()?.kind ?? "");
  await isolation?.prepare(record, { recorder, selection, force: opts.force, rerunConflicts: opts.rerunConflicts, joining, stopped: halted }).catch(async (e: unknown) => {
    watcher.stop();
    await release();
    throw e;
  });

  // --- Claiming ------------------------------------------------------------------------------
  const attemptTag = (n: number, attempt: number) => `${runnerTag}-b${n}a${attempt}`;
  const runningFor = (b: BatchRecord): RunningProcess => ({ attempt: b.attempts + 1, runner: st.runnerId, host: myHost(), tag: attemptTag(b.batch_num, b.attempts + 1) });
  const candidates = candidateCursor(store, id, job.totalBatches, selection, wallNow);
  // Batches a lost runner held go first, looked for at most once a second: a takeover happens
  // within a second of the lease's expiry, not when the cursor reaches the end of the job.
  let lostLookedAt = 0;
  const claimLost = async (): Promise<Claim | null> => {
    lostLookedAt = wallNow();
    for (const n of await store.claimable(id, { now: wallNow(), from: 1, limit: 50 })) {
      if (!inSelection(selection, n) || n > job.totalBatches) continue;
      const claim = await store.claim(id, st.runnerId, n, { now: wallNow(), fresh: () => freshBatch(job, n), running: runningFor });
      if (claim) return claim;
    }
    return null;
  };
  // A batch-API backend submits what it gathered once nothing more is coming: no batch left to
  // claim, and every batch this runner holds is waiting on the backend or sleeping.
  let claimsDone = false;
  let preparing = 0;
  const submitIfIdle = () => {
    if (claimsDone && preparing === 0) backend.idle?.();
  };
  const claimNext = async (): Promise<Claim | "wait" | null> => {
    const next = await claimNextBatch();
    claimsDone = next === null || next === "wait";
    submitIfIdle();
    return next;
  };
  const claimNextBatch = async (): Promise<Claim | "wait" | null> => {
    if (st.get()) return null;
    await refreshSpent();
    checkBudget();
    if (st.get()) return null;
    if (wallNow() - lostLookedAt >= 1000) {
      const lost = await claimLost();
      if (lost) return lost;
    }
    for (;;) {
      const n = await candidates.next();
      if (n === undefined) break;
      const claim = await store.claim(id, st.runnerId, n, { now: wallNow(), fresh: () => freshBatch(job, n), running: runningFor });
      if (claim) return claim;
      candidates.missed(n);
    }
    // Batches handed back since (a lost runner's), then: are others still working?
    const back = await claimLost();
    if (back) return back;
    // Others still working on batches that could come back (if they die): wait for them.
    const held = await store.listBatches(id, { statuses: ["in_progress"], limit: 64 });
    return held.some((b) => b.owner !== st.runnerId && inSelection(selection, b.batch_num)) ? "wait" : null;
  };

  // --- One batch -----------------------------------------------------------------------------
  const runBatch = async (claim: Claim): Promise<void> => {
    const n = claim.batch.batch_num;
    const fence = { runner: st.runnerId, batch: n, token: claim.token };
    let b: BatchRecord = { ...claim.batch };
    const commit = (s: Omit<Step, "fence">) => recorder.commit({ fence, ...s });
    let batchStart = clock.now();
    let attemptedHere = false;
    let model = configuredModel;
    const outcomeOf = (cancelled = false): Outcome | undefined =>
      learner.enabled
        ? buildOutcome(b, { job_id: id, runner: st.runnerId, at: iso(wallNow()), backend: backend.name, ...(model ? { model } : {}), config_hash: record.config_hash, template_hash: record.template_blob, duration_ms: clock.now() - batchStart, cancelled })
        : undefined;
    /** A batch cancelled while it ran is an outcome too (one that never started is not). */
    const cancelledOutcome = () => (attemptedHere && st.get()?.kind === "cancel" ? outcomeOf(true) : undefined);
    const release = async (reason: string) => {
      b = { ...b, status: "pending", owner: null, running: null };
      const o = cancelledOutcome();
      if (o) b.outcome = o;
      await commit({ batch: b, events: [{ type: "batch_released", batch_num: n, reason }] });
      await learnFrom(o);
    };
    /** A batch that fails before any attempt (its worktree could not be made ready). */
    const failEarly = async (message: string, category: string, output: string) => {
      const at = iso(wallNow());
      b = { ...b, status: "failed", owner: null, running: null, error: { message, category }, completed_at: at, ...(output ? { last_output: tail(output) } : {}) };
      ran++;
      const start: EventPayload = { type: "batch_start", batch_num: n, start_item: b.start_item, end_item: b.end_item, runner: st.runnerId, at };
      await commit({ batch: b, job: { status: "failed", error: `batch ${n}: ${message}`, completed_at: at }, events: [start, { type: "batch_failed", batch_num: n, attempts: b.attempts, error: b.error! }] });
      st.set({ kind: "fail", message: `batch ${n}: ${message}` });
    };
    // isolation: worktree — the batch sees the job from its own worktree.
    let bjob = job;
    let worktree: string | undefined;
    let settle = Boolean(isolation);
    mine.set(n, { tag: "" });
    let busy = false;
    const busyNow = (on: boolean) => {
      if (busy === on) return;
      busy = on;
      preparing += on ? 1 : -1;
      if (!on) submitIfIdle();
    };
    busyNow(true);
    // Spend of an attempt whose end could not be recorded (a lost claim): it still goes to the ledger.
    let unrecordedSpend: SpendRecord | undefined;
    try {
      if (claim.previous) await stopLeftovers(claim.previous, n);
      if (st.get()) return await release(stopReason(st.get()!));
      if (isolation) {
        const w = await isolation.enter(b, { previous: claim.previous, signal: st.killCtl.signal, tag: attemptTag(n, b.attempts + 1) });
        if ("error" in w) return await failEarly(w.error, "worktree", w.output);
        ({ job: bjob, worktree } = w);
        b = { ...b, git: w.git, mtime_baseline: undefined };
      }
      batchStart = clock.now();
      const rules = bjob.validations(n);
      b.started_at = iso(wallNow());
      b.error = null;
      // file_modified compares against the moment before the batch's FIRST attempt, kept across
      // attempts and restarts, so work done in attempt 1 still counts in attempt 2.
      b.mtime_baseline ??= await snapshotMtimes(rules.filter((r) => r.type === "file_modified").map((r) => r.target));
      // Recorded with the first attempt's start: one write fewer per batch.
      let unrecorded: EventPayload[] = [{ type: "batch_start", batch_num: n, start_item: b.start_item, end_item: b.end_item, runner: st.runnerId, at: iso(wallNow()) }];

      const original = bjob.prompt(n);
      let progress = initialProgress(b.rate_limit_waits);
      let last: ValidationOutcome | undefined = b.validations.length ? { ...summarize(b.validations), failing: b.validations.filter((v) => !v.passed).map((v) => v.description) } : undefined;
      let ownHold: Hold | undefined;
      // backend.fallback_models: each per-model limit moves the batch's next attempts to the next one.
      const fallbacks = c.backend.type === "claude_cli" ? c.backend.fallback_models : [];
      // While the limit lasts, the batch (kept on its record: after a resume too) and every batch this run starts after it use the fallback.
      const active = (f: { level: number; until: number } | undefined) => (f && f.until > clock.now() ? f.level : 0);
      if (active(b.model_fallback) > active(modelFallback)) modelFallback = b.model_fallback;
      else if (active(modelFallback) > active(b.model_fallback)) b.model_fallback = modelFallback;
      let fallback = Math.min(active(b.model_fallback), fallbacks.length);
      // retry.continue_session: the session of the last attempt whose validations failed, continued by the next one.
      const continueSessions = c.retry.continue_session && c.backend.type === "claude_cli";
      let continueFrom: string | undefined;
      // A batch-API attempt of an earlier run still with the provider: this batch picks it up.
      let reattach = backend.inFlight ? await detachedAttempt(b) : undefined;

      for (;;) {
        if (st.get()) return await release(stopReason(st.get()!));
        // The shared hold as stored now, not as of the last tick: another runner's limit stops this start too.
        applyHold(await store.getHold(id));
        // Another job's subscription limit on the same account: this job starts nothing until its reset either.
        const accountHold = account ? await readAccountHold(account.home, account.id, clock.now()) : null;
        if (accountHold && accountHold.job_id !== id && accountHold.until > holdUntil) {
          const h: Hold = { until: accountHold.until, reason: `the account's ${accountHold.limit ?? "usage"} limit, met by job ${accountHold.job_id}: ${accountHold.reason}`, batch_num: n, runner: st.runnerId };
          ownHold = h;
          applyHold(h);
          await commit({ batch: b, hold: h, events: [{ type: "rate_limit_hold", batch_num: n, until: h.until, reason: h.reason, waits: progress.holds, limit: "account" }] });
        }
        if (holdUntil > clock.now()) {
          const heldFrom = clock.now();
          busyNow(false);
          while (holdUntil > clock.now() && !st.get()) await clock.sleep(Math.min(holdUntil - clock.now(), 1000), st.stopCtl.signal);
          busyNow(true);
          b.held_ms = (b.held_ms ?? 0) + (clock.now() - heldFrom);
          const kind = hold && (hold as Hold).runner === st.runnerId && (hold as Hold).batch_num === n ? ((hold as Hold).kind ?? "unknown") : "shared";
          b.held_by = { ...b.held_by, [kind]: (b.held_by?.[kind] ?? 0) + (clock.now() - heldFrom) };
          if (st.get()) return await release(stopReason(st.get()!));
        }
        if (ownHold) {
          await commit({ batch: b, clearHold: ownHold.until, events: [{ type: "hold_end", batch_num: n }] });
          ownHold = undefined;
        }

        const resumed = reattach;
        reattach = undefined;
        if (resumed && resumed.mode !== "normal") progress = { ...progress, mode: resumed.mode };
        const mode = progress.mode;
        const prompt = resumed
          ? resumed.prompt
          : mode === "completion"
            ? completionPrompt({ batchNum: n, attempt: progress.completionUsed + 1, maxAttempts: c.retry.max_completion_attempts, results: b.validations, originalPrompt: original })
            : original;
        const resumeFrom = !resumed && continueSessions ? continueFrom : undefined;
        continueFrom = undefined;
        const resume = resumeFrom
          ? {
              session_id: resumeFrom,
              prompt: completionPrompt({ batchNum: n, attempt: progress.completionUsed + 1, maxAttempts: c.retry.max_completion_attempts, results: b.validations, originalPrompt: original, resumed: true }),
            }
          : undefined;
        // A re-attached attempt keeps its number: it is the same request, picked up.
        const attempt = resumed ? resumed.attempt : b.attempts + 1;
        b.attempts = attempt;
        attemptedHere = true;
        if (mode === "completion" && !resumed) b.completion_attempts++;
        const tag = attemptTag(n, attempt);
        const running: RunningProcess = { attempt, runner: st.runnerId, host: myHost(), tag };
        mine.set(n, { tag });
        b.running = running;
        const startedAt = iso(wallNow());
        const fallbackModel = fallback > 0 ? fallbacks[fallback - 1] : undefined;
        const sent = resume ? resume.prompt : prompt;
        const resumeReq = resume ? { resume: { session_id: resume.session_id, fresh_prompt: prompt } } : {};
        const argv = backend.describe({ ...requestFor(bjob, n, attempt, sent), ...(fallbackModel ? { model: fallbackModel } : {}), ...resumeReq }).argv;
        const attemptRec = {
          batch_num: n,
          attempt,
          mode,
          runner: st.runnerId,
          started_at: startedAt,
          duration_ms: 0,
          prompt_blob: blobHash(sent),
          argv,
          cwd: bjob.cwd,
          exit_code: null,
          signal: null,
          timed_out: false,
          interrupted: false,
          stdout: "",
          stderr: "",
          decision: "running" as const,
          reason: "",
          process: { tag, host: myHost() } as AttemptRecord["process"] & {},
          ...(fallbackModel ? { model: fallbackModel } : {}),
        };
        // One write records the start: once the process runs (with its pid), or before an HTTP call.
        // The start is recorded once the attempt has run for START_RECORD_MS or printed something;
        // an attempt that ends sooner records its start and its end in one write.
        let started: Promise<unknown> | undefined;
        let startTimer: ReturnType<typeof setTimeout> | undefined;
        const startEvents = (): EventPayload[] => [...unrecorded, { type: "attempt_start", batch_num: n, attempt, mode, argv, at: startedAt }];
        const recordStart = () => {
          if (started) return;
          clearTimeout(startTimer);
          const events = startEvents();
          unrecorded = [];
          // Awaited after the attempt; caught here so a lost lease is not an unhandled rejection meanwhile.
          started = commit({ batch: b, attempt: attemptRec, blobs: [sent, ...(resume ? [prompt] : [])], events }).catch((e: unknown) => e);
        };
        if (!backend.startsProcesses) {
          recordStart();
          const e = await started;
          if (e instanceof Error) throw e;
        }

        const perBatch = c.budget.max_cost_usd_per_batch;
        // The session's activity (stream-json) goes to the event log in order, after the attempt's start, before its end.
        let activities: Promise<unknown> = Promise.resolve();
        const onActivity = (a: Activity) => {
          recordStart();
          if (a.quota) return admit(a.quota);
          activities = activities.then(() => started).then(() => commit({ events: [{ type: "activity", batch_num: n, attempt, ...a }] })).catch(() => {});
        };
        // Admission control: a quota nearly used up starts nothing new until its reset; this attempt and the other running ones finish.
        const admit = (q: NonNullable<Activity["quota"]>) => {
          const threshold = c.rate_limit.admission_threshold;
          if (q.status === "rejected" || q.utilization < threshold || q.resets_at === undefined || q.resets_at <= Math.max(holdUntil, clock.now())) return;
          const h: Hold = {
            until: q.resets_at,
            reason: `admission: the account's quota is ${Math.round(q.utilization * 100)}% used (rate_limit.admission_threshold ${threshold}); no new batch starts until it resets, running ones finish`,
            batch_num: n,
            runner: st.runnerId,
          };
          applyHold(h);
          activities = activities
            .then(() => started)
            .then(() => commit({ hold: h, events: [{ type: "rate_limit_hold", batch_num: n, until: h.until, reason: h.reason, waits: progress.holds, limit: "admission" }] }))
            .then(() => (account ? writeAccountHold(account.home, { account: account.id, until: h.until, reason: h.reason, job_id: id, limit: "admission", set_at: clock.now() }) : undefined))
            .catch(() => {});
        };
        busyNow(false);
        const outcome = await runAttempt({
          job: bjob,
          ...(worktree ? { worktree } : {}),
          backend,
          batchNum: n,
          attempt,
          mode,
          prompt: sent,
          extra: {
            beforeRequest,
            onActivity,
            ...(fallbackModel ? { model: fallbackModel } : {}),
            ...resumeReq,
            detach: st.stopCtl.signal,
            ...(perBatch !== undefined ? { budget_usd: Math.max(0, perBatch - b.cost_usd) } : {}),
            ...(resumed ? { reattach: { key: resumed.key, custom_id: resumed.custom_id } } : {}),
          },
          baseline: b.mtime_baseline ?? {},
          kill: st.killCtl.signal,
          tag,
          now: () => clock.now(),
          env: childEnv,
          onSpawn: (p) => {
            mine.set(n, { tag, ...p });
            b.running = { ...running, pid: p.pid, pgid: p.pgid };
            attemptRec.process = { ...attemptRec.process, pid: p.pid, pgid: p.pgid };
            startTimer = setTimeout(recordStart, START_RECORD_MS);
          },
          onOutput: (stream, chunk) => {
            recordStart();
            recorder.output(n, attempt, stream, chunk, fence);
          },
        });
        busyNow(true);
        clearTimeout(startTimer);
        await activities;
        // Not recorded yet: the end's write carries the start too.
        const withStart: Pick<Step, "blobs"> & { events: EventPayload[] } = started ? { events: [] } : { blobs: [sent, ...(resume ? [prompt] : [])], events: startEvents() };
        if (!started) unrecorded = [];
        const startError = await started;
        if (startError instanceof Error) throw startError;
        const outputFile = await recorder.endOutput(n, attempt);
        const r = outcome.result;
        const d0 = outcome.decision;
        if (d0.kind === "hold" && d0.limit === "model" && fallback < fallbacks.length) {
          fallback++;
          b.model_fallback = { level: fallback, until: d0.until };
          if (fallback > active(modelFallback)) modelFallback = b.model_fallback;
          outcome.decision = { kind: "retry", category: "model_limit", reason: `${d0.reason}; the next attempt uses ${fallbacks[fallback - 1]} (backend.fallback_models)` };
        }
        // No jitter for a batch-API backend: retries that wake together are submitted together.
        if (outcome.decision.kind === "success" && outcome.validation && outcome.validation.failed > 0 && r.claude?.session_id) continueFrom = r.claude.session_id;
        const s = step(progress, { now: clock.now(), random: backend.inFlight ? 1 : random(), decision: outcome.decision, validation: outcome.validation, lastValidation: last, attempts: b.attempts }, policy);
        progress = s.progress;
        if (outcome.validation) last = outcome.validation;

        // The attempt's ledger entry, written with its end; a resumed claude session's cost is the
        // difference to what the session had cost before.
        const spend = spendEntry(r, { batch_num: n, attempt, runner: st.runnerId, at: iso(wallNow()), backend: backend.name }, b);
        if (spend) {
          b.cost_usd = roundUsd(b.cost_usd + spend.usd);
          b.tokens = addTokens(b.tokens ?? noTokens(), spend.tokens);
          if (spend.model) model = spend.model;
          unrecordedSpend = spend;
        }
        const detached = r.detached === true && s.next.kind === "interrupted";
        if (outcome.validations) {
          b.validations = outcome.validations;
          b.validation_passed = outcome.validations.every((v) => v.passed);
          for (const v of outcome.validations) if (!v.passed) b.failed_validations = { ...b.failed_validations, [v.description]: [...(b.failed_validations?.[v.description] ?? []), attempt] };
        }
        if (r.claude?.permission_denials?.length) {
          b.permission_denials = r.claude.permission_denials.map((d) => d.tool_name + (d.tool_input ? ` ${JSON.stringify(d.tool_input).slice(0, 200)}` : ""));
        }
        b.last_output = lastOutput(r);
        b.running = null;
        const ended = {
          ...attemptRec,
          ended_at: iso(wallNow()),
          duration_ms: r.duration_ms,
          argv: r.argv.length ? r.argv : argv,
          cwd: r.cwd,
          exit_code: r.exit_code,
          signal: r.signal,
          timed_out: r.timed_out,
          interrupted: r.interrupted || s.next.kind === "interrupted",
          stdout: r.stdout,
          stderr: r.stderr,
          ...(outputFile ? { output_file: outputFile } : {}),
          ...(spend ? { cost_usd: spend.usd, tokens: spend.tokens } : r.cost_usd !== undefined ? { cost_usd: r.cost_usd } : {}),
          ...(r.claude?.session_id ? { session_id: r.claude.session_id } : {}),
          ...(r.resume ? { resume: r.resume } : {}),
          ...(r.claude?.structured_output !== undefined ? { structured_output: r.claude.structured_output } : {}),
          ...(r.remote ? { remote: r.remote } : {}),
          decision: detached ? ("detached" as const) : s.decision,
          reason: detached ? "still with the Message Batches API; the next run picks its result up" : s.reason,
          validation_passed: outcome.validations ? b.validation_passed : null,
          process: { ...attemptRec.process, ...(mine.get(n)?.pid ? { pid: mine.get(n)!.pid, pgid: mine.get(n)!.pgid } : {}) },
        };
        const spentAfter = roundUsd(spent + (spend?.usd ?? 0));
        /** The attempt's end, with its ledger entry; the runner's view of the job's cost follows it. */
        const recordEnd = async (parts: Omit<Step, "fence">) => {
          await commit({ ...parts, ...(spend ? { spend: [spend] } : {}) });
          unrecordedSpend = undefined;
          if (spend) {
            spent = roundUsd(spent + spend.usd);
            checkBudget();
          }
        };
        const attemptEnd = (extra: { retry_in_ms?: number } = {}): EventPayload => ({
          type: "attempt_end",
          batch_num: n,
          attempt,
          decision: ended.decision,
          reason: ended.reason,
          duration_ms: r.duration_ms,
          exit_code: r.exit_code,
          ...(spend ? { cost_usd: spend.usd, tokens: spend.tokens } : r.cost_usd !== undefined ? { cost_usd: r.cost_usd } : {}),
          output_tail: tail(r.stderr.trim() || r.text || r.stdout, 600),
          ...(outcome.validation ? { validations: { passed: outcome.validation.passed, total: outcome.validation.total } } : {}),
          ...extra,
        });

        let next = s.next;
        if (next.kind === "complete" && isolation) {
          // Its changes are committed on its branch before the record says it completed.
          const sealed = await isolation.seal(b);
          if ("error" in sealed) next = { kind: "fail", message: sealed.error, category: "git", scope: "batch" };
          else b.git = sealed;
        }
        switch (next.kind) {
          case "complete": {
            b.status = "completed";
            b.error = null;
            b.owner = null;
            b.completed_at = iso(wallNow());
            b.duration_ms = clock.now() - batchStart;
            ran++;
            const o = outcomeOf();
            if (o) b.outcome = o;
            await recordEnd({ batch: b, attempt: ended, ...withStart, events: [...withStart.events, attemptEnd(), { type: "batch_complete", batch_num: n, attempts: b.attempts, duration_ms: b.duration_ms, cost_usd: b.cost_usd, job_cost_usd: spentAfter }] });
            await learnFrom(o);
            return;
          }
          case "fail": {
            b.status = "failed";
            b.owner = null;
            b.error = { message: next.message, category: next.category };
            b.completed_at = iso(wallNow());
            b.duration_ms = clock.now() - batchStart;
            ran++;
            const message = `batch ${n}: ${next.message}`;
            const o = outcomeOf();
            if (o) b.outcome = o;
            // on_batch_failure: continue — the other batches go on; the job's end lists the failed ones.
            const goOn = next.scope === "batch" && c.on_batch_failure === "continue";
            await recordEnd({
              batch: b,
              attempt: ended,
              ...(goOn ? {} : { job: { status: "failed", error: message, completed_at: iso(wallNow()) } }),
              ...withStart,
              events: [...withStart.events, attemptEnd(), { type: "batch_failed", batch_num: n, attempts: b.attempts, error: b.error }],
            });
            await learnFrom(o);
            if (!goOn) st.set({ kind: "fail", message });
            return;
          }
          case "interrupted": {
            b.status = "pending";
            b.owner = null;
            const cancelled = cancelledOutcome();
            if (cancelled) b.outcome = cancelled;
            const why = detached ? `${stopReason(st.get() ?? { kind: "kill" })}; its request stays with the Message Batches API` : stopReason(st.get() ?? { kind: "kill" });
            await recordEnd({ batch: b, attempt: ended, ...withStart, events: [...withStart.events, attemptEnd(), { type: "batch_released", batch_num: n, reason: why }] });
            await learnFrom(cancelled);
            return;
          }
          case "hold": {
            b.rate_limit_waits++;
            const h: Hold = { until: next.until, reason: s.reason, batch_num: n, runner: st.runnerId, ...(outcome.decision.kind === "hold" ? { kind: outcome.decision.source } : {}) };
            ownHold = h;
            applyHold(h);
            const d = outcome.decision;
            if (account && d.kind === "hold" && (d.limit === "session" || d.limit === "weekly")) {
              await writeAccountHold(account.home, { account: account.id, until: next.until, reason: s.reason, job_id: id, limit: d.limit, set_at: clock.now() }).catch((e: Error) =>
                warn(`could not record the account's limit under ${account.home} (${e.message}); other jobs on this account will not hold for it`),
              );
            }
            await recordEnd({ batch: b, attempt: ended, hold: h, ...withStart, events: [...withStart.events, attemptEnd(), { type: "rate_limit_hold", batch_num: n, until: holdUntil, reason: s.reason, waits: progress.holds, ...(outcome.decision.kind === "hold" && outcome.decision.limit ? { limit: outcome.decision.limit } : {}) }] });
            continue;
          }
          case "retry":
          case "completion": {
            b.error = { message: s.reason, category: outcome.decision.kind === "retry" ? outcome.decision.category : "validation" };
            await recordEnd({ batch: b, attempt: ended, ...withStart, events: [...withStart.events, attemptEnd({ retry_in_ms: next.after_ms })] });
            busyNow(false);
            const slept = await clock.sleep(next.after_ms, st.stopCtl.signal);
            busyNow(true);
            if (!slept) return await release(stopReason(st.get() ?? { kind: "pause" }));
            continue;
          }
        }
      }
    } catch (e) {
      settle = false;
      if (e instanceof LeaseLostError) {
        // The request was made and paid for: its ledger entry lands even though the claim is gone.
        if (unrecordedSpend) await store.commit(id, { spend: [unrecordedSpend] }, wallNow()).catch(() => {});
        st.set({ kind: "lost", message: e.message });
        return;
      }
      // A step that cannot be recorded (disk full, state unreadable): stop every other attempt
      // now, so nothing runs on unrecorded, then report the cause.
      st.set({ kind: "error", error: e });
      throw e;
    } finally {
      busyNow(false);
      mine.delete(n);
      // isolation: worktree — a completed batch lands in its turn; a failed one's worktree goes.
      if (settle) await isolation!.settle(b);
    }
  };

  const stopLeftovers = async (previous: RunningProcess, n: number) => {
    if (previous.host !== myHost()) {
      warn(`batch ${n} was last run by ${previous.runner} on ${previous.host}; if anything of it still runs there, it is not stopped from here`);
      return;
    }
    const pids = await stopTree({ tag: previous.tag, pid: previous.pid, pgid: previous.pgid }, STOP_SEQUENCE).catch(() => [] as number[]);
    if (pids.length) await recorder.commit({ events: [{ type: "leftovers_stopped", batch_num: n, pids, from_runner: previous.runner }] });
  };

  // --- Run ------------------------------------------------------------------------------------
  const scheduler = createScheduler<Claim>({
    // A batch-API backend submits every pending batch at once: its own number in flight, no spacing.
    concurrency: learner.concurrency,
    spacingMs: backend.inFlight ? 0 : c.pause_between_batches_seconds * 1000,
    clock,
    claim: claimNext,
    run: runBatch,
    holdUntil: () => holdUntil,
    pollMs: 1000,
    random,
  });
  // `mozart cancel` also cancels, at the provider, what a batch-API backend submitted.
  let cancelling: Promise<void> | undefined;
  st.onChange(() => {
    scheduler.pause();
    if (st.get()?.kind === "cancel" && backend.cancelRemote) cancelling ??= backend.cancelRemote().catch((e: Error) => warn(`cannot cancel the submitted Message Batches: ${e.message}`));
  });
  scheduler.start();
  let crashed: unknown;
  try {
    await scheduler.onIdle();
  } catch (e) {
    crashed = e;
  }
  await cancelling;
  await learner.close();
  watcher.stop();
  // Whatever this runner started and is still alive (it left its group) stops with the run.
  await stopTree({ tag: runnerTag }, STOP_SEQUENCE).catch(() => []);

  const stopped = st.get();
  // A state deleted or replaced under the run first shows up as whatever step failed on it (a
  // fenced commit, a missing file): report it as what it is, not as a lost lease or a crash.
  if (stopped?.kind === "lost" || stopped?.kind === "error" || crashed !== undefined) {
    const gone = await store.checkIdentity().then(
      () => undefined,
      (e: unknown) => e,
    );
    if (gone !== undefined) {
      leaseHeld = false;
      await flushNotifications();
      throw gone;
    }
  }
  if (stopped?.kind === "lost") {
    leaseHeld = false;
    await flushNotifications();
    throw new MozartError(stopped.message, { hint: "the batches it was running were handed to another runner; this runner recorded nothing after that" });
  }
  if (stopped?.kind === "broken") {
    leaseHeld = false;
    await flushNotifications();
    throw stopped.error;
  }
  if (crashed !== undefined || stopped?.kind === "error") {
    await release();
    await flushNotifications();
    const cause = (crashed ?? (stopped as { error: unknown }).error) as Error;
    if ((cause as { name?: string }).name === "MozartError") throw cause;
    throw new MozartError(`the run stopped: ${cause.message}`, { hint: `nothing recorded as done is lost; continue with: mozart resume ${shellQuote(id)}` });
  }
  await store.checkIdentity();
  await isolation?.finish();

  // --- The end of the run: the last runner out writes the job's final status -----------------
  let outcome: RunOutcome = "paused";
  let message: string | undefined;
  const startedAt = Date.parse(record.started_at ?? iso(wallNow()));
  let finalStep = null as Step | null;
  // One time for the write and the announcement: listeners get the final event exactly as stored.
  // A job that went on past failed batches (on_batch_failure: continue) ends naming them.
  const failedBatches = stopped?.kind === "fail" ? [] : (await store.listBatches(id, { statuses: ["failed"], limit: 1000 })).map((b) => b.batch_num);
  const leftAt = wallNow();
  const left = await store.leave(id, st.runnerId, leftAt, (o) => (finalStep = finalStepFor(o)));
  function finalStepFor(o: LeaveOutcome): Step {
    const s = o.summary;
    const complete = s.completed >= job.totalBatches;
    if (stopped?.kind === "fail") outcome = "failed";
    else if (stopped?.kind === "cancel") outcome = "cancelled";
    else if (stopped?.kind === "leave") outcome = complete ? "completed" : "left";
    else if (stopped?.kind === "pause" || stopped?.kind === "kill" || stopped?.kind === "budget" || stopped?.kind === "low_success") outcome = complete ? "completed" : "paused";
    else if (complete) outcome = "completed";
    else if (s.failed > 0 || s.conflict > 0) outcome = "failed";
    else outcome = "paused";
    if (outcome === "paused" && !stopped) message = `${job.totalBatches - s.completed} batch${job.totalBatches - s.completed === 1 ? "" : "es"} still pending`;
    if (outcome === "paused" && stopped?.kind === "budget") {
      message = `${stopReason({ ...stopped, spent: Math.max(stopped.spent, s.cost_usd) })}; raise it with: mozart resume ${shellQuote(id)} --budget <USD>`;
    }
    const by = stopped && "by" in stopped ? stopped.by : undefined;
    if (o.others > 0 && outcome !== "failed" && outcome !== "cancelled") {
      // Others still drain the job; a pause reaches them through the control record.
      return { events: [{ type: "runner_left", runner: st.runnerId, others: o.others }] };
    }
    if (o.others > 0) return { events: [{ type: "runner_left", runner: st.runnerId, others: o.others }] };
    // The last runner left (a worker stopped): the job waits, queued, for the next one.
    if (outcome === "left") return { job: { status: "pending" }, events: [{ type: "runner_left", runner: st.runnerId, others: 0 }] };
    const duration = wallNow() - startedAt;
    const at = iso(wallNow());
    switch (outcome) {
      case "completed":
        return { job: { status: "completed", completed_at: at }, events: [{ type: "job_complete", completed: s.completed, total_batches: job.totalBatches, duration_ms: duration, cost_usd: s.cost_usd }] };
      case "failed": {
        const error =
          stopped?.kind === "fail"
            ? stopped.message
            : failedBatches.length
              ? `${failedBatches.length} batch${failedBatches.length === 1 ? "" : "es"} failed (${failedBatches.slice(0, 20).join(", ")}${failedBatches.length > 20 ? ", …" : ""}); run them again with: mozart resume ${shellQuote(id)} --retry-failed`
              : s.conflict > 0
                ? `${s.conflict} batch${s.conflict === 1 ? "" : "es"} could not be merged (conflict): mozart status ${shellQuote(id)}`
                : "a batch failed";
        return { job: { status: "failed", error, completed_at: at }, events: [{ type: "job_failed", completed: s.completed, failed: s.failed, total_batches: job.totalBatches, error, duration_ms: duration, cost_usd: s.cost_usd }] };
      }
      case "cancelled":
        return { job: { status: "cancelled", ...(by ? { stopped_by: by } : {}) }, events: [{ type: "job_cancelled", completed: s.completed, total_batches: job.totalBatches, cost_usd: s.cost_usd, ...(by ? { by } : {}) }] };
      default: {
        const overBudget = stopped?.kind === "budget" ? { reason: "budget" as const, spent_usd: Math.max(stopped.spent, s.cost_usd), max_cost_usd: stopped.max } : undefined;
        const lowSuccess = stopped?.kind === "low_success" ? { reason: "low_success" as const, rate: stopped.rate, window: stopped.window, threshold: stopped.threshold, failing: stopped.failing } : undefined;
        const reason = overBudget ? stopReason({ kind: "budget", spent: overBudget.spent_usd, max: overBudget.max_cost_usd }) : stopped ? stopReason(stopped) : (message ?? "stopped");
        return {
          job: { status: "paused", ...(by ? { stopped_by: by } : {}), ...(overBudget ? { paused_for: overBudget } : {}), ...(lowSuccess ? { paused_for: lowSuccess } : {}) },
          events: [{ type: "job_paused", completed: s.completed, total_batches: job.totalBatches, reason, cost_usd: s.cost_usd, ...(overBudget ? { budget: overBudget } : {}), ...(lowSuccess ? { low_success: lowSuccess } : {}), ...(by ? { by } : {}) }],
        };
      }
    }
  }
  leaseHeld = false;
  if (outcome === "paused" && !stopped && selection.kind !== "all") outcome = "selection_done";
  if (finalStep?.events && left.seq !== undefined) recorder.announce(finalStep.events, left.seq, leftAt);
  await flushNotifications();
  const finalJob = (await store.getJob(id)) ?? record;
  await register(left.others > 0 ? "running" : finalJob.status, left.summary, false, finalJob.stopped_by);
  const by = stopped && "by" in stopped ? stopped.by : undefined;
  return { outcome, job: finalJob, summary: left.summary, ran, ...(message ? { message } : {}), ...(by ? { by } : {}) };
}

/** An attempt still running after this long has its start recorded (with its pid) before it ends. */
const START_RECORD_MS = 250;

/** How a stop of the claude CLI proceeds: SIGINT lets it stop its own tools first. */
const STOP_SEQUENCE: Array<[NodeJS.Signals, number]> = [
  ["SIGINT", 2000],
  ["SIGTERM", 2000],
  ["SIGKILL", 0],
];

function stopReason(s: Stopping): string {
  switch (s.kind) {
    case "pause":
      return s.by?.via === "signal" ? `${s.by.signal ?? "signal"}: paused` : "paused on request";
    case "budget":
      return `budget reached: ${usd(s.spent)} spent of the ${usd(s.max)} budget`;
    case "low_success":
      return `low_success: ${Math.round(s.rate * 100)}% of the last ${s.window} batches succeeded at the first try, below learning.min_confidence_threshold (${Math.round(s.threshold * 100)}%)${s.failing.length ? `; failing: ${s.failing.slice(0, 5).join("; ")}` : ""}`;
    case "kill":
      return "stopped at once on request";
    case "leave":
      return s.now ? "this runner stopped (its batches go to the other runners)" : "this runner is leaving";
    case "cancel":
      return "cancelled";
    case "fail":
      return `the job failed (${s.message})`;
    case "lost":
      return "this runner lost its lease";
    case "broken":
      return s.error.message;
    case "error":
      return "the run stopped on an error";
  }
}

function heldError(id: string, holders: Array<{ id: string; pid: number; host: string; renewed_at: number; until: number }>, now: number): MozartError {
  const h = holders[0]!;
  const ago = Math.max(0, Math.round((now - h.renewed_at) / 1000));
  const left = Math.max(0, Math.round((h.until - now) / 1000));
  return new MozartError(`job "${id}" is already running (pid ${h.pid} on ${h.host}, lease renewed ${ago}s ago, expires in ${left}s unless renewed)`, {
    hint: `follow it with: mozart logs ${shellQuote(id)} -f; add this machine to it with: mozart run --join <job file>; if that runner is gone for good: --take-over`,
  });
}

/** Batch numbers a run may claim, in order, skipping what the records say is done. */
/** Batches of a shard not completed yet, a page of records at a time. */
async function shardToRun(store: StateStore, id: string, total: number, shard: Selection): Promise<number> {
  let mine = 0;
  for (let n = 1; n <= total; n++) if (inSelection(shard, n)) mine++;
  for (let from = 0; ; ) {
    const page = await store.listBatches(id, { from, limit: 1000, statuses: ["completed"] });
    if (!page.length) return mine;
    for (const b of page) if (b.batch_num <= total && inSelection(shard, b.batch_num)) mine--;
    from = page[page.length - 1]!.batch_num + 1;
  }
}

/**
 * Batch numbers a run may claim, in order, skipping what the records say is done or held by a
 * live runner. Runners draining one job together claim from the same end, so a runner whose
 * claims keep failing (others took those batches meanwhile) reads the records again past them,
 * instead of trying each batch the others hold.
 */
function candidateCursor(store: StateStore, id: string, total: number, selection: Selection, now: () => number): { next(): Promise<number | undefined>; missed(n: number): void } {
  if (selection.kind === "only") {
    const list = [...selection.batches];
    return { next: async () => list.shift(), missed: () => {} };
  }
  const WINDOW = 512;
  let from = 1;
  let queue: number[] = [];
  let misses = 0;
  const fill = async () => {
    while (!queue.length && from <= total) {
      const to = Math.min(total, from + WINDOW - 1);
      const recorded = await store.listBatches(id, { from, limit: WINDOW });
      const held = recorded.some((b) => b.status === "in_progress") ? new Set((await store.runners(id, now())).map((l) => l.id)) : new Set<string>();
      const done = new Set(
        recorded.filter((b) => b.batch_num <= to && (b.damaged || b.status === "completed" || b.status === "failed" || b.status === "conflict" || (b.status === "in_progress" && b.owner && held.has(b.owner)))).map((b) => b.batch_num),
      );
      for (let n = from; n <= to; n++) if (!done.has(n) && inSelection(selection, n)) queue.push(n);
      from = to + 1;
    }
  };
  return {
    async next() {
      await fill();
      return queue.shift();
    },
    missed(n) {
      if (++misses < 2) return;
      misses = 0;
      queue = [];
      from = n + 1;
    },
  };
}

const TAIL = 2000;
const tail = (s: string, n = TAIL) => (s.length > n ? `…${s.slice(-n)}` : s);

function lastOutput(r: ExecutionResult): string {
  const parts = [r.text && r.text !== r.stdout ? r.text : r.stdout, r.stderr].filter((s) => s && s.trim());
  return tail(parts.join("\n--- stderr ---\n"));
}

/**
 * A job name is one job: two job files with the same name in different folders must not take
 * over each other's registry entry, and a job whose state backend or folder changed must not
 * silently start over.
 */
async function checkRegistry(home: string, job: PreparedJob): Promise<void> {
  const id = job.config.name;
  const entry = await findJob(home, id).catch(() => null);
  if (!entry) return;
  const here = { kind: job.config.state_backend, location: stateLocation(job.config) };
  const sameState = entry.state_backend === here.kind && entry.state_location === here.location;
  if (entry.config_path !== job.file && !sameState) {
    const otherAlive = await access(entry.config_path).then(() => true, () => false);
    const otherState = await access(entry.state_location).then(() => true, () => false);
    if (otherAlive || otherState) {
      throw new MozartError(`the job name "${id}" is already used by ${entry.config_path} (state in ${entry.state_location})`, {
        exitCode: EXIT.usage,
        hint: `give this job another name (name: in ${job.file}); or, if that job is gone for good, forget it: mozart forget ${shellQuote(id)}`,
      });
    }
    return;
  }
  if (entry.config_path === job.file && !sameState) {
    if (await access(entry.state_location).then(() => true, () => false)) {
      throw new MozartError(`job "${id}" keeps its state in ${entry.state_location} (${entry.state_backend}), but the job file now points to ${here.location} (${here.kind})`, {
        exitCode: EXIT.usage,
        hint: `restore state_backend / workspace / state_path to continue the job; or start it over under the new settings after: mozart forget ${shellQuote(id)}`,
      });
    }
  }
}
