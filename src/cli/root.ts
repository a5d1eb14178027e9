/**
 * The citty root: loads each command lazily, accepts global flags before or after the command,
 * rejects unknown commands and flags with a suggestion (exit 2), and turns errors into one clear
 * message. src/main.ts answers --version before this module is even loaded.
 */
import { defineCommand, renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { stripVTControlCharacters } from "node:util";
import { closest, formatIssue } from "../config/errors.ts";
import { EXIT } from "../errors.ts";
import { VERSION } from "../version.ts";
import { globalArgs } from "./args.ts";
import { colorEnabled, createOutput, writeStdout } from "./output.ts";

type Loader = () => Promise<CommandDef<ArgsDef>>;
const commands: Record<string, Loader> = {
  run: () => import("./run.ts").then((m) => m.default as CommandDef<ArgsDef>),
  resume: () => import("./resume.ts").then((m) => m.default as CommandDef<ArgsDef>),
  status: () => import("./status.ts").then((m) => m.default as CommandDef<ArgsDef>),
  list: () => import("./list.ts").then((m) => m.default as CommandDef<ArgsDef>),
  validate: () => import("./validate.ts").then((m) => m.default as CommandDef<ArgsDef>),
  schema: () => import("./schema.ts").then((m) => m.default as CommandDef<ArgsDef>),
};

const EXIT_CODES_HELP = `EXIT CODES

  0    the job completed (or the command succeeded)
  1    the job failed, or a runtime error (job not found, state unreadable)
  2    usage or configuration error (bad flag, invalid job file)
  130  paused by Ctrl+C or SIGTERM; continue with \`mozart resume <job>\``;

const root = defineCommand({
  meta: { name: "mozart", version: VERSION, description: "Orchestrate many Claude sessions from one declarative job file" },
  args: globalArgs,
  subCommands: commands,
});

function printUsage(text: string): void {
  const out = colorEnabled(process.stdout) ? text : stripVTControlCharacters(text);
  writeStdout(`${out}\n`);
}

async function main(argv: string[]): Promise<number> {
  const dashdash = argv.indexOf("--");
  const flagsPart = dashdash < 0 ? argv : argv.slice(0, dashdash);
  const json = flagsPart.includes("--json") || flagsPart.includes("-j");
  const out = createOutput({ json, verbose: flagsPart.includes("--verbose") || flagsPart.includes("-v") });

  // Global flags may come before the command: move them after it, where the command parses them.
  const globalsBefore: string[] = [];
  let i = 0;
  for (; i < flagsPart.length && flagsPart[i]!.startsWith("-"); i++) globalsBefore.push(flagsPart[i]!);
  const name = flagsPart[i];
  const help = flagsPart.includes("--help") || flagsPart.includes("-h");

  for (const f of globalsBefore) {
    if (!isGlobalFlag(f) && !(help && (f === "--help" || f === "-h"))) {
      out.error(`unknown global option ${f}`, "global options: -v/--verbose, -q/--quiet, -V/--version, --no-color, -h/--help");
      return EXIT.usage;
    }
  }
  if (name === undefined) {
    printUsage(`${await renderUsage(root)}\n\n${EXIT_CODES_HELP}`);
    return EXIT.ok;
  }
  const load = commands[name];
  if (!load) {
    const guess = closest(name, Object.keys(commands));
    out.error(`unknown command "${name}"`, guess ? `did you mean "mozart ${guess}"?` : `run "mozart --help" to see the commands`);
    return EXIT.usage;
  }
  const cmd = await load();
  if (help) {
    printUsage(await renderUsage(cmd, root as unknown as CommandDef<ArgsDef>));
    return EXIT.ok;
  }
  const rest = [...flagsPart.slice(i + 1), ...globalsBefore, ...(dashdash < 0 ? [] : argv.slice(dashdash))];
  const bad = checkFlags(cmd, rest);
  if (bad) {
    out.error(bad.message, bad.hint ?? `run "mozart ${name} --help" for the options`);
    return EXIT.usage;
  }
  await runCommand(cmd, { rawArgs: rest });
  return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
}

function isGlobalFlag(f: string): boolean {
  return ["-v", "--verbose", "-q", "--quiet", "--color", "--no-color", "-j", "--json"].includes(f);
}

/** citty accepts unknown flags silently; a typo like --dryrun must not be ignored. */
function checkFlags(cmd: CommandDef<ArgsDef>, args: string[]): { message: string; hint?: string } | undefined {
  const defs = (cmd.args ?? {}) as Record<string, { type?: string; alias?: string | string[] }>;
  const longs = new Map<string, { type?: string }>();
  const shorts = new Map<string, { type?: string }>();
  let positionals = 0;
  for (const [key, def] of Object.entries(defs)) {
    if (def.type === "positional") {
      positionals++;
      continue;
    }
    longs.set(key, def);
    for (const a of [def.alias ?? []].flat()) (a.length === 1 ? shorts : longs).set(a, def);
  }
  let seenPositionals = 0;
  for (let k = 0; k < args.length; k++) {
    const a = args[k]!;
    if (a === "--") break;
    if (a.startsWith("--")) {
      const [raw = ""] = a.slice(2).split("=", 1);
      const key = longs.has(raw) ? raw : raw.startsWith("no-") ? raw.slice(3) : raw;
      const def = longs.get(key);
      if (!def) {
        const guess = closest(raw, [...longs.keys()].filter((x) => x.length > 1));
        return { message: `unknown option --${raw}`, hint: guess ? `did you mean --${guess}?` : undefined };
      }
      if ((def.type === "string" || def.type === "enum") && !a.includes("=")) k++;
    } else if (a.startsWith("-") && a.length > 1 && !/^-\d/.test(a)) {
      const letters = a.slice(1);
      for (let j = 0; j < letters.length; j++) {
        const def = shorts.get(letters[j]!);
        if (!def) return { message: `unknown option -${letters[j]}${letters.length > 1 ? ` (in ${a})` : ""}` };
        if ((def.type === "string" || def.type === "enum") && j === letters.length - 1) k++;
      }
    } else if (++seenPositionals > positionals) {
      return { message: `unexpected argument "${a}"` };
    }
  }
  return undefined;
}

export async function cli(argv: string[]): Promise<number> {
  try {
    return await main(argv);
  } catch (e) {
    return reportError(e, argv);
  }
}

function reportError(e: unknown, argv: string[]): number {
  const json = argv.includes("--json") || argv.includes("-j");
  const verbose = argv.includes("--verbose") || argv.includes("-v");
  const out = createOutput({ json, verbose });
  const err = e as { name?: string; message?: string; exitCode?: number; hint?: string; issues?: Array<Parameters<typeof formatIssue>[0]>; code?: string };
  if (err?.name === "ConfigError" && err.issues) {
    if (json) {
      const list = err.issues.map(({ message, file, line, column, path, hint }) => ({ message, file, line, column, path, ...(hint ? { hint } : {}) }));
      out.emit({ error: list.length === 1 ? list[0] : list });
    }
    const n = err.issues.length;
    out.error(`the job file has ${n} problem${n === 1 ? "" : "s"}:`);
    for (const issue of err.issues) process.stderr.write(`  ${formatIssue(issue).replace(/\n/g, "\n  ")}\n`);
    return EXIT.usage;
  }
  if (err?.name === "MozartError") {
    if (json) out.emit({ error: { message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
    out.error(err.message ?? String(e), err.hint);
    return err.exitCode ?? EXIT.failed;
  }
  if (err?.name === "CLIError") {
    if (json) out.emit({ error: { message: err.message } });
    out.error(err.message ?? String(e), `run "mozart --help" for usage`);
    return EXIT.usage;
  }
  if (json) out.emit({ error: { message: err?.message ?? String(e) } });
  out.error(`unexpected error: ${err?.message ?? String(e)}`, verbose ? undefined : "run again with --verbose for details");
  if (verbose && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  return EXIT.failed;
}
