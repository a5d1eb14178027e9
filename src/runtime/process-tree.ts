/**
 * Finding and stopping every process an attempt started, the ones that left its process group
 * included. Claude Code starts its Bash tools and hooks in sessions of their own (setsid), and on
 * SIGTERM it exits without stopping them, so a signal to the group misses exactly the processes
 * that matter. On Linux they are found through /proc in two ways:
 *
 * - the parent tree: children of the processes we know, read before anything is signalled (once
 *   a parent dies, its children belong to init and the tree is gone);
 * - a tag: runProcess puts a word into the child's MOZART_PROCESS_TAGS, every descendant inherits
 *   it (setsid does not clear the environment), and /proc/<pid>/environ still shows it after the
 *   parent died. That is how a later runner, or the final sweep at exit, finds what is left.
 *
 * A process forked between the first look and the first signal that calls setsid at once is
 * missed by the tree (its parent dies, it moves to init); only the tag finds it then, so give one.
 *
 * Elsewhere (macOS, the BSDs) only the process group is signalled; on Windows only the child
 * itself, as there are no process groups to signal. Zombies count as gone everywhere, because a
 * container's PID 1 may never reap them. Our own process and its ancestors are never signalled.
 */
import { Buffer } from "node:buffer";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { sleep } from "../time.ts";

export type StopSignal = NodeJS.Signals;
/** Signals to send in order, each followed by up to `graceMs` of waiting for everything to be gone. */
export type StopSequence = Array<[signal: StopSignal, graceMs: number]>;
export interface StopTarget {
  /** A process and, on Linux, every descendant it has now. */
  pid?: number;
  /** A process group. */
  pgid?: number;
  /** Every process whose MOZART_PROCESS_TAGS contains this word (Linux only). */
  tag?: string;
}

export const PROCESS_TAGS_ENV = "MOZART_PROCESS_TAGS";
/** After the final SIGKILL, how long the kernel gets to take the processes down. */
export const KILL_SETTLE_MS = 1000;

const IS_WINDOWS = process.platform === "win32";
const HAS_PROC = process.platform === "linux" && existsSync("/proc/self/stat");
const TAGS_KEY = Buffer.from(`${PROCESS_TAGS_ENV}=`);

/** TERM, then KILL after `graceMs`: for programs that clean up on SIGTERM. */
export function defaultStopSequence(graceMs = 5000): StopSequence {
  return [
    ["SIGTERM", graceMs],
    ["SIGKILL", 0],
  ];
}

/** A tag is one word: it is stored space-separated in the environment. */
export function isValidTag(tag: string): boolean {
  return /^[\x21-\x7e]+$/.test(tag);
}

interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
  /** Start time in clock ticks since boot: tells a reused pid from the process we saw. */
  start: string;
}

function readStat(pid: number): ProcInfo | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may itself contain spaces and parentheses.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { pid, state: f[0] ?? "", ppid: Number(f[1]), pgid: Number(f[2]), start: f[19] ?? "" };
}

const living = (p: ProcInfo | undefined): p is ProcInfo => p !== undefined && p.state !== "Z" && p.state !== "X";

function scanProc(): ProcInfo[] {
  const out: ProcInfo[] = [];
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const info = readStat(Number(name));
    if (info) out.push(info);
  }
  return out;
}

function hasTag(pid: number, tag: string): boolean {
  let env: Buffer;
  try {
    env = readFileSync(`/proc/${pid}/environ`);
  } catch {
    return false; // gone, or another user's process
  }
  for (let at = env.indexOf(TAGS_KEY); at !== -1; at = env.indexOf(TAGS_KEY, at + 1)) {
    if (at !== 0 && env[at - 1] !== 0) continue;
    const end = env.indexOf(0, at);
    return env.toString("utf8", at + TAGS_KEY.length, end === -1 ? env.length : end).split(" ").includes(tag);
  }
  return false;
}

/** Our own process, its ancestors and its group: never signalled, whatever a tag or a tree says. */
function ourselves(): { pids: Set<number>; pgid?: number } {
  const pids = new Set([process.pid, process.ppid, 1]);
  if (!HAS_PROC) return { pids };
  const self = readStat(process.pid);
  for (let p = self?.ppid; p && p > 1 && !pids.has(p); p = readStat(p)?.ppid) pids.add(p);
  return { pids, ...(self ? { pgid: self.pgid } : {}) };
}

function send(pid: number, sig: StopSignal | 0): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // it exists, it just isn't ours
  }
}

/** Whether the group has a member that is not a zombie. kill(-pgid, 0) alone counts zombies too. */
export function groupAlive(pgid: number): boolean {
  if (IS_WINDOWS) return processAlive(pgid);
  if (!send(-pgid, 0)) return false;
  if (!HAS_PROC) return true;
  return scanProc().some((p) => p.pgid === pgid && living(p));
}

function processAlive(pid: number, start?: string): boolean {
  if (HAS_PROC) {
    const p = readStat(pid);
    return living(p) && (start === undefined || p.start === start);
  }
  return send(pid, 0);
}

/** Pids of live processes (not zombies) carrying `tag` in MOZART_PROCESS_TAGS; [] off Linux. */
export function findTagged(tag: string): number[] {
  if (!HAS_PROC || !isValidTag(tag)) return [];
  const guard = ourselves().pids;
  return scanProc()
    .filter((p) => living(p) && !guard.has(p.pid) && hasTag(p.pid, tag))
    .map((p) => p.pid);
}

/**
 * One stop in progress: the processes it knows (with their start times), found again before
 * every signal, so descendants started in the meantime and orphans that carry the tag are added.
 */
class Stopper {
  private readonly known = new Map<number, string | undefined>();
  private readonly guard = ourselves();
  readonly signalled = new Set<number>();

  constructor(private readonly target: StopTarget) {
    const { pid } = target;
    if (!pid || pid <= 1 || this.guard.pids.has(pid)) return;
    if (!HAS_PROC) this.known.set(pid, undefined);
    else {
      // A pid that is already gone may be reused later: it is no root of anything.
      const p = readStat(pid);
      if (living(p)) this.known.set(pid, p.start);
    }
  }

  private get pgid(): number | undefined {
    const g = this.target.pgid;
    return g && g > 1 && g !== this.guard.pgid && !this.guard.pids.has(g) ? g : undefined;
  }

  /** Adds what /proc shows now; returns whether anything of the target is alive. */
  discover(): boolean {
    if (!HAS_PROC) return this.anyKnownAlive() || (this.pgid !== undefined && groupAlive(this.pgid));
    const procs = scanProc();
    const byPid = new Map(procs.map((p) => [p.pid, p]));
    const children = new Map<number, ProcInfo[]>();
    for (const p of procs) {
      const list = children.get(p.ppid);
      if (list) list.push(p);
      else children.set(p.ppid, [p]);
    }
    const add = (p: ProcInfo) => {
      if (!this.guard.pids.has(p.pid) && living(p)) this.known.set(p.pid, p.start);
    };
    // Only live processes we saw before (same start time) are roots of the tree.
    const queue = [...this.known].filter(([pid, start]) => {
      const p = byPid.get(pid);
      return living(p) && (start === undefined || p.start === start);
    }).map(([pid]) => pid);
    for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
      for (const child of children.get(pid) ?? []) {
        if (this.known.has(child.pid) && this.known.get(child.pid) === child.start) continue;
        add(child);
        queue.push(child.pid);
      }
    }
    const { pgid } = this;
    const tag = this.target.tag;
    for (const p of procs) {
      if (!living(p) || this.known.get(p.pid) === p.start) continue;
      if ((pgid !== undefined && p.pgid === pgid) || (tag && hasTag(p.pid, tag))) add(p);
    }
    return this.anyKnownAlive();
  }

  private anyKnownAlive(): boolean {
    for (const [pid, start] of this.known) if (processAlive(pid, start)) return true;
    return false;
  }

  /** One signal per process: a member of the group gets it through the group only (twice could mean "force quit"). */
  signal(sig: StopSignal): void {
    const { pgid } = this;
    // Who is in the group is read before the group is signalled: a member that dies of it at
    // once was still signalled, and is reported.
    const members: number[] = [];
    const others: number[] = [];
    for (const [pid, start] of this.known) {
      if (HAS_PROC) {
        const p = readStat(pid);
        if (!living(p) || (start !== undefined && p.start !== start)) continue;
        (p.pgid === pgid ? members : others).push(pid);
      } else (pid === pgid ? members : others).push(pid);
    }
    if (pgid !== undefined) send(IS_WINDOWS ? pgid : -pgid, sig);
    for (const pid of members) this.signalled.add(pid);
    for (const pid of others) if (send(pid, sig)) this.signalled.add(pid);
  }

  /** Everything known is dead and the group has no live member. */
  gone(): boolean {
    if (this.anyKnownAlive()) return false;
    const { pgid } = this;
    if (pgid === undefined) return true;
    if (IS_WINDOWS) return !processAlive(pgid);
    if (!send(-pgid, 0)) return true;
    // Only zombies, or a member that joined after the last look.
    return !this.discover();
  }

  async waitGone(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    let pause = 5;
    for (;;) {
      if (this.gone()) return true;
      const left = end - Date.now();
      if (left <= 0) return false;
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, 100);
    }
  }
}

/** The sequence as given, ending with SIGKILL whatever the caller wrote. */
function ensureKill(sequence: StopSequence): StopSequence {
  const last = sequence[sequence.length - 1];
  return last?.[0] === "SIGKILL" ? sequence : [...sequence, ["SIGKILL", 0]];
}

/**
 * Runs `sequence` against everything `target` names: each signal goes to the group and to every
 * process found, then up to its grace period passes until all of it is gone. Resolves with the
 * pids it signalled once nothing is left (or KILL_SETTLE_MS after the final SIGKILL).
 *
 * For a runner that takes over a dead runner's job, and for the sweep at exit, pass the tag: a
 * recorded pid or pgid may by now belong to an unrelated process. Without /proc our own process
 * group is unknown, so it is not protected there: never pass it.
 */
export async function stopTree(target: StopTarget, sequence: StopSequence): Promise<number[]> {
  const stopper = new Stopper(target);
  const steps = ensureKill(sequence);
  for (let i = 0; i < steps.length; i++) {
    const [sig, grace] = steps[i] as [StopSignal, number];
    // The first look happens before the first signal: afterwards the parent tree may be lost.
    // Later looks also find what was forked while the signal was on its way (by its tag).
    if (!stopper.discover()) return [...stopper.signalled];
    stopper.signal(sig);
    await stopper.waitGone(i === steps.length - 1 ? Math.max(grace, KILL_SETTLE_MS) : grace);
  }
  for (let round = 0; round < 3 && stopper.discover(); round++) {
    stopper.signal("SIGKILL");
    await stopper.waitGone(KILL_SETTLE_MS);
  }
  return [...stopper.signalled];
}
