/**
 * Whole-file writes that a reader or a crash never sees half done: write a temp file next to
 * the target, fsync it, rename it over the target. Shared by the json driver, the lock file
 * and the registry.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** `.<name>.<pid>.<rand>.tmp`: the leading dot hides it from key listings, the pid lets a later
 * open tell an orphan (writer dead) from a write still in flight in another process. */
const TEMP_NAME = /^\..*\.(\d+)\.[0-9a-f]+\.tmp$/;
/** No single write takes this long, so an older temp file is an orphan whoever wrote it. */
const TEMP_MAX_AGE_MS = 60_000;

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/** True unless the pid is certainly gone. EPERM means it exists under another user. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

export async function writeFileAtomic(path: string, data: string): Promise<void> {
  const tmp = tempPathFor(path);
  const file = await open(tmp, "wx").catch(async (err: unknown) => {
    if (errno(err) !== "ENOENT") throw err;
    // Creating folders only on a miss keeps the common write to a single open.
    await mkdir(dirname(path), { recursive: true });
    return open(tmp, "wx");
  });
  try {
    try {
      await file.writeFile(data, "utf8");
      await file.sync();
    } finally {
      await file.close();
    }
    await renameWithRetry(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dirname(path));
}

/** Windows refuses to replace a file another process has open for a moment (a reader). */
async function renameWithRetry(from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await rename(from, to);
    } catch (err) {
      const code = errno(err);
      if (attempt >= 20 || (code !== "EPERM" && code !== "EBUSY" && code !== "EACCES")) throw err;
      await new Promise((resolve) => setTimeout(resolve, 5 * (attempt + 1)));
    }
  }
}

/** Makes the rename itself survive power loss. Windows cannot open a folder for fsync; there
 * the rename is already durable enough (NTFS journals metadata), so it is skipped. */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === "win32") return;
  const handle = await open(dir, "r").catch(() => null);
  if (!handle) return;
  try {
    await handle.sync().catch(() => {});
  } finally {
    await handle.close();
  }
}

/**
 * Removes temp files left by writers that died mid-write, anywhere under `root`. A temp file
 * whose writer is alive and young is left alone: another process (a runner, while a dashboard
 * opens the same folder) may be about to rename it.
 */
export async function removeStaleTempFiles(root: string, now = Date.now()): Promise<number> {
  let removed = 0;
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(path);
        continue;
      }
      const match = TEMP_NAME.exec(entry.name);
      if (!match) continue;
      const writerAlive = isProcessAlive(Number(match[1]));
      const info = writerAlive ? await stat(path).catch(() => null) : null;
      if (writerAlive && info && now - info.mtimeMs < TEMP_MAX_AGE_MS) continue;
      await unlink(path).then(
        () => removed++,
        () => {},
      );
    }
  };
  await walk(root);
  return removed;
}
