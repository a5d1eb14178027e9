/**
 * The `command` backend: any shell command does the work. It runs with `/bin/sh -c`, gets the
 * prompt on stdin and the batch in MOZART_* variables.
 *
 * Placeholders: the runner expands `{batch_num}` etc. in `backend.command` and passes the final
 * text as `request.command`; this backend runs that text verbatim. `backend.command` is used
 * only when a caller leaves `request.command` unset (then nothing is expanded).
 */
import type { CommandConfig } from "../config/schema.ts";
import { defaultStopSequence, runProcess, type ProcessResult } from "../runtime/process.ts";
import type { Backend, BackendContext, ExecutionRequest, ExecutionResult } from "./types.ts";

export function mozartEnv(req: ExecutionRequest): Record<string, string> {
  return {
    MOZART_BATCH_NUM: String(req.batch.batch_num),
    MOZART_TOTAL_BATCHES: String(req.batch.total_batches),
    MOZART_START_ITEM: String(req.batch.start_item),
    MOZART_END_ITEM: String(req.batch.end_item),
    MOZART_ATTEMPT: String(req.attempt),
    MOZART_JOB_NAME: req.job_name,
    MOZART_WORKSPACE: req.workspace,
    ...(req.worktree ? { MOZART_WORKTREE: req.worktree } : {}),
  };
}

/** backend.env for display: values of variables that look like secrets are hidden. */
export function displayEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) out[k] = /KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL/i.test(k) ? "***" : v;
  return out;
}

/** A result for a problem found before anything ran. */
export function setupFailure(req: ExecutionRequest, argv: string[], kind: NonNullable<ExecutionResult["setup_error"]>["kind"], message: string, hint: string): ExecutionResult {
  return {
    exit_code: null,
    signal: null,
    timed_out: false,
    interrupted: false,
    duration_ms: 0,
    stdout: "",
    stderr: message,
    argv,
    cwd: req.cwd,
    setup_error: { kind, message, hint },
  };
}

/** Maps a process outcome to the backend contract; spawn problems become setup errors with a fix. */
export function fromProcess(p: ProcessResult, cwd: string, what: string): ExecutionResult {
  const result: ExecutionResult = {
    exit_code: p.exit_code,
    signal: p.signal,
    timed_out: p.timed_out,
    interrupted: p.interrupted,
    duration_ms: p.duration_ms,
    stdout: p.stdout,
    stderr: p.stderr,
    argv: p.argv,
    cwd,
  };
  const e = p.spawn_error;
  if (!e) return result;
  if (e.kind === "working_directory_missing") {
    result.setup_error = {
      kind: "working_directory_missing",
      message: e.message,
      hint: "Create the folder, or fix backend.working_directory (relative to the job file; default: the workspace).",
    };
  } else if (e.kind === "executable_not_found" || e.kind === "not_executable") {
    result.setup_error = {
      kind: "executable_not_found",
      message: `${what}: ${e.message}`,
      hint: e.kind === "not_executable" ? `Make it executable (chmod +x ${p.argv[0] ?? ""}).` : "Install it or fix the path in the job file.",
    };
  } else {
    // EMFILE, EAGAIN and friends pass; leave it to the retry policy.
    result.stderr = e.message;
  }
  return result;
}

export function createCommandBackend(config: CommandConfig, ctx: BackendContext): Backend {
  const commandFor = (req: ExecutionRequest) => req.command ?? config.command ?? "";
  return {
    name: "command",
    startsProcesses: true,
    describe(req) {
      return { argv: ["/bin/sh", "-c", commandFor(req)], cwd: req.cwd, env: { ...displayEnv(config.env), ...mozartEnv(req) }, stdin: "prompt" };
    },
    async execute(req, signal) {
      const command = commandFor(req);
      if (!command.trim()) {
        return setupFailure(req, [], "invalid_config", "backend.command is empty", "Set backend.command to the shell command to run for each batch (the prompt arrives on stdin).");
      }
      const p = await runProcess({
        shell: command,
        cwd: req.cwd,
        env: { ...ctx.env, ...config.env, ...mozartEnv(req) },
        stdin: req.prompt,
        timeoutMs: req.timeoutMs,
        signal,
        onOutput: req.onOutput,
        stopSequence: defaultStopSequence(ctx.killGraceMs),
        ...(req.tag ? { tag: req.tag } : {}),
        ...(req.onSpawn ? { onSpawn: req.onSpawn } : {}),
      });
      return fromProcess(p, req.cwd, "backend.command");
    },
  };
}
