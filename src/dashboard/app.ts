/**
 * The dashboard as a value: `createDashboardApp({ home })` builds an h3 app over the registry
 * and the jobs' stores, testable with `app.fetch(request)` and no socket. It observes through
 * read-only stores and steers through the control record, like `mozart pause/cancel`; the
 * engine does not know it exists. Every route is declared once in ROUTES, with the zod
 * schemas its input is validated with and its OpenAPI entry is generated from.
 */
import { spawn } from "node:child_process";
import { mkdirSync, openSync, closeSync, readSync, fstatSync } from "node:fs";
import { join } from "node:path";
import { H3, getRouterParams, type H3Event } from "h3";
import { z } from "zod";
import { requester, steerJob } from "../engine/control.ts";
import { encodeJobId } from "../state/keys.ts";
import { batchRow, batchRows, jobReport } from "../state/report.ts";
import { readOutcomeFigures } from "../learning/digest.ts";
import { historyEstimate } from "../learning/estimate.ts";
import { historyPath } from "../learning/history.ts";
import { computeStats } from "../learning/stats.ts";
import type { AttemptRecord, StateStore } from "../state/types.ts";
import { selfCommand } from "../runtime/self.ts";
import { shellQuote } from "../text.ts";
import { VERSION } from "../version.ts";
import { ASSETS } from "./assets.ts";
import { Feeds, sseStream, type FeedOptions } from "./feeds.ts";
import { ApiError, DOCS_CSP, PAGE_CSP, errorResponse, json, jsonText, withSecurityHeaders } from "./http.ts";
import { JobStores, stateFolderOf } from "./jobs.ts";
import { openApiDocument, type RouteSpec } from "./openapi.ts";
import * as S from "./schemas.ts";
import { Access, SESSION_COOKIE, crossSite, type AccessOptions } from "./security.ts";

export interface DashboardOptions extends AccessOptions, FeedOptions {
  /** MOZART_HOME: the registry the jobs are found in. */
  home: string;
  /** Starts a detached `mozart resume <id>`; returns its pid. Tests may replace it. */
  startResume?: (args: { jobId: string; cwd: string; log: string }) => number;
  env?: Record<string, string | undefined>;
}

export interface DashboardApp {
  /** Answers one request (what the server and the tests call). */
  fetch(req: Request): Promise<Response>;
  readonly access: Access;
  readonly h3: H3;
  close(): Promise<void>;
}

/** Output shown per stream of an attempt: the tail, enough for a page and small enough to send often. */
const OUTPUT_TAIL_BYTES = 64 * 1024;
const MAX_BODY_BYTES = 16 * 1024;

interface Ctx {
  event: H3Event;
  req: Request;
  params: Record<string, string>;
  query: URLSearchParams;
}

type Handler = (ctx: Ctx) => Promise<Response>;
type Route = RouteSpec & { handle: Handler };

export function createDashboardApp(opts: DashboardOptions): DashboardApp {
  const stores = new JobStores(opts.home);
  const feeds = new Feeds(stores, opts);
  const access = new Access(opts);
  const env = opts.env ?? process.env;
  const startResume = opts.startResume ?? ((a) => spawnResume(a, env));

  const parse = <T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> => {
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    const issue = r.error.issues[0];
    const where = issue?.path.length ? ` (${issue.path.join(".")})` : "";
    throw new ApiError(400, "bad_request", `invalid ${what}${where}: ${issue?.message ?? "malformed"}`);
  };
  const queryOf = (q: URLSearchParams) => Object.fromEntries(q.entries());
  const listBodies = new WeakMap<object, Map<string, string>>();

  /** The route's job: its id checked, its registry entry, read-only store and record (404 when any is missing). */
  const openFrom = async (ctx: Ctx) => {
    const { id } = parse(S.JobIdParam, ctx.params, "job id");
    return { id, ...(await stores.open(id)) };
  };

  const control = (request: "pause" | "cancel"): Handler => async (ctx) => {
    await readControlBody(ctx.req);
    const { id } = parse(S.JobIdParam, ctx.params, "job id");
    const entry = await stores.entry(id);
    return stores.withWritable(entry, async (store, record) => {
      const result = await steerJob(store, record, request, requester("dashboard"), opts.home);
      if (result.kind === "not_running") {
        const why = request === "pause" ? `job ${JSON.stringify(id)} is not running (${result.status}): nothing to pause` : `job ${JSON.stringify(id)} is already ${result.status}: nothing to cancel`;
        throw new ApiError(409, "conflict", why);
      }
      const delivered = result.kind === "requested" ? result.runners.length : 0;
      return json({ job_id: record.job_id, request, delivered_to: delivered, status: result.status }, 202);
    });
  };

  const ROUTES: Route[] = [
    {
      method: "GET",
      path: "/health",
      summary: "Liveness: answers without a token",
      responses: { 200: { description: "The server is up", schema: S.Health } },
      handle: async () => json({ ok: true, version: VERSION }),
    },
    {
      method: "GET",
      path: "/api/jobs",
      summary: "Jobs registered on this machine, most recently updated first",
      query: S.JobListQuery,
      responses: { 200: { description: "A page of jobs", schema: S.JobList } },
      handle: async (ctx) => {
        const q = parse(S.JobListQuery, queryOf(ctx.query), "query");
        const all = await feeds.rows();
        // Many clients list at once: while the rows are the same (feeds.rows shares them for a moment), so is each page's body.
        let bodies = listBodies.get(all);
        if (!bodies) listBodies.set(all, (bodies = new Map()));
        const key = `${q.status ?? ""}|${q.cursor ?? ""}|${q.limit}`;
        let body = bodies.get(key);
        if (body === undefined) {
          const rows = all.filter((r) => !q.status || r.status === q.status);
          const start = q.cursor ? Number(q.cursor) : 0;
          const page = rows.slice(start, start + q.limit);
          const next = start + q.limit < rows.length ? String(start + q.limit) : null;
          body = JSON.stringify({ jobs: page, total: rows.length, next_cursor: next });
          if (bodies.size < 256) bodies.set(key, body);
        }
        return jsonText(body);
      },
    },
    {
      method: "GET",
      path: "/api/jobs/:id",
      summary: "A job's full status, every batch included: the same value as `mozart status --json`",
      params: S.JobIdParam,
      responses: { 200: { description: "The job's status document", schema: S.JobDocument } },
      handle: async (ctx) => {
        const { store, record } = await openFrom(ctx);
        return jsonWithRows({ ...(await jobReport(store, record)), account_hold: await stores.accountHold(store, record) }, batchRows(store, record));
      },
    },
    {
      method: "GET",
      path: "/api/jobs/:id/status",
      summary: "A job's status without its batches: cheap enough to ask often",
      params: S.JobIdParam,
      responses: { 200: { description: "The job's report", schema: S.JobStatusSchema } },
      handle: async (ctx) => {
        const { id, store } = await openFrom(ctx);
        const status = await feeds.statusOf(store, id);
        if (!status) throw new ApiError(404, "not_found", `job ${JSON.stringify(id)} has no record`);
        return json(status);
      },
    },
    {
      method: "GET",
      path: "/api/jobs/:id/stats",
      summary: "A job's outcome statistics (as `mozart stats <job> --json`) and the estimate of its batches left, from the history under MOZART_HOME",
      params: S.JobIdParam,
      responses: { 200: { description: "The job's stats and estimate", schema: S.JobStats } },
      handle: async (ctx) => {
        const { id, store, record } = await openFrom(ctx);
        const outcomes = await readOutcomeFigures(historyPath({ home: stores.home, jobDir: "." })!);
        const left = Math.max(0, record.total_batches - (await store.summary(id, record.total_batches)).completed);
        const config = await store.getBlob(record.config_blob).then((t) => (t ? (JSON.parse(t) as { concurrency?: number }) : {}), () => ({}) as { concurrency?: number });
        const estimate = left ? (historyEstimate(outcomes, record.template_blob, left, config.concurrency ?? 1) ?? null) : null;
        return json({ job_id: id, stats: computeStats(outcomes, { job: id }), batches_left: left, estimate });
      },
    },
    {
      method: "GET",
      path: "/api/jobs/:id/batches",
      summary: "A page of a job's batches, in batch order",
      params: S.JobIdParam,
      query: S.BatchListQuery,
      responses: { 200: { description: "A page of batches", schema: S.BatchList } },
      handle: async (ctx) => {
        const { id } = parse(S.JobIdParam, ctx.params, "job id");
        const q = parse(S.BatchListQuery, queryOf(ctx.query), "query");
        const { store, record } = await stores.open(id);
        const from = q.cursor ? Number(q.cursor) : 1;
        const to = Math.min(record.total_batches, from + q.limit - 1);
        const rows = [];
        if (from <= record.total_batches) for await (const row of batchRows(store, record, { from, to })) rows.push(row);
        return json({ batches: rows, next_cursor: to < record.total_batches ? String(to + 1) : null });
      },
    },
    {
      method: "GET",
      path: "/api/jobs/:id/batches/:n",
      summary: "One batch with its attempts: prompt, argv, exit code, duration, cost, validations and output (live while it runs)",
      params: S.BatchParam,
      responses: { 200: { description: "The batch and its attempts", schema: S.BatchDetail } },
      handle: async (ctx) => {
        const { id, n } = parse(S.BatchParam, ctx.params, "batch");
        const { store, record } = await stores.open(id);
        if (n > record.total_batches) throw new ApiError(404, "not_found", `job ${JSON.stringify(id)} has ${record.total_batches} batches: there is no batch ${n}`);
        const live = new Set((await store.runners(id, Date.now())).map((r) => r.id));
        const stored = await store.getBatch(id, n);
        let row;
        if (stored) row = batchRow(stored, live);
        else for await (const r of batchRows(store, record, { from: n, to: n })) row = r;
        const attempts = await Promise.all((await store.listAttempts(id, n)).map((a) => attemptView(store, id, a)));
        return json({ batch: row, attempts });
      },
    },
    {
      method: "GET",
      path: "/api/jobs/:id/events",
      summary: "Server-sent events from the job's persisted event log; the SSE id is the event's seq, so a reconnect with Last-Event-ID resumes with no gap and no duplicate",
      params: S.JobIdParam,
      query: S.EventsQuery,
      sse: "Each event: `id: <seq>`, `event: <type>`, `data: <event JSON>`; after each burst `event: report` with the job's status; a comment every 15 s",
      responses: { 200: { description: "An event stream (text/event-stream)" } },
      handle: async (ctx) => {
        const { id } = parse(S.JobIdParam, ctx.params, "job id");
        const q = parse(S.EventsQuery, queryOf(ctx.query), "query");
        const lastId = ctx.req.headers.get("last-event-id");
        let since = q.since ?? 0;
        if (lastId !== null && lastId !== "") since = parse(z.coerce.number().int().min(0), lastId, "Last-Event-ID");
        const { entry } = await stores.open(id);
        const stream = sseStream(ctx.req.signal);
        // The catch-up runs while the client reads: a long log streams at the client's pace.
        feeds.watchJob(entry, stream, since).catch(() => stream.close());
        return stream.response;
      },
    },
    {
      method: "GET",
      path: "/api/events",
      summary: "Server-sent events of every job's status changes, for the job list",
      sse: "`event: job` with a job row whenever it changes; `event: job_removed` when a job is forgotten",
      responses: { 200: { description: "An event stream (text/event-stream)" } },
      handle: async (ctx) => {
        const stream = sseStream(ctx.req.signal);
        feeds.watchList(stream).catch(() => stream.close());
        return stream.response;
      },
    },
    {
      method: "POST",
      path: "/api/jobs/:id/pause",
      summary: "Pause a running job: nothing new starts, running attempts finish, the runner exits paused",
      params: S.JobIdParam,
      body: S.ControlBody,
      responses: { 202: { description: "The request was written; every runner reacts within a second", schema: S.ControlAccepted }, 409: { description: "The job is not running" } },
      handle: control("pause"),
    },
    {
      method: "POST",
      path: "/api/jobs/:id/cancel",
      summary: "Cancel a job: running attempts stop now and are recorded as interrupted; the job ends cancelled (resumable)",
      params: S.JobIdParam,
      body: S.ControlBody,
      responses: { 202: { description: "The request was written (or the idle job was cancelled)", schema: S.ControlAccepted }, 409: { description: "The job is already completed or cancelled" } },
      handle: control("cancel"),
    },
    {
      method: "POST",
      path: "/api/jobs/:id/resume",
      summary: "Resume a job: starts a detached `mozart resume` with its log in the job's state folder",
      params: S.JobIdParam,
      body: S.ControlBody,
      responses: { 202: { description: "The resume was started", schema: S.ResumeAccepted }, 409: { description: "The job is running or completed" } },
      handle: async (ctx) => {
        await readControlBody(ctx.req);
        const { id, entry, store, record } = await openFrom(ctx);
        const report = await jobReport(store, record);
        if (report.status === "running" || report.status === "completed") throw new ApiError(409, "conflict", `job ${JSON.stringify(id)} is ${report.status}: nothing to resume`);
        const dir = join(stateFolderOf(entry) ?? stores.home, "logs");
        const log = join(dir, `resume-${encodeJobId(id)}-${new Date().toISOString().replace(/[:.]/g, "-")}.log`);
        let pid: number;
        try {
          mkdirSync(dir, { recursive: true });
          pid = startResume({ jobId: record.job_id, cwd: record.workspace, log });
        } catch (e) {
          throw new ApiError(409, "conflict", `cannot start \`mozart resume\`: ${(e as Error).message}`);
        }
        return json({ job_id: record.job_id, pid, log, follow: `mozart logs ${shellQuote(record.job_id)} -f`, events: `/api/jobs/${encodeURIComponent(record.job_id)}/events` }, 202);
      },
    },
  ];

  const openapi = JSON.stringify(openApiDocument(ROUTES, VERSION));

  const h3 = new H3({
    silent: true,
    onError: (error) => {
      const original = error.cause ?? error;
      if (original instanceof ApiError) return fail(original);
      const status = error.status ?? 500;
      // h3's own errors (unknown route, malformed URL, wrong method) are the client's.
      return errorResponse(status, undefined, status === 404 ? "no such route" : status >= 500 ? "internal error" : error.message);
    },
  });
  for (const route of ROUTES) {
    h3.on(route.method, route.path, async (event) => {
      const params = getRouterParams(event, { decode: true });
      const url = new URL(event.req.url);
      return route.handle({ event, req: event.req, params, query: url.searchParams });
    });
  }
  h3.get("/openapi.json", () => new Response(openapi, { headers: { "content-type": "application/json; charset=utf-8" } }));
  for (const [path, asset] of ASSETS) h3.get(path, () => new Response(asset.body, { headers: { "content-type": asset.type, "cache-control": path === "/" ? "no-store" : "no-cache" } }));

  const fetchApp = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (!access.hostAllowed(req)) return errorResponse(403, "forbidden", `this dashboard answers only to its loopback address (Host ${JSON.stringify(req.headers.get("host") ?? "")} refused)`);
    if (url.pathname === "/login") return login(url);
    if (url.pathname !== "/health" && !access.authorized(req)) {
      return errorResponse(401, "unauthorized", "this dashboard needs its token: send `Authorization: Bearer <token>`, or open the login URL `mozart dashboard` printed", { "www-authenticate": 'Bearer realm="mozart"' });
    }
    if (req.method !== "GET" && req.method !== "HEAD" && crossSite(req)) {
      return errorResponse(403, "forbidden", "cross-site requests may not control jobs");
    }
    if (req.method === "OPTIONS") return errorResponse(405, "method_not_allowed", "CORS is off: this API answers only its own page");
    try {
      return await h3.fetch(req);
    } catch (e) {
      return fail(e);
    }
  };

  const login = (url: URL): Response => {
    const session = access.login(url.searchParams.get("code"));
    if (!session) return errorResponse(401, "unauthorized", "this login link was already used or is wrong: restart `mozart dashboard` for a new one, or send the token as a bearer token");
    return new Response(null, { status: 303, headers: { location: "/", "set-cookie": `${SESSION_COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/` } });
  };

  return {
    access,
    h3,
    async fetch(req) {
      let res: Response;
      try {
        res = await fetchApp(req);
      } catch (e) {
        res = fail(e);
      }
      const path = new URL(req.url).pathname;
      return withSecurityHeaders(res, path === "/docs" || path.startsWith("/docs/") ? DOCS_CSP : PAGE_CSP);
    },
    async close() {
      feeds.close();
      await stores.close();
    },
  };
}

/** ApiErrors are answers; anything else is a fault of ours, reported without internals. */
function fail(e: unknown): Response {
  if (e instanceof ApiError) return errorResponse(e.status, e.code, e.message);
  const status = (e as { status?: unknown })?.status;
  if (typeof status === "number" && status >= 400 && status < 500) return errorResponse(status, undefined, (e as Error).message);
  return errorResponse(500, "internal", `internal error: ${(e as Error)?.message ?? String(e)}`);
}

/** A control request's body may be empty or `{}`; anything else must be small, valid JSON of the documented shape. */
async function readControlBody(req: Request): Promise<void> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw new ApiError(413, "too_large", `the body is larger than ${MAX_BODY_BYTES} bytes`);
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) throw new ApiError(413, "too_large", `the body is larger than ${MAX_BODY_BYTES} bytes`);
  if (!text.trim()) return;
  const type = req.headers.get("content-type") ?? "";
  if (!type.includes("application/json")) throw new ApiError(415, "unsupported_media_type", "send the body as application/json (or send none)");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, "bad_request", `the body is not valid JSON: ${(e as Error).message}`);
  }
  const r = S.ControlBody.safeParse(value);
  if (!r.success) throw new ApiError(400, "bad_request", `invalid body: ${r.error.issues[0]?.message ?? "malformed"}`);
}

/** An attempt as the API shows it: its prompt, and the tail of its output (live while it runs). */
async function attemptView(store: StateStore, jobId: string, a: AttemptRecord): Promise<S.Attempt> {
  const { prompt_blob, stdout, stderr, output_file: _file, process: _proc, ...rest } = a;
  const out = tailFile(store.outputPath(jobId, a.batch_num, a.attempt, "stdout"));
  const err = tailFile(store.outputPath(jobId, a.batch_num, a.attempt, "stderr"));
  return {
    ...rest,
    prompt: await store.getBlob(prompt_blob).catch(() => null),
    output: { stdout: out?.text ?? stdout, stderr: err?.text ?? stderr, truncated: Boolean(out?.truncated || err?.truncated) },
  };
}

function tailFile(path: string): { text: string; truncated: boolean } | null {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const length = Math.min(size, OUTPUT_TAIL_BYTES);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return { text: buf.toString("utf8"), truncated: size > length };
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** `status --json`'s document as a streamed body: a job of a million batches is sent in bounded memory. */
function jsonWithRows(head: object, rows: AsyncIterable<unknown>): Response {
  const encoder = new TextEncoder();
  const text = JSON.stringify(head);
  let first = true;
  const it = rows[Symbol.asyncIterator]();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(encoder.encode(`${text.slice(0, -1)},"batches":[`));
    },
    async pull(c) {
      let chunk = "";
      for (let i = 0; i < 500; i++) {
        const next = await it.next();
        if (next.done) {
          c.enqueue(encoder.encode(`${chunk}]}`));
          c.close();
          return;
        }
        chunk += (first ? "" : ",") + JSON.stringify(next.value);
        first = false;
      }
      c.enqueue(encoder.encode(chunk));
    },
    async cancel() {
      await it.return?.();
    },
  });
  return new Response(body, { headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" } });
}

/** Starts `mozart resume <id>` detached (it outlives the dashboard, like a run started by hand), output in `log`. */
function spawnResume({ jobId, cwd, log }: { jobId: string; cwd: string; log: string }, env: Record<string, string | undefined>): number {
  const [cmd, ...args] = selfCommand();
  const fd = openSync(log, "a");
  try {
    const child = spawn(cmd!, [...args, "resume", jobId], { cwd, env: { ...env, NO_COLOR: "1" } as NodeJS.ProcessEnv, detached: true, stdio: ["ignore", fd, fd] });
    child.unref();
    if (!child.pid) throw new Error(`${cmd} did not start`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}
