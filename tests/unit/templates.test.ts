import { describe, expect, test } from "bun:test";
import * as Sqrl from "squirrelly";
import { lineIndex, translateJinja, TemplateSyntaxError } from "../../src/prompts/jinja.ts";
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

describe("literal text never reaches squirrelly's parser", () => {
  const vars = { x: "X", xs: [1, 2], batch_num: 1 };
  /** What squirrelly renders when it parses the whole translated text itself (the way compileTemplate used to). */
  const wholeText = (src: string) => (Sqrl.compile(translateJinja(src), { useWith: true, autoEscape: false, autoTrim: false }) as (d: object, c: unknown) => string)(vars, Sqrl.getConfig({ useWith: true, autoEscape: false, autoTrim: false }));

  test("squirrelly's own whitespace control still trims the adjacent text exactly as squirrelly does", () => {
    const cases: Array<[string, string]> = [
      ["a\n\n{{- x }}b", "a\nXb"], // {{- drops one line break before the tag
      ["a \n\t {{_ x }}b", "aXb"], // {{_ drops all whitespace before it
      ["{{ x -}}\n\nb", "X\nb"], // -}} drops one line break after it
      ["{{ x _}} \n\t b", "Xb"], // _}} drops all whitespace after it
      ["a\n{{- x -}}\nb", "aXb"],
      ["<{{@each(xs) => v -}}\n  {{ v }}\n{{- /each}}>", "<  1  2>"],
      ["{{@if(batch_num === 1) -}}\n yes\n{{- #else -}}\n no\n{{- /if}}", " yes"],
      ["a  {{- x }}", "a  X"], // "-" removes a line break only, not spaces
      ["a\r\n{{- x }}", "aX"],
      ["{{ x -}}\r\nb", "X\nb"], // squirrelly's own quirk: after a tag, "-" takes just the \r of \r\n
      ["{{ x -}}{# gone #}\nb", "Xb"], // a comment between a tag and its text doesn't stop the trim
      ["{{ x -}}{{ x }}\nb", "XX\nb"], // the trim reaches only the text right after the tag
    ];
    for (const [src, want] of cases) {
      expect(render(src, vars)).toBe(want);
      expect(wholeText(src)).toBe(want);
    }
  });

  test("line breaks in text become \\n, as squirrelly always rendered them", () => {
    expect(render("a\r\nb{{ x }}\rc\r\n", vars)).toBe("a\nbX\nc\n");
  });

  test("text that looks like squirrelly syntax is only text", () => {
    const src = "it's \"q\" \\ {{ x }} ${x} `t` /* c */ => | ( ) %} #} }} {";
    expect(render(src, vars)).toBe("it's \"q\" \\ X ${x} `t` /* c */ => | ( ) %} #} }} {");
  });

  test("a brace right before a tag stays a brace", () => {
    // squirrelly used to read "{" + "{{@if…" as "{{" + "{@if…" and fail.
    expect(render("{ {%- if x %}y{% endif %}", vars)).toBe("{y");
    expect(render("a{\n{%- for v in xs %}{{ v }}{% endfor %}", vars)).toBe("a{12");
  });

  test("}} inside a quoted string stays inside its tag", () => {
    expect(render("{{ '}}' }}|{{ \"{{\" }}|{{ `}}` }}", vars)).toBe("}}|{{|}}");
  });

  test("an unclosed {{ is an error naming its line and column", () => {
    for (const [src, why] of [
      ["ok\n  {{ x", 'no closing "}}"'],
      ["ok\n  {{ it's }}", "quote inside it is not closed"],
    ] as const) {
      try {
        compileTemplate(src);
        throw new Error("should have thrown");
      } catch (e) {
        expect(e).toBeInstanceOf(TemplateSyntaxError);
        expect((e as TemplateSyntaxError).message).toContain(why);
        expect([(e as TemplateSyntaxError).line, (e as TemplateSyntaxError).column]).toEqual([2, 3]);
      }
    }
  });

  test("squirrelly's parse errors point at the template line of the tag", () => {
    try {
      compileTemplate("one\ntwo\n  {{@each(xs) => v}}{{ v }}{{/if}}\n");
      throw new Error("should have thrown");
    } catch (e) {
      expect(e).toBeInstanceOf(TemplateSyntaxError);
      expect((e as Error).message).toContain("Helper start and end don't match");
      expect([(e as TemplateSyntaxError).line, (e as TemplateSyntaxError).column]).toEqual([3, 28]);
    }
  });

  test("an undefined variable is reported on the line of the tag that uses it", () => {
    try {
      compileTemplate("topic here\nand here\n{% if x %}{{ topic }}{% endif %}\n").render({ x: true }, "batch 2");
      throw new Error("should have thrown");
    } catch (e) {
      expect((e as TemplateRenderError).message).toBe('undefined variable "topic" in batch 2');
      expect((e as TemplateRenderError).line).toBe(3);
    }
  });

  test("compiling is linear: a tag at the top of 2 MB of text", () => {
    const src = `{{ x }}\n${"text line with it's quotes\n".repeat(80_000)}`;
    const start = performance.now();
    const out = render(src, vars);
    expect(performance.now() - start).toBeLessThan(5000);
    expect(out).toBe(`X\n${"text line with it's quotes\n".repeat(80_000)}`);
  });

  test("line and column lookups match a plain count", () => {
    const src = "ab\n\ncd\nefg\n";
    const at = lineIndex(src);
    for (let offset = 0; offset <= src.length; offset++) {
      const before = src.slice(0, offset).split("\n");
      expect(at(offset)).toEqual({ line: before.length, column: before[before.length - 1]!.length + 1 });
    }
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
