/**
 * Rate-limit holds are bounded and never spin: a reset time centuries away (a usage-limit epoch
 * of 9999999999, a 429 with `retry-after: 999999999`) falls back to rate_limit.wait_minutes and
 * says so with the hold's date; a reset time already past holds at least a few seconds, longer
 * each time, instead of calling the backend in a tight loop; a saved hold is announced at once
 * by the run that resumes into it.
 */
import { afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { startFakeAnthropic, ok, rateLimited, type FakeAnthropic } from "../../fixtures/fake-anthropic.ts";
import { sandbox, type Sandbox } from "../engine-helpers.ts";
import { KINDS, lineCount, statusOf, waitFor } from "./hostile-helpers.ts";

setDefaultTimeout(60_000);

const HOLD_LINE = /holding all work until (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC[+-]?[\d:]*)/;

interface HoldEvent {
  type: string;
  at: string;
  until: number;
  reason: string;
}

function holdEvents(box: Sandbox, job: string): HoldEvent[] {
  const r = box.run(["logs", job, "--json"]);
  expect(r.code).toBe(0);
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as HoldEvent)
    .filter((e) => e.type === "rate_limit_hold");
}

for (const kind of KINDS) {
  describe(`holds are bounded (${kind})`, () => {
    let box: Sandbox;
    let api: FakeAnthropic | undefined;
    afterEach(async () => {
      box?.cleanup();
      await api?.close();
      api = undefined;
    });

    const claudeJob = (extra: Record<string, unknown> = {}) =>
      box.job({ name: "held", batch: { size: 1, total_items: 1 }, backend: { type: "claude_cli", timeout_seconds: 30 }, ...extra });

    test("Claude AI usage limit reached|9999999999 holds rate_limit.wait_minutes, not until 2286, and shows the date", () => {
      box = sandbox(kind);
      const file = claudeJob({ rate_limit: { wait_minutes: 0.04 } });
      // A few seconds short of 9999999999, so the process's start-up cannot push it to 11 digits.
      const reset = 9_999_999_999 - Math.floor(Date.now() / 1000) - 5;
      const started = Date.now();
      const r = box.run(["run", file], { FAKE_CLAUDE_SCENARIO: "usage-limit-epoch,ok", FAKE_CLAUDE_RESET_SECONDS: String(reset), TZ: "UTC" });
      expect(r.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(r.stderr).toMatch(/usage limit reached\|99999999\d\d/);
      expect(r.stderr).toContain("holding rate_limit.wait_minutes instead");
      const shown = HOLD_LINE.exec(r.stderr)?.[1];
      expect(shown).toBeDefined();
      expect(shown!.startsWith(new Date().toISOString().slice(0, 4))).toBe(true); // this year, not 2286
      const [hold] = holdEvents(box, "held");
      expect(hold!.until - Date.parse(hold!.at)).toBeLessThan(10_000);
      expect(statusOf(box, "held").doc!.status).toBe("completed");
    });

    test("a 429 with retry-after: 999999999 holds rate_limit.wait_minutes, and shows the date", async () => {
      box = sandbox(kind);
      api = await startFakeAnthropic([rateLimited(999_999_999), ok("done")]);
      const file = box.job({
        name: "api-held",
        batch: { size: 1, total_items: 1 },
        backend: { type: "anthropic_api", timeout_seconds: 30 },
        rate_limit: { wait_minutes: 0.04 },
      });
      const started = Date.now();
      const r = await box.start(["run", file], { ANTHROPIC_BASE_URL: api.url, ANTHROPIC_API_KEY: "sk-test", TZ: "UTC" }).done;
      expect(r.code).toBe(0);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(r.stderr).toMatch(HOLD_LINE);
      expect(r.stderr).toContain("holding rate_limit.wait_minutes instead");
      const [hold] = holdEvents(box, "api-held");
      expect(hold!.until - Date.parse(hold!.at)).toBeLessThan(10_000);
      expect(api.requests).toHaveLength(2);
    });

    test("a reset time in the past: no tight loop of backend calls, and each hold is longer than the last", async () => {
      box = sandbox(kind);
      const file = claudeJob({ rate_limit: { wait_minutes: 60, max_waits: 1000 } });
      const p = box.start(["run", file], { FAKE_CLAUDE_SCENARIO: "usage-limit-epoch", FAKE_CLAUDE_RESET_SECONDS: "-3600" });
      await waitFor(() => lineCount(box.env.FAKE_CLAUDE_LOG!) >= 1, "the first call");
      await Bun.sleep(7_500);
      const calls = lineCount(box.env.FAKE_CLAUDE_LOG!);
      p.child.kill("SIGINT");
      const r = await p.done;
      expect(r.code).toBe(130);
      expect(calls).toBeGreaterThanOrEqual(2);
      expect(calls).toBeLessThanOrEqual(3);
      expect(r.stderr).toContain("its reset time has already passed");
      const holds = holdEvents(box, "held");
      expect(holds.length).toBeGreaterThanOrEqual(2);
      const lengths = holds.map((h) => h.until - Date.parse(h.at));
      expect(lengths[0]).toBeGreaterThanOrEqual(4_000);
      expect(lengths[1]).toBeGreaterThan(lengths[0]! * 1.5);
    });

    test("resuming into a saved hold says holding until <time> at once", async () => {
      box = sandbox(kind);
      const file = claudeJob();
      const p = box.start(["run", file], { FAKE_CLAUDE_SCENARIO: "limit-reset", FAKE_CLAUDE_RESET_SECONDS: "900", TZ: "UTC" });
      await waitFor(() => HOLD_LINE.test(p.output().stderr), "the hold");
      p.child.kill("SIGINT");
      expect((await p.done).code).toBe(130);
      const saved = statusOf(box, "held").doc!.hold;
      expect(saved).not.toBeNull();

      const resumed = box.start(["resume", "held"], { FAKE_CLAUDE_SCENARIO: "ok", TZ: "UTC" });
      const started = Date.now();
      await waitFor(() => /holding until \d{4}-/.test(resumed.output().stderr), "the saved hold to be announced", 10_000);
      expect(Date.now() - started).toBeLessThan(5_000);
      const line = resumed.output().stderr.split("\n").find((l) => l.includes("holding until"))!;
      expect(line).toContain("saved by the earlier run");
      const until = new Date(saved!.until);
      expect(line).toContain(until.toISOString().slice(0, 19).replace("T", " "));
      expect(lineCount(box.env.FAKE_CLAUDE_LOG!)).toBe(1); // the hold is kept: no call yet
      resumed.child.kill("SIGINT");
      expect((await resumed.done).code).toBe(130);
    });
  });
}
