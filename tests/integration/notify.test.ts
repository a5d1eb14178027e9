/**
 * The notifier and its channels against real receivers: webhooks and Slack over HTTP on
 * 127.0.0.1 (bodies checked against the published schema, signatures verified with node:crypto),
 * desktop notifications through fake notify-send / osascript / powershell.exe on PATH.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createHmac, timingSafeEqual } from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import type { NotificationConfig, NotificationEvent } from "../../src/config/schema.ts";
import { TOAST_MESSAGE_ENV, TOAST_TITLE_ENV } from "../../src/notify/desktop.ts";
import { describeEvent } from "../../src/notify/format.ts";
import { createNotifier, sendToEvery, type NotifierOptions, type NotifyContext } from "../../src/notify/index.ts";
import { WebhookPayloadSchema } from "../../src/notify/payload.ts";
import { ROOT, tempDir } from "../helpers.ts";
import { startReceiver, type Receiver } from "./receiver.ts";

let rx: Receiver;
beforeAll(async () => {
  rx = await startReceiver();
});
afterAll(() => rx.close());
beforeEach(() => rx.reset());

const ctx = (over: Partial<NotifyContext> = {}): NotifyContext => ({
  job_id: "demo",
  job_name: "demo",
  timestamp: "2026-05-01T12:00:00.000Z",
  total_batches: 10,
  completed: 4,
  failed: 0,
  cost_usd: 1.5,
  ...over,
});

function setup(configs: NotificationConfig[], opts: Partial<NotifierOptions> = {}) {
  const logs: string[] = [];
  const notifier = createNotifier(configs, { env: {}, log: (m) => logs.push(m), ...opts });
  return { notifier, logs };
}

type SlackCfg = Extract<NotificationConfig, { type: "slack" }>["config"];
type WebhookCfg = Extract<NotificationConfig, { type: "webhook" }>["config"];
const slack = (config: Partial<SlackCfg>, on_events: NotificationEvent[] = ["job_complete", "job_failed"]): NotificationConfig => ({
  type: "slack",
  on_events,
  config: { webhook_url_env: "SLACK_WEBHOOK_URL", username: "Mozart", icon_emoji: ":musical_score:", timeout: 10, ...config },
});
const webhook = (config: Partial<WebhookCfg>, on_events: NotificationEvent[] = ["job_complete", "job_failed"]): NotificationConfig => ({
  type: "webhook",
  on_events,
  config: { headers: {}, timeout: 5, max_retries: 2, retry_delay: 0.05, include_metadata: true, ...config },
});

/** The published JSON Schema, for a structural check beside zod's: no field it does not name, every required one there. */
const published = JSON.parse(readFileSync(join(ROOT, "docs", "webhook.schema.json"), "utf8")) as { properties: Record<string, unknown>; required: string[] };
function checkPayload(body: unknown) {
  const parsed = WebhookPayloadSchema.parse(body);
  for (const key of Object.keys(body as object)) expect(Object.keys(published.properties)).toContain(key);
  for (const key of published.required) expect(body as object).toHaveProperty(key);
  return parsed;
}

function verify(secret: string, raw: string, headers: Record<string, string | string[] | undefined>): boolean {
  const timestamp = String(headers["x-mozart-timestamp"] ?? "");
  const expected = Buffer.from(`sha256=${createHmac("sha256", secret).update(`${timestamp}.${raw}`).digest("hex")}`);
  const got = Buffer.from(String(headers["x-mozart-signature"] ?? ""));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

describe("webhook", () => {
  test("posts the versioned body of docs/webhook.schema.json, with event and delivery headers", async () => {
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/hook` }, ["rate_limit_hold", "job_complete"])]);
    const hold = { until: "2026-05-01T14:13:00.000Z", reason: "usage limit reached" };
    notifier.notify("rate_limit_hold", ctx({ batch: { number: 5 }, hold }));
    notifier.notify("job_complete", ctx({ completed: 10, duration_seconds: 90 }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    expect(rx.received).toHaveLength(2);
    const bodies = rx.received.map((r) => checkPayload(r.body));
    const held = bodies.find((b) => b.event === "rate_limit_hold")!;
    expect(held).toMatchObject({
      schema_version: 1,
      test: false,
      occurred_at: "2026-05-01T12:00:00.000Z",
      job: { id: "demo", name: "demo" },
      progress: { completed: 4, failed: 0, total: 10 },
      cost_usd: 1.5,
      batch: { number: 5 },
      hold,
      title: "Mozart: demo on hold",
      next_commands: ["mozart status demo --watch"],
      metadata: { source: "mozart", version: pkg.version },
    });
    expect(held.message).toBe(describeEvent("rate_limit_hold", ctx({ batch: { number: 5 }, hold })).text);
    expect(held.message).toContain("(in 2h13m)");
    const done = bodies.find((b) => b.event === "job_complete")!;
    expect(done).toMatchObject({ progress: { completed: 10, total: 10 }, duration_seconds: 90, next_commands: [] });
    for (const r of rx.received) {
      const body = r.body as { id: string; event: string };
      expect(r.headers["content-type"]).toBe("application/json");
      expect(r.headers["user-agent"]).toBe(`mozart/${pkg.version}`);
      expect(r.headers["x-mozart-event"]).toBe(body.event);
      expect(r.headers["x-mozart-delivery"]).toBe(body.id);
      // Unsigned without secret_env.
      expect(r.headers["x-mozart-signature"]).toBeUndefined();
    }
    expect(bodies[0]!.id).not.toBe(bodies[1]!.id);
  });

  test("with secret_env, every try is signed: HMAC-SHA256 of `<timestamp>.<raw body>`, verified with node:crypto", async () => {
    rx.plan("/signed", [
      [500, 0],
      [200, 0],
    ]);
    const secret = "s3cret-value";
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/signed`, secret_env: "HOOK_SECRET" })], { env: { HOOK_SECRET: secret } });
    notifier.notify("job_failed", ctx({ error: "a batch failed", failed: 1 }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    expect(rx.received).toHaveLength(2);
    for (const r of rx.received) {
      expect(String(r.headers["x-mozart-signature"])).toMatch(/^sha256=[0-9a-f]{64}$/);
      expect(Math.abs(Number(r.headers["x-mozart-timestamp"]) - Date.now() / 1000)).toBeLessThan(30);
      expect(verify(secret, r.raw, r.headers)).toBe(true);
      // Not with another secret, nor over another body.
      expect(verify("other", r.raw, r.headers)).toBe(false);
      expect(verify(secret, r.raw.replace("a batch failed", "a batch FAILED"), r.headers)).toBe(false);
    }
    // A retry is the same notification: same body, same delivery id.
    expect(rx.received[0]!.raw).toBe(rx.received[1]!.raw);
    expect(rx.received[0]!.headers["x-mozart-delivery"]).toBe(rx.received[1]!.headers["x-mozart-delivery"]);
    checkPayload(rx.received[0]!.body);
  });

  test("a secret_env that is not set: one warning when the notifier is made, requests go out unsigned", async () => {
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/unsigned`, secret_env: "NOT_SET_SECRET" })]);
    expect(logs).toEqual(["webhook requests go out unsigned: $NOT_SET_SECRET (secret_env) is not set"]);
    notifier.notify("job_complete", ctx());
    notifier.notify("job_failed", ctx());
    await notifier.flush(5000);
    expect(rx.received).toHaveLength(2);
    expect(rx.received[0]!.headers["x-mozart-signature"]).toBeUndefined();
    expect(logs).toHaveLength(1);
  });

  test("retries 5xx with a doubling wait and succeeds", async () => {
    rx.plan("/flaky", [
      [500, 0],
      [502, 0],
      [200, 0],
    ]);
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/flaky`, max_retries: 2, retry_delay: 0.1 })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    const at = rx.on("/flaky").map((r) => r.at);
    expect(at).toHaveLength(3);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(90);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(190);
  });

  test("a 429 is retried after its Retry-After", async () => {
    rx.plan("/limited", [
      [429, 0, { "retry-after": "1" }],
      [200, 0],
    ]);
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/limited`, retry_delay: 0 })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    const at = rx.on("/limited").map((r) => r.at);
    expect(at).toHaveLength(2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(900);
  });

  test("gives up after max_retries retries and says so, once", async () => {
    rx.plan("/down", [[500, 0]]);
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/down`, max_retries: 1, retry_delay: 0 })]);
    notifier.notify("job_failed", ctx());
    await notifier.flush(5000);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(rx.received).toHaveLength(4);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("webhook notification for job_failed failed after 2 tries: HTTP 500: status 500");
  });

  for (const status of [400, 401, 404, 422]) {
    test(`does not retry a ${status}`, async () => {
      rx.plan("/reject", [[status, 0]]);
      const { notifier, logs } = setup([webhook({ url: `${rx.url}/reject`, max_retries: 3, retry_delay: 0 })]);
      notifier.notify("job_complete", ctx());
      await notifier.flush(5000);
      expect(rx.received).toHaveLength(1);
      expect(logs[0]).toContain(`HTTP ${status}`);
      expect(logs[0]).not.toContain("tries");
    });
  }

  test("a try that times out is retried", async () => {
    rx.plan("/slow-hook", [
      [200, 2000],
      [200, 0],
    ]);
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/slow-hook`, timeout: 0.2, max_retries: 1, retry_delay: 0 })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(rx.received).toHaveLength(2);
    expect(logs).toEqual([]);
  });

  test("a network error is retried, and the message never shows the URL", async () => {
    const { notifier, logs } = setup([webhook({ url: "http://127.0.0.1:9/token-in-path", max_retries: 1, retry_delay: 0 })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("after 2 tries");
    expect(logs[0]).not.toContain("token-in-path");
  });

  test("expands ${VAR} in headers from the environment, and reads the URL from url_env", async () => {
    const { notifier, logs } = setup(
      [webhook({ url_env: "HOOK_URL", headers: { Authorization: "Bearer ${API_TOKEN}", "X-Static": "plain", "X-Missing": "a${NOPE_UNSET}b" } })],
      { env: { HOOK_URL: `${rx.url}/auth`, API_TOKEN: "s3cret" } },
    );
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(rx.received).toHaveLength(1);
    expect(rx.received[0]?.path).toBe("/auth");
    expect(rx.received[0]?.headers.authorization).toBe("Bearer s3cret");
    expect(rx.received[0]?.headers["x-static"]).toBe("plain");
    expect(rx.received[0]?.headers["x-missing"]).toBe("ab");
    expect(logs.some((l) => l.includes("NOPE_UNSET"))).toBe(true);
  });

  test("no URL: nothing is sent, one warning", async () => {
    const { notifier, logs } = setup([webhook({ url_env: "NO_SUCH_HOOK_URL" })]);
    notifier.notify("job_complete", ctx());
    notifier.notify("job_failed", ctx());
    await notifier.flush(5000);
    expect(rx.received).toEqual([]);
    expect(logs).toEqual(["webhook notifications are off: no URL (set $NO_SUCH_HOOK_URL)"]);
  });

  test("include_metadata: false leaves metadata out", async () => {
    const { notifier } = setup([webhook({ url: `${rx.url}/plain`, include_metadata: false })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(checkPayload(rx.received[0]?.body)).not.toHaveProperty("metadata");
  });
});

describe("slack", () => {
  interface Block {
    type: string;
    text?: { type: string; text: string; emoji?: boolean };
    elements?: Array<{ type: string; text: string }>;
  }
  type SlackBody = { text: string; blocks: Block[]; username: string; icon_emoji: string; channel?: string };

  test("posts Block Kit (header, section, next commands, context) with the same message as plain text", async () => {
    const { notifier, logs } = setup([slack({ webhook_url: `${rx.url}/slack`, channel: "#ops" }, ["job_paused", "job_failed"])]);
    const paused = ctx({ reason: "Ctrl+C", hold: { until: "2026-05-01T14:13:00.000Z", reason: "usage limit" } });
    notifier.notify("job_paused", paused);
    notifier.notify("job_failed", ctx({ failed: 1, error: "tool <rm -rf> & more\nsecond line" }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    expect(rx.received).toHaveLength(2);
    const bodies = rx.received.map((r) => r.body as SlackBody);
    const p = bodies.find((b) => b.blocks[0]?.text?.text.includes("paused"))!;
    expect(p).toMatchObject({ username: "Mozart", icon_emoji: ":musical_score:", channel: "#ops" });
    const n = describeEvent("job_paused", paused);
    expect(p.text).toBe(`${n.title}: ${n.text}`);
    expect(p.blocks.map((b) => b.type)).toEqual(["header", "section", "section", "context"]);
    expect(p.blocks[0]).toEqual({ type: "header", text: { type: "plain_text", text: ":pause_button: Mozart: demo paused", emoji: true } });
    expect(p.blocks[1]!.text).toEqual({ type: "mrkdwn", text: `*${n.headline}*\n4/10 batches done, $1.50` });
    expect(p.blocks[2]!.text?.text).toBe("Continue: `mozart resume demo`");
    expect(p.blocks[3]!.elements?.[0]?.text).toContain("Job `demo`");

    const f = bodies.find((b) => b.blocks[0]?.text?.text.includes("failed"))!;
    // Slack reads <, > and & as markup: outside text is escaped; the plain text stays plain.
    expect(f.blocks[1]!.text?.text).toContain("tool &lt;rm -rf&gt; &amp; more second line");
    expect(f.text).toContain("tool <rm -rf> & more second line");
    expect(f.blocks[2]!.text?.text).toBe("Why: `mozart status demo`\nAfter fixing it: `mozart resume demo`");
    for (const b of bodies) expect(b.blocks[0]!.text!.text.length).toBeLessThanOrEqual(150);
  });

  test("reads the URL from the environment variable named in the config", async () => {
    const { notifier } = setup([slack({ webhook_url_env: "MY_SLACK" })], { env: { MY_SLACK: `${rx.url}/from-env` } });
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(rx.received.map((r) => r.path)).toEqual(["/from-env"]);
    expect((rx.received[0]?.body as Record<string, unknown>).channel).toBeUndefined();
  });

  test("without a URL nothing is sent and the problem is said once", async () => {
    const { notifier, logs } = setup([slack({})]);
    expect(() => {
      notifier.notify("job_complete", ctx());
      notifier.notify("job_failed", ctx());
    }).not.toThrow();
    await notifier.flush(5000);
    expect(rx.received).toEqual([]);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("SLACK_WEBHOOK_URL");
  });

  test("a 503 is retried, then reported without the webhook URL", async () => {
    rx.plan("/slack-down-T0KEN", [[503, 0]]);
    const { notifier, logs } = setup([slack({ webhook_url: `${rx.url}/slack-down-T0KEN` })]);
    notifier.notify("job_complete", ctx());
    await notifier.flush(10_000);
    expect(rx.received).toHaveLength(3);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("HTTP 503");
    expect(logs[0]).not.toContain("T0KEN");
  });
});

describe("routing and delivery", () => {
  test("only subscribed events are sent, per channel", async () => {
    const { notifier } = setup([webhook({ url: `${rx.url}/batches` }, ["batch_failed", "rate_limit_hold"]), webhook({ url: `${rx.url}/jobs` }, ["job_complete", "job_paused"])]);
    const events: NotificationEvent[] = ["job_start", "batch_start", "batch_failed", "rate_limit_hold", "job_paused", "job_complete", "job_failed"];
    for (const e of events) notifier.notify(e, ctx());
    await notifier.flush(5000);
    const sent = (path: string) =>
      rx
        .on(path)
        .map((r) => (r.body as { event: string }).event)
        .sort();
    expect(sent("/batches")).toEqual(["batch_failed", "rate_limit_hold"]);
    expect(sent("/jobs")).toEqual(["job_complete", "job_paused"]);
  });

  test("a slow server never blocks notify(); flush awaits the send", async () => {
    rx.plan("/slow", [[200, 800]]);
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/slow` })]);
    const started = performance.now();
    notifier.notify("job_complete", ctx());
    expect(performance.now() - started).toBeLessThan(250); // far below the server's 800 ms
    expect(rx.received).toHaveLength(0);
    await notifier.flush(5000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(700);
    expect(rx.received).toHaveLength(1);
    expect(logs).toEqual([]);
  });

  test("flush gives up after its timeout and cancels what is still pending: a hanging receiver gets no retry", async () => {
    rx.plan("/stuck", [[0, 0]]);
    const { notifier, logs } = setup([webhook({ url: `${rx.url}/stuck`, timeout: 30, max_retries: 5 })]);
    notifier.notify("job_failed", ctx());
    const started = performance.now();
    await notifier.flush(300);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(logs[0]).toContain("still unsent");
    await Bun.sleep(200);
    expect(rx.received).toHaveLength(1);
  });

  test("flush with nothing pending returns at once", async () => {
    const { notifier } = setup([]);
    const started = performance.now();
    await notifier.flush(5000);
    expect(performance.now() - started).toBeLessThan(250); // far below the 5 s it may wait
  });

  test("sendToEvery sends to every channel whatever its on_events, with each one's result and latency", async () => {
    rx.plan("/bad", [[400, 0]]);
    const results = await sendToEvery([webhook({ url: `${rx.url}/good` }, ["job_failed"]), webhook({ url: `${rx.url}/bad` }), slack({})], "job_complete", ctx({ test: true }), { env: {} });
    expect(results.map((r) => [r.type, r.ok, r.subscribed])).toEqual([
      ["webhook", true, false],
      ["webhook", false, true],
      ["slack", false, true],
    ]);
    expect(results[0]).toMatchObject({ status: 200, tries: 1, target: rx.url });
    expect(results[1]).toMatchObject({ status: 400, tries: 1, error: "HTTP 400: status 400" });
    expect(results[2]?.error).toContain("not sent: no webhook URL");
    for (const r of results) expect(r.latency_ms).toBeGreaterThanOrEqual(0);
    expect(checkPayload(rx.on("/good")[0]?.body).test).toBe(true);
  });
});

describe("desktop", () => {
  let bin: { path: string; cleanup: () => void };
  beforeAll(() => {
    bin = tempDir("mozart-fakebin-");
  });
  afterAll(() => bin.cleanup());

  /** A fake executable that records its argv (one argument per line) and two variables, then exits with `code`. */
  function fake(name: string, code = 0): string {
    const record = join(bin.path, `${name}.argv`);
    const script = join(bin.path, name);
    writeFileSync(
      script,
      `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done >> '${record}'\nprintf 'env:%s|%s\\n' "$${TOAST_TITLE_ENV}" "$${TOAST_MESSAGE_ENV}" >> '${record}'\necho '---' >> '${record}'\necho 'no bus' >&2\nexit ${code}\n`,
    );
    chmodSync(script, 0o755);
    writeFileSync(record, "");
    return record;
  }
  const env = () => ({ ...process.env, PATH: `${bin.path}:${process.env.PATH ?? ""}` });
  const desktop = (on_events: NotificationEvent[] = ["job_complete"]): NotificationConfig => ({ type: "desktop", on_events, config: { app_name: "Mozart", timeout: 10 } });

  test("Linux: runs notify-send with app name, expire time, then title and message as separate arguments", async () => {
    const record = fake("notify-send");
    const { notifier, logs } = setup([desktop()], { env: env(), platform: "linux" });
    const c = ctx({ completed: 10, duration_seconds: 65 });
    notifier.notify("job_complete", c);
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    const n = describeEvent("job_complete", c);
    expect(n.text).toBe("Completed in 1m05s — 10/10 batches done, $1.50");
    expect(readFileSync(record, "utf8").split("\n")).toEqual(["--app-name=Mozart", "--expire-time=10000", "--", "Mozart: demo completed", n.text, "env:|", "---", ""]);
  });

  test("macOS: runs osascript with the text passed as argv, not inside the script", async () => {
    const record = fake("osascript");
    const { notifier } = setup([desktop()], { env: env(), platform: "darwin" });
    notifier.notify("job_complete", ctx({ job_name: `it's "quoted"` }));
    await notifier.flush(5000);
    const args = readFileSync(record, "utf8").split("\n");
    expect(args[0]).toBe("-e");
    expect(args.filter((a) => a === "-e")).toHaveLength(3);
    expect(args).toContain(`Mozart: it's "quoted" completed`);
    expect(args.filter((a) => a.includes("quoted"))).toHaveLength(1);
  });

  test("Windows: a fixed PowerShell toast script, base64-encoded; the text arrives in environment variables only", async () => {
    const record = fake("powershell.exe");
    const { notifier, logs } = setup([desktop()], { env: env(), platform: "win32" });
    const hostile = `x'); Remove-Item C:\\ -Recurse; ('$(whoami)`;
    notifier.notify("job_complete", ctx({ job_name: hostile }));
    await notifier.flush(5000);
    expect(logs).toEqual([]);
    const lines = readFileSync(record, "utf8").split("\n");
    expect(lines.slice(0, 5)).toEqual(["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand"]);
    const script = Buffer.from(lines[5]!, "base64").toString("utf16le");
    expect(script).toContain("ToastNotificationManager");
    expect(script).toContain(`$env:${TOAST_TITLE_ENV}`);
    // Nothing of the text is in the script or anywhere in argv.
    expect(script).not.toContain("Remove-Item");
    expect(lines.slice(0, 6).some((a) => a.includes("Remove-Item"))).toBe(false);
    expect(lines[6]).toBe(`env:Mozart: ${hostile} completed|${describeEvent("job_complete", ctx({ job_name: hostile })).text}`);
  });

  test("a failing tool (no display) is reported once, however many events", async () => {
    const record = fake("notify-send", 1);
    const { notifier, logs } = setup([desktop(["job_start", "batch_complete", "job_complete"])], { env: env(), platform: "linux" });
    notifier.notify("job_start", ctx());
    for (let i = 1; i <= 3; i++) notifier.notify("batch_complete", ctx({ batch: { number: i } }));
    notifier.notify("job_complete", ctx());
    await notifier.flush(5000);
    expect(readFileSync(record, "utf8").match(/---/g)).toHaveLength(5);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain("notify-send exited with 1: no bus");
  });

  test("a missing notify-send warns once and is not tried again in the run", async () => {
    const missing = setup([desktop(["job_start", "batch_complete", "job_complete"])], { env: { PATH: join(bin.path, "empty") }, platform: "linux" });
    missing.notifier.notify("job_start", ctx());
    await missing.notifier.flush(5000);
    for (let i = 1; i <= 3; i++) missing.notifier.notify("batch_complete", ctx({ batch: { number: i } }));
    missing.notifier.notify("job_complete", ctx());
    await missing.notifier.flush(5000);
    expect(missing.logs).toHaveLength(1);
    expect(missing.logs[0]).toContain("notify-send is not installed");
  });

  test("a throwing command runner never reaches the caller", async () => {
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
