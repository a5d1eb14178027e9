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
      output_format: "json",
      timeout_seconds: 1800,
      api_key_env: "ANTHROPIC_API_KEY",
      max_tokens: 8192,
      temperature: 0.7,
      env: {},
      extra_args: [],
    });
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
      completion_threshold_percent: 50,
    });
  });
  test("rate limits: patterns default empty (they add to the built-ins)", () => {
    expect(c.rate_limit).toEqual({ wait_minutes: 60, max_waits: 24, detection_patterns: [] });
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
