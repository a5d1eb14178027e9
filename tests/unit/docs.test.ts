import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { configurationMarkdown } from "../../src/config/docs.ts";
import { jobJsonSchema } from "../../src/config/schema.ts";
import { withWebhookFields } from "../../src/notify/docs.ts";
import { webhookJsonSchema } from "../../src/notify/payload.ts";
import { ROOT } from "../helpers.ts";

describe("generated docs match the schema", () => {
  test("docs/configuration.md is current (run `bun run docs:config`)", () => {
    expect(readFileSync(join(ROOT, "docs", "configuration.md"), "utf8")).toBe(configurationMarkdown());
  });
  test("docs/job.schema.json is current (run `bun run docs:config`)", () => {
    expect(JSON.parse(readFileSync(join(ROOT, "docs", "job.schema.json"), "utf8"))).toEqual(jobJsonSchema());
  });
  test("docs/webhook.schema.json is current (run `bun run docs:config`)", () => {
    expect(JSON.parse(readFileSync(join(ROOT, "docs", "webhook.schema.json"), "utf8"))).toEqual(webhookJsonSchema());
  });
  test("the field table of docs/webhook.md is current (run `bun run docs:config`)", () => {
    const md = readFileSync(join(ROOT, "docs", "webhook.md"), "utf8");
    expect(md).toBe(withWebhookFields(md));
    for (const field of ["schema_version", "occurred_at", "progress.completed", "hold.until", "next_commands"]) expect(md).toContain(`| \`${field}\` |`);
  });
  test("every schema key is documented with its default", () => {
    const md = configurationMarkdown();
    for (const key of ["max_retries", "completion_threshold_percent", "wait_minutes", "detection_patterns", "skip_permissions", "claude_max_retries", "concurrency", "state_backend", "webhook_url_env"]) {
      expect(md).toContain(`\`${key}\``);
    }
    expect(md).toContain("| `max_retries` | integer (≥ 0) | `3` |");
  });
});
