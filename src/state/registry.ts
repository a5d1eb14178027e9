/**
 * Where each job's state lives, so `status`, `list`, `resume` and the dashboard find a job from
 * any directory. One small JSON file per job under `<MOZART_HOME>/jobs/`, written atomically;
 * one file per job means two runners registering different jobs never race on a shared index.
 */
import { readFile, readdir, unlink } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, posix, win32 } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { encodeJobId } from "./keys.ts";

export interface RegistryEntry {
  job_id: string;
  state_backend: "json" | "sqlite";
  /** Folder (json) or database file (sqlite), absolute. */
  state_location: string;
  /** Absolute path of the job file. */
  config_path: string;
  workspace: string;
  updated_at: string;
}

type Env = Record<string, string | undefined>;

/**
 * MOZART_HOME, else the platform's state folder: %LOCALAPPDATA%\mozart on Windows,
 * $XDG_STATE_HOME/mozart or ~/.local/state/mozart elsewhere (XDG applies to macOS too, where
 * CLI tools commonly follow it rather than ~/Library).
 */
export function mozartHome(env: Env, platform: NodeJS.Platform = process.platform, home: string = homedir()): string {
  if (env.MOZART_HOME) return env.MOZART_HOME;
  if (platform === "win32") {
    const local = env.LOCALAPPDATA || win32.join(env.USERPROFILE || home, "AppData", "Local");
    return win32.join(local, "mozart");
  }
  // The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
  const xdg = env.XDG_STATE_HOME;
  const base = xdg && isAbsolute(xdg) ? xdg : posix.join(env.HOME || home, ".local", "state");
  return posix.join(base, "mozart");
}

const entryPath = (home: string, jobId: string) => join(home, "jobs", `${encodeJobId(jobId)}.json`);

function parseEntry(text: string, source: string): RegistryEntry {
  let value: Partial<RegistryEntry> | null;
  try {
    value = JSON.parse(text) as Partial<RegistryEntry> | null;
  } catch {
    value = null;
  }
  const strings = ["job_id", "state_location", "config_path", "workspace", "updated_at"] as const;
  const valid =
    value !== null &&
    typeof value === "object" &&
    strings.every((field) => typeof value?.[field] === "string") &&
    (value.state_backend === "json" || value.state_backend === "sqlite");
  if (!valid) throw new Error(`registry entry ${source} is damaged; delete it and run the job again to re-register it.`);
  return value as RegistryEntry;
}

/** Records (or refreshes) where a job's state lives. `updated_at` defaults to now. */
export async function registerJob(
  home: string,
  entry: Omit<RegistryEntry, "updated_at"> & { updated_at?: string },
): Promise<RegistryEntry> {
  const full: RegistryEntry = { ...entry, updated_at: entry.updated_at ?? new Date().toISOString() };
  const path = entryPath(home, entry.job_id);
  await writeFileAtomic(path, `${JSON.stringify(full, null, 2)}\n`).catch((err: unknown) => {
    throw new Error(`cannot register job ${JSON.stringify(entry.job_id)} in ${path}: ${(err as Error).message}. Set MOZART_HOME to a writable folder.`);
  });
  return full;
}

export async function findJob(home: string, jobId: string): Promise<RegistryEntry | null> {
  const path = entryPath(home, jobId);
  const text = await readFile(path, "utf8").catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new Error(`cannot read registry entry ${path}: ${(err as Error).message}`);
  });
  if (text === null) return null;
  const entry = parseEntry(text, path);
  return entry.job_id === jobId ? entry : null;
}

/**
 * Every registered job, most recently updated first. A damaged entry is skipped rather than
 * failing the listing: one bad file must not hide every other job; `findJob` reports it.
 */
export async function listRegistered(home: string): Promise<RegistryEntry[]> {
  const dir = join(home, "jobs");
  const names = await readdir(dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`cannot list the registry ${dir}: ${(err as Error).message}`);
  });
  const entries: RegistryEntry[] = [];
  for (const name of names) {
    if (name.startsWith(".") || !name.endsWith(".json")) continue;
    const text = await readFile(join(dir, name), "utf8").catch(() => null);
    if (text === null) continue;
    try {
      entries.push(parseEntry(text, join(dir, name)));
    } catch {
      // skipped, see above
    }
  }
  return entries.sort((a, b) => (a.updated_at === b.updated_at ? (a.job_id < b.job_id ? -1 : 1) : a.updated_at < b.updated_at ? 1 : -1));
}

/** Forgets a job; true when an entry was removed. Its state itself is left alone. */
export async function unregisterJob(home: string, jobId: string): Promise<boolean> {
  const path = entryPath(home, jobId);
  return unlink(path).then(
    () => true,
    (err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw new Error(`cannot unregister job ${JSON.stringify(jobId)} (${path}): ${(err as Error).message}`);
    },
  );
}
