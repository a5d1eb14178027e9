/**
 * Durations past 2^31 ms (where timers fire at once) are config errors with file:line:col, never a
 * job that silently does not wait; and the one sleep (src/time.ts) takes a long delay in chunks,
 * so a 30-day sleep lasts 30 days.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { MAX_TIMER_MS, sleep } from "../../../src/time.ts";
import { mozart, tempDir } from "../../helpers.ts";

describe("durations past 2^31 ms are config errors", () => {
  let t: ReturnType<typeof tempDir>;
  afterEach(() => t?.cleanup());

  const cases: Array<[string, string, number, number]> = [
    ["pause_between_batches_seconds", "pause_between_batches_seconds: 2200000", 2, 32],
    ["rate_limit.wait_minutes", "rate_limit:\n  wait_minutes: 1e300", 3, 17],
    ["retry.max_delay_seconds", "retry:\n  max_delay_seconds: 1e12", 3, 22],
    ["retry.base_delay_seconds", "retry:\n  base_delay_seconds: 3000000", 3, 23],
    ["backend.timeout_seconds", "backend:\n  type: command\n  command: 'true'\n  timeout_seconds: 1e10", 5, 20],
    ["validations[0].timeout_seconds", "validations:\n  - type: command_succeeds\n    command: 'true'\n    timeout_seconds: 1e10", 5, 22],
    ["rate_limit.wait_minutes", "rate_limit:\n  wait_minutes: .inf", 3, 17],
  ];
  for (const [path, yaml, line, column] of cases) {
    test(`${path}: ${yaml.split("\n").pop()!.trim()}`, () => {
      t = tempDir();
      const file = join(t.path, "job.yaml");
      writeFileSync(file, `name: dur\n${yaml}\nbatch: { size: 1, total_items: 1 }\nprompt: { template: "b" }\n`);
      for (const cmd of ["validate", "run"]) {
        const r = mozart([cmd, file], { cwd: t.path, env: { MOZART_HOME: join(t.path, "home") } });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`${file}:${line}:${column} ${path}:`);
        const j = mozart([cmd, file, "--json"], { cwd: t.path, env: { MOZART_HOME: join(t.path, "home") } });
        expect(j.code).toBe(2);
        const err = (JSON.parse(j.stdout) as { error: { path: string; line: number; column: number } }).error;
        expect(err).toMatchObject({ path, line, column });
      }
    });
  }
});

describe("the one sleep takes long delays in chunks", () => {
  test("with a fake clock: a 30-day sleep arms timers of at most 2^31-1 ms and ends after exactly 30 days", async () => {
    const realNow = Date.now;
    const realSetTimeout = globalThis.setTimeout;
    let now = 1_000_000;
    const armed: number[] = [];
    let fire: (() => void) | undefined;
    Date.now = () => now;
    globalThis.setTimeout = ((fn: () => void, ms: number) => {
      armed.push(ms);
      fire = () => {
        now += ms;
        fn();
      };
      return 0 as unknown as ReturnType<typeof setTimeout>;
    }) as typeof setTimeout;
    try {
      const days30 = 30 * 86_400_000;
      let result: boolean | undefined;
      void sleep(days30).then((r) => (result = r));
      for (let i = 0; i < 10 && result === undefined; i++) {
        fire!();
        await Promise.resolve();
      }
      await Promise.resolve();
      expect(result).toBe(true);
      expect(armed.every((ms) => ms > 0 && ms <= MAX_TIMER_MS)).toBe(true);
      expect(armed.length).toBe(Math.ceil(days30 / MAX_TIMER_MS));
      expect(now - 1_000_000).toBe(days30);
    } finally {
      Date.now = realNow;
      globalThis.setTimeout = realSetTimeout;
    }
  });

  test("with real timers: a 30-day sleep does not resolve at once, and an abort ends it with false", async () => {
    const ctl = new AbortController();
    let result: boolean | undefined;
    const p = sleep(30 * 86_400_000, ctl.signal).then((r) => (result = r));
    await Bun.sleep(150);
    expect(result).toBeUndefined();
    ctl.abort();
    await p;
    expect(result).toBe(false);
  });

  test("a delay just past 2^31 ms does not fire at once either", async () => {
    let result: boolean | undefined;
    const ctl = new AbortController();
    const p = sleep(2 ** 31 + 5, ctl.signal).then((r) => (result = r));
    await Bun.sleep(100);
    expect(result).toBeUndefined();
    ctl.abort();
    await p;
  });
});
