/**
 * Finding a job from any directory: by id through the registry under MOZART_HOME, or by the
 * path of its job file (which works even where the registry is not kept, e.g. a fresh CI runner).
 * Reading commands open the store read-only, so an archived or read-only state folder can be
 * inspected and nothing is ever created by looking.
 */
import { stat } from "node:fs/promises";
import { loadJobFile } from "../config/load.ts";
import { MozartError } from "../errors.ts";
import { findInDatabase, sharedDatabase } from "../state/database.ts";
import { isLocalLocation, stateLocation } from "../state/location.ts";
import { findJob, mozartHome } from "../state/registry.ts";
import { openStore } from "../state/store.ts";
import type { JobRecord, StateBackend, StateStore } from "../state/types.ts";
import { shellQuote } from "../text.ts";

export interface FoundJob {
  store: StateStore;
  record: JobRecord;
}

export interface JobLocation {
  id: string;
  kind: StateBackend;
  location: string;
  /** The job file, when the job was named by its file. */
  file?: string;
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  );
}

export async function locateJob(idOrFile: string, env: Record<string, string | undefined> = process.env): Promise<JobLocation> {
  if (/\.(ya?ml|json|toml)$/i.test(idOrFile) && (await isFile(idOrFile))) {
    const loaded = await loadJobFile(idOrFile);
    return { id: loaded.config.name, kind: loaded.config.state_backend, location: stateLocation(loaded.config), file: loaded.file };
  }
  const home = mozartHome(env);
  const entry =
    (await findJob(home, idOrFile).catch((e: Error) => {
      throw new MozartError(e.message);
    })) ?? (await findInDatabase(idOrFile, env));
  if (!entry) {
    const db = sharedDatabase(env);
    throw new MozartError(`job not found: ${idOrFile}`, {
      hint: `jobs are registered in ${home} when they run (see \`mozart list\`)${db ? `, and looked up in the database of ${db.slice(1)}` : "; a job in a shared database is found with MOZART_DATABASE_URL set"}; you can also pass the job file instead of the id`,
    });
  }
  return { id: entry.job_id, kind: entry.state_backend, location: entry.state_location };
}

export async function openLocated(where: JobLocation, opts: { readOnly?: boolean } = {}): Promise<StateStore> {
  try {
    // Commands that write to an existing job (pause, cancel, repair) must not create its state
    // when it is gone: that is `mozart run`'s to do, and it would hide the loss.
    if (!opts.readOnly && isLocalLocation(where.location) && !(await stat(where.location).then(() => true, () => false))) {
      throw new MozartError(`there is no state at ${where.location}`);
    }
    return await openStore({ kind: where.kind, location: where.location, readOnly: opts.readOnly, env: process.env });
  } catch (e) {
    const err = e as MozartError;
    if (err.name === "MozartError" && /there is no state/.test(err.message)) {
      throw new MozartError(`job "${where.id}" has no state at ${where.location}`, {
        hint: where.file ? `start it with: mozart run ${shellQuote(where.file)}` : "if its state was moved or deleted, run the job file again",
      });
    }
    throw e;
  }
}

export async function openJob(idOrFile: string, opts: { readOnly?: boolean } = {}): Promise<FoundJob & { where: JobLocation }> {
  const where = await locateJob(idOrFile);
  const store = await openLocated(where, opts);
  let record: JobRecord | null;
  try {
    record = await store.getJob(where.id);
  } catch (e) {
    await store.close();
    throw e;
  }
  if (!record) {
    const orphans = await store.listBatches(where.id, { limit: 1 }).catch(() => []);
    await store.close();
    if (orphans.length) {
      throw new MozartError(`the job record of "${where.id}" is missing from ${where.location}, but its batch records are there`, {
        hint: "rebuild it from the job file: mozart repair <job file>",
      });
    }
    throw new MozartError(`job not found: ${where.id} (no state at ${where.location})`, { hint: "start it with `mozart run <job file>`" });
  }
  return { store, record, where };
}
