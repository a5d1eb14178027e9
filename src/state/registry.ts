/**
 * Where each job's state lives, so `status`, `list`, `resume` and the dashboard find a job from
 * any directory. One small JSON file per job under `<MOZART_HOME>/jobs/`, written atomically;
 * one file per job means two runners registering different jobs never race on a shared index.
 */
import { readFileSync, statSync } from "node:fs";
import { readFile, readdir, unlink } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, posix, win32 } from "node:path";
import { writeFileAtomic } from "./atomic-file.ts";
import { encodeJobId } from "./keys.ts";
import type { Requester, StateBackend } from "./types.ts";

export interface RegistryEntry {
  job_id: string;
  state_backend: StateBackend;
  /** Folder (json) or database file (sqlite), absolute; for postgres `$NAME` of the variable holding the URL. */
  state_location: string;
  /** Absolute path of the job file. */
  config_path: string;
  workspace: string;
  updated_at: string;
  /** The account its claude sessions run on (state/accounts.ts), so `list` can show the account's hold. */
  account?: string;
  /**
   * What `mozart list` shows without opening every job's store (1,000 jobs list in well under
   * 100 ms): written by the runner when a run starts, every few seconds while it makes
   * progress, and when it ends. `status` always reads the store itself.
   */
  snapshot?: RegistrySnapshot;
}

export interface RegistrySnapshot {
  status: string;
  completed: number;
  total: number;
  cost_usd: number;
  /** Batches in conflict (isolation: worktree). */
  conflict?: number;
  /** The runner that wrote it, so `list` can tell a killed run from a live one on this host. */
  runner?: { pid: number; host: string };
  /** Who paused or cancelled the job. */
  stopped_by?: Requester;
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
    (value.state_backend === "json" || value.state_backend === "sqlite" || value.state_backend === "postgres");
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
  await writeFileAtomic(path, `${JSON.stringify(full, null, 2)}\n`, { mkdir: true }).catch((err: unknown) => {
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
 * What a long-lived reader (the dashboard) keeps between reads of the registry. Entries are
 * only ever written by a rename into the folder, which changes the folder's mtime: while it is
 * unchanged the last read is reused without a system call per file (a thousand stats cost a few
 * ms). Otherwise only files whose inode, size or mtime changed are read again. Every few seconds
 * the files are checked anyway, for an entry edited in place.
 */
export interface RegistryCache {
  files: Map<string, { stamp: string; entry?: RegistryEntry; reason?: string }>;
  folder?: string;
  checkedAt?: number;
  last?: Registry;
}

type Registry = { entries: RegistryEntry[]; unreadable: Array<{ file: string; reason: string }> };

export const registryCache = (): RegistryCache => ({ files: new Map() });

/** Full checks of a cached registry at least this often. */
const RECHECK_MS = 5000;
/**
 * A folder mtime this recent may hide a second change in the same clock tick (the kernel's
 * file times are coarser than they look): it is not trusted yet.
 */
const SETTLE_MS = 1000;

/**
 * Every registered job, most recently updated first, and the entries that could not be read
 * (one bad file must not hide every other job, nor vanish without a word).
 */
export async function readRegistry(home: string, cache?: RegistryCache): Promise<Registry> {
  const dir = join(home, "jobs");
  const now = Date.now();
  let folder: string | undefined;
  if (cache) {
    const d = statSync(dir, { throwIfNoEntry: false });
    folder = d ? `${d.ino}:${d.mtimeMs}` : "";
    if (cache.last && cache.folder === folder && now - (cache.checkedAt ?? 0) < RECHECK_MS) return { entries: [...cache.last.entries], unreadable: [...cache.last.unreadable] };
    if (d && now - d.mtimeMs < SETTLE_MS) folder = undefined;
  }
  const names = await readdir(dir).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Error(`cannot list the registry ${dir}: ${(err as Error).message}`);
  });
  const entries: RegistryEntry[] = [];
  const unreadable: Array<{ file: string; reason: string }> = [];
  for (const name of names) {
    if (name.startsWith(".") || !name.endsWith(".json")) continue;
    const file = join(dir, name);
    // Synchronous: a thousand tiny files read faster in a loop than through a thousand promises.
    try {
      if (!cache) {
        entries.push(parseEntry(readFileSync(file, "utf8"), file));
        continue;
      }
      const s = statSync(file);
      const stamp = `${s.ino}:${s.size}:${s.mtimeMs}`;
      let known = cache.files.get(name);
      if (known?.stamp !== stamp) {
        try {
          known = { stamp, entry: parseEntry(readFileSync(file, "utf8"), file) };
        } catch (e) {
          known = { stamp, reason: (e as Error).message };
        }
        cache.files.set(name, known);
      }
      if (known.entry) entries.push(known.entry);
      else unreadable.push({ file, reason: known.reason! });
    } catch (e) {
      cache?.files.delete(name);
      unreadable.push({ file, reason: (e as Error).message });
    }
  }
  entries.sort((a, b) => (a.updated_at === b.updated_at ? (a.job_id < b.job_id ? -1 : 1) : a.updated_at < b.updated_at ? 1 : -1));
  if (cache) {
    const present = new Set(names);
    for (const name of cache.files.keys()) if (!present.has(name)) cache.files.delete(name);
    Object.assign(cache, { folder, checkedAt: now, last: { entries: [...entries], unreadable: [...unreadable] } });
  }
  return { entries, unreadable };
}

/** Every readable registered job, most recently updated first. */
export async function listRegistered(home: string): Promise<RegistryEntry[]> {
  return (await readRegistry(home)).entries;
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

/** Updates a registered job's snapshot (a command that changed the job without running it). */
export async function updateSnapshot(home: string, jobId: string, snapshot: RegistrySnapshot): Promise<void> {
  const entry = await findJob(home, jobId).catch(() => null);
  if (entry) await registerJob(home, { ...entry, updated_at: undefined, snapshot });
}
