/**
 * A digest of the outcome history, so `mozart stats` reads 100,000 outcomes in well under 200 ms:
 * the figures stats needs, in columns (numbers and interned strings parse far faster than the
 * JSON Lines' objects), for the history up to a byte offset. Reading parses only what was
 * appended since and writes the digest again (atomically: a new file renamed over the old).
 * The digest is derived data next to the history (`<history>.digest`): the history itself is
 * never rewritten, and a missing, damaged or stale digest (the history replaced or cut short)
 * is rebuilt from it.
 */
import { randomBytes } from "node:crypto";
import { open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { parseHistory } from "./history.ts";
import type { Outcome, OutcomeCategory } from "./outcome.ts";

/** What stats reads of an outcome. */
export type OutcomeFigures = Pick<Outcome, "job_id" | "batch_num" | "at" | "category" | "attempts" | "holds" | "items" | "usd" | "duration_ms" | "held_ms" | "held_by" | "failed_validations" | "model" | "template_hash">;

interface Digest {
  v: 1;
  /** Bytes of the history covered (always the end of a line). */
  bytes: number;
  /** The history's first bytes, to notice a history replaced by another. */
  head: string;
  strings: string[];
  /** Per outcome: indexes into strings (job, model or -1, category), numbers, and ISO time. */
  job: number[];
  model: number[];
  cat: number[];
  /** The template hash (string index). */
  tpl: number[];
  batch: number[];
  attempts: number[];
  holds: number[];
  items: number[];
  usd: number[];
  dur: number[];
  held: number[];
  at: string[];
  /** Flat triples: row, kind (string index), ms. */
  held_by: number[];
  /** Flat runs: row, description (string index), count, attempts… */
  failed: number[];
}

const HEAD = 256;
export const digestPath = (history: string) => `${history}.digest`;

function emptyDigest(head: string): Digest {
  return { v: 1, bytes: 0, head, strings: [], job: [], model: [], cat: [], tpl: [], batch: [], attempts: [], holds: [], items: [], usd: [], dur: [], held: [], at: [], held_by: [], failed: [] };
}

function addAll(d: Digest, outcomes: Outcome[]): void {
  const index = new Map(d.strings.map((s, i) => [s, i]));
  const str = (s: string) => {
    let i = index.get(s);
    if (i === undefined) {
      i = d.strings.push(s) - 1;
      index.set(s, i);
    }
    return i;
  };
  for (const o of outcomes) {
    const row = d.job.length;
    d.job.push(str(o.job_id));
    d.model.push(o.model ? str(o.model) : -1);
    d.cat.push(str(o.category));
    d.tpl.push(str(o.template_hash));
    d.batch.push(o.batch_num);
    d.attempts.push(o.attempts);
    d.holds.push(o.holds);
    d.items.push(o.items);
    d.usd.push(o.usd);
    d.dur.push(o.duration_ms);
    d.held.push(o.held_ms);
    d.at.push(o.at);
    for (const k in o.held_by) d.held_by.push(row, str(k), o.held_by[k]!);
    for (const f of o.failed_validations) d.failed.push(row, str(f.description), f.attempts.length, ...f.attempts);
  }
}

/** The digest's rows as the figures stats reads. */
function rowsOf(d: Digest): OutcomeFigures[] {
  const rows: OutcomeFigures[] = new Array(d.job.length);
  for (let r = 0; r < d.job.length; r++) {
    rows[r] = {
      job_id: d.strings[d.job[r]!]!,
      batch_num: d.batch[r]!,
      at: d.at[r]!,
      category: d.strings[d.cat[r]!]! as OutcomeCategory,
      template_hash: d.strings[d.tpl[r]!]!,
      attempts: d.attempts[r]!,
      holds: d.holds[r]!,
      items: d.items[r]!,
      usd: d.usd[r]!,
      duration_ms: d.dur[r]!,
      held_ms: d.held[r]!,
      held_by: {},
      failed_validations: [],
      ...(d.model[r]! >= 0 ? { model: d.strings[d.model[r]!]! } : {}),
    };
  }
  for (let i = 0; i < d.held_by.length; i += 3) rows[d.held_by[i]!]!.held_by[d.strings[d.held_by[i + 1]!]!] = d.held_by[i + 2]!;
  for (let i = 0; i < d.failed.length; ) {
    const count = d.failed[i + 2]!;
    rows[d.failed[i]!]!.failed_validations.push({ description: d.strings[d.failed[i + 1]!]!, attempts: d.failed.slice(i + 3, i + 3 + count) });
    i += 3 + count;
  }
  return rows;
}

async function loadDigest(path: string): Promise<Digest | undefined> {
  try {
    const d = JSON.parse(await readFile(path, "utf8")) as Digest;
    return d && d.v === 1 && typeof d.bytes === "number" && Array.isArray(d.job) && d.job.length === d.at.length && Array.isArray(d.tpl) && d.tpl.length === d.job.length ? d : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every outcome of the history, through its digest: the digest brought up to date with what was
 * appended since, and saved again when it grew (a digest that cannot be written is only slower).
 */
export async function readOutcomeFigures(history: string): Promise<OutcomeFigures[]> {
  let fh;
  try {
    fh = await open(history, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  let d: Digest;
  let grew = false;
  try {
    const size = (await fh.stat()).size;
    const headBuf = Buffer.alloc(Math.min(HEAD, size));
    await fh.read(headBuf, 0, headBuf.length, 0);
    const head = headBuf.toString("latin1");
    const saved = await loadDigest(digestPath(history));
    d = saved && saved.bytes <= size && head.startsWith(saved.head) && saved.head.length === Math.min(HEAD, saved.bytes) ? saved : emptyDigest("");
    if (size > d.bytes) {
      const tail = Buffer.alloc(size - d.bytes);
      await fh.read(tail, 0, tail.length, d.bytes);
      // Only whole lines: a line still being written (or torn) is read next time.
      const end = tail.lastIndexOf(0x0a);
      if (end >= 0) {
        addAll(d, parseHistory(tail.subarray(0, end + 1).toString("utf8")));
        d.bytes += end + 1;
        d.head = head.slice(0, Math.min(HEAD, d.bytes));
        grew = true;
      }
    }
  } finally {
    await fh.close();
  }
  if (grew) {
    const target = digestPath(history);
    const tmp = `${target}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(tmp, JSON.stringify(d), { mode: 0o600 })
      .then(() => rename(tmp, target))
      .catch(() => rm(tmp, { force: true }).catch(() => {}));
  }
  return rowsOf(d);
}
