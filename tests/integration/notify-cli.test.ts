/** `mozart notify --test`: a sample through every configured channel, over a real receiver. */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { createHmac } from "node:crypto";
import { WebhookPayloadSchema } from "../../src/notify/payload.ts";
import { sandbox, type Sandbox } from "./engine-helpers.ts";
import { startReceiver, type Receiver } from "./receiver.ts";

let rx: Receiver;
beforeAll(async () => {
  rx = await startReceiver();
});
afterAll(() => rx.close());

let box: Sandbox | undefined;
afterEach(() => {
  box?.cleanup();
  box = undefined;
  rx.reset();
});

const hook = (path: string, on_events: string[] = ["job_complete", "job_failed"], config: Record<string, unknown> = {}) => ({
  type: "webhook",
  on_events,
  config: { url: `${rx.url}${path}`, retry_delay: 0.05, ...config },
});

/** Runs `mozart notify …` without blocking this process, whose receiver must keep answering. */
async function notify(notifications: unknown[] | undefined, args: string[], env: Record<string, string> = {}) {
  box = sandbox("sqlite");
  const job = box.job(notifications === undefined ? {} : { notifications });
  return box.start(["notify", ...args.map((a) => (a === "JOB" ? job : a))], env).done;
}

interface Report {
  ok: boolean;
  job_name: string;
  event: string;
  message: string;
  channels: Array<{ index: number; type: string; target: string; subscribed: boolean; ok: boolean; latency_ms: number; status?: number; tries?: number; error?: string; problems: string[] }>;
}

describe("mozart notify --test", () => {
  test("sends a sample job_complete through every channel and reports each one's result and latency", async () => {
    const r = await notify([hook("/a"), { type: "slack", on_events: ["job_failed"], config: { webhook_url: `${rx.url}/slack` } }], ["--test", "JOB"]);
    expect(r.stderr).not.toContain("error");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`✓ webhook \\(notifications\\[0\\], ${rx.url.replace(/[.]/g, "\\.")}\\): sent, HTTP 200 in \\d+ ms`));
    expect(r.stdout).toMatch(/✓ slack \(notifications\[1\], Slack\): sent, HTTP 200 in \d+ ms/);
    // Slack would not get job_complete in a real run: sent anyway, and said so.
    expect(r.stdout).toContain("job_complete is not in its on_events: a real run would not send it this event");
    expect(r.stdout).toContain("2 of 2 channels delivered the sample job_complete");
    expect(r.stdout).not.toContain(rx.url + "/a");

    const body = WebhookPayloadSchema.parse(rx.on("/a")[0]?.body);
    expect(body).toMatchObject({ event: "job_complete", test: true, job: { id: "test-job" }, progress: { completed: 3, failed: 0, total: 3 } });
    expect(body.title).toBe("[test] Mozart: test-job completed");
    const slack = rx.on("/slack")[0]?.body as { text: string; blocks: Array<{ type: string; elements?: Array<{ text: string }> }> };
    expect(slack.text).toStartWith("[test] Mozart: test-job completed: Completed in 1h05m — 3/3 batches done, $1.23");
    expect(slack.blocks.at(-1)?.elements?.[0]?.text).toContain("test notification");
  });

  test("--event picks the sample; a failing channel is reported with its status and the exit code is 1", async () => {
    rx.plan("/reject", [[400, 0]]);
    rx.plan("/flaky", [
      [503, 0],
      [200, 0],
    ]);
    const r = await notify([hook("/reject"), hook("/flaky", ["rate_limit_hold"])], ["--test", "JOB", "--event", "rate_limit_hold"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ webhook \(notifications\[0\], [^)]+\): failed in \d+ ms: HTTP 400: status 400/);
    expect(r.stdout).toMatch(/✓ webhook \(notifications\[1\], [^)]+\): sent, HTTP 200 in \d+ ms after 2 tries/);
    expect(r.stdout).toContain("1 of 2 channels delivered the sample rate_limit_hold");
    const body = WebhookPayloadSchema.parse(rx.on("/flaky")[0]?.body);
    expect(body.event).toBe("rate_limit_hold");
    expect(body.hold?.reason).toContain("sample");
    expect(body.message).toContain("(in 2h13m)");
  });

  test("--json: exactly one document with every channel's result", async () => {
    rx.plan("/down", [[500, 0]]);
    const r = await notify([hook("/up"), hook("/down", ["job_failed"], { max_retries: 1, retry_delay: 0 }), { type: "slack", config: { webhook_url_env: "NO_SUCH_SLACK_URL" } }], ["--test", "JOB", "--event", "job_failed", "--json"]);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as Report;
    expect(doc).toMatchObject({ ok: false, job_name: "test-job", event: "job_failed" });
    expect(doc.message).toContain("— why: mozart status test-job; after fixing it: mozart resume test-job");
    expect(doc.channels.map((c) => [c.index, c.type, c.ok, c.subscribed])).toEqual([
      [0, "webhook", true, true],
      [1, "webhook", false, true],
      [2, "slack", false, true],
    ]);
    expect(doc.channels[0]).toMatchObject({ target: rx.url, status: 200, tries: 1, problems: [] });
    expect(doc.channels[1]).toMatchObject({ status: 500, tries: 2, error: "HTTP 500: status 500" });
    expect(doc.channels[2]?.error).toBe("not sent: no webhook URL (set notifications[].config.webhook_url or $NO_SUCH_SLACK_URL)");
    for (const c of doc.channels) expect(typeof c.latency_ms).toBe("number");
  });

  test("a signing secret: the sample is signed; a secret_env that is not set is a warning, not a crash", async () => {
    const secret = "test-secret";
    const signed = await notify([hook("/signed", ["job_complete"], { secret_env: "MOZART_TEST_SECRET" })], ["--test", "JOB"], { MOZART_TEST_SECRET: secret });
    expect(signed.code).toBe(0);
    const req = rx.on("/signed")[0]!;
    const ts = String(req.headers["x-mozart-timestamp"]);
    expect(req.headers["x-mozart-signature"]).toBe(`sha256=${createHmac("sha256", secret).update(`${ts}.${req.raw}`).digest("hex")}`);
    box?.cleanup();
    rx.reset();

    const unsigned = await notify([hook("/unsigned", ["job_complete"], { secret_env: "MOZART_TEST_SECRET_UNSET" })], ["--test", "JOB"]);
    expect(unsigned.code).toBe(0);
    expect(unsigned.stderr).toContain("warning: webhook (notifications[0]): webhook requests go out unsigned: $MOZART_TEST_SECRET_UNSET (secret_env) is not set");
    expect(rx.on("/unsigned")[0]?.headers["x-mozart-signature"]).toBeUndefined();
  });

  test("a job without notifications says so, in words and in JSON", async () => {
    const r = await notify(undefined, ["--test", "JOB"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("job test-job has no notifications configured: nothing to send");
    expect(r.stderr).toContain("hint: add a notifications: list");
    box?.cleanup();
    const j = await notify(undefined, ["--test", "JOB", "--json"]);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toEqual({ error: { message: "job test-job has no notifications configured: nothing to send", hint: expect.stringContaining("notifications:"), exit_code: 1 } });
  });

  test("usage errors exit 2 with one JSON document: no --test, an unknown event, a broken job file", async () => {
    const noTest = await notify([hook("/x")], ["JOB", "--json"]);
    expect(noTest.code).toBe(2);
    expect(JSON.parse(noTest.stdout).error.hint).toStartWith("mozart notify --test ");
    box?.cleanup();
    const badEvent = await notify([hook("/x")], ["--test", "JOB", "--event", "job_finished", "--json"]);
    expect(badEvent.code).toBe(2);
    expect(JSON.parse(badEvent.stdout).error).toMatchObject({ message: 'unknown event "job_finished"', hint: "did you mean --event job_failed?", exit_code: 2 });
    box?.cleanup();
    const broken = await notify([{ type: "webhook", config: { url: "x", max_retry: 1 } }], ["--test", "JOB", "--json"]);
    expect(broken.code).toBe(2);
    expect(JSON.stringify(JSON.parse(broken.stdout).error)).toContain("max_retry");
    expect(rx.received).toEqual([]);
  });

  test("mozart notify --help names --test and --event", async () => {
    box = sandbox("sqlite");
    const r = await box.start(["notify", "--help"]).done;
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("mozart notify");
    expect(r.stdout).toContain("--test");
    expect(r.stdout).toContain("--event");
  });
});

describe("mozart validate", () => {
  test("warns about what the notifications lack in this environment; the job file is still valid", async () => {
    box = sandbox("sqlite");
    const job = box.job({ notifications: [hook("/v", ["job_complete"], { secret_env: "MOZART_TEST_SECRET_UNSET" }), { type: "slack", config: { webhook_url_env: "MOZART_TEST_SLACK_UNSET" } }] });
    const human = await box.start(["validate", job]).done;
    expect(human.code).toBe(0);
    expect(human.stderr).toContain("warning: notifications[0] (webhook): webhook requests go out unsigned: $MOZART_TEST_SECRET_UNSET (secret_env) is not set");
    expect(human.stderr).toContain("warning: notifications[1] (slack): slack notifications are off: no webhook URL");
    const json = await box.start(["validate", job, "--json"]).done;
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ valid: true, notifications: 2, warnings: [expect.stringContaining("MOZART_TEST_SECRET_UNSET"), expect.stringContaining("MOZART_TEST_SLACK_UNSET")] });
    const set = await box.start(["validate", job, "--json"], { MOZART_TEST_SECRET_UNSET: "x", MOZART_TEST_SLACK_UNSET: `${rx.url}/s` }).done;
    expect(JSON.parse(set.stdout).warnings).toEqual([]);
    expect(rx.received).toEqual([]);
  });
});
