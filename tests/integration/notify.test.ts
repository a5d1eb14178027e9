import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import type { NotificationConfig, NotificationEvent } from "../../src/config/schema.ts";
import { createNotifier, type NotifierOptions, type NotifyContext } from "../../src/notify/index.ts";
import { messageFor, titleFor } from "../../src/notify/format.ts";
import { tempDir } from "../helpers.ts";

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  at: number;
}

/** A local HTTP server; each path answers from a queue of [status, delayMs] (last one repeats). */
let server: Server;
let base: string;
let received: Received[] = [];
let plans: Record<string, Array<[number, number]>> = {};

beforeAll(async () => {
  server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (raw += d));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.push({ path, headers: req.headers, body: raw ? JSON.parse(raw) : null, at: Date.now() });
      const plan = plans[path] ?? [[200, 0]];
      const [status, delay] = (plan.length > 1 ? plan.shift() : plan[0]) ?? [200, 0];
      setTimeout(() => {
        if (!res.destroyed) res.writeHead(status, { "content-type": "text/plain" }).end(status < 300 ? "ok" : `status ${status}`);
      }, delay);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => {
  server.closeAllConnections();
  server.close();
});
beforeEach(() => {
  received = [];
  plans = {};
});

const ctx = (over: Partial<NotifyContext> = {}): NotifyContext => ({
  job_id: "demo-1a2b",
  job_name: "demo",
  timestamp: "2026-05-01T12:00:00.000Z",
  ...over,
});

function setup(configs: NotificationConfig[], opts: Partial<NotifierOptions> = {}) {
  const logs: string[] = [];
  const notifier = createNotifier(configs, { env: {}, log: (m) => logs.push(m), ...opts });
  return { notifier, logs };
}

const slack = (config: Partial<Extract<NotificationConfig, { type: "slack" }>["config"]>, on_events: NotificationEvent[] = ["job_complete", "job_failed"]): NotificationConfig => ({
  type: "slack",
  on_events,
  config: { webhook_url_env: "SLACK_WEBHOOK_URL", username: "Mozart", icon_emoji: ":musical_score:", timeout: 10, ...config },
});

const webhook = (config: Partial<Extract<NotificationConfig, { type: "webhook" }>["config"]>, on_events: NotificationEvent[] = ["job_complete", "job_failed"]): NotificationConfig => ({
  type: "webhook",
  on_events,
  config: { headers: {}, timeout: 5, max_retries: 2, retry_delay: 0.05, include_metadata: true, ...config },
});

describe("titles and messages", () => {
  test("name the job and join the facts with ' | '", () => {
    expect(titleFor("job_complete", ctx())).toBe("Mozart: job 'demo' complete");
    expect(titleFor("batch_failed", ctx({ batch_num: 4 }))).toBe("Mozart: job 'demo' batch 4 failed");
    expect(titleFor("rate_limit_hold", ctx())).toContain("rate limit");
    const msg = messageFor("job_complete", ctx({ batch_num: 5, total_batches: 10, completed: 9, failed: 1, duration_seconds: 180, cost_usd: 1.5 }));
    expect(msg).toBe("Batch 5/10 | 9 completed, 1 failed | 3.0min | Cost $1.50");
    expect(messageFor("job_start", ctx())).toBe("job_start");
    expect(messageFor("job_failed", ctx({ duration_seconds: 45.5 }))).toBe("45.5s");
    expect(messageFor("job_failed", ctx({ duration_seconds: 7200 }))).toBe("2.0h");
  });

  test("cut a long error to 100 characters", () => {
    const msg = messageFor("job_failed", ctx({ error: `${"e".repeat(300)}\nsecond line` }));
    const error = msg.slice(msg.indexOf("Error: ") + 7);
    expect(error.length).toBe(100);
    expect(error.endsWith("...")).toBe(true);
  });
});

describe("slack", () => {
  test("posts an incoming-webhook body with one coloured attachment", async () => {
    const { notifier, logs } = setup([slack({ webhook_url: `${base}/slack`, channel: "#ops" })]);
    notifier.notify("job_complete", ctx({ total_batches: 10, completed: 10, failed: 0, duration_seconds: 90 }));
    notifier.notify("job_failed", ctx({ batch_num: 3, total_batches: 10, error: "x".repeat(500) }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    expect(received).toHaveLength(2);
    const bodies = received.map((r) => r.body as { attachments: Array<Record<string, unknown>> } & Record<string, unknown>);
    const done = bodies.find((b) => String(b.attachments[0]?.title).includes("complete"));
    const failed = bodies.find((b) => String(b.attachments[0]?.title).includes("failed"));
    expect(done).toMatchObject({ username: "Mozart", icon_emoji: ":musical_score:", channel: "#ops" });
    expect(done?.attachments).toHaveLength(1);
    expect(done?.attachments[0]).toMatchObject({
      color: "#36a64f",
      title: ":white_check_mark: Mozart: job 'demo' complete",
      fallback: "Mozart: job 'demo' complete: 10 completed, 0 failed | 1.5min",
      footer: "Job: demo (demo-1a2b)",
      ts: Date.parse("2026-05-01T12:00:00.000Z") / 1000,
      fields: [
        { title: "Results", value: "10 completed, 0 failed", short: true },
        { title: "Duration", value: "1.5min", short: true },
      ],
    });
    expect(failed?.attachments[0]?.color).toBe("#d00000");
    const fields = failed?.attachments[0]?.fields as Array<{ title: string; value: string }>;
    expect(fields.find((f) => f.title === "Progress")?.value).toBe("Batch 3/10");
    const err = fields.find((f) => f.title === "Error")?.value ?? "";
    expect(err.startsWith("```")).toBe(true);
    expect(err.length).toBeLessThanOrEqual(206);
    expect(received[0]?.headers["content-type"]).toBe("application/json");
  });

  test("reads the URL from the environment variable named in the config", async () => {
    const { notifier } = setup([slack({ webhook_url_env: "MY_SLACK" })], { env: { MY_SLACK: `${base}/from-env` } });
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(received.map((r) => r.path)).toEqual(["/from-env"]);
    expect((received[0]?.body as Record<string, unknown>).channel).toBeUndefined();
  });

  test("without a URL nothing is sent and the problem is logged once", async () => {
    const { notifier, logs } = setup([slack({})]);
    expect(() => {
      notifier.notify("job_complete", ctx());
      notifier.notify("job_failed", ctx());
    }).not.toThrow();
    await notifier.flush(5000);
    expect(received).toEqual([]);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("SLACK_WEBHOOK_URL");
  });

  test("an HTTP error is logged, not thrown, and never leaks the webhook URL", async () => {
    plans["/slack-down"] = [[503, 0]];
    const { notifier, logs } = setup([slack({ webhook_url: `${base}/slack-down` })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("HTTP 503");
    expect(logs[0]).not.toContain("/slack-down");
  });
});

describe("webhook", () => {
  test("retries a 500 and succeeds, with the documented body", async () => {
    plans["/hook"] = [
      [500, 0],
      [502, 0],
      [200, 0],
    ];
    const { notifier, logs } = setup([webhook({ url: `${base}/hook`, max_retries: 2 })]);
    notifier.notify("job_complete", ctx({ completed: 3, failed: 0 }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    expect(received).toHaveLength(3);
    expect(received[2]?.body).toEqual({
      event_type: "job_complete",
      context: { event: "job_complete", job_id: "demo-1a2b", job_name: "demo", timestamp: "2026-05-01T12:00:00.000Z", completed: 3, failed: 0 },
      metadata: { source: "mozart", version: pkg.version },
    });
    // retry_delay (50 ms) is waited between tries.
    expect((received[1]?.at ?? 0) - (received[0]?.at ?? 0)).toBeGreaterThanOrEqual(40);
  });

  test("gives up after max_retries retries and logs it", async () => {
    plans["/down"] = [[500, 0]];
    const { notifier, logs } = setup([webhook({ url: `${base}/down`, max_retries: 1, retry_delay: 0 })]);
    notifier.notify("job_failed", ctx());
    await notifier.flush(5000);
    expect(received).toHaveLength(2);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("failed after 2 tries");
  });

  test("does not retry a 400", async () => {
    plans["/reject"] = [[400, 0]];
    const { notifier, logs } = setup([webhook({ url: `${base}/reject`, max_retries: 3, retry_delay: 0 })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(received).toHaveLength(1);
    expect(logs[0]).toContain("HTTP 400");
  });

  test("retries a request that times out", async () => {
    plans["/slow-hook"] = [
      [200, 2000],
      [200, 0],
    ];
    const { notifier, logs } = setup([webhook({ url: `${base}/slow-hook`, timeout: 0.2, max_retries: 1, retry_delay: 0 })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(received).toHaveLength(2);
    expect(logs).toEqual([]);
  });

  test("expands ${VAR} in headers from the environment, and reads the URL from url_env", async () => {
    const { notifier, logs } = setup(
      [webhook({ url_env: "HOOK_URL", headers: { Authorization: "Bearer ${API_TOKEN}", "X-Static": "plain", "X-Missing": "a${NOPE_UNSET}b" } })],
      { env: { HOOK_URL: `${base}/auth`, API_TOKEN: "s3cret" } },
    );
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(received).toHaveLength(1);
    expect(received[0]?.path).toBe("/auth");
    expect(received[0]?.headers.authorization).toBe("Bearer s3cret");
    expect(received[0]?.headers["x-static"]).toBe("plain");
    expect(received[0]?.headers["x-missing"]).toBe("ab");
    expect(logs.some((l) => l.includes("NOPE_UNSET"))).toBe(true);
  });

  test("include_metadata: false leaves metadata out", async () => {
    const { notifier } = setup([webhook({ url: `${base}/plain`, include_metadata: false })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(received[0]?.body).not.toHaveProperty("metadata");
  });
});

describe("routing and delivery", () => {
  test("only subscribed events are sent, per channel", async () => {
    const { notifier } = setup([
      webhook({ url: `${base}/batches` }, ["batch_failed", "rate_limit_hold"]),
      webhook({ url: `${base}/jobs` }, ["job_complete", "job_paused"]),
    ]);
    const events: NotificationEvent[] = ["job_start", "batch_start", "batch_failed", "rate_limit_hold", "job_paused", "job_complete", "job_failed"];
    for (const e of events) notifier.notify(e, ctx());
    await notifier.flush(5000);
    const sent = (path: string) =>
      received
        .filter((r) => r.path === path)
        .map((r) => (r.body as { event_type: string }).event_type)
        .sort();
    expect(sent("/batches")).toEqual(["batch_failed", "rate_limit_hold"]);
    expect(sent("/jobs")).toEqual(["job_complete", "job_paused"]);
  });

  test("a slow server never blocks notify(); flush awaits the send", async () => {
    plans["/slow"] = [[200, 800]];
    const { notifier, logs } = setup([webhook({ url: `${base}/slow` })]);
    const started = performance.now();
    notifier.notify("job_complete", ctx());
    expect(performance.now() - started).toBeLessThan(50);
    expect(received).toHaveLength(0);
    await notifier.flush(5000);
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(700);
    expect(received).toHaveLength(1);
    expect(logs).toEqual([]);
  });

  test("flush gives up after its timeout and cancels what is still pending", async () => {
    plans["/stuck"] = [[200, 3000]];
    const { notifier, logs } = setup([webhook({ url: `${base}/stuck`, timeout: 30, max_retries: 5 })]);
    notifier.notify("job_failed", ctx());
    const started = performance.now();
    await notifier.flush(300);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(logs[0]).toContain("still unsent");
    await Bun.sleep(100);
    expect(received).toHaveLength(1); // cancelled, not retried
  });

  test("flush with nothing pending returns at once", async () => {
    const { notifier } = setup([]);
    const started = performance.now();
    await notifier.flush(5000);
    expect(performance.now() - started).toBeLessThan(50);
  });
});

describe("desktop", () => {
  let bin: { path: string; cleanup: () => void };
  beforeAll(() => {
    bin = tempDir("mozart-fakebin-");
  });
  afterAll(() => bin.cleanup());

  /** A fake executable that records its argv, one argument per line, then exits with `code`. */
  function fake(name: string, code = 0): string {
    const record = join(bin.path, `${name}.argv`);
    const script = join(bin.path, name);
    writeFileSync(script, `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done >> '${record}'\necho '---' >> '${record}'\necho 'no bus' >&2\nexit ${code}\n`);
    chmodSync(script, 0o755);
    writeFileSync(record, "");
    return record;
  }
  const env = () => ({ ...process.env, PATH: `${bin.path}:${process.env.PATH ?? ""}` });
  const desktop = (on_events: NotificationEvent[] = ["job_complete"]): NotificationConfig => ({
    type: "desktop",
    on_events,
    config: { app_name: "Mozart", timeout: 10 },
  });

  test("Linux: runs notify-send with app name, expire time and the text as separate arguments", async () => {
    const record = fake("notify-send");
    const { notifier, logs } = setup([desktop()], { env: env(), platform: "linux" });
    notifier.notify("job_complete", ctx({ completed: 2, failed: 0 }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    expect(readFileSync(record, "utf8").split("\n")).toEqual([
      "--app-name=Mozart",
      "--expire-time=10000",
      "--",
      "Mozart: job 'demo' complete",
      "2 completed, 0 failed",
      "---",
      "",
    ]);
  });

  test("macOS: runs osascript with the text passed as argv, not inside the script", async () => {
    const record = fake("osascript");
    const { notifier } = setup([desktop()], { env: env(), platform: "darwin" });
    notifier.notify("job_complete", ctx({ job_name: `it's "quoted"` }));
    await notifier.flush(5000);
    const args = readFileSync(record, "utf8").split("\n");
    expect(args[0]).toBe("-e");
    expect(args.filter((a) => a === "-e")).toHaveLength(3);
    expect(args).toContain(`Mozart: job 'it's "quoted"' complete`);
    expect(args.filter((a) => a.includes("quoted"))).toHaveLength(1);
  });

  test("other platforms: nothing runs", async () => {
    const record = fake("notify-send");
    const { notifier, logs } = setup([desktop()], { env: env(), platform: "win32" });
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(readFileSync(record, "utf8")).toBe("");
    expect(logs).toEqual([]);
  });

  test("failures are ignored and logged once", async () => {
    const record = fake("notify-send", 1);
    const { notifier, logs } = setup([desktop(["job_complete", "job_failed"])], { env: env(), platform: "linux" });
    notifier.notify("job_complete", ctx());
    notifier.notify("job_failed", ctx());
    await notifier.flush(5000);
    expect(readFileSync(record, "utf8").match(/---/g)).toHaveLength(2);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("no bus");
  });

  test("a missing notify-send is logged once, and a throwing runner never reaches the caller", async () => {
    const missing = setup([desktop()], { env: { PATH: join(bin.path, "empty") }, platform: "linux" });
    missing.notifier.notify("job_complete", ctx());
    await missing.notifier.flush(5000);
    expect(missing.logs).toHaveLength(1);

    const throwing = setup([desktop()], {
      env: {},
      platform: "linux",
      runCommand: () => {
        throw new Error("boom");
      },
    });
    expect(() => throwing.notifier.notify("job_complete", ctx())).not.toThrow();
    await throwing.notifier.flush(5000);
    expect(throwing.logs[0]).toContain("boom");
  });
});
