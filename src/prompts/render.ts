/**
 * Prompt templates: squirrelly configured so `{{ batch_num }}` works verbatim (no `it.`, no HTML
 * escaping, newlines kept), with the Jinja subset translated at load time. Undefined variables
 * are errors that name the variable and the batch, found by `mozart validate` before any run.
 */
import * as Sqrl from "squirrelly";
import { FILTERS, TemplateSyntaxError, translateJinja } from "./jinja.ts";

export { TemplateSyntaxError } from "./jinja.ts";

const SQRL_OPTIONS = { useWith: true, autoEscape: false, autoTrim: false as const };

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
// squirrelly keeps filters in one registry; this fixed set is registered once and never changes.
for (const [name, fn] of Object.entries(filterImpl)) Sqrl.filters.define(name, fn);

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

function lineOf(source: string, word: string): number {
  const re = new RegExp(`\\b${word.replace(/[$]/g, "\\$")}\\b`);
  const lines = source.split("\n");
  const i = lines.findIndex((l) => /\{\{|\{%/.test(l) && re.test(l));
  return i < 0 ? 1 : i + 1;
}

/** Translate and compile once per job; throws TemplateSyntaxError with the template line. */
export function compileTemplate(source: string): CompiledTemplate {
  const translated = translateJinja(source);
  let fn: (data: object, cfg: unknown) => string;
  try {
    fn = Sqrl.compile(translated, SQRL_OPTIONS) as typeof fn;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /line (\d+) col (\d+)/.exec(msg);
    const first = msg.split("\n")[0]!.replace(/^Squirrelly Error:\s*/, "").replace(/\s*at line \d+ col \d+:?$/, "");
    // squirrelly dumps the generated function for bad JS; keep only its first line.
    throw new TemplateSyntaxError(`template syntax error: ${first.slice(0, 200)}`, m ? Number(m[1]) : 1, m ? Number(m[2]) : 1);
  }
  const cfg = Sqrl.getConfig(SQRL_OPTIONS);
  return {
    source,
    render(vars, where) {
      try {
        return fn(vars, cfg);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        const undef = /^(?:ReferenceError: )?([A-Za-z_$][\w$]*) is not defined/.exec(msg) ?? /Can't find variable: ([A-Za-z_$][\w$]*)/.exec(msg);
        if (undef) {
          const name = undef[1]!;
          throw new TemplateRenderError(`undefined variable "${name}" in ${where}`, name, lineOf(source, name));
        }
        throw new TemplateRenderError(`template error in ${where}: ${msg.split("\n")[0]}`, undefined, 1);
      }
    },
  };
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
