/**
 * Mutual exclusion for the json driver's multi-file writes, across workers of one process (a
 * promise chain) and across runner processes (a lock created exclusively). The lock is a
 * symlink whose target names its holder (`pid host time`): creating it is one atomic system
 * call, and so is reading who holds it. Critical sections are a few file writes, so a lock
 * older than STALE_MS, or one whose holder on this host is gone, is abandoned and broken.
 * Breaking goes through a guard, so two processes that find the same abandoned lock cannot both
 * break it, and a guard left by a process killed mid-break is broken as soon as its pid is gone.
 *
 * The one thing it cannot do: a holder frozen (SIGSTOP) inside its critical section for longer
 * than STALE_MS loses the lock and, when thawed, finishes its writes anyway. SQLite has no such
 * window; docs/architecture.md says which guarantees each driver gives.
 */
import { closeSync, lstatSync, openSync, readFileSync, readlinkSync, symlinkSync, unlinkSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { errno } from "../errors.ts";
import { sleep } from "../time.ts";
import { pidAlive } from "./driver.ts";

const STALE_MS = 10_000;
const GIVE_UP_MS = 60_000;
/** Breaking a lock takes microseconds; a guard this old was left by a breaker that died. */
const GUARD_STALE_MS = 2_000;
const HOST = hostname();

export interface Mutex {
  /** Runs fn while holding the lock; the lock is released even when fn throws. */
  run<T>(fn: () => Promise<T> | T): Promise<T>;
}

export function createMutex(path: string): Mutex {
  let chain: Promise<unknown> = Promise.resolve();
  return {
    run<T>(fn: () => Promise<T> | T): Promise<T> {
      const next = chain.then(async () => {
        await acquire(path);
        try {
          return await fn();
        } finally {
          release(path);
        }
      });
      chain = next.catch(() => {});
      return next;
    },
  };
}

interface Holder {
  pid: number;
  host: string;
  at: number;
  raw: string;
}

function tryCreate(path: string): boolean {
  const body = `${process.pid} ${HOST} ${Date.now()}`;
  try {
    symlinkSync(body, path);
    return true;
  } catch (err) {
    if (errno(err) === "EEXIST") return false;
    // No symlinks here (Windows without the privilege, some network shares): a file created exclusively.
    if (errno(err) !== "EPERM" && errno(err) !== "ENOSYS" && errno(err) !== "ENOTSUP") throw err;
  }
  let fd: number;
  try {
    fd = openSync(path, "wx");
  } catch (err) {
    if (errno(err) === "EEXIST") return false;
    throw err;
  }
  try {
    writeSync(fd, body);
  } finally {
    closeSync(fd);
  }
  return true;
}

function release(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone (broken by another process after a very long stop)
  }
}

function readHolder(path: string): Holder | "missing" {
  let raw: string;
  try {
    raw = readlinkSync(path);
  } catch (err) {
    if (errno(err) === "ENOENT") return "missing";
    try {
      raw = readFileSync(path, "utf8");
    } catch (e) {
      if (errno(e) === "ENOENT") return "missing";
      raw = "";
    }
    // A lock file with nothing in it yet: its creator is between create and write, or died there.
    if (!raw) return { pid: 0, host: "", at: lstatSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0, raw: "" };
  }
  const [pid, host, at] = raw.split(" ");
  return { pid: Number(pid), host: host ?? "", at: Number(at), raw };
}

function abandoned(h: Holder, now: number, maxAgeMs: number): boolean {
  if (!h.raw) return now - h.at > 1_000;
  return !(h.at > 0) || now - h.at > maxAgeMs || (h.host === HOST && !pidAlive(h.pid));
}

async function acquire(path: string): Promise<void> {
  const started = Date.now();
  for (let round = 0; ; round++) {
    if (tryCreate(path)) return;
    const holder = readHolder(path);
    if (holder === "missing") continue;
    const now = Date.now();
    if (abandoned(holder, now, STALE_MS)) {
      breakLock(path, holder.raw);
      continue;
    }
    if (now - started > GIVE_UP_MS) {
      throw new Error(`the state lock ${path} has been held by pid ${holder.pid} on ${holder.host} for over ${GIVE_UP_MS / 1000}s; if no mozart process is using this job, delete it`);
    }
    await sleep(Math.min(20, 1 + round));
  }
}

/** Removes the lock only if it still names `seen`, under a guard so one breaker wins. */
function breakLock(path: string, seen: string): void {
  const guard = `${path}.break`;
  if (!tryCreate(guard)) {
    const g = readHolder(guard);
    if (g !== "missing" && abandoned(g, Date.now(), GUARD_STALE_MS)) release(guard);
    return;
  }
  try {
    const now = readHolder(path);
    if (now !== "missing" && now.raw === seen) release(path);
  } finally {
    release(guard);
  }
}
