/**
 * The single-runner lock: one file per job holding {pid, host, started_at}. unstorage has no
 * compare-and-set, so the lock lives beside the store as a plain file created exclusively.
 */
import { link, open, readFile, stat, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import type { LockResult, RunnerInfo } from "./types.ts";
import { isProcessAlive, tempPathFor, writeFileAtomic } from "./atomic-file.ts";

/** A takeover guard older than this was left by a process that died mid-takeover. */
const TAKEOVER_STALE_MS = 30_000;
const MAX_ROUNDS = 200;

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Holder = RunnerInfo | "missing";

async function readHolder(path: string): Promise<Holder> {
  const text = await readFile(path, "utf8").catch((err: unknown) => {
    if (errno(err) === "ENOENT") return null;
    throw err;
  });
  if (text === null) return "missing";
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = null;
  }
  const v = value as Partial<RunnerInfo> | null;
  if (!v || !Number.isSafeInteger(v.pid) || (v.pid ?? 0) <= 0 || typeof v.host !== "string" || typeof v.started_at !== "string") {
    throw new Error(
      `lock file ${path} is not a valid mozart lock. If no mozart run is active for this job, delete the file and retry.`,
    );
  }
  return { pid: v.pid as number, host: v.host, started_at: v.started_at };
}

const sameHolder = (a: RunnerInfo, b: RunnerInfo): boolean =>
  a.pid === b.pid && a.host === b.host && a.started_at === b.started_at;

/**
 * Creates the lock only if absent. The content is written to a temp file first and hard-linked
 * into place, so a reader never sees an empty lock (a bare open('wx') + write leaves a window,
 * and a crash inside it leaves a lock nobody can attribute). Without hard links (FAT, some
 * network shares) it falls back to open('wx').
 */
async function createExclusive(path: string, me: RunnerInfo): Promise<boolean> {
  const body = JSON.stringify(me);
  const tmp = tempPathFor(path);
  const file = await open(tmp, "wx");
  try {
    await file.writeFile(body, "utf8");
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    const code = errno(err);
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS" && code !== "EXDEV") throw err;
    return createWithOpenWx(path, body);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function createWithOpenWx(path: string, body: string): Promise<boolean> {
  const file = await open(path, "wx").catch((err: unknown) => {
    if (errno(err) === "EEXIST") return null;
    throw err;
  });
  if (!file) return false;
  try {
    await file.writeFile(body, "utf8");
    await file.sync();
  } finally {
    await file.close();
  }
  return true;
}

/**
 * Replaces a dead holder's lock. Two starters may both find the same dead holder; the guard
 * file (created exclusively) lets only one of them re-check and replace it, so the loser sees
 * the winner's live lock on its next round instead of overwriting it.
 */
async function takeOver(path: string, dead: RunnerInfo, me: RunnerInfo): Promise<boolean> {
  const guard = `${path}.takeover`;
  const guardFile = await open(guard, "wx").catch((err: unknown) => {
    if (errno(err) === "EEXIST") return null;
    throw err;
  });
  if (!guardFile) {
    const info = await stat(guard).catch(() => null);
    if (info && Date.now() - info.mtimeMs > TAKEOVER_STALE_MS) await unlink(guard).catch(() => {});
    return false;
  }
  try {
    await guardFile.close();
    const now = await readHolder(path);
    if (now === "missing") return await createExclusive(path, me);
    if (!sameHolder(now, dead)) return false;
    await writeFileAtomic(path, JSON.stringify(me));
    return true;
  } finally {
    await unlink(guard).catch(() => {});
  }
}

export async function acquireLockFile(path: string, me: RunnerInfo): Promise<LockResult> {
  const here = hostname();
  for (let round = 0; round < MAX_ROUNDS; round++) {
    if (await createExclusive(path, me)) return { ok: true };
    const holder = await readHolder(path);
    if (holder === "missing") continue; // released between our attempt and the read
    // Re-acquiring our own lock (same process) is a no-op, e.g. a resume inside one run.
    if (holder.pid === me.pid && holder.host === me.host) return { ok: true };
    // A holder on another host cannot be probed: refuse rather than guess.
    if (holder.host !== here || isProcessAlive(holder.pid)) return { ok: false, holder };
    if (await takeOver(path, holder, me)) return { ok: true };
    await sleep(10);
  }
  throw new Error(`could not acquire the lock ${path}: it kept changing hands. Retry, or delete it if no mozart run is active.`);
}

/** Removes the lock only when `owner` holds it, so a late release never frees another runner's lock. */
export async function releaseLockFile(path: string, owner: { pid: number; host: string }): Promise<void> {
  const holder = await readHolder(path).catch(() => "missing" as const);
  if (holder === "missing" || holder.pid !== owner.pid || holder.host !== owner.host) return;
  await unlink(path).catch((err: unknown) => {
    if (errno(err) !== "ENOENT") throw err;
  });
}
