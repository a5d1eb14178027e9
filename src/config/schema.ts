/**
 * The job file schema: the single source of truth for types, defaults, the JSON Schema
 * (`mozart schema`) and docs/configuration.md. Every object is strict so a typo is an error.
 */
import { z } from "zod";

const positiveInt = () => z.int().min(1);
const text = () => z.string().min(1);

/**
 * Every duration is bounded: timers fire at once past 2^31 ms, a hold of centuries is a bug,
 * and a typo of a few zeros should be an error, not a job that silently never waits.
 */
const WEEK_SECONDS = 7 * 24 * 3600;
const seconds = (max = WEEK_SECONDS) => z.number().max(max);

export const NOTIFICATION_EVENTS = [
  "job_start",
  "batch_start",
  "batch_complete",
  "batch_failed",
  "rate_limit_hold",
  "job_paused",
  "job_cancelled",
  "job_complete",
  "job_failed",
  "batch_conflict",
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/** Keys every backend has. */
const backendCommon = {
  timeout_seconds: seconds().positive().default(1800).describe("Wall-clock limit for one attempt (at most 7 days); the attempt's whole process tree is stopped when it passes."),
  env: z
    .record(z.string(), z.string())
    .default({})
    .describe(
      "Extra environment variables for the backend (and the validation commands), on top of Mozart's own environment (which it inherits). Values written here are part of the job file and so of its saved state: keep secrets in the environment, which Mozart never records.",
    ),
};

/** Keys of the backends that run a process for every attempt. */
const processBackend = {
  working_directory: z.string().optional().describe("The directory the process runs in, relative to the job file. Default: the workspace."),
  stop_grace_seconds: seconds(600)
    .min(0)
    .default(5)
    .describe("When an attempt is stopped (timeout, cancel, second Ctrl+C): how long each signal gets before the next (claude_cli: SIGINT, then SIGTERM, then SIGKILL; command: SIGTERM, then SIGKILL)."),
};

export const DEFAULT_MODEL = "claude-sonnet-4-20250514";
export const DEFAULT_OUTPUT_PATH = "{workspace}/batch{batch_num}-output.md";
export const CACHE_TTLS = ["5m", "1h"] as const;
export type CacheTtl = (typeof CACHE_TTLS)[number];

/** Keys of the backends that call the Anthropic API directly (anthropic_api, anthropic_batch). */
const apiBackend = (cacheTtl: CacheTtl) => ({
  model: text().default(DEFAULT_MODEL).describe("Model id, e.g. `claude-sonnet-4-5`, `claude-haiku-4-5`, `claude-opus-4-5`; it also picks the price (src/backends/prices.ts)."),
  api_key_env: text().default("ANTHROPIC_API_KEY").describe("The environment variable holding the API key. A missing variable stops the run before it starts (exit 2)."),
  base_url: z
    .string()
    .url()
    .optional()
    .describe("The API's address, for proxies and gateways (e.g. `http://127.0.0.1:4000`). Default: `ANTHROPIC_BASE_URL` from the environment, else `https://api.anthropic.com`."),
  max_tokens: positiveInt().default(8192).describe("`max_tokens` of each request; lowered per request when `budget.max_cost_usd_per_batch` allows less."),
  temperature: z.number().min(0).max(1).default(0.7).describe("Sampling temperature."),
  system: z.string().optional().describe("A system prompt sent with every request (cached together with the prompt's static part)."),
  output_path: text()
    .default(DEFAULT_OUTPUT_PATH)
    .describe("Where each batch's answer is written, atomically, relative to the workspace; `{batch_num}` style placeholders are expanded. `file_exists`, `content_contains` and `content_regex` validations can check it."),
  cache: z
    .boolean()
    .default(true)
    .describe("Prompt caching: the prompt's static part (everything before the first per-batch variable, or `prompt.cache_prefix`) is sent as a cached block, so later batches read it at a tenth of the input price."),
  cache_ttl: z.enum(CACHE_TTLS).default(cacheTtl).describe("How long a cached prefix lives: `5m` (writes cost 1.25x the input price) or `1h` (writes cost 2x). Reads cost 0.1x either way."),
});

const claudeCliBackend = z
  .strictObject({
    type: z.literal("claude_cli").default("claude_cli").describe("The `claude` CLI (Claude Code) in headless mode: one session per attempt, with tools."),
    ...backendCommon,
    ...processBackend,
    skip_permissions: z
      .boolean()
      .default(false)
      .describe(
        "Pass `--dangerously-skip-permissions` so Claude may write files unattended. Off by default; without it, tool calls that need permission are denied and listed in the attempt record.",
      ),
    output_format: z
      .enum(["json", "text", "stream-json"])
      .default("stream-json")
      .describe(
        "`--output-format`. `stream-json` (with `--verbose`) lets Mozart follow the session live: the turn, the tool in use, the CLI's retries, and limits and auth failures the moment they are reported. `json` gives only the final result (cost, usage, errors); `text` only the answer.",
      ),
    model: z.string().optional().describe("Passed as `--model` when set (an alias such as `sonnet` or a full model id)."),
    json_schema: z
      .union([text(), z.record(z.string(), z.unknown())])
      .optional()
      .describe(
        "A JSON Schema the session's final answer must follow, inline or as a file path (relative to the job file): passed as `--json-schema`; each attempt records the result's `structured_output`.",
      ),
    fallback_models: z
      .array(text())
      .default([])
      .describe(
        "Models to switch to, in order, when a batch meets a per-model limit (`You've hit your Opus limit`): its next attempt runs with `--model` set to the next one instead of holding. Until the limit's reset, the batches started after it begin on that model too, and a resumed batch keeps it. Each attempt records its model.",
      ),
    cli_path: z.string().optional().describe("Path to the `claude` executable. Default: `claude` found on PATH."),
    max_turns: positiveInt().optional().describe("`--max-turns`."),
    allowed_tools: z.array(text()).optional().describe("`--allowedTools`, e.g. `[Read, Edit, \"Bash(git diff *)\"]`."),
    append_system_prompt: z.string().optional().describe("`--append-system-prompt`."),
    extra_args: z.array(z.string()).default([]).describe("Further arguments passed to `claude` verbatim."),
    claude_max_retries: z
      .int()
      .min(0)
      .max(15)
      .optional()
      .describe(
        "Sets `CLAUDE_CODE_MAX_RETRIES`, so Mozart owns the retry policy (0 = claude reports API errors at once). Default 3 (a few seconds of the CLI's own backoff); with `stream-json` Mozart stops the CLI at its first retry of an auth failure or a rate limit anyway.",
      ),
    // The seed's configuration reference writes the API options into the same block; they are
    // accepted here so its examples load unchanged, and have no effect on claude_cli.
    api_key_env: text().optional().describe("Accepted for job files written for the seed's reference; it applies to `anthropic_api` only and has no effect here."),
    max_tokens: positiveInt().optional().describe("Accepted for job files written for the seed's reference; it applies to `anthropic_api` only and has no effect here."),
    temperature: z.number().min(0).max(1).optional().describe("Accepted for job files written for the seed's reference; it applies to `anthropic_api` only and has no effect here."),
  })
  .describe("The `claude` CLI: one headless Claude Code session per attempt, with tools.");

const anthropicApiBackend = z
  .strictObject({
    type: z.literal("anthropic_api"),
    ...backendCommon,
    ...apiBackend("5m"),
    continue_on_max_tokens: z
      .union([z.boolean(), z.int().min(0).max(16)])
      .default(false)
      .describe(
        "An answer cut off at `max_tokens` is a failed attempt (it is retried). With `true` (or a number of times, up to 16; `true` is 4) Mozart asks for the rest instead and appends it.",
      ),
  })
  .describe("The Anthropic Messages API: one request per attempt, no tools; the answer is written to `output_path`.");

const anthropicBatchBackend = z
  .strictObject({
    type: z.literal("anthropic_batch"),
    ...backendCommon,
    timeout_seconds: seconds()
      .positive()
      .default(25 * 3600)
      .describe("How long one attempt may wait for its Message Batch result (default 25 h: a Message Batch expires after 24 h)."),
    ...apiBackend("1h"),
    requests_per_batch: z
      .int()
      .min(1)
      .max(100_000)
      .default(10_000)
      .describe("Requests per Message Batch (the API takes at most 100,000 requests or 256 MB per batch). Pending batches are submitted together, this many per Message Batch."),
    poll_interval_seconds: seconds(3600).positive().default(30).describe("First wait between two looks at a Message Batch's progress; it grows by half each time."),
    max_poll_interval_seconds: seconds(3600).positive().default(300).describe("Upper bound of the wait between two looks."),
  })
  .describe(
    "The Anthropic Message Batches API, at half the price: every pending batch is submitted at once (no tools; `concurrency` and `pause_between_batches_seconds` do not apply), results are written to `output_path`. Ctrl+C, a kill or `resume` re-attach to what was submitted.",
  );

const commandBackend = z
  .strictObject({
    type: z.literal("command"),
    ...backendCommon,
    ...processBackend,
    command: z
      .string()
      .optional()
      .describe("The shell command run for every attempt, with the prompt on stdin and the batch variables in MOZART_* environment variables. Placeholders such as `{batch_num}` are expanded."),
  })
  .describe("Any shell command does the work.");

export const BACKEND_TYPES = ["claude_cli", "anthropic_api", "anthropic_batch", "command"] as const;

/** One schema per backend type: each backend's keys are checked on their own. */
export const BackendSchema = z.discriminatedUnion("type", [claudeCliBackend, anthropicApiBackend, anthropicBatchBackend, commandBackend]).describe("How each batch is executed. `type` picks the backend (default `claude_cli`); each type has its own keys.");

export const BudgetSchema = z
  .strictObject({
    max_cost_usd: z
      .number()
      .positive()
      .optional()
      .describe("Budget of the whole job in USD. Once the cost ledger reaches it, no new batch starts, running ones finish, and the job ends paused (reason `budget`). `mozart resume <job> --budget N` raises it."),
    max_cost_usd_per_batch: z
      .number()
      .positive()
      .optional()
      .describe("Budget of one batch (all its attempts) in USD: passed to claude as `--max-budget-usd`; the API backends lower `max_tokens` so a request cannot cost more."),
  })
  .describe("Spending limits, counted from the cost ledger (every attempt's tokens priced, or the backend's own figure).");

export const BatchSchema = z
  .strictObject({
    size: positiveInt().describe("Items per batch."),
    total_items: positiveInt().describe("Number of the last item (inclusive)."),
    start_item: positiveInt().default(1).describe("Number of the first item."),
  })
  .describe("How the items are split into batches. Each batch is one Claude session.");

export const PromptSchema = z
  .strictObject({
    template: z.string().optional().describe("Inline prompt template (`{{ batch_num }}` style). Wins over `template_file`."),
    template_file: z.string().optional().describe("Path to a template file, relative to the job file."),
    variables: z.record(z.string(), z.unknown()).default({}).describe("Extra template variables; lists and maps can be looped over."),
    stakes: z.string().optional().describe("Text available as `{{ stakes }}`."),
    cache_prefix: z
      .string()
      .optional()
      .describe(
        "Text sent before the template's output, as the static part of every prompt: the API backends send it as a cached block. It may use the job's variables, not per-batch ones. Without it, the static part is everything before the template's first per-batch variable.",
      ),
    thinking_method: z.string().optional().describe("Text available as `{{ thinking_method }}`."),
  })
  .describe("The prompt sent for each batch.");

export const RetrySchema = z
  .strictObject({
    max_retries: z.int().min(0).default(3).describe("Retries after the first attempt: 2 means up to 3 attempts."),
    base_delay_seconds: seconds().positive().default(10).describe("Delay before the first retry."),
    max_delay_seconds: seconds().positive().default(3600).describe("Upper bound of any retry delay, jitter included (at most 7 days)."),
    exponential_base: z.number().gt(1).max(100).default(2).describe("Growth factor of the delay per retry."),
    jitter: z.boolean().default(true).describe("Randomise each delay between 50% and 100% of its value."),
    max_completion_attempts: z.int().min(0).default(3).describe("Completion-mode attempts per batch (on top of `max_retries`)."),
    completion_delay_seconds: seconds().min(0).default(5).describe("Delay before each completion attempt."),
    continue_session: z
      .boolean()
      .default(true)
      .describe(
        "claude_cli: when an attempt ran but its validations failed, the next attempt continues the same Claude session (`--resume <session_id>`) with the completion prompt (what passed, what is missing), so its context and cache are warm. A session that cannot be resumed falls back to a fresh one, recorded in the attempt.",
      ),
    completion_threshold_percent: z
      .number()
      .gt(0)
      .max(100)
      .default(50)
      .describe("Completion mode starts when more than this percentage of validations pass."),
  })
  .describe("Retries with exponential backoff, and completion mode for partly done batches.");

export const RateLimitSchema = z
  .strictObject({
    wait_minutes: z
      .number()
      .positive()
      .max(WEEK_SECONDS / 60)
      .default(60)
      .describe("How long to hold when a limit message carries no reset time (fractions allowed: 0.5 = 30 s; at most 7 days). Reset times further away than 7 days also fall back to this."),
    max_waits: z.int().min(0).default(24).describe("Rate-limit holds allowed per batch before it fails."),
    admission_threshold: z
      .number()
      .gt(0)
      .max(1)
      .default(0.9)
      .describe(
        "claude_cli: once a `rate_limit_event` reports the account's quota this much used (`utilization`, 0–1), no new batch starts until its reset; running ones finish. Then starts ramp up: 1, 2, 4 … up to `concurrency`.",
      ),
    detection_patterns: z
      .array(text())
      .default([])
      .describe("Extra case-insensitive regexes that mark a failed attempt as rate-limited; added to the built-in ones."),
  })
  .describe("Rate and usage limits: Mozart holds (not fails) until the limit resets.");

export const LearningSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe("Record one outcome per finished batch (how it ended, attempts, cost, time held, failing validations) in the job's state and in the append-only history that `mozart stats` and the estimates read."),
    outcome_store_type: z.enum(["json", "sqlite"]).default("json").describe("Accepted for job files written for the Python tool: the history is always JSON Lines."),
    outcome_store_path: z.string().optional().describe("The history file (JSON Lines, only ever appended), relative to the job file. Default: `outcomes.jsonl` under MOZART_HOME."),
    window: positiveInt().max(1000).default(5).describe("How many of the run's last finished batches the breaker and the concurrency steps judge (see docs/learning.md)."),
    min_confidence_threshold: z.number().min(0).max(1).default(0.3).describe("With escalation_enabled: the job pauses (reason `low_success`) when the first-try success rate over the last `window` finished batches falls below this."),
    high_confidence_threshold: z.number().min(0).max(1).default(0.7).describe("With escalation_enabled: while the first-try success rate over the window is at or above this, concurrency rises by one per finished batch, up to `concurrency`."),
    escalation_enabled: z.boolean().default(false).describe("Turn on the prompt-quality breaker and the concurrency steps; the run then starts at concurrency 1."),
  })
  .describe("Outcome records, the history behind `mozart stats` and the estimates, and the prompt-quality breaker (docs/learning.md).");

export const WorktreeSchema = z
  .strictObject({
    share: z
      .array(text())
      .default([])
      .describe("Folders of the workspace (e.g. `node_modules`, `.venv`) linked into each worktree from the main tree instead of copied or installed again. Relative to the workspace; never committed."),
    setup: z.string().optional().describe("Shell command run once in each new worktree (in its copy of the workspace, with `MOZART_WORKTREE` set) before the batch's first attempt; its failure fails the batch with its output."),
    setup_timeout_seconds: seconds().positive().default(1800).describe("Stop `setup` after this long (at most 7 days)."),
  })
  .describe("isolation: worktree — how each batch's worktree is prepared. Worktrees live under the job's state folder (`.mozart/worktrees/`).");

const description = z.string().optional().describe("Shown in status output and completion prompts.");
const pathField = text().describe("Path, relative to the workspace; `{batch_num}` / `{{ batch_num }}` placeholders are expanded.");
const jsonPathField = text()
  .optional()
  .describe(
    "The JSON file, relative to the workspace; placeholders are expanded. Without it, the attempt's structured output is checked (`claude_cli` with `backend.json_schema`).",
  );

export const ValidationSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("file_exists"), path: pathField, description }).describe("The file exists and is a regular file."),
  z
    .strictObject({ type: z.literal("file_modified"), path: pathField, description })
    .describe("The file was created or modified since the batch's first attempt started."),
  z
    .strictObject({
      type: z.literal("content_contains"),
      path: pathField,
      pattern: text().describe("Literal, case-sensitive text the file must contain."),
      description,
    })
    .describe("The file contains a literal string."),
  z
    .strictObject({
      type: z.literal("content_regex"),
      path: pathField,
      pattern: text().describe("JavaScript regular expression searched in the file."),
      flags: z.string().regex(/^[imsu]*$/, "only the flags i, m, s and u").default("").describe("Regex flags, e.g. `im`."),
      description,
    })
    .describe("The file matches a regular expression."),
  z
    .strictObject({
      type: z.literal("command_succeeds"),
      command: text().describe("Shell command (`/bin/sh -c`); placeholders are expanded. Exit 0 passes."),
      working_directory: z.string().optional().describe("Directory to run in; default the workspace."),
      timeout_seconds: seconds().positive().default(300).describe("Stop the command after this long (at most 7 days)."),
      description,
    })
    .describe("A shell command exits 0."),
  z
    .strictObject({
      type: z.literal("json_schema"),
      path: jsonPathField,
      schema: z
        .union([text(), z.record(z.string(), z.unknown()), z.boolean()])
        .describe("The JSON Schema (draft-07, 2019-09 or 2020-12, by its `$schema`; draft-07 without one), inline or as a file path relative to the job file. Checked when the job file is."),
      description,
    })
    .describe("A JSON file, or the session's structured output, matches a JSON Schema; a failure names each failing path (`$.items[2].score: must be number`)."),
  z
    .strictObject({
      type: z.literal("jsonpath"),
      path: jsonPathField,
      assert: z
        .union([text(), z.array(text()).min(1)])
        .describe(
          "One assertion or a list, each `<JSONPath> [<op> <JSON value>]`: `$.items.length == 10`, `$.status == \"done\"`, `$.items[*].score >= 0.5` (every match must hold), or a bare path that must match something. Operators: `== != < <= > >=`.",
        ),
      description,
    })
    .describe("Assertions on a JSON file, or on the session's structured output, by JSONPath; a failure names the path and the value found."),
]);

const events = z.array(z.enum(NOTIFICATION_EVENTS)).default(["job_complete", "job_failed"]).describe("Events that trigger this notification.");

export const NotificationSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("desktop"),
    on_events: events,
    config: z
      .strictObject({
        app_name: z.string().default("Mozart").describe("Application name shown by the notification daemon."),
        timeout: seconds(3600).positive().default(10).describe("Seconds the notification stays visible."),
      })
      .default({ app_name: "Mozart", timeout: 10 }),
  }),
  z.strictObject({
    type: z.literal("slack"),
    on_events: events,
    config: z
      .strictObject({
        webhook_url: z.string().optional().describe("Slack incoming-webhook URL (prefer webhook_url_env: it keeps the secret out of the file)."),
        webhook_url_env: z.string().default("SLACK_WEBHOOK_URL").describe("Environment variable holding the webhook URL."),
        channel: z.string().optional().describe("Channel override, e.g. `#alerts`."),
        username: z.string().default("Mozart").describe("Sender name."),
        icon_emoji: z.string().default(":musical_score:").describe("Sender icon."),
        timeout: seconds(600).positive().default(10).describe("Request timeout in seconds."),
      })
      .default({ webhook_url_env: "SLACK_WEBHOOK_URL", username: "Mozart", icon_emoji: ":musical_score:", timeout: 10 }),
  }),
  z.strictObject({
    type: z.literal("webhook"),
    on_events: events,
    config: z.strictObject({
      url: z.string().optional().describe("URL that receives a JSON POST per event."),
      url_env: z.string().optional().describe("Environment variable holding the URL (instead of url)."),
      headers: z.record(z.string(), z.string()).default({}).describe("Extra headers; `${VAR}` is expanded from the environment."),
      secret_env: text()
        .optional()
        .describe(
          "Environment variable holding a signing secret: each request then carries `X-Mozart-Timestamp` and `X-Mozart-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` (see docs/webhook.md). Unset at run time: requests go out unsigned, with a warning.",
        ),
      timeout: seconds(600).positive().default(30).describe("Timeout of each try, in seconds."),
      max_retries: z.int().min(0).max(10).default(2).describe("Retries on 5xx, 429, timeouts and network errors (never on any other 4xx)."),
      retry_delay: seconds(30)
        .min(0)
        .default(1)
        .describe("Seconds before the first retry; each later wait doubles (at most 30 s). A 429's `Retry-After` is honoured up to 30 s."),
      include_metadata: z.boolean().default(true).describe("Add `metadata: {source, version}` to the body."),
    }),
  }),
]);

export const JobSchema = z
  .strictObject({
    $schema: z.string().optional().describe("Editor hint; ignored by Mozart."),
    name: text().max(200).describe("The job id, used by `mozart status/resume <name>`."),
    description: z.string().optional().describe("Free text shown in status output."),
    workspace: text().default("./workspace").describe("Where the work happens, relative to the job file. Created if missing."),
    backend: BackendSchema.prefault({}),
    batch: BatchSchema,
    prompt: PromptSchema,
    retry: RetrySchema.prefault({}),
    rate_limit: RateLimitSchema.prefault({}),
    learning: LearningSchema.prefault({}),
    budget: BudgetSchema.prefault({}),
    validations: z.array(ValidationSchema).default([]).describe("Checks run after every attempt; a batch is done only when all pass."),
    notifications: z.array(NotificationSchema).default([]).describe("Where to report job and batch events."),
    state_backend: z
      .enum(["json", "sqlite", "postgres"])
      .default("sqlite")
      .describe("How state is stored: SQLite (WAL) or atomic JSON files in the state folder, or a Postgres database that runners and `mozart worker`s on many machines share (see docs/scale.md)."),
    state_path: z.string().optional().describe("State folder, relative to the job file. Default: `<workspace>/.mozart`. With postgres it only holds each attempt's output files, on the machine that ran it."),
    state_url_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "an environment variable name")
      .default("MOZART_DATABASE_URL")
      .describe("postgres: the environment variable holding the connection URL (`postgres://user:password@host:5432/db`). The URL itself is never written to the job file, the state, logs or `--json` output."),
    worker_setup: z
      .string()
      .optional()
      .describe(
        "postgres: a shell command a `mozart worker` runs once in the job's workspace (created empty first) before it runs any batch of the job on its machine, e.g. `git clone --depth 1 https://example.com/repo.git .`. A non-zero exit stops that worker for this job. `workspace` says where the workspace is: a relative one lands under the worker's `--dir`.",
      ),
    pause_between_batches_seconds: seconds(24 * 3600).min(0).default(10).describe("Pause between batch starts, whatever the concurrency (at most a day)."),
    concurrency: z.int().min(1).max(64).default(1).describe("How many batches run at once."),
    isolation: z
      .enum(["none", "worktree"])
      .default("none")
      .describe(
        "`worktree`: each batch runs in a git worktree of its own, on branch `mozart/<job>/batch-<n>` from the commit checked out when the job started, so batches running at once never edit the same files and a failed batch's edits never reach your branch. The workspace must be inside a git repository (git 2.30 or newer). `none`: every batch works in the workspace itself.",
      ),
    merge: z.enum(["ordered", "none"]).default("ordered").describe("isolation: worktree — `ordered` lands completed batches on `merge_into` in batch order, as each becomes mergeable; `none` leaves one branch per completed batch (for pull requests)."),
    merge_into: text().optional().describe("merge: ordered — the branch batches land on. Default: the branch checked out when the job started."),
    merge_strategy: z.enum(["merge", "rebase"]).default("merge").describe("merge: ordered — `merge` lands each batch with a merge commit; `rebase` replays its commits onto the target branch (linear history)."),
    keep_failed: z.boolean().default(false).describe("isolation: worktree — keep a failed batch's edits, committed, on branch `mozart/<job>/failed/batch-<n>` (they never reach the target branch)."),
    allow_dirty: z.boolean().default(false).describe("isolation: worktree — start although the main tree has uncommitted changes (batches start from the last commit and do not see them)."),
    worktree: WorktreeSchema.prefault({}),
    on_batch_failure: z
      .enum(["stop", "continue"])
      .default("stop")
      .describe(
        "What a failed batch does to the rest of the job. `stop`: no new batch starts, the job ends `failed`. `continue`: the other batches run to the end; the job then ends `failed` with the list of failed batches, to run again with `mozart resume <job> --retry-failed`. Failures no batch can get past (auth, spend, config) stop the job either way.",
      ),
  })
  .meta({ title: "Mozart job file", $id: "https://mozart.dev/schema/job.json" });

export type JobInput = z.input<typeof JobSchema>;
export type JobConfig = z.output<typeof JobSchema>;
export type BackendConfig = JobConfig["backend"];
export type BackendType = BackendConfig["type"];
/** The config of one backend type. */
export type BackendConfigOf<T extends BackendType> = Extract<BackendConfig, { type: T }>;
export type ClaudeCliConfig = BackendConfigOf<"claude_cli">;
export type AnthropicApiConfig = BackendConfigOf<"anthropic_api">;
export type AnthropicBatchConfig = BackendConfigOf<"anthropic_batch">;
export type CommandConfig = BackendConfigOf<"command">;
/** The keys anthropic_api and anthropic_batch share. */
export type ApiBackendConfig = AnthropicApiConfig | AnthropicBatchConfig;
export type ValidationRule = JobConfig["validations"][number];
export type NotificationConfig = JobConfig["notifications"][number];

/** The JSON Schema published by `mozart schema` for editor completion. */
export function jobJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(JobSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
}
