/**
 * `mozart worker`: on any machine with the database's URL set, take batches of submitted jobs
 * and run them exactly as `mozart run` does: the same startRun(), as one more runner of the
 * job. The job's file and template come from the database; `workspace` and `worker_setup` say
 * where and how the work happens here. SIGTERM (a Kubernetes pod stopping, a CI runner
 * cancelled): start nothing new, let running attempts finish for up to --grace-seconds, hand
 * the rest back to the other workers, exit 0.
 */
import { defineCommand } from "citty";
import { resolve } from "node:path";
import { EXIT, MozartError } from "../errors.ts";
import { startRun, type RunHandle, type RunResult } from "../engine/start.ts";
import { setUpWorkspace, submittedJob } from "../engine/submitted.ts";
import { DATABASE_URL_ENV } from "../state/database.ts";
import { openStore } from "../state/store.ts";
import type { JobRecord, StateStore } from "../state/types.ts";
import { shellQuote } from "../text.ts";
import { sleep } from "../time.ts";
import { globalArgs, jsonArg } from "./args.ts";
import { createOutput, type Output } from "./output.ts";
import { createProgress } from "./progress.ts";

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"] as const;
/** How often an idle worker looks for work: a bounded poll, so a new or resumed job starts within it. */
const POLL_MS = 1000;

export default defineCommand({
  meta: { name: "worker", description: "Run batches of submitted jobs from the shared database (state_backend: postgres), as one more runner of each" },
  args: {
    job: { type: "string", description: "Work on this job only; exit when it has ended (0 completed, 1 failed, 130 cancelled)", valueHint: "ID" },
    all: { type: "boolean", description: "Work on every submitted job, one at a time, until stopped" },
    concurrency: { type: "string", description: "Batches this worker runs at once (default: the job's concurrency)", valueHint: "N" },
    dir: { type: "string", description: "Where relative workspaces of jobs go, as <dir>/<job>/… (default: the current folder)", valueHint: "DIR" },
    "grace-seconds": { type: "string", description: "After SIGTERM, how long running attempts may finish before they are handed back (default 20)", valueHint: "S" },
    "exit-when-idle": { type: "boolean", description: "With --all: exit 0 once no job has work left" },
    "url-env": { type: "string", description: `The variable holding the database URL (default ${DATABASE_URL_ENV})`, valueHint: "NAME" },
    ...jsonArg,
    ...globalArgs,
  },
  async run({ args }) {
    const out = createOutput(args);
    if (Boolean(args.job) === Boolean(args.all)) throw new MozartError("give --job <id> or --all", { exitCode: EXIT.usage, hint: "mozart worker --job review (one job) or mozart worker --all (every submitted job)" });
    if (args["exit-when-idle"] && !args.all) throw new MozartError("--exit-when-idle applies to --all (a worker of one job exits when the job ends)", { exitCode: EXIT.usage });
    const concurrency = args.concurrency === undefined ? undefined : Number(args.concurrency);
    if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 64)) {
      throw new MozartError(`--concurrency expects a whole number from 1 to 64, got "${args.concurrency}"`, { exitCode: EXIT.usage });
    }
    const grace = args["grace-seconds"] === undefined ? 20 : Number(args["grace-seconds"]);
    if (!Number.isFinite(grace) || grace < 0) throw new MozartError(`--grace-seconds expects a number of seconds, got "${args["grace-seconds"]}"`, { exitCode: EXIT.usage });
    const urlEnv = args["url-env"] ?? DATABASE_URL_ENV;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(urlEnv)) throw new MozartError(`--url-env expects a variable name, got "${urlEnv}"`, { exitCode: EXIT.usage });
    const dir = resolve(args.dir ?? ".");

    const store = await openStore({ kind: "postgres", location: `$${urlEnv}`, env: process.env, outputDir: resolve(dir, "output"), warn: (m) => out.warn(m) });
    const w = new Worker(store, out, { concurrency, graceMs: grace * 1000, dir, exitWhenIdle: Boolean(args["exit-when-idle"]) });
    for (const s of STOP_SIGNALS) process.on(s, w.onSignal);
    try {
      const result = await w.loop(args.job);
      if (out.json) out.emit(result);
      return result.exit_code;
    } finally {
      for (const s of STOP_SIGNALS) process.off(s, w.onSignal);
      await store.close().catch(() => {});
    }
  },
});

interface WorkerOptions {
  concurrency?: number;
  graceMs: number;
  dir: string;
  exitWhenIdle: boolean;
}

interface WorkerResult {
  exit_code: number;
  /** Batches this worker ran to an end, per job. */
  ran: Record<string, number>;
  stopped_by_signal: boolean;
  job?: { job_id: string; status: string };
}

class Worker {
  private run: RunHandle | undefined;
  private stopping = false;
  private signals = 0;
  private graceTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly wake = new AbortController();
  private readonly setUp = new Set<string>();
  private readonly ran: Record<string, number> = {};

  constructor(
    private readonly store: StateStore,
    private readonly out: Output,
    private readonly opts: WorkerOptions,
  ) {}

  readonly onSignal = (sig: NodeJS.Signals) => {
    this.signals++;
    this.stopping = true;
    this.wake.abort();
    if (this.signals === 1) {
      this.out.warn(`${sig}: this worker starts nothing new; running attempts get ${Math.round(this.opts.graceMs / 1000)}s to finish, then go back to the other workers. ${sig === "SIGINT" ? "Press Ctrl+C" : `Send ${sig}`} again to hand them back now.`);
      this.run?.leave();
      this.graceTimer = setTimeout(() => this.run?.leave(true), this.opts.graceMs);
      this.graceTimer.unref?.();
    } else {
      this.out.warn(`${sig}: handing running batches back now`);
      this.run?.leave(true);
    }
  };

  private done(exit_code: number, job?: WorkerResult["job"]): WorkerResult {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    return { exit_code, ran: this.ran, stopped_by_signal: this.signals > 0, ...(job ? { job } : {}) };
  }

  /** Whether a job has work for a worker: submitted or running, nobody asked it to stop, not finished. */
  private async runnable(rec: JobRecord): Promise<boolean> {
    if (rec.status !== "pending" && rec.status !== "running") return false;
    if (await this.store.getControl(rec.job_id)) return false;
    const s = await this.store.summary(rec.job_id, rec.total_batches);
    return s.completed + s.failed + s.damaged < rec.total_batches;
  }

  async loop(only: string | undefined): Promise<WorkerResult> {
    let waitingSaid = "";
    const say = (key: string, text: string) => {
      if (waitingSaid === key) return;
      waitingSaid = key;
      this.out.info(text);
    };
    while (!this.stopping) {
      if (only !== undefined) {
        const rec = await this.store.getJob(only);
        if (!rec) say("missing", `waiting for job ${shellQuote(only)} to be submitted (mozart run --submit <job file>)`);
        else if (rec.status === "completed" || rec.status === "failed" || rec.status === "cancelled") {
          const code = rec.status === "completed" ? EXIT.ok : rec.status === "failed" ? EXIT.failed : EXIT.paused;
          this.out.info(`job ${this.out.c.bold(rec.job_id)} is ${rec.status}${rec.error ? `: ${rec.error}` : ""}`);
          return this.done(code, { job_id: rec.job_id, status: rec.status });
        } else if (await this.runnable(rec)) {
          waitingSaid = "";
          await this.work(rec);
          continue;
        } else if (rec.status === "pending" || rec.status === "running") {
          say(`idle:${rec.status}`, `job ${this.out.c.bold(rec.job_id)}: no batch left for this worker; waiting for its other runners to finish`);
        } else say(`idle:${rec.status}`, `job ${this.out.c.bold(rec.job_id)} is ${rec.status}: waiting until it is resumed (mozart resume ${shellQuote(rec.job_id)} --submit)`);
      } else {
        let worked = false;
        for (const id of await this.store.listJobIds()) {
          if (this.stopping) break;
          const rec = await this.store.getJob(id).catch(() => null);
          if (rec && (await this.runnable(rec))) {
            waitingSaid = "";
            await this.work(rec);
            worked = true;
            break;
          }
        }
        if (worked) continue;
        if (this.opts.exitWhenIdle) {
          this.out.info("no job has work left");
          return this.done(EXIT.ok);
        }
        say("idle", "no job has work: waiting for one to be submitted or resumed");
      }
      await sleep(POLL_MS, this.wake.signal);
    }
    return this.done(EXIT.ok);
  }

  /** Runs one job until this worker has nothing more to do in it. */
  private async work(rec: JobRecord): Promise<void> {
    const id = rec.job_id;
    let job = await submittedJob(this.store, rec, this.opts.dir);
    if (this.opts.concurrency) job = { ...job, config: { ...job.config, concurrency: this.opts.concurrency } };
    if (!this.setUp.has(id)) {
      const r = await setUpWorkspace(job, process.env, this.wake.signal);
      if (r.ran) this.out.info(`job ${this.out.c.bold(id)}: worker_setup done in ${job.config.workspace}`);
      this.setUp.add(id);
    }
    if (this.stopping) return;
    const run = startRun({ job, store: this.store, command: "run", submitted: true, env: process.env, warn: (m) => this.out.warn(m) });
    this.run = run;
    if (this.stopping) run.leave(this.signals > 1);
    const progress = createProgress(this.out);
    if (!this.out.json) run.events.on((e) => progress.handle(e));
    let result: RunResult | undefined;
    try {
      result = await run.done;
    } catch (e) {
      // A lost lease (frozen, cut off) is this runner's problem, not the job's: join again.
      if (!/lost the job's lease|lost its claim/.test((e as Error).message)) throw e;
      this.out.warn(`job ${id}: ${(e as Error).message}; joining it again`);
    } finally {
      progress.stop();
      this.run = undefined;
    }
    if (!result) return;
    this.ran[id] = (this.ran[id] ?? 0) + result.ran;
    this.out.info(`job ${this.out.c.bold(id)}: this worker ran ${result.ran} batch${result.ran === 1 ? "" : "es"}; ${result.outcome}${result.message ? ` (${result.message})` : ""}`);
    // Nothing left for this worker while others finish their last batches: do not spin.
    if (result.outcome === "paused" && !this.stopping) await sleep(POLL_MS, this.wake.signal);
  }
}
