/**
 * The one interface every backend implements. A backend never throws for an expected failure
 * (non-zero exit, HTTP error, timeout, missing executable): it returns an ExecutionResult that
 * engine/classify.ts turns into a decision.
 */
import type { BackendType } from "../config/schema.ts";
import type { SpendRecord, StateStore, TokenCounts } from "../state/types.ts";

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
  /** isolation: worktree — the batch's worktree, exported as MOZART_WORKTREE. */
  worktree?: string;
  /** `command` backend: the shell command for this batch, placeholders already expanded. */
  command?: string;
  /** Called with output as it arrives, for the attempt log and `-v`. */
  onOutput?: (stream: "stdout" | "stderr", chunk: string) => void;
  /** claude_cli with stream-json: called as the session starts a turn, calls a tool, or waits out a retry. */
  onActivity?: (a: Activity) => void;
  /** Process backends: a word every process of the attempt inherits, so stopTree({ tag }) finds leftovers later. */
  tag?: string;
  /** Process backends: called once the process started, with what the attempt record should keep. */
  onSpawn?: (p: { pid: number; pgid: number }) => void;
  /** The API backends: the static start of `prompt`, sent as a cached block. */
  cache_prefix?: string;
  /** The API backends: where the answer is written (absolute), atomically. */
  output_path?: string;
  /**
   * claude_cli (retry.continue_session): continue this session with `--resume` and `prompt`; when
   * it cannot be resumed, run `fresh_prompt` in a new session instead.
   */
  resume?: { session_id: string; fresh_prompt: string };
  /** claude_cli: the model of this attempt when it is not the configured one (a fallback after a per-model limit). */
  model?: string;
  /** What this attempt may still cost (budget.max_cost_usd_per_batch less the batch's spend so far). */
  budget_usd?: number;
  /**
   * HTTP backends call it right before each request: it returns once no shared rate-limit hold
   * of the job is in force, so no request goes out inside a hold another worker set; false when
   * the run stopped meanwhile (then nothing is sent).
   */
  beforeRequest?: (signal: AbortSignal) => Promise<boolean>;
  /** Batch-API backends: aborted when the run stops waiting (Ctrl+C): the request stays with the provider. */
  detach?: AbortSignal;
  /** Batch-API backends: the attempt's request was submitted by an earlier run; its result is picked up, nothing is sent again. */
  reattach?: { key: string; custom_id: string };
}

/**
 * What an attempt consumed, as the backend knows it. The engine turns it into the attempt's
 * ledger entry (state/types.ts SpendRecord).
 */
export interface Spend {
  usd: number;
  tokens: TokenCounts;
  priced_by: SpendRecord["priced_by"];
  model?: string;
  tier?: SpendRecord["tier"];
  requests?: number;
  /**
   * The session's cost as the backend reported it (claude's `total_cost_usd` is cumulative over a
   * resumed session): the engine records the difference to the session's previous figure.
   */
  session?: { id: string; cumulative_usd: number };
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
  /** With `--json-schema`: the answer as the schema asked for it. */
  structured_output?: unknown;
  /** From a stream-json `rate_limit_event` with status `rejected` (epoch ms). */
  rate_limit_resets_at?: number;
  /**
   * What a stream-json event decided while the process ran: Mozart stopped the CLI at once
   * (SIGINT) instead of waiting for its own retries to end.
   */
  live?: LiveVerdict;
}

/** A decision taken from one stream-json event (claude-cli-observed.md, anchors §B3). */
export type LiveVerdict =
  /** `system/api_retry` with 401/403 or an authentication error: no retry can fix it. */
  | { kind: "auth"; status?: number; error?: string }
  /** `system/api_retry` for a 429: the CLI's own `retry_delay_ms` becomes the shared hold. */
  | { kind: "rate_limit"; delay_ms: number; status?: number; error?: string }
  /** `rate_limit_event` rejected with a reset time (epoch ms). */
  | { kind: "reset"; at: number; limit_type?: string }
  /** `rate_limit_event` with `errorCode: credits_required`, or an api_retry for a billing error: waiting does not help. */
  | { kind: "credits"; error?: string };

/** What a running claude session is doing, from its stream-json events (for the progress line and `logs -f`). */
export interface Activity {
  /** The assistant turn, counted from 1. */
  turn?: number;
  /** The tool the assistant just called, with a short view of its input. */
  tool?: string;
  /** The CLI is waiting out a failed API call before it tries again. */
  retry?: { attempt: number; max_retries: number; delay_ms: number; status?: number; error?: string };
  /** From a rate_limit_event: how much of the account's quota is used, and when it resets (epoch ms). */
  quota?: { status: string; utilization: number; resets_at?: number; limit_type?: string };
  /** From system/init. */
  model?: string;
  session_id?: string;
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
  /** Epoch ms the exhausted limit refills, from the `anthropic-ratelimit-*-reset` headers of a 429. */
  rate_limit_reset_at?: number;
  /** A 200 whose answer was cut off: `max_tokens`. */
  stop_reason?: string;
  /** The variable the key came from, for a rejected key's message. */
  key_env?: string;
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
  /** The attempt's cost in USD (the same as spend.usd when spend is set). */
  cost_usd?: number;
  spend?: Spend;
  claude?: ClaudeResultFacts;
  http?: HttpFacts;
  /** A problem that no retry can fix (missing executable, missing cwd, missing key). */
  setup_error?: { kind: SetupErrorKind; message: string; hint: string };
  /** Batch-API backends: the run stopped waiting; the request is still with the provider. */
  detached?: boolean;
  /** Batch-API backends: where the request went. */
  remote?: { key: string; id?: string; custom_id: string };
  /** claude_cli: the attempt asked to continue a session; whether it did, and if not, why (it ran fresh). */
  resume?: { session_id: string; resumed: boolean; reason?: string };
  /** A decision the backend knows better than any pattern: the request itself is wrong (HTTP 400), no retry can help. */
  fail_batch?: { category: string; reason: string };
}

export interface Invocation {
  argv: string[];
  cwd: string;
  /** Names (not values) of variables Mozart adds to the inherited environment. */
  env: Record<string, string>;
  stdin: "prompt";
}

export interface Backend {
  name: BackendType;
  /** True when an attempt runs a process: the runner then records the attempt once it started, with its pid. */
  startsProcesses?: boolean;
  /** The exact invocation for a request, shown by `mozart run --dry-run`. */
  describe(req: ExecutionRequest): Invocation;
  execute(req: ExecutionRequest, signal: AbortSignal): Promise<ExecutionResult>;
  /** A problem that stops the run before it starts (a missing API key): nothing is sent, the run exits 2. */
  preflight?(): { message: string; hint: string } | undefined;
  /**
   * Batch-API backends: how many attempts the engine keeps in flight (they are submitted together),
   * instead of the job's `concurrency`; starts are not spaced.
   */
  inFlight?: number;
  /** Batch-API backends: the engine has nothing more to start for now; submit what was gathered. */
  idle?(): void;
  /** Batch-API backends: `mozart cancel`: cancel what was submitted, at the provider. */
  cancelRemote?(): Promise<void>;
}

export interface BackendContext {
  /** Folder of the job file: relative backend paths resolve against it. */
  jobDir: string;
  workspace: string;
  env: Record<string, string | undefined>;
  /** Grace period of each step when an attempt is cut short (default 5000 ms): SIGTERM then SIGKILL, for claude SIGINT, SIGTERM, SIGKILL. */
  killGraceMs?: number;
  /** Batch-API backends: where submitted work is checkpointed (the job's store), and progress reported. */
  remote?: RemoteCheckpoints;
}

/** What a batch-API backend may keep in, and tell through, the job's store. */
export interface RemoteCheckpoints {
  store: StateStore;
  jobId: string;
  runnerId: string;
  /** Records progress in the job's event log (Message Batch created, counts changed, ended). */
  event(e: { type: "remote_batch"; key: string; id?: string; status: string; counts?: Record<string, number>; requests: number; error?: string }): Promise<void>;
  /** Warnings that do not stop the run. */
  warn(message: string): void;
}
