/**
 * Every broken job file gets one clear message with file:line:col, exit code 2, no stack trace.
 * Each row: fixture, expected line, a fragment of the message (and of the hint when it matters).
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, mozart } from "../helpers.ts";

const DIR = join(FIXTURES, "broken");

const cases: Array<[file: string, line: number, fragment: string, hint?: string]> = [
  ["01-yaml-syntax.yaml", 3, "YAML syntax error"],
  ["02-tab-indent.yaml", 3, "Tabs are not allowed", "indent with spaces"],
  ["03-wrong-type.yaml", 3, 'batch.size: expected number, got the string "ten"'],
  ["04-out-of-range.yaml", 3, "batch.size: value must be >= 1"],
  ["05-missing-batch.yaml", 1, 'missing required key "batch"'],
  ["06-missing-total.yaml", 2, 'missing required key "total_items"'],
  ["07-unknown-top-key.yaml", 7, 'unknown key "retyr"', 'did you mean "retry"?'],
  ["08-unknown-nested-key.yaml", 8, 'unknown key "max_retrys"', 'did you mean "max_retries"?'],
  ["09-unknown-validation-type.yaml", 8, 'unknown validation type "file_exist"', 'did you mean "file_exists"?'],
  ["10-validation-missing-path.yaml", 8, 'missing required key "path"'],
  ["11-unknown-validation-key.yaml", 9, 'unknown key "paht"', 'did you mean "path"?'],
  ["12-bad-backend-type.yaml", 3, 'invalid value "claude"; expected one of claude_cli'],
  ["13-template-file-missing.yaml", 6, "template_file not found", "relative to the job file"],
  ["14-bad-regex.yaml", 10, "invalid regular expression"],
  ["15-bad-detection-pattern.yaml", 10, "rate_limit.detection_patterns[1]: invalid regular expression"],
  ["16-unknown-placeholder-path.yaml", 9, 'unknown placeholder "batch_number"', "batch_num"],
  ["17-unknown-placeholder-command.yaml", 9, 'unknown placeholder "batch"'],
  ["18-start-after-total.yaml", 5, "start_item (11) is after total_items (10)"],
  ["19-no-template.yaml", 6, "neither template nor template_file"],
  ["20-undefined-variable.yaml", 8, 'undefined variable "topic" in batch 1', "prompt.variables"],
  ["21-unsupported-jinja-tag.yaml", 8, '"{% set %}" is not supported'],
  ["22-unclosed-for.yaml", 12, "{% for %} is never closed"],
  ["23-shadowed-builtin.yaml", 8, '"batch_num" shadows a built-in'],
  ["24-unquoted-braces.yaml", 6, "expected string, got a mapping", "block scalar"],
  ["25-duplicate-key.yaml", 4, "Map keys must be unique"],
  ["26-bad-state-backend.yaml", 7, 'invalid value "postgres"'],
  ["27-bad-notification-event.yaml", 9, 'invalid value "job_finished"'],
  ["28-command-backend-without-command.yaml", 3, "needs backend.command"],
  ["29-concurrency-zero.yaml", 7, "concurrency: value must be >= 1"],
  ["30-empty.yaml", 1, "the job file is empty"],
  ["31-top-level-list.yaml", 1, "expected a mapping of keys"],
  ["32-unknown-filter.yaml", 8, 'unknown filter "shout"'],
  ["33-bad-types.json", 5, 'batch.total_items: expected number, got the string "ten"'],
  ["34-unknown-key.toml", 8, 'unknown key "templat"', 'did you mean "template"?'],
  ["35-temperature-range.yaml", 4, "backend.temperature: value must be <= 1"],
  ["36-max-delay-below-base.yaml", 9, "max_delay_seconds (5) is below base_delay_seconds (30)"],
  ["37-webhook-without-url.yaml", 11, "needs config.url or config.url_env"],
  ["38-email-notification.yaml", 8, 'unknown notification type "email"'],
  ["39-template-file-syntax.yaml", 5, "{% endfor %} without a matching {% for %}"],
];

describe("broken job files", () => {
  test("every fixture has a row", () => {
    expect(readdirSync(DIR).sort()).toEqual(cases.map((c) => c[0]).sort());
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  for (const [file, line, fragment, hint] of cases) {
    test(file, () => {
      const r = mozart(["validate", join(DIR, file)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(fragment);
      if (hint) expect(r.stderr).toContain(hint);
      // file:line:col of the first problem (the template file for template_file syntax errors).
      const located = file.startsWith("39-") ? join(FIXTURES, "templates", "broken.md") : join(DIR, file);
      expect(r.stderr).toMatch(new RegExp(`${located.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:${line}:\\d+`));
      expect(r.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace
      expect(r.stdout).toBe("");
    });
  }

  test("--json reports the error as JSON on stdout with file, line, column and path", () => {
    const r = mozart(["validate", "--json", join(DIR, "03-wrong-type.yaml")]);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc.error).toMatchObject({ file: join(DIR, "03-wrong-type.yaml"), line: 3, column: 9, path: "batch.size" });
    expect(doc.error.message).toContain("expected number");
  });

  test("--json lists several errors at once", () => {
    const r = mozart(["validate", "--json", join(DIR, "11-unknown-validation-key.yaml")]);
    const doc = JSON.parse(r.stdout);
    expect(Array.isArray(doc.error)).toBe(true);
    expect(doc.error.map((e: { path: string }) => e.path)).toEqual(["validations[0]", "validations[0].paht"]);
  });

  test("a stack trace appears only with --verbose for unexpected errors, never for config errors", () => {
    const r = mozart(["validate", "--verbose", join(DIR, "03-wrong-type.yaml")]);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toContain("    at ");
  });

  test("a missing job file is a usage error naming the file", () => {
    const r = mozart(["validate", "nope/missing.yaml"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("cannot read job file nope/missing.yaml: no such file");
  });

  test("run refuses a broken job file before running anything", () => {
    const r = mozart(["run", join(DIR, "20-undefined-variable.yaml"), "--dry-run"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('undefined variable "topic"');
  });
});
