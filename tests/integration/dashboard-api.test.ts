/**
 * The dashboard's REST routes through `app.fetch`, over real stores (SQLite and JSON) made by
 * real `mozart run`s: every status code, pagination bounds, hostile ids, malformed bodies, the
 * token and cookie flow, cross-site refusal, security headers and the OpenAPI document.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { createDashboardApp, type DashboardApp } from "../../src/dashboard/app.ts";
import { writeAccountHold } from "../../src/state/accounts.ts";
import { findJob, registerJob } from "../../src/state/registry.ts";
import { commandBackend, sandbox, type Kind, type Sandbox } from "./engine-helpers.ts";

const ORIGIN = "http://127.0.0.1:8000";
const BATCHES = 120;

function get(app: DashboardApp, path: string, headers: Record<string, string> = {}): Promise<Response> {
  return app.fetch(new Request(`${ORIGIN}${path}`, { headers }));
}

function post(app: DashboardApp, path: string, body?: string, headers: Record<string, string> = {}): Promise<Response> {
  return app.fetch(new Request(`${ORIGIN}${path}`, { method: "POST", body, headers: { "content-type": "application/json", ...headers } }));
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.code).toBe("string");
  expect(typeof body.error.message).toBe("string");
  return body.error;
}

for (const kind of ["sqlite", "json"] as Kind[]) {
  describe(`dashboard REST (${kind} state)`, () => {
    let box: Sandbox;
    let app: DashboardApp;

    beforeAll(() => {
      box = sandbox(kind);
      const small = box.job({ name: "small", backend: commandBackend(`echo "hello from batch $MOZART_BATCH_NUM"`) }, "small.yaml");
      expect(box.run(["run", small, "-q"]).code).toBe(0);
      const many = box.job({ name: "many", workspace: "./ws-many", concurrency: 8, batch: { size: 1, total_items: BATCHES }, backend: commandBackend("true") }, "many.yaml");
      expect(box.run(["run", many, "-q"]).code).toBe(0);
      const failing = box.job({ name: "broken", workspace: "./ws-broken", retry: { max_retries: 0 }, backend: commandBackend("echo nope >&2; exit 3") }, "broken.yaml");
      expect(box.run(["run", failing, "-q"]).code).toBe(1);
      app = createDashboardApp({ home: box.home });
    }, 120_000);

    afterAll(async () => {
      await app?.close();
      box?.cleanup();
    });

    test("GET /api/jobs/:id/stats: the job's outcome figures from the history, and 404 for an unknown job", async () => {
      const res = await get(app, "/api/jobs/many/stats");
      expect(res.status).toBe(200);
      const body = (await res.json()) as { job_id: string; batches_left: number; estimate: unknown; stats: { jobs: string[]; finished: number; first_try_rate: number; attempts: unknown } };
      expect(body.job_id).toBe("many");
      expect(body.stats).toMatchObject({ jobs: ["many"], finished: BATCHES, first_try_rate: 1, attempts: [{ attempts: 1, batches: BATCHES }] });
      expect(body.batches_left).toBe(0);
      expect(body.estimate).toBeNull();
      const broken = (await (await get(app, "/api/jobs/broken/stats")).json()) as { stats: { categories: { failed: number } }; batches_left: number };
      expect(broken.stats.categories.failed).toBe(1);
      expect(broken.batches_left).toBe(3);
      expect((await get(app, "/api/jobs/nope/stats")).status).toBe(404);
    });

    test("a job's account hold (a subscription limit met by another job on its account) is in the job document and its status", async () => {
      const entry = (await findJob(box.home, "small"))!;
      await registerJob(box.home, { ...entry, account: "config-test" });
      const until = Date.now() + 60_000;
      await writeAccountHold(box.home, { account: "config-test", until, reason: "You've hit your session limit", job_id: "other-job", limit: "session", set_at: Date.now() });
      const fresh = createDashboardApp({ home: box.home });
      try {
        const expected = { account: "config-test", until: new Date(until).toISOString(), reason: "You've hit your session limit", limit: "session", met_by: "other-job" };
        expect(((await (await get(fresh, "/api/jobs/small")).json()) as { account_hold: unknown }).account_hold).toEqual(expected);
        expect(((await (await get(fresh, "/api/jobs/small/status")).json()) as { account_hold: unknown }).account_hold).toEqual(expected);
        // The same value as `mozart status --json`, and none for a job on another account.
        expect((box.status("small") as unknown as { account_hold: unknown }).account_hold).toEqual(expected);
        expect(((await (await get(fresh, "/api/jobs/many/status")).json()) as { account_hold: unknown }).account_hold).toBeNull();
      } finally {
        await fresh.close();
        rmSync(join(box.home, "accounts"), { recursive: true, force: true });
        await registerJob(box.home, entry);
      }
    });

    test("GET /health answers with the version", async () => {
      const res = await get(app, "/health");
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ ok: true, version: expect.any(String) });
    });

    test("GET /api/jobs lists every job, filters by status, and pages with limit and cursor", async () => {
      const all = (await (await get(app, "/api/jobs")).json()) as { jobs: Array<{ job_id: string; status: string }>; total: number; next_cursor: string | null };
      expect(all.total).toBe(3);
      expect(all.jobs.map((j) => j.job_id).sort()).toEqual(["broken", "many", "small"]);
      expect(all.next_cursor).toBeNull();

      const failed = (await (await get(app, "/api/jobs?status=failed")).json()) as typeof all;
      expect(failed.jobs.map((j) => j.job_id)).toEqual(["broken"]);

      const first = (await (await get(app, "/api/jobs?limit=2")).json()) as typeof all;
      expect(first.jobs).toHaveLength(2);
      expect(first.next_cursor).toBe("2");
      const second = (await (await get(app, `/api/jobs?limit=2&cursor=${first.next_cursor}`)).json()) as typeof all;
      expect(second.jobs).toHaveLength(1);
      expect(second.next_cursor).toBeNull();
      expect(new Set([...first.jobs, ...second.jobs].map((j) => j.job_id)).size).toBe(3);
    });

    test("job list bounds: bad status, limit and cursor are 400", async () => {
      for (const q of ["status=bogus", "limit=0", "limit=201", "limit=-1", "limit=abc", "cursor=abc", "cursor=-1", `cursor=${"9".repeat(40)}`]) {
        const res = await get(app, `/api/jobs?${q}`);
        expect(res.status, q).toBe(400);
        expect((await errorOf(res)).code).toBe("bad_request");
      }
      const far = (await (await get(app, "/api/jobs?cursor=1000")).json()) as { jobs: unknown[] };
      expect(far.jobs).toEqual([]);
    });

    test("GET /api/jobs/{id} is the same value as `mozart status --json`", async () => {
      const res = await get(app, "/api/jobs/small");
      expect(res.status).toBe(200);
      const api = await res.json();
      const cli = box.status("small");
      expect(api).toEqual(cli);
    });

    test("GET /api/jobs/{id}/status is the report without batches, plus the concurrency", async () => {
      const status = (await (await get(app, "/api/jobs/many/status")).json()) as Record<string, unknown>;
      expect(status.batches).toBeUndefined();
      expect(status).toMatchObject({ job_id: "many", status: "completed", concurrency: 8, progress: { completed: BATCHES, total: BATCHES } });
    });

    test("GET /api/jobs/{id}/batches pages through every batch exactly once", async () => {
      const seen: number[] = [];
      let cursor: string | null = "";
      let pages = 0;
      while (cursor !== null) {
        const page = (await (await get(app, `/api/jobs/many/batches?limit=50${cursor ? `&cursor=${cursor}` : ""}`)).json()) as { batches: Array<{ batch_num: number; status: string }>; next_cursor: string | null };
        seen.push(...page.batches.map((b) => b.batch_num));
        expect(page.batches.every((b) => b.status === "completed")).toBe(true);
        cursor = page.next_cursor;
        pages++;
      }
      expect(pages).toBe(3);
      expect(seen).toEqual(Array.from({ length: BATCHES }, (_, i) => i + 1));
      for (const q of ["limit=0", "limit=1001", "cursor=x", "limit=1.5"]) expect((await get(app, `/api/jobs/many/batches?${q}`)).status, q).toBe(400);
      const beyond = (await (await get(app, `/api/jobs/many/batches?cursor=${BATCHES + 5}`)).json()) as { batches: unknown[]; next_cursor: null };
      expect(beyond).toEqual({ batches: [], next_cursor: null });
    });

    test("GET /api/jobs/{id}/batches/{n}: attempts with prompt, argv, exit code, duration, validations and output", async () => {
      const res = await get(app, "/api/jobs/small/batches/2");
      expect(res.status).toBe(200);
      const doc = (await res.json()) as { batch: { batch_num: number; status: string }; attempts: Array<Record<string, unknown> & { output: { stdout: string } }> };
      expect(doc.batch).toMatchObject({ batch_num: 2, status: "completed" });
      expect(doc.attempts).toHaveLength(1);
      const a = doc.attempts[0]!;
      expect(a).toMatchObject({ attempt: 1, exit_code: 0, decision: "success", prompt: "Batch 2 items 2-2\n" });
      expect(a.argv).toEqual(expect.arrayContaining([expect.stringContaining("hello from batch")]));
      expect(typeof a.duration_ms).toBe("number");
      expect(a.output.stdout).toContain("hello from batch 2");
      expect(a.prompt_blob).toBeUndefined();

      const failed = (await (await get(app, "/api/jobs/broken/batches/1")).json()) as typeof doc & { batch: { error: string } };
      expect(failed.batch.status).toBe("failed");
      expect(failed.attempts[0]!.exit_code).toBe(3);
      expect((failed.attempts[0]!.output as unknown as { stderr: string }).stderr).toContain("nope");
    });

    test("GET /api/jobs/{id}/events replays a whole log, in order, at the client's pace", async () => {
      const { last_seq } = (await (await get(app, "/api/jobs/many/status")).json()) as { last_seq: number };
      expect(last_seq).toBeGreaterThan(BATCHES * 3);
      const res = await get(app, "/api/jobs/many/events");
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      let text = "";
      const ids: number[] = [];
      while (ids.at(-1) !== last_seq) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        const blocks = text.split("\n\n");
        text = blocks.pop()!;
        for (const b of blocks) {
          const id = /^id: (\d+)$/m.exec(b);
          if (id) ids.push(Number(id[1]));
        }
      }
      await reader.cancel();
      expect(ids).toEqual(Array.from({ length: last_seq }, (_, i) => i + 1));
    });

    test("unknown jobs and batches are 404, malformed batch numbers 400", async () => {
      for (const path of ["/api/jobs/nosuch", "/api/jobs/nosuch/status", "/api/jobs/nosuch/batches", "/api/jobs/nosuch/batches/1", "/api/jobs/small/batches/99", "/api/jobs/nosuch/events"]) {
        const res = await get(app, path);
        expect(res.status, path).toBe(404);
        expect((await errorOf(res)).code).toBe("not_found");
      }
      for (const n of ["0", "-1", "abc", "1.5", "1e3", "99999999999999999999"]) expect((await get(app, `/api/jobs/small/batches/${n}`)).status, n).toBe(400);
      expect((await get(app, "/api/nothing-here")).status).toBe(404);
    });

    test("hostile ids get no 2xx, no 5xx and no file content", async () => {
      const ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%252F..%252Fetc%252Fpasswd",
        "%ff%fe%00",
        "%00",
        "a".repeat(3000),
        "....%2F%2F....%2F%2Fetc%2Fpasswd",
        "%5c..%5c..%5cwindows",
        "%0d%0aSet-Cookie:%20x=1",
        "%F0%9F%92%A9",
      ];
      for (const id of ids) {
        for (const suffix of ["", "/status", "/batches", "/batches/1", "/events"]) {
          const res = await get(app, `/api/jobs/${id}${suffix}`);
          expect(res.status >= 400 && res.status < 500, `${id}${suffix} → ${res.status}`).toBe(true);
          const text = await res.text();
          expect(text).not.toContain("root:");
          expect(res.headers.get("set-cookie")).toBeNull();
        }
        for (const action of ["pause", "cancel", "resume"]) {
          const res = await post(app, `/api/jobs/${id}/${action}`, "{}");
          expect(res.status >= 400 && res.status < 500, `${id}/${action} → ${res.status}`).toBe(true);
        }
      }
      // Raw traversal in the path never reaches a file either.
      for (const path of ["/%2e%2e/%2e%2e/etc/passwd", "/api/jobs/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd", "/api/jobs/../../../etc/passwd", "/docs/../../etc/passwd", "/app.js/../../../etc/passwd"]) {
        const res = await app.fetch(new Request(`${ORIGIN}${path}`));
        expect(res.status === 200 ? await res.text() : "").not.toContain("root:");
        expect(res.status).toBeLessThan(500);
      }
    });

    test("malformed bodies: bad JSON 400, unknown fields 400, not JSON 415, too large 413", async () => {
      for (const body of ["{bad", "[1,2", '{"reason": 5}', '{"unknown": true}', "null", '"text"']) {
        const res = await post(app, "/api/jobs/small/pause", body);
        expect(res.status, body).toBe(400);
        expect((await errorOf(res)).code).toBe("bad_request");
      }
      expect((await post(app, "/api/jobs/small/pause", "hello", { "content-type": "text/plain" })).status).toBe(415);
      expect((await post(app, "/api/jobs/small/pause", JSON.stringify({ reason: "x".repeat(20_000) }))).status).toBe(413);
    });

    test("control conflicts: pausing a job that is not running, resuming or cancelling a completed one are 409", async () => {
      for (const [path, code] of [
        ["/api/jobs/small/pause", 409],
        ["/api/jobs/small/resume", 409],
        ["/api/jobs/small/cancel", 409],
        ["/api/jobs/broken/pause", 409],
      ] as const) {
        const res = await post(app, path);
        expect(res.status, path).toBe(code);
        expect((await errorOf(res)).code).toBe("conflict");
      }
      // An empty body and `{}` are both fine.
      expect((await post(app, "/api/jobs/small/pause", "")).status).toBe(409);
    });

    test("cross-site control requests are 403, whatever the job", async () => {
      const cross: Array<Record<string, string>> = [{ origin: "http://evil.example" }, { "sec-fetch-site": "cross-site" }, { "sec-fetch-site": "same-site" }, { origin: "null" }, { origin: "http://127.0.0.1:9999" }];
      for (const headers of cross) {
        for (const action of ["pause", "cancel", "resume"]) {
          const res = await post(app, `/api/jobs/broken/${action}`, "{}", headers);
          expect(res.status, JSON.stringify(headers)).toBe(403);
          expect((await errorOf(res)).code).toBe("forbidden");
        }
      }
      // The job was not touched.
      expect(box.status("broken").status).toBe("failed");
      // Same-origin passes the guard (and gets the job's own answer).
      expect((await post(app, "/api/jobs/small/pause", "{}", { origin: ORIGIN, "sec-fetch-site": "same-origin" })).status).toBe(409);
    });

    test("no CORS, and every response carries the security headers", async () => {
      for (const path of ["/", "/api/jobs", "/api/jobs/nosuch", "/openapi.json", "/docs"]) {
        const res = await get(app, path, { origin: "http://evil.example" });
        expect(res.headers.get("access-control-allow-origin")).toBeNull();
        expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
        expect(res.headers.get("x-content-type-options")).toBe("nosniff");
        expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      }
      const preflight = await app.fetch(new Request(`${ORIGIN}/api/jobs/small/pause`, { method: "OPTIONS", headers: { origin: "http://evil.example", "access-control-request-method": "POST" } }));
      expect(preflight.status).toBeGreaterThanOrEqual(400);
      expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    });
  });
}

describe("dashboard OpenAPI and assets", () => {
  let box: Sandbox;
  let app: DashboardApp;
  beforeAll(() => {
    box = sandbox("sqlite");
    app = createDashboardApp({ home: box.home });
  });
  afterAll(async () => {
    await app.close();
    box.cleanup();
  });

  test("/openapi.json describes every route, its parameters, responses and the error shape", async () => {
    const res = await get(app, "/openapi.json");
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, { parameters?: Array<{ name: string; in: string }>; responses: Record<string, { content: Record<string, { schema: { $ref?: string } }> }> }>>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths).sort()).toEqual(
      ["/health", "/api/jobs", "/api/jobs/{id}", "/api/jobs/{id}/status", "/api/jobs/{id}/stats", "/api/jobs/{id}/batches", "/api/jobs/{id}/batches/{n}", "/api/jobs/{id}/events", "/api/events", "/api/jobs/{id}/pause", "/api/jobs/{id}/cancel", "/api/jobs/{id}/resume"].sort(),
    );
    expect(Object.keys(doc.paths["/api/jobs/{id}/pause"]!)).toEqual(["post"]);
    const list = doc.paths["/api/jobs"]!.get!;
    expect(list.parameters!.map((p) => `${p.in}:${p.name}`).sort()).toEqual(["query:cursor", "query:limit", "query:status"]);
    expect(doc.paths["/api/jobs/{id}/batches/{n}"]!.get!.parameters!.map((p) => p.name)).toEqual(["id", "n"]);
    expect(doc.paths["/api/jobs/{id}"]!.get!.responses["404"]!.content["application/json"]!.schema.$ref).toBe("#/components/schemas/Error");
    expect(doc.paths["/api/jobs/{id}/pause"]!.post!.responses["409"]).toBeDefined();
    expect(doc.paths["/api/jobs/{id}/pause"]!.post!.responses["403"]).toBeDefined();
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(["Error", "JobDocument", "JobStatus", "BatchRow", "JobRow", "Attempt"]));
    // Every $ref points at a component that exists.
    const refs = JSON.stringify(doc).match(/"#\/components\/schemas\/[^"]+"/g) ?? [];
    for (const ref of refs) expect(doc.components.schemas[ref.slice(22, -1)], ref).toBeDefined();
  });

  test("/docs is Swagger UI served from embedded files, with no request elsewhere", async () => {
    const page = await (await get(app, "/docs")).text();
    expect(page).toContain("swagger-ui");
    const srcs = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(srcs.length).toBeGreaterThan(0);
    for (const src of srcs) {
      expect(src.startsWith("/")).toBe(true);
      const res = await get(app, src);
      expect(res.status, src).toBe(200);
      expect((await res.arrayBuffer()).byteLength).toBeGreaterThan(50);
    }
  });

  test("/ serves the page and its files", async () => {
    const res = await get(app, "/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    for (const path of ["/app.js", "/app.css"]) expect((await get(app, path)).status).toBe(200);
  });
});

describe("dashboard token", () => {
  let box: Sandbox;
  let app: DashboardApp;
  const TOKEN = "s3cret-token-0123456789";
  beforeAll(() => {
    box = sandbox("json");
    app = createDashboardApp({ home: box.home, token: TOKEN });
  });
  afterAll(async () => {
    await app.close();
    box.cleanup();
  });

  test("no token 401, a wrong one 401, the right one 200; /health needs none", async () => {
    expect((await get(app, "/health")).status).toBe(200);
    for (const path of ["/", "/api/jobs", "/openapi.json", "/docs", "/api/events"]) {
      const res = await get(app, path);
      expect(res.status, path).toBe(401);
      expect((await errorOf(res)).code).toBe("unauthorized");
      expect((await get(app, path, { authorization: "Bearer wrong-token-0123456789" })).status).toBe(401);
    }
    expect((await get(app, "/api/jobs", { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
    expect((await post(app, "/api/jobs/nosuch/pause", "{}")).status).toBe(401);
  });

  test("the one-time login URL sets an HttpOnly SameSite=Strict cookie, and works once", async () => {
    const login = app.access.loginPath()!;
    expect(login).toMatch(/^\/login\?code=/);
    expect((await get(app, "/login?code=wrong")).status).toBe(401);
    const res = await get(app, login);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/");
    const cookie = res.headers.get("set-cookie")!;
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("SameSite=Strict");
    const session = cookie.split(";")[0]!;
    expect((await get(app, "/api/jobs", { cookie: session })).status).toBe(200);
    expect((await get(app, "/", { cookie: `other=1; ${session}` })).status).toBe(200);
    expect((await get(app, "/api/jobs", { cookie: "mozart_session=forged" })).status).toBe(401);
    // Used once: the same link no longer signs anyone in.
    expect((await get(app, login)).status).toBe(401);
    expect(app.access.loginPath()).toBeNull();
  });
});

describe("dashboard status on SQLite: kept while nothing is committed, fresh once anything is", () => {
  let box: Sandbox;
  let app: DashboardApp | undefined;
  afterAll(async () => {
    await app?.close();
    box?.cleanup();
  });

  test("a change no event announces (repair's reset of batch records, from another process's connection) shows at the next request", async () => {
    box = sandbox("sqlite");
    const job = box.job({ name: "reset-me", retry: { max_retries: 0 }, batch: { size: 1, total_items: 3 }, on_batch_failure: "continue", backend: commandBackend(`[ "$MOZART_BATCH_NUM" = 2 ] && exit 3; echo ok`) }, "reset.yaml");
    expect(box.run(["run", job, "-q"]).code).toBe(1);
    app = createDashboardApp({ home: box.home });
    const progress = async () => ((await (await get(app!, "/api/jobs/reset-me/status")).json()) as { progress: { completed: number; failed: number } }).progress;
    expect(await progress()).toMatchObject({ completed: 2, failed: 1 });
    // The summary is kept: asked again, the same.
    expect(await progress()).toMatchObject({ completed: 2, failed: 1 });
    // Another connection resets the failed batch to pending: no event, the job record untouched.
    const { openStore } = await import("../../src/state/store.ts");
    const entry = (await findJob(box.home, "reset-me"))!;
    const store = await openStore({ kind: "sqlite", location: entry.state_location });
    try {
      expect(await store.resetBatches("reset-me", { status: "failed" })).toBe(1);
    } finally {
      await store.close();
    }
    expect(await progress()).toMatchObject({ completed: 2, failed: 0 });
  }, 60_000);
});
