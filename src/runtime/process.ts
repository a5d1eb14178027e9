/**
 * Runs one child process the way every backend and validation needs it: in its own process
 * group and session (so the terminal's Ctrl+C reaches only Mozart, and a stop reaches the whole
 * tree), with the input on stdin (a 1 MB prompt would not fit in argv), output streamed as it
 * arrives and kept only in bounded form (a 50 MB log must not live in memory).
 *
 * Stopping (timeout, or the AbortSignal) runs a stop sequence against the group and every
 * descendant found (process-tree.ts), and nothing of the group outlives the call: members left
 * after the child exited are stopped before the result is returned.
 *
 * Under Bun the child is started with Bun.spawn (a fraction of the CPU per spawn, and the hot
 * path starts one process per batch); on Deno and Node, and with `portable`, with tinyexec over
 * node:child_process. Both give the same result. It never rejects for an expected failure: a
 * missing executable or working directory comes back as `spawn_error`.
 */
import type { ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import { x } from "tinyexec";
import { defaultStopSequence, groupAlive, isValidTag, KILL_SETTLE_MS, PROCESS_TAGS_ENV, stopTree, type StopSequence } from "./process-tree.ts";

export { defaultStopSequence, findTagged, PROCESS_TAGS_ENV, stopTree, type StopSequence, type StopSignal, type StopTarget } from "./process-tree.ts";

export type OutputStream = "stdout" | "stderr";

export interface RunProcessOptions {
  /** Executable and arguments. Give either `argv` or `shell`. */
  argv?: string[];
  /** A command line run with `/bin/sh -c`. */
  shell?: string;
  cwd: string;
  /** The child's complete environment (variables not listed here are removed, not inherited). */
  env: Record<string, string | undefined>;
  /** Written to the child's stdin, which is then closed. Default: empty (no input). */
  stdin?: string;
  /** Wall-clock limit; 0 or undefined means none. */
  timeoutMs?: number;
  /** Aborting stops the process tree and marks the result `interrupted`. */
  signal?: AbortSignal;
  onOutput?: (stream: OutputStream, chunk: string) => void;
  /** The grace period of the default stop sequence (SIGTERM, then SIGKILL). Default 5000 ms. */
  killGraceMs?: number;
  /**
   * How a stop proceeds: each signal goes to the group and every descendant found, then up to
   * its grace period passes until all of it is gone. It always ends with SIGKILL (appended if
   * missing). Default: defaultStopSequence(killGraceMs).
   */
  stopSequence?: StopSequence;
  /**
   * One word added to MOZART_PROCESS_TAGS in the child's environment (after the value in `env`,
   * so nested runs keep the whole lineage). Every descendant inherits it, even after setsid, so
   * a stop finds them on Linux after their parents died, and so does stopTree({ tag }).
   */
  tag?: string;
  /** Called right after the process started (before any output), e.g. to record the pid. Must not throw. */
  onSpawn?: (p: { pid: number; pgid: number }) => void;
  /** Spawn through node:child_process even under Bun: the path Deno and Node take. */
  portable?: boolean;
  /** Characters kept per stream: the first `head` and the last `tail`. */
  maxCapture?: { head: number; tail: number };
}

export type SpawnErrorKind = "executable_not_found" | "not_executable" | "working_directory_missing" | "spawn_failed";

export interface ProcessResult {
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  interrupted: boolean;
  duration_ms: number;
  stdout: string;
  stderr: string;
  /** Characters dropped from the middle of each stream by the capture bound. */
  omitted: { stdout: number; stderr: number };
  /** What was executed. */
  argv: string[];
  /** The child's pid and process group (the same number: it leads its own group); absent when it never started. */
  pid?: number;
  pgid?: number;
  spawn_error?: { kind: SpawnErrorKind; message: string; code?: string };
}

export const DEFAULT_CAPTURE = { head: 64 * 1024, tail: 256 * 1024 };
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Keeps the start and the end of a stream, which is where the prompt echo and the verdict are. */
export class BoundedText {
  private head = "";
  private tail: string[] = [];
  private tailLength = 0;
  omitted = 0;
  constructor(private readonly limits: { head: number; tail: number } = DEFAULT_CAPTURE) {}

  push(chunk: string): void {
    let rest = chunk;
    if (this.head.length < this.limits.head) {
      const room = this.limits.head - this.head.length;
      this.head += rest.slice(0, room);
      rest = rest.slice(room);
    }
    if (!rest) return;
    this.tail.push(rest);
    this.tailLength += rest.length;
    while (this.tailLength > this.limits.tail) {
      const first = this.tail[0] as string;
      const excess = this.tailLength - this.limits.tail;
      if (first.length <= excess) {
        this.tail.shift();
        this.tailLength -= first.length;
        this.omitted += first.length;
      } else {
        this.tail[0] = first.slice(excess);
        this.tailLength -= excess;
        this.omitted += excess;
      }
    }
  }

  text(): string {
    const tail = this.tail.join("");
    if (this.omitted === 0) return this.head + tail;
    return `${this.head}\n[mozart: ${this.omitted} characters omitted here; the attempt's output file has all of it (its path: mozart status <job> --batch N)]\n${tail}`;
  }
}

/** After the child is gone, how long output may keep arriving from something still holding the pipes. */
const PIPE_DRAIN_MS = 1000;
const IS_BUN = typeof Bun !== "undefined";

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The promise's value, or undefined after `ms`; the timer never outlives the wait. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((r) => (timer = setTimeout(r, ms, undefined)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface SpawnRequest {
  argv: string[];
  cwd: string;
  /** Complete: no undefined values, nothing else inherited. */
  env: Record<string, string>;
  stdin: string;
}
type Sink = (stream: OutputStream, chunk: string) => void;
interface Exit {
  code: number | null;
  signal: string | null;
}
/** A started child, the same shape from either spawner. */
interface Child {
  pid: number;
  /** Settles when the child has exited and been reaped. */
  exited: Promise<Exit>;
  /** Settles when both output streams have ended. */
  drained: Promise<void>;
  /** Stop reading: whatever still holds the pipes is not waited for. */
  release(): void;
}

function childEnv(env: Record<string, string | undefined>, tag: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  if (tag) out[PROCESS_TAGS_ENV] = out[PROCESS_TAGS_ENV] ? `${out[PROCESS_TAGS_ENV]} ${tag}` : tag;
  return out;
}

async function spawnWithBun(req: SpawnRequest, sink: Sink, started: (pid: number) => void): Promise<Child> {
  const proc = Bun.spawn({
    cmd: req.argv,
    cwd: req.cwd,
    env: req.env,
    stdin: req.stdin ? Buffer.from(req.stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
    detached: true,
  });
  started(proc.pid);
  const readers = [proc.stdout.getReader(), proc.stderr.getReader()] as const;
  const pump = async (name: OutputStream, reader: (typeof readers)[number]) => {
    const decoder = new TextDecoder();
    const deliver = (text: string) => {
      if (!text) return;
      try {
        sink(name, text);
      } catch (e) {
        // As from a 'data' listener on the portable path: the caller's error surfaces, reading goes on.
        queueMicrotask(() => {
          throw e;
        });
      }
    };
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch {
        break; // cancelled by release()
      }
      if (chunk.done) break;
      deliver(decoder.decode(chunk.value, { stream: true }));
    }
    deliver(decoder.decode());
  };
  return {
    pid: proc.pid,
    exited: proc.exited.then(() => ({ code: proc.exitCode, signal: proc.signalCode === null ? null : String(proc.signalCode) })),
    drained: Promise.all([pump("stdout", readers[0]), pump("stderr", readers[1])]).then(() => {}),
    release() {
      for (const r of readers) r.cancel().catch(() => {});
    },
  };
}

/** Every variable of our own environment that the caller left out is set to undefined, which removes it in the child. */
function exactEnv(env: Record<string, string>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const key of Object.keys(process.env)) out[key] = undefined;
  return Object.assign(out, env);
}

async function spawnWithNode(req: SpawnRequest, sink: Sink, started: (pid: number) => void): Promise<Child> {
  const executable = req.argv[0] as string;
  const proc: ChildProcess | undefined = x(executable, req.argv.slice(1), {
    stdin: req.stdin,
    nodePath: false, // tinyexec would otherwise prepend node_modules/.bin folders to PATH
    throwOnError: false,
    nodeOptions: { cwd: req.cwd, env: exactEnv(req.env), detached: true, stdio: ["pipe", "pipe", "pipe"] },
  }).process;
  if (!proc) throw new Error("the process did not start");
  // A failed spawn has no pid, and reports why on the next tick.
  if (proc.pid === undefined) return new Promise<never>((_, reject) => proc.once("error", reject));
  const pid = proc.pid;
  started(pid);
  proc.on("error", () => {}); // e.g. a failed kill(); the exit event still comes
  proc.stdin?.on("error", () => {}); // EPIPE when the child exits without reading its input
  const streams = [
    ["stdout", proc.stdout],
    ["stderr", proc.stderr],
  ] as const;
  const ended = streams.map(
    ([name, stream]) =>
      new Promise<void>((resolve) => {
        if (!stream) return resolve();
        stream.setEncoding("utf8");
        stream.on("data", (chunk: string) => sink(name, chunk));
        stream.on("error", () => {});
        stream.on("close", () => resolve());
      }),
  );
  return {
    pid,
    exited: new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal }))),
    drained: Promise.all(ended).then(() => {}),
    release() {
      proc.stdout?.destroy();
      proc.stderr?.destroy();
    },
  };
}

function spawnErrorOf(e: unknown, executable: string): NonNullable<ProcessResult["spawn_error"]> {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = e instanceof Error ? e.message : String(e);
  if (code === "ENOENT") return { kind: "executable_not_found", code, message: `executable not found: ${executable}` };
  if (code === "EACCES") return { kind: "not_executable", code, message: `not executable (permission denied): ${executable}` };
  return { kind: "spawn_failed", ...(code ? { code } : {}), message: `could not start ${executable}: ${reason}` };
}

export function runProcess(opts: RunProcessOptions): Promise<ProcessResult> {
  const argv = opts.shell !== undefined ? ["/bin/sh", "-c", opts.shell] : (opts.argv ?? []);
  const started = Date.now();
  if (opts.tag !== undefined && !isValidTag(opts.tag)) throw new TypeError(`a process tag is one word of printable ASCII: ${JSON.stringify(opts.tag)}`);

  const early = (fields: Partial<ProcessResult>): Promise<ProcessResult> =>
    Promise.resolve({
      exit_code: null,
      signal: null,
      timed_out: false,
      interrupted: false,
      duration_ms: Date.now() - started,
      stdout: "",
      stderr: "",
      omitted: { stdout: 0, stderr: 0 },
      argv,
      ...fields,
    });

  const executable = argv[0];
  if (!executable) return early({ spawn_error: { kind: "spawn_failed", message: "no command to run (empty argv)" } });
  // Checked here because the OS reports a missing cwd as ENOENT, indistinguishable from a missing executable.
  if (!isDirectory(opts.cwd)) {
    return early({
      spawn_error: { kind: "working_directory_missing", message: `working directory does not exist: ${opts.cwd}` },
    });
  }
  if (opts.signal?.aborted) return early({ interrupted: true });
  return supervise(opts, argv, started);
}

async function supervise(opts: RunProcessOptions, argv: string[], started: number): Promise<ProcessResult> {
  const executable = argv[0] as string;
  const sequence = opts.stopSequence ?? defaultStopSequence(opts.killGraceMs ?? 5000);
  const out = new BoundedText(opts.maxCapture);
  const err = new BoundedText(opts.maxCapture);
  const sink: Sink = (name, chunk) => {
    (name === "stdout" ? out : err).push(chunk);
    opts.onOutput?.(name, chunk);
  };
  const result = (fields: Partial<ProcessResult>): ProcessResult => ({
    exit_code: null,
    signal: null,
    timed_out: false,
    interrupted: false,
    duration_ms: Date.now() - started,
    stdout: out.text(),
    stderr: err.text(),
    omitted: { stdout: out.omitted, stderr: err.omitted },
    argv,
    ...fields,
  });

  const req: SpawnRequest = { argv, cwd: opts.cwd, env: childEnv(opts.env, opts.tag), stdin: opts.stdin ?? "" };
  // detached: the child leads a new session and process group of its own, so pgid = pid.
  // Reported before output is read, so the caller has the pid before the first chunk.
  const reportSpawn = (pid: number) => {
    try {
      opts.onSpawn?.({ pid, pgid: pid });
    } catch {
      // An observer's mistake must not leave the child unsupervised.
    }
  };
  let child: Child;
  try {
    child = await (IS_BUN && !opts.portable ? spawnWithBun : spawnWithNode)(req, sink, reportSpawn);
  } catch (e) {
    return result({ spawn_error: spawnErrorOf(e, executable) });
  }
  const { pid } = child;
  const pgid = pid;

  let timedOut = false;
  let interrupted = false;
  let exit: Exit | undefined;
  let stopping: Promise<void> | undefined;
  let stopDone!: (value: undefined) => void;
  const stopped = new Promise<undefined>((r) => (stopDone = r));
  const stop = () => {
    stopping ??= stopTree({ pid, pgid, ...(opts.tag ? { tag: opts.tag } : {}) }, sequence).then(() => stopDone(undefined));
  };
  const onAbort = () => {
    if (exit) return;
    interrupted = true;
    stop();
  };
  // setTimeout fires at once for delays above 2^31-1 ms (24.8 days); clamp instead.
  const timer =
    opts.timeoutMs && opts.timeoutMs > 0
      ? setTimeout(() => {
          if (exit) return;
          timedOut = true;
          stop();
        }, Math.min(opts.timeoutMs, MAX_TIMER_MS))
      : undefined;
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();

  exit = await Promise.race([child.exited, stopped]);
  // The stop sequence ended first: the child is killed and its exit a moment away (unless stuck in the kernel).
  exit ??= (await within(child.exited, KILL_SETTLE_MS)) ?? { code: null, signal: null };
  clearTimeout(timer);
  opts.signal?.removeEventListener("abort", onAbort);

  if (stopping) await stopping;
  // Members left in the group are orphans now: stop them before returning, or they outlive us.
  // In the normal case this is one kill(-pgid, 0) that fails with ESRCH.
  else if (groupAlive(pgid)) await stopTree({ pgid, ...(opts.tag ? { tag: opts.tag } : {}) }, sequence);

  await within(child.drained, PIPE_DRAIN_MS);
  child.release();
  return result({ exit_code: exit.code, signal: exit.signal, timed_out: timedOut, interrupted, pid, pgid });
}

