/**
 * The outcome history: JSON Lines, one outcome per line, only ever appended. Each line is one
 * write() on a file opened with O_APPEND, so runners of many jobs (and many processes) append
 * to one file without overwriting each other. A line cut short by a crash (a torn last line),
 * or any other line that does not read back as an outcome, is skipped.
 */
import { mkdir, open, readFile, type FileHandle } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { checkOutcome, type Outcome } from "./outcome.ts";

export const HISTORY_FILE = "outcomes.jsonl";

/** Where a job's outcomes go: learning.outcome_store_path (relative to the job file), else MOZART_HOME/outcomes.jsonl. */
export function historyPath(opts: { home?: string; storePath?: string; jobDir: string }): string | undefined {
  if (opts.storePath) return resolve(opts.jobDir, opts.storePath);
  return opts.home ? join(opts.home, HISTORY_FILE) : undefined;
}

export async function appendOutcome(path: string, outcome: Outcome): Promise<void> {
  const history = openHistory(path);
  try {
    await history.append(outcome);
  } finally {
    await history.close();
  }
}

export interface HistoryAppender {
  /** Appends one outcome as one line; appends go out one after another, in call order. */
  append(outcome: Outcome): Promise<void>;
  /** Waits for the appends, then closes the file. */
  close(): Promise<void>;
}

/**
 * The history of a run: the file is opened once, on the first append (its folder made then),
 * and every outcome is one write() on it, so a run's history costs no open or close per batch.
 */
export function openHistory(path: string): HistoryAppender {
  let file: Promise<FileHandle> | undefined;
  let chain: Promise<void> = Promise.resolve();
  const handle = () =>
    (file ??= mkdir(dirname(path), { recursive: true }).then(() =>
      // a+: appends always go to the end (O_APPEND), and the last byte can be read back.
      open(path, "a+", 0o600),
    ));
  return {
    append(outcome) {
      const line = `${JSON.stringify(outcome)}\n`;
      const next = chain.then(async () => {
        const fh = await handle();
        // A torn last line (a crash mid-write, here or in another process) must not swallow this one: start on a line of its own.
        const size = (await fh.stat()).size;
        let prefix = "";
        if (size > 0) {
          const last = Buffer.alloc(1);
          await fh.read(last, 0, 1, size - 1);
          if (last[0] !== 0x0a) prefix = "\n";
        }
        await fh.write(`${prefix}${line}`);
      });
      // One failed append (a full disk) does not stop the next.
      chain = next.catch(() => {});
      return next;
    },
    async close() {
      await chain;
      const f = file;
      file = undefined;
      if (f) await (await f.catch(() => undefined))?.close();
    },
  };
}

/** Every outcome in the history, oldest first; a missing file is an empty history. */
export async function readHistory(path: string): Promise<Outcome[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  return parseHistory(text);
}

export function parseHistory(text: string): Outcome[] {
  const body = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (!body) return [];
  // The fast path: every line whole, parsed as one array. Otherwise line by line.
  try {
    const all = JSON.parse(`[${body.replaceAll("\n", ",")}]`) as unknown[];
    if (all.every((o) => checkOutcome(o))) return all as Outcome[];
  } catch {
    // a torn or damaged line: read the lines one by one
  }
  const out: Outcome[] = [];
  for (const line of body.split("\n")) {
    if (!line.trim()) continue;
    try {
      const o = checkOutcome(JSON.parse(line));
      if (o) out.push(o);
    } catch {
      // skipped: not a whole outcome
    }
  }
  return out;
}
