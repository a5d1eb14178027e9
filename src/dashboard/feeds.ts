/**
 * Live data for the dashboard, read from the stores and shared between clients.
 *
 * - A job's feed tails its persisted event log once per tick, however many clients watch it,
 *   and hands each client the events after its own cursor: a client that connects with
 *   `Last-Event-ID` (or `?since=`) first reads what it missed from the store, then joins, so
 *   it sees every event once, in seq order, with no gap and no duplicate. After each burst it
 *   also sends the job's report (`event: report`), and every 2 s when the report changed
 *   (a runner that died records nothing).
 * - The job list's feed reads the registry once per second and sends the rows that changed.
 *   Rows of running jobs come from their stores, so progress moves live.
 *
 * Feeds only run while someone listens; a client that stops reading is dropped (it reconnects
 * with Last-Event-ID and catches up).
 */
import { databaseEntries, sharedDatabase } from "../state/database.ts";
import { readRegistry, registryCache, type RegistryEntry } from "../state/registry.ts";
import { jobRow, type JobRow } from "../state/jobs.ts";
import type { StoredEvent } from "../state/events.ts";
import type { AccountHoldView } from "../state/accounts.ts";
import { jobReport, type JobReport } from "../state/report.ts";
import type { JobRecord, JobSummary, StateStore } from "../state/types.ts";
import type { JobStores } from "./jobs.ts";

export const HEARTBEAT_MS = 15_000;
const PAGE = 500;
/** A client more than this far behind is dropped (it reconnects and catches up from the store). */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** A catch-up queues at most this much before it waits for the client to read. */
const CATCH_UP_QUEUE_BYTES = 256 * 1024;

export interface SseStream {
  response: Response;
  /** Queues one SSE message; false once the client is gone or too far behind. */
  send(message: { id?: number; event?: string; data: string } | { comment: string }): boolean;
  readonly closed: boolean;
  /** Resolves once the client has read enough that more may be queued (or it is gone). */
  ready(): Promise<void>;
  onClose(fn: () => void): void;
  close(): void;
}

const encoder = new TextEncoder();

/** A text/event-stream response whose writer knows when the client is gone. */
export function sseStream(signal: AbortSignal | undefined, headers: Record<string, string> = {}): SseStream {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let closed = false;
  const closers: Array<() => void> = [];
  let waiters: Array<() => void> = [];
  const wake = () => {
    const ws = waiters;
    waiters = [];
    for (const w of ws) w();
  };
  const finish = () => {
    if (closed) return;
    closed = true;
    wake();
    for (const fn of closers.splice(0)) {
      try {
        fn();
      } catch {
        // A cleanup that fails must not keep the others from running.
      }
    }
  };
  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      pull() {
        wake();
      },
      cancel() {
        finish();
      },
    },
    { highWaterMark: MAX_QUEUED_BYTES, size: (chunk) => chunk?.byteLength ?? 0 },
  );
  const heartbeat = setInterval(() => stream.send({ comment: "ping" }), HEARTBEAT_MS);
  closers.push(() => clearInterval(heartbeat));
  signal?.addEventListener("abort", () => stream.close(), { once: true });
  const stream: SseStream = {
    response: new Response(body, {
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no", ...headers },
    }),
    send(message) {
      if (closed) return false;
      let text: string;
      if ("comment" in message) text = `: ${message.comment}\n\n`;
      else {
        text = "";
        if (message.id !== undefined) text += `id: ${message.id}\n`;
        if (message.event) text += `event: ${message.event}\n`;
        // JSON never contains a raw newline, but a data field must not either.
        text += `data: ${message.data.replace(/\r?\n/g, "\ndata: ")}\n\n`;
      }
      try {
        controller.enqueue(encoder.encode(text));
      } catch {
        finish();
        return false;
      }
      if ((controller.desiredSize ?? 0) < 0) {
        stream.close();
        return false;
      }
      return true;
    },
    get closed() {
      return closed;
    },
    ready() {
      if (closed || (controller.desiredSize ?? 0) > MAX_QUEUED_BYTES - CATCH_UP_QUEUE_BYTES) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push(resolve));
    },
    onClose(fn) {
      if (closed) fn();
      else closers.push(fn);
    },
    close() {
      if (closed) return;
      try {
        controller.close();
      } catch {
        // Already closed by the client.
      }
      finish();
    },
  };
  // The first bytes go out at once, so clients and proxies see the stream is open.
  stream.send({ comment: "connected" });
  return stream;
}

interface JobSubscriber {
  cursor: number;
  live: boolean;
  stream: SseStream;
}

type ReportWithExtras = JobReport & { concurrency: number | null; account_hold: AccountHoldView | null };

class JobFeed {
  private readonly subs = new Set<JobSubscriber>();
  private cursor = -1;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastReport = "";
  private lastReportAt = 0;
  private running = false;

  constructor(
    private readonly stores: JobStores,
    private readonly entry: RegistryEntry,
    private readonly tickMs: number,
    private readonly onEmpty: () => void,
    private readonly report: (store: StateStore) => Promise<ReportWithExtras | null>,
  ) {}

  async subscribe(stream: SseStream, since: number): Promise<void> {
    const sub: JobSubscriber = { cursor: since, live: false, stream };
    this.subs.add(sub);
    stream.onClose(() => {
      this.subs.delete(sub);
      if (!this.subs.size) this.stop();
    });
    if (this.cursor < 0) this.cursor = await (await this.stores.store(this.entry)).lastSeq(this.entry.job_id);
    await this.catchUp(sub);
    const report = await this.report(await this.stores.store(this.entry)).catch(() => null);
    if (report) stream.send({ event: "report", data: JSON.stringify(report) });
    this.start();
  }

  private async catchUp(sub: JobSubscriber): Promise<void> {
    sub.live = false;
    const store = await this.stores.store(this.entry);
    for (;;) {
      let read = 0;
      while (!sub.stream.closed) {
        const events = await store.readEvents(this.entry.job_id, { after: sub.cursor, limit: PAGE });
        if (!events.length) break;
        read += events.length;
        this.write(sub, events);
        await sub.stream.ready();
      }
      // Nothing more in the store: live from here, unless the feed read on in the meantime.
      if (!read || sub.stream.closed || sub.cursor >= this.cursor) break;
    }
    sub.live = true;
  }

  private write(sub: JobSubscriber, events: StoredEvent[]): void {
    for (const e of events) {
      if (e.seq <= sub.cursor) continue;
      if (!sub.stream.send({ id: e.seq, event: e.type, data: JSON.stringify(e) })) return;
      sub.cursor = e.seq;
    }
  }

  private start(): void {
    if (this.running) return;
    this.running = true;
    this.timer = setTimeout(() => void this.tick(), this.tickMs);
  }

  private stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.onEmpty();
  }

  private async tick(): Promise<void> {
    try {
      const store = await this.stores.store(this.entry);
      const from = this.cursor;
      const events = await store.readEvents(this.entry.job_id, { after: from, limit: PAGE });
      if (events.length) {
        this.cursor = events[events.length - 1]!.seq;
        for (const sub of this.subs) {
          if (!sub.live) continue;
          if (sub.cursor < from) void this.catchUp(sub);
          else this.write(sub, events);
        }
      }
      const now = Date.now();
      if (events.length || now - this.lastReportAt >= 2000) {
        this.lastReportAt = now;
        const report = await this.report(store);
        const text = report ? JSON.stringify(report) : "";
        if (text && text !== this.lastReport) {
          this.lastReport = text;
          for (const sub of this.subs) if (sub.live) sub.stream.send({ event: "report", data: text });
        }
      }
    } catch {
      // The state is busy or was deleted: the next tick tries again (the store is reopened).
    } finally {
      if (this.running) this.timer = setTimeout(() => void this.tick(), this.tickMs);
    }
  }

  close(): void {
    for (const sub of this.subs) sub.stream.close();
    this.stop();
  }
}

export interface FeedOptions {
  /** How often a watched job's log is read (default 250 ms: the page reflects a click within 1 s). */
  tickMs?: number;
  /** How often the job list is re-read while watched (default 1 s). */
  listTickMs?: number;
}

export class Feeds {
  private readonly jobs = new Map<string, JobFeed>();
  private readonly listSubs = new Set<SseStream>();
  private listTimer: ReturnType<typeof setTimeout> | undefined;
  private listRows = new Map<string, string>();
  private listCache: { at: number; rows: Promise<JobRow[]> } | undefined;
  /** What the last registry read found: unchanged entries are not read again (reading 1,000 took ~10 ms of CPU a list). */
  private readonly registry = registryCache();
  private readonly summaries = new Map<string, { stamp: string; at: number; summary: JobSummary }>();

  constructor(
    private readonly stores: JobStores,
    private readonly opts: FeedOptions = {},
  ) {}

  async watchJob(entry: RegistryEntry, stream: SseStream, since: number): Promise<void> {
    let feed = this.jobs.get(entry.job_id);
    if (!feed) {
      feed = new JobFeed(this.stores, entry, this.opts.tickMs ?? 250, () => this.jobs.delete(entry.job_id), (store) => this.statusOf(store, entry.job_id));
      this.jobs.set(entry.job_id, feed);
    }
    await feed.subscribe(stream, since);
  }

  /** The report plus the job's concurrency (for ETAs) and its account's hold; null when the job record is gone. */
  async statusOf(store: StateStore, jobId: string): Promise<ReportWithExtras | null> {
    const record = await store.getJob(jobId);
    if (!record) return null;
    const report = await jobReport(store, record, Date.now(), (lastSeq, live) => this.summaryOf(store, record, lastSeq, live.length > 0));
    return { ...report, concurrency: await this.stores.concurrencyOf(store, record), account_hold: await this.stores.accountHold(store, record) };
  }

  /**
   * A job's summary reads every batch record, so it is reused while nothing moved: on SQLite until
   * anything is committed to the database; elsewhere while the last event and job record are the
   * same, for 250 ms while a runner works (a claim writes no event) and for 5 s when none does.
   */
  private async summaryOf(store: StateStore, record: JobRecord, lastSeq: number, running: boolean): Promise<JobSummary> {
    const key = `${store.kind}:${store.location}:${record.job_id}`;
    // A store that says when anything was committed (SQLite) keeps a summary until then, however long.
    const changed = store.changeStamp?.();
    const stamp = `${lastSeq}|${record.updated_at}|${record.status}|${changed ?? ""}`;
    const now = Date.now();
    const hit = this.summaries.get(key);
    if (hit && hit.stamp === stamp && (changed !== undefined || now - hit.at < (running ? 250 : 5000))) return hit.summary;
    const summary = await store.summary(record.job_id, record.total_batches);
    if (this.summaries.size >= 2000) this.summaries.clear();
    this.summaries.set(key, { stamp, at: now, summary });
    return summary;
  }

  /**
   * Every registered job's row, newest first; rows of running jobs come from their stores.
   * Shared for a moment, so many clients listing at once cost one read.
   */
  rows(): Promise<JobRow[]> {
    const now = Date.now();
    if (this.listCache && now - this.listCache.at < 250) return this.listCache.rows;
    const rows = this.readRows();
    this.listCache = { at: now, rows };
    rows.catch(() => (this.listCache = undefined));
    return rows;
  }

  private async readRows(): Promise<JobRow[]> {
    const { entries: registered } = await readRegistry(this.stores.home, this.registry);
    const entries = [...registered];
    const known = new Set(entries.map((e) => e.job_id));
    // Jobs in the shared database (MOZART_DATABASE_URL) that this machine never ran, read through the one store kept open on it.
    const shared = await this.stores.sharedStore();
    for (const e of await databaseEntries(process.env, undefined, shared).catch(() => [])) if (!known.has(e.job_id)) entries.push(e);
    const rows: JobRow[] = [];
    for (const entry of entries) {
      const row = await jobRow(entry, shared && entry.state_backend === "postgres" && entry.state_location === sharedDatabase(process.env) ? shared : undefined);
      if (row.status === "running") rows.push(await this.liveRow(entry, row));
      else rows.push(row);
    }
    return rows;
  }

  private async liveRow(entry: RegistryEntry, row: JobRow): Promise<JobRow> {
    try {
      const store = await this.stores.store(entry);
      const record = await store.getJob(entry.job_id);
      if (!record) return row;
      const r = await jobReport(store, record);
      return { ...row, status: r.status, completed: r.progress.completed, total: r.progress.total, cost_usd: r.cost_usd, updated_at: r.timing.updated_at > row.updated_at ? r.timing.updated_at : row.updated_at };
    } catch {
      return row;
    }
  }

  async watchList(stream: SseStream): Promise<void> {
    if (!this.listSubs.size) this.listRows = new Map((await this.rows()).map((r) => [r.job_id, JSON.stringify(r)]));
    this.listSubs.add(stream);
    stream.onClose(() => {
      this.listSubs.delete(stream);
      if (!this.listSubs.size && this.listTimer) {
        clearTimeout(this.listTimer);
        this.listTimer = undefined;
      }
    });
    if (!this.listTimer) this.listTimer = setTimeout(() => void this.listTick(), this.opts.listTickMs ?? 1000);
  }

  private async listTick(): Promise<void> {
    try {
      const rows = await this.rows();
      const next = new Map<string, string>();
      for (const row of rows) {
        const text = JSON.stringify(row);
        next.set(row.job_id, text);
        if (this.listRows.get(row.job_id) !== text) for (const s of this.listSubs) s.send({ event: "job", data: text });
      }
      for (const id of this.listRows.keys()) if (!next.has(id)) for (const s of this.listSubs) s.send({ event: "job_removed", data: JSON.stringify({ job_id: id }) });
      this.listRows = next;
    } catch {
      // The registry cannot be read for a moment: try again on the next tick.
    } finally {
      if (this.listSubs.size) this.listTimer = setTimeout(() => void this.listTick(), this.opts.listTickMs ?? 1000);
      else this.listTimer = undefined;
    }
  }

  close(): void {
    for (const feed of [...this.jobs.values()]) feed.close();
    for (const s of [...this.listSubs]) s.close();
    if (this.listTimer) clearTimeout(this.listTimer);
  }
}
