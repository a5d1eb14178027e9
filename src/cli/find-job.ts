/**
 * Finding a job from any directory: by id through the registry under MOZART_HOME, or by the
 * path of its job file (which works even where the registry is not kept, e.g. a fresh CI runner).
 */
import { stat } from "node:fs/promises";
import { loadJobFile } from "../config/load.ts";
import { MozartError } from "../errors.ts";
import { stateLocation } from "../state/location.ts";
import { findJob, mozartHome } from "../state/registry.ts";
import { openStore } from "../state/store.ts";
import type { JobRecord, StateStore } from "../state/types.ts";

export interface FoundJob {
  store: StateStore;
  record: JobRecord;
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

export async function locateJob(idOrFile: string): Promise<{ id: string; kind: "json" | "sqlite"; location: string }> {
  if (/\.(ya?ml|json|toml)$/i.test(idOrFile) && (await isFile(idOrFile))) {
    const { config } = await loadJobFile(idOrFile);
    return { id: config.name, kind: config.state_backend, location: stateLocation(config) };
  }
  const home = mozartHome(process.env);
  const entry = await findJob(home, idOrFile);
  if (!entry) {
    throw new MozartError(`job not found: ${idOrFile}`, {
      hint: `jobs are registered in ${home} when they run (see \`mozart list\`); you can also pass the job file instead of the id`,
    });
  }
  return { id: entry.job_id, kind: entry.state_backend, location: entry.state_location };
}

export async function openJob(idOrFile: string): Promise<FoundJob> {
  const where = await locateJob(idOrFile);
  let store: StateStore;
  try {
    store = await openStore({ kind: where.kind, location: where.location });
  } catch (e) {
    throw new MozartError(`cannot open the state of job "${where.id}" at ${where.location}: ${(e as Error).message}`);
  }
  const record = await store.getJob(where.id);
  if (!record) {
    await store.close();
    throw new MozartError(`job not found: ${where.id} (no state at ${where.location})`, { hint: `start it with \`mozart run <job file>\`` });
  }
  return { store, record };
}
