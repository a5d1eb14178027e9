/** `mozart stats` as a process: real runs append outcomes, stats reads them back. */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import { existsSync } from "node:fs";
import { digestPath, readOutcomeFigures } from "../../src/learning/digest.ts";
import { appendOutcome, HISTORY_FILE, readHistory } from "../../src/learning/history.ts";
import { computeStats } from "../../src/learning/stats.ts";
import { manyOutcomes } from "../fixtures/outcomes.ts";
import { mozart, tempDir } from "../helpers.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const t = tempDir("mozart-stats-");
  cleanups.push(t.cleanup);
  const home = join(t.path, "home");
  return { dir: t.path, home, env: { MOZART_HOME: home } };
}

describe("mozart stats", () => {
  test("figures of real runs: a job whose batches all pass at once, and one whose batches need a second attempt", () => {
    const { dir, env } = setup();
    const write = (name: string, command: string, extra: Record<string, unknown> = {}) => {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, stringify({ name, workspace: `./ws-${name}`, pause_between_batches_seconds: 0, backend: { type: "command", command }, batch: { size: 2, total_items: 6 }, prompt: { template: "x {{ batch_num }}" }, ...extra }));
      return file;
    };
    expect(mozart(["run", write("good", "true")], { env, timeout: 60_000 }).code).toBe(0);
    // Fails the first attempt of every batch (a marker file per batch), passes the second.
    const flaky = write("flaky", 'if [ -f "seen-$MOZART_BATCH_NUM" ]; then echo ok > "out-$MOZART_BATCH_NUM"; else touch "seen-$MOZART_BATCH_NUM"; fi', {
      retry: { max_retries: 2, base_delay_seconds: 0.01, jitter: false },
      validations: [{ type: "file_exists", path: "out-{{ batch_num }}", description: "the output file" }],
    });
    expect(mozart(["run", flaky], { env, timeout: 60_000 }).code).toBe(0);

    const all = mozart(["stats", "--json"], { env });
    expect(all.code).toBe(0);
    const s = JSON.parse(all.stdout);
    expect(s.jobs).toEqual(["flaky", "good"]);
    expect(s.finished).toBe(6);
    expect(s.categories).toEqual({ first_try: 3, after_retry: 3, after_completion: 0, failed: 0, cancelled: 0 });
    expect(s.first_try_rate).toBe(0.5);
    expect(s.attempts).toEqual([
      { attempts: 1, batches: 3 },
      { attempts: 2, batches: 3 },
    ]);
    expect(s.successful_items).toBe(12);
    expect(s.failing_validations).toEqual([{ description: "the output file", failures: 3, batches: 3, example: { job_id: "flaky", batch_num: 1, at: expect.any(String) } }]);

    const one = JSON.parse(mozart(["stats", "flaky", "--json"], { env }).stdout);
    expect(one).toMatchObject({ job: "flaky", jobs: ["flaky"], finished: 3, first_try_rate: 0, attempts: [{ attempts: 2, batches: 3 }] });
    // By the job file as well.
    expect(JSON.parse(mozart(["stats", flaky, "--json"], { env }).stdout)).toMatchObject({ job: "flaky", finished: 3 });
    expect(JSON.parse(mozart(["stats", "--since", "2999-01-01", "--json"], { env }).stdout)).toMatchObject({ outcomes: 0, first_try_rate: null });

    const human = mozart(["stats"], { env: { ...env, NO_COLOR: "1" } });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain("first try:    50.0%");
    expect(human.stdout).toContain("the output file");
    expect(human.stdout).not.toContain("\u001b[");
  }, 60_000);

  test("the digest follows appends, skips a torn tail until it is whole, and is rebuilt when the history is replaced", async () => {
    const { home } = setup();
    const path = join(home, HISTORY_FILE);
    const [a, b, c] = manyOutcomes(3);
    await appendOutcome(path, a!);
    expect((await readOutcomeFigures(path)).map((o) => o.batch_num)).toEqual([1]);
    await appendOutcome(path, b!);
    writeFileSync(path, `${JSON.stringify(c)}`.slice(0, 40), { flag: "a" });
    expect((await readOutcomeFigures(path)).map((o) => o.batch_num)).toEqual([1, 2]);
    await appendOutcome(path, c!);
    expect((await readOutcomeFigures(path)).map((o) => o.batch_num)).toEqual([1, 2, 3]);
    // Another history in its place: the digest no longer matches it.
    writeFileSync(path, `${JSON.stringify({ ...c!, batch_num: 9 })}\n`);
    expect((await readOutcomeFigures(path)).map((o) => o.batch_num)).toEqual([9]);
    expect(computeStats(await readOutcomeFigures(path))).toEqual(computeStats(await readHistory(path)));
  });

  test("a bad --since is a usage error, one JSON document with --json", () => {
    const { env } = setup();
    const r = mozart(["stats", "--since", "last tuesday", "--json"], { env });
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.message).toContain("--since expects a date");
    const h = mozart(["stats", "--help"], { env });
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("--since");
  });

  test("stats on 100,000 outcomes stays within the bound", async () => {
    const { home, env } = setup();
    mkdirSync(home, { recursive: true });
    const path = join(home, HISTORY_FILE);
    writeFileSync(path, `${manyOutcomes(100_000).map((o) => JSON.stringify(o)).join("\n")}\n`);
    // The first read parses the history and writes its digest; later reads parse only what was appended.
    const cold = computeStats(await readOutcomeFigures(path));
    expect(existsSync(digestPath(path))).toBe(true);
    // In-process, read and computed: the bound is 200 ms; the test's is generous (a noisy CI machine).
    const t0 = performance.now();
    const s = computeStats(await readOutcomeFigures(path));
    const took = performance.now() - t0;
    expect(s.outcomes).toBe(100_000);
    expect(s).toEqual(cold);
    expect(took).toBeLessThan(1000);
    // The digest gives the same figures as reading every line.
    expect(s).toEqual(computeStats(await readHistory(path)));
    const r = mozart(["stats", "--json"], { env, timeout: 30_000 });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).outcomes).toBe(100_000);
  }, 60_000);
});
