/**
 * For the in-process engine tests: a job file in a temp folder, a real store (sqlite or json), a
 * fake clock and startRun() with a scripted backend, so holds, backoff and spacing run in virtual
 * time. Every run a test starts is killed and awaited, and the folder removed, after that test.
 */
import { afterEach } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { checkJob, type PreparedJob } from "../../src/config/check.ts";
import { parseJobText } from "../../src/config/load.ts";
import type { MozartEvent } from "../../src/engine/events.ts";
import { startRun, type RunHandle, type RunResult, type StartOptions } from "../../src/engine/start.ts";
import type { StoredEvent } from "../../src/state/events.ts";
import { stateLocation } from "../../src/state/location.ts";
import { openStore } from "../../src/state/store.ts";
import type { StateStore } from "../../src/state/types.ts";
import { scriptedBackend, type ScriptedBackend, type ScriptStep } from "../fixtures/fake-backend.ts";
import { createFakeClock, type FakeClock } from "../fixtures/fake-clock.ts";
import { merge, tempDir, type Plain } from "../helpers.ts";

export interface Started {
  run: RunHandle;
  /** Events the run's listeners received. */
  seen: MozartEvent[];
  done: Promise<RunResult>;
}

export interface InProcessBench {
  dir: string;
  /** MOZART_HOME of the runs, when the bench was made with `home: true` (else runs have none). */
  home: string | undefined;
  clock: FakeClock;
  job: PreparedJob;
  store: StateStore;
  /** Re-reads the job file with changes (the job file was edited). */
  edit(over: Plain): Promise<PreparedJob>;
  start(backend: ScriptedBackend, opts?: Partial<StartOptions>): Started;
  /** Runs to the end; the result and the events this run recorded. */
  run(backend: ScriptedBackend, opts?: Partial<StartOptions>): Promise<{ result: RunResult; seen: MozartEvent[]; events: StoredEvent[] }>;
  events(after?: number): Promise<StoredEvent[]>;
  backend(script?: Record<number, ScriptStep[]>, fallback?: ScriptStep): ScriptedBackend;
  /** The run started last. */
  current?: RunHandle;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Runs `clean` after the current test, passed or failed, before what was registered earlier. */
export function afterThisTest(clean: () => Promise<void> | void): void {
  cleanups.push(clean);
}

/** Writes `config` as the job file in `dir` and checks it, as `mozart run` would. */
export async function prepare(dir: string, config: Plain): Promise<PreparedJob> {
  const file = join(dir, "job.yaml");
  const text = stringify(config);
  writeFileSync(file, text);
  return checkJob(parseJobText(text, file));
}

/** A bench for the job `base` with `over` laid over it, on the `kind` store. */
export async function inProcessBench(kind: "sqlite" | "json", base: Plain, over: Plain = {}, o: { prefix?: string; home?: boolean } = {}): Promise<InProcessBench> {
  const t = tempDir(o.prefix ?? "mozart-inproc-");
  let config = merge({ ...base, state_backend: kind }, over);
  const job = await prepare(t.path, config);
  const store = await openStore({ kind, location: stateLocation(job.config) });
  const clock = createFakeClock();
  const home = o.home ? join(t.path, "home") : undefined;
  const runs: RunHandle[] = [];
  afterThisTest(async () => {
    // A test that failed half-way must not leave a run writing into a deleted folder.
    for (const r of runs) r.kill();
    await Promise.allSettled(runs.map((r) => r.done));
    await store.close().catch(() => {});
    t.cleanup();
  });
  const b: InProcessBench = {
    dir: t.path,
    home,
    clock,
    job,
    store,
    async edit(change) {
      config = merge(config, change);
      b.job = await prepare(t.path, config);
      return b.job;
    },
    backend: (script = {}, fallback = {}) => scriptedBackend(script, { now: clock.now, fallback }),
    start(backend, opts = {}) {
      const run = startRun({ job: b.job, store, command: "run", env: {}, ...(home ? { home } : {}), notify: false, ttlMs: 10_000, tickMs: 20, clock, random: () => 0, backend, ...opts });
      b.current = run;
      runs.push(run);
      const seen: MozartEvent[] = [];
      run.events.on((e) => seen.push(e));
      return { run, seen, done: run.done };
    },
    async run(backend, opts = {}) {
      const before = await store.lastSeq(b.job.config.name);
      const { seen, done } = b.start(backend, opts);
      const result = await done;
      return { result, seen, events: await b.events(before) };
    },
    events: (after = 0) => store.readEvents(b.job.config.name, { after }),
  };
  return b;
}
