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
  expandPlaceholders,
  placeholdersIn,
  TemplateRenderError,
  TemplateSyntaxError,
  type CompiledTemplate,
} from "../prompts/render.ts";
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
  validations(n: number): ExpandedRule[];
  /** The `command` backend's shell command for batch n (placeholders expanded). */
  command(n: number): string | undefined;
  /** Where the backend process runs. */
  cwd: string;
  /** User patterns from rate_limit.detection_patterns, compiled. */
  limitPatterns: RegExp[];
  /** The template text (inline or from template_file): part of the config hash. */
  templateSource: string;
}

const MAX_ISSUES = 50;

export async function checkJob(job: LoadedJob): Promise<PreparedJob> {
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

  // Template source.
  let source: string | undefined;
  let templateFile: string | undefined;
  if (c.prompt.template !== undefined) {
    source = c.prompt.template;
  } else if (c.prompt.template_file) {
    templateFile = c.prompt.template_file;
    try {
      source = await readFile(templateFile, "utf8");
    } catch {
      add(`template_file not found: ${templateFile}`, ["prompt", "template_file"], "paths are relative to the job file's folder");
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
  const workspace = c.workspace;
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

  // Placeholders are checked once, against batch 1's names (every batch has the same names).
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
  checkPlaceholders(c.backend.command, ["backend", "command"]);

  // Render every batch so undefined variables surface now, not in batch 40 at 3 a.m.
  if (template && total > 0) {
    const seen = new Set<string>();
    for (let n = 1; n <= total && issues.length < MAX_ISSUES; n++) {
      try {
        template.render(variables(n), `batch ${n}`);
      } catch (e) {
        if (!(e instanceof TemplateRenderError)) throw e;
        const key = e.variable ?? e.message;
        if (seen.has(key)) continue;
        seen.add(key);
        add(e.message, ["prompt", templateFile ? "template_file" : "template"], e.variable ? `define it under prompt.variables, or fix its spelling` : undefined, templateAt(e.line, 1));
      }
    }
  }

  if (issues.length) throw new ConfigError(issues.sort((a, b) => (a.file === b.file ? a.line - b.line || a.column - b.column : a.file < b.file ? -1 : 1)));

  const abs = (p: string, base = workspace) => (isAbsolute(p) ? p : resolve(base, p));
  return {
    config: c,
    file,
    dir: job.dir,
    raw: job.raw,
    source: job.source,
    totalBatches: total,
    batch: (n) => batchAt(range, n),
    variables,
    prompt: (n) => template!.render(variables(n), `batch ${n}`),
    validations: (n) => {
      const vars = placeholderVars(n);
      return c.validations.map((v): ExpandedRule => {
        if (v.type === "command_succeeds") {
          const command = expandPlaceholders(v.command, vars);
          const wd = v.working_directory ? abs(expandPlaceholders(v.working_directory, vars)) : undefined;
          return { ...v, command, working_directory: wd, target: command };
        }
        const path = abs(expandPlaceholders(v.path, vars));
        return { ...v, path, target: path };
      });
    },
    command: (n) => (c.backend.command ? expandPlaceholders(c.backend.command, placeholderVars(n)) : undefined),
    cwd: c.backend.working_directory ?? workspace,
    limitPatterns,
    templateSource: source ?? "",
  };
}

/** A path shown relative to the current folder when that is shorter. */
export function displayPath(p: string, cwd = process.cwd()): string {
  const rel = relative(cwd, p);
  return rel && !rel.startsWith("..") && rel.length < p.length ? rel : p;
}
