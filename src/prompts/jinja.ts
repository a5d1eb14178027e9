/**
 * Load-time translation of the Jinja subset used by job files written for the Python tool
 * (`{% for %}`, `{% if/elif/else %}`, `loop.index`, `and/or/not`, `{# comments #}`) into
 * squirrelly's own syntax. Anything else is rejected with the line it is on, so a template
 * never half-works at run time. A tokenizer is needed because `loop.*` inside `{{ }}` refers
 * to the innermost open loop.
 */

export class TemplateSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(message);
    this.name = "TemplateSyntaxError";
  }
}

/** Filters available in `{{ value | filter }}` (registered in render.ts). */
export const FILTERS = ["upper", "lower", "title", "capitalize", "trim", "length", "join", "default", "first", "last", "replace", "string", "int"] as const;

interface Loop {
  kind: "each" | "foreach";
  index: string;
  source: string;
}

type Frame = { tag: "for"; loop: Loop } | { tag: "if"; sawElse: boolean };

const TOKEN = /\{%(-?)([\s\S]*?)(-?)%\}|\{#[\s\S]*?#\}|\{\{([\s\S]*?)\}\}/g;

function lineCol(src: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset; i++) {
    if (src.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}

/** Replace Python-isms; string literals are set aside first so their text is never rewritten. */
function translateExpr(expr: string, loops: Loop[], at: () => { line: number; column: number }, inOutput = false): string {
  const strings: string[] = [];
  let code = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, (lit) => `\u0000${strings.push(lit) - 1}\u0000`);
  const fail = (message: string): never => {
    const p = at();
    throw new TemplateSyntaxError(message, p.line, p.column);
  };
  if (/\bis\s+(not\s+)?\w+/.test(code)) fail(`Jinja tests like "is defined" are not supported: ${expr.trim()}`);
  if (inOutput && /\b(or|and)\b/.test(code)) fail(`"and"/"or" are not supported inside {{ }}; use {% if %} or the | default("…") filter`);
  const operand = "(\u0000\\d+\u0000|[\\w.\\[\\]]+)";
  code = code
    .replace(new RegExp(`${operand}\\s+not\\s+in\\s+${operand}`, "g"), "!($2).includes($1)")
    .replace(new RegExp(`${operand}\\s+in\\s+${operand}`, "g"), "($2).includes($1)")
    .replace(/\band\b/g, "&&")
    .replace(/\bor\b/g, "||")
    .replace(/\bnot\b/g, "!")
    .replace(/\bTrue\b/g, "true")
    .replace(/\bFalse\b/g, "false")
    .replace(/\bNone\b/g, "null")
    .replace(/\bloop\.(index0|index|first|last|length|revindex)\b/g, (_m, prop: string) => {
      const loop = loops[loops.length - 1] ?? fail(`"loop.${prop}" used outside a {% for %} loop`);
      const len = `(${loop.source}).length`;
      switch (prop) {
        case "index0":
          return loop.index;
        case "index":
          return `(${loop.index} + 1)`;
        case "first":
          return `(${loop.index} === 0)`;
        case "last":
          return `(${loop.index} === ${len} - 1)`;
        case "length":
          return len;
        default:
          return `(${len} - ${loop.index})`;
      }
    });
  return code.replace(/\u0000(\d+)\u0000/g, (_m, i: string) => strings[Number(i)]!);
}

function checkFilters(expr: string, at: () => { line: number; column: number }): void {
  const stripped = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
  for (const m of stripped.matchAll(/(\|\|?)\s*([A-Za-z_]\w*)?/g)) {
    const p = at();
    if (m[1] === "||") {
      throw new TemplateSyntaxError(`"||" is not allowed inside {{ }}; use the | default("…") filter or {% if %}`, p.line, p.column);
    }
    const name = m[2];
    if (!name || !(FILTERS as readonly string[]).includes(name)) {
      throw new TemplateSyntaxError(`unknown filter "${name ?? ""}"; available filters: ${FILTERS.join(", ")}`, p.line, p.column);
    }
  }
}

/** Translate Jinja-subset tags to squirrelly; squirrelly-native tags pass through untouched. */
export function translateJinja(src: string): string {
  const out: string[] = [];
  const stack: Frame[] = [];
  const loops = () => stack.flatMap((f) => (f.tag === "for" ? [f.loop] : []));
  let pos = 0;
  let trimNext = false;
  let loopCount = 0;

  const pushText = (text: string) => out.push(trimNext ? text.replace(/^\s+/, "") : text);

  for (const m of src.matchAll(TOKEN)) {
    const start = m.index;
    const at = () => lineCol(src, start);
    const [whole, trimBefore, tagBody, trimAfter, expr] = m;
    let text = src.slice(pos, start);
    if (trimBefore) text = text.replace(/\s+$/, "");
    pushText(text);
    trimNext = false;
    pos = start + whole.length;

    if (whole.startsWith("{#")) continue;
    if (expr !== undefined) {
      if (expr.trimStart().startsWith("@") || /^\s*[#/!]/.test(expr) || expr.trimEnd().endsWith("-")) {
        out.push(whole); // squirrelly-native tag
        continue;
      }
      checkFilters(expr, at);
      out.push(`{{${translateExpr(expr, loops(), at, true)}}}`);
      continue;
    }

    const body = (tagBody ?? "").trim();
    const [keyword = "", ...restWords] = body.split(/\s+/);
    const rest = body.slice(keyword.length).trim();
    const p = at();
    switch (keyword) {
      case "for": {
        const fm = /^([A-Za-z_]\w*)(?:\s*,\s*([A-Za-z_]\w*))?\s+in\s+(.+)$/.exec(rest);
        if (!fm) throw new TemplateSyntaxError(`cannot read "{% ${body} %}"; expected {% for x in items %}`, p.line, p.column);
        const [, a, b, iterable = ""] = fm;
        const index = `__loop${loopCount++}`;
        if (b) {
          const items = /^(.+?)\.items\(\)$/.exec(iterable.trim());
          const source = translateExpr(items ? items[1]! : iterable, loops(), at);
          stack.push({ tag: "for", loop: { kind: "foreach", index, source: `Object.keys(${source})` } });
          out.push(`{{@foreach(${source}) => ${a}, ${b}}}`);
        } else {
          const source = translateExpr(iterable, loops(), at);
          stack.push({ tag: "for", loop: { kind: "each", index, source } });
          out.push(`{{@each(${source}) => ${a}, ${index}}}`);
        }
        break;
      }
      case "endfor": {
        const top = stack.pop();
        if (top?.tag !== "for") throw new TemplateSyntaxError("{% endfor %} without a matching {% for %}", p.line, p.column);
        out.push(top.loop.kind === "each" ? "{{/each}}" : "{{/foreach}}");
        break;
      }
      case "if":
        if (!rest) throw new TemplateSyntaxError("{% if %} needs a condition", p.line, p.column);
        stack.push({ tag: "if", sawElse: false });
        out.push(`{{@if(${translateExpr(rest, loops(), at)})}}`);
        break;
      case "elif": {
        const top = stack[stack.length - 1];
        if (top?.tag !== "if" || top.sawElse) throw new TemplateSyntaxError("{% elif %} without a matching {% if %}", p.line, p.column);
        out.push(`{{#elif(${translateExpr(rest, loops(), at)})}}`);
        break;
      }
      case "else": {
        const top = stack[stack.length - 1];
        if (top?.tag !== "if" || top.sawElse) throw new TemplateSyntaxError("{% else %} is only supported inside {% if %}", p.line, p.column);
        top.sawElse = true;
        out.push("{{#else}}");
        break;
      }
      case "endif": {
        const top = stack.pop();
        if (top?.tag !== "if") throw new TemplateSyntaxError("{% endif %} without a matching {% if %}", p.line, p.column);
        out.push("{{/if}}");
        break;
      }
      default:
        void restWords;
        throw new TemplateSyntaxError(
          `the Jinja tag "{% ${keyword} %}" is not supported; supported tags: for, endfor, if, elif, else, endif`,
          p.line,
          p.column,
        );
    }
    if (trimAfter) trimNext = true;
  }
  pushText(src.slice(pos));
  const open = stack[stack.length - 1];
  if (open) {
    const { line, column } = lineCol(src, src.length);
    throw new TemplateSyntaxError(`{% ${open.tag} %} is never closed (missing {% end${open.tag} %})`, line, column);
  }
  return out.join("");
}
