/**
 * The json state driver: plain files a person can read, each replaced atomically (temp file +
 * rename), under one folder:
 *
 *   jobs/<job>.json                  the job record
 *   batches/<job>/<n>.json           one record per batch (claim, token, counters)
 *   attempts/<job>/<n>-<a>.json      one record per attempt
 *   events/<job>.jsonl               the event log, one event per line, appended
 *   runners/<job>.json               runner leases
 *   control/<job>.json, holds/<job>.json
 *   spend/<job>.jsonl                the cost ledger, one entry per line, appended (a later line
 *                                    with the same key replaces an earlier one)
 *   remote/<job>/<key>.json          provider batches (Message Batches) submitted for the job
 *   blobs/<hash>[.gz]                prompts, job files and templates, stored once
 *   output/<job>/<n>-<a>.out|.err    the full output of each attempt
 *
 * File operations are synchronous: tens of microseconds each, where an async call's thread-pool
 * hop costs more than the call. A step's files are written to temp files, then renamed under
 * the job's mutex (state/mutex.ts), which makes claims, fencing checks and seq numbers safe
 * across runner processes. What it guarantees, and where it is weaker than SQLite's one
 * transaction per step:
 * - every file is complete or absent: no reader or crash ever sees a torn record;
 * - a step appends its ledger entries, then writes the attempt record, then the batch record (the
 *   commit point), then its events; a ledger entry whose batch update a kill -9 cut off stays
 *   (the request it paid for was made: the next attempt, under another runner, has another key);
 *   a kill -9 inside a step may leave the attempt record without its batch update (the attempt
 *   number is reused, nothing else changes) or the batch record without the step's events
 *   (the log misses them, the state is right; the next runner writes on with the next seq);
 * - durability matches the SQLite driver's (WAL, synchronous=NORMAL): a kill -9 never loses a
 *   recorded step, because every write is a rename of a complete file; nothing is fsynced per
 *   step, so a power cut may lose the last few seconds of steps, whose batches then run again;
 * - the fence is checked against what this process knows of its own lease and claims (a lease
 *   whose last renewal is older than the TTL fences at once); a `--take-over` of a runner that is
 *   in fact alive reaches it at its next heartbeat, so until then it may still record a step;
 * - a runner frozen inside a step for more than 10 s can lose the mutex and still finish that
 *   one step (see mutex.ts). SQLite checks the fence in the same transaction.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";
import { errno } from "../../errors.ts";
import { removeStaleTempFiles, syncDir, tempPathFor, writeTemp } from "../atomic-file.ts";
import {
  addToSummary,
  blobHash,
  checkAttempt,
  checkBatch,
  checkJob,
  createError,
  damagedBatch,
  decodeBlob,
  defineDriver,
  emptySummary,
  encodeBlob,
  laterHold,
  leaseAlive,
  parseJson,
  withLedger,
  type DriverOptions,
} from "../driver.ts";
import type { EventPayload, StoredEvent } from "../events.ts";
import { encodeJobId } from "../keys.ts";
import { createMutex, type Mutex } from "../mutex.ts";
import { addSpend, checkSpend, emptyTotals, roundUsd, spendKey } from "../spend.ts";
import type { BatchRecord, Claim, ControlRecord, Hold, JobRecord, LeaveOutcome, RemoteBatch, RunnerLease, SpendRecord, SpendTotals, StateStore, Step, UpdateResult } from "../types.ts";

const pad = (n: number, width: number) => String(n).padStart(width, "0");
const MISSING = Symbol("missing");

export default defineDriver(async (opts: DriverOptions) => {
  const base = resolve(opts.location);
  const readOnly = Boolean(opts.readOnly);
  const fail = (message: string, hint?: string) => createError("json", message, hint);

  const info = statSync(base, { throwIfNoEntry: false });
  if (info && !info.isDirectory()) throw fail(`${base} is not a folder`, "state_path must name a folder for the json state backend");
  if (!info) {
    if (readOnly) throw fail(`there is no state folder at ${base}`, "run the job first: mozart run <job file>");
    try {
      mkdirSync(base, { recursive: true });
    } catch (e) {
      throw fail(`cannot create the state folder ${base}: ${(e as Error).message}`, "check that the folder is writable and the disk is not full");
    }
  }
  const identityOf = () => {
    const s = statSync(base, { throwIfNoEntry: false });
    return s ? `${s.dev}:${s.ino}` : "";
  };
  const identity = identityOf();
  const listNames = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return [];
      throw fail(`cannot list ${dir}: ${(e as Error).message}`);
    }
  };
  if (listNames(join(base, "jobs")).some((name) => !name.startsWith(".") && !name.endsWith(".json"))) {
    throw fail(`${base} holds state written by Mozart 0.2, which this version cannot continue`, "finish or abandon that job with Mozart 0.2, or move the folder aside to start over");
  }

  const key = encodeJobId;
  const paths = {
    job: (id: string) => join(base, "jobs", `${key(id)}.json`),
    batches: (id: string) => join(base, "batches", key(id)),
    batch: (id: string, n: number) => join(base, "batches", key(id), `${pad(n, 7)}.json`),
    attempts: (id: string) => join(base, "attempts", key(id)),
    attempt: (id: string, n: number, a: number) => join(base, "attempts", key(id), `${pad(n, 7)}-${pad(a, 4)}.json`),
    events: (id: string) => join(base, "events", `${key(id)}.jsonl`),
    runners: (id: string) => join(base, "runners", `${key(id)}.json`),
    control: (id: string) => join(base, "control", `${key(id)}.json`),
    hold: (id: string) => join(base, "holds", `${key(id)}.json`),
    blob: (hash: string, gz: boolean) => join(base, "blobs", gz ? `${hash}.gz` : hash),
    spend: (id: string) => join(base, "spend", `${key(id)}.jsonl`),
    remotes: (id: string) => join(base, "remote", key(id)),
    remote: (id: string, k: string) => join(base, "remote", key(id), `${encodeJobId(k)}.json`),
    mutex: (id: string) => join(base, `.${key(id)}.mutex`),
  };

  function checkIdentity(): void {
    if (identityOf() !== identity) {
      throw fail(
        `the state folder ${base} was deleted or replaced while the job ran`,
        "work recorded since is lost with it; the workspace keeps whatever the batches wrote. Run the job again to start it over.",
      );
    }
  }

  /** A folder inside the store; the store's own folder is never recreated once it is gone. */
  const made = new Set<string>();
  const ensureDir = (dir: string) => {
    if (made.has(dir)) return;
    checkIdentity();
    mkdirSync(dir, { recursive: true });
    made.add(dir);
  };
  const problem = (path: string, e: unknown) => {
    if (errno(e) === "ENOENT") {
      made.clear();
      checkIdentity();
    }
    return fail(`cannot write ${path}: ${(e as Error).message}`, errno(e) === "ENOSPC" ? "the disk is full: free some space, then `mozart resume` the job" : undefined);
  };
  /** Writes a file atomically: complete or absent, whatever happens to the process. */
  const write = async (path: string, data: string | Uint8Array): Promise<void> => {
    if (readOnly) throw fail("the store was opened read-only");
    try {
      ensureDir(join(path, ".."));
      const tmp = tempPathFor(path);
      writeTemp(tmp, data);
      renameSync(tmp, path);
    } catch (e) {
      if ((e as Error).name === "MozartError") throw e;
      throw problem(path, e);
    }
  };
  const readText = (path: string): string | null => {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      const code = errno(e);
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return null;
      throw fail(`cannot read ${path}: ${(e as Error).message}`);
    }
  };
  const readJson = (path: string): unknown | null => {
    const text = readText(path);
    return text === null ? null : (parseJson(text) ?? { __unreadable: true });
  };
  /** A record file: MISSING when there is none; a file holding `null` is a damaged record, not a missing one. */
  const readRecord = (path: string): unknown => {
    const text = readText(path);
    if (text === null) return MISSING;
    const value = parseJson(text);
    return value === undefined ? { __unreadable: true } : value;
  };
  const readObject = <T>(path: string): T | null => {
    const v = readJson(path) as (T & { __unreadable?: boolean }) | null;
    return v && typeof v === "object" && !v.__unreadable ? v : null;
  };

  const mutexes = new Map<string, Mutex>();
  const locked = <T>(jobId: string, fn: () => Promise<T> | T): Promise<T> => {
    if (readOnly) return Promise.reject(fail("the store was opened read-only"));
    let m = mutexes.get(jobId);
    if (!m) {
      m = createMutex(paths.mutex(jobId));
      mutexes.set(jobId, m);
    }
    return m.run(fn);
  };

  const getBatch = (jobId: string, n: number): BatchRecord | null => {
    const value = readRecord(paths.batch(jobId, n));
    return value === MISSING ? null : checkBatch(value, n, paths.batch(jobId, n));
  };
  const batchNumbers = (jobId: string): number[] => {
    const nums: number[] = [];
    for (const name of listNames(paths.batches(jobId))) {
      const m = /^(\d+)\.json$/.exec(name);
      if (m) nums.push(Number(m[1]));
    }
    return nums.sort((a, b) => a - b);
  };
  const readBatches = (jobId: string, nums: number[]): BatchRecord[] => nums.map((n) => getBatch(jobId, n) ?? damagedBatch(n, `${paths.batch(jobId, n)}: vanished while read`));

  const readRunners = (jobId: string): Record<string, RunnerLease> => readObject<Record<string, RunnerLease>>(paths.runners(jobId)) ?? {};
  const liveOf = (runners: Record<string, RunnerLease>, now: number) => Object.values(runners).filter((l) => l && leaseAlive(l, now));

  // What this process knows of the leases and claims it holds, so a fenced step needs no reads.
  const myLeases = new Map<string, number>();
  const myClaims = new Map<string, number>();
  const leaseKey = (jobId: string, runnerId: string) => `${jobId}\0${runnerId}`;
  const claimKey = (jobId: string, n: number) => `${jobId}\0${n}`;

  /** Drops expired leases and hands the batches of gone runners back to pending. Call under the mutex. */
  const reap = async (jobId: string, runners: Record<string, RunnerLease>, now: number, also: string[] = []): Promise<Record<string, RunnerLease>> => {
    const dead = Object.values(runners)
      .filter((l) => !l || !leaseAlive(l, now) || also.includes(l.id))
      .map((l) => l.id);
    if (!dead.length) return runners;
    const next = { ...runners };
    for (const id of dead) delete next[id];
    await write(paths.runners(jobId), JSON.stringify(next));
    await releaseBatchesOf(jobId, dead);
    return next;
  };
  const releaseBatchesOf = async (jobId: string, ids: string[]) => {
    if (!ids.length) return;
    for (const b of readBatches(jobId, batchNumbers(jobId))) {
      if (b.status === "in_progress" && b.owner && ids.includes(b.owner)) await write(paths.batch(jobId, b.batch_num), JSON.stringify({ ...b, status: "pending", owner: null }));
    }
  };

  /** Bytes of a file from `from` to its end, or null when it does not exist. */
  const readRange = (path: string, from: number): string | null => {
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch (e) {
      if (errno(e) === "ENOENT") return null;
      throw fail(`cannot read ${path}: ${(e as Error).message}`);
    }
    try {
      const size = fstatSync(fd).size;
      return from >= size ? "" : readTail(fd, from, size);
    } finally {
      closeSync(fd);
    }
  };
  /** For readers: the byte offset just after a seq already read, per job. */
  const readMarks = new Map<string, { seq: number; offset: number }>();

  // Event log: one append descriptor per job, and the size and last seq this process has seen.
  const logs = new Map<string, { fd: number; size: number; seq: number }>();
  const readTail = (fd: number, from: number, to: number): string => {
    const buf = Buffer.alloc(to - from);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, from + got);
      if (n <= 0) break;
      got += n;
    }
    return buf.toString("utf8", 0, got);
  };
  const lastSeqIn = (text: string, seq: number): number => {
    for (const line of text.split("\n")) {
      if (!line) continue;
      const e = parseJson(line) as { seq?: number } | undefined;
      if (e && typeof e.seq === "number") seq = e.seq;
    }
    return seq;
  };
  /** Appends under the mutex: catches up with what other processes appended, drops a torn last line. */
  const appendEvents = (jobId: string, events: EventPayload[], now: number): number => {
    let log = logs.get(jobId);
    if (!log) {
      ensureDir(join(base, "events"));
      const fd = openSync(paths.events(jobId), "a+");
      log = { fd, size: 0, seq: 0 };
      logs.set(jobId, log);
    }
    const size = fstatSync(log.fd).size;
    if (size < log.size) Object.assign(log, { size: 0, seq: 0 });
    if (size !== log.size) {
      const text = readTail(log.fd, log.size, size);
      const end = text.lastIndexOf("\n") + 1;
      log.seq = lastSeqIn(text.slice(0, end), log.seq);
      log.size += Buffer.byteLength(text.slice(0, end));
      // A writer killed mid-append left half a line: it goes before the next event is appended.
      if (log.size < size) ftruncateSync(log.fd, log.size);
    }
    if (!events.length) return log.seq;
    const at = new Date(now).toISOString();
    let seq = log.seq;
    const lines = Buffer.from(events.map((e) => JSON.stringify({ seq: ++seq, at, job_id: jobId, ...e })).join("\n") + "\n");
    writeSync(log.fd, lines);
    log.size += lines.length;
    log.seq = seq;
    return seq;
  };

  /**
   * Appends whole lines to a file; a line a killed writer left half-written goes first, so it
   * cannot glue itself to the next one. Call under the job's mutex.
   */
  const appendLines = (path: string, lines: string[]) => {
    ensureDir(join(path, ".."));
    const fd = openSync(path, "a+");
    try {
      const size = fstatSync(fd).size;
      if (size > 0) {
        const last = Buffer.alloc(1);
        readSync(fd, last, 0, 1, size - 1);
        if (last[0] !== 0x0a) {
          const from = Math.max(0, size - 1024 * 1024);
          const text = readTail(fd, from, size);
          const cut = text.lastIndexOf("\n");
          ftruncateSync(fd, cut < 0 ? from : from + Buffer.byteLength(text.slice(0, cut + 1)));
        }
      }
      writeSync(fd, Buffer.from(lines.map((l) => `${l}\n`).join("")));
    } finally {
      closeSync(fd);
    }
  };

  /** The ledger of each job as read so far: entries by key, and where reading stopped. */
  const ledgers = new Map<string, { offset: number; entries: Map<string, SpendRecord> }>();
  const readLedger = (jobId: string): Map<string, SpendRecord> => {
    const path = paths.spend(jobId);
    let l = ledgers.get(jobId);
    const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
    if (!l || size < l.offset) {
      l = { offset: 0, entries: new Map() };
      ledgers.set(jobId, l);
    }
    if (size === l.offset) return l.entries;
    const text = readRange(path, l.offset) ?? "";
    const end = text.lastIndexOf("\n") + 1;
    for (const line of text.slice(0, end).split("\n")) {
      if (!line) continue;
      const e = checkSpend(parseJson(line));
      if (e) l.entries.set(spendKey(e), e);
    }
    l.offset += Buffer.byteLength(text.slice(0, end));
    return l.entries;
  };
  const ledgerTotals = (jobId: string): SpendTotals => {
    const t = emptyTotals();
    for (const e of readLedger(jobId).values()) addSpend(t, e);
    t.usd = roundUsd(t.usd);
    return t;
  };

  const putBlob = async (text: string): Promise<string> => {
    const hash = blobHash(text);
    const { data, gzip } = encodeBlob(text);
    const path = paths.blob(hash, gzip);
    if (!statSync(path, { throwIfNoEntry: false })) await write(path, data);
    return hash;
  };

  /** The files of a step, written to temp files before the mutex is taken; under it only renames remain. */
  interface Staged {
    files: Array<{ tmp: string; path: string }>;
  }
  const stage = (jobId: string, step: Step): Staged => {
    if (readOnly) throw fail("the store was opened read-only");
    checkIdentity();
    const files: Staged["files"] = [];
    const add = (path: string, data: string | Uint8Array) => {
      try {
        ensureDir(join(path, ".."));
        const tmp = tempPathFor(path);
        writeTemp(tmp, data);
        files.push({ tmp, path });
      } catch (e) {
        discard({ files });
        if ((e as Error).name === "MozartError") throw e;
        throw problem(path, e);
      }
    };
    for (const text of step.blobs ?? []) {
      const { data, gzip } = encodeBlob(text);
      const path = paths.blob(blobHash(text), gzip);
      if (!statSync(path, { throwIfNoEntry: false })) add(path, data);
    }
    if (step.attempt) add(paths.attempt(jobId, step.attempt.batch_num, step.attempt.attempt), JSON.stringify(step.attempt));
    if (step.batch) add(paths.batch(jobId, step.batch.batch_num), JSON.stringify(step.batch));
    return { files };
  };
  const discard = (s: Staged) => {
    for (const f of s.files) rmSync(f.tmp, { force: true });
  };

  const applyStep = async (jobId: string, step: Step, now: number, staged?: Staged): Promise<number> => {
    checkIdentity();
    const s = staged ?? stage(jobId, step);
    if (step.spend?.length) {
      try {
        appendLines(paths.spend(jobId), step.spend.map((e) => JSON.stringify(e)));
      } catch (e) {
        discard(s);
        throw problem(paths.spend(jobId), e);
      }
    }
    try {
      for (const f of s.files) renameSync(f.tmp, f.path);
    } catch (e) {
      discard(s);
      throw problem(s.files[0]?.path ?? base, e);
    }
    if (step.batch) {
      if (step.batch.owner) myClaims.set(claimKey(jobId, step.batch.batch_num), step.batch.token);
      else myClaims.delete(claimKey(jobId, step.batch.batch_num));
    }
    if (step.clearHold !== undefined) {
      const hold = readObject<Hold>(paths.hold(jobId));
      if (hold && !(hold.until > step.clearHold)) rmSync(paths.hold(jobId), { force: true });
    }
    if (step.hold) await write(paths.hold(jobId), JSON.stringify(laterHold(readObject<Hold>(paths.hold(jobId)), step.hold)));
    if (step.job) {
      const job = readObject<JobRecord>(paths.job(jobId));
      if (job) await write(paths.job(jobId), JSON.stringify({ ...job, ...step.job, updated_at: new Date(now).toISOString() }));
    }
    return appendEvents(jobId, step.events ?? [], now);
  };

  const fenced = (jobId: string, f: NonNullable<Step["fence"]>, now: number): boolean => {
    const until = myLeases.get(leaseKey(jobId, f.runner));
    const token = myClaims.get(claimKey(jobId, f.batch));
    if (until !== undefined && token !== undefined) return !(until > now) || token !== f.token;
    // Not ours to know: read what is stored.
    const b = getBatch(jobId, f.batch);
    const lease = readRunners(jobId)[f.runner];
    return !b || b.owner !== f.runner || b.token !== f.token || !lease || lease.until <= now;
  };

  const store: StateStore = {
    kind: "json",
    location: base,
    readOnly,

    async getJob(jobId) {
      const value = readRecord(paths.job(jobId));
      return value === MISSING ? null : checkJob(value, jobId, paths.job(jobId), "json");
    },
    async putJob(job) {
      await write(paths.job(job.job_id), JSON.stringify(job, null, 2));
    },
    async listJobIds() {
      const ids: string[] = [];
      for (const name of listNames(join(base, "jobs"))) {
        if (!name.endsWith(".json") || name.startsWith(".")) continue;
        const v = readObject<{ job_id?: unknown }>(join(base, "jobs", name));
        if (v && typeof v.job_id === "string") ids.push(v.job_id);
      }
      return ids.sort();
    },

    async getBatch(jobId, n) {
      return getBatch(jobId, n);
    },
    async listBatches(jobId, o = {}) {
      const nums = batchNumbers(jobId).filter((n) => n >= (o.from ?? 0));
      const limit = o.limit ?? Infinity;
      const out: BatchRecord[] = [];
      for (const n of nums) {
        if (out.length >= limit) break;
        const b = getBatch(jobId, n) ?? damagedBatch(n, `${paths.batch(jobId, n)}: vanished while read`);
        if (!o.statuses || o.statuses.includes(b.status)) out.push(b);
      }
      return out;
    },
    async putBatch(jobId, batch) {
      await write(paths.batch(jobId, batch.batch_num), JSON.stringify(batch));
    },
    async summary(jobId, total) {
      const s = emptySummary(total);
      for (const b of readBatches(jobId, batchNumbers(jobId).filter((n) => n >= 1 && n <= total))) addToSummary(s, b);
      return withLedger(s, ledgerTotals(jobId));
    },

    async listAttempts(jobId, n) {
      const prefix = `${pad(n, 7)}-`;
      return listNames(paths.attempts(jobId))
        .filter((x) => x.startsWith(prefix) && x.endsWith(".json"))
        .sort()
        .map((name) => checkAttempt(readJson(join(paths.attempts(jobId), name)), n, join(paths.attempts(jobId), name)));
    },

    async spendTotals(jobId) {
      return ledgerTotals(jobId);
    },
    async listSpend(jobId, o = {}) {
      return [...readLedger(jobId).values()].filter((e) => o.batch === undefined || e.batch_num === o.batch).sort((a, b) => a.batch_num - b.batch_num || a.attempt - b.attempt);
    },
    async putRemoteBatch(jobId, rb) {
      await write(paths.remote(jobId, rb.key), JSON.stringify(rb));
    },
    async listRemoteBatches(jobId) {
      return listNames(paths.remotes(jobId))
        .filter((name) => name.endsWith(".json") && !name.startsWith("."))
        .map((name) => readObject<RemoteBatch>(join(paths.remotes(jobId), name)))
        .filter((b): b is RemoteBatch => Boolean(b && typeof b.key === "string" && Array.isArray(b.items)))
        .sort((a, b) => (a.submitted_at < b.submitted_at ? -1 : a.submitted_at > b.submitted_at ? 1 : 0));
    },

    putBlob,
    async getBlob(hash) {
      for (const gz of [false, true]) {
        try {
          return decodeBlob(readFileSync(paths.blob(hash, gz)), gz);
        } catch {
          // try the other form
        }
      }
      return null;
    },

    async commit(jobId, step, now) {
      const staged = stage(jobId, step);
      const result = await locked(jobId, async () => {
        if (step.fence && fenced(jobId, step.fence, now)) {
          discard(staged);
          return { ok: false as const, reason: "fenced" as const };
        }
        return { ok: true as const, seq: await applyStep(jobId, step, now, staged) };
      });
      return result;
    },
    async readEvents(jobId, o = {}) {
      const after = o.after ?? 0;
      const limit = o.limit ?? Infinity;
      // A follower asks again and again for what came after what it saw: start where it left off.
      const mark = readMarks.get(jobId);
      const from = mark && mark.seq <= after ? mark.offset : 0;
      const chunk = readRange(paths.events(jobId), from);
      if (chunk === null) return [];
      const out: StoredEvent[] = [];
      let offset = from;
      for (const line of chunk.slice(0, chunk.lastIndexOf("\n") + 1).split("\n")) {
        if (!line) continue;
        const lineEnd = offset + Buffer.byteLength(line) + 1;
        const e = parseJson(line) as StoredEvent | undefined;
        if (e && typeof e.seq === "number") {
          if (e.seq <= after) readMarks.set(jobId, { seq: e.seq, offset: lineEnd });
          else if (out.length < limit) {
            out.push(e);
            if (out.length === limit) break;
          }
        }
        offset = lineEnd;
      }
      return out;
    },
    async lastSeq(jobId) {
      // Only the end of the log: the last complete line holds the last seq.
      const path = paths.events(jobId);
      const size = statSync(path, { throwIfNoEntry: false })?.size ?? 0;
      for (let span = 64 * 1024; ; span *= 4) {
        const text = readRange(path, Math.max(0, size - span));
        if (!text) return 0;
        const end = text.lastIndexOf("\n");
        const start = text.lastIndexOf("\n", end - 1) + 1;
        if (end > 0 && (start > 0 || span >= size)) {
          const e = parseJson(text.slice(start, end)) as { seq?: number } | undefined;
          return typeof e?.seq === "number" ? e.seq : lastSeqIn(text.slice(0, end + 1), 0);
        }
        if (end < 0 && span >= size) return 0;
      }
    },

    join(jobId, runner, o) {
      return locked(jobId, async () => {
        let runners = await reap(jobId, readRunners(jobId), o.now);
        const others = liveOf(runners, o.now).filter((l) => l.id !== runner.id);
        if (others.length && o.exclusive && !o.takeOver) return { ok: false as const, holders: others };
        if (o.takeOver && others.length) runners = await reap(jobId, runners, o.now, others.map((l) => l.id));
        await write(paths.runners(jobId), JSON.stringify({ ...runners, [runner.id]: runner }));
        myLeases.set(leaseKey(jobId, runner.id), runner.until);
        // Temp files orphaned by a writer killed mid-write; only this job's folders, only by a runner.
        await removeStaleTempFiles(paths.batches(jobId));
        await removeStaleTempFiles(paths.attempts(jobId));
        return { ok: true as const };
      });
    },
    heartbeat(jobId, runnerId, now, ttlMs) {
      return locked(jobId, async () => {
        const runners = readRunners(jobId);
        const lease = runners[runnerId];
        if (!lease || lease.until <= now) {
          myLeases.delete(leaseKey(jobId, runnerId));
          await reap(jobId, runners, now, [runnerId]);
          return false;
        }
        const renewed = { ...lease, until: now + ttlMs, renewed_at: now };
        const next = await reap(jobId, { ...runners, [runnerId]: renewed }, now);
        await write(paths.runners(jobId), JSON.stringify(next));
        myLeases.set(leaseKey(jobId, runnerId), renewed.until);
        return true;
      });
    },
    async runners(jobId, now) {
      return liveOf(readRunners(jobId), now);
    },
    claim(jobId, runnerId, n, o) {
      return locked(jobId, async (): Promise<Claim | null> => {
        const runners = readRunners(jobId);
        const mine = runners[runnerId];
        if (!mine || mine.until <= o.now) return null;
        const existing = getBatch(jobId, n);
        let b: BatchRecord;
        if (!existing) b = o.fresh();
        else if (existing.damaged) return null;
        else if (existing.status === "pending") b = existing;
        else if (existing.status === "in_progress" && existing.owner && existing.owner !== runnerId) {
          const owner = runners[existing.owner];
          if (owner && leaseAlive(owner, o.now)) return null;
          b = existing;
        } else return null;
        const previous = b.running && b.running.runner !== runnerId ? b.running : undefined;
        b.status = "in_progress";
        b.owner = runnerId;
        b.token = (b.token ?? 0) + 1;
        if (o.running) b.running = o.running(b);
        await write(paths.batch(jobId, n), JSON.stringify(b));
        myClaims.set(claimKey(jobId, n), b.token);
        return { batch: b, token: b.token, ...(previous ? { previous } : {}) };
      });
    },
    updateBatch(jobId, n, o, change) {
      return locked(jobId, async (): Promise<UpdateResult> => {
        const current = getBatch(jobId, n);
        const runners = readRunners(jobId);
        if (o.runner !== undefined) {
          const mine = runners[o.runner];
          if (!mine || mine.until <= o.now) return { ok: false, reason: "fenced", batch: current };
        }
        const liveIds = new Set(liveOf(runners, o.now).map((l) => l.id));
        const step = current?.damaged ? null : change(current, { isLive: (id) => liveIds.has(id) });
        if (!step) return { ok: false, reason: "unchanged", batch: current };
        const seq = await applyStep(jobId, step, o.now);
        return { ok: true, seq, batch: step.batch ?? current };
      });
    },
    async claimable(jobId, o) {
      const liveIds = new Set(liveOf(readRunners(jobId), o.now).map((l) => l.id));
      const out: number[] = [];
      for (const n of batchNumbers(jobId)) {
        if (n < o.from) continue;
        const b = getBatch(jobId, n);
        if (!b || b.damaged) continue;
        if (b.status === "pending" || (b.status === "in_progress" && b.owner && !liveIds.has(b.owner))) out.push(n);
        if (out.length >= o.limit) break;
      }
      return out;
    },
    leave(jobId, runnerId, now, final) {
      return locked(jobId, async (): Promise<LeaveOutcome> => {
        myLeases.delete(leaseKey(jobId, runnerId));
        const runners = readRunners(jobId);
        const gone = Object.values(runners)
          .filter((l) => !l || !leaseAlive(l, now) || l.id === runnerId)
          .map((l) => l.id);
        const rest = { ...runners };
        for (const id of gone) delete rest[id];
        await releaseBatchesOf(jobId, gone);
        const job = readObject<JobRecord>(paths.job(jobId));
        const outcome: LeaveOutcome = { others: liveOf(rest, now).length, summary: await store.summary(jobId, job?.total_batches ?? 0) };
        const step = final?.(outcome);
        if (step) outcome.seq = await applyStep(jobId, step, now);
        // The lease goes last, as in SQLite's single transaction: a reader that finds no runner
        // (logs -f, pause --wait) must find the run's final status and events already written.
        if (gone.length) await write(paths.runners(jobId), JSON.stringify(rest));
        return outcome;
      });
    },

    async getControl(jobId) {
      return readObject<ControlRecord>(paths.control(jobId));
    },
    async setControl(jobId, control) {
      if (control) await write(paths.control(jobId), JSON.stringify(control));
      else rmSync(paths.control(jobId), { force: true });
    },
    async getHold(jobId) {
      return readObject<Hold>(paths.hold(jobId));
    },

    clearBatches(jobId) {
      return locked(jobId, async () => {
        rmSync(paths.batches(jobId), { recursive: true, force: true });
        rmSync(paths.attempts(jobId), { recursive: true, force: true });
        rmSync(paths.hold(jobId), { force: true });
        rmSync(paths.spend(jobId), { force: true });
        rmSync(paths.remotes(jobId), { recursive: true, force: true });
        ledgers.delete(jobId);
        made.clear();
        await syncDir(base);
      });
    },
    resetBatches(jobId, which) {
      return locked(jobId, async () => {
        let count = 0;
        for (const b of await store.listBatches(jobId, { from: which.from ?? 0 })) {
          if (Boolean(which.damaged) !== Boolean(b.damaged)) continue;
          if (which.status && b.status !== which.status) continue;
          if (b.status === "pending" && !b.damaged) continue;
          count++;
          // A damaged record goes: the batch is then unrecorded, so pending, and gets a fresh record.
          if (b.damaged) rmSync(paths.batch(jobId, b.batch_num), { force: true });
          else await write(paths.batch(jobId, b.batch_num), JSON.stringify({ ...b, status: "pending", owner: null, error: null }));
        }
        return count;
      });
    },

    outputPath(jobId, n, attempt, stream) {
      return join(base, "output", key(jobId), `${pad(n, 6)}-${pad(attempt, 4)}.${stream === "stdout" ? "out" : "err"}`);
    },
    async checkIdentity() {
      checkIdentity();
    },
    async close() {
      for (const log of logs.values()) {
        try {
          closeSync(log.fd);
        } catch {
          // already closed
        }
      }
      logs.clear();
      mutexes.clear();
    },
  };
  return store;
});
