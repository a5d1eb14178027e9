/**
 * The completion-mode prompt: sent when a batch partly passed its validations, so Claude
 * finishes only what is missing instead of starting over. Pure: results in, text out.
 *
 * Unlike the reference, every rule type appears in both lists (a batch failing only on a
 * command gets a real to-do list, R11), passed file_modified entries name the file, and an
 * undescribed failure is named by its path or command.
 */
import { STRUCTURED_OUTPUT, type ValidationResult } from "../state/types.ts";

export interface CompletionPromptInput {
  batchNum: number;
  /** 1-based completion attempt. */
  attempt: number;
  maxAttempts: number;
  /** The latest validation results of this batch. */
  results: ValidationResult[];
  /** The batch's rendered prompt. */
  originalPrompt: string;
  /** Sent into the session that did the earlier work (`--resume`): it knows the task, so the prompt does not repeat it. */
  resumed?: boolean;
}

export const ORIGINAL_PROMPT_LIMIT = 3000;

export function completionPrompt(input: CompletionPromptInput): string {
  const passed = input.results.filter((r) => r.passed);
  const failed = input.results.filter((r) => !r.passed);
  const lines: string[] = [
    `## COMPLETION MODE - Batch ${input.batchNum}`,
    `Completion attempt ${input.attempt} of ${input.maxAttempts}.`,
    "",
    input.resumed ? "You already did part of this batch in this session, but some checks still fail." : "An earlier session already did part of this batch, but some checks still fail.",
    "Finish only the incomplete items listed below; the rest is done and must stay as it is.",
    "",
    "### ALREADY COMPLETED (DO NOT REDO)",
    ...(passed.length ? passed.flatMap(doneEntry) : ["  (none)"]),
    "",
    "Leave these as they are: do not recreate, rewrite or reformat them.",
    "",
    "### INCOMPLETE ITEMS (FOCUS HERE)",
    ...(failed.length ? failed.flatMap(todoEntry) : ["  (none)"]),
    "",
    "### INSTRUCTIONS",
    "1. Look at what already exists in the workspace before changing anything.",
    "2. Do only the incomplete items above.",
    "3. Don't duplicate work or content that is already there.",
    "4. When you stop, every check listed above must pass.",
    "",
    ...(input.resumed ? [] : ["### ORIGINAL TASK CONTEXT", truncate(input.originalPrompt, ORIGINAL_PROMPT_LIMIT), ""]),
    "---",
    input.resumed ? "Continue from where you stopped; do not start the batch over." : "Continue from where the previous session stopped; do not start the batch over.",
  ];
  return lines.join("\n").trim();
}

function doneEntry(r: ValidationResult): string[] {
  const name = nameOf(r);
  switch (r.type) {
    case "file_exists":
      return [`- [CREATED] ${name}`, `  File: ${r.target}`];
    case "file_modified":
      return [`- [UPDATED] ${name}`, `  File: ${r.target}`];
    case "content_contains":
    case "content_regex":
      return [`- [VERIFIED] ${name}`, `  File: ${r.target}`];
    case "command_succeeds":
      return [`- [PASSING] ${name}`, `  Command: ${r.target}`];
    case "json_schema":
    case "jsonpath":
      return [`- [VERIFIED] ${name}`, `  ${r.target === STRUCTURED_OUTPUT ? "Checked: your structured answer" : `File: ${r.target}`}`];
    default:
      return [`- [DONE] ${name}`, `  Target: ${r.target}`];
  }
}

function todoEntry(r: ValidationResult): string[] {
  const name = nameOf(r);
  const why = `  Check result: ${r.detail}`;
  switch (r.type) {
    case "file_exists":
      return [`- [MISSING] ${name}`, `  Expected file: ${r.target}`, why, "  Action: create this file."];
    case "file_modified":
      return [
        `- [NOT UPDATED] ${name}`,
        `  File: ${r.target}`,
        why,
        "  Action: this file must be written during this batch (created, or changed and saved).",
        "  If it already has content, read it first and add to it rather than replacing it.",
      ];
    case "content_contains":
      return [`- [CONTENT MISSING] ${name}`, `  File: ${r.target}`, why, "  Action: add the required text (exact, case-sensitive) to this file."];
    case "content_regex":
      return [`- [PATTERN NOT MATCHED] ${name}`, `  File: ${r.target}`, why, "  Action: change this file so the pattern matches."];
    case "command_succeeds":
      return [
        `- [COMMAND FAILED] ${name}`,
        `  Command: ${r.target}`,
        why,
        "  Action: fix the work so this command exits with status 0; run it yourself to confirm.",
      ];
    case "json_schema":
    case "jsonpath": {
      const structured = r.target === STRUCTURED_OUTPUT;
      return [
        `- [${r.type === "json_schema" ? "SCHEMA NOT MATCHED" : "ASSERTION FAILED"}] ${name}`,
        structured ? "  Checked: your structured answer (the JSON your final result returns)" : `  File: ${r.target}`,
        why,
        structured ? "  Action: give a final answer whose JSON fixes each path named above." : "  Action: fix the JSON in this file at each path named above; keep it valid JSON.",
      ];
    }
    default:
      return [`- [FAILED] ${name}`, `  Target: ${r.target}`, why];
  }
}

function nameOf(r: ValidationResult): string {
  return r.description.trim() || r.target;
}

function truncate(text: string, limit: number): string {
  if (text.length <= limit) return text;
  // Don't split a surrogate pair, which would leave an invalid character at the cut.
  const code = text.charCodeAt(limit - 1);
  const cut = code >= 0xd800 && code <= 0xdbff ? limit - 1 : limit;
  return `${text.slice(0, cut)}\n[... original prompt truncated: ${cut} of ${text.length} characters shown]`;
}
