import { describe, expect, test } from "bun:test";
import { completionPrompt, ORIGINAL_PROMPT_LIMIT } from "../../src/prompts/completion.ts";
import type { ValidationResult } from "../../src/state/types.ts";

const r = (type: string, target: string, passed: boolean, description = "", detail = passed ? "ok" : "failed"): ValidationResult => ({
  type,
  target,
  passed,
  description,
  detail,
});

const results: ValidationResult[] = [
  r("file_exists", "/ws/out/a.md", true, "Report A"),
  r("file_modified", "/ws/out/log.md", true, "Log updated"),
  r("content_contains", "/ws/out/a.md", true, "A has a title"),
  r("command_succeeds", "test -s out/a.md", true, "A is not empty"),
  r("file_exists", "/ws/out/b.md", false, "", "file not found: /ws/out/b.md"),
  r("file_modified", "/ws/out/index.md", false, "Index updated", "not modified since the batch started"),
  r("content_regex", "/ws/out/c.md", false, "C has a summary", "no match for /^## Summary/m"),
  r("command_succeeds", "npm test", false, "Tests pass", "exit code 1; output: 2 failing"),
];

function section(text: string, heading: string): string {
  const start = text.indexOf(heading);
  expect(start).toBeGreaterThanOrEqual(0);
  const rest = text.slice(start + heading.length);
  const end = rest.indexOf("\n### ");
  return end === -1 ? rest : rest.slice(0, end);
}

describe("completionPrompt", () => {
  const text = completionPrompt({ batchNum: 7, attempt: 2, maxAttempts: 3, results, originalPrompt: "Write reports A, B and C." });

  test("has the sections in order, with batch and attempt numbers", () => {
    const headings = ["## COMPLETION MODE - Batch 7", "### ALREADY COMPLETED (DO NOT REDO)", "### INCOMPLETE ITEMS (FOCUS HERE)", "### INSTRUCTIONS", "### ORIGINAL TASK CONTEXT"];
    const positions = headings.map((h) => text.indexOf(h));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(text).toContain("attempt 2 of 3");
    expect(text.startsWith("## COMPLETION MODE - Batch 7")).toBe(true);
    expect(text).toMatch(/\n---\n[^\n]+$/);
    expect(text).toBe(text.trim());
  });

  test("lists passed items, with the path for file_modified (R11) and passed commands", () => {
    const done = section(text, "### ALREADY COMPLETED (DO NOT REDO)");
    expect(done).toContain("[CREATED] Report A");
    expect(done).toContain("[UPDATED] Log updated\n  File: /ws/out/log.md");
    expect(done).not.toContain("mtime");
    expect(done).toContain("[VERIFIED] A has a title");
    expect(done).toContain("Command: test -s out/a.md");
    expect(done).not.toContain("npm test");
  });

  test("lists failed items, including failed commands with their output, named by target when undescribed", () => {
    const todo = section(text, "### INCOMPLETE ITEMS (FOCUS HERE)");
    expect(todo).toContain("[MISSING] /ws/out/b.md");
    expect(todo).not.toContain("Unnamed");
    expect(todo).toContain("[NOT UPDATED] Index updated");
    expect(todo).toContain("[PATTERN NOT MATCHED] C has a summary");
    expect(todo).toContain("no match for /^## Summary/m");
    expect(todo).toContain("[COMMAND FAILED] Tests pass");
    expect(todo).toContain("Command: npm test");
    expect(todo).toContain("exit code 1; output: 2 failing");
    expect(todo).not.toContain("Report A");
  });

  test("a batch failing only on a command still gets a to-do list", () => {
    const only = completionPrompt({ batchNum: 1, attempt: 1, maxAttempts: 1, results: [r("file_exists", "/x", true), r("command_succeeds", "make check", false)], originalPrompt: "p" });
    const todo = section(only, "### INCOMPLETE ITEMS (FOCUS HERE)");
    expect(todo).toContain("make check");
    expect(todo).not.toContain("(none)");
  });

  test("shows (none) for an empty list", () => {
    const none = completionPrompt({ batchNum: 1, attempt: 1, maxAttempts: 1, results: [r("file_exists", "/x", false)], originalPrompt: "p" });
    expect(section(none, "### ALREADY COMPLETED (DO NOT REDO)")).toContain("(none)");
  });

  test("keeps a short original prompt whole", () => {
    expect(section(text, "### ORIGINAL TASK CONTEXT")).toContain("Write reports A, B and C.");
    expect(text).not.toContain("truncated");
  });

  test("cuts a long original prompt at the limit, with a marker", () => {
    const original = `${"x".repeat(ORIGINAL_PROMPT_LIMIT)}TAIL-THAT-MUST-GO`;
    const long = completionPrompt({ batchNum: 1, attempt: 1, maxAttempts: 1, results, originalPrompt: original });
    expect(long).toContain("x".repeat(ORIGINAL_PROMPT_LIMIT));
    expect(long).not.toContain("TAIL-THAT-MUST-GO");
    expect(long).toContain(`truncated: ${ORIGINAL_PROMPT_LIMIT} of ${original.length} characters shown`);
  });

  test("a prompt exactly at the limit is not marked as truncated", () => {
    const exact = completionPrompt({ batchNum: 1, attempt: 1, maxAttempts: 1, results, originalPrompt: "y".repeat(ORIGINAL_PROMPT_LIMIT) });
    expect(exact).not.toContain("truncated");
  });

  test("never splits a surrogate pair at the cut", () => {
    const original = `${"a".repeat(ORIGINAL_PROMPT_LIMIT - 1)}😀${"b".repeat(10)}`;
    const cut = completionPrompt({ batchNum: 1, attempt: 1, maxAttempts: 1, results, originalPrompt: original });
    expect(cut).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])/);
    expect(cut).toContain(`truncated: ${ORIGINAL_PROMPT_LIMIT - 1} of`);
  });
});

describe("completionPrompt: JSON rules", () => {
  const json: ValidationResult[] = [
    r("json_schema", "/ws/out/a.json", true, "A follows the schema"),
    r("jsonpath", "structured output", true, "", "holds: $.ok == true"),
    r("json_schema", "structured output", false, "The answer follows the schema", "does not match the JSON Schema: $.items[1].score: must be number"),
    r("jsonpath", "/ws/out/b.json", false, "B has ten items", "assertion failed: $.items.length is 7, expected == 10"),
  ];
  const text = completionPrompt({ batchNum: 3, attempt: 2, maxAttempts: 3, results: json, originalPrompt: "x", resumed: true });

  test("passed rules are verified, naming the file or the structured answer", () => {
    const done = section(text, "### ALREADY COMPLETED (DO NOT REDO)");
    expect(done).toContain("- [VERIFIED] A follows the schema\n  File: /ws/out/a.json");
    expect(done).toContain("- [VERIFIED] structured output\n  Checked: your structured answer");
  });

  test("failed rules carry the failing paths and say what to fix where", () => {
    const todo = section(text, "### INCOMPLETE ITEMS (FOCUS HERE)");
    expect(todo).toContain("- [SCHEMA NOT MATCHED] The answer follows the schema");
    expect(todo).toContain("Check result: does not match the JSON Schema: $.items[1].score: must be number");
    expect(todo).toContain("give a final answer whose JSON fixes each path named above");
    expect(todo).toContain("- [ASSERTION FAILED] B has ten items\n  File: /ws/out/b.json");
    expect(todo).toContain("$.items.length is 7, expected == 10");
    expect(todo).toContain("fix the JSON in this file at each path named above");
  });
});
