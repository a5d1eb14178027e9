import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, openSync, readFileSync, closeSync, utimesSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import { join } from "node:path";
import type { ExpandedRule } from "../../src/config/check.ts";
import type { ValidationRule } from "../../src/config/schema.ts";
import { MAX_REGEX_BYTES, runValidations, snapshotMtimes, summarize } from "../../src/engine/validate.ts";
import type { ValidationResult } from "../../src/state/types.ts";
import { tempDir } from "../helpers.ts";

let dir: { path: string; cleanup: () => void };
let ws: string;
beforeAll(() => {
  dir = tempDir("mozart-validate-");
  ws = dir.path;
});
afterAll(() => dir.cleanup());

/** A rule as the prepared job hands it over: with its target (the engine resolves paths itself). */
const expanded = (rule: ValidationRule): ExpandedRule => ({ ...rule, target: rule.type === "command_succeeds" ? rule.command : (rule.path ?? "structured output") });

async function one(rule: ValidationRule, baseline: Record<string, number> = {}, signal?: AbortSignal): Promise<ValidationResult> {
  const [r] = await runValidations([expanded(rule)], { workspace: ws, baseline, ...(signal ? { signal } : {}) });
  if (!r) throw new Error("no result");
  return r;
}

const cmd = (command: string, extra: Partial<Extract<ValidationRule, { type: "command_succeeds" }>> = {}): ValidationRule => ({
  type: "command_succeeds",
  command,
  timeout_seconds: 30,
  ...extra,
});

function write(rel: string, content: string | Buffer): string {
  const p = join(ws, rel);
  mkdirSync(join(p, ".."), { recursive: true });
  writeFileSync(p, content);
  return p;
}

/** Dead, or a zombie nobody reaped yet (PID 1 in a container may not reap). */
function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    if (existsSync("/proc/self")) return true;
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

describe("file_exists", () => {
  test("passes for a regular file, resolving a relative path against the workspace (V3)", async () => {
    const p = write("out/a.md", "hello");
    const r = await one({ type: "file_exists", path: "out/a.md" });
    expect(r).toMatchObject({ type: "file_exists", passed: true, target: p, description: p });
    expect(r.detail).toContain("5 bytes");
  });

  test("fails for a missing file, with the path in the detail", async () => {
    const r = await one({ type: "file_exists", path: "out/missing.md", description: "the report" });
    expect(r.passed).toBe(false);
    expect(r.description).toBe("the report");
    expect(r.detail).toBe(`file not found: ${join(ws, "out/missing.md")}`);
  });

  test("a directory is not a file", async () => {
    mkdirSync(join(ws, "adir"), { recursive: true });
    const r = await one({ type: "file_exists", path: join(ws, "adir") });
    expect(r.passed).toBe(false);
    expect(r.detail).toContain("is a directory");
  });
});

describe("file_modified", () => {
  test("a file created in attempt 1 still counts in attempt 2 when the baseline is from before attempt 1 (R10)", async () => {
    const rule: ValidationRule = { type: "file_modified", path: "r10/summary.md" };
    const p = join(ws, "r10/summary.md");
    const baseline = await snapshotMtimes([p]);
    expect(baseline[p]).toBe(0);

    expect((await one(rule, baseline)).passed).toBe(false); // before attempt 1 writes anything
    write("r10/summary.md", "written by attempt 1");
    const attempt1 = await one(rule, baseline);
    expect(attempt1.passed).toBe(true);
    expect(attempt1.detail).toContain("created");

    // Attempt 2 (completion mode) is told not to touch the file, and doesn't.
    const attempt2 = await one(rule, baseline);
    expect(attempt2.passed).toBe(true);

    // Re-taking the baseline per attempt is the reference's bug: the rule would flip to failing.
    expect((await one(rule, await snapshotMtimes([p]))).passed).toBe(false);
  });

  test("an existing file passes only after it is written again", async () => {
    const p = write("mod/existing.md", "old");
    utimesSync(p, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const baseline = await snapshotMtimes([p]);
    expect(baseline[p]).toBeGreaterThan(0);
    const rule: ValidationRule = { type: "file_modified", path: p };

    const untouched = await one(rule, baseline);
    expect(untouched.passed).toBe(false);
    expect(untouched.detail).toContain("not modified");

    writeFileSync(p, "new");
    const touched = await one(rule, baseline);
    expect(touched.passed).toBe(true);
    expect(touched.detail).toContain("modified");
  });

  test("compares with sub-millisecond precision", async () => {
    const p = write("mod/precise.md", "x");
    utimesSync(p, 1_700_000_000.0001, 1_700_000_000.0001);
    const baseline = await snapshotMtimes([p]);
    utimesSync(p, 1_700_000_000.0009, 1_700_000_000.0009);
    expect((await one({ type: "file_modified", path: p }, baseline)).passed).toBe(true);
  });

  test("fails when the file does not exist now", async () => {
    const p = join(ws, "mod/never.md");
    const r = await one({ type: "file_modified", path: p }, await snapshotMtimes([p]));
    expect(r.passed).toBe(false);
    expect(r.detail).toContain("file not found");
  });
});

describe("content_contains", () => {
  test("passes on a literal, case-sensitive match and fails otherwise", async () => {
    write("c/notes.md", "# Title\nStatus: DONE (a.b*)\n");
    expect((await one({ type: "content_contains", path: "c/notes.md", pattern: "DONE (a.b*)" })).passed).toBe(true);
    const lower = await one({ type: "content_contains", path: "c/notes.md", pattern: "done" });
    expect(lower.passed).toBe(false);
    expect(lower.detail).toContain('"done"');
  });

  test("fails for a missing file or a directory", async () => {
    expect((await one({ type: "content_contains", path: "c/none.md", pattern: "x" })).detail).toContain("file not found");
    expect((await one({ type: "content_contains", path: "c", pattern: "x" })).detail).toContain("is a directory");
  });

  test("a 20 MB file: finds text at the very end and text spanning a read-chunk boundary", async () => {
    const size = 20 * 1024 * 1024;
    const buf = Buffer.alloc(size, "a");
    buf.write("NEEDLE-AT-END", size - 13);
    buf.write("SPLIT-ACROSS-CHUNKS", (1 << 20) - 7);
    write("big/20mb.txt", buf);
    const at = (pattern: string) => one({ type: "content_contains", path: "big/20mb.txt", pattern });
    expect((await at("NEEDLE-AT-END")).passed).toBe(true);
    expect((await at("SPLIT-ACROSS-CHUNKS")).passed).toBe(true);
    expect((await at("NOT-THERE")).passed).toBe(false);
    expect((await one({ type: "content_regex", path: "big/20mb.txt", pattern: "SPLIT-\\w+-CHUNKS", flags: "" })).passed).toBe(true);
  });

  test("a 200 MB (sparse) file is streamed, not loaded", async () => {
    const p = join(ws, "big/200mb.bin");
    const fd = openSync(p, "w");
    ftruncateSync(fd, 200 * 1024 * 1024);
    writeSync(fd, "FINAL-MARK", 200 * 1024 * 1024 - 10);
    closeSync(fd);
    const before = process.memoryUsage().rss;
    expect((await one({ type: "content_contains", path: p, pattern: "FINAL-MARK" })).passed).toBe(true);
    expect(process.memoryUsage().rss - before).toBeLessThan(100 * 1024 * 1024);
  });
});

describe("content_regex", () => {
  test("uses the rule's flags", async () => {
    write("re/doc.md", "intro\n## Summary\nAll good\n");
    const rule = (pattern: string, flags: string): ValidationRule => ({ type: "content_regex", path: "re/doc.md", pattern, flags });
    expect((await one(rule("^## Summary$", ""))).passed).toBe(false);
    const multi = await one(rule("^## Summary$", "m"));
    expect(multi.passed).toBe(true);
    expect(multi.detail).toContain("## Summary");
    expect((await one(rule("all GOOD", ""))).passed).toBe(false);
    expect((await one(rule("all GOOD", "i"))).passed).toBe(true);
    expect((await one(rule("Summary.All", ""))).passed).toBe(false);
    expect((await one(rule("Summary.All", "s"))).passed).toBe(true);
  });

  test("an invalid regex is a failed result, not an exception", async () => {
    const r = await one({ type: "content_regex", path: "re/doc.md", pattern: "([a-z", flags: "" });
    expect(r.passed).toBe(false);
    expect(r.detail).toContain("invalid regular expression");
  });

  test("searches only the head of a file larger than the regex limit, and says so", async () => {
    const p = join(ws, "big/huge-regex.bin");
    const fd = openSync(p, "w");
    ftruncateSync(fd, MAX_REGEX_BYTES + 1024);
    writeSync(fd, "HEAD-MARK", 100);
    writeSync(fd, "TAIL-MARK", MAX_REGEX_BYTES + 100);
    closeSync(fd);
    expect((await one({ type: "content_regex", path: p, pattern: "HEAD-MARK", flags: "" })).passed).toBe(true);
    const tail = await one({ type: "content_regex", path: p, pattern: "TAIL-MARK", flags: "" });
    expect(tail.passed).toBe(false);
    expect(tail.detail).toContain("only the first 64 MiB");
  });
});

describe("command_succeeds", () => {
  test("exit 0 passes; a failure reports the exit code and a bounded output tail", async () => {
    const ok = await one(cmd("echo hello"));
    expect(ok).toMatchObject({ passed: true, target: "echo hello", detail: "exit code 0" });

    const bad = await one(cmd(`printf 'x%.0s' $(seq 1 2000); echo END-OF-OUTPUT >&2; exit 3`));
    expect(bad.passed).toBe(false);
    expect(bad.detail).toContain("exit code 3");
    expect(bad.detail).toContain("END-OF-OUTPUT");
    expect(bad.detail).toContain("of 2014 chars");
    const tail = bad.detail.slice(bad.detail.indexOf("): ") + 3);
    expect(tail.length).toBeLessThanOrEqual(500);
  });

  test("runs in the workspace by default, or in working_directory resolved against it", async () => {
    write("cwd-marker.txt", "root");
    write("sub/dir/marker.txt", "sub");
    expect((await one(cmd("test -f cwd-marker.txt"))).passed).toBe(true);
    expect((await one(cmd("test -f marker.txt", { working_directory: "sub/dir" }))).passed).toBe(true);
    expect((await one(cmd("test -f marker.txt", { working_directory: join(ws, "sub/dir") }))).passed).toBe(true);
    const missing = await one(cmd("true", { working_directory: "no/such/dir" }));
    expect(missing.passed).toBe(false);
    expect(missing.detail).toContain("working directory does not exist");
  });

  test("uses /bin/sh -c, with the environment inherited", async () => {
    process.env.MOZART_VALIDATE_PROBE = "probe-value";
    const r = await one(cmd(`test "$MOZART_VALIDATE_PROBE" = probe-value && exit 0; exit 9`));
    delete process.env.MOZART_VALIDATE_PROBE;
    expect(r.passed).toBe(true);
  });

  test("a timeout kills the whole process group, grandchildren included", async () => {
    const pidFile = join(ws, "grandchild.pid");
    const started = Date.now();
    const r = await one(cmd(`sleep 30 & echo $! > ${pidFile}; wait`, { timeout_seconds: 0.5 }));
    const elapsed = Date.now() - started;
    expect(r.passed).toBe(false);
    expect(r.detail).toContain("timed out after 0.5s");
    expect(elapsed).toBeLessThan(5000);
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    expect(pid).toBeGreaterThan(0);
    expect(isGone(pid)).toBe(true);
  });

  test("a background process left holding the output pipe does not hang the check", async () => {
    const started = Date.now();
    const r = await one(cmd("sleep 30 & echo started"));
    expect(r.passed).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("runs asynchronously: timers keep firing while a command runs", async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 20);
    const r = await one(cmd("sleep 0.5"));
    clearInterval(timer);
    expect(r.passed).toBe(true);
    expect(ticks).toBeGreaterThanOrEqual(10);
  });

  test("an abort signal kills a running command and skips the ones not started", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const started = Date.now();
    const results = await runValidations([cmd("sleep 30"), cmd("true")].map(expanded), { workspace: ws, baseline: {}, signal: ac.signal });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(results.map((r) => r.passed)).toEqual([false, false]);
    expect(results[0]?.detail).toContain("interrupted");
    expect(results[1]?.detail).toContain("not run");
  });
});

describe("json_schema", () => {
  const schema = {
    type: "object",
    required: ["title", "items"],
    additionalProperties: false,
    properties: {
      title: { type: "string", minLength: 1 },
      items: { type: "array", minItems: 1, items: { type: "object", required: ["score"], properties: { score: { type: "number", maximum: 1 } } } },
      status: { enum: ["done", "partial"] },
    },
  };

  test("a JSON file that matches passes; one that does not names every failing path", async () => {
    write("js/good.json", JSON.stringify({ title: "t", items: [{ score: 0.5 }], status: "done" }));
    expect(await one({ type: "json_schema", path: "js/good.json", schema })).toMatchObject({ passed: true, detail: "matches the JSON Schema", target: join(ws, "js/good.json") });
    write("js/bad.json", JSON.stringify({ items: [{ score: 0.5 }, { score: "high" }, {}], status: "maybe", extra: 1 }));
    const r = await one({ type: "json_schema", path: "js/bad.json", schema });
    expect(r.passed).toBe(false);
    expect(r.detail).toStartWith("does not match the JSON Schema: ");
    for (const part of ["$.title: is required", "$.extra: is not allowed", "$.items[1].score: must be number", "$.items[2].score: is required", '$.status: must be one of ["done","partial"]']) {
      expect(r.detail).toContain(part);
    }
  });

  test("the dialect follows $schema: 2020-12 with if/then, and formats are checked", async () => {
    const s2020 = { $schema: "https://json-schema.org/draft/2020-12/schema", type: "object", if: { properties: { kind: { const: "event" } } }, then: { required: ["when"] }, properties: { when: { type: "string", format: "date" } } };
    write("js/event.json", JSON.stringify({ kind: "event" }));
    expect((await one({ type: "json_schema", path: "js/event.json", schema: s2020 })).detail).toContain("$.when: is required");
    write("js/event2.json", JSON.stringify({ kind: "event", when: "next tuesday" }));
    expect((await one({ type: "json_schema", path: "js/event2.json", schema: s2020 })).detail).toContain('$.when: must match format "date"');
    write("js/event3.json", JSON.stringify({ kind: "event", when: "2026-12-02" }));
    expect((await one({ type: "json_schema", path: "js/event3.json", schema: s2020 })).passed).toBe(true);
  });

  test("a file that is not JSON, a missing file and a directory fail with what was found", async () => {
    write("js/broken.json", '{"title": ');
    const broken = await one({ type: "json_schema", path: "js/broken.json", schema });
    expect(broken.passed).toBe(false);
    expect(broken.detail).toContain("is not valid JSON");
    expect((await one({ type: "json_schema", path: "js/none.json", schema })).detail).toContain("file not found");
    expect((await one({ type: "json_schema", path: "js", schema })).detail).toContain("is a directory");
  });

  test("without a path it checks the attempt's structured output, and says so when there is none", async () => {
    const rule = expanded({ type: "json_schema", schema });
    const [ok] = await runValidations([rule], { workspace: ws, baseline: {}, structuredOutput: { title: "t", items: [{ score: 1 }] } });
    expect(ok).toMatchObject({ passed: true, target: "structured output" });
    const [bad] = await runValidations([rule], { workspace: ws, baseline: {}, structuredOutput: { title: "", items: [] } });
    expect(bad!.detail).toContain("$.title: must NOT have fewer than 1 characters");
    expect(bad!.detail).toContain("$.items: must NOT have fewer than 1 items");
    const [none] = await runValidations([rule], { workspace: ws, baseline: {} });
    expect(none).toMatchObject({ passed: false });
    expect(none!.detail).toContain("no structured output");
  });

  test("a long list of failures names the first five and counts the rest", async () => {
    const wide = { type: "object", properties: Object.fromEntries("abcdefgh".split("").map((k) => [k, { type: "number" }])) };
    write("js/wide.json", JSON.stringify(Object.fromEntries("abcdefgh".split("").map((k) => [k, "x"]))));
    const r = await one({ type: "json_schema", path: "js/wide.json", schema: wide });
    expect(r.detail).toContain("$.e: must be number");
    expect(r.detail).not.toContain("$.f:");
    expect(r.detail).toEndWith("; and 3 more");
  });
});

describe("jsonpath", () => {
  const doc = { items: [{ id: "a", score: 0.9 }, { id: "b", score: 0.2 }, { id: "c", score: 0.7 }], status: "done", meta: { "odd key": 1 } };
  beforeAll(() => write("jp/out.json", JSON.stringify(doc)));

  test("assertions that hold pass: lengths, equality, every match of a wildcard, filters, bare paths", async () => {
    const assert = ["$.items.length == 3", '$.status == "done"', "$.items[*].score >= 0.2", "$.items[?(@.score > 0.5)].id != \"b\"", '$.meta["odd key"] == 1', "$.meta", "$.items[0] == {\"id\": \"a\", \"score\": 0.9}"];
    const r = await one({ type: "jsonpath", path: "jp/out.json", assert });
    expect(r.detail).toBe(`all ${assert.length} assertions hold`);
    expect(r.passed).toBe(true);
    expect((await one({ type: "jsonpath", path: "jp/out.json", assert: "$.items.length == 3" })).detail).toBe("holds: $.items.length == 3");
  });

  test("a failing assertion names the path, the value found and what was expected", async () => {
    const r = await one({ type: "jsonpath", path: "jp/out.json", assert: ["$.items.length == 10", "$.items[*].score >= 0.5", "$.summary", '$.status == "draft"', "$.items.length > 1"] });
    expect(r.passed).toBe(false);
    expect(r.detail).toStartWith("4 of 5 assertions failed: ");
    expect(r.detail).toContain("$.items.length is 3, expected == 10");
    expect(r.detail).toContain("$.items[1].score (one of 3 matches of $.items[*].score) is 0.2, expected >= 0.5");
    expect(r.detail).toContain("$.summary: matched nothing");
    expect(r.detail).toContain('$.status is "done", expected == "draft"');
  });

  test("comparing across types fails rather than coercing", async () => {
    write("jp/types.json", JSON.stringify({ n: "10", flag: 1 }));
    const r = await one({ type: "jsonpath", path: "jp/types.json", assert: ["$.n > 5", "$.flag == true"] });
    expect(r.detail).toContain('$.n is "10", expected > 5');
    expect(r.detail).toContain("$.flag is 1, expected == true");
  });

  test("the structured output, when there is no path", async () => {
    const rule = expanded({ type: "jsonpath", assert: "$.count == 2" });
    const [ok] = await runValidations([rule], { workspace: ws, baseline: {}, structuredOutput: { count: 2 } });
    expect(ok).toMatchObject({ passed: true, target: "structured output" });
    const [bad] = await runValidations([rule], { workspace: ws, baseline: {}, structuredOutput: { count: 3 } });
    expect(bad!.detail).toBe("assertion failed: $.count is 3, expected == 2");
    expect(bad!.description).toBe("structured output: $.count == 2");
  });

  test("filters run in the safe evaluator: an expression that reaches for code fails the rule, nothing runs", async () => {
    const marker = join(ws, "jp/pwned");
    const r = await one({ type: "jsonpath", path: "jp/out.json", assert: `$.items[?(@.constructor.constructor('require("fs").writeFileSync("${marker}", "x")')())]` });
    expect(r.passed).toBe(false);
    expect(existsSync(marker)).toBe(false);
  });
});

describe("runValidations", () => {
  test("runs every rule in order and never throws, even for a malformed rule", async () => {
    write("order/a.txt", "A");
    const rules = [
      { type: "file_exists", path: "order/a.txt" },
      { type: "bogus_rule", path: "order/a.txt" } as unknown as ValidationRule,
      { type: "file_exists", path: "order/b.txt" },
      cmd("exit 0"),
    ] as ValidationRule[];
    const results = await runValidations(rules.map(expanded), { workspace: ws, baseline: {} });
    expect(results.map((r) => [r.type, r.passed])).toEqual([
      ["file_exists", true],
      ["bogus_rule", false],
      ["file_exists", false],
      ["command_succeeds", true],
    ]);
    expect(results[1]?.detail).toContain('unknown rule type "bogus_rule"');
  });

  test("summarize counts and reports 100% for no rules", async () => {
    expect(summarize([])).toEqual({ passed: 0, failed: 0, total: 0, percent: 100 });
    const rules: ValidationRule[] = [{ type: "file_exists", path: "order/a.txt" }, { type: "file_exists", path: "order/nope.txt" }, cmd("true")];
    const results = await runValidations(rules.map(expanded), { workspace: ws, baseline: {} });
    const s = summarize(results);
    expect(s).toMatchObject({ passed: 2, failed: 1, total: 3 });
    expect(s.percent).toBeCloseTo(66.667, 2);
  });
});
