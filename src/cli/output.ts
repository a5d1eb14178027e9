/**
 * Human vs machine output. With --json only JSON goes to stdout and every human line goes to
 * stderr; without it, results go to stdout and chatter to stderr. Colour only on a TTY, never
 * with NO_COLOR, and no animation outside a TTY or in CI.
 */
import { stripVTControlCharacters } from "node:util";

/**
 * stdout writes go through here so the entry can wait for the last one before exiting: under
 * Bun, process.exit() right after a large write to a pipe cuts it at 64 KiB, while the write's
 * own callback fires only once the data is out. stdout is process-wide, so its flush is too.
 */
let lastStdoutWrite: Promise<void> = Promise.resolve();
export function writeStdout(text: string): void {
  lastStdoutWrite = new Promise((resolve) => process.stdout.write(text, () => resolve()));
}
export function stdoutFlushed(): Promise<void> {
  return lastStdoutWrite;
}

export interface GlobalFlags {
  verbose?: boolean;
  quiet?: boolean;
  json?: boolean;
  color?: boolean;
}

type Paint = (s: string | number) => string;
export interface Palette {
  bold: Paint;
  dim: Paint;
  red: Paint;
  green: Paint;
  yellow: Paint;
  cyan: Paint;
}

export interface Output {
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  /** stderr is an interactive terminal and we are not in CI: live progress allowed. */
  interactive: boolean;
  c: Palette;
  /** A result line for humans (stdout, or stderr under --json). */
  print(line?: string): void;
  /** Chatter; silenced by -q. */
  info(line: string): void;
  /** Only with -v. */
  detail(line: string): void;
  warn(line: string): void;
  error(line: string, hint?: string): void;
  /** The --json document: exactly one JSON value on stdout. */
  emit(value: unknown): void;
}

export function colorEnabled(stream: { isTTY?: boolean }, env: Record<string, string | undefined> = process.env, flag?: boolean): boolean {
  if (flag === false || "NO_COLOR" in env) return false;
  if (flag === true || (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0")) return true;
  return Boolean(stream.isTTY) && env.TERM !== "dumb";
}

export function isCI(env: Record<string, string | undefined> = process.env): boolean {
  return Boolean(env.CI && env.CI !== "false" && env.CI !== "0");
}

function palette(on: boolean): Palette {
  const wrap =
    (open: number, close: number): Paint =>
    (s) =>
      on ? `\x1b[${open}m${s}\x1b[${close}m` : String(s);
  return { bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), cyan: wrap(36, 39) };
}

export function createOutput(flags: GlobalFlags, env: Record<string, string | undefined> = process.env): Output {
  const json = Boolean(flags.json);
  const quiet = Boolean(flags.quiet) && !flags.verbose;
  const human = json ? process.stderr : process.stdout;
  const c = palette(colorEnabled(human, env, flags.color));
  const ce = palette(colorEnabled(process.stderr, env, flags.color));
  const write = (stream: NodeJS.WriteStream, line: string, colored: boolean) => {
    const text = `${colored ? line : stripVTControlCharacters(line)}\n`;
    if (stream === process.stdout) writeStdout(text);
    else stream.write(text);
  };
  const stdoutColor = colorEnabled(process.stdout, env, flags.color);
  const stderrColor = colorEnabled(process.stderr, env, flags.color);
  return {
    json,
    quiet,
    verbose: Boolean(flags.verbose),
    interactive: Boolean(process.stderr.isTTY) && !isCI(env) && env.TERM !== "dumb",
    c,
    print: (line = "") => write(human, line, json ? stderrColor : stdoutColor),
    info: (line) => {
      if (!quiet) write(process.stderr, line, stderrColor);
    },
    detail: (line) => {
      if (flags.verbose) write(process.stderr, ce.dim(line), stderrColor);
    },
    warn: (line) => write(process.stderr, `${ce.yellow("warning:")} ${line}`, stderrColor),
    error: (line, hint) => {
      write(process.stderr, `${ce.red("error:")} ${line}`, stderrColor);
      if (hint) write(process.stderr, `  ${ce.dim("hint:")} ${hint}`, stderrColor);
    },
    emit: (value) => {
      writeStdout(`${JSON.stringify(value, null, 2)}\n`);
    },
  };
}

/** A plain aligned table (no box drawing: it must read well in CI logs and pipes). */
export function table(headers: string[], rows: Array<Array<string | number>>, align: Array<"l" | "r"> = []): string[] {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const width = headers.map((_, i) => Math.max(...cells.map((r) => stripVTControlCharacters(r[i] ?? "").length)));
  return cells.map((r) =>
    r
      .map((cell, i) => {
        const pad = " ".repeat(Math.max(0, width[i]! - stripVTControlCharacters(cell).length));
        return align[i] === "r" ? pad + cell : cell + pad;
      })
      .join("  ")
      .trimEnd(),
  );
}
