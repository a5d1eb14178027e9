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

type Position = { line: number; column: number };

/**
 * Line and column of any offset: one pass over the text on first use, then a binary search per
 * lookup, so a template with thousands of tags costs O(n + tags · log n), not O(n · tags).
 */
export function lineIndex(src: string): (offset: number) => Position {
  let starts: number[] | undefined;
  return (offset) => {
    if (!starts) {
      starts = [0];
      for (let i = src.indexOf("\n"); i !== -1; i = src.indexOf("\n", i + 1)) starts.push(i + 1);
    }
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}

/**
 * The rest of a `{{ … }}` tag after its opening braces. Quoted strings are skipped the way
 * squirrelly reads them (no line breaks inside '…' or "…"), so `{{ "}}" }}` is one tag. Every
 * alternative starts with a different character, so a failed match backtracks in linear time.
 * Each translation uses its own copy, so no match state is shared between calls.
 */
const OUTPUT_REST = /(?:[^}'"`]|\}(?!\})|'(?:\\[\s\w"'\\`]|[^\n\r'\\])*'|"(?:\\[\s\w"'\\`]|[^\n\r"\\])*"|`(?:[^`\\]|\\[\s\S])*`)*\}\}/y;

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

/** One run of a translated template: literal text, or a squirrelly tag and where it starts in the source. */
export type Piece = { kind: "text"; text: string } | { kind: "tag"; tag: string; offset: number };

export interface Translation {
  pieces: Piece[];
  /** Line and column (1-based) of an offset in the source. */
  position: (offset: number) => Position;
}

/** Translate Jinja-subset tags to squirrelly; squirrelly-native tags pass through untouched. */
export function translateJinja(src: string): string {
  return translateJinjaPieces(src)
    .pieces.map((p) => (p.kind === "text" ? p.text : p.tag))
    .join("");
}

/**
 * The translation as a list of text runs and tags, so the compiler can keep literal text away from
 * squirrelly's parser. One left-to-right pass: each closing `%}`/`#}` is found with indexOf, and
 * once one is missing it is missing for every later opener too, so nothing is searched twice.
 */
export function translateJinjaPieces(src: string): Translation {
  const out: Piece[] = [];
  const stack: Frame[] = [];
  const loops = () => stack.flatMap((f) => (f.tag === "for" ? [f.loop] : []));
  const position = lineIndex(src);
  let pos = 0;
  let trimNext = false;
  let loopCount = 0;
  const unclosed = { "%": false, "#": false };
  const opener = /\{[{%#]/g;
  const outputRest = new RegExp(OUTPUT_REST); // a copy: its lastIndex is this call's own

  const pushText = (text: string) => out.push({ kind: "text", text: trimNext ? text.trimStart() : text });
  const pushTag = (tag: string, offset: number) => out.push({ kind: "tag", tag, offset });

  for (let m = opener.exec(src); m; m = opener.exec(src)) {
    const start = m.index;
    const kind = src[start + 1] as "{" | "%" | "#";
    let end: number;
    if (kind === "{") {
      outputRest.lastIndex = start + 2;
      if (!outputRest.test(src)) {
        const p = position(start);
        const why = src.includes("}}", start + 2) ? "a quote inside it is not closed" : 'it has no closing "}}"';
        throw new TemplateSyntaxError(`cannot read the tag starting with "{{": ${why}`, p.line, p.column);
      }
      end = outputRest.lastIndex;
    } else {
      const close = unclosed[kind] ? -1 : src.indexOf(kind === "%" ? "%}" : "#}", start + 2);
      if (close < 0) {
        // Not a tag: the text is kept as it is, as Jinja-looking text always was.
        unclosed[kind] = true;
        opener.lastIndex = start + 1;
        continue;
      }
      end = close + 2;
    }
    opener.lastIndex = end;
    const at = () => position(start);
    const whole = src.slice(start, end);
    const inner = whole.slice(2, -2);
    const trimBefore = kind === "%" && inner.startsWith("-");
    const afterTrim = trimBefore ? inner.slice(1) : inner;
    const trimAfter = kind === "%" && afterTrim.endsWith("-");
    let text = src.slice(pos, start);
    if (trimBefore) text = text.trimEnd();
    pushText(text);
    trimNext = false;
    pos = end;

    if (kind === "#") continue;
    if (kind === "{") {
      const expr = inner;
      if (expr.trimStart().startsWith("@") || /^\s*[#/!]/.test(expr) || expr.trimEnd().endsWith("-")) {
        pushTag(whole, start); // squirrelly-native tag
        continue;
      }
      checkFilters(expr, at);
      pushTag(`{{${translateExpr(expr, loops(), at, true)}}}`, start);
      continue;
    }

    const tagBody = trimAfter ? afterTrim.slice(0, -1) : afterTrim;
    const body = tagBody.trim();
    const keyword = body.split(/\s+/, 1)[0] ?? "";
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
          pushTag(`{{@foreach(${source}) => ${a}, ${b}}}`, start);
        } else {
          const source = translateExpr(iterable, loops(), at);
          stack.push({ tag: "for", loop: { kind: "each", index, source } });
          pushTag(`{{@each(${source}) => ${a}, ${index}}}`, start);
        }
        break;
      }
      case "endfor": {
        const top = stack.pop();
        if (top?.tag !== "for") throw new TemplateSyntaxError("{% endfor %} without a matching {% for %}", p.line, p.column);
        pushTag(top.loop.kind === "each" ? "{{/each}}" : "{{/foreach}}", start);
        break;
      }
      case "if":
        if (!rest) throw new TemplateSyntaxError("{% if %} needs a condition", p.line, p.column);
        stack.push({ tag: "if", sawElse: false });
        pushTag(`{{@if(${translateExpr(rest, loops(), at)})}}`, start);
        break;
      case "elif": {
        const top = stack[stack.length - 1];
        if (top?.tag !== "if" || top.sawElse) throw new TemplateSyntaxError("{% elif %} without a matching {% if %}", p.line, p.column);
        pushTag(`{{#elif(${translateExpr(rest, loops(), at)})}}`, start);
        break;
      }
      case "else": {
        const top = stack[stack.length - 1];
        if (top?.tag !== "if" || top.sawElse) throw new TemplateSyntaxError("{% else %} is only supported inside {% if %}", p.line, p.column);
        top.sawElse = true;
        pushTag("{{#else}}", start);
        break;
      }
      case "endif": {
        const top = stack.pop();
        if (top?.tag !== "if") throw new TemplateSyntaxError("{% endif %} without a matching {% if %}", p.line, p.column);
        pushTag("{{/if}}", start);
        break;
      }
      default:
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
    const { line, column } = position(src.length);
    throw new TemplateSyntaxError(`{% ${open.tag} %} is never closed (missing {% end${open.tag} %})`, line, column);
  }
  return { pieces: out, position };
}
