/**
 * Deep checks that need more than the schema: the template file exists and compiles, every
 * batch's prompt renders (undefined variables are found here, never mid-run), regexes compile,
 * placeholders in validation paths and commands are known, and cross-field rules hold.
 * The result is a prepared job: everything the engine needs to render and validate a batch.
 */
import { readFile } from "node:fs/promises";
import { isAbsolute, relative, resolve } from "node:path";
import { batchAt, totalBatches, type PlannedBatch } from "../plan/batches.ts";
import {
  BUILTIN_VARIABLES,
  compileTemplate,
  expandForShell,
  expandPlaceholders,
  PER_BATCH_VARIABLES,
  placeholdersIn,
  staticSource,
  TemplateRenderError,
  TemplateSyntaxError,
  type CompiledTemplate,
} from "../prompts/render.ts";
import { STRUCTURED_OUTPUT } from "../state/types.ts";
import { ConfigError, formatPath, type ConfigIssue } from "./errors.ts";
import type { LoadedJob } from "./load.ts";
import type { JobConfig, ValidationRule } from "./schema.ts";

/** A validation rule with its placeholders expanded for one batch and its paths absolute. */
export type ExpandedRule = ValidationRule & { target: string };

export interface PreparedJob {
  config: JobConfig;
  file: string;
  dir: string;
  raw: Record<string, unknown>;
  /** The job file's text. */
  source: string;
  totalBatches: number;
  batch(n: number): PlannedBatch;
  /** Template variables of batch n. */
  variables(n: number): Record<string, unknown>;
  prompt(n: number): string;
  /**
   * The static part of a prompt (the same for every batch: prompt.cache_prefix, or the template's
   * text before its first per-batch variable), when the prompt starts with it.
   */
  cachePrefix(prompt: string): string | undefined;
  validations(n: number): ExpandedRule[];
  /** The `command` backend's shell command for batch n (placeholders expanded). */
  command(n: number): string | undefined;
  /** The API backends: where batch n's answer is written (absolute, placeholders expanded). */
  outputPath(n: number): string | undefined;
  /** Where the backend process runs. */
  cwd: string;
  /** User patterns from rate_limit.detection_patterns, compiled. */
  limitPatterns: RegExp[];
  /** The template text (inline or from template_file): part of the config hash. */
  templateSource: string;
  /**
   * The same job with every path moved by `map` (isolation: worktree — a batch's worktree):
   * `{{ workspace }}` and the other placeholders, validation paths and folders, and the folder
   * the backend runs in. `map` gets absolute paths and returns them unchanged or moved.
   */
  relocated(map: (path: string) => string): PreparedJob;
}

const MAX_ISSUES = 50;

export interface CheckOptions {
  /** The template's text saved with the job: used by `resume` when template_file is gone. */
  savedTemplate?: string;
  /** The template's text as submitted, used whatever template_file says (`mozart worker`). */
  template?: string;
}

export async function checkJob(job: LoadedJob, opts: CheckOptions = {}): Promise<PreparedJob> {
  const { config: c, file, locate } = job;
  const issues: ConfigIssue[] = [];
  const add = (message: string, path: ReadonlyArray<PropertyKey>, hint?: string, at?: { file: string; line: number; column: number }) => {
    if (issues.length < MAX_ISSUES) issues.push({ message, file, ...locate(path), ...at, path: formatPath(path), ...(hint ? { hint } : {}) });
  };

  // Cross-field rules.
  const range = c.batch;
  if (range.start_item > range.total_items) {
    add(`start_item (${range.start_item}) is after total_items (${range.total_items}): there are no items to process`, ["batch", "start_item"], "total_items is the number of the last item, not a count");
  }
  if (c.retry.max_delay_seconds < c.retry.base_delay_seconds) {
    add(`max_delay_seconds (${c.retry.max_delay_seconds}) is below base_delay_seconds (${c.retry.base_delay_seconds})`, ["retry", "max_delay_seconds"]);
  }
  if (c.backend.type === "command" && !c.backend.command) {
    add(`backend type "command" needs backend.command: the shell command to run for each batch`, ["backend", "type"], 'e.g. command: "./scripts/do-batch.sh"');
  }
  c.notifications.forEach((n, i) => {
    if (n.type === "webhook" && !n.config.url && !n.config.url_env) add("a webhook notification needs config.url or config.url_env", ["notifications", i, "config"]);
  });
  c.worktree.share.forEach((p, i) => {
    if (isAbsolute(p) || p.split(/[\\/]/).includes("..")) add(`worktree.share lists folders inside the workspace, relative to it: "${p}" is not`, ["worktree", "share", i], "e.g. share: [node_modules, .venv]");
  });
  if (c.isolation === "none" && (c.worktree.share.length || c.worktree.setup !== undefined)) {
    add("worktree.share and worktree.setup only apply with isolation: worktree", ["worktree"], "set isolation: worktree, or remove the worktree block");
  }
  for (const key of Object.keys(c.prompt.variables)) {
    if ((BUILTIN_VARIABLES as readonly string[]).includes(key)) {
      add(`the variable "${key}" shadows a built-in template variable`, ["prompt", "variables", key], `rename it; built-ins: ${BUILTIN_VARIABLES.join(", ")}`);
    }
  }

  // Regexes.
  const limitPatterns: RegExp[] = [];
  c.rate_limit.detection_patterns.forEach((p, i) => {
    try {
      limitPatterns.push(new RegExp(p, "i"));
    } catch (e) {
      add(`invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, "")}`, ["rate_limit", "detection_patterns", i]);
    }
  });
  c.validations.forEach((v, i) => {
    if (v.type !== "content_regex") return;
    try {
      new RegExp(v.pattern, v.flags);
    } catch (e) {
      add(`invalid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, "")}`, ["validations", i, "pattern"]);
    }
  });

  // JSON rules: schemas compile and assertions parse now, not at the first batch's validation.
  const schemas = new Map<number, unknown>();
  // ajv and jsonpath-plus load only for jobs that use them: every other command starts without them.
  const jsonRules = c.validations.some((v) => v.type === "json_schema" || v.type === "jsonpath") ? await import("./json-rules.ts") : undefined;
  for (const [i, v] of c.validations.entries()) {
    if (!jsonRules || (v.type !== "json_schema" && v.type !== "jsonpath")) continue;
    const { compileSchema, parseAssertion, SchemaError } = jsonRules;
    if (v.path === undefined && !(c.backend.type === "claude_cli" && c.backend.json_schema !== undefined)) {
      add(
        `a ${v.type} rule without path checks the session's structured output, which only the claude_cli backend with backend.json_schema records`,
        ["validations", i, "type"],
        "add path: (the JSON file to check), or set backend.json_schema",
      );
    }
    if (v.type === "jsonpath") {
      (Array.isArray(v.assert) ? v.assert : [v.assert]).forEach((text, j) => {
        try {
          parseAssertion(text);
        } catch (e) {
          add(`invalid assertion: ${(e as Error).message}`, Array.isArray(v.assert) ? ["validations", i, "assert", j] : ["validations", i, "assert"]);
        }
      });
      continue;
    }
    const loaded = await loadSchema(v.schema, job.dir);
    if ("error" in loaded) {
      add(loaded.error, ["validations", i, "schema"], loaded.hint);
      continue;
    }
    try {
      compileSchema(loaded.schema);
      schemas.set(i, loaded.schema);
    } catch (e) {
      // An inline schema's fault is located within it; a file's, at the rule's `schema:`.
      const inner = typeof v.schema === "object" && e instanceof SchemaError && e.pointer ? e.pointer.slice(1).split("/").map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~")).map((k) => (/^\d+$/.test(k) ? Number(k) : k)) : [];
      add(`${typeof v.schema === "string" ? `${resolve(job.dir, v.schema)}: ` : ""}${(e as Error).message}`, ["validations", i, "schema", ...inner]);
    }
  }

  // Template source.
  let source: string | undefined;
  let templateFile: string | undefined;
  if (c.prompt.template !== undefined) {
    source = c.prompt.template;
  } else if (c.prompt.template_file && opts.template !== undefined) {
    templateFile = c.prompt.template_file;
    source = opts.template;
  } else if (c.prompt.template_file) {
    templateFile = c.prompt.template_file;
    try {
      source = await readFile(templateFile, "utf8");
    } catch {
      if (opts.savedTemplate !== undefined) source = opts.savedTemplate;
      else add(`template_file not found: ${templateFile}`, ["prompt", "template_file"], "paths are relative to the job file's folder");
    }
  } else {
    add("the prompt has neither template nor template_file", ["prompt"], "add prompt.template (inline, use `template: |`) or prompt.template_file");
  }

  const templateAt = (line: number, column: number) =>
    templateFile
      ? { file: templateFile, line, column }
      : { file, line: (job.templateStartLine ?? locate(["prompt", "template"]).line) + line - 1, column: job.templateStartLine ? column : locate(["prompt", "template"]).column };

  let template: CompiledTemplate | undefined;
  if (source !== undefined) {
    try {
      template = compileTemplate(source);
    } catch (e) {
      if (!(e instanceof TemplateSyntaxError)) throw e;
      add(e.message, ["prompt", templateFile ? "template_file" : "template"], undefined, templateAt(e.line, e.column));
    }
  }

  const total = issues.some((i) => i.path === "batch.start_item") ? 0 : totalBatches(range);
  const at = (map: (path: string) => string) => prepare({ job, c, total, template, limitPatterns, schemas, source: source ?? "", map });
  // Render every batch so undefined variables surface now, not in batch 40 at 3 a.m.
  const probe = at((p) => p);
  // prompt.cache_prefix renders with the job's variables only: a per-batch one is an error here.
  if (c.prompt.cache_prefix !== undefined && total > 0) {
    try {
      compileTemplate(c.prompt.cache_prefix).render(staticVariables(probe.variables(1)), "prompt.cache_prefix");
    } catch (e) {
      if (!(e instanceof TemplateSyntaxError) && !(e instanceof TemplateRenderError)) throw e;
      const perBatch = e instanceof TemplateRenderError && (PER_BATCH_VARIABLES as readonly string[]).includes(e.variable ?? "");
      add(
        perBatch ? `prompt.cache_prefix uses "${(e as TemplateRenderError).variable}", which differs from batch to batch` : e.message,
        ["prompt", "cache_prefix"],
        perBatch ? "the cached prefix must be the same for every batch: move per-batch text into the template" : undefined,
      );
    }
  }
  if (template && total > 0) {
    const seen = new Set<string>();
    for (let n = 1; n <= total && issues.length < MAX_ISSUES; n++) {
      try {
        template.render(probe.variables(n), `batch ${n}`);
      } catch (e) {
        if (!(e instanceof TemplateRenderError)) throw e;
        const key = e.variable ?? e.message;
        if (seen.has(key)) continue;
        seen.add(key);
        add(e.message, ["prompt", templateFile ? "template_file" : "template"], e.variable ? `define it under prompt.variables, or fix its spelling` : undefined, templateAt(e.line, 1));
      }
    }
  }
  // Placeholders are checked once, against batch 1's names (every batch has the same names).
  const scalarVars = Object.fromEntries(Object.entries(c.prompt.variables).filter(([, v]) => v === null || typeof v !== "object"));
  const names = new Set([...Object.keys(scalarVars), ...BUILTIN_VARIABLES]);
  const checkPlaceholders = (text: string | undefined, path: ReadonlyArray<PropertyKey>) => {
    if (!text) return;
    for (const p of placeholdersIn(text)) {
      if (!names.has(p)) add(`unknown placeholder "${p}"`, path, `available: ${[...names].join(", ")}`);
    }
  };
  c.validations.forEach((v, i) => {
    if (v.type === "command_succeeds") {
      checkPlaceholders(v.command, ["validations", i, "command"]);
      checkPlaceholders(v.working_directory, ["validations", i, "working_directory"]);
    } else {
      checkPlaceholders(v.path, ["validations", i, "path"]);
    }
  });
  const b = c.backend;
  if (b.type === "command") checkPlaceholders(b.command, ["backend", "command"]);
  if (b.type === "anthropic_api" || b.type === "anthropic_batch") checkPlaceholders(b.output_path, ["backend", "output_path"]);

  if (issues.length) throw new ConfigError(issues.sort((a, b) => (a.file === b.file ? a.line - b.line || a.column - b.column : a.file < b.file ? -1 : 1)));
  return probe;
}

/** The prepared job, with every path it hands out passed through `map` (see PreparedJob.relocated). */
function prepare(o: {
  job: LoadedJob;
  c: JobConfig;
  total: number;
  template: CompiledTemplate | undefined;
  limitPatterns: RegExp[];
  /** json_schema rules' schemas by rule index, read from their files. */
  schemas: Map<number, unknown>;
  source: string;
  map: (path: string) => string;
}): PreparedJob {
  const { job, c, total, template, map } = o;
  const range = c.batch;
  const workspace = map(c.workspace);
  const scalarVars = Object.fromEntries(Object.entries(c.prompt.variables).filter(([, v]) => v === null || typeof v !== "object"));
  const variables = (n: number): Record<string, unknown> => {
    const b = batchAt(range, n);
    return {
      ...c.prompt.variables,
      batch_num: b.batch_num,
      total_batches: total,
      start_item: b.start_item,
      end_item: b.end_item,
      workspace,
      stakes: c.prompt.stakes ?? "",
      thinking_method: c.prompt.thinking_method ?? "",
      job_name: c.name,
      job_dir: job.dir,
    };
  };
  const placeholderVars = (n: number): Record<string, unknown> => ({ ...scalarVars, ...variables(n) });
  // Relative paths resolve against the workspace as configured; `map` then moves what lies inside it.
  const abs = (p: string) => map(isAbsolute(p) ? p : resolve(c.workspace, p));
  const b = c.backend;
  const staticPart = total > 0 && template ? staticPartOf(c, o.source, variables, template) : undefined;
  const render = (n: number) => (staticPart?.fixed ?? "") + template!.render(variables(n), `batch ${n}`);
  // Only the API backends send a cached block; the static part is worked out once, when first asked for.
  const caches = b.type === "anthropic_api" || b.type === "anthropic_batch";
  let part: string | undefined | null = null;
  const staticText = () => (part === null ? (part = staticPart?.fixed || staticPart?.auto(render(1))) : part);
  return {
    config: workspace === c.workspace ? c : { ...c, workspace },
    file: job.file,
    dir: job.dir,
    raw: job.raw,
    source: job.source,
    totalBatches: total,
    batch: (n) => batchAt(range, n),
    variables,
    prompt: render,
    cachePrefix: (prompt) => {
      const text = caches ? staticText() : undefined;
      return text && prompt.length > text.length && prompt.startsWith(text) ? text : undefined;
    },
    validations: (n) => {
      const vars = placeholderVars(n);
      return c.validations.map((v, i): ExpandedRule => {
        if (v.type === "command_succeeds") {
          const command = expandForShell(v.command, vars);
          const wd = v.working_directory ? abs(expandPlaceholders(v.working_directory, vars)) : undefined;
          return { ...v, command, working_directory: wd, target: command };
        }
        if (v.type === "json_schema" || v.type === "jsonpath") {
          const path = v.path === undefined ? undefined : abs(expandPlaceholders(v.path, vars));
          const rule = v.type === "json_schema" ? { ...v, schema: (o.schemas.get(i) ?? v.schema) as typeof v.schema } : v;
          return { ...rule, path, target: path ?? STRUCTURED_OUTPUT };
        }
        const path = abs(expandPlaceholders(v.path, vars));
        return { ...v, path, target: path };
      });
    },
    command: (n) => (b.type === "command" && b.command ? expandForShell(b.command, placeholderVars(n)) : undefined),
    outputPath: (n) => (b.type === "anthropic_api" || b.type === "anthropic_batch" ? abs(expandPlaceholders(b.output_path, placeholderVars(n))) : undefined),
    cwd: (b.type === "claude_cli" || b.type === "command") && b.working_directory ? map(b.working_directory) : workspace,
    limitPatterns: o.limitPatterns,
    templateSource: o.source,
    relocated: (next) => prepare({ ...o, map: (p) => next(map(p)) }),
  };
}

/** The job's variables without the per-batch ones: what a prompt's static part may use. */
function staticVariables(vars: Record<string, unknown>): Record<string, unknown> {
  const out = { ...vars };
  for (const k of PER_BATCH_VARIABLES) delete out[k];
  return out;
}

/**
 * The static part of every prompt. `fixed`: prompt.cache_prefix rendered once, sent before the
 * template's output. `auto`: without it, the template's text before its first per-batch variable,
 * rendered (as much of it as batch 1's prompt starts with); undefined when that text is not a
 * template of its own (an open {% for %}).
 */
function staticPartOf(c: JobConfig, source: string, variables: (n: number) => Record<string, unknown>, template: CompiledTemplate): { fixed?: string; auto(first: string): string | undefined } {
  if (c.prompt.cache_prefix !== undefined) {
    try {
      return { fixed: compileTemplate(c.prompt.cache_prefix).render(staticVariables(variables(1)), "prompt.cache_prefix"), auto: () => undefined };
    } catch {
      // Reported by checkJob.
      return { auto: () => undefined };
    }
  }
  return {
    auto(first) {
      let part: string | undefined;
      const head = staticSource(source);
      if (head !== undefined && template) {
        try {
          const rendered = compileTemplate(head).render(staticVariables(variables(1)), "batch 1");
          let k = 0;
          while (k < rendered.length && k < first.length && rendered[k] === first[k]) k++;
          part = rendered.slice(0, k) || undefined;
        } catch {
          part = undefined;
        }
      }
      return part;
    },
  };
}

/** A path shown relative to the current folder when that is shorter. */
export function displayPath(p: string, cwd = process.cwd()): string {
  const rel = relative(cwd, p);
  return rel && !rel.startsWith("..") && rel.length < p.length ? rel : p;
}

/** A json_schema rule's schema: inline, or read from a JSON file relative to the job file. */
async function loadSchema(schema: unknown, jobDir: string): Promise<{ schema: unknown } | { error: string; hint?: string }> {
  if (typeof schema !== "string") return { schema };
  const path = resolve(jobDir, schema);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { error: `cannot read the JSON Schema ${path}${code === "ENOENT" ? ": no such file" : ` (${(e as Error).message})`}`, hint: "paths are relative to the job file's folder; or write the schema inline" };
  }
  try {
    return { schema: JSON.parse(text) };
  } catch (e) {
    return { error: `${path} is not JSON: ${(e as Error).message}`, hint: "a JSON Schema file holds one JSON object" };
  }
}
