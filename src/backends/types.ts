/**
 * The one interface every backend implements. A backend never throws for an expected failure
 * (non-zero exit, HTTP error, timeout, missing executable): it returns an ExecutionResult that
 * engine/classify.ts turns into a decision.
 */
import type { BackendConfig } from "../config/schema.ts";

/** Values of one batch, also exported to `command` processes as MOZART_* variables. */
export interface BatchVars {
  batch_num: number;
  total_batches: number;
  start_item: number;
  end_item: number;
}

export interface ExecutionRequest {
  prompt: string;
  batch: BatchVars;
  /** 1-based attempt number within the batch. */
  attempt: number;
  job_name: string;
  workspace: string;
  /** Absolute directory the process runs in (already resolved, may not exist: then a fatal result). */
  cwd: string;
  timeoutMs: number;
  /** `command` backend: the shell command for this batch, placeholders already expanded. */
  command?: string;
  /** Called with output as it arrives, for the attempt log and `-v`. */
  onOutput?: (stream: "stdout" | "stderr", chunk: string) => void;
}

/** Facts parsed from `claude -p --output-format json|stream-json` (anchors.md §B2). */
export interface ClaudeResultFacts {
  is_error: boolean;
  subtype?: string;
  api_error_status?: number | null;
  result?: string;
  total_cost_usd?: number;
  usage?: Record<string, unknown>;
  session_id?: string;
  num_turns?: number;
  terminal_reason?: string;
  permission_denials?: Array<{ tool_name: string; tool_use_id?: string; tool_input?: unknown }>;
  /** `errors[]` of the error subtypes, e.g. "Reached maximum number of turns (40)". */
  errors?: string[];
  /** From a stream-json `rate_limit_event` with status `rejected` (epoch ms). */
  rate_limit_resets_at?: number;
}

/** Facts from an HTTP backend (anthropic_api). */
export interface HttpFacts {
  status?: number;
  /** From `retry-after-ms` / `retry-after`. */
  retry_after_ms?: number;
  error_type?: string;
  /** `error.details.error_code`, e.g. `enforced_spend_limit_reached`. */
  error_code?: string;
  /** The `request-id` header, for support tickets. */
  request_id?: string;
  should_retry?: boolean;
}

export type SetupErrorKind =
  | "executable_not_found"
  | "working_directory_missing"
  | "missing_api_key"
  | "invalid_config";

export interface ExecutionResult {
  /** Process exit code; for HTTP backends 0 on success, 1 on failure. null when killed by a signal. */
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  /** The attempt was cut short by Mozart (second Ctrl+C / shutdown). */
  interrupted: boolean;
  duration_ms: number;
  stdout: string;
  stderr: string;
  /** What ran, for the attempt log and `--dry-run`; never contains secrets. */
  argv: string[];
  cwd: string;
  /** The model's final text when known (claude result, API text). */
  text?: string;
  cost_usd?: number;
  claude?: ClaudeResultFacts;
  http?: HttpFacts;
  /** A problem that no retry can fix (missing executable, missing cwd, missing key). */
  setup_error?: { kind: SetupErrorKind; message: string; hint: string };
}

export interface Invocation {
  argv: string[];
  cwd: string;
  /** Names (not values) of variables Mozart adds to the inherited environment. */
  env: Record<string, string>;
  stdin: "prompt";
}

export interface Backend {
  name: BackendConfig["type"];
  /** The exact invocation for a request, shown by `mozart run --dry-run`. */
  describe(req: ExecutionRequest): Invocation;
  execute(req: ExecutionRequest, signal: AbortSignal): Promise<ExecutionResult>;
}

export interface BackendContext {
  /** Folder of the job file: relative backend paths resolve against it. */
  jobDir: string;
  workspace: string;
  env: Record<string, string | undefined>;
  /** Time between SIGTERM and SIGKILL when an attempt is cut short (default 5000 ms). */
  killGraceMs?: number;
}
