/**
 * Prompt templates: squirrelly configured so `{{ batch_num }}` works verbatim (no `it.`, no HTML
 * escaping, newlines kept), with the Jinja subset translated at load time. Undefined variables
 * are errors that name the variable and the batch, found by `mozart validate` before any run.
 */
import * as Sqrl from "squirrelly";
import { shellQuote } from "../text.ts";
import { FILTERS, TemplateSyntaxError, translateJinjaPieces, type Piece } from "./jinja.ts";

export { TemplateSyntaxError } from "./jinja.ts";

const filterImpl: Record<(typeof FILTERS)[number], (value: unknown, ...args: unknown[]) => unknown> = {
  upper: (v) => String(v).toUpperCase(),
  lower: (v) => String(v).toLowerCase(),
  title: (v) => String(v).replace(/\b\w/g, (c) => c.toUpperCase()),
  capitalize: (v) => {
    const s = String(v);
    return s.charAt(0).toUpperCase() + s.slice(1).toLowerCase();
  },
  trim: (v) => String(v).trim(),
  length: (v) => (v == null ? 0 : typeof v === "object" && !Array.isArray(v) ? Object.keys(v).length : (v as { length: number }).length),
  join: (v, sep = "") => (Array.isArray(v) ? v.join(String(sep)) : String(v)),
  default: (v, fallback = "") => (v === undefined || v === null || v === "" ? fallback : v),
  first: (v) => (Array.isArray(v) ? v[0] : String(v).charAt(0)),
  last: (v) => (Array.isArray(v) ? v[v.length - 1] : String(v).slice(-1)),
  replace: (v, a, b) => String(v).split(String(a)).join(String(b)),
  string: (v) => String(v),
  int: (v) => Number.parseInt(String(v), 10),
};

/**
 * Our filters travel in each template's own config instead of squirrelly's process-wide registry:
 * nothing is registered there, so loading this module twice (two bundled copies) is harmless, a
 * filter someone else registers under the same name is never replaced, and our prompts never
 * pick up theirs. Names we don't define still fall through to squirrelly's registry.
 */
const filterStore = {
  get: (name: string) => (Object.hasOwn(filterImpl, name) ? filterImpl[name as keyof typeof filterImpl] : Sqrl.filters.get(name)),
} as unknown as typeof Sqrl.filters;

const SQRL_OPTIONS = {
  useWith: true,
  autoEscape: false,
  autoTrim: false as const,
  storage: { ...Sqrl.defaultConfig.storage, filters: filterStore },
};

export class TemplateRenderError extends Error {
  constructor(
    message: string,
    readonly variable: string | undefined,
    readonly line: number,
  ) {
    super(message);
    this.name = "TemplateRenderError";
  }
}

export interface CompiledTemplate {
  source: string;
  render(vars: Record<string, unknown>, where: string): string;
}

/** Where a template's literal text lives in the data squirrelly renders from (see sqrlSource). */
const TEXT = "$mozart_text"; // not "_…": squirrelly reads "{{_" as whitespace control

interface SqrlSource {
  /** What squirrelly compiles: the tags, and a `{{$mozart_text[i]}}` reference for each text run. */
  code: string;
  texts: string[];
  /** For each tag: where it starts in `code`, and in the template. */
  codeStarts: number[];
  tags: Array<Extract<Piece, { kind: "tag" }>>;
}

/**
 * squirrelly finds the next tag with a lazy regex which, after the last tag, rescans the rest of the
 * text from every position: seconds for 100 KB, hours for megabytes. So its parser never sees
 * literal text. Each text run goes into a table passed with the data, and squirrelly compiles only
 * the tags plus a reference per run, which renders the same characters. What squirrelly would have
 * done to that text is done here instead: `{{-` / `-}}` drop one line break next to the tag,
 * `{{_` / `_}}` all adjacent whitespace (its trimWS), and line breaks become "\n".
 */
function sqrlSource(pieces: Piece[]): SqrlSource {
  const code: string[] = [];
  const texts: string[] = [];
  const codeStarts: number[] = [];
  const tags: SqrlSource["tags"] = [];
  let length = 0;
  let pending = "";
  let trimLeftOfText: string | undefined;
  const emit = (s: string) => {
    code.push(s);
    length += s.length;
  };
  const flush = (trimRightOfText: string | undefined) => {
    let text = pending;
    pending = "";
    if (trimLeftOfText === "_") text = text.trimStart();
    else if (trimLeftOfText === "-") text = text.replace(/^(?:\n|\r|\r\n)/, "");
    if (trimRightOfText === "_") text = text.trimEnd();
    else if (trimRightOfText === "-") text = text.replace(/(?:\n|\r|\r\n)$/, "");
    if (!text) return;
    if (text.includes("\r")) text = text.replace(/\r\n|\n|\r/g, "\n");
    emit(`{{${TEXT}[${texts.push(text) - 1}]}}`);
  };
  for (const piece of pieces) {
    if (piece.kind === "text") {
      pending += piece.text;
      continue;
    }
    const left = /^\{\{([-_])/.exec(piece.tag)?.[1];
    flush(left);
    codeStarts.push(length);
    tags.push(piece);
    emit(piece.tag);
    trimLeftOfText = /([-_])\}\}$/.exec(piece.tag.slice(left ? 3 : 2))?.[1];
  }
  flush(undefined);
  return { code: code.join(""), texts, codeStarts, tags };
}

/** The template offset of the tag holding a squirrelly error reported at line:col of the compiled code. */
function tagOffsetAt(src: SqrlSource, line: number, col: number): number | undefined {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    offset = src.code.indexOf("\n", offset) + 1;
    if (offset === 0) return undefined;
  }
  offset += col - 1;
  let lo = 0;
  let hi = src.codeStarts.length - 1;
  if (hi < 0 || src.codeStarts[0]! > offset) return undefined;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (src.codeStarts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return src.tags[lo]!.offset;
}

/** Translate and compile once per job; throws TemplateSyntaxError with the template line. */
export function compileTemplate(source: string): CompiledTemplate {
  const { pieces, position } = translateJinjaPieces(source);
  const sqrl = sqrlSource(pieces);
  let fn: (data: object, cfg: unknown) => string;
  try {
    fn = Sqrl.compile(sqrl.code, SQRL_OPTIONS) as typeof fn;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /line (\d+) col (\d+)/.exec(msg);
    const at = m ? tagOffsetAt(sqrl, Number(m[1]), Number(m[2])) : undefined;
    const { line, column } = at === undefined ? { line: 1, column: 1 } : position(at);
    const first = msg.split("\n")[0]!.replace(/^Squirrelly Error:\s*/, "").replace(/\s*at line \d+ col \d+:?$/, "");
    // squirrelly dumps the generated function for bad JS; keep only its first line.
    throw new TemplateSyntaxError(`template syntax error: ${first.slice(0, 200)}`, line, column);
  }
  const cfg = Sqrl.getConfig(SQRL_OPTIONS);
  const lines = new Map<string, number>();
  /** The line of the first tag that mentions `name`. */
  const lineOf = (name: string): number => {
    let line = lines.get(name);
    if (line === undefined) {
      const re = new RegExp(`(?<![\\w$])${name.replace(/[$]/g, "\\$")}(?![\\w$])`);
      const tag = sqrl.tags.find((t) => re.test(t.tag));
      line = tag ? position(tag.offset).line : 1;
      lines.set(name, line);
    }
    return line;
  };
  return {
    source,
    render(vars, where) {
      try {
        return fn({ ...vars, [TEXT]: sqrl.texts }, cfg);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        const undef = /^(?:ReferenceError: )?([A-Za-z_$][\w$]*) is not defined/.exec(msg) ?? /Can't find variable: ([A-Za-z_$][\w$]*)/.exec(msg);
        if (undef) {
          const name = undef[1]!;
          throw new TemplateRenderError(`undefined variable "${name}" in ${where}`, name, lineOf(name));
        }
        throw new TemplateRenderError(`template error in ${where}: ${msg.split("\n")[0]}`, undefined, 1);
      }
    },
  };
}

/** The variables whose value differs from batch to batch: a prompt's static part ends before the first of them. */
export const PER_BATCH_VARIABLES = ["batch_num", "start_item", "end_item"] as const;

/**
 * The template source up to its first tag that uses a per-batch variable (the whole source when
 * none does): rendered, it is the part of every prompt that is the same for every batch, which
 * the API backends send as a cached block. Undefined when that part is empty.
 */
export function staticSource(source: string): string | undefined {
  const { pieces } = translateJinjaPieces(source);
  const perBatch = new RegExp(`(?<![\\w$.])(?:${PER_BATCH_VARIABLES.join("|")})(?![\\w$])`);
  const first = pieces.find((p): p is Extract<Piece, { kind: "tag" }> => p.kind === "tag" && perBatch.test(p.tag));
  const end = first ? first.offset : source.length;
  return end > 0 ? source.slice(0, end) : undefined;
}

export const BUILTIN_VARIABLES = [
  "batch_num",
  "total_batches",
  "start_item",
  "end_item",
  "workspace",
  "stakes",
  "thinking_method",
  "job_name",
  "job_dir",
] as const;

/**
 * `{batch_num}` and `{{ batch_num }}` placeholders in validation paths and commands. A tiny
 * substitution instead of the full template engine, because shell commands are full of braces
 * (`${HOME}`, `awk '{print $1}'`) that must pass through untouched.
 */
const PLACEHOLDER = /\{\{\s*([A-Za-z_]\w*)\s*\}\}|(?<![${])\{([A-Za-z_]\w*)\}(?!\})/g;

export class PlaceholderError extends Error {
  constructor(
    message: string,
    readonly placeholder: string,
  ) {
    super(message);
    this.name = "PlaceholderError";
  }
}

export function placeholdersIn(text: string): string[] {
  return [...text.matchAll(PLACEHOLDER)].map((m) => (m[1] ?? m[2])!);
}

export function expandPlaceholders(text: string, vars: Record<string, unknown>): string {
  return text.replace(PLACEHOLDER, (whole, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    if (!(name in vars)) {
      throw new PlaceholderError(`unknown placeholder "${whole}"; available: ${Object.keys(vars).join(", ")}`, name);
    }
    return String(vars[name]);
  });
}

/**
 * Placeholders expanded into a shell command (backend.command, command_succeeds): each value is
 * quoted for the place it stands — outside quotes, inside '…', inside "…", and inside a command
 * substitution (`$(…)` or backquotes, which start a quoting context of their own, also within
 * "…") — so it is always one literal word. A folder named `my jobs` or a variable holding
 * `$(touch pwned)` then reaches the command as text, never as shell syntax. The same values are
 * in MOZART_* variables too.
 */
export function expandForShell(text: string, vars: Record<string, unknown>): string {
  type Context = "none" | "single" | "double" | "subst" | "paren" | "backtick";
  const stack: Context[] = ["none"];
  const top = () => stack[stack.length - 1]!;
  let out = "";
  let last = 0;
  const advance = (segment: string) => {
    for (let i = 0; i < segment.length; i++) {
      const ch = segment[i];
      const at = top();
      if (at === "single") {
        if (ch === "'") stack.pop();
        continue;
      }
      if (ch === "\\") {
        i++;
        continue;
      }
      const opensSubst = ch === "$" && segment[i + 1] === "(";
      if (at === "double") {
        if (ch === '"') stack.pop();
        else if (opensSubst) stack.push("subst"), i++;
        else if (ch === "`") stack.push("backtick");
        continue;
      }
      // Unquoted: at the top level, or inside $(…), (…) within it, or backquotes.
      if (ch === "'") stack.push("single");
      else if (ch === '"') stack.push("double");
      else if (opensSubst) stack.push("subst"), i++;
      else if (ch === "(" && (at === "subst" || at === "paren")) stack.push("paren");
      else if (ch === ")" && (at === "subst" || at === "paren")) stack.pop();
      else if (ch === "`") {
        if (at === "backtick") stack.pop();
        else stack.push("backtick");
      }
    }
  };
  /** Inside backquotes the shell first removes a backslash before \\, ` and $, so those are escaped once more. */
  const inBackticks = () => stack.includes("backtick");
  for (const m of text.matchAll(PLACEHOLDER)) {
    const segment = text.slice(last, m.index);
    out += segment;
    advance(segment);
    const name = (m[1] ?? m[2])!;
    if (!(name in vars)) throw new PlaceholderError(`unknown placeholder "${m[0]}"; available: ${Object.keys(vars).join(", ")}`, name);
    const value = String(vars[name]);
    const at = top();
    const quoted = at === "single" ? value.replace(/'/g, `'\\''`) : at === "double" ? value.replace(/[\\"$`]/g, "\\$&") : shellQuote(value);
    out += inBackticks() ? quoted.replace(/[\\`$]/g, "\\$&") : quoted;
    last = m.index + m[0].length;
  }
  return out + text.slice(last);
}
