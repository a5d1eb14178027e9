/**
 * Progress for humans. On an interactive terminal: one live line (done/total, percent, elapsed,
 * ETA, current hold, cost), always fitted to the terminal's width. Elsewhere (pipes, CI): one
 * plain line per event, which reads well in logs. -q silences it; -v adds each attempt's
 * command and output. A hand-written single line instead of a progress-bar package: it is ~one
 * ANSI sequence, and the ETA and hold countdown come from our own events anyway.
 *
 * Text that came from a backend (reasons, output, errors) is cleaned before it is printed: it
 * must never move the cursor, retitle the window or clear the screen.
 */
import type { MozartEvent } from "../engine/events.ts";
import type { StoredEvent } from "../state/events.ts";
import { clean, clip, fit, formatUsd, width } from "../text.ts";
import { formatDuration, formatTime } from "../time.ts";
import { writeStderr, type Output, type Palette } from "./output.ts";

// Still importable from here while callers move to src/time.ts.
export { formatDuration };

const money = formatUsd;

/** Where the live line is drawn: stderr, or a stand-in in tests. */
export interface ProgressStream {
  write(text: string): void;
  /** The terminal's width in columns, when known. */
  readonly columns?: number;
  on?(event: "resize", listener: () => void): unknown;
  off?(event: "resize", listener: () => void): unknown;
}

const stderrStream: ProgressStream = {
  write: writeStderr,
  get columns() {
    return process.stderr.columns;
  },
  on: (event, listener) => process.stderr.on(event, listener),
  off: (event, listener) => process.stderr.off(event, listener),
};

export interface ProgressOptions {
  now?: () => number;
  stream?: ProgressStream;
  /** Mean batch duration of past batches of this prompt template: the ETA's until this run has completed OWN_BATCHES_ENOUGH of its own. */
  historyAverageMs?: number;
}

/** Completed batches of its own after which a run's ETA stops using history. */
export const OWN_BATCHES_ENOUGH = 3;

export interface Progress {
  handle(e: MozartEvent): void;
  stop(): void;
}

export interface EtaInput {
  now: number;
  /** Batches this run has yet to finish, running ones included. */
  remaining: number;
  /** When each batch running now started. */
  runningSince: number[];
  /** Mean duration of the batches this run completed; undefined before the first. */
  averageMs: number | undefined;
  concurrency: number;
  /** Batch starts are at least this far apart, whatever the concurrency. */
  spacingMs: number;
  /** When the latest batch started. */
  lastStartAt: number | undefined;
  /** End of the rate-limit hold in force, if any: no work moves until then. */
  holdUntil?: number;
}

/**
 * Milliseconds until the run is done, or undefined while nothing has finished to learn from.
 * The answer is the latest of three lower bounds, all counted from the end of any hold:
 * - spacing: the batches not started yet start one pause apart, the next one no sooner than a
 *   pause after the latest start, and the last of them then takes about one batch duration;
 * - throughput: the work left (a full duration per batch not started, the rest of one for each
 *   running batch) shared by the workers;
 * - the running batch with the most left to do.
 */
export function estimateRemaining(i: EtaInput): number | undefined {
  if (i.remaining <= 0) return 0;
  if (i.averageMs === undefined) return undefined;
  const avg = i.averageMs;
  const resumeAt = Math.max(i.now, i.holdUntil ?? 0);
  const notStarted = Math.max(0, i.remaining - i.runningSince.length);
  const leftOfRunning = i.runningSince.map((since) => Math.max(0, avg - (i.now - since)));
  const work = notStarted * avg + leftOfRunning.reduce((a, b) => a + b, 0);
  let end = resumeAt + work / Math.max(1, Math.min(i.concurrency, i.remaining));
  end = Math.max(end, resumeAt + Math.max(0, ...leftOfRunning));
  if (notStarted > 0) {
    const nextStart = Math.max(resumeAt, (i.lastStartAt ?? -Infinity) + i.spacingMs);
    end = Math.max(end, nextStart + (notStarted - 1) * i.spacingMs + avg);
  }
  return end - i.now;
}

export interface LineState {
  done: number;
  total: number;
  elapsedMs: number;
  etaMs: number | undefined;
  running: number[];
  holdMs?: number;
  cost: number;
  /** What the batch that last reported activity is doing: its turn and tool, or the retry the CLI waits out. */
  activity?: string;
}

/**
 * The live line, fitted to `columns`: a line that wraps leaves stale rows behind, since
 * `\r\x1b[2K` clears only the row the cursor is on. The count, the ETA and a hold always
 * come first; then, as long as they fit, in this order: a short bar, elapsed time, a longer
 * bar, cost, how many batches run, which ones, the full bar, the current activity. Parts are left out whole, never
 * cut mid-word; only a terminal too narrow for the count itself gets a cut line.
 */
export function progressLine(s: LineState, columns: number, c: Pick<Palette, "yellow">): string {
  const max = Math.max(1, columns - 1); // writing the last column puts some terminals into a wrap
  const pct = s.total ? Math.floor((s.done / s.total) * 100) : 0;
  const shape = { bar: 0, elapsed: false, cost: false, running: -1, eta: true, hold: true, activity: false, gap: "  " };
  const render = () => {
    const filled = Math.round((pct / 100) * shape.bar);
    const bar = shape.bar ? `${"█".repeat(filled)}${"░".repeat(shape.bar - filled)} ` : "";
    const parts = [`${bar}${s.done}/${s.total} ${pct}%`];
    if (shape.elapsed) parts.push(`elapsed ${formatDuration(s.elapsedMs)}`);
    if (shape.eta) parts.push(`ETA ${s.etaMs === undefined ? "…" : formatDuration(s.etaMs)}`);
    if (shape.running >= 0 && s.running.length) {
      const shown = [...s.running].sort((a, b) => a - b).slice(0, shape.running);
      parts.push(shown.length ? `running ${shown.join(",")}${s.running.length > shown.length ? ",…" : ""}` : `${s.running.length} running`);
    }
    if (shape.hold && s.holdMs !== undefined && s.holdMs > 0) parts.push(c.yellow(`hold ${formatDuration(s.holdMs)}`));
    if (shape.cost && s.cost > 0) parts.push(money(s.cost));
    if (shape.activity && s.activity) parts.push(clean(s.activity));
    return parts.join(shape.gap);
  };
  const fits = () => width(render()) <= max;

  // Too narrow for the essentials: tighter gaps, then no ETA, then no hold.
  for (const tighten of [() => (shape.gap = " "), () => (shape.eta = false), () => (shape.hold = false)]) {
    if (fits()) break;
    tighten();
  }
  if (!fits()) return fit(clean(render()), max);

  const extras: Array<Partial<typeof shape>> = [{ bar: 10 }, { elapsed: true }, { bar: 16 }, { cost: true }, { running: 0 }, { running: 2 }, { bar: 24 }, { running: 4 }, { activity: true }];
  for (const extra of extras) {
    const before = { ...shape };
    Object.assign(shape, extra);
    if (fits()) continue;
    // Stop at the first that does not fit, so a narrower terminal always loses the same parts.
    Object.assign(shape, before);
    break;
  }
  return render();
}

/** The last lines of a backend's output as a terminal would have left them: `\r` overwrites. */
function tailLines(tail: string, n: number): string[] {
  return tail
    .split("\n")
    .map((l) => clean(l.split("\r").filter((seg) => seg !== "").pop() ?? ""))
    .filter((l) => l.trim() !== "")
    .slice(-n);
}

export function createProgress(out: Output, opts: ProgressOptions = {}): Progress {
  const now = opts.now ?? Date.now;
  const stream = opts.stream ?? stderrStream;
  const start = now();
  let total = 0;
  let done = 0;
  let toRun = 0;
  let finishedThisRun = 0;
  let completedThisRun = 0;
  let durations = 0;
  let cost = 0;
  let workers = 1;
  let spacing = 0;
  let lastStartAt: number | undefined;
  let hold: { until: number; batch: number } | undefined;
  const running = new Map<number, number>();
  /** Per running batch, what its session last reported (stream-json), and which batch reported last. */
  const doing = new Map<number, string>();
  let lastDoing: number | undefined;
  const live = out.interactive && !out.quiet && !out.json;
  let timer: ReturnType<typeof setInterval> | undefined;
  let drawn = false;

  const eta = () =>
    estimateRemaining({
      now: now(),
      remaining: toRun - finishedThisRun,
      runningSince: [...running.values()],
      averageMs: completedThisRun >= OWN_BATCHES_ENOUGH || (completedThisRun && opts.historyAverageMs === undefined) ? durations / completedThisRun : opts.historyAverageMs,
      concurrency: workers,
      spacingMs: spacing,
      lastStartAt,
      holdUntil: hold?.until,
    });
  const line = () =>
    progressLine(
      { done, total, elapsedMs: now() - start, etaMs: eta(), running: [...running.keys()], holdMs: hold ? hold.until - now() : undefined, cost, ...(lastDoing !== undefined && doing.has(lastDoing) ? { activity: doing.get(lastDoing) } : {}) },
      stream.columns || 80,
      out.c,
    );
  const draw = () => {
    stream.write(`\r\x1b[2K${line()}`);
    drawn = true;
  };
  const onResize = () => {
    if (drawn) draw();
  };
  /** Print a message above the live line. */
  const say = (msg: string, verboseOnly = false) => {
    if (out.quiet || (verboseOnly && !out.verbose)) return;
    if (live && drawn) stream.write("\r\x1b[2K");
    if (verboseOnly) out.detail(msg);
    else out.info(live ? msg : `[${formatTime(now(), { clock: true })}] ${msg}`);
    if (live) draw();
  };

  return {
    handle(e) {
      switch (e.type) {
        case "job_start":
          total = e.total_batches;
          done = e.completed;
          toRun = e.to_run;
          workers = e.concurrency;
          spacing = e.pause_between_ms ?? 0;
          // The job's cost so far, earlier runs included: the line shows the job's, not this run's.
          cost = e.cost_usd ?? 0;
          say(
            `${e.resumed ? "continuing" : "starting"} job ${out.c.bold(clean(e.job_id))} at ${formatTime(now())}: ${e.to_run} of ${e.total_batches} batches to run${e.cost_usd ? `; ${money(e.cost_usd)} spent so far` : ""}${e.budget_usd !== undefined ? `, budget ${money(e.budget_usd)}` : ""}`,
          );
          if (e.hold && e.hold.until > now()) {
            hold = { until: e.hold.until, batch: e.hold.batch_num };
            say(out.c.yellow(`holding until ${formatTime(e.hold.until)} (${formatDuration(e.hold.until - now())}; saved by the earlier run) — ${clip(clean(e.hold.reason), 300)}`));
          }
          if (live) {
            timer = setInterval(draw, 500);
            stream.on?.("resize", onResize);
          }
          break;
        case "batch_start":
          running.set(e.batch_num, now());
          lastStartAt = now();
          if (!live) say(`batch ${e.batch_num}/${total} started (items ${e.start_item}–${e.end_item})`);
          break;
        case "attempt_start":
          say(`batch ${e.batch_num} attempt ${e.attempt} (${e.mode}): ${clean(e.argv.join(" "))}`, true);
          break;
        case "activity": {
          const text = describeActivity(e);
          if (!text) break;
          if (e.retry) say(out.c.yellow(`batch ${e.batch_num}: ${text}`));
          else say(`batch ${e.batch_num}: ${text}`, true);
          doing.set(e.batch_num, `b${e.batch_num} ${text}`);
          lastDoing = e.batch_num;
          break;
        }
        case "attempt_end": {
          const v = e.validations ? `, validations ${e.validations.passed}/${e.validations.total}` : "";
          const retry = e.retry_in_ms !== undefined ? `; next try in ${formatDuration(e.retry_in_ms)}` : "";
          const costText = e.cost_usd ? `, ${money(e.cost_usd)}` : "";
          if (e.decision !== "success") say(`batch ${e.batch_num} attempt ${e.attempt}: ${clip(clean(e.reason), 300)}${v} (${formatDuration(e.duration_ms)}${costText})${retry}`);
          const tail = out.verbose ? tailLines(e.output_tail, 8) : [];
          if (tail.length) say(`  output: ${tail.join("\n          ")}`, true);
          if (e.cost_usd) cost += e.cost_usd;
          break;
        }
        case "batch_complete":
          running.delete(e.batch_num);
          doing.delete(e.batch_num);
          done++;
          finishedThisRun++;
          completedThisRun++;
          durations += e.duration_ms;
          say(`${out.c.green("✓")} batch ${e.batch_num}/${total} completed (${e.attempts} attempt${e.attempts === 1 ? "" : "s"}, ${formatDuration(e.duration_ms)}${e.cost_usd ? `, ${money(e.cost_usd)}` : ""})`);
          break;
        case "batch_failed":
          running.delete(e.batch_num);
          doing.delete(e.batch_num);
          finishedThisRun++;
          say(`${out.c.red("✗")} batch ${e.batch_num} failed: ${clip(clean(e.error.message), 300)}`);
          break;
        case "batch_merged":
          say(`batch ${e.batch_num} ${e.already ? "was already on" : "landed on"} ${clean(e.target)} (${e.commit.slice(0, 12)})`, true);
          break;
        case "batch_conflict":
          say(`${out.c.red("✗")} batch ${e.batch_num} could not be merged: ${clip(clean(e.message), 300)}${e.resolve.length ? `\n  to resolve it:\n${e.resolve.map((l) => `    ${clean(l)}`).join("\n")}` : ""}`);
          break;
        case "rate_limit_hold":
          hold = { until: e.until, batch: e.batch_num };
          say(out.c.yellow(`rate limit on batch ${e.batch_num}: holding all work until ${formatTime(e.until)} (${formatDuration(e.until - now())}; hold ${e.waits}) — ${clip(clean(e.reason), 300)}`));
          break;
        case "hold_end":
          hold = undefined;
          say(`hold over: resuming work`);
          break;
        case "remote_batch": {
          const c = e.counts;
          const finished = c ? (c.succeeded ?? 0) + (c.errored ?? 0) + (c.canceled ?? 0) + (c.expired ?? 0) : 0;
          const detail = c ? `${finished}/${e.requests} done${c.errored ? `, ${c.errored} errored` : ""}${c.expired ? `, ${c.expired} expired` : ""}` : `${e.requests} requests`;
          say(`Message Batch ${e.id ?? e.key} ${e.status}: ${detail}${e.error ? ` (${clip(clean(e.error), 200)})` : ""}`);
          break;
        }
        case "job_paused":
          if (e.budget) say(out.c.yellow(`budget reached: ${money(e.budget.spent_usd)} spent of ${money(e.budget.max_cost_usd)}; no new batch starts`));
          this.stop();
          break;
        case "job_complete":
        case "job_failed":
          this.stop();
          break;
      }
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      stream.off?.("resize", onResize);
      if (live && drawn) {
        draw();
        stream.write("\n");
        drawn = false;
      }
    },
  };
}

/** A claude session's activity in a few words: "turn 3: Write out/b1.md", "claude retrying (2/3) in 1s: HTTP 529 overloaded". */
export function describeActivity(e: Extract<StoredEvent, { type: "activity" }>): string | undefined {
  if (e.retry) {
    const why = [e.retry.status !== undefined ? `HTTP ${e.retry.status}` : "", e.retry.error ?? ""].filter(Boolean).join(" ");
    return `claude retrying (${e.retry.attempt}/${e.retry.max_retries}) in ${formatDuration(e.retry.delay_ms)}${why ? `: ${why}` : ""}`;
  }
  if (e.turn !== undefined) return `turn ${e.turn}${e.tool ? `: ${e.tool}` : ""}`;
  if (e.session_id) return `session ${e.session_id}${e.model ? ` (${e.model})` : ""}`;
  return undefined;
}
