/**
 * Runs one child process the way every backend and validation needs it: in its own process
 * group (so the terminal's Ctrl+C reaches only Mozart, and a timeout can kill the whole tree),
 * with the input on stdin (a 1 MB prompt would not fit in argv), output streamed as it arrives
 * and kept only in bounded form (a 50 MB log must not live in memory).
 *
 * Only node: APIs and tinyexec are used, so this runs unchanged on Bun, in compiled binaries,
 * on Deno and on Node. It never rejects for an expected failure: a missing executable or
 * working directory comes back as `spawn_error`.
 */
import type { ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import { x } from "tinyexec";

export type OutputStream = "stdout" | "stderr";

export interface RunProcessOptions {
  /** Executable and arguments. Give either `argv` or `shell`. */
  argv?: string[];
  /** A command line run with `/bin/sh -c`. */
  shell?: string;
  cwd: string;
  /** The child's complete environment (variables not listed here are removed, not inherited). */
  env: Record<string, string | undefined>;
  /** Written to the child's stdin, which is then closed. Default: empty (stdin closed at once). */
  stdin?: string;
  /** Wall-clock limit; 0 or undefined means none. */
  timeoutMs?: number;
  /** Aborting kills the process group and marks the result `interrupted`. */
  signal?: AbortSignal;
  onOutput?: (stream: OutputStream, chunk: string) => void;
  /** Time between SIGTERM and SIGKILL, and how long leftover group members may linger after the child exits. */
  killGraceMs?: number;
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
    return `${this.head}\n[mozart: ${this.omitted} characters omitted here; the attempt log has the full output]\n${tail}`;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Every variable of our own environment that the caller left out is set to undefined, which removes it in the child. */
function exactEnv(env: Record<string, string | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const key of Object.keys(process.env)) out[key] = undefined;
  return Object.assign(out, env);
}

function signalGroup(pid: number, sig: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, sig);
    return true;
  } catch {
    return false; // ESRCH: nobody left in the group
  }
}

export function runProcess(opts: RunProcessOptions): Promise<ProcessResult> {
  const argv = opts.shell !== undefined ? ["/bin/sh", "-c", opts.shell] : (opts.argv ?? []);
  const graceMs = opts.killGraceMs ?? 5000;
  const started = Date.now();
  const out = new BoundedText(opts.maxCapture);
  const err = new BoundedText(opts.maxCapture);

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

  return new Promise<ProcessResult>((resolve) => {
    let exitCode: number | null = null;
    let exitSignal: string | null = null;
    let timedOut = false;
    let interrupted = false;
    let spawnError: ProcessResult["spawn_error"];
    let settled = false;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const later = (ms: number, fn: () => void) => timers.push(setTimeout(fn, ms));

    let proc: ChildProcess | undefined;
    try {
      proc = x(executable, argv.slice(1), {
        stdin: opts.stdin ?? "",
        nodePath: false, // tinyexec would otherwise prepend node_modules/.bin folders to PATH
        throwOnError: false,
        nodeOptions: { cwd: opts.cwd, env: exactEnv(opts.env), detached: true, stdio: ["pipe", "pipe", "pipe"] },
      }).process;
    } catch (e) {
      onSpawnError(e);
      return;
    }

    function onSpawnError(e: unknown): void {
      const code = (e as NodeJS.ErrnoException | undefined)?.code;
      const reason = e instanceof Error ? e.message : String(e);
      if (code === "ENOENT") spawnError = { kind: "executable_not_found", code, message: `executable not found: ${executable}` };
      else if (code === "EACCES") spawnError = { kind: "not_executable", code, message: `not executable (permission denied): ${executable}` };
      else spawnError = { kind: "spawn_failed", code, message: `could not start ${executable}: ${reason}` };
      finish();
    }

    function finish(): void {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      opts.signal?.removeEventListener("abort", onAbort);
      // Anything still in the group after the child is gone is an orphan; don't leave it running.
      const pid = proc?.pid;
      if (pid && signalGroup(pid, "SIGTERM")) setTimeout(() => signalGroup(pid, "SIGKILL"), graceMs).unref?.();
      proc?.stdout?.destroy();
      proc?.stderr?.destroy();
      resolve({
        exit_code: exitCode,
        signal: exitSignal,
        timed_out: timedOut,
        interrupted,
        duration_ms: Date.now() - started,
        stdout: out.text(),
        stderr: err.text(),
        omitted: { stdout: out.omitted, stderr: err.omitted },
        argv,
        ...(spawnError ? { spawn_error: spawnError } : {}),
      });
    }

    if (!proc) return onSpawnError(new Error("the process did not start"));
    let killing = false;
    function killGroup(): void {
      const pid = proc?.pid;
      if (killing || !pid) return;
      killing = true;
      signalGroup(pid, "SIGTERM");
      later(graceMs, () => {
        signalGroup(pid, "SIGKILL");
        // A process outside the group (it called setsid) may still hold our pipes; stop waiting for it.
        later(1000, finish);
      });
    }
    function onAbort(): void {
      interrupted = true;
      killGroup();
    }

    proc.on("error", onSpawnError);
    proc.stdin?.on("error", () => {}); // EPIPE when the child exits without reading its input
    for (const [name, stream, sink] of [
      ["stdout", proc.stdout, out],
      ["stderr", proc.stderr, err],
    ] as const) {
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => {
        sink.push(chunk);
        opts.onOutput?.(name, chunk);
      });
      stream?.on("error", () => {});
    }
    proc.on("exit", (code, sig) => {
      exitCode = code;
      exitSignal = sig;
      // Grandchildren that keep our pipes open would delay 'close' forever; give them the grace period.
      later(graceMs, killGroup);
    });
    proc.on("close", finish);

    if (opts.timeoutMs && opts.timeoutMs > 0) {
      // setTimeout fires at once for delays above 2^31-1 ms (24.8 days); clamp instead.
      later(Math.min(opts.timeoutMs, MAX_TIMER_MS), () => {
        timedOut = true;
        killGroup();
      });
    }
    opts.signal?.addEventListener("abort", onAbort, { once: true });
  });
}
