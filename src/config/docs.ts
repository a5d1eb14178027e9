/**
 * docs/configuration.md, generated from the zod schema (via its JSON Schema) so the reference
 * can never drift from what the loader accepts. `bun run docs:config` rewrites it; a test
 * fails when the committed file differs.
 */
import { jobJsonSchema } from "./schema.ts";

export interface Prop {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, Prop>;
  required?: string[];
  items?: Prop;
  oneOf?: Prop[];
  anyOf?: Prop[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  additionalProperties?: Prop | boolean;
}

const SECTIONS: Array<[key: string, title: string]> = [
  ["backend", "backend"],
  ["batch", "batch"],
  ["prompt", "prompt"],
  ["retry", "retry"],
  ["rate_limit", "rate_limit"],
  ["budget", "budget"],
  ["validations", "validations[]"],
  ["notifications", "notifications[]"],
  ["worktree", "worktree (isolation: worktree)"],
  ["learning", "learning (experimental)"],
];

export function typeOf(p: Prop): string {
  if (p.const !== undefined) return `\`${JSON.stringify(p.const)}\``;
  if (p.enum) return p.enum.map((e) => `\`${String(e)}\``).join(" \\| ");
  const variants = p.oneOf ?? p.anyOf;
  if (variants) return variants.map(typeOf).join(" \\| ");
  if (p.type === "array") return `list of ${p.items ? typeOf(p.items) : "any"}`;
  if (p.type === "object" && p.additionalProperties && typeof p.additionalProperties === "object") return `map of ${typeOf(p.additionalProperties)}`;
  const t = Array.isArray(p.type) ? p.type.join(" \\| ") : (p.type ?? "any");
  const range: string[] = [];
  if (p.minimum !== undefined) range.push(`≥ ${p.minimum}`);
  if (p.exclusiveMinimum !== undefined) range.push(`> ${p.exclusiveMinimum}`);
  if (p.maximum !== undefined && p.maximum < Number.MAX_SAFE_INTEGER) range.push(`≤ ${p.maximum}`);
  if (p.exclusiveMaximum !== undefined) range.push(`< ${p.exclusiveMaximum}`);
  return range.length ? `${t} (${range.join(", ")})` : t;
}

function defaultOf(p: Prop, required: boolean): string {
  if (required) return "**required**";
  if (p.default === undefined) return "—";
  return `\`${JSON.stringify(p.default)}\``;
}

export const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

function propTable(obj: Prop, prefix = ""): string[] {
  const rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"];
  for (const [key, p] of Object.entries(obj.properties ?? {})) {
    rows.push(`| \`${prefix}${key}\` | ${typeOf(p)} | ${defaultOf(p, obj.required?.includes(key) ?? false)} | ${cell(p.description ?? "")} |`);
  }
  return rows;
}

export function configurationMarkdown(): string {
  const schema = jobJsonSchema() as Prop;
  const props = schema.properties ?? {};
  const lines: string[] = [
    "# Job file reference",
    "",
    "<!-- Generated from src/config/schema.ts by `bun run docs:config`; a test fails if this file drifts. -->",
    "",
    "A job file is YAML (default), JSON or TOML. Unknown keys are errors. Relative paths resolve against the",
    "job file's folder. Check a file with `mozart validate <file>`; `mozart schema` prints the JSON Schema",
    "(also in [job.schema.json](job.schema.json)) for editor completion.",
    "",
    "## Top level",
    "",
    ...propTable({ ...schema, properties: Object.fromEntries(Object.entries(props).filter(([k]) => !SECTIONS.some(([s]) => s === k))) }),
  ];
  for (const [key, title] of SECTIONS) {
    const p = props[key];
    if (!p) continue;
    lines.push("", `## ${title}`, "");
    if (p.description) lines.push(p.description, "");
    const item = p.items ?? p;
    const variants = item.oneOf ?? item.anyOf;
    if (variants) {
      for (const v of variants) {
        const type = v.properties?.type?.const;
        lines.push(`### \`type: ${String(type)}\``, "");
        if (v.description) lines.push(v.description, "");
        const { type: _t, config, ...rest } = v.properties ?? {};
        lines.push(...propTable({ ...v, properties: rest }));
        if (config?.properties) lines.push("", `\`config\` keys for ${String(type)}:`, "", ...propTable(config));
        lines.push("");
      }
      while (lines[lines.length - 1] === "") lines.pop();
    } else {
      lines.push(...propTable(item));
    }
  }
  lines.push(
    "",
    "## Template variables",
    "",
    "Available in `prompt.template` / `template_file` as `{{ name }}`, and in validation paths, `command_succeeds`",
    "commands and `backend.command` as `{name}` or `{{ name }}`:",
    "",
    "| variable | value |",
    "| --- | --- |",
    "| `batch_num` | current batch, from 1 |",
    "| `total_batches` | number of batches |",
    "| `start_item`, `end_item` | first and last item of the batch |",
    "| `workspace` | absolute workspace path (isolation: worktree — the batch's copy of it in its own worktree) |",
    "| `stakes`, `thinking_method` | the prompt texts of the same name (empty when unset) |",
    "| `job_name` | the job's `name` |",
    "| `job_dir` | absolute folder of the job file |",
    "| any key of `prompt.variables` | its value (lists and maps can be looped over) |",
    "",
    "Prompts support the Jinja subset `{% for x in xs %}`, `{% for k, v in m.items() %}`, `{% if %}`/`{% elif %}`/`{% else %}`,",
    "`loop.index`/`index0`/`first`/`last`/`length`, `and`/`or`/`not`/`in`, `{# comments #}`, `{%- -%}` and the filters",
    "`upper lower title capitalize trim length join default first last replace string int`.",
    "",
  );
  return lines.join("\n");
}
