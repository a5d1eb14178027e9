/**
 * Multi-megabyte prompt templates: `validate` and `run` stay linear in the template's size and its
 * number of tags, and every batch gets exactly the bytes the template describes. Before, a 200 KB
 * template with one tag at the top took 16 s to validate and 5 MB never finished.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mozart, tempDir } from "../helpers.ts";

/** Generous for a noisy 2-core CI machine: on a developer machine these take well under a second. */
const BOUND_MS = 15_000;
const SIZE = 5 * 1024 * 1024;

interface Batch {
  batch_num: number;
  total_batches: number;
  start_item: number;
  end_item: number;
}
const BATCHES: Batch[] = [
  { batch_num: 1, total_batches: 2, start_item: 1, end_item: 10 },
  { batch_num: 2, total_batches: 2, start_item: 11, end_item: 20 },
];
const FILES = ["a.md", "b.md"];

// Plain text with everything a tag scanner could trip on: quotes, backslashes, lone braces,
// stray closers, tabs, non-ASCII, `$` and backticks.
const FILLER = `Lorem ipsum it's "quoted" \\ back\\slash { lone } brace %} #} }} $HOME \`tick\` \t tab é ✓ —\n`;

/** Tagged lines, each with what it renders to for a batch. */
const TAGGED: Array<[template: string, rendered: (b: Batch) => string]> = [
  ["Batch {{ batch_num }} of {{ total_batches }}, items {{ start_item }}–{{ end_item }}.\n", (b) => `Batch ${b.batch_num} of ${b.total_batches}, items ${b.start_item}–${b.end_item}.\n`],
  ["{% if batch_num == 1 %}first{% elif batch_num == total_batches %}last{% else %}middle{% endif %} batch\n", (b) => `${b.batch_num === 1 ? "first" : "last"} batch\n`],
  ["[{%- if batch_num > 0 -%}  \n  trimmed by Jinja  \n  {%- endif -%}]\n", () => "[trimmed by Jinja]\n"],
  ["row\n{{- start_item -}}\n|\n", (b) => `row${b.start_item}|\n`],
  ["{% for f in files %}{{ loop.index }}={{ f | upper }}{% if not loop.last %}, {% endif %}{% endfor %}\n", () => "1=A.MD, 2=B.MD\n"],
  ["{# a comment #}kept {{ '}}' }} {{ \"{{\" }}\n", () => "kept }} {{\n"],
];

/** A template of about SIZE bytes: tagged lines at the top, every `every` lines (0: none), and at the bottom if asked. */
function bigTemplate(every: number, bottom = true): { template: string; rendered: (b: Batch) => string; tags: number } {
  const parts: string[] = [];
  const out: Array<string | ((b: Batch) => string)> = [];
  let size = 0;
  let tagged = 0;
  const add = ([t, r]: (typeof TAGGED)[number]) => {
    parts.push(t);
    out.push(r);
    size += t.length;
    tagged++;
  };
  for (const line of TAGGED) add(line);
  for (let i = 1; size < SIZE; i++) {
    if (every && i % every === 0) add(TAGGED[tagged % TAGGED.length]!);
    parts.push(FILLER);
    out.push(FILLER);
    size += FILLER.length;
  }
  if (bottom) for (const line of TAGGED) add(line);
  const template = parts.join("");
  return {
    template,
    rendered: (b) => out.map((o) => (typeof o === "string" ? o : o(b))).join(""),
    tags: (template.match(/\{\{|\{%|\{#/g) ?? []).length,
  };
}

let dir: { path: string; cleanup: () => void };
beforeAll(() => {
  dir = tempDir("mozart-large-");
});
afterAll(() => dir.cleanup());

function writeJob(name: string, template: string, command = "cat > /dev/null"): string {
  const folder = join(dir.path, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(join(folder, "prompt.md"), template);
  const job = join(folder, "job.yaml");
  writeFileSync(
    job,
    [
      `name: ${name}`,
      "backend:",
      "  type: command",
      `  command: ${JSON.stringify(command)}`,
      "batch:",
      "  size: 10",
      "  total_items: 20",
      "prompt:",
      "  template_file: prompt.md",
      "  variables:",
      `    files: ${JSON.stringify(FILES)}`,
      "pause_between_batches_seconds: 0",
      "",
    ].join("\n"),
  );
  return job;
}

function timed<T>(fn: () => T): [T, number] {
  const start = performance.now();
  const r = fn();
  return [r, performance.now() - start];
}

describe("a 5 MB template", () => {
  for (const [label, every, bottom] of [
    ["with tags only at the top", 0, false],
    ["with a few tags at the top and the bottom", 0, true],
    ["with thousands of tags", 10, true],
  ] as const) {
    test(`${label}: validate and run -n are fast, and every batch's prompt is byte-exact`, () => {
      const big = bigTemplate(every, bottom);
      expect(big.template.length).toBeGreaterThanOrEqual(SIZE);
      if (every) expect(big.tags).toBeGreaterThan(5000);
      const job = writeJob(label.replace(/\W+/g, "-"), big.template);

      const [v, validateMs] = timed(() => mozart(["validate", job], { timeout: 4 * BOUND_MS }));
      expect(v.stderr).toBe("");
      expect(v.code).toBe(0);
      expect(v.stdout).toContain("is valid");
      expect(validateMs).toBeLessThan(BOUND_MS);

      const [dry, dryMs] = timed(() => mozart(["run", job, "-n", "--json"], { timeout: 4 * BOUND_MS }));
      expect(dry.code).toBe(0);
      expect(dryMs).toBeLessThan(BOUND_MS);
      const prompts = (JSON.parse(dry.stdout) as { batches: Array<{ prompt: string }> }).batches.map((b) => b.prompt);
      expect(prompts.length).toBe(2);
      for (const [i, b] of BATCHES.entries()) {
        const want = big.rendered(b);
        // Compare lengths first: a mismatch in 5 MB is unreadable as a diff.
        expect(prompts[i]!.length).toBe(want.length);
        expect(prompts[i] === want).toBe(true);
      }
    }, 8 * BOUND_MS);
  }

  test("a real run hands each batch's backend exactly those bytes on stdin", () => {
    const big = bigTemplate(0, false);
    const job = writeJob("real-run", big.template, "cat > prompt-{batch_num}.txt");
    const [r, ms] = timed(() => mozart(["run", job], { env: { MOZART_HOME: join(dir.path, "home") }, timeout: 4 * BOUND_MS }));
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    expect(ms).toBeLessThan(2 * BOUND_MS);
    for (const b of BATCHES) {
      const got = readFileSync(join(dir.path, "real-run", "workspace", `prompt-${b.batch_num}.txt`));
      expect(got.equals(Buffer.from(big.rendered(b), "utf8"))).toBe(true);
    }
  }, 8 * BOUND_MS);
});
