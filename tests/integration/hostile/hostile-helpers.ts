/**
 * What the hostile tests share: a seeded PRNG (a failure can be replayed), polling for a file or a
 * condition, a status reader that tolerates a job that is not there, and the state's files.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { mozart, type CliResult } from "../../helpers.ts";
import type { Kind, Sandbox } from "../engine-helpers.ts";
import { mulberry32 } from "../../processes.ts";

export { mulberry32 };

export const KINDS: Kind[] = ["sqlite", "json"];

/** Polls until fn() is truthy; throws with `what` after timeoutMs. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15_000, everyMs = 25): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

export function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export function lineCount(path: string): number {
  return readText(path).split("\n").filter(Boolean).length;
}

export interface Doc {
  job_id: string;
  status: string;
  error: string | null;
  hold: { until: string; reason: string; batch_num: number } | null;
  runners: Array<{ id: string; pid: number; host: string }>;
  progress: { completed: number; failed: number; in_progress: number; pending: number; damaged: number; total: number };
  batches: Array<{ batch_num: number; status: string; attempts: number; start_item: number; end_item: number; error: string | null; damaged: string | null }>;
}

/** `status <job> --json`, parsed; the raw result too, for a job that cannot be read. */
export function statusOf(box: Sandbox, job: string, extraEnv: Record<string, string> = {}): { r: CliResult; doc?: Doc } {
  const r = mozart(["status", job, "--json"], { cwd: box.dir, env: { ...box.env, ...extraEnv }, timeout: 30_000 });
  try {
    return { r, doc: JSON.parse(r.stdout) as Doc };
  } catch {
    return { r };
  }
}

/** The state location of a sandbox job whose workspace is ./ws (the sandbox default). */
export function stateDir(box: Sandbox, workspace = "ws"): string {
  return join(box.dir, workspace, ".mozart");
}

/** The file of batch n of a json store. */
export function jsonBatchFile(box: Sandbox, job: string, n: number, workspace = "ws"): string {
  return join(stateDir(box, workspace), "batches", job, `${String(n).padStart(7, "0")}.json`);
}

export function jsonJobFile(box: Sandbox, job: string, workspace = "ws"): string {
  return join(stateDir(box, workspace), "jobs", `${job}.json`);
}

export function sqliteFile(box: Sandbox, workspace = "ws"): string {
  return join(stateDir(box, workspace), "state.db");
}

/** Bytes under a folder, recursively. */
export function folderBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    total += s.isDirectory() ? folderBytes(p) : s.size;
  }
  return total;
}

/** Every pid whose environment carries MOZART process tags of this sandbox's runs (leftovers). */
export function processesWithEnv(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const env = readFileSync(`/proc/${name}/environ`, "utf8");
      if (env.includes(needle)) {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z") out.push(Number(name));
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** Exactly one JSON document on stdout (whitespace around it allowed). */
export function oneJsonDocument(stdout: string): unknown {
  const text = stdout.trim();
  expectOne(text);
  return JSON.parse(text);
}

function expectOne(text: string): void {
  if (!text) throw new Error("stdout is empty: expected one JSON document");
  // JSON.parse rejects trailing text, so a second document fails here.
  JSON.parse(text);
}

export interface StreamedRun {
  code: number;
  /** Peak resident memory of the child, in bytes. */
  maxRss: number;
  bytes: number;
  lines: number;
  /** Elements of the array under `arrayKey`, each parsed on its own. */
  elements: number;
  /** The document with that array emptied, parsed. */
  envelope: unknown;
  stderr: string;
}

/**
 * Runs mozart with stdout streamed, never held whole: counts bytes and lines and, with
 * `arrayKey`, checks the one JSON document on the fly. Each element of the top-level array under
 * that key is cut out and parsed on its own (and handed to `onElement`); the rest of the
 * document is parsed at the end with the array emptied. The test holds one element at a time.
 */
export async function streamRun(args: string[], opts: { cwd: string; env: Record<string, string>; arrayKey?: string; onElement?: (e: unknown) => void }): Promise<StreamedRun> {
  const { testEnv, MAIN } = await import("../../helpers.ts");
  const proc = Bun.spawn([process.execPath, MAIN, ...args], { cwd: opts.cwd, env: testEnv(opts.env), stdout: "pipe", stderr: "pipe" });
  const stderrText = new Response(proc.stderr).text();
  // Peak RSS from the kernel's own high-water mark, read while the child lives: Bun's
  // resourceUsage() can report the largest of all children this process ever waited for.
  let peak = 0;
  const readPeak = () => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    } catch {
      // gone, or no /proc here
    }
  };
  const sampler = setInterval(readPeak, 20);
  let bytes = 0;
  let lines = 0;
  let elements = 0;
  let inString = false;
  let escape = false;
  let depth = 0;
  /** "before" the array, "in" it, or "after" it. */
  let where: "before" | "in" | "after" = "before";
  let envelope = "";
  let element = "";
  const key = opts.arrayKey ? JSON.stringify(opts.arrayKey) : undefined;
  const decoder = new TextDecoder();
  // Only the characters that can change the structure are visited; text between them is sliced.
  const special = /["\\{}[\],\n]/g;
  for await (const chunk of proc.stdout) {
    bytes += chunk.length;
    const text = decoder.decode(chunk, { stream: true });
    let from = 0; // start of the text not yet given to envelope or element
    const take = (to: number) => {
      if (to <= from) return;
      if (where === "in") element += text.slice(from, to);
      else envelope += text.slice(from, to);
      from = to;
    };
    special.lastIndex = escape ? 1 : 0;
    escape = false;
    for (let m = special.exec(text); m; m = special.exec(text)) {
      const at = m.index;
      const ch = text[at]!;
      if (ch === "\n") {
        lines++;
        continue;
      }
      if (!key) continue;
      if (inString) {
        if (ch === "\\") {
          // the escaped character may itself be special: step over it (into the next chunk, maybe)
          if (at + 1 < text.length) special.lastIndex = at + 2;
          else escape = true;
        } else if (ch === '"') inString = false;
        continue;
      }
      if (ch === '"') {
        inString = true;
        continue;
      }
      if (where === "in" && depth === 2 && (ch === "," || ch === "]")) {
        from = at + 1; // separators and whitespace between elements are dropped
        if (ch === "]") {
          where = "after";
          depth--;
          envelope += "]";
        }
        continue;
      }
      if (ch === "{" || ch === "[") {
        depth++;
        if (where === "before" && ch === "[" && depth === 2) {
          take(at + 1);
          if (envelope.slice(0, -1).trimEnd().endsWith(`${key}:`)) where = "in";
        } else if (where === "in" && depth === 3) {
          from = at; // an element starts here
        }
      } else if (ch === "}" || ch === "]") {
        depth--;
        if (where === "in" && depth === 2) {
          take(at + 1);
          const value = JSON.parse(element) as unknown;
          elements++;
          opts.onElement?.(value);
          element = "";
        }
      }
    }
    if (key) take(text.length);
  }
  readPeak();
  const code = await proc.exited;
  clearInterval(sampler);
  return {
    code,
    maxRss: peak || Number(proc.resourceUsage()?.maxRSS ?? 0),
    bytes,
    lines,
    elements,
    envelope: key && envelope.trim() ? JSON.parse(envelope) : undefined,
    stderr: await stderrText,
  };
}
