/**
 * Jobs in the shared database. A job whose state is in Postgres is found from any machine with
 * the database's URL in MOZART_DATABASE_URL, without a registry entry there: `status`, `logs`,
 * `pause`, `cancel`, `resume`, `list` and the dashboard look in the database after the registry.
 * The entry it gives names the variable, never the URL.
 */
import type { RegistryEntry } from "./registry.ts";
import { openStore } from "./store.ts";
import type { StateStore } from "./types.ts";

/** The variable `mozart worker`, `list` and lookups by id read the shared database's URL from. */
export const DATABASE_URL_ENV = "MOZART_DATABASE_URL";

type Env = Record<string, string | undefined>;

/** `$MOZART_DATABASE_URL` when it is set, else undefined (no shared database to look in). */
export function sharedDatabase(env: Env, name = DATABASE_URL_ENV): string | undefined {
  return env[name]?.trim() ? `$${name}` : undefined;
}

/**
 * Every job in the shared database, as registry entries; [] without one. Errors propagate (a wrong
 * URL must be said). `opened`: a store on that database the caller keeps open (the dashboard's),
 * used instead of a pool of its own.
 */
export async function databaseEntries(env: Env, only?: string, opened?: StateStore): Promise<RegistryEntry[]> {
  const location = sharedDatabase(env);
  if (!location) return [];
  const store = opened ?? (await openStore({ kind: "postgres", location, env, readOnly: true }));
  try {
    const ids = only === undefined ? await store.listJobIds() : [only];
    const entries: RegistryEntry[] = [];
    for (const id of ids) {
      const rec = await store.getJob(id).catch(() => null);
      if (!rec) continue;
      entries.push({ job_id: id, state_backend: "postgres", state_location: location, config_path: rec.config_path, workspace: rec.workspace, updated_at: rec.updated_at });
    }
    return entries;
  } finally {
    if (!opened) await store.close();
  }
}

/** The job's entry in the shared database, or null (no database, no such job, or the database has no Mozart state). */
export async function findInDatabase(jobId: string, env: Env, opened?: StateStore): Promise<RegistryEntry | null> {
  if (!sharedDatabase(env)) return null;
  try {
    return (await databaseEntries(env, jobId, opened))[0] ?? null;
  } catch (e) {
    if (/there is no state/.test((e as Error).message)) return null;
    throw e;
  }
}
