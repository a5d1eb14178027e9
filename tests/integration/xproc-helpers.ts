/**
 * For tests where several mozart processes work on one job at once (a runner, a follower, a
 * second runner, `pause`/`cancel`): a sandbox whose every process carries one unique tag in
 * MOZART_PROCESS_TAGS, so a test can ask "is anything of mine still alive?" through /proc (a
 * setsid'ed grandchild included), and afterEach stops all of it, frozen runners too, even when
 * the test failed half-way.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { findTagged, stopTree } from "../../src/runtime/process-tree.ts";
import type { StoredEvent } from "../../src/state/events.ts";
import type { CliResult } from "../helpers.ts";
import { pidAlive, sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";

export interface Started {
  child: ReturnType<Sandbox["start"]>["child"];
  done: Promise<CliResult>;
  output(): { stdout: string; stderr: string };
  /** Date.now() when the process ended (undefined while it runs). */
  endedAt(): number | undefined;
}

export interface XSandbox extends Omit<Sandbox, "start" | "cleanup"> {
  /** In MOZART_PROCESS_TAGS of every process this sandbox starts, and so of all their descendants. */
  tag: string;
  start(args: string[], extraEnv?: Record<string, string>): Started;
  /** Runs a command to its end without blocking the event loop (followers and runners keep being read); SIGKILLed after timeoutMs. */
  exec(args: string[], extraEnv?: Record<string, string>, timeoutMs?: number): Promise<CliResult & { pid: number }>;
  /** The job's event log as `mozart logs <job> --json` prints it. */
  events(job: string, extra?: string[]): Promise<StoredEvent[]>;
  /** Live processes (zombies excluded) that carry this sandbox's tag. */
  alive(): number[];
  /** Pids written to a file (one per line), relative to the sandbox folder; [] when it does not exist. */
  pids(rel: string): number[];
  cleanup(): Promise<void>;
}

export function xsandbox(kind: Kind): XSandbox {
  const box = sandbox(kind);
  const tag = `xproc-test-${process.pid}-${randomBytes(4).toString("hex")}`;
  const started: Started[] = [];
  const tagged = (extra: Record<string, string> = {}) => ({ MOZART_PROCESS_TAGS: tag, ...extra });

  const start = (args: string[], extraEnv?: Record<string, string>): Started => {
    const p = box.start(args, tagged(extraEnv));
    let ended: number | undefined;
    const done = p.done.then((r) => {
      ended = Date.now();
      return r;
    });
    const s = { child: p.child, done, output: p.output, endedAt: () => ended };
    started.push(s);
    return s;
  };

  return {
    ...box,
    tag,
    start,
    run: (args, extraEnv) => box.run(args, tagged(extraEnv)),
    async exec(args, extraEnv, timeoutMs = 60_000) {
      const p = start(args, extraEnv);
      const timer = setTimeout(() => p.child.kill("SIGKILL"), timeoutMs);
      try {
        return { ...(await p.done), pid: p.child.pid ?? 0 };
      } finally {
        clearTimeout(timer);
      }
    },
    async events(job, extra = []) {
      const r = await this.exec(["logs", job, "--json", ...extra]);
      if (r.code !== 0) throw new Error(`mozart logs failed (${r.code}): ${r.stderr}`);
      return parseEvents(r.stdout);
    },
    alive: () => findTagged(tag),
    pids(rel) {
      const file = join(box.dir, rel);
      if (!existsSync(file)) return [];
      return readFileSync(file, "utf8")
        .split("\n")
        .map((l) => Number(l.trim()))
        .filter((n) => Number.isInteger(n) && n > 0);
    },
    async cleanup() {
      // A runner left frozen by a failed test must be thawed to die; then everything tagged goes.
      for (const s of started) {
        if (s.endedAt() !== undefined) continue;
        try {
          s.child.kill("SIGCONT");
          s.child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
      await Promise.all(started.map((s) => Promise.race([s.done, Bun.sleep(5000)])));
      await stopTree({ tag }, [["SIGKILL", 0]]).catch(() => []);
      box.cleanup();
    },
  };
}

/** One JSON event per line, as `logs --json` prints them. */
export function parseEvents(text: string): StoredEvent[] {
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as StoredEvent);
}

/** Polls until `check` returns a truthy value; fails naming `what` after timeoutMs. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 30_000, everyMs = 50): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

export { pidAlive };
