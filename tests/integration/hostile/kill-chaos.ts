/**
 * kill -9 at seeded random moments of `run`, `resume --force` or `resume --from`, checking after
 * every kill that what the state says holds together: the job is completed only when every batch
 * is, the counts match the batch rows, `list` agrees with `status`, and nothing recorded as
 * completed runs again (except what --force / --from asked to re-run).
 */
import { expect } from "bun:test";
import { mozart } from "../../helpers.ts";
import { commandBackend, type Sandbox } from "../engine-helpers.ts";
import { mulberry32, readText, statusOf, type Doc } from "./hostile-helpers.ts";

export type KillMode = "run" | "force" | "from";

export const CHAOS_BATCHES = 24;

export function chaosJob(box: Sandbox, name: string, file = "job.yaml"): string {
  return box.job(
    {
      name,
      concurrency: 2,
      batch: { size: 1, total_items: CHAOS_BATCHES },
      workspace: `./ws-${name}`,
      backend: commandBackend(`echo "$MOZART_BATCH_NUM" >> {job_dir}/exec-${name}.log; sleep 0.05; mkdir -p out; echo done > out/b$MOZART_BATCH_NUM`),
      validations: [{ type: "file_exists", path: "out/b{batch_num}" }],
    },
    file,
  );
}

/** What must hold of a job's records at any moment no runner is alive. Returns the status document. */
export function checkRecords(box: Sandbox, name: string, total = CHAOS_BATCHES, withList = true): Doc {
  const { r, doc } = statusOf(box, name);
  expect(r.stderr).not.toContain("unexpected error");
  expect(r.code).toBe(0);
  const d = doc!;
  const completed = d.batches.filter((b) => b.status === "completed").length;
  expect(d.progress.completed).toBe(completed);
  expect(d.progress.total).toBe(total);
  expect(d.batches).toHaveLength(total);
  // Nobody runs it: a dead runner's job is paused, never "running", and never falsely completed.
  expect(d.status).not.toBe("running");
  if (d.status === "completed") expect(completed).toBe(total);
  if (completed < total) expect(d.status).not.toBe("completed");
  expect(d.batches.some((b) => b.status === "in_progress")).toBe(false);

  if (!withList) return d;
  const l = mozart(["list", "--json"], { cwd: box.dir, env: box.env, timeout: 30_000 });
  expect(l.code).toBe(0);
  const row = (JSON.parse(l.stdout) as { jobs: Array<{ job_id: string; status: string; completed: number; total: number }> }).jobs.find((j) => j.job_id === name);
  if (row) {
    expect(row.status).not.toBe("running");
    if (row.status === "completed") {
      expect(d.status).toBe("completed");
      expect(row.completed).toBe(row.total);
    }
  }
  return d;
}

export interface ChaosResult {
  kills: number;
  /** Kills that landed mid-work (some batches done, some not). */
  partial: number;
}

/**
 * `rounds` kills of `mode`, each at a seeded random moment, then a plain resume that must
 * finish the job. run/resume: batches completed at a kill never run again (a job that completes
 * is replaced by a fresh one, so every kill lands in work). --force/--from restart the work each
 * time; batches before N (--from) never run again.
 */
export async function killChaos(box: Sandbox, mode: KillMode, rounds: number, seed: number): Promise<ChaosResult> {
  const random = mulberry32(seed);
  const from = 5;
  let generation = 0;
  let name = `chaos-${mode}-${generation}`;
  let file = chaosJob(box, name, `${name}.yaml`);
  const logOf = (n: string) => readText(`${box.dir}/exec-${n}.log`).split("\n").filter(Boolean).map(Number);
  let partial = 0;
  if (mode !== "run") expect(box.run(["run", file]).code).toBe(0);
  const neverAgain = new Set<number>();
  if (mode === "from") for (let n = 1; n < from; n++) neverAgain.add(n);
  const checkpoints: Array<{ name: string; done: Set<number>; at: number }> = [];
  let saved = mode !== "run";

  const finish = (n: string) => {
    const final = box.run(["resume", n]);
    expect(final.stderr).not.toContain("unexpected error");
    expect(final.code).toBe(0);
    expect(checkRecords(box, n).status).toBe("completed");
  };

  for (let k = 0; k < rounds; k++) {
    const args = mode === "run" ? (saved && k % 2 === 1 ? ["resume", name] : ["run", file]) : mode === "force" ? ["resume", name, "--force"] : ["resume", name, "--from", String(from)];
    const before = logOf(name).length;
    const p = box.start(args);
    // One kill in four lands anywhere in the first 300 ms (start-up, the first saves); the others
    // once work is under way, wherever start-up took, so a slow machine still kills mid-work.
    if (k % 4 === 0) await Bun.sleep(Math.floor(random() * 300));
    else {
      for (let t = 0; t < 5000 && logOf(name).length === before; t += 10) await Bun.sleep(10);
      await Bun.sleep(Math.floor(random() * 600));
    }
    p.child.kill("SIGKILL");
    const r = await p.done;
    await Bun.sleep(60); // orphaned attempts (own process groups) finish their echo
    if (mode === "run" && !saved) {
      const s = statusOf(box, name);
      if (s.r.code !== 0 && /not found|no state/.test(s.r.stderr)) continue; // killed before the first save
      saved = true;
    }
    const doc = checkRecords(box, name, CHAOS_BATCHES, k % 3 === 0);
    const done = new Set(doc.batches.filter((b) => b.status === "completed").map((b) => b.batch_num));
    if (done.size > 0 && done.size < CHAOS_BATCHES) partial++;
    if (mode === "run") {
      checkpoints.push({ name, done, at: logOf(name).length });
      if (r.code === 0 || done.size === CHAOS_BATCHES) {
        expect(doc.status).toBe("completed");
        generation++;
        name = `chaos-${mode}-${generation}`;
        file = chaosJob(box, name, `${name}.yaml`);
        saved = false;
      }
    }
  }
  if (saved) finish(name);
  if (mode === "run") {
    for (const cp of checkpoints) expect(logOf(cp.name).slice(cp.at).filter((n) => cp.done.has(n))).toEqual([]);
  } else {
    // The first run ran each batch once; no batch before --from ever ran again.
    expect(logOf(name).slice(CHAOS_BATCHES).filter((n) => neverAgain.has(n))).toEqual([]);
  }
  return { kills: rounds, partial };
}
