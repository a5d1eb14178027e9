/**
 * A submitted job as a worker runs it: the job file and the template come from the state (they
 * travelled in the database), relative paths resolve under the worker's own folder, and the
 * job's `worker_setup` command prepares the workspace once per worker.
 */
import { mkdir } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { checkJob, type PreparedJob } from "../config/check.ts";
import { parseJobText } from "../config/load.ts";
import { MozartError } from "../errors.ts";
import { runProcess } from "../runtime/process.ts";
import { encodeJobId } from "../state/keys.ts";
import type { JobRecord, StateStore } from "../state/types.ts";
import { clip } from "../text.ts";

/**
 * The job of a record, for a worker whose folder is `dir`: the job file is read as if it sat in
 * `<dir>/<job>/`, so `workspace: ./workspace` becomes `<dir>/<job>/workspace` (an absolute
 * workspace is used as it is: every machine must have it).
 */
export async function submittedJob(store: StateStore, rec: JobRecord, dir: string): Promise<PreparedJob> {
  const [source, template] = await Promise.all([store.getBlob(rec.source_blob), store.getBlob(rec.template_blob)]);
  if (source === null || template === null) {
    throw new MozartError(`job "${rec.job_id}" was not submitted with its job file and template (they are missing from ${store.location})`, { hint: `submit it again: mozart run --submit <job file>` });
  }
  const file = join(resolve(dir), encodeJobId(rec.job_id), basename(rec.config_path) || "job.yaml");
  return checkJob(parseJobText(source, file), { template });
}

/** Runs `worker_setup` in the (new) workspace; throws with its output when it fails. */
export async function setUpWorkspace(job: PreparedJob, env: Record<string, string | undefined>, signal?: AbortSignal): Promise<{ ran: boolean; duration_ms: number }> {
  const c = job.config;
  await mkdir(c.workspace, { recursive: true }).catch((e: Error) => {
    throw new MozartError(`cannot create the workspace ${c.workspace}: ${e.message}`);
  });
  if (!c.worker_setup) return { ran: false, duration_ms: 0 };
  const r = await runProcess({ shell: c.worker_setup, cwd: c.workspace, env: { ...env, MOZART_JOB_ID: c.name, MOZART_WORKSPACE: c.workspace }, ...(signal ? { signal } : {}), timeoutMs: 3600_000 });
  if (r.exit_code !== 0) {
    const why = r.spawn_error?.message ?? (r.timed_out ? "timed out" : r.interrupted ? "stopped" : `exit code ${r.exit_code ?? r.signal}`);
    throw new MozartError(`worker_setup of job "${c.name}" failed in ${c.workspace} (${why})${r.stderr.trim() ? `: ${clip(r.stderr.trim(), 600)}` : ""}`, {
      hint: "fix the command (it runs with /bin/sh -c in the workspace), then start the worker again",
    });
  }
  return { ran: true, duration_ms: r.duration_ms };
}
