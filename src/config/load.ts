/**
 * Job file → JobConfig. YAML (default) and JSON go through the `yaml` package, which keeps
 * every node's position so a schema problem points at file:line:col; TOML goes through confbox.
 * Relative paths resolve against the job file's folder and are stored absolute.
 */
import { readFile } from "node:fs/promises";
import { dirname, extname, isAbsolute, resolve } from "node:path";
import { parseTOML } from "confbox/toml";
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from "yaml";
import type { z } from "zod";
import { MozartError } from "../errors.ts";
import { closest, ConfigError, formatPath, type ConfigIssue } from "./errors.ts";
import { JobSchema, jobJsonSchema, type BackendConfig, type JobConfig } from "./schema.ts";

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
    let published: JsonSchema | undefined;
    const schema = () => (published ??= jobJsonSchema() as JsonSchema);
    const issues = result.error.issues.flatMap((i) => describeIssue(i, raw as Record<string, unknown>, text, locate, issue, schema));
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
    backend: resolveBackendPaths(c.backend, abs),
    learning: { ...c.learning, outcome_store_path: c.learning.outcome_store_path ? abs(c.learning.outcome_store_path) : undefined },
  };
}

function resolveBackendPaths(b: BackendConfig, abs: (p: string) => string): BackendConfig {
  if (b.type === "claude_cli") {
    return { ...b, working_directory: b.working_directory ? abs(b.working_directory) : undefined, cli_path: b.cli_path && /[\\/]/.test(b.cli_path) ? abs(b.cli_path) : b.cli_path };
  }
  if (b.type === "command") return { ...b, working_directory: b.working_directory ? abs(b.working_directory) : undefined };
  return b;
}

// ---------------------------------------------------------------------------------------------
// zod issue → user message

type ZodIssue = z.core.$ZodIssue;
type MakeIssue = (message: string, path?: ReadonlyArray<PropertyKey>, hint?: string, key?: boolean) => ConfigIssue;

function describeIssue(
  i: ZodIssue,
  raw: Record<string, unknown>,
  text: string,
  locate: Locate,
  issue: MakeIssue,
  schema: () => JsonSchema,
): ConfigIssue[] {
  const path = i.path;
  const value = valueAt(raw, path);
  switch (i.code) {
    case "unrecognized_keys": {
      const known = knownKeys(schema(), path, raw);
      return i.keys.map((k) => {
        const guess = closest(k, known);
        // A key of another type of the same union (base_url on a claude_cli backend): say which.
        const elsewhere = guess ? [] : typesWithKey(schema(), path, k);
        const hint = guess
          ? `did you mean "${guess}"?`
          : elsewhere.length
            ? `"${k}" belongs to ${path[0] === "backend" ? "backend " : ""}type ${elsewhere.join(" or ")}, and this one is ${String((valueAt(raw, path) as { type?: unknown } | undefined)?.type ?? defaultTypeAt(path))}: set type: ${elsewhere[0]} to use it`
            : `valid keys here: ${known.join(", ")}`;
        return issue(`unknown key "${k}"`, [...path, k], hint, true);
      });
    }
    case "invalid_union": {
      // A member whose `type` has a default lists undefined among the options.
      const options = ((i as { options?: unknown[] }).options ?? []).filter((o) => o !== undefined && o !== null).map(String);
      if (options.length && path[path.length - 1] === "type") {
        const guess = typeof value === "string" ? closest(value, options) : undefined;
        const what = path[0] === "validations" ? "validation type" : path[0] === "notifications" ? "notification type" : path[0] === "backend" ? "backend type" : "type";
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

/** The parts of a JSON Schema the key walk reads. */
interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema | JsonSchema[];
  prefixItems?: JsonSchema[];
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  allOf?: JsonSchema[];
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  definitions?: Record<string, JsonSchema>;
  const?: unknown;
  enum?: unknown[];
}

const defaultTypeAt = (path: ReadonlyArray<PropertyKey>) => (path[0] === "backend" && path.length === 1 ? "claude_cli" : undefined);

/** The `type` values of the union members at `path` that do have the key. */
function typesWithKey(root: JsonSchema, path: ReadonlyArray<PropertyKey>, key: string): string[] {
  const parent = path.length ? knownSchemaAt(root, path.slice(0, -1)) : root;
  const last = path[path.length - 1];
  const at = last === undefined ? parent : typeof last === "number" ? (Array.isArray(parent?.items) ? undefined : parent?.items) : parent?.properties?.[String(last)];
  const options = at && (at.oneOf ?? at.anyOf);
  if (!options) return [];
  const deref = (s: JsonSchema) => (s.$ref ? (root.$defs?.[s.$ref.replace(/^#\/\$defs\//, "")] ?? s) : s);
  return options
    .map(deref)
    .filter((o) => o.properties && key in o.properties)
    .map((o) => String(deref(o.properties!.type ?? {}).const ?? ""))
    .filter(Boolean);
}

/** The (narrowed) schema at `path`, or undefined. */
function knownSchemaAt(root: JsonSchema, path: ReadonlyArray<PropertyKey>): JsonSchema | undefined {
  let s: JsonSchema | undefined = root;
  for (const seg of path) {
    if (!s) return undefined;
    s = typeof seg === "number" ? (Array.isArray(s.items) ? s.items[seg] : s.items) : s.properties?.[String(seg)];
  }
  return s;
}

/**
 * The keys the schema allows at `path`, for "did you mean". It walks the published JSON Schema
 * (what `mozart schema` prints and editors complete from), so suggestions and editor completion
 * can't disagree. A union (a validation or notification) is narrowed to the member whose `const`
 * properties, such as `type`, match the value written in the file.
 */
function knownKeys(root: JsonSchema, path: ReadonlyArray<PropertyKey>, raw: unknown): string[] {
  const deref = (s: JsonSchema): JsonSchema => {
    for (let hops = 0; s.$ref && hops < 32; hops++) {
      const ref = s.$ref;
      if (ref === "#") s = root;
      else {
        const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
        const target = m ? root[m[1] as "$defs" | "definitions"]?.[decodeURIComponent(m[2]!).replace(/~1/g, "/").replace(/~0/g, "~")] : undefined;
        if (!target) return {};
        s = target;
      }
    }
    return s;
  };
  const consts = (s: JsonSchema): Array<[string, unknown[]]> =>
    Object.entries(s.properties ?? {}).flatMap(([k, p]) => {
      const d = deref(p);
      return "const" in d ? [[k, [d.const]]] : [];
    });
  const narrow = (schema: JsonSchema, value: unknown): JsonSchema => {
    let s = deref(schema);
    for (let depth = 0; depth < 32; depth++) {
      const options = (s.oneOf ?? s.anyOf)?.map(deref);
      if (options?.length) {
        const obj = (value ?? {}) as Record<string, unknown>;
        const tagged = options.filter((o) => consts(o).length > 0);
        const match = tagged.find((o) => consts(o).every(([k, allowed]) => allowed.includes(obj[k])));
        s = match ?? options.find((o) => o.properties) ?? options[0]!;
      } else if (s.allOf?.length) {
        const parts = s.allOf.map((p) => narrow(p, value));
        s = { ...s, allOf: undefined, properties: Object.assign({}, s.properties, ...parts.map((p) => p.properties ?? {})) };
      } else {
        return s;
      }
    }
    return s;
  };

  let s = narrow(root, raw);
  let v: unknown = raw;
  for (const seg of path) {
    v = v === null || typeof v !== "object" ? undefined : (v as Record<PropertyKey, unknown>)[seg as string];
    let next: JsonSchema | undefined;
    if (typeof seg === "number") {
      next = s.prefixItems?.[seg] ?? (Array.isArray(s.items) ? s.items[seg] : s.items);
    } else {
      next = s.properties?.[String(seg)] ?? (typeof s.additionalProperties === "object" ? s.additionalProperties : undefined);
    }
    if (!next) return [];
    s = narrow(next, v);
  }
  return Object.keys(s.properties ?? {});
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
  const aliases = aliasesIn(doc);
  const aliasAt = (a: YamlAlias | undefined) => {
    const pos = lc.linePos(a?.node.range?.[0] ?? 0);
    return { file, line: pos.line, column: pos.col, path: a ? formatPath(a.path) : "" };
  };
  // An alias inside the very node it names would make a value that contains itself; nothing
  // downstream (the config hash, the saved job) can store that, so refuse it here.
  const cyclic = aliases.find((a) => a.insideTarget);
  if (cyclic) {
    const name = cyclic.node.source;
    throw new ConfigError([
      { ...aliasAt(cyclic), message: `YAML alias *${name} is inside the value anchored as &${name}: that value would contain itself`, hint: "move the alias out of its anchor's value, or write the value out" },
    ]);
  }
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (e) {
    // The yaml package refuses, while building values, aliases it cannot resolve and documents whose
    // aliases of aliases would multiply into millions of values ("billion laughs").
    if (e instanceof ReferenceError && /alias/i.test(e.message)) throw new ConfigError([aliasIssue(aliases, aliasAt, e.message)]);
    throw e;
  }
  return { raw, locate, templateStartLine };
}

interface YamlAlias {
  node: Node & { source: string };
  /** The node it stands for: the nearest one before it with that anchor, as yaml resolves it. */
  target: Node | undefined;
  insideTarget: boolean;
  path: PropertyKey[];
}

function aliasesIn(doc: Document): YamlAlias[] {
  const anchors = new Map<string, Node>();
  const aliases: YamlAlias[] = [];
  visit(doc, (_key, node, ancestors) => {
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      aliases.push({ node, target, insideTarget: !!target && ancestors.includes(target as never), path: keyPath([...ancestors, node]) });
    } else if ((isScalar(node) || isMap(node) || isSeq(node)) && node.anchor) {
      anchors.set(node.anchor, node);
    }
  });
  return aliases;
}

/** Points an alias failure at the alias to blame: the unresolved one, or the one that expands the most. */
function aliasIssue(aliases: YamlAlias[], at: (a: YamlAlias | undefined) => Omit<ConfigIssue, "message">, reason: string): ConfigIssue {
  const targets = new Map(aliases.map((a) => [a.node as Node, a.target]));
  // How many values a node stands for once every alias is expanded; capped so deep nesting can't overflow.
  const CAP = 1e15;
  const sizes = new Map<Node, number>();
  const size = (node: unknown): number => {
    if (isAlias(node)) {
      const target = targets.get(node);
      return target ? size(target) : 1;
    }
    if (!isMap(node) && !isSeq(node)) return 1;
    const known = sizes.get(node);
    if (known !== undefined) return known;
    sizes.set(node, 1); // cycles are refused before this runs; still never recurse forever
    let total = 0;
    for (const item of node.items) total += isPair(item) ? size(item.key) + size(item.value) : size(item);
    sizes.set(node, Math.min(total, CAP));
    return Math.min(total, CAP);
  };

  const unresolved = aliases.find((a) => !a.target);
  if (/unresolved/i.test(reason) || !aliases.length) {
    const name = unresolved?.node.source;
    return {
      ...at(unresolved),
      message: name ? `YAML alias *${name} has no anchor &${name} before it` : `YAML alias error: ${reason}`,
      hint: "define the anchor (&name) before the alias, or fix the alias's spelling",
    };
  }
  let worst = aliases[0]!;
  for (const a of aliases) if (size(a.node) > size(worst.node)) worst = a;
  const n = size(worst.node);
  return {
    ...at(worst),
    message: `YAML aliases expand too much: *${worst.node.source} alone stands for ${n >= CAP ? `more than ${CAP.toExponential()}` : n.toLocaleString("en-US")} values (aliases of aliases multiply, as in a "billion laughs" file)`,
    hint: "write the repeated values out, or nest aliases (*name) less deeply; Mozart refuses files whose aliases expand without bound",
  };
}

/** The key path of a node, from the ancestors yaml's visit() passes. */
function keyPath(chain: ReadonlyArray<unknown>): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1];
    const child = chain[i];
    if (isPair(child)) path.push(isScalar(child.key) ? (child.key.value as PropertyKey) : String(child.key));
    else if (isSeq(parent)) path.push(parent.items.indexOf(child as never));
  }
  return path;
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
    // confbox's TOML parser (smol-toml) throws a TomlError carrying 1-based `line` and `column`;
    // its message repeats them in a code excerpt, which is no place to look for numbers.
    const msg = e instanceof Error ? e.message : String(e);
    const at = e as { line?: unknown; column?: unknown };
    const whole = (v: unknown) => (typeof v === "number" && Number.isInteger(v) && v > 0 ? v : 1);
    const reason = msg.split("\n")[0]!.replace(/^Invalid TOML document:\s*/, "");
    const hint = tomlHint(reason);
    throw new ConfigError([
      { message: `TOML syntax error: ${reason}`, file, line: whole(at.line), column: whole(at.column), path: "", ...(hint ? { hint } : {}) },
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

function tomlHint(reason: string): string | undefined {
  if (/redefine an already defined/.test(reason)) return "a key or [table] appears twice: remove one of them";
  if (/control characters are not allowed in strings/.test(reason)) return 'close the string on the same line, or use a multi-line string ("""…""")';
  if (/invalid value/.test(reason)) return 'every key needs a value: a "string", a number, true/false, [a, list] or { inline = "table" }';
  return undefined;
}
