import { describe, expect, test } from "bun:test";
import { translateJinja, TemplateSyntaxError } from "../../src/prompts/jinja.ts";
import { compileTemplate, expandPlaceholders, PlaceholderError, TemplateRenderError } from "../../src/prompts/render.ts";

const render = (src: string, vars: Record<string, unknown>) => compileTemplate(src).render(vars, "batch 1");

describe("rendering", () => {
  test("the seed's {{ batch_num }} works verbatim, no HTML escaping, newlines kept", () => {
    expect(render("Process batch {{ batch_num }} of {{ total_batches }}.\nCode: {{ code }}\n\n", { batch_num: 3, total_batches: 10, code: "a < b && c" })).toBe(
      "Process batch 3 of 10.\nCode: a < b && c\n\n",
    );
  });
  test("an undefined variable names itself, the batch and the line", () => {
    try {
      compileTemplate("line one\nuses {{ missing_thing }}\n").render({}, "batch 7");
      throw new Error("should have thrown");
    } catch (e) {
      expect(e).toBeInstanceOf(TemplateRenderError);
      expect((e as TemplateRenderError).message).toBe('undefined variable "missing_thing" in batch 7');
      expect((e as TemplateRenderError).line).toBe(2);
    }
  });
  test("filters", () => {
    expect(render("{{ name | upper }} {{ xs | join(', ') }} {{ xs | length }} {{ empty | default('none') }}", { name: "ab", xs: [1, 2], empty: "" })).toBe("AB 1, 2 2 none");
  });
  test("squirrelly's own syntax still works", () => {
    expect(render("{{@if(batch_num === 1)}}first{{#else}}later{{/if}}", { batch_num: 1 })).toBe("first");
  });
});

describe("Jinja subset translation", () => {
  test("for with loop.index, loop.last", () => {
    expect(render("{% for f in files %}{{ loop.index }}.{{ f }}{% if not loop.last %}, {% endif %}{% endfor %}", { files: ["a", "b", "c"] })).toBe("1.a, 2.b, 3.c");
  });
  test("nested loops refer to the innermost loop", () => {
    expect(render("{% for a in xs %}{% for b in ys %}{{ loop.index0 }}{% endfor %}|{{ loop.index }}{% endfor %}", { xs: [1, 2], ys: [1, 2, 3] })).toBe("012|1012|2");
  });
  test("if / elif / else with and, or, not, ==", () => {
    const t = "{% if batch_num == 1 and first %}A{% elif batch_num == total_batches or force %}B{% else %}C{% endif %}";
    expect(render(t, { batch_num: 1, total_batches: 3, first: true, force: false })).toBe("A");
    expect(render(t, { batch_num: 3, total_batches: 3, first: true, force: false })).toBe("B");
    expect(render(t, { batch_num: 2, total_batches: 3, first: true, force: false })).toBe("C");
  });
  test("for k, v in dict.items()", () => {
    expect(render("{% for k, v in env.items() %}{{ k }}={{ v }};{% endfor %}", { env: { a: 1, b: 2 } })).toBe("a=1;b=2;");
  });
  test("in / not in, True/False/None, strings keep their words", () => {
    expect(render("{% if 'x' in xs and y not in xs and t == True %}yes or no{% endif %}", { xs: ["x"], y: "z", t: true })).toBe("yes or no");
  });
  test("whitespace control {%- -%} and comments", () => {
    expect(render("a\n{%- for x in xs -%}\n  [{{ x }}]\n{%- endfor %}\nb{# gone #}", { xs: [1, 2] })).toBe("a[1][2]\nb");
  });
  test("text outside tags is kept exactly", () => {
    expect(translateJinja("plain text\n  with indentation\n")).toBe("plain text\n  with indentation\n");
  });
  test("unsupported tags are an error naming the line", () => {
    try {
      translateJinja("ok\nok\n{% include 'x.md' %}");
      throw new Error("should have thrown");
    } catch (e) {
      expect(e).toBeInstanceOf(TemplateSyntaxError);
      expect((e as TemplateSyntaxError).line).toBe(3);
      expect((e as Error).message).toContain('"{% include %}" is not supported');
    }
  });
  test("mismatched blocks are errors", () => {
    expect(() => translateJinja("{% if x %}{% endfor %}")).toThrow("without a matching {% for %}");
    expect(() => translateJinja("{% else %}")).toThrow("only supported inside {% if %}");
    expect(() => translateJinja("{{ loop.index }}")).toThrow("outside a {% for %} loop");
    expect(() => translateJinja("{% if x is defined %}{% endif %}")).toThrow("not supported");
  });
});

describe("placeholders in paths and commands", () => {
  const vars = { batch_num: 4, workspace: "/w" };
  test("single and double braces both work", () => {
    expect(expandPlaceholders("{workspace}/out/batch{batch_num}-{{ batch_num }}.md", vars)).toBe("/w/out/batch4-4.md");
  });
  test("shell braces pass through", () => {
    expect(expandPlaceholders("awk '{print $1}' ${HOME}/x {a,b}", vars)).toBe("awk '{print $1}' ${HOME}/x {a,b}");
  });
  test("an unknown placeholder is an error", () => {
    expect(() => expandPlaceholders("out/{batch}.md", vars)).toThrow(PlaceholderError);
  });
});
