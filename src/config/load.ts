/**
 * Job file → JobConfig. YAML (default) and JSON go through the `yaml` package, which keeps
 * every node's position so a schema problem points at file:line:col; TOML goes through confbox.
 * Relative paths resolve against the job file's folder and are stored absolute.
 */
import { readFile } from "node:fs/promises";
import { dirname, extname, isAbsolute, resolve } from "node:path";
import { parseTOML } from "confbox";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from "yaml";
import type { z } from "zod";
import { MozartError } from "../errors.ts";
import { closest, ConfigError, formatPath, type ConfigIssue } from "./errors.ts";
import { JobSchema, type JobConfig } from "./schema.ts";

export interface Position {
  line: number;
  column: number;
}

/** Finds where a key path sits in the source; `key: true` points at the key rather than its value. */
export type Locate = (path: ReadonlyArray<PropertyKey>, opts?: { key?: boolean }) => Position;

export interface LoadedJob {
  config: JobConfig;
  /** Absolute path of the job file. */
  file: string;
  dir: string;
  /** The parsed document before defaults, for `status` snapshots and hashing. */
  raw: Record<string, unknown>;
  locate: Locate;
  /** The file's text as read. */
  source: string;
  /** Where an inline prompt template starts, so template errors map to file lines. */
  templateStartLine?: number;
}

export async function loadJobFile(path: string, cwd = process.cwd()): Promise<LoadedJob> {
  const file = resolve(cwd, path);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "it is a directory" : code === "EACCES" ? "permission denied" : String(e);
    throw new MozartError(`cannot read job file ${path}: ${why}`, { exitCode: 2, hint: "pass the path of a .yaml, .json or .toml job file" });
  }
  return parseJobText(text, file);
}

export function parseJobText(text: string, file: string): LoadedJob {
  const parsed = extname(file).toLowerCase() === ".toml" ? parseToml(text, file) : parseYaml(text, file);
  const { raw, locate } = parsed;
  const issue = (message: string, path: ReadonlyArray<PropertyKey> = [], hint?: string, key = false): ConfigIssue => ({
    message,
    file,
    ...locate(path, { key }),
    path: formatPath(path),
    ...(hint ? { hint } : {}),
  });

  if (raw === null || raw === undefined) throw new ConfigError([issue("the job file is empty", [], "start from examples/quickstart.yaml")]);
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError([issue(`expected a mapping of keys (name:, batch:, prompt: …), found ${Array.isArray(raw) ? "a list" : typeof raw}`)]);
  }

  const result = JobSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.flatMap((i) => describeIssue(i, raw as Record<string, unknown>, text, locate, issue));
    throw new ConfigError(issues.sort((a, b) => a.line - b.line || a.column - b.column));
  }
  const dir = dirname(file);
  const config = resolvePaths(result.data, dir);
  return { config, file, dir, raw: raw as Record<string, unknown>, locate, source: text, templateStartLine: parsed.templateStartLine };
}

function resolvePaths(c: JobConfig, dir: string): JobConfig {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dir, p));
  const workspace = abs(c.workspace);
  return {
    ...c,
    workspace,
    state_path: c.state_path ? abs(c.state_path) : undefined,
    prompt: { ...c.prompt, template_file: c.prompt.template_file ? abs(c.prompt.template_file) : undefined },
    backend: {
      ...c.backend,
      working_directory: c.backend.working_directory ? abs(c.backend.working_directory) : undefined,
      cli_path: c.backend.cli_path && /[\\/]/.test(c.backend.cli_path) ? abs(c.backend.cli_path) : c.backend.cli_path,
    },
    learning: { ...c.learning, outcome_store_path: c.learning.outcome_store_path ? abs(c.learning.outcome_store_path) : undefined },
  };
}

// ---------------------------------------------------------------------------------------------
// zod issue → user message

type ZodIssue = z.core.$ZodIssue;
type MakeIssue = (message: string, path?: ReadonlyArray<PropertyKey>, hint?: string, key?: boolean) => ConfigIssue;

function describeIssue(i: ZodIssue, raw: Record<string, unknown>, text: string, locate: Locate, issue: MakeIssue): ConfigIssue[] {
  const path = i.path;
  const value = valueAt(raw, path);
  switch (i.code) {
    case "unrecognized_keys": {
      const known = knownKeys(path, raw);
      return i.keys.map((k) => {
        const guess = closest(k, known);
        return issue(
          `unknown key "${k}"`,
          [...path, k],
          guess ? `did you mean "${guess}"?` : `valid keys here: ${known.join(", ")}`,
          true,
        );
      });
    }
    case "invalid_union": {
      const options = ((i as { options?: unknown[] }).options ?? []).map(String);
      if (options.length && path[path.length - 1] === "type") {
        const guess = typeof value === "string" ? closest(value, options) : undefined;
        const what = path[0] === "validations" ? "validation type" : path[0] === "notifications" ? "notification type" : "type";
        return [
          issue(
            value === undefined ? `missing "type"; expected one of ${options.join(", ")}` : `unknown ${what} ${JSON.stringify(value)}; expected one of ${options.join(", ")}`,
            value === undefined ? path.slice(0, -1) : path,
            guess ? `did you mean "${guess}"?` : undefined,
          ),
        ];
      }
      return [issue(i.message, path)];
    }
    case "invalid_value": {
      const options = i.values.map(String);
      const guess = typeof value === "string" ? closest(value, options) : undefined;
      return [
        issue(`invalid value ${JSON.stringify(value)}; expected one of ${options.join(", ")}`, path, guess ? `did you mean "${guess}"?` : undefined),
      ];
    }
    case "invalid_type": {
      if (value === undefined) {
        const key = String(path[path.length - 1]);
        return [issue(`missing required key "${key}" (expected ${i.expected})`, path.slice(0, -1), undefined, true)];
      }
      let hint: string | undefined;
      if (i.expected === "string" && typeof value === "object" && value !== null) {
        const { line } = locate(path);
        const src = text.split("\n")[line - 1] ?? "";
        if (/:\s*\{\{/.test(src) || /^\s*-?\s*\{\{/.test(src)) {
          hint = "an unquoted value starting with {{ is read as a YAML mapping: quote it (\"{{ batch_num }}\") or use a block scalar (|)";
        }
      }
      if (i.expected === "int" || (i.expected === "number" && typeof value === "number")) hint ??= "use a whole number";
      return [issue(`expected ${i.expected}, got ${describeValue(value)}`, path, hint)];
    }
    case "too_small":
    case "too_big": {
      const op = i.code === "too_small" ? (i.inclusive ? ">=" : ">") : i.inclusive ? "<=" : "<";
      const bound = i.code === "too_small" ? i.minimum : i.maximum;
      const subject = i.origin === "string" ? "length" : i.origin === "array" ? "number of items" : "value";
      return [issue(`${subject} must be ${op} ${String(bound)}, got ${describeValue(value)}`, path)];
    }
    default:
      return [issue(i.message, path)];
  }
}

function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  return `${typeof v} ${String(v)}`;
}

function valueAt(raw: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v: unknown = raw;
  for (const seg of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg as string];
  }
  return v;
}

/** The keys the schema allows at `path`, for "did you mean". */
function knownKeys(path: ReadonlyArray<PropertyKey>, raw: unknown): string[] {
  // zod v4 keeps its structure in `_zod.def`; this walk only reads it.
  type Def = { type: string; shape?: Record<string, unknown>; innerType?: S; element?: S; options?: S[]; discriminator?: string };
  type S = { _zod: { def: Def } };
  const unwrap = (s: S): S => {
    let cur = s;
    while (cur._zod.def.innerType) cur = cur._zod.def.innerType;
    return cur;
  };
  let s = unwrap(JobSchema as unknown as S);
  let v: unknown = raw;
  const pick = (schema: S, value: unknown): S => {
    const def = schema._zod.def;
    if (def.type === "union" && def.options && def.discriminator) {
      const tag = (value as Record<string, unknown> | undefined)?.[def.discriminator];
      const match = def.options.find((o) => {
        const lit = unwrap(o)._zod.def.shape?.[def.discriminator!] as S | undefined;
        return (lit?._zod.def as { values?: unknown[] } | undefined)?.values?.includes(tag);
      });
      return unwrap(match ?? def.options[0]!);
    }
    return schema;
  };
  s = pick(s, v);
  for (const seg of path) {
    v = (v as Record<PropertyKey, unknown> | undefined)?.[seg as string];
    const def = s._zod.def;
    const next = def.type === "object" ? (def.shape?.[String(seg)] as S | undefined) : def.type === "array" ? def.element : undefined;
    if (!next) return [];
    s = pick(unwrap(next), v);
  }
  return Object.keys(s._zod.def.shape ?? {});
}

// ---------------------------------------------------------------------------------------------
// Parsers with positions

interface Parsed {
  raw: unknown;
  locate: Locate;
  templateStartLine?: number;
}

function parseYaml(text: string, file: string): Parsed {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true, strict: true, logLevel: "error" });
  if (doc.errors.length) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
        const message = e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
        return {
          message: `YAML syntax error: ${message}`,
          file,
          line: pos.line,
          column: pos.col,
          path: "",
          hint: e.code === "TAB_AS_INDENT" ? "indent with spaces, not tabs" : e.code === "DUPLICATE_KEY" ? "remove one of the duplicate keys" : undefined,
        };
      }),
    );
  }
  const locate = yamlLocator(doc, lc);
  const tpl = doc.getIn(["prompt", "template"], true) as Node | undefined;
  let templateStartLine: number | undefined;
  if (tpl && isScalar(tpl) && tpl.range) {
    const start = lc.linePos(tpl.range[0]).line;
    templateStartLine = tpl.type === "BLOCK_LITERAL" || tpl.type === "BLOCK_FOLDED" ? start + 1 : start;
  }
  return { raw: doc.toJS(), locate, templateStartLine };
}

function yamlLocator(doc: Document, lc: LineCounter): Locate {
  return (path, opts = {}) => {
    let node: unknown = doc.contents;
    let pos = 0;
    let parentKeyPos = 0;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i];
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === seg);
        if (!pair) {
          pos = parentKeyPos;
          break;
        }
        const keyPos = (pair.key as Node | null)?.range?.[0] ?? pos;
        if (last && opts.key) {
          pos = keyPos;
          break;
        }
        parentKeyPos = keyPos;
        const value = pair.value as Node | null;
        pos = value?.range?.[0] ?? keyPos;
        node = value;
      } else if (isSeq(node) && typeof seg === "number") {
        const item = node.items[seg] as Node | undefined;
        if (!item) break;
        pos = item.range?.[0] ?? pos;
        parentKeyPos = pos;
        node = item;
      } else {
        break;
      }
    }
    const p = lc.linePos(pos);
    return { line: p.line, column: p.col };
  };
}

function parseToml(text: string, file: string): Parsed {
  let raw: unknown;
  try {
    raw = parseTOML(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /line (\d+)(?:, col(?:umn)? (\d+))?/i.exec(msg) ?? /(\d+):(\d+)/.exec(msg);
    throw new ConfigError([
      { message: `TOML syntax error: ${msg.split("\n")[0]}`, file, line: m ? Number(m[1]) : 1, column: m?.[2] ? Number(m[2]) : 1, path: "" },
    ]);
  }
  const lines = text.split("\n");
  // TOML has no position-keeping parser in our stack: find the key's line by its section and name.
  const locate: Locate = (path) => {
    const keys = path.filter((p): p is string => typeof p === "string");
    const leaf = keys[keys.length - 1];
    const section = keys.slice(0, -1).join(".");
    let inSection = section === "";
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!.trim();
      const header = /^\[\[?([^\]]+)\]\]?$/.exec(l);
      if (header) {
        inSection = header[1]!.trim() === section || (section !== "" && header[1]!.trim().startsWith(`${section}.`));
        if (leaf && header[1]!.trim() === keys.join(".")) return { line: i + 1, column: 1 };
        continue;
      }
      if (inSection && leaf && new RegExp(`^"?${leaf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"?\\s*=`).test(l)) {
        return { line: i + 1, column: lines[i]!.indexOf(l) + 1 };
      }
    }
    return { line: 1, column: 1 };
  };
  return { raw, locate };
}
