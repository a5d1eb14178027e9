/**
 * Every broken job file gets one clear message with file:line:col, exit code 2, no stack trace.
 * Each row: fixture, expected line, a fragment of the message (and of the hint when it matters).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES, mozart, tempDir } from "../helpers.ts";

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
  ["12-bad-backend-type.yaml", 3, 'unknown backend type "claude"; expected one of claude_cli, anthropic_api, anthropic_batch, command'],
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
  ["26-bad-state-backend.yaml", 7, 'invalid value "redis"'],
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
  ["40-toml-missing-value.toml", 4, "TOML syntax error: invalid value", "every key needs a value"],
  ["41-toml-unterminated-string.toml", 8, "TOML syntax error: control characters are not allowed in strings", "close the string"],
  ["42-toml-duplicate-key.toml", 3, "TOML syntax error: trying to redefine an already defined table or value", "appears twice"],
  ["43-yaml-alias-bomb.yaml", 18, "prompt.variables.lol: YAML aliases expand too much: *i alone stands for 387,420,489 values", "nest aliases"],
  ["44-yaml-unresolved-alias.yaml", 5, "retry: YAML alias *defaults has no anchor &defaults before it", "define the anchor"],
  ["45-unknown-notification-config-key.yaml", 13, 'notifications[1].config.chanel: unknown key "chanel"', 'did you mean "channel"?'],
  ["46-unknown-key-in-command-validation.yaml", 12, 'validations[1].working_directry: unknown key "working_directry"', 'did you mean "working_directory"?'],
  ["47-yaml-alias-inside-its-anchor.yaml", 10, "prompt.variables.defaults.fallback: YAML alias *defaults is inside the value anchored as &defaults", "move the alias out"],
  ["48-bad-json-schema.yaml", 13, "validations[0].schema.properties.count.minimum: not a valid JSON Schema: properties.count.minimum must be number"],
  ["49-json-schema-file-missing.yaml", 12, "cannot read the JSON Schema", "relative to the job file"],
  ["50-bad-jsonpath-assertion.yaml", 12, 'validations[0].assert[1]: invalid assertion: "done" is not a JSON value', "double quotes"],
  ["51-structured-output-without-json-schema.yaml", 8, "a jsonpath rule without path checks the session's structured output", "set backend.json_schema"],
  ["52-unknown-placeholder-json-path.yaml", 9, 'unknown placeholder "batch"'],
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

  test("TOML syntax errors point at the parser's line and column", () => {
    for (const [file, line, column] of [
      ["40-toml-missing-value.toml", 4, 8], // just after "size = "
      ["41-toml-unterminated-string.toml", 8, 42], // the line break inside the string
      ["42-toml-duplicate-key.toml", 3, 1], // the second "name", not the 07:32 quoted in the excerpt
    ] as const) {
      const r = mozart(["validate", "--json", join(DIR, file)]);
      expect(r.code).toBe(2);
      const error = JSON.parse(r.stdout).error;
      expect(error).toMatchObject({ file: join(DIR, file), line, column, path: "" });
      expect(error.message).toStartWith("TOML syntax error: ");
      expect(error.message).not.toContain("Invalid TOML document");
    }
  });

  test("a YAML alias bomb is a config error with --json too: one JSON document, exit 2, no crash", () => {
    const file = join(DIR, "43-yaml-alias-bomb.yaml");
    const start = Date.now();
    const r = mozart(["validate", "--json", file], { timeout: 60_000 });
    expect(Date.now() - start).toBeLessThan(15_000);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout); // throws unless stdout is exactly one JSON document
    expect(Object.keys(doc)).toEqual(["error"]);
    expect(doc.error).toMatchObject({ file, line: 18, column: 10, path: "prompt.variables.lol" });
    expect(doc.error.message).toContain("expand too much");
    expect(doc.error.hint).toContain("nest aliases");
    expect(r.stderr).not.toContain("unexpected error");
    // The same through run, which must refuse it before anything starts.
    const run = mozart(["run", file, "--dry-run"], { timeout: 60_000 });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${file}:18:10`);
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

describe('"did you mean" at every depth', () => {
  const base = 'name: demo\nbatch:\n  size: 2\n  total_items: 10\nprompt:\n  template: "hi"\n';
  // [what the file adds, the key path of the typo, the suggestion]
  const typos: Array<[yaml: string, path: string, guess: string]> = [
    ["retyr: {}\n", "retyr", "retry"],
    ["backend:\n  skip_permission: true\n", "backend.skip_permission", "skip_permissions"],
    ["retry:\n  max_retrys: 1\n", "retry.max_retrys", "max_retries"],
    ["rate_limit:\n  wait_minute: 1\n", "rate_limit.wait_minute", "wait_minutes"],
    ["learning:\n  enable: true\n", "learning.enable", "enabled"],
    ["validations:\n  - {type: file_exists, path: a, descripton: x}\n", "validations[0].descripton", "description"],
    ["validations:\n  - {type: file_modified, path: a, descripton: x}\n", "validations[0].descripton", "description"],
    ["validations:\n  - {type: content_contains, path: a, pattern: x, paht: b}\n", "validations[0].paht", "path"],
    ["validations:\n  - {type: file_exists, path: a}\n  - {type: content_regex, path: a, pattern: x, flag: i}\n", "validations[1].flag", "flags"],
    ["validations:\n  - {type: command_succeeds, command: 'true', timeout_second: 5}\n", "validations[0].timeout_second", "timeout_seconds"],
    ["notifications:\n  - {type: desktop, config: {app_nme: x}}\n", "notifications[0].config.app_nme", "app_name"],
    ["notifications:\n  - {type: slack, on_event: [job_failed]}\n", "notifications[0].on_event", "on_events"],
    ["notifications:\n  - {type: slack, config: {webhook_ulr: x}}\n", "notifications[0].config.webhook_ulr", "webhook_url"],
    ["notifications:\n  - {type: desktop}\n  - {type: webhook, config: {url: x, max_retry: 1}}\n", "notifications[1].config.max_retry", "max_retries"],
    ["notifications:\n  - {type: webhook, config: {url: x, include_metdata: false}}\n", "notifications[0].config.include_metdata", "include_metadata"],
  ];
  const dir = tempDir("mozart-typos-");
  afterAll(() => dir.cleanup());

  for (const [yaml, path, guess] of typos) {
    test(`${path} → ${guess}`, () => {
      const file = join(dir.path, `${path.replace(/\W+/g, "-")}.yaml`);
      writeFileSync(file, base + yaml);
      const r = mozart(["validate", "--json", file]);
      expect(r.code).toBe(2);
      const errors = [JSON.parse(r.stdout).error].flat() as Array<{ path: string; message: string; hint?: string }>;
      const typo = errors.find((e) => e.path === path);
      expect(typo?.message).toStartWith("unknown key");
      expect(typo?.hint).toBe(`did you mean "${guess}"?`);
    });
  }

  test("without a close match, the keys listed are those of the member the rule's type picks", () => {
    const file = join(dir.path, "bogus-type.yaml");
    writeFileSync(file, `${base}validations:\n  - {type: file_exists, path: a, xyzzy: 1}\n`);
    const errors = [JSON.parse(mozart(["validate", "--json", file]).stdout).error].flat() as Array<{ path: string; hint?: string }>;
    expect(errors.find((e) => e.path === "validations[0].xyzzy")?.hint).toBe("valid keys here: type, path, description");
  });
});
