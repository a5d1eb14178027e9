import { describe, expect, test } from "bun:test";
import { formatDuration } from "../../src/time.ts";
import type { EventPayload, MozartEvent } from "../../src/engine/events.ts";
import { createOutput, type Output } from "../../src/cli/output.ts";
import { createProgress, estimateRemaining, progressLine, type EtaInput, type ProgressStream } from "../../src/cli/progress.ts";
import { width } from "../../src/text.ts";

const S = 1000;

describe("ETA", () => {
  const base: EtaInput = { now: 0, remaining: 0, runningSince: [], averageMs: undefined, concurrency: 1, spacingMs: 0, lastStartAt: undefined };
  const eta = (i: Partial<EtaInput>) => estimateRemaining({ ...base, ...i });

  test("unknown until a batch has finished; zero when nothing is left", () => {
    expect(eta({ remaining: 5 })).toBeUndefined();
    expect(eta({ remaining: 0, averageMs: 2 * S })).toBe(0);
  });

  test("batches start a pause apart: 6 left at 2 s each with the default 10 s pause is a minute, not 12 s", () => {
    // Batch 1 started at 0 and took 2 s; the next can start at 10 s, the last of the 6 at 60 s and ends at 62 s.
    expect(eta({ now: 2 * S, remaining: 6, averageMs: 2 * S, spacingMs: 10 * S, lastStartAt: 0 })).toBe(60 * S);
  });

  test("the pause spaces starts whatever the concurrency", () => {
    expect(eta({ now: 2 * S, remaining: 6, averageMs: 2 * S, spacingMs: 10 * S, lastStartAt: 0, concurrency: 4 })).toBe(60 * S);
  });

  test("without a pause, the workers share the work", () => {
    expect(eta({ now: 2 * S, remaining: 6, averageMs: 2 * S })).toBe(12 * S);
    expect(eta({ now: 2 * S, remaining: 6, averageMs: 2 * S, concurrency: 3 })).toBe(4 * S);
    // More workers than batches: one batch cannot go faster than its own duration.
    expect(eta({ now: 2 * S, remaining: 1, averageMs: 2 * S, concurrency: 8 })).toBe(2 * S);
  });

  test("a running batch counts only what it has left", () => {
    expect(eta({ now: 14 * S, remaining: 1, runningSince: [10 * S], averageMs: 10 * S })).toBe(6 * S);
    // Two running, one waiting, two workers: 6 s + 8 s left running, then 10 s more, shared.
    expect(eta({ now: 14 * S, remaining: 3, runningSince: [10 * S, 12 * S], averageMs: 10 * S, concurrency: 2 })).toBe(12 * S);
  });

  test("an active hold adds its remaining time", () => {
    expect(eta({ now: 0, remaining: 2, averageMs: 5 * S, holdUntil: 60 * S })).toBe(70 * S);
    // The pause after the latest start is long over when the hold ends: starts resume then, a pause apart.
    expect(eta({ now: 0, remaining: 3, averageMs: 5 * S, spacingMs: 10 * S, lastStartAt: -1 * S, holdUntil: 60 * S, concurrency: 3 })).toBe(85 * S);
    // A hold that is over changes nothing.
    expect(eta({ now: 100 * S, remaining: 2, averageMs: 5 * S, holdUntil: 60 * S })).toBe(10 * S);
  });
});

/** A terminal stand-in: records every write, with a width that can change. */
function fakeTerminal(columns: number) {
  const writes: string[] = [];
  const listeners = new Set<() => void>();
  const stream: ProgressStream & { columns: number } = {
    columns,
    write: (t) => void writes.push(t),
    on: (_e, l) => listeners.add(l),
    off: (_e, l) => listeners.delete(l),
  };
  return {
    stream,
    writes,
    resize(n: number) {
      stream.columns = n;
      for (const l of listeners) l();
    },
    listeners,
    /** Every state of the live line that was drawn. */
    lines: () => writes.join("").split("\r\x1b[2K").map((l) => l.replace(/\n$/, "")).filter(Boolean),
  };
}

function fakeOutput(opts: { interactive?: boolean; verbose?: boolean } = {}): Output & { said: string[] } {
  const said: string[] = [];
  const base = createOutput({ color: true, verbose: opts.verbose });
  return { ...base, interactive: opts.interactive ?? true, verbose: Boolean(opts.verbose), said, info: (l) => void said.push(l), detail: (l) => void said.push(l), warn: (l) => void said.push(l) };
}

/** A recorded event: the payload plus the fields the event log adds. */
const ev = (payload: EventPayload & { job_id?: string }): MozartEvent => ({ seq: 0, at: "2026-12-01T00:00:00.000Z", job_id: "j", ...payload }) as MozartEvent;

const jobStart = (over: Partial<Extract<EventPayload, { type: "job_start" }>> = {}): MozartEvent => ev({
  type: "job_start",
  runner: "r",
  mode: "run",
  total_batches: 7,
  to_run: 7,
  completed: 0,
  resumed: false,
  concurrency: 1,
  pause_between_ms: 10 * S,
  ...over,
});

describe("live progress line", () => {
  test("the ETA it shows accounts for the pause between batch starts", () => {
    let t = 0;
    const term = fakeTerminal(120);
    const p = createProgress(fakeOutput(), { now: () => t, stream: term.stream });
    p.handle(jobStart());
    p.handle(ev({ type: "batch_start", batch_num: 1, start_item: 1, end_item: 1, runner: "r" }));
    t = 2 * S;
    p.handle(ev({ type: "batch_complete", batch_num: 1, attempts: 1, duration_ms: 2 * S, cost_usd: 0 }));
    expect(term.lines().at(-1)).toContain("ETA 1m00s");
    p.handle(ev({ type: "job_paused", job_id: "j", completed: 1, total_batches: 7, reason: "test" }));
  });

  test("the ETA uses the history's mean batch duration until the run has completed enough batches of its own", () => {
    let t = 0;
    const term = fakeTerminal(120);
    const p = createProgress(fakeOutput(), { now: () => t, stream: term.stream, historyAverageMs: 60 * S });
    p.handle(jobStart({ pause_between_ms: 0, to_run: 4, total_batches: 4 }));
    for (let n = 1; n <= 3; n++) {
      p.handle(ev({ type: "batch_start", batch_num: n, start_item: n, end_item: n, runner: "r" }));
      t += S;
      p.handle(ev({ type: "batch_complete", batch_num: n, attempts: 1, duration_ms: S, cost_usd: 0 }));
      // Fewer than 3 of its own: the history's 60 s per batch; then the run's own 1 s.
      expect(term.lines().at(-1)).toContain(n < 3 ? `ETA ${formatDuration((4 - n) * 60 * S)}` : "ETA 1s");
    }
    p.stop();
  });

  test("a hold shows on the line and in the ETA", () => {
    let t = 0;
    const term = fakeTerminal(120);
    const p = createProgress(fakeOutput(), { now: () => t, stream: term.stream });
    p.handle(jobStart({ pause_between_ms: 0, to_run: 2, total_batches: 2 }));
    p.handle(ev({ type: "batch_start", batch_num: 1, start_item: 1, end_item: 1, runner: "r" }));
    t = 5 * S;
    p.handle(ev({ type: "batch_complete", batch_num: 1, attempts: 1, duration_ms: 5 * S, cost_usd: 0 }));
    p.handle(ev({ type: "batch_start", batch_num: 2, start_item: 2, end_item: 2, runner: "r" }));
    p.handle(ev({ type: "rate_limit_hold", batch_num: 2, until: t + 120 * S, reason: "limit", waits: 1 }));
    const last = term.lines().at(-1)!;
    expect(last).toContain("hold 2m00s");
    expect(last).toContain("ETA 2m05s");
    p.stop();
  });

  for (const columns of [40, 60, 80, 120]) {
    test(`never wider than a ${columns}-column terminal`, () => {
      let t = 0;
      const term = fakeTerminal(columns);
      const p = createProgress(fakeOutput(), { now: () => t, stream: term.stream });
      p.handle(jobStart({ total_batches: 12345, to_run: 12345, concurrency: 8 }));
      for (let n = 1; n <= 8; n++) p.handle(ev({ type: "batch_start", batch_num: 1000 + n, start_item: n, end_item: n, runner: "r" }));
      t = 3_725 * S;
      p.handle(ev({ type: "attempt_end", batch_num: 1001, attempt: 1, decision: "success", reason: "ok", duration_ms: 3_725 * S, exit_code: 0, cost_usd: 12.5, output_tail: "" }));
      p.handle(ev({ type: "batch_complete", batch_num: 1001, attempts: 1, duration_ms: 3_725 * S, cost_usd: 12.5 }));
      p.handle(ev({ type: "rate_limit_hold", batch_num: 1002, until: t + 4 * 3600 * S, reason: "limit", waits: 1 }));
      const lines = term.lines();
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(width(line)).toBeLessThanOrEqual(columns);
      // What matters most survives: the count, the ETA and the hold.
      expect(lines.at(-1)).toContain("1/12345");
      expect(lines.at(-1)).toContain("ETA");
      expect(lines.at(-1)).toContain("hold");
      if (columns >= 120) expect(lines.at(-1)).toContain("running");
      p.stop();
    });
  }

  test("a resize redraws the line at the new width", () => {
    const term = fakeTerminal(120);
    const p = createProgress(fakeOutput(), { now: () => 0, stream: term.stream });
    p.handle(jobStart({ concurrency: 4 }));
    for (let n = 1; n <= 4; n++) p.handle(ev({ type: "batch_start", batch_num: n, start_item: n, end_item: n, runner: "r" }));
    const before = term.lines().length;
    term.resize(40);
    const lines = term.lines();
    expect(lines.length).toBe(before + 1);
    expect(width(lines.at(-1)!)).toBeLessThanOrEqual(40);
    p.stop();
    expect(term.listeners.size).toBe(0);
  });

  test("parts give way in order, whole, never mid-word", () => {
    const state = { done: 3, total: 10, elapsedMs: 65 * S, etaMs: 125 * S, running: [4, 5, 6, 7, 8], holdMs: 30 * S, cost: 0.25 };
    const plain = { yellow: (s: string | number) => String(s) };
    const at = (columns: number) => progressLine(state, columns, plain);
    expect(at(200)).toBe("███████░░░░░░░░░░░░░░░░░ 3/10 30%  elapsed 1m05s  ETA 2m05s  running 4,5,6,7,…  hold 30s  $0.2500");
    expect(at(80)).toBe("█████░░░░░░░░░░░ 3/10 30%  elapsed 1m05s  ETA 2m05s  hold 30s  $0.2500");
    expect(at(60)).toBe("███░░░░░░░ 3/10 30%  elapsed 1m05s  ETA 2m05s  hold 30s");
    expect(at(40)).toBe("3/10 30%  ETA 2m05s  hold 30s");
    expect(at(25)).toBe("3/10 30% hold 30s");
    expect(at(12)).toBe("3/10 30%");
    for (let columns = 2; columns <= 200; columns++) expect(width(at(columns))).toBeLessThan(columns);
  });
});

describe("text from a backend never reaches the terminal raw", () => {
  test("reasons, output tails and failures are cleaned; a hold names its date and time", () => {
    const out = fakeOutput({ verbose: true, interactive: false });
    const p = createProgress(out, { now: () => Date.UTC(2026, 11, 1, 13, 0, 0) });
    p.handle(jobStart());
    p.handle(ev({ type: "attempt_start", batch_num: 1, attempt: 1, mode: "normal", argv: ["claude", "-p", "\x1b]0;title\x07"] }));
    p.handle(ev({
      type: "attempt_end",
      batch_num: 1,
      attempt: 1,
      decision: "retry",
      reason: "exit 1: \x1b]0;pwned window title\x07\x1b[2Jboom",
      duration_ms: 1 * S,
      exit_code: 1,
      output_tail: "working 10%\rworking 100%\n\x1b[31mred\x1b[0m line\n\x1bP+q544e\x1b\\done\n",
      retry_in_ms: 2 * S,
    }));
    p.handle(ev({ type: "batch_failed", batch_num: 1, attempts: 3, error: { message: "gave up \x1b[1A\x1b[2K\x07", category: "validation" } as never }));
    p.handle(ev({ type: "rate_limit_hold", batch_num: 2, until: Date.UTC(2026, 11, 1, 15, 30, 0), reason: "limit \x1b]52;c;ZXZpbA==\x07reached", waits: 1 }));
    p.stop();
    const text = out.said.join("\n");
    expect(text).not.toMatch(/[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]/);
    // Our own colours are the only escapes left.
    expect(text.replace(/\x1b\[\d+m/g, "")).not.toContain("\x1b");
    expect(text).toContain("exit 1: boom");
    expect(text).toContain("working 100%");
    expect(text).not.toContain("working 10%");
    expect(text).toContain("red line");
    expect(text).toContain("gave up");
    expect(text).toContain("limit reached");
    expect(text).toMatch(/holding all work until 2026-12-0[12] \d\d:30:00 UTC/);
  });
});
