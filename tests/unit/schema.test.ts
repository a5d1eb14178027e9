import { describe, expect, test } from "bun:test";
import { JobSchema, jobJsonSchema } from "../../src/config/schema.ts";

const minimal = { name: "j", batch: { size: 2, total_items: 5 }, prompt: { template: "hi" } };

describe("schema defaults", () => {
  const c = JobSchema.parse(minimal);
  test("top level", () => {
    expect(c.workspace).toBe("./workspace");
    expect(c.state_backend).toBe("sqlite");
    expect(c.concurrency).toBe(1);
    expect(c.pause_between_batches_seconds).toBe(10);
    expect(c.validations).toEqual([]);
    expect(c.notifications).toEqual([]);
    expect(c.batch.start_item).toBe(1);
    expect(c.prompt.variables).toEqual({});
  });
  test("backend", () => {
    expect(c.backend).toMatchObject({
      type: "claude_cli",
      skip_permissions: false,
      output_format: "stream-json",
      timeout_seconds: 1800,
      env: {},
      extra_args: [],
    });
    // The API keys belong to the API backends: a claude_cli backend has none of their defaults.
    expect(c.backend).not.toHaveProperty("max_tokens");
  });
  test("each backend type has its own keys and defaults", () => {
    const api = JobSchema.parse({ ...minimal, backend: { type: "anthropic_api" } }).backend;
    expect(api).toMatchObject({ type: "anthropic_api", model: "claude-sonnet-4-20250514", api_key_env: "ANTHROPIC_API_KEY", max_tokens: 8192, temperature: 0.7, output_path: "{workspace}/batch{batch_num}-output.md", cache: true, cache_ttl: "5m", continue_on_max_tokens: false, timeout_seconds: 1800 });
    const batch = JobSchema.parse({ ...minimal, backend: { type: "anthropic_batch" } }).backend;
    expect(batch).toMatchObject({ type: "anthropic_batch", cache_ttl: "1h", requests_per_batch: 10_000, timeout_seconds: 90_000 });
    expect(JobSchema.safeParse({ ...minimal, backend: { type: "anthropic_api", base_url: "http://127.0.0.1:4000" } }).success).toBe(true);
    expect(JobSchema.safeParse({ ...minimal, backend: { type: "claude_cli", base_url: "http://127.0.0.1:4000" } }).success).toBe(false);
    expect(JobSchema.safeParse({ ...minimal, backend: { type: "command", command: "true", model: "x" } }).success).toBe(false);
    expect(JobSchema.safeParse({ ...minimal, backend: { type: "anthropic_batch", requests_per_batch: 100_001 } }).success).toBe(false);
    expect(JobSchema.parse({ ...minimal, budget: { max_cost_usd: 5 } }).budget).toEqual({ max_cost_usd: 5 });
  });
  test("retry: max_retries means retries", () => {
    expect(c.retry).toEqual({
      max_retries: 3,
      base_delay_seconds: 10,
      max_delay_seconds: 3600,
      exponential_base: 2,
      jitter: true,
      max_completion_attempts: 3,
      completion_delay_seconds: 5,
      continue_session: true,
      completion_threshold_percent: 50,
    });
  });
  test("rate limits: patterns default empty (they add to the built-ins)", () => {
    expect(c.rate_limit).toEqual({ wait_minutes: 60, max_waits: 24, admission_threshold: 0.9, detection_patterns: [] });
  });
  test("notification defaults per channel", () => {
    const n = JobSchema.parse({ ...minimal, notifications: [{ type: "slack" }, { type: "desktop" }] }).notifications;
    expect(n[0]).toMatchObject({ on_events: ["job_complete", "job_failed"], config: { webhook_url_env: "SLACK_WEBHOOK_URL" } });
    expect(n[1]).toMatchObject({ config: { app_name: "Mozart", timeout: 10 } });
  });
  test("validation defaults", () => {
    const v = JobSchema.parse({
      ...minimal,
      validations: [{ type: "command_succeeds", command: "true" }, { type: "content_regex", path: "a", pattern: "x" }],
    }).validations;
    expect(v[0]).toMatchObject({ timeout_seconds: 300 });
    expect(v[1]).toMatchObject({ flags: "" });
  });
  test("learning is accepted for compatibility", () => {
    expect(JobSchema.parse({ ...minimal, learning: { enabled: true, escalation_enabled: false } }).learning.enabled).toBe(true);
  });
  test("unknown keys are rejected at every level", () => {
    expect(JobSchema.safeParse({ ...minimal, concurency: 2 }).success).toBe(false);
    expect(JobSchema.safeParse({ ...minimal, backend: { typ: "command" } }).success).toBe(false);
  });
  test("JSON Schema is generated from the same schema", () => {
    const s = jobJsonSchema() as { properties: Record<string, { default?: unknown }>; required: string[]; additionalProperties: boolean };
    expect(s.required).toEqual(["name", "batch", "prompt"]);
    expect(s.additionalProperties).toBe(false);
    expect(s.properties.concurrency?.default).toBe(1);
    expect(Object.keys(s.properties)).toContain("rate_limit");
  });
});
