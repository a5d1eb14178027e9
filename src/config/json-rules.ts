/**
 * The JSON validation rules, `json_schema` and `jsonpath`: a JSON Schema compiled by ajv (the
 * validator of record, every draft from 07 to 2020-12 with `if`/`then`, `not` and formats), and
 * assertions `<JSONPath> [<op> <JSON value>]` whose path is evaluated by jsonpath-plus (its
 * filters run in its safe evaluator, never as code). Both are compiled when the job file is
 * checked, so a broken schema or assertion is a config error at file:line:col, and evaluated by
 * engine/validate.ts. Every failure names the JSON path that failed, as `$.items[2].score`.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Ajv2019 } from "ajv/dist/2019.js";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { JSONPath } from "jsonpath-plus";
import { clip } from "../text.ts";

/** A compiled schema: null when the value matches, else what failed, one line per path. */
export type SchemaCheck = (value: unknown) => string[] | null;

/** How many failing paths one result names; the rest are counted. */
export const MAX_SCHEMA_ERRORS = 5;

/**
 * Compiled schemas by their text: compiling generates code (milliseconds), and every attempt of
 * every batch checks the same few schemas. Process-wide like a module cache, and bounded.
 */
const validators = new Map<string, SchemaCheck>();
const MAX_VALIDATORS = 64;

/** A schema that does not compile; `pointer` is the JSON Pointer of the part at fault within it. */
export class SchemaError extends Error {
  constructor(
    message: string,
    readonly pointer: string,
  ) {
    super(message);
  }
}

/**
 * Compiles a JSON Schema (an object, or `true`/`false`). Throws an Error saying what is wrong with
 * the schema. Compiled once per distinct schema text in a process.
 */
export function compileSchema(schema: unknown): SchemaCheck {
  const key = JSON.stringify(schema);
  const known = validators.get(key);
  if (known) return known;
  if (typeof schema !== "boolean" && (schema === null || typeof schema !== "object" || Array.isArray(schema))) {
    throw new Error("a JSON Schema is an object (or true/false)");
  }
  const ajv = ajvFor(typeof schema === "object" ? (schema as { $schema?: unknown }).$schema : undefined);
  if (!ajv.validateSchema(schema as object)) {
    const first = (ajv.errors ?? [])[0];
    const where = first?.instancePath ?? "";
    throw new SchemaError(`not a valid JSON Schema: ${where ? `${where.slice(1).split("/").join(".")} ` : ""}${first?.message ?? "does not follow its meta-schema"}`, where);
  }
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema as object);
  } catch (e) {
    throw new SchemaError(`not a valid JSON Schema: ${(e as Error).message}`, "");
  }
  const check: SchemaCheck = (value) => (validate(value) ? null : describeErrors(validate.errors ?? []));
  if (validators.size >= MAX_VALIDATORS) validators.delete(validators.keys().next().value!);
  validators.set(key, check);
  return check;
}

function ajvFor(dialect: unknown) {
  const options = { allErrors: true, strict: false, validateFormats: true } as const;
  const d = typeof dialect === "string" ? dialect : "";
  const ajv = /2020-12/.test(d) ? new Ajv2020(options) : /2019-09/.test(d) ? new Ajv2019(options) : /draft-0[67]|^$/.test(d) ? new Ajv(options) : undefined;
  if (!ajv) throw new Error(`the schema's $schema ${JSON.stringify(d)} is not a dialect Mozart reads; use draft-07, 2019-09 or 2020-12`);
  addFormats(ajv);
  return ajv;
}

function describeErrors(errors: ErrorObject[]): string[] {
  const lines: string[] = [];
  for (const e of errors) {
    // Combinators repeat their branches' errors; the branches say more.
    if (e.keyword === "anyOf" || e.keyword === "oneOf" || e.keyword === "if") continue;
    const at = pointerToPath(e.instancePath);
    const p = e.params as Record<string, unknown>;
    let line: string;
    if (e.keyword === "required") line = `${childPath(at, String(p.missingProperty))}: is required`;
    else if (e.keyword === "additionalProperties") line = `${childPath(at, String(p.additionalProperty))}: is not allowed (no such property in the schema)`;
    else if (e.keyword === "enum") line = `${at}: must be one of ${clipJson(p.allowedValues)}`;
    else line = `${at}: ${e.message ?? e.keyword}`;
    if (!lines.includes(line)) lines.push(line);
  }
  if (!lines.length && errors.length) lines.push(`${pointerToPath(errors[0]!.instancePath)}: ${errors[0]!.message ?? "does not match"}`);
  return lines;
}

/** A JSON Pointer (`/items/2/score`) as a JSONPath (`$.items[2].score`). */
export function pointerToPath(pointer: string): string {
  if (!pointer) return "$";
  let out = "$";
  for (const raw of pointer.slice(1).split("/")) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    out = /^\d+$/.test(part) ? `${out}[${part}]` : childPath(out, part);
  }
  return out;
}

function childPath(parent: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

// --- JSONPath assertions ---------------------------------------------------------------------

export const OPERATORS = ["==", "!=", "<=", ">=", "<", ">"] as const;
export type Operator = (typeof OPERATORS)[number];

export interface Assertion {
  /** As written. */
  text: string;
  path: string;
  /** Without one, the path must match at least one value. */
  op?: Operator;
  expected?: unknown;
}

/**
 * `$.items.length == 10`, `$.status == "done"`, `$.items[*].score >= 0.5`, `$.summary`. The
 * operator is the first one outside brackets, parentheses and quotes (a filter's own `==` stays
 * in the path); the value is JSON. Throws an Error saying what is wrong.
 */
export function parseAssertion(text: string): Assertion {
  const s = text.trim();
  if (!s.startsWith("$")) throw new Error(`an assertion starts with a JSONPath from the root, "$" (e.g. "$.items.length == 10"), not ${JSON.stringify(clip(s, 40))}`);
  let depth = 0;
  let quote = "";
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (quote) {
      if (ch === "\\") i++;
      else if (ch === quote) quote = "";
      continue;
    }
    if (ch === "'" || ch === '"') quote = ch;
    else if (ch === "[" || ch === "(") depth++;
    else if (ch === "]" || ch === ")") depth--;
    else if (depth === 0 && "=!<>".includes(ch)) {
      const op = OPERATORS.find((o) => s.startsWith(o, i));
      if (!op || s.startsWith("===", i) || s.startsWith("!==", i)) throw new Error(`unknown operator at ${JSON.stringify(s.slice(i, i + 3).trim())}; use one of ${OPERATORS.join(" ")} (== compares JSON values exactly)`);
      const path = s.slice(0, i).trim();
      const valueText = s.slice(i + op.length).trim();
      if (!valueText) throw new Error(`nothing to compare with after "${op}"; write a JSON value, e.g. 10, "done", true or null`);
      let expected: unknown;
      try {
        expected = JSON.parse(valueText);
      } catch {
        throw new Error(`${JSON.stringify(clip(valueText, 40))} is not a JSON value; quote text with double quotes, e.g. "done"`);
      }
      if ((op !== "==" && op !== "!=") && typeof expected !== "number" && typeof expected !== "string") {
        throw new Error(`"${op}" compares numbers or text, not ${JSON.stringify(expected)}`);
      }
      return { text: s, path: checkedPath(path), op, expected };
    }
  }
  if (quote || depth !== 0) throw new Error(`unbalanced ${quote ? "quote" : "brackets"} in ${JSON.stringify(clip(s, 60))}`);
  return { text: s, path: checkedPath(s) };
}

function checkedPath(path: string): string {
  if (!path || path === "$") return "$";
  try {
    JSONPath.toPathArray(path);
  } catch (e) {
    throw new Error(`not a JSONPath: ${(e as Error).message}`);
  }
  return path;
}

/** null when the assertion holds for the value, else why not, naming the path. */
export function evaluateAssertion(a: Assertion, json: unknown): string | null {
  let found: Array<{ path: string; value: unknown }>;
  try {
    found = JSONPath({ path: a.path, json: json as object, resultType: "all", wrap: true, eval: "safe" }) as Array<{ path: string; value: unknown }>;
  } catch (e) {
    return `${a.path}: could not be evaluated (${(e as Error).message})`;
  }
  if (!found.length) return `${a.path}: matched nothing`;
  if (!a.op) return null;
  for (const f of found) {
    if (!holds(f.value, a.op, a.expected)) {
      const where = found.length > 1 ? `${bracketPath(f.path)} (one of ${found.length} matches of ${a.path})` : a.path;
      return `${where} is ${clipJson(f.value)}, expected ${a.op} ${clipJson(a.expected)}`;
    }
  }
  return null;
}

function holds(value: unknown, op: Operator, expected: unknown): boolean {
  switch (op) {
    case "==":
      return deepEqual(value, expected);
    case "!=":
      return !deepEqual(value, expected);
    default: {
      if (typeof value !== typeof expected) return false;
      const [a, b] = [value as number | string, expected as number | string];
      return op === "<" ? a < b : op === "<=" ? a <= b : op === ">" ? a > b : a >= b;
    }
  }
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** jsonpath-plus's `$['items'][2]['score']` in the dotted form the rest of Mozart writes. */
function bracketPath(p: string): string {
  return p.replace(/\['((?:[^'\\]|\\.)*)'\]/g, (_m, key: string) => (/^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`));
}

function clipJson(v: unknown): string {
  return clip(JSON.stringify(v) ?? String(v), 80);
}
