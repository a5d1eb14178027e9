/**
 * Human vs machine output. With --json only JSON goes to stdout and every human line goes to
 * stderr; without it, results go to stdout and chatter to stderr. Colour only on a TTY, never
 * with NO_COLOR, and no animation outside a TTY or in CI.
 */
import { clean, cleanKeepingColour, width } from "../text.ts";

/**
 * Every write to stdout and stderr goes through these two, for two reasons.
 *
 * The entry waits for the last stdout write before exiting: under Bun, process.exit() right
 * after a large write to a pipe cuts it at 64 KiB, while the write's own callback fires only
 * once the data is out.
 *
 * A stream whose reader is gone must never crash Mozart or print a stack trace: stdout piped
 * into `head -1` (EPIPE), stderr on a terminal that was closed (EIO after SIGHUP). The first
 * failed write marks the stream closed and every later write to it is dropped. What happens
 * next is the command's choice (see onStdoutClosed): a run carries on, so its attempts finish
 * and its state and lock are put away properly.
 *
 * The streams are process-wide, so this state is too.
 */
const closed = { stdout: false, stderr: false };
let stdoutClosedAction: (() => void) | undefined;
let lastStdoutWrite: Promise<void> = Promise.resolve();
let jsonDocuments = 0;
let listening = false;

function listen(): void {
  if (listening) return;
  listening = true;
  // Errors also arrive asynchronously (Node, Deno); an 'error' event without a listener throws.
  process.stdout.on("error", markStdoutClosed);
  process.stderr.on("error", () => {
    closed.stderr = true;
  });
}

function markStdoutClosed(): void {
  if (closed.stdout) return;
  closed.stdout = true;
  stdoutClosedAction?.();
}

export function writeStdout(text: string): void {
  listen();
  if (closed.stdout) return;
  lastStdoutWrite = new Promise((resolve) => {
    try {
      process.stdout.write(text, (e) => {
        if (e) markStdoutClosed();
        resolve();
      });
    } catch {
      markStdoutClosed();
      resolve();
    }
  });
}

export function writeStderr(text: string): void {
  listen();
  if (closed.stderr) return;
  try {
    process.stderr.write(text, (e) => {
      if (e) closed.stderr = true;
    });
  } catch {
    closed.stderr = true;
  }
}

export function stdoutFlushed(): Promise<void> {
  return lastStdoutWrite;
}

/** What to do once stdout turns out to be closed; by default nothing (writes are dropped). */
export function onStdoutClosed(action: () => void): void {
  stdoutClosedAction = action;
  if (closed.stdout) action();
}

/** Whether a --json document was already written: an error after it must not add a second one. */
export function jsonEmitted(): boolean {
  return jsonDocuments > 0;
}

/** A document written in parts (json-stream.ts) counts from its first byte. */
export function startJsonDocument(): void {
  jsonDocuments++;
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
  // Whatever a line quotes (a batch's error, a backend's output), only colour reaches the
  // terminal, and without colour not even that.
  const write = (stream: NodeJS.WriteStream, line: string, colored: boolean) => {
    const text = `${colored ? cleanKeepingColour(line) : clean(line)}\n`;
    if (stream === process.stdout) writeStdout(text);
    else writeStderr(text);
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
    // Warnings and errors often quote text from outside (a webhook's answer, a backend's
    // message): cleaned, so none of it can drive the terminal.
    warn: (line) => write(process.stderr, `${ce.yellow("warning:")} ${clean(line)}`, stderrColor),
    error: (line, hint) => {
      write(process.stderr, `${ce.red("error:")} ${clean(line)}`, stderrColor);
      if (hint) write(process.stderr, `  ${ce.dim("hint:")} ${clean(hint)}`, stderrColor);
    },
    emit: (value) => {
      jsonDocuments++;
      writeStdout(`${JSON.stringify(value, null, 2)}\n`);
    },
  };
}

/** A plain aligned table (no box drawing: it must read well in CI logs and pipes). */
export function table(headers: string[], rows: Array<Array<string | number>>, align: Array<"l" | "r"> = []): string[] {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  // Columns on screen, not string length: colour codes take none, CJK and emoji take two.
  // A loop, not Math.max(...spread): a spread of a million cells overflows the call stack.
  const widths = headers.map((_, i) => cells.reduce((w, r) => Math.max(w, width(r[i] ?? "")), 0));
  return cells.map((r) =>
    r
      .map((cell, i) => {
        const pad = " ".repeat(Math.max(0, widths[i]! - width(cell)));
        return align[i] === "r" ? pad + cell : cell + pad;
      })
      .join("  ")
      .trimEnd(),
  );
}
