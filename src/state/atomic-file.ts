/**
 * Whole-file writes that a reader or a crash never sees half done: write a temp file next to
 * the target, rename it over the target. `durable` adds an fsync of the file and of its folder,
 * so the write also survives a power cut; a kill -9 never needs it (the page cache outlives the
 * process). Shared by the json driver and the registry.
 */
import { randomBytes } from "node:crypto";
import { closeSync, openSync, unlinkSync, writeSync } from "node:fs";
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { errno } from "../errors.ts";
import { pidAlive } from "./driver.ts";

/** `.<name>.<pid>.<rand>.tmp`: the leading dot hides it from listings, the pid lets a later
 * sweep tell an orphan (writer dead) from a write still in flight in another process. */
const TEMP_NAME = /^\..*\.(\d+)\.[0-9a-f]+\.tmp$/;
/** No single write takes this long, so an older temp file is an orphan whoever wrote it. */
const TEMP_MAX_AGE_MS = 60_000;

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
}

export function isTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: { durable?: boolean; mkdir?: boolean } = {}): Promise<void> {
  const tmp = tempPathFor(path);
  const file = await open(tmp, "wx").catch(async (err: unknown) => {
    // Only where asked: the json driver must never recreate a state folder that was deleted.
    if (!opts.mkdir || errno(err) !== "ENOENT") throw err;
    await mkdir(dirname(path), { recursive: true });
    return open(tmp, "wx");
  });
  try {
    try {
      await file.writeFile(data);
      if (opts.durable) await file.sync();
    } finally {
      await file.close();
    }
    await renameWithRetry(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  if (opts.durable) await syncDir(dirname(path));
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

/** Makes a rename itself survive power loss. Windows cannot open a folder for fsync; there
 * the rename is already durable enough (NTFS journals metadata), so it is skipped. */
export async function syncDir(dir: string): Promise<void> {
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
 * Removes temp files left by writers that died mid-write in one folder. A temp file whose
 * writer is alive and young is left alone: another process may be about to rename it.
 */
export async function removeStaleTempFiles(dir: string, now = Date.now()): Promise<number> {
  let removed = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const match = TEMP_NAME.exec(entry.name);
    if (!match || entry.isDirectory()) continue;
    const path = join(dir, entry.name);
    const writerAlive = pidAlive(Number(match[1]));
    const info = writerAlive ? await stat(path).catch(() => null) : null;
    if (writerAlive && info && now - info.mtimeMs < TEMP_MAX_AGE_MS) continue;
    await unlink(path).then(
      () => removed++,
      () => {},
    );
  }
  return removed;
}

/** A temp file with its content, written synchronously; the caller renames it into place. */
export function writeTemp(tmp: string, data: string | Uint8Array): void {
  const fd = openSync(tmp, "wx");
  try {
    if (typeof data === "string") writeSync(fd, data);
    else writeSync(fd, data);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
}
