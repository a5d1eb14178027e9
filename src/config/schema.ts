/**
 * The job file schema: the single source of truth for types, defaults, the JSON Schema
 * (`mozart schema`) and docs/configuration.md. Every object is strict so a typo is an error.
 */
import { z } from "zod";

const positiveInt = () => z.int().min(1);
const text = () => z.string().min(1);

export const NOTIFICATION_EVENTS = [
  "job_start",
  "batch_start",
  "batch_complete",
  "batch_failed",
  "rate_limit_hold",
  "job_paused",
  "job_complete",
  "job_failed",
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

export const BackendSchema = z
  .strictObject({
    type: z
      .enum(["claude_cli", "anthropic_api", "command"])
      .default("claude_cli")
      .describe("Which backend runs each batch: the `claude` CLI, the Anthropic Messages API, or any shell command."),
    skip_permissions: z
      .boolean()
      .default(false)
      .describe(
        "claude_cli: pass `--dangerously-skip-permissions` so Claude may write files unattended. Off by default; without it, tool calls that need permission are denied and listed in the attempt record.",
      ),
    output_format: z
      .enum(["json", "text", "stream-json"])
      .default("json")
      .describe("claude_cli: `--output-format`. `json` lets Mozart read cost, usage and errors; `stream-json` implies `--verbose`."),
    working_directory: z
      .string()
      .optional()
      .describe("claude_cli/command: the directory the process runs in, relative to the job file. Default: the workspace."),
    timeout_seconds: z.number().positive().default(1800).describe("Wall-clock limit for one attempt; the whole process group is killed when it passes."),
    model: z.string().optional().describe("Model id. claude_cli: passed as `--model` when set. anthropic_api: default `claude-sonnet-4-20250514`."),
    api_key_env: text().default("ANTHROPIC_API_KEY").describe("anthropic_api: the environment variable holding the API key."),
    max_tokens: positiveInt().default(8192).describe("anthropic_api: `max_tokens` of each request."),
    temperature: z.number().min(0).max(1).default(0.7).describe("anthropic_api: sampling temperature."),
    command: z
      .string()
      .optional()
      .describe("command: the shell command run for every attempt, with the prompt on stdin and the batch variables in MOZART_* environment variables. Placeholders such as `{batch_num}` are expanded."),
    env: z
      .record(z.string(), z.string())
      .default({})
      .describe(
        "Extra environment variables for the backend process, on top of Mozart's own environment (which it inherits). Values written here are part of the job file and so of its saved state: keep secrets in the environment, which Mozart never records.",
      ),
    cli_path: z.string().optional().describe("claude_cli: path to the `claude` executable. Default: `claude` found on PATH."),
    max_turns: positiveInt().optional().describe("claude_cli: `--max-turns`."),
    allowed_tools: z.array(text()).optional().describe("claude_cli: `--allowedTools`, e.g. `[Read, Edit, \"Bash(git diff *)\"]`."),
    append_system_prompt: z.string().optional().describe("claude_cli: `--append-system-prompt`."),
    extra_args: z.array(z.string()).default([]).describe("claude_cli: further arguments passed to `claude` verbatim."),
    claude_max_retries: z
      .int()
      .min(0)
      .max(15)
      .optional()
      .describe("claude_cli: sets `CLAUDE_CODE_MAX_RETRIES`, so Mozart owns the retry policy (0 = claude reports API errors at once)."),
  })
  .describe("How each batch is executed.");

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
    thinking_method: z.string().optional().describe("Text available as `{{ thinking_method }}`."),
  })
  .describe("The prompt sent for each batch.");

export const RetrySchema = z
  .strictObject({
    max_retries: z.int().min(0).default(3).describe("Retries after the first attempt: 2 means up to 3 attempts."),
    base_delay_seconds: z.number().positive().default(10).describe("Delay before the first retry."),
    max_delay_seconds: z.number().positive().default(3600).describe("Upper bound of any retry delay, jitter included."),
    exponential_base: z.number().gt(1).default(2).describe("Growth factor of the delay per retry."),
    jitter: z.boolean().default(true).describe("Randomise each delay between 50% and 100% of its value."),
    max_completion_attempts: z.int().min(0).default(3).describe("Completion-mode attempts per batch (on top of `max_retries`)."),
    completion_delay_seconds: z.number().min(0).default(5).describe("Delay before each completion attempt."),
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
      .default(60)
      .describe("How long to hold when a limit message carries no reset time (fractions allowed: 0.5 = 30 s)."),
    max_waits: z.int().min(0).default(24).describe("Rate-limit holds allowed per batch before it fails."),
    detection_patterns: z
      .array(text())
      .default([])
      .describe("Extra case-insensitive regexes that mark a failed attempt as rate-limited; added to the built-in ones."),
  })
  .describe("Rate and usage limits: Mozart holds (not fails) until the limit resets.");

export const LearningSchema = z
  .strictObject({
    enabled: z.boolean().default(false).describe("Accepted; no effect yet."),
    outcome_store_type: z.enum(["json", "sqlite"]).default("json").describe("Accepted; no effect yet."),
    outcome_store_path: z.string().optional().describe("Accepted; no effect yet."),
    min_confidence_threshold: z.number().min(0).max(1).default(0.3).describe("Accepted; no effect yet."),
    high_confidence_threshold: z.number().min(0).max(1).default(0.7).describe("Accepted; no effect yet."),
    escalation_enabled: z.boolean().default(false).describe("Accepted; no effect yet."),
  })
  .describe("Experimental: accepted for compatibility with job files written for the Python tool; has no effect yet.");

const description = z.string().optional().describe("Shown in status output and completion prompts.");
const pathField = text().describe("Path, relative to the workspace; `{batch_num}` / `{{ batch_num }}` placeholders are expanded.");

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
      timeout_seconds: z.number().positive().default(300).describe("Kill the command after this long."),
      description,
    })
    .describe("A shell command exits 0."),
]);

const events = z.array(z.enum(NOTIFICATION_EVENTS)).default(["job_complete", "job_failed"]).describe("Events that trigger this notification.");

export const NotificationSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("desktop"),
    on_events: events,
    config: z
      .strictObject({
        app_name: z.string().default("Mozart").describe("Application name shown by the notification daemon."),
        timeout: z.number().positive().default(10).describe("Seconds the notification stays visible."),
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
        timeout: z.number().positive().default(10).describe("Request timeout in seconds."),
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
      timeout: z.number().positive().default(30).describe("Request timeout in seconds."),
      max_retries: z.int().min(0).default(2).describe("Retries on 5xx, timeouts and network errors (never on 4xx)."),
      retry_delay: z.number().min(0).default(1).describe("Seconds between retries."),
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
    validations: z.array(ValidationSchema).default([]).describe("Checks run after every attempt; a batch is done only when all pass."),
    notifications: z.array(NotificationSchema).default([]).describe("Where to report job and batch events."),
    state_backend: z.enum(["json", "sqlite"]).default("sqlite").describe("How state is stored: SQLite (WAL) or atomic JSON files."),
    state_path: z.string().optional().describe("State folder, relative to the job file. Default: `<workspace>/.mozart`."),
    pause_between_batches_seconds: z.number().min(0).default(10).describe("Pause between batch starts."),
    concurrency: z.int().min(1).max(64).default(1).describe("How many batches run at once."),
  })
  .meta({ title: "Mozart job file", $id: "https://mozart.dev/schema/job.json" });

export type JobInput = z.input<typeof JobSchema>;
export type JobConfig = z.output<typeof JobSchema>;
export type BackendConfig = JobConfig["backend"];
export type ValidationRule = JobConfig["validations"][number];
export type NotificationConfig = JobConfig["notifications"][number];

/** The JSON Schema published by `mozart schema` for editor completion. */
export function jobJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(JobSchema, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
}
