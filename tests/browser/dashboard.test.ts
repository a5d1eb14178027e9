/**
 * The dashboard page in a real browser (Debian's chromium through playwright-core) against a
 * real `mozart dashboard` process and a real running job: the job appears in the list, its
 * progress advances live, a batch shows its attempts and live output, pause and resume from the
 * page reach the runner, the layout fits a phone, first paint is quick, and nothing on the page
 * logs an error or fails a request it did not mean to.
 */
import { afterAll, beforeAll, beforeEach, expect, test } from "bun:test";
import { existsSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { writeAccountHold } from "../../src/state/accounts.ts";
import { findJob } from "../../src/state/registry.ts";
import { FIXTURES } from "../helpers.ts";
import { commandBackend } from "../integration/engine-helpers.ts";
import { waitFor, xsandbox, type Started, type XSandbox } from "../integration/xproc-helpers.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const BATCHES = 6;

let box: XSandbox;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let dashboard: Started | undefined;
let base = "";
/** Everything that went wrong on the page; the test fails on any of it. */
const problems: string[] = [];
/** URLs the test asks for knowing they fail (a job that does not exist). */
const provoked = new Set<string>();

/** While the test itself takes the server away, event streams may fail and reconnect, and requests meet a refused connection. */
let drops = false;

const dashboardUrl = (d: Started) => /https?:\/\/127\.0\.0\.1:\d+\/?\S*/.exec(d.output().stdout + d.output().stderr)?.[0];

/** A real `mozart dashboard` process; resolves once it printed the URL it listens on. */
async function startDashboard(port: string): Promise<Started> {
  const d = box.start(["dashboard", "--port", port, "--host", "127.0.0.1"]);
  await waitFor("the dashboard to print its URL", () => dashboardUrl(d) ?? d.endedAt(), 20_000);
  if (!dashboardUrl(d)) throw new Error(`mozart dashboard exited: ${JSON.stringify(d.output())}`);
  return d;
}

/** Opens gate N: batch N (N >= 2) runs until its gate file exists, so the test sets the pace. */
const open = (gate: string) => writeFileSync(join(box.dir, `go-${gate}`), "");

beforeAll(async () => {
  box = xsandbox("sqlite");
  const gate = `n=$MOZART_BATCH_NUM; echo "batch $n working"; if [ "$n" -ge 2 ]; then i=0; while [ ! -e {job_dir}/go-$n ] && [ ! -e {job_dir}/go-all ] && [ $i -lt 400 ]; do sleep 0.1; i=$((i+1)); if [ $((i % 3)) = 0 ]; then echo "batch $n still waiting ($i)"; fi; done; fi; sleep 0.2; echo "batch $n done"`;
  box.job({ name: "test-job", description: "A job the browser watches", batch: { size: 1, total_items: BATCHES }, retry: { max_retries: 0 }, backend: commandBackend(gate, { timeout_seconds: 60 }) });
  dashboard = await startDashboard("0");
  base = new URL(dashboardUrl(dashboard)!).origin;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  // A fresh context is a fresh profile: no cache, no cookies, nothing from an earlier run.
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
});

// Each test answers for its own pages: what went wrong in an earlier one is that one's failure.
beforeEach(() => {
  problems.length = 0;
});

afterAll(async () => {
  await context?.close().catch(() => {});
  await browser?.close().catch(() => {});
  await box?.cleanup();
});

function watch(page: Page): void {
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // Chromium logs every failed response as a console error; the ones the test provokes are expected.
    if (provoked.has(m.location().url)) return;
    if (drops && (/\/events\b/.test(m.location().url) || /ERR_CONNECTION_REFUSED/.test(m.text()))) return;
    problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // An event stream the page closes (leaving a view) or the browser closes is aborted, not failed.
    if ((drops || r.failure()?.errorText === "net::ERR_ABORTED") && /\/events\b/.test(r.url())) return;
    // While the test has taken the server away, any request the page makes meets a refused connection.
    if (drops && r.failure()?.errorText === "net::ERR_CONNECTION_REFUSED") return;
    problems.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400 && !provoked.has(r.url())) problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
}

const text = (page: Page, sel: string) => page.locator(sel).first().innerText();
async function until(page: Page, what: string, fn: () => Promise<boolean>, timeout = 15_000): Promise<void> {
  await waitFor(what, async () => (await fn().catch(() => false)) || undefined, timeout, 100);
}
const jobStatus = (page: Page) => text(page, ".job-title .badge");
const doneCount = async (page: Page) => Number(await text(page, ".done-count"));

test(
  "a running job, live in the browser: list, progress, a batch, pause, resume to completion",
  async () => {
    const page = await context!.newPage();
    watch(page);
    const runner = box.start(["run", join(box.dir, "job.yaml")]);
    await waitFor("the job to start", () => box.lines("calls.log").length > 0, 20_000);

    // The list: the job is there with its live status.
    await page.goto(`${base}/`);
    const row = page.locator('tr[data-job="test-job"]');
    await row.waitFor({ timeout: 10_000 });
    expect(await row.innerText()).toContain("running");
    // Strings run in the page (the test's own types know no DOM).
    const fcp = Number(await page.evaluate(`performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1`));
    console.log(`first contentful paint: ${fcp.toFixed(0)} ms`);
    expect(fcp).toBeGreaterThan(0);
    expect(fcp).toBeLessThan(3000);

    // A job that does not exist says so in the page and in the message area.
    provoked.add(`${base}/api/jobs/no-such-job/status`);
    await page.goto(`${base}/#/jobs/no-such-job`);
    await page.locator("main .empty").waitFor({ timeout: 10_000 });
    expect(await text(page, "main .empty")).toContain("no such job");
    await page.locator("#messages .msg.error").waitFor({ timeout: 5000 });

    // Into the job from the list, by its link.
    await page.goto(`${base}/#/`);
    await page.locator('tr[data-job="test-job"] a.job-link').click();
    await page.locator(".done-count").waitFor({ timeout: 10_000 });
    await until(page, "batch 1 to complete", async () => (await doneCount(page)) === 1);
    expect(await jobStatus(page)).toBe("running");
    expect(await page.locator(".grid .cell").count()).toBe(BATCHES);
    await page.locator('.cell.st-in_progress[data-batch="2"]').waitFor({ timeout: 10_000 });

    // The count advances without a reload.
    const marker = await page.evaluate("window.__same = Math.random()");
    open("2");
    await until(page, "the completed count to reach 2 live", async () => (await doneCount(page)) === 2);
    expect(await page.evaluate("window.__same")).toBe(marker);
    expect(await text(page, ".progress .eta dd")).toMatch(/about|few seconds|estimating/);

    // A completed batch: its attempt, command, exit code, validations; the prompt folds away.
    await page.locator('.grid a.cell[data-batch="2"]').click();
    await page.waitForURL(/#\/jobs\/test-job\/batches\/2$/);
    const panel = page.locator("#batch-panel");
    await panel.locator(".attempt").first().waitFor({ timeout: 10_000 });
    const panelText = await panel.innerText();
    expect(panelText).toContain("Attempt 1");
    expect(panelText).toContain("exit 0");
    expect(panelText).toContain("success");
    await panel.locator("summary", { hasText: "Prompt" }).click();
    expect(await panel.innerText()).toContain("Batch 2 items 2-2");

    // The running batch: its output arrives while it runs.
    await page.locator('.grid a.cell[data-batch="3"]').click();
    await page.locator("#batch-panel pre.live").waitFor({ timeout: 10_000 });
    await until(page, "live output of batch 3", async () => /still waiting/.test(await text(page, "#batch-panel pre.live")));
    const before = (await text(page, "#batch-panel pre.live")).length;
    await until(page, "more live output of batch 3", async () => (await text(page, "#batch-panel pre.live")).length > before);

    // The screenshot of the job view, for people to look at.
    const shot = join(box.dir, "job-view.png");
    await page.screenshot({ path: shot, fullPage: true });
    expect(existsSync(shot) && statSync(shot).size > 0).toBe(true);

    // Pause: the runner finishes the running attempt and stops; the page says paused.
    const clicked = Date.now();
    await page.getByRole("button", { name: "Pause" }).click();
    await page.locator("#messages .msg.info").waitFor({ timeout: 5000 });
    expect(await text(page, "#messages .msg.info")).toContain("Pause requested");
    // The runner's answer comes back through the event stream.
    await until(page, "the page to show the runner pausing", async () => /^Pausing/.test(await text(page, ".note")), 5000);
    const seen = Date.now() - clicked;
    console.log(`pause request shown by the stream ${seen} ms after the click`);
    expect(seen).toBeLessThan(3000);
    expect((await box.events("test-job")).some((e) => e.type === "control")).toBe(true);
    open("3");
    const paused = await runner.done;
    expect(paused.code).toBe(130);
    const t0 = Date.now();
    await until(page, "the page to show the job paused", async () => (await jobStatus(page)) === "paused");
    console.log(`paused shown ${Date.now() - t0} ms after the runner exited`);
    expect(await page.getByRole("button", { name: "Pause" }).isDisabled()).toBe(true);
    expect(await doneCount(page)).toBe(3);
    expect(await text(page, ".note")).toContain("Paused by");

    // Resume: a detached `mozart resume` completes the job; the page follows it to the end.
    open("all");
    await page.getByRole("button", { name: "Resume" }).click();
    await until(page, "the page to show the job completed", async () => (await jobStatus(page)) === "completed" && (await doneCount(page)) === BATCHES, 30_000);
    expect(await page.locator(".grid .cell.st-completed").count()).toBe(BATCHES);
    expect(await page.getByRole("button", { name: "Resume" }).isDisabled()).toBe(true);
    expect(await page.locator("#conn").isHidden()).toBe(true);
    await until(page, "a duration bar per batch", async () => (await page.locator(".chart svg rect").count()) === BATCHES, 5000);

    // A phone: nothing wider than the screen, on the job view and on the list.
    await page.setViewportSize({ width: 375, height: 800 });
    for (const hash of ["#/jobs/test-job/batches/3", "#/"]) {
      await page.goto(`${base}/${hash}`);
      await page.locator(hash === "#/" ? 'tr[data-job="test-job"]' : "#batch-panel .attempt").first().waitFor({ timeout: 10_000 });
      const fits = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth");
      expect(fits).toBe(true);
    }
    await page.close();
    expect(problems).toEqual([]);
  },
  60_000,
);

test(
  "a rate-limit hold counts down with its reason; cancel asks first, then stops the job and its batches show cancelled",
  async () => {
    const page = await context!.newPage();
    watch(page);
    await page.setViewportSize({ width: 1280, height: 800 });
    // Batch 1's first attempt says the limit is hit (a hold of a few seconds); later batches run until cancelled.
    const body = `n=$MOZART_BATCH_NUM; if [ "$n" = 1 ] && [ ! -e {job_dir}/held ]; then touch {job_dir}/held; echo "SLOW DOWN: too many requests"; exit 1; fi; if [ "$n" -ge 2 ]; then i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; fi; echo ok`;
    box.job(
      { name: "held-job", workspace: "./ws-held", batch: { size: 1, total_items: 3 }, retry: { max_retries: 1, base_delay_seconds: 0.05 }, rate_limit: { wait_minutes: 0.07, detection_patterns: ["SLOW DOWN"] }, backend: commandBackend(body, { timeout_seconds: 60 }) },
      "held.yaml",
    );
    const runner = box.start(["run", join(box.dir, "held.yaml")]);
    await waitFor("batch 1 to hit the limit", () => existsSync(join(box.dir, "held")), 20_000);
    await page.goto(`${base}/#/jobs/held-job`);
    const hold = page.locator("section.hold");
    await hold.waitFor({ state: "visible", timeout: 15_000 });
    const holdText = await hold.innerText();
    expect(holdText).toContain("SLOW DOWN");
    expect(holdText).toMatch(/Resumes in \d+(\.\d)?s/);
    await page.locator('.grid .cell.st-held[data-batch="1"]').waitFor({ timeout: 5000 });
    // The countdown moves by itself, between events.
    const left = await text(page, "section.hold time");
    await until(page, "the countdown to move", async () => (await text(page, "section.hold time")) !== left, 5000);

    await hold.waitFor({ state: "hidden", timeout: 15_000 });
    await page.locator('.grid .cell.st-in_progress[data-batch="2"]').waitFor({ timeout: 15_000 });

    // Cancel asks first: keeping it running sends nothing.
    const dialog = page.locator("dialog#confirm");
    await page.getByRole("button", { name: "Cancel…" }).click();
    await dialog.waitFor({ state: "visible" });
    await dialog.getByRole("button", { name: "Keep running" }).click();
    await dialog.waitFor({ state: "hidden" });
    await Bun.sleep(300);
    expect(await jobStatus(page)).toBe("running");
    expect(runner.endedAt()).toBeUndefined();

    await page.getByRole("button", { name: "Cancel…" }).click();
    const confirmed = Date.now();
    await dialog.getByRole("button", { name: "Cancel job" }).click();
    await until(page, "the page to show the job cancelled", async () => (await jobStatus(page)) === "cancelled", 10_000);
    console.log(`cancelled shown ${Date.now() - confirmed} ms after the confirmation`);
    expect((await runner.done).code).toBe(130);
    await page.locator('.grid .cell.st-cancelled[data-batch="2"]').waitFor({ timeout: 5000 });
    expect(await page.locator('.grid .cell[data-batch="2"]').getAttribute("aria-label")).toContain("cancelled");
    expect(await page.getByRole("button", { name: "Resume" }).isEnabled()).toBe(true);
    await page.close();
    expect(problems).toEqual([]);
  },
  40_000,
);

test(
  "a dropped connection shows reconnecting…, then catches up on what happened meanwhile",
  async () => {
    const page = await context!.newPage();
    watch(page);
    const body = `n=$MOZART_BATCH_NUM; if [ "$n" -ge 2 ]; then i=0; while [ ! -e {job_dir}/go-gap ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; fi; echo "batch $n ok"`;
    box.job({ name: "gap-job", workspace: "./ws-gap", batch: { size: 1, total_items: 3 }, retry: { max_retries: 0 }, backend: commandBackend(body, { timeout_seconds: 60 }) }, "gap.yaml");
    const runner = box.start(["run", join(box.dir, "gap.yaml")]);
    await waitFor("batch 2 to start", async () => (await box.events(join(box.dir, "gap.yaml")).catch(() => [])).some((e) => e.type === "batch_start" && e.batch_num === 2), 20_000, 100);
    await page.goto(`${base}/#/jobs/gap-job`);
    await until(page, "batch 1 to show completed", async () => (await doneCount(page)) === 1);
    expect(await page.locator("#conn").isHidden()).toBe(true);

    // The server goes away; the job finishes while nobody serves it.
    drops = true;
    const port = new URL(base).port;
    dashboard!.child.kill("SIGTERM");
    await dashboard!.done;
    await page.locator("#conn").waitFor({ state: "visible", timeout: 10_000 });
    expect(await text(page, "#conn")).toContain("reconnecting");
    writeFileSync(join(box.dir, "go-gap"), "");
    expect((await runner.done).code).toBe(0);

    // Back on the same address: the page reconnects by itself and shows where the job got to.
    dashboard = await startDashboard(port);
    await until(page, "the page to catch up to the completed job", async () => (await jobStatus(page)) === "completed" && (await doneCount(page)) === 3, 20_000);
    await page.locator("#conn").waitFor({ state: "hidden", timeout: 10_000 });
    drops = false;
    expect(await page.locator(".grid .cell.st-completed").count()).toBe(3);
    await page.close();
    expect(problems).toEqual([]);
  },
  45_000,
);

test(
  "with --token, the one-time login URL signs the browser in and the page works as it is, cost chart included; after a restart it says it is signed out",
  async () => {
    const secured = box.start(["dashboard", "--port", "0", "--host", "127.0.0.1", "--token", "browser-test-token-0123456789"]);
    try {
      const login = await waitFor("the login URL", () => /https?:\/\/127\.0\.0\.1:\d+\/login\?\S+/.exec(secured.output().stdout + secured.output().stderr)?.[0] ?? (secured.endedAt() ? "ended" : undefined), 20_000);
      if (login === "ended") throw new Error(`mozart dashboard --token exited: ${JSON.stringify(secured.output())}`);
      const origin = new URL(login).origin;
      // Without the cookie the API refuses.
      expect((await fetch(`${origin}/api/jobs`)).status).toBe(401);
      const signed = await browser!.newContext({ viewport: { width: 1280, height: 800 } });
      try {
        const page = await signed.newPage();
        watch(page);
        await page.goto(login);
        await page.locator('tr[data-job="test-job"]').waitFor({ timeout: 10_000 });
        await page.locator('tr[data-job="test-job"] a.job-link').click();
        await until(page, "the job view", async () => (await jobStatus(page)) === "completed");

        // A job that costs something: the cumulative cost chart draws its steps.
        const costly = box.job({ name: "costly-job", workspace: "./ws-costly", batch: { size: 1, total_items: 4 }, backend: { type: "claude_cli", cli_path: join(FIXTURES, "fake-claude"), skip_permissions: true } }, "costly.yaml");
        expect((await box.exec(["run", costly], { FAKE_CLAUDE_PRETEND_ROOT: "0" })).code).toBe(0);
        await page.goto(`${new URL(login).origin}/#/jobs/costly-job`);
        await page.locator(".chart svg path.line").waitFor({ timeout: 10_000 });
        expect(await page.locator(".chart svg circle.dot").count()).toBe(4);
        expect(await page.locator(".chart svg[aria-label^='Cumulative cost: $']").count()).toBe(1);
        expect(problems).toEqual([]);

        // The server restarts (sessions live in its memory): the open page says it is signed out, instead of reconnecting for ever.
        const mark = problems.length;
        drops = true;
        secured.child.kill("SIGTERM");
        await secured.done;
        const again = box.start(["dashboard", "--port", new URL(login).port, "--host", "127.0.0.1", "--token", "browser-test-token-0123456789"]);
        try {
          await waitFor("the dashboard to start again", () => (/\/login\?/.test(again.output().stdout + again.output().stderr) ? true : again.endedAt() ? "ended" : undefined), 20_000);
          await until(page, "the page to say it is signed out", async () => /signed out/.test(await text(page, "#conn")), 15_000);
          expect(await text(page, "#conn")).toContain("open the login URL that `mozart dashboard` printed");
          // What failed meanwhile is the refused session and the streams the restart cut, nothing else.
          expect(problems.splice(mark).filter((p) => !/401|\/events|ERR_CONNECTION_REFUSED/.test(p))).toEqual([]);
        } finally {
          drops = false;
          again.child.kill("SIGTERM");
          await Promise.race([again.done, Bun.sleep(5000)]);
        }
      } finally {
        await signed.close();
      }
    } finally {
      secured.child.kill("SIGTERM");
      await Promise.race([secured.done, Bun.sleep(5000)]);
    }
  },
  30_000,
);

test(
  "an account hold met by another job shows on the job's page: the limit, who met it, the reason and a countdown",
  async () => {
    const page = await context!.newPage();
    watch(page);
    const file = box.job({ name: "account-job", workspace: "./ws-account", batch: { size: 1, total_items: 1 }, backend: { type: "claude_cli", cli_path: join(FIXTURES, "fake-claude"), skip_permissions: true } }, "account.yaml");
    expect((await box.exec(["run", file], { FAKE_CLAUDE_PRETEND_ROOT: "0" })).code).toBe(0);
    // The runner registered the account its sessions ran on; another job met that account's limit.
    const account = (await findJob(box.home, "account-job"))?.account;
    expect(account).toMatch(/^(key|config)-[0-9a-f]{16}$|^default-login$/);
    await writeAccountHold(box.home, { account: account!, until: Date.now() + 120_000, reason: "You've hit your session limit", job_id: "other-job", limit: "session", set_at: Date.now() });
    try {
      await page.goto(`${base}/#/jobs/account-job`);
      const card = page.locator("section.hold");
      await card.waitFor({ state: "visible", timeout: 10_000 });
      const shown = await card.innerText();
      expect(shown).toContain("Account hold");
      expect(shown).toContain("session limit met by job other-job");
      expect(shown).toContain("You've hit your session limit");
      expect(shown).toMatch(/Resumes in \d/);
    } finally {
      rmSync(join(box.home, "accounts"), { recursive: true, force: true });
    }
    await page.close();
    expect(problems).toEqual([]);
  },
  30_000,
);
