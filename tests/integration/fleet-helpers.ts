/**
 * For the worker-fleet tests: a job of `command` batches in a fresh database of the file's
 * throw-away Postgres, submitted with `run --submit` and drained by `mozart worker` processes.
 * Every batch's script appends `start <n> <pid> <ms>` and `done <n> <ms>` lines to runs.log, so a
 * test sees what really ran, beside what the state says was recorded.
 */
import { afterAll, afterEach, beforeAll } from "bun:test";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StoredEvent } from "../../src/state/events.ts";
import { openStore } from "../../src/state/store.ts";
import type { StateStore } from "../../src/state/types.ts";
import { startCluster, type Cluster } from "../pg-cluster.ts";
import { waitFor, xsandbox, type Started, type XSandbox } from "./xproc-helpers.ts";

/**
 * The file's throw-away cluster, started before its tests and stopped after them, and every fleet a
 * test tracks cleaned up after that test, even when it fails.
 */
export function fleetSuite(): { readonly cluster: Cluster; track: (f: Fleet) => Fleet } {
  let cluster: Cluster | undefined;
  const fleets: Fleet[] = [];
  beforeAll(async () => {
    cluster = await startCluster();
  }, 60_000);
  afterAll(() => cluster?.stop());
  afterEach(async () => {
    for (const f of fleets.splice(0)) await f.cleanup();
  });
  return {
    get cluster() {
      if (!cluster) throw new Error("the Postgres cluster is not started (fleetSuite() must be called at the top of the test file)");
      return cluster;
    },
    track: (f) => (fleets.push(f), f),
  };
}

export interface Fleet {
  box: XSandbox;
  url: string;
  db: string;
  env: Record<string, string>;
  jobFile: string;
  submit(): Promise<void>;
  /** Starts worker i (its own --dir). */
  worker(i: number, extra?: string[], env?: Record<string, string>): Started;
  /** A read-only store on the fleet's database, opened per call. */
  withStore<T>(fn: (store: StateStore) => Promise<T>): Promise<T>;
  events(): Promise<StoredEvent[]>;
  /** What the batch scripts wrote: one entry per start and per end. */
  runs(): Array<{ kind: "start" | "done"; n: number; at: number; pid?: number }>;
  /** Batches recorded completed. */
  completed(): Promise<number>;
  cleanup(): Promise<void>;
}

export async function fleet(cluster: Cluster, o: { batches: number; concurrency?: number; sleep?: number; ttlSeconds?: number; config?: Record<string, unknown>; script?: string }): Promise<Fleet> {
  const database = await cluster.createDatabase("fleet");
  const box = xsandbox("postgres");
  const runsLog = join(box.dir, "runs.log");
  const script = join(box.dir, "batch.sh");
  writeFileSync(
    script,
    o.script ??
      `#!/bin/sh
echo "start $MOZART_BATCH_NUM $$ $(date +%s%3N)" >> "${runsLog}"
sleep ${o.sleep ?? 0.1}
echo "done $MOZART_BATCH_NUM $(date +%s%3N)" >> "${runsLog}"
echo "batch $MOZART_BATCH_NUM ok"
`,
  );
  chmodSync(script, 0o755);
  const env = { MOZART_DATABASE_URL: database.url, MOZART_LEASE_TTL_SECONDS: String(o.ttlSeconds ?? 3), RUNS_LOG: runsLog, CI: "1" };
  const jobFile = box.job({
    name: "fleet",
    concurrency: o.concurrency ?? 2,
    batch: { size: 1, total_items: o.batches },
    backend: { type: "command", command: script, timeout_seconds: 120 },
    retry: { max_retries: 3, base_delay_seconds: 0.05, max_delay_seconds: 0.2, completion_delay_seconds: 0 },
    ...o.config,
  });
  const withStore = async <T>(fn: (store: StateStore) => Promise<T>): Promise<T> => {
    const store = await openStore({ kind: "postgres", location: database.url, readOnly: true });
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };
  return {
    box,
    url: database.url,
    db: database.name,
    env,
    jobFile,
    async submit() {
      const r = await box.exec(["run", "--submit", jobFile], env);
      if (r.code !== 0) throw new Error(`submit failed (${r.code}): ${r.stderr}`);
    },
    worker: (i, extra = [], extraEnv = {}) => box.start(["worker", "--job", "fleet", "--dir", join(box.dir, `w${i}`), ...extra], { ...env, ...extraEnv }),
    withStore,
    events: () => withStore((s) => s.readEvents("fleet")),
    runs() {
      if (!existsSync(runsLog)) return [];
      return readFileSync(runsLog, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => {
          const [kind, n, a, b] = l.split(" ");
          return kind === "start" ? { kind: "start" as const, n: Number(n), pid: Number(a), at: Number(b) } : { kind: "done" as const, n: Number(n), at: Number(a) };
        });
    },
    completed: () => withStore(async (s) => (await s.summary("fleet", o.batches)).completed),
    cleanup: () => box.cleanup(),
  };
}

/** The state after a run: every batch completed exactly once, per the records and the event log. */
export async function expectExactlyOnce(f: Fleet, total: number): Promise<{ events: StoredEvent[]; completeSeq: Map<number, number> }> {
  const events = await f.events();
  const completeSeq = new Map<number, number>();
  const dup: number[] = [];
  for (const e of events) {
    if (e.type !== "batch_complete") continue;
    if (completeSeq.has(e.batch_num)) dup.push(e.batch_num);
    completeSeq.set(e.batch_num, e.seq);
  }
  if (dup.length) throw new Error(`batches recorded completed more than once: ${dup.join(", ")}`);
  if (completeSeq.size !== total) throw new Error(`${completeSeq.size} of ${total} batches have a batch_complete event`);
  // Nothing of a batch starts after it was recorded completed.
  for (const e of events) {
    if ((e.type === "batch_start" || e.type === "attempt_start") && e.seq > completeSeq.get(e.batch_num)!) throw new Error(`batch ${e.batch_num} started again (seq ${e.seq}) after it completed (seq ${completeSeq.get(e.batch_num)})`);
  }
  return { events, completeSeq };
}

export { waitFor };
