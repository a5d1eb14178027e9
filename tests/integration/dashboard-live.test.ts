/**
 * The dashboard over a real port while real jobs run: SSE events in order, a reconnect with
 * Last-Event-ID that resumes with no gap and no duplicate, pause/cancel/resume over HTTP (a
 * cross-site POST refused while the job keeps running), and `mozart dashboard` as a process:
 * the loopback guard, a taken port, Ctrl+C.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createDashboardApp, type DashboardApp } from "../../src/dashboard/app.ts";
import { serveDashboard, type ServedDashboard } from "../../src/dashboard/serve.ts";
import type { StoredEvent } from "../../src/state/events.ts";
import { MAIN, testEnv } from "../helpers.ts";
import { commandBackend } from "./engine-helpers.ts";
import { waitFor, xsandbox, type XSandbox } from "./xproc-helpers.ts";

interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** Reads an SSE response until `until` says stop (or the stream ends); returns the messages. */
async function readSse(res: Response, until: (m: SseMessage, all: SseMessage[]) => boolean, timeoutMs = 30_000): Promise<SseMessage[]> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const messages: SseMessage[] = [];
  let buf = "";
  const timer = setTimeout(() => void reader.cancel(), timeoutMs);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return messages;
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const m: SseMessage = { data: "" };
        let isComment = true;
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          isComment = false;
          const [field, ...rest] = line.split(": ");
          const value = rest.join(": ");
          if (field === "id") m.id = value;
          else if (field === "event") m.event = value;
          else if (field === "data") m.data += value;
        }
        if (isComment) continue;
        messages.push(m);
        if (until(m, messages)) return messages;
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

const eventsOf = (messages: SseMessage[]) => messages.filter((m) => m.id !== undefined).map((m) => JSON.parse(m.data) as StoredEvent);

describe("dashboard over a real port", () => {
  let box: XSandbox;
  let app: DashboardApp;
  let served: ServedDashboard;

  beforeAll(async () => {
    box = xsandbox("sqlite");
    app = createDashboardApp({ home: box.home, env: { ...process.env, ...testEnv(box.env), MOZART_PROCESS_TAGS: box.tag } });
    served = await serveDashboard(app, { host: "127.0.0.1", port: 0 });
  });
  afterAll(async () => {
    await app?.close();
    await served?.close();
    await box?.cleanup();
  });

  const url = (path: string) => `${served.url}${path}`;
  const sameOrigin = () => ({ origin: served.url, "sec-fetch-site": "same-origin", "content-type": "application/json" });

  test("a running job's events arrive in order; a reconnect with Last-Event-ID resumes with no gap and no duplicate", async () => {
    const job = box.job({ name: "streamed", batch: { size: 1, total_items: 8 }, backend: commandBackend("sleep 0.15; echo out $MOZART_BATCH_NUM") }, "streamed.yaml");
    const run = box.start(["run", job]);
    await waitFor("the job to be registered", async () => (await fetch(url("/api/jobs/streamed/status"))).status === 200);

    const first = await readSse(await fetch(url("/api/jobs/streamed/events")), (_m, all) => eventsOf(all).length >= 6);
    const firstEvents = eventsOf(first);
    expect(firstEvents[0]!.type).toBe("job_start");
    expect(first.some((m) => m.event === "report")).toBe(true);
    const lastId = first.filter((m) => m.id !== undefined).at(-1)!.id!;

    const rest = await readSse(await fetch(url("/api/jobs/streamed/events"), { headers: { "last-event-id": lastId } }), (m) => m.event === "job_complete");
    expect((await run.done).code).toBe(0);
    const all = [...firstEvents, ...eventsOf(rest)];
    const seqs = all.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    // Exactly the persisted log, as `mozart logs --json` prints it.
    const logged = await box.events("streamed");
    expect(seqs).toEqual(logged.map((e) => e.seq));
    expect(all.map((e) => e.type)).toEqual(logged.map((e) => e.type));
    for (const m of [...first, ...rest]) if (m.id !== undefined) expect(JSON.parse(m.data).seq).toBe(Number(m.id));

    // ?since= starts after that seq, too.
    const since = await readSse(await fetch(url(`/api/jobs/streamed/events?since=${logged.length - 2}`)), (_m, msgs) => eventsOf(msgs).length >= 2, 5000);
    expect(eventsOf(since).map((e) => e.seq)).toEqual(logged.slice(-2).map((e) => e.seq));
  }, 60_000);

  test("pause over HTTP pauses a running job; a cross-site POST is refused and the job keeps running; resume completes it", async () => {
    const job = box.job({ name: "steered", workspace: "./ws-steered", batch: { size: 1, total_items: 6 }, backend: commandBackend("sleep 0.4") }, "steered.yaml");
    const run = box.start(["run", job]);
    await waitFor("the job to run", async () => ((await (await fetch(url("/api/jobs/steered/status"))).json().catch(() => ({}))) as { status?: string }).status === "running");

    const cross = await fetch(url("/api/jobs/steered/pause"), { method: "POST", body: "{}", headers: { origin: "http://evil.example", "sec-fetch-site": "cross-site", "content-type": "application/json" } });
    expect(cross.status).toBe(403);
    await Bun.sleep(600);
    expect(run.endedAt()).toBeUndefined();
    expect(((await (await fetch(url("/api/jobs/steered/status"))).json()) as { status: string }).status).toBe("running");

    const paused = await fetch(url("/api/jobs/steered/pause"), { method: "POST", body: "{}", headers: sameOrigin() });
    expect(paused.status).toBe(202);
    expect(await paused.json()).toMatchObject({ job_id: "steered", request: "pause", delivered_to: 1 });
    expect((await run.done).code).toBe(130);
    const afterPause = (await (await fetch(url("/api/jobs/steered/status"))).json()) as { status: string; stopped_by: { via: string }; progress: { completed: number } };
    expect(afterPause.status).toBe("paused");
    expect(afterPause.stopped_by.via).toBe("dashboard");
    expect(afterPause.progress.completed).toBeLessThan(6);

    const resumed = await fetch(url("/api/jobs/steered/resume"), { method: "POST", body: "{}", headers: sameOrigin() });
    expect(resumed.status).toBe(202);
    const started = (await resumed.json()) as { pid: number; log: string; follow: string };
    expect(started.follow).toBe("mozart logs steered -f");
    await waitFor("the resumed job to complete", async () => ((await (await fetch(url("/api/jobs/steered/status"))).json()) as { status: string }).status === "completed", 45_000, 200);
    expect(box.status("steered").progress).toMatchObject({ completed: 6, total: 6 });
    // Resuming a completed job is a conflict.
    expect((await fetch(url("/api/jobs/steered/resume"), { method: "POST", headers: sameOrigin() })).status).toBe(409);
  }, 90_000);

  test("cancel over HTTP stops a slow batch at once and leaves no process", async () => {
    const job = box.job({ name: "cancelled", workspace: "./ws-cancel", batch: { size: 1, total_items: 2 }, backend: commandBackend("sleep 60") }, "cancelled.yaml");
    const run = box.start(["run", job]);
    await waitFor("the slow batch to start", async () => box.alive().length >= 2, 20_000);
    const t0 = Date.now();
    const res = await fetch(url("/api/jobs/cancelled/cancel"), { method: "POST", body: "{}", headers: sameOrigin() });
    expect(res.status).toBe(202);
    expect((await run.done).code).toBe(130);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(box.alive()).toEqual([]);
    const status = (await (await fetch(url("/api/jobs/cancelled/status"))).json()) as { status: string };
    expect(status.status).toBe("cancelled");
    expect((await fetch(url("/api/jobs/cancelled/cancel"), { method: "POST", headers: sameOrigin() })).status).toBe(409);
  }, 60_000);

  test("the job list stream sends a job's row when it changes", async () => {
    const stream = fetch(url("/api/events"));
    const job = box.job({ name: "listed", workspace: "./ws-listed", batch: { size: 1, total_items: 3 }, backend: commandBackend("sleep 0.2") }, "listed.yaml");
    const res = await stream;
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const run = box.start(["run", job]);
    const messages = await readSse(res, (m) => m.event === "job" && JSON.parse(m.data).job_id === "listed" && JSON.parse(m.data).status === "completed", 30_000);
    expect((await run.done).code).toBe(0);
    const rows = messages.filter((m) => m.event === "job").map((m) => JSON.parse(m.data) as { job_id: string; status: string });
    expect(rows.some((r) => r.job_id === "listed" && r.status === "completed")).toBe(true);
  }, 45_000);

  test("a Host header other than the loopback address is refused (DNS rebinding)", async () => {
    const res = await fetch(url("/api/jobs"), { headers: { host: "attacker.example" } });
    expect(res.status).toBe(403);
  });
});

describe("`mozart dashboard` as a process", () => {
  const children: ReturnType<typeof spawn>[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  });

  function dashboard(args: string[], env: Record<string, string> = {}) {
    const child = spawn(process.execPath, [MAIN, "dashboard", ...args], { env: testEnv({ MOZART_HOME: `/tmp/mozart-dash-home-${process.pid}`, ...env }), stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const done = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));
    return { child, done, out: () => stdout, err: () => stderr };
  }

  test("a non-loopback bind without a token refuses to start and names --token", async () => {
    for (const host of ["0.0.0.0", "::", "192.168.1.10"]) {
      const d = dashboard(["--host", host, "--port", "0"]);
      expect(await d.done).toBe(2);
      expect(d.err()).toContain("--token");
    }
    const j = dashboard(["--host", "0.0.0.0", "--json"]);
    expect(await j.done).toBe(2);
    expect(JSON.parse(j.out()).error.message).toContain("without a token");
  }, 30_000);

  test("a taken port says so and suggests --port; Ctrl+C stops the server cleanly", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const taken = dashboard(["--port", String(port)]);
      expect(await taken.done).toBe(2);
      expect(taken.err()).toContain(`port ${port}`);
      expect(taken.err()).toContain("--port");
    } finally {
      blocker.close();
    }

    const d = dashboard(["--port", "0", "--json"]);
    const doc = await waitFor("the dashboard to listen", () => (d.out().trim() ? (JSON.parse(d.out()) as { url: string }) : null), 20_000);
    expect((await fetch(`${doc.url}/health`)).status).toBe(200);
    d.child.kill("SIGINT");
    expect(await d.done).toBe(0);
    await expect(fetch(`${doc.url}/health`)).rejects.toThrow();
  }, 40_000);
});
