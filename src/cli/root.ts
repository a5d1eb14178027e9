/**
 * The citty root: loads each command lazily, accepts global flags before or after the command,
 * rejects unknown commands and flags with a suggestion (exit 2), and turns errors into one clear
 * message. With --json every path, errors and help included, writes exactly one JSON document
 * to stdout; human text goes to stderr. src/main.ts answers --version before this module loads.
 */
import { defineCommand, renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { stripVTControlCharacters } from "node:util";
import { closest, formatIssue } from "../config/errors.ts";
import { EXIT, MozartError } from "../errors.ts";
import { clean } from "../text.ts";
import { VERSION } from "../version.ts";
import { globalArgs } from "./args.ts";
import { colorEnabled, createOutput, jsonEmitted, onStdoutClosed, writeStderr, writeStdout } from "./output.ts";

type Loader = () => Promise<CommandDef<ArgsDef>>;
const commands: Record<string, Loader> = {
  run: () => import("./run.ts").then((m) => m.default as CommandDef<ArgsDef>),
  resume: () => import("./resume.ts").then((m) => m.default as CommandDef<ArgsDef>),
  status: () => import("./status.ts").then((m) => m.default as CommandDef<ArgsDef>),
  list: () => import("./list.ts").then((m) => m.default as CommandDef<ArgsDef>),
  logs: () => import("./logs.ts").then((m) => m.default as CommandDef<ArgsDef>),
  pause: () => import("./pause.ts").then((m) => m.default as CommandDef<ArgsDef>),
  cancel: () => import("./cancel.ts").then((m) => m.default as CommandDef<ArgsDef>),
  repair: () => import("./repair.ts").then((m) => m.default as CommandDef<ArgsDef>),
  forget: () => import("./forget.ts").then((m) => m.default as CommandDef<ArgsDef>),
  clean: () => import("./clean.ts").then((m) => m.default as CommandDef<ArgsDef>),
  dashboard: () => import("./dashboard.ts").then((m) => m.default as CommandDef<ArgsDef>),
  worker: () => import("./worker.ts").then((m) => m.default as CommandDef<ArgsDef>),
  "merge-state": () => import("./merge-state.ts").then((m) => m.default as CommandDef<ArgsDef>),
  db: () => import("./db.ts").then((m) => m.default as CommandDef<ArgsDef>),
  stats: () => import("./stats.ts").then((m) => m.default as CommandDef<ArgsDef>),
  validate: () => import("./validate.ts").then((m) => m.default as CommandDef<ArgsDef>),
  doctor: () => import("./doctor.ts").then((m) => m.default as CommandDef<ArgsDef>),
  notify: () => import("./notify.ts").then((m) => m.default as CommandDef<ArgsDef>),
  schema: () => import("./schema.ts").then((m) => m.default as CommandDef<ArgsDef>),
};

/** Commands that own running work: a closed stdout must not cut them short. */
const RUNS_WORK = new Set(["run", "resume", "worker"]);

const EXIT_CODES = [
  { code: EXIT.ok, meaning: "the job completed (or the command succeeded)" },
  { code: EXIT.failed, meaning: "the job failed, or a runtime error (job not found, state unreadable)" },
  { code: EXIT.usage, meaning: "usage or configuration error (bad flag, invalid job file)" },
  { code: EXIT.paused, meaning: "paused or cancelled (Ctrl+C, SIGTERM, `mozart pause`/`cancel`); continue with `mozart resume <job>`" },
];
const EXIT_CODES_HELP = `EXIT CODES\n\n${EXIT_CODES.map((e) => `  ${String(e.code).padEnd(5)}${e.meaning}`).join("\n")}`;

const DESCRIPTION = "Orchestrate many Claude sessions from one declarative job file";
const root = defineCommand({
  meta: { name: "mozart", version: VERSION, description: DESCRIPTION },
  args: globalArgs,
  subCommands: commands,
});

type ArgDef = { type?: string; alias?: string | string[]; description?: string; required?: boolean; default?: unknown; valueHint?: string };

function usageError(message: string, hint?: string): MozartError {
  return new MozartError(message, { exitCode: EXIT.usage, hint });
}

function printUsage(text: string): void {
  const out = colorEnabled(process.stdout) ? text : stripVTControlCharacters(text);
  writeStdout(`${out}\n`);
}

/**
 * Whether the user asked for JSON, judged from the raw words before `--`, so that even an error
 * found before the command is known (an unknown command, a flag missing its value) is JSON.
 */
export function wantsJson(argv: string[]): boolean {
  for (const a of argv) {
    if (a === "--") break;
    if (a === "--json" || (a.startsWith("--json=") && a !== "--json=false")) return true;
    if (/^-[a-zA-Z]+$/.test(a) && a.includes("j")) return true;
  }
  return false;
}

function wantsVerbose(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some((a) => a === "--verbose" || (/^-[a-zA-Z]+$/.test(a) && a.includes("v")));
}

async function main(argv: string[], json: boolean): Promise<number> {
  const dashdash = argv.indexOf("--");
  const flagsPart = dashdash < 0 ? argv : argv.slice(0, dashdash);

  // Global flags may come before the command: move them after it, where the command parses them.
  const globalsBefore: string[] = [];
  let i = 0;
  for (; i < flagsPart.length && flagsPart[i]!.startsWith("-"); i++) globalsBefore.push(flagsPart[i]!);
  const name = flagsPart[i];
  const help = flagsPart.some((a) => a === "--help" || (/^-[a-zA-Z]+$/.test(a) && a.includes("h")));

  for (const f of globalsBefore) {
    if (!isGlobalFlag(f)) {
      throw usageError(`unknown global option ${f}`, "global options: -v/--verbose, -q/--quiet, -j/--json, -V/--version, --no-color, -h/--help");
    }
  }
  if (name === undefined) {
    if (json) createOutput({ json }).emit(await describeRoot());
    else printUsage(`${await renderUsage(root)}\n\n${EXIT_CODES_HELP}`);
    return EXIT.ok;
  }
  const load = commands[name];
  if (!load) {
    const guess = closest(name, Object.keys(commands));
    throw usageError(`unknown command "${name}"`, guess ? `did you mean "mozart ${guess}"?` : `run "mozart --help" to see the commands`);
  }
  // A closed stdout (`mozart status job | head -1`) means nobody reads what comes next: end at
  // once, quietly. Exit 0, not the shell's 141 for SIGPIPE: the reader leaving early was its
  // choice, and under `set -o pipefail` 141 would fail a CI step that got what it asked for.
  // A run or resume carries on with its output dropped: ending it here would abandon running
  // attempts and its lock; it exits with its own code.
  if (!RUNS_WORK.has(name)) onStdoutClosed(() => process.exit(EXIT.ok));
  const cmd = await load();
  if (help) {
    if (json) createOutput({ json }).emit(describeCommand(name, cmd));
    else printUsage(await renderUsage(cmd, root as unknown as CommandDef<ArgsDef>));
    return EXIT.ok;
  }
  const rest = [...flagsPart.slice(i + 1), ...globalsBefore, ...(dashdash < 0 ? [] : argv.slice(dashdash))];
  const bad = checkArgs(cmd, rest);
  if (bad) throw usageError(bad.message, bad.hint ?? `run "mozart ${name} --help" for the options`);
  const { result } = await runCommand(cmd, { rawArgs: rest });
  // Commands return their exit code; one that returns nothing succeeded.
  return typeof result === "number" ? result : EXIT.ok;
}

const GLOBAL_SHORTS = "vqjVh";
function isGlobalFlag(f: string): boolean {
  if (["--verbose", "--quiet", "--json", "--color", "--no-color", "--help"].includes(f)) return true;
  return /^-[a-zA-Z]+$/.test(f) && [...f.slice(1)].every((l) => GLOBAL_SHORTS.includes(l));
}

/** `mozart --json`: what this program is and what it can do, for scripts and tools. */
async function describeRoot() {
  const list = await Promise.all(
    Object.entries(commands).map(async ([name, load]) => {
      const meta = ((await load()).meta ?? {}) as { description?: string };
      return { name, description: meta.description ?? "" };
    }),
  );
  return { name: "mozart", version: VERSION, description: DESCRIPTION, commands: list, global_options: describeOptions(globalArgs), exit_codes: EXIT_CODES };
}

/** `mozart <command> --help --json`. */
function describeCommand(name: string, cmd: CommandDef<ArgsDef>) {
  const meta = (cmd.meta ?? {}) as { description?: string };
  const defs = (cmd.args ?? {}) as Record<string, ArgDef>;
  const positionals = Object.entries(defs)
    .filter(([, d]) => d.type === "positional")
    .map(([key, d]) => ({ name: key.toUpperCase(), description: d.description ?? "", required: d.required !== false && d.default === undefined }));
  return { name, description: meta.description ?? "", arguments: positionals, options: describeOptions(defs) };
}

function describeOptions(defs: Record<string, ArgDef>) {
  return Object.entries(defs)
    .filter(([, d]) => d.type !== "positional")
    .map(([key, d]) => ({
      name: `--${key}`,
      ...(d.alias ? { aliases: [d.alias].flat().map((a) => (a.length === 1 ? `-${a}` : `--${a}`)) } : {}),
      type: d.type ?? "boolean",
      ...(d.valueHint ? { value: d.valueHint } : {}),
      description: d.description ?? "",
    }));
}

/**
 * What citty does not check: unknown flags (a typo like --dryrun must not be ignored), a value
 * flag with no value (`-b --json` would otherwise take "--json" as the batch), extra words and
 * missing required arguments. Follows node's parseArgs, which citty uses: `--batch=3`, `-b 3`,
 * `-b3`, clusters of boolean letters like `-nv`, and everything after `--` is an argument.
 */
export function checkArgs(cmd: Pick<CommandDef<ArgsDef>, "args">, args: string[]): { message: string; hint?: string } | undefined {
  const defs = (cmd.args ?? {}) as Record<string, ArgDef>;
  const longs = new Map<string, { key: string; def: ArgDef }>();
  const shorts = new Map<string, { key: string; def: ArgDef }>();
  const positionals: Array<{ key: string; def: ArgDef }> = [];
  for (const [key, def] of Object.entries(defs)) {
    if (def.type === "positional") {
      positionals.push({ key, def });
      continue;
    }
    longs.set(key, { key, def });
    for (const a of [def.alias ?? []].flat()) (a.length === 1 ? shorts : longs).set(a, { key, def });
  }
  const takesValue = (def: ArgDef) => def.type === "string" || def.type === "enum";
  const needsValue = (key: string, def: ArgDef) => ({
    message: `--${key} needs a value`,
    hint: `usage: --${key} ${def.valueHint ?? "VALUE"}`,
  });
  // A value may look like a negative number, never like a flag.
  const isValue = (next: string | undefined) => next !== undefined && next !== "" && (!next.startsWith("-") || /^-\d/.test(next));

  let seen = 0;
  // A last positional whose value hint ends in "..." takes any number of words (`merge-state DIR...`).
  const variadic = positionals.at(-1)?.def.valueHint?.endsWith("...") ?? false;
  const positional = (a: string) => (++seen > positionals.length && !variadic ? { message: `unexpected argument "${a}"` } : undefined);
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === "--") {
      for (const extra of args.slice(k + 1)) {
        const bad = positional(extra);
        if (bad) return bad;
      }
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const raw = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const found = longs.get(raw) ?? (raw.startsWith("no-") ? longs.get(raw.slice(3)) : undefined);
      if (!found) {
        const guess = closest(raw, [...longs.keys()].filter((x) => x.length > 1));
        return { message: `unknown option --${raw}`, hint: guess ? `did you mean --${guess}?` : undefined };
      }
      if (!takesValue(found.def)) continue;
      if (eq >= 0) {
        if (eq === a.length - 1) return needsValue(found.key, found.def);
      } else if (isValue(args[k + 1])) k++;
      else return needsValue(found.key, found.def);
    } else if (a.startsWith("-") && a.length > 1 && !/^-\d/.test(a)) {
      const letters = a.slice(1);
      for (let j = 0; j < letters.length; j++) {
        const found = shorts.get(letters[j]!);
        if (!found) return { message: `unknown option -${letters[j]}${letters.length > 1 ? ` (in ${a})` : ""}` };
        if (!takesValue(found.def)) continue;
        // `-b3`: the rest of the word is the value; `-b 3`: the next word is.
        if (j < letters.length - 1) break;
        if (isValue(args[k + 1])) k++;
        else return needsValue(found.key, found.def);
      }
    } else {
      const bad = positional(a);
      if (bad) return bad;
    }
  }
  const missing = positionals.slice(seen).find(({ def }) => def.required !== false && def.default === undefined);
  if (missing) {
    const what = missing.def.description ? `: ${missing.def.description.charAt(0).toLowerCase()}${missing.def.description.slice(1)}` : "";
    return { message: `missing ${missing.key.toUpperCase()}${what}` };
  }
  return undefined;
}

export async function cli(argv: string[]): Promise<number> {
  const json = wantsJson(argv);
  try {
    return await main(argv, json);
  } catch (e) {
    return reportError(e, json, wantsVerbose(argv));
  }
}

function reportError(e: unknown, json: boolean, verbose: boolean): number {
  const out = createOutput({ json, verbose });
  // Exactly one document: an error after a command already wrote its own goes to stderr only.
  const emit = (error: unknown) => {
    if (json && !jsonEmitted()) out.emit({ error });
  };
  const err = e as { name?: string; message?: string; exitCode?: number; hint?: string; issues?: Array<Parameters<typeof formatIssue>[0]>; code?: string };
  if (err?.name === "ConfigError" && err.issues) {
    const list = err.issues.map(({ message, file, line, column, path, hint }) => ({ message, file, line, column, path, ...(hint ? { hint } : {}) }));
    emit(list.length === 1 ? list[0] : list);
    const n = err.issues.length;
    out.error(`the job file has ${n} problem${n === 1 ? "" : "s"}:`);
    for (const issue of err.issues) writeStderr(`  ${clean(formatIssue(issue)).replace(/\n/g, "\n  ")}\n`);
    return EXIT.usage;
  }
  if (err?.name === "MozartError") {
    const code = err.exitCode ?? EXIT.failed;
    emit({ message: err.message, ...(err.hint ? { hint: err.hint } : {}), exit_code: code });
    out.error(err.message ?? String(e), err.hint);
    return code;
  }
  if (err?.name === "CLIError") {
    // citty colours its messages; JSON and logs get plain text.
    const message = clean(err.message ?? String(e));
    const hint = `run "mozart --help" for usage`;
    emit({ message, hint, exit_code: EXIT.usage });
    out.error(message, hint);
    return EXIT.usage;
  }
  const message = err?.message ?? String(e);
  emit({ message, exit_code: EXIT.failed });
  out.error(`unexpected error: ${message}`, verbose ? undefined : "run again with --verbose for details");
  if (verbose && e instanceof Error && e.stack) writeStderr(`${e.stack}\n`);
  return EXIT.failed;
}
