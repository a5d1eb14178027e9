/**
 * What every notification channel shares: the context it receives, the contract it implements,
 * and the one wording of every notification, so a desktop popup, a Slack message and a webhook
 * body say the same thing: what happened, how far the job is, what it cost, and the command to
 * run next.
 */
import type { NotificationEvent } from "../config/schema.ts";
import { clean, clip, shellQuote } from "../text.ts";
import { formatDuration, formatTime } from "../time.ts";

export interface NotifyContext {
  job_id: string;
  job_name: string;
  /** When the event happened: ISO 8601, UTC. */
  timestamp: string;
  total_batches: number;
  /** Batches of the job completed so far (for job_complete: all of them). */
  completed: number;
  failed: number;
  /** What the job has cost so far, in USD (0 when the backend reports no cost). */
  cost_usd: number;
  /** The batch a batch event (or a hold) is about. */
  batch?: { number: number; start_item?: number; end_item?: number; attempts?: number; duration_seconds?: number; cost_usd?: number };
  /** job_start: the batches this run means to run; `resumed`: the job had attempts before. */
  to_run?: number;
  resumed?: boolean;
  /** job_complete, job_failed: how long the job has run. */
  duration_seconds?: number;
  /** A rate-limit hold that is on: when it ends (ISO) and what the backend said. */
  hold?: { until: string; reason: string };
  /** batch_failed, batch_conflict, job_failed: what went wrong. */
  error?: string;
  /** job_paused, job_cancelled: why, or who asked (`mozart pause` from alice@build-1). */
  reason?: string;
  /** job_paused: the budget was reached. */
  budget?: { spent_usd: number; max_cost_usd: number };
  /** A sample sent by `mozart notify --test`, not a real event. */
  test?: boolean;
}

export type Env = Record<string, string | undefined>;
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;
export type RunCommand = (
  file: string,
  args: string[],
  opts: { timeoutMs: number; env: Env; signal: AbortSignal },
) => Promise<{ exitCode: number | null; stderr: string }>;

/** What a channel factory gets from createNotifier. */
export interface ChannelDeps {
  env: Env;
  fetch: FetchLike;
  runCommand: RunCommand;
  platform: NodeJS.Platform;
}

/** How one send went: `skipped` when the channel could not send at all (no URL, no tool). */
export interface SendResult {
  status?: number;
  tries?: number;
  skipped?: string;
}

/** One configured destination. send rejects on failure; the notifier catches and reports. */
export interface Channel {
  name: "desktop" | "slack" | "webhook";
  /** Where it sends, safe to print: a webhook's origin (never its path or query), "Slack", the desktop tool. */
  target: string;
  /** Problems found when the channel was made (a missing URL, secret or header variable). */
  problems: string[];
  send(event: NotificationEvent, ctx: NotifyContext, signal: AbortSignal): Promise<SendResult>;
}

/** A notification in words: every channel renders these parts, and `text` joins them on one line. */
export interface Notice {
  /** Short, for a popup title or a Slack header: `Mozart: my-job paused`. */
  title: string;
  /** What happened: `Paused: Ctrl+C; on hold until … (in 2h13m)`. */
  headline: string;
  /** Progress and cost: `12/20 batches done, $3.10`. */
  progress: string;
  /** What to run next, with what it is for: `continue: mozart resume my-job`. */
  next: Array<{ label: string; command: string }>;
  /** `headline — progress — next`. */
  text: string;
}

/** The one formatter every channel uses. */
export function describeEvent(event: NotificationEvent, ctx: NotifyContext): Notice {
  const job = shellQuote(ctx.job_id);
  const b = ctx.batch;
  const batch = b ? `Batch ${b.number}/${ctx.total_batches}` : "A batch";
  const hold = ctx.hold ? holdText(ctx.hold, ctx.timestamp) : undefined;
  const outside = (s: string | undefined, max: number) => clip(clean(s ?? ""), max);
  let short: string;
  let headline: string;
  const next: Notice["next"] = [];
  switch (event) {
    case "job_start": {
      const left = ctx.to_run ?? ctx.total_batches - ctx.completed;
      short = ctx.resumed ? "resumed" : "started";
      headline = ctx.resumed ? `Resumed: ${left} of ${ctx.total_batches} batches to run` : `Started: ${left} batch${left === 1 ? "" : "es"} to run`;
      if (hold) headline += `; on hold until ${hold}`;
      next.push({ label: "follow", command: `mozart logs ${job} -f` });
      break;
    }
    case "batch_start": {
      short = `batch ${b?.number ?? "?"} started`;
      const items = b?.start_item !== undefined && b.end_item !== undefined ? ` (items ${b.start_item}–${b.end_item})` : "";
      headline = `${batch} started${items}`;
      break;
    }
    case "batch_complete": {
      short = `batch ${b?.number ?? "?"} done`;
      const took = b?.duration_seconds !== undefined ? ` in ${formatDuration(b.duration_seconds * 1000)}` : "";
      const tries = b?.attempts && b.attempts > 1 ? ` after ${b.attempts} attempts` : "";
      const cost = b?.cost_usd ? ` (${formatCost(b.cost_usd)})` : "";
      headline = `${batch} done${took}${tries}${cost}`;
      break;
    }
    case "batch_failed": {
      short = `batch ${b?.number ?? "?"} failed`;
      const tries = b?.attempts ? ` after ${b.attempts} attempt${b.attempts === 1 ? "" : "s"}` : "";
      headline = `${batch} failed${tries}${ctx.error ? `: ${outside(ctx.error, 100)}` : ""}`;
      next.push({ label: "details", command: b ? `mozart status ${job} --batch ${b.number}` : `mozart status ${job}` });
      break;
    }
    case "batch_conflict":
      short = `batch ${b?.number ?? "?"} could not be merged`;
      headline = `${batch} could not be merged${ctx.error ? `: ${outside(ctx.error, 100)}` : ""}`;
      next.push({ label: "how to resolve it", command: `mozart status ${job}` }, { label: "then", command: `mozart resume ${job}` });
      break;
    case "rate_limit_hold":
      short = "on hold";
      headline = `On hold: ${outside(ctx.hold?.reason || "rate limit", 80)}; resumes ${hold ?? "later"}`;
      next.push({ label: "continues by itself; watch", command: `mozart status ${job} --watch` });
      break;
    case "job_paused":
      short = "paused";
      headline = `Paused: ${outside(ctx.reason || "stopped", 100)}${hold ? `; on hold until ${hold}` : ""}`;
      if (ctx.budget) next.push({ label: "raise the budget and continue", command: `mozart resume ${job} --budget <USD>` });
      else next.push({ label: "continue", command: `mozart resume ${job}` });
      break;
    case "job_cancelled":
      short = "cancelled";
      headline = `Cancelled${ctx.reason ? `: ${outside(ctx.reason, 100)}` : ""}`;
      next.push({ label: "continue anyway", command: `mozart resume ${job}` });
      break;
    case "job_complete":
      short = "completed";
      headline = `Completed${ctx.duration_seconds !== undefined ? ` in ${formatDuration(ctx.duration_seconds * 1000)}` : ""}`;
      break;
    case "job_failed":
      short = "failed";
      headline = `Failed: ${outside(ctx.error || "a batch failed", 100)}`;
      next.push({ label: "why", command: `mozart status ${job}` }, { label: "after fixing it", command: `mozart resume ${job}` });
      break;
  }
  const title = `${ctx.test ? "[test] " : ""}Mozart: ${ctx.job_name} ${short}`;
  const progress = `${ctx.completed}/${ctx.total_batches} batches done${ctx.failed ? `, ${ctx.failed} failed` : ""}, ${formatCost(ctx.cost_usd)}`;
  const parts = [headline, progress, ...(next.length ? [next.map((n) => `${n.label}: ${n.command}`).join("; ")] : [])];
  return { title, headline, progress, next, text: parts.join(" — ") };
}

/** `2026-05-01 15:00:00 UTC+2 (in 2h13m)`, counted from the event's own time. */
function holdText(hold: NonNullable<NotifyContext["hold"]>, at: string): string {
  const until = Date.parse(hold.until);
  if (!Number.isFinite(until)) return hold.until;
  const from = Date.parse(at);
  const left = Number.isFinite(from) ? until - from : 0;
  return `${formatTime(until)}${left > 0 ? ` (in ${formatDuration(left)})` : ""}`;
}

export function formatCost(usd: number): string {
  // Cents hide the cost of cheap batches entirely.
  return `$${usd > 0 && usd < 0.01 ? usd.toFixed(4) : usd.toFixed(2)}`;
}

/** A logger that reports a given problem only the first time, so a broken channel doesn't spam. */
export function logOnce(log: (msg: string) => void): (key: string, msg: string) => void {
  const seen = new Set<string>();
  return (key, msg) => {
    if (seen.has(key)) return;
    seen.add(key);
    log(msg);
  };
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.name === "TimeoutError" ? "timed out" : e.message;
  return String(e);
}
