/**
 * Progress for humans. On an interactive terminal: one live line (done/total, percent, elapsed,
 * ETA from batch durations so far, current hold, cost). Elsewhere (pipes, CI): one plain line
 * per event, which reads well in logs. -q silences it; -v adds each attempt's command and output.
 * A hand-written single line instead of a progress-bar package: it is ~one ANSI sequence, and
 * the ETA and hold countdown come from our own events anyway.
 */
import type { MozartEvent } from "../engine/events.ts";
import type { Output } from "./output.ts";

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  return `${h}h${String(m % 60).padStart(2, "0")}m`;
}

const money = (usd: number) => `$${usd.toFixed(usd < 1 ? 4 : 2)}`;
const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19);

export interface Progress {
  handle(e: MozartEvent): void;
  stop(): void;
}

export function createProgress(out: Output, opts: { now?: () => number } = {}): Progress {
  const now = opts.now ?? Date.now;
  const start = now();
  let total = 0;
  let done = 0;
  let toRun = 0;
  let finishedThisRun = 0;
  let durations = 0;
  let cost = 0;
  let workers = 1;
  let hold: { until: number; batch: number } | undefined;
  const running = new Set<number>();
  const live = out.interactive && !out.quiet && !out.json;
  let timer: ReturnType<typeof setInterval> | undefined;
  let drawn = false;

  const eta = () => {
    if (finishedThisRun === 0) return "…";
    const remaining = Math.max(0, toRun - finishedThisRun);
    // Batches run `workers` at a time, so the remaining ones take about remaining/workers rounds.
    return remaining === 0 ? "0s" : formatDuration(((durations / finishedThisRun) * remaining) / Math.min(workers, remaining));
  };
  const line = () => {
    const pct = total ? Math.floor((done / total) * 100) : 0;
    const width = 24;
    const filled = Math.round((pct / 100) * width);
    const bar = `${"█".repeat(filled)}${"░".repeat(width - filled)}`;
    const parts = [`${bar} ${done}/${total} ${pct}%`, `elapsed ${formatDuration(now() - start)}`, `ETA ${eta()}`];
    if (running.size) parts.push(`running ${[...running].sort((a, b) => a - b).slice(0, 4).join(",")}${running.size > 4 ? ",…" : ""}`);
    if (hold && hold.until > now()) parts.push(out.c.yellow(`hold ${formatDuration(hold.until - now())}`));
    if (cost > 0) parts.push(money(cost));
    return parts.join("  ");
  };
  const draw = () => {
    process.stderr.write(`\r\x1b[2K${line()}`);
    drawn = true;
  };
  /** Print a message above the live line. */
  const say = (msg: string, verboseOnly = false) => {
    if (out.quiet || (verboseOnly && !out.verbose)) return;
    if (live && drawn) process.stderr.write("\r\x1b[2K");
    if (verboseOnly) out.detail(msg);
    else out.info(live ? msg : `[${clock(now())}] ${msg}`);
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
          say(`${e.resumed ? "continuing" : "starting"} job ${out.c.bold(e.job_id)}: ${e.to_run} of ${e.total_batches} batches to run`);
          if (live) timer = setInterval(draw, 500);
          break;
        case "batch_start":
          running.add(e.batch_num);
          if (!live) say(`batch ${e.batch_num}/${total} started (items ${e.start_item}–${e.end_item})`);
          break;
        case "attempt_start":
          say(`batch ${e.batch_num} attempt ${e.attempt} (${e.mode}): ${e.argv.join(" ")}`, true);
          break;
        case "attempt_end": {
          const v = e.validations ? `, validations ${e.validations.passed}/${e.validations.total}` : "";
          const retry = e.retry_in_ms !== undefined ? `; next try in ${formatDuration(e.retry_in_ms)}` : "";
          const costText = e.cost_usd ? `, ${money(e.cost_usd)}` : "";
          if (e.decision !== "success") say(`batch ${e.batch_num} attempt ${e.attempt}: ${e.reason}${v} (${formatDuration(e.duration_ms)}${costText})${retry}`);
          if (out.verbose && e.output_tail.trim()) say(`  output: ${e.output_tail.trim().split("\n").slice(-8).join("\n          ")}`, true);
          if (e.cost_usd) cost += e.cost_usd;
          break;
        }
        case "batch_complete":
          running.delete(e.batch_num);
          done++;
          finishedThisRun++;
          durations += e.duration_ms;
          say(`${out.c.green("✓")} batch ${e.batch_num}/${total} completed (${e.attempts} attempt${e.attempts === 1 ? "" : "s"}, ${formatDuration(e.duration_ms)})`);
          break;
        case "batch_failed":
          running.delete(e.batch_num);
          say(`${out.c.red("✗")} batch ${e.batch_num} failed: ${e.error.message}`);
          break;
        case "rate_limit_hold":
          hold = { until: e.until, batch: e.batch_num };
          say(out.c.yellow(`rate limit on batch ${e.batch_num}: holding all work until ${new Date(e.until).toLocaleTimeString()} (${formatDuration(e.until - now())}; hold ${e.waits}) — ${e.reason}`));
          break;
        case "hold_end":
          hold = undefined;
          say(`hold over: resuming work`);
          break;
        case "job_paused":
        case "job_complete":
        case "job_failed":
          this.stop();
          break;
      }
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      if (live && drawn) {
        draw();
        process.stderr.write("\n");
        drawn = false;
      }
    },
  };
}
